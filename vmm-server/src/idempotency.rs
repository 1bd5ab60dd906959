//! `Idempotency-Key` on every POST: the first answer (anything but a server error) is kept
//! with a hash of the request, and a retry with the same key and request gets it again
//! (`Idempotent-Replayed: true`; a secret the first answer showed once, a new token, is not
//! kept and not shown again); the same key with another request is 422; a retry while the
//! first try runs is 409. Keys are each token's own.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vmm_core::idempotency::{parse_key, request_hash, IdempotencyBegin, StoredResponse};
use vmm_core::{Actor, Error};

use crate::{ApiError, AppState, MAX_BODY_BYTES};

/// The largest answer kept; a larger one is answered but not kept (the key is forgotten).
const MAX_KEPT_BYTES: usize = 1 << 20;

/// The middleware.
pub async fn idempotent(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(header) = req.headers().get("idempotency-key") else { return next.run(req).await };
    let key = match header
        .to_str()
        .map_err(|_| Error::invalid("Idempotency-Key", "is not text"))
        .and_then(parse_key)
    {
        Ok(key) => key,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some(actor) = req.extensions().get::<Actor>().copied() else { return next.run(req).await };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::from(Error::invalid("body", "is too large or was cut off")).into_response();
    };
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string());
    let hash = request_hash(parts.method.as_str(), &path, &bytes);
    match s.vmm.begin_idempotent(&actor, &key, &hash).await {
        Ok(IdempotencyBegin::Proceed) => {}
        Ok(IdempotencyBegin::Replay(kept)) => return replay(kept),
        Ok(IdempotencyBegin::InFlight) => {
            let e = Error::conflict("a request with this Idempotency-Key is still running");
            return ApiError::from(e).into_response();
        }
        Ok(IdempotencyBegin::Mismatch) => {
            let e = Error::invalid("Idempotency-Key", "was used with another request");
            return ApiError::from(e).into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let forget = |why: &'static str| {
        let (s, key) = (s.clone(), key.clone());
        async move {
            if let Err(e) = s.vmm.forget_idempotent(&actor, &key).await {
                tracing::warn!(error = %vmm_core::error_chain(&e), why, "an idempotency key stays running until it goes stale");
            }
        }
    };
    if res.status().is_server_error() {
        forget("the request failed on the server").await;
        return res;
    }
    let (parts, body) = res.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_KEPT_BYTES).await else {
        forget("the answer is too large to keep").await;
        return ApiError::from(Error::unavailable("http", "the answer could not be read")).into_response();
    };
    let text = |name| parts.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
    let (body, secret) = without_secrets(&bytes);
    let kept = StoredResponse {
        status: parts.status.as_u16(),
        // A location that names the secret (a console token's websocket) is not kept either.
        location: text(header::LOCATION).filter(|l| secret.as_ref().is_none_or(|t| !l.contains(t.as_str()))),
        content_type: text(header::CONTENT_TYPE),
        body,
    };
    if let Err(e) = s.vmm.finish_idempotent(&actor, &key, &kept).await {
        tracing::warn!(error = %vmm_core::error_chain(&e), "the answer to an idempotency key was not kept");
        forget("its answer was not kept").await;
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The answer as it is kept, and the secret left out: a secret shown once (a new API
/// token's or a console ticket's `token`) is not kept, nor any other field that holds it (a
/// console page's `url`), so a replay answers with the rest and `null` for those.
fn without_secrets(body: &[u8]) -> (String, Option<String>) {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut map)) => {
            let Some(secret) = map.get("token").and_then(|t| t.as_str()).map(str::to_owned) else {
                return (String::from_utf8_lossy(body).into_owned(), None);
            };
            for value in map.values_mut() {
                if value.as_str().is_some_and(|v| v.contains(secret.as_str())) {
                    *value = serde_json::Value::Null;
                }
            }
            (serde_json::Value::Object(map).to_string(), Some(secret))
        }
        _ => (String::from_utf8_lossy(body).into_owned(), None),
    }
}

/// The kept answer, again.
fn replay(kept: StoredResponse) -> Response {
    let status = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::OK);
    let mut res = (status, kept.body).into_response();
    let headers = res.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    for (name, value) in [(header::LOCATION, kept.location), (header::CONTENT_TYPE, kept.content_type)] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, v);
        }
    }
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}
