//! The v1 routes, one file per area. Each handler extracts, makes one `Vmm` call and
//! answers JSON; this module holds what they share: the extractors that answer bad input
//! with problem+json, the problems every route may answer, paging, and the 201/202 shapes.

mod audit;
mod backups;
mod channels;
mod consoles;
mod events;
mod ha;
mod images;
mod ipam;
mod meta;
mod metrics;
mod migrations;
mod networks;
mod nodes;
mod placement;
mod recipes;
mod reconcile;
mod snapshots;
mod ssh_keys;
mod tasks;
mod usage;
mod users;
mod vms;
mod webhooks;

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header::{LINK, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses};
use utoipa_axum::router::OpenApiRouter;
use vmm_core::{Area, Page, PageRequest, Task};

use crate::{ApiError, AppState, Problem};

/// JSON in and out; a bad body is problem+json (400, 413, 415 or 422).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A page of a list as JSON. When there is a next page, the response also carries its
/// cursor (as [`NextPage`]), which [`link_next`] turns into a `Link: <…>; rel="next"` header.
pub struct Paged<T>(pub Page<T>);

/// The cursor of the next page, handed from a [`Paged`] answer to [`link_next`].
#[derive(Debug, Clone)]
pub struct NextPage(String);

impl<T: Serialize> IntoResponse for Paged<T> {
    fn into_response(self) -> Response {
        let next = self.0.next_cursor.clone();
        let mut res = axum::Json(self.0).into_response();
        if let Some(cursor) = next {
            res.extensions_mut().insert(NextPage(cursor));
        }
        res
    }
}

/// Middleware: a page with a next one gets `Link: <this request with cursor=NEXT>;
/// rel="next"` (RFC 8288), a reference relative to the request's own URL.
pub async fn link_next(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let mut res = next.run(req).await;
    if let Some(NextPage(cursor)) = res.extensions_mut().remove::<NextPage>() {
        let mut pairs: Vec<(String, String)> = query
            .as_deref()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .filter(|(k, _)| k != "cursor")
                    .collect()
            })
            .unwrap_or_default();
        pairs.push(("cursor".to_owned(), cursor));
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        if let Ok(value) = HeaderValue::from_str(&format!("<{path}?{query}>; rel=\"next\"")) {
            res.headers_mut().insert(LINK, value);
        }
    }
    res
}

/// Path parameters; a malformed one is a 422.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters; a malformed one is a 422.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

type ApiResult<T> = Result<T, ApiError>;

/// The problems any route may answer with.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Problems {
    /// Malformed JSON.
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(Problem),
    /// No or a wrong bearer token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The token's role may not do this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such resource.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The path does not take this method (the answer to any method a path does not list).
    #[response(status = 405, content_type = "application/problem+json")]
    MethodNotAllowed(Problem),
    /// Conflicts with the current state: an active task, an illegal state, a duplicate.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// The body is too large.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    MediaType(Problem),
    /// Invalid values, unknown fields included.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
    /// Too many failed attempts to authenticate from this address; see `Retry-After`.
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
    /// The server failed; its log has the details (the answer never has them).
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
    /// The backend does not support this.
    #[response(status = 501, content_type = "application/problem+json")]
    Unsupported(Problem),
    /// A node or the database is unreachable.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

impl PageQuery {
    fn page(self) -> PageRequest {
        PageRequest { limit: self.limit, cursor: self.cursor }
    }
}

/// 202 with the task's location.
fn accepted<T: Serialize>(task: &Task, body: T) -> Response {
    (StatusCode::ACCEPTED, [(LOCATION, format!("/api/v1/tasks/{}", task.id))], Json(body)).into_response()
}

/// 201 with the new resource's location.
fn created<T: Serialize>(location: String, body: T) -> Response {
    (StatusCode::CREATED, [(LOCATION, location)], Json(body)).into_response()
}

/// Routes behind the bearer token, each area behind the roles' rules for it.
pub fn routes() -> OpenApiRouter<AppState> {
    let gated = |routes: OpenApiRouter<AppState>, area: Area| {
        routes.route_layer(axum::middleware::from_fn(move |req, next| crate::auth::gate(area, req, next)))
    };
    OpenApiRouter::new()
        .merge(meta::routes())
        .merge(gated(nodes::routes(), Area::Nodes))
        .merge(gated(reconcile::routes(), Area::Nodes))
        .merge(placement::routes())
        .merge(gated(placement::group_routes(), Area::Nodes))
        .merge(gated(migrations::routes(), Area::Nodes))
        .merge(gated(ha::routes(), Area::Nodes))
        .merge(gated(ipam::routes(), Area::IpPools))
        .merge(gated(networks::routes(), Area::Networks))
        .merge(gated(images::routes(), Area::Images))
        .merge(gated(recipes::routes(), Area::Recipes))
        .merge(gated(vms::routes(), Area::Vms))
        .merge(gated(consoles::routes(), Area::Vms))
        .merge(gated(usage::vm_routes(), Area::Vms))
        .merge(gated(usage::node_routes(), Area::Nodes))
        .merge(gated(tasks::routes(), Area::Tasks))
        .merge(gated(ssh_keys::routes(), Area::SshKeys))
        .merge(gated(audit::routes(), Area::Audit))
        .merge(gated(webhooks::routes(), Area::Webhooks))
        .merge(gated(backups::target_routes(), Area::Nodes))
        .merge(gated(backups::routes(), Area::Vms))
        .merge(gated(snapshots::routes(), Area::Vms))
        .merge(gated(channels::routes(), Area::Webhooks))
        // Users and tokens: the core checks each call against the object it names.
        .merge(users::routes())
        // Events: everyone reads those of what they may see.
        .merge(events::routes())
}

/// Routes open to all (health, readiness, sign-in), or that check their own credential
/// (metrics, the console websocket).
pub fn public() -> OpenApiRouter<AppState> {
    meta::public().merge(users::public()).merge(metrics::public()).merge(consoles::public())
}

pub(crate) use consoles::page as console_page;
pub use meta::Readiness;
