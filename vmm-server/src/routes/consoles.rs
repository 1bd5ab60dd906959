//! Consoles: a single-use token for a running VM's screen or serial console, the websocket
//! that token opens (RFB bytes or terminal bytes, both ways), and the page that connects by
//! itself (noVNC for the screen, xterm.js for the serial console).

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Actor, ConsoleKind, ConsoleSession, VmId};

use super::{ApiResult, Json, Path, Problems};
use crate::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(console_token))
}

pub(super) fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(console_socket))
}

/// Which console to open.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleRequest {
    /// `vnc` (the screen) or `serial`.
    pub kind: ConsoleKind,
}

/// A console token: it opens the console once, before `expires_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleToken {
    /// Open `GET /api/v1/console/{token}` as a websocket with it, once.
    pub token: String,
    /// The console page that connects by itself (the token is in it: treat it as secret).
    pub url: String,
    /// The console it opens.
    pub kind: ConsoleKind,
    /// Until when it can be used.
    pub expires_at: DateTime<Utc>,
}

/// A single-use token to a running VM's console, for whoever may operate the VM.
#[utoipa::path(post, path = "/api/v1/vms/{id}/console", operation_id = "create_console_token", tag = "vms", params(("id" = VmId, Path)),
    request_body(content = ConsoleRequest, example = json!({"kind": "vnc"})),
    responses((status = 201, body = ConsoleToken), Problems))]
async fn console_token(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<VmId>,
    Json(request): Json<ConsoleRequest>,
) -> ApiResult<Response> {
    let grant = s.vmm.console_ticket(&actor, id, request.kind).await?;
    let token = grant.token.expose().to_owned();
    let url = format!("/console/?token={token}&kind={}", grant.kind);
    let body = ConsoleToken { url, token, kind: grant.kind, expires_at: grant.expires_at };
    // No Location: the websocket's address holds the token.
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The console a token opens, as a websocket (binary frames both ways: RFB for `vnc`,
/// terminal bytes for `serial`). The token is the credential: it is used up here, and a
/// token used before, expired or unknown is refused with 401 before the upgrade.
#[utoipa::path(get, path = "/api/v1/console/{token}", operation_id = "open_console", tag = "vms", security(()), params(("token" = String, Path, pattern = "^vmmc_[0-9a-f]{64}$")),
    responses((status = 101, description = "Switching to the websocket protocol"), Problems))]
async fn console_socket(
    State(s): State<AppState>,
    Path(token): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    // A plain GET is refused before the token is looked at, so it is not used up.
    let upgrade =
        upgrade.map_err(|_| vmm_core::Error::invalid("connection", "open the console as a websocket"))?;
    let session = Closing::new(&s, s.vmm.open_console(&token).await?);
    let protocol = upgrade.protocols(["binary"]);
    Ok(protocol.on_upgrade(move |socket| relay(s, socket, session)).into_response())
}

/// How long a send may wait on the other side before the session ends (a client that
/// stopped reading, a guest that stopped taking input).
const STALLED: Duration = Duration::from_secs(30);

/// A session that is closed (and its close recorded) however the request ends: relayed to
/// its end, or dropped because the upgrade failed or the client went away first.
struct Closing {
    vmm: vmm_core::Vmm,
    session: Option<ConsoleSession>,
}

impl Closing {
    fn new(s: &AppState, session: ConsoleSession) -> Self {
        Self { vmm: s.vmm.clone(), session: Some(session) }
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let vmm = self.vmm.clone();
            tokio::spawn(async move { vmm.close_console(session).await });
        }
    }
}

/// Moves bytes between the websocket and the console until either side closes, a send
/// stalls, or the server stops; then the session closes (and its close is recorded).
async fn relay(s: AppState, socket: WebSocket, mut closing: Closing) {
    let Some(session) = closing.session.as_mut() else { return };
    let stream = session.take_stream();
    let (mut to_guest, mut from_guest) = (stream.to_guest, stream.from_guest);
    let (mut ws_out, mut ws_in) = socket.split();
    let mut stopping = s.stopping.clone();
    let stopped = async move {
        // A server that cannot say it stops (no sender) never stops the session.
        if stopping.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            bytes = from_guest.next() => match bytes {
                Some(bytes) => {
                    let sent = tokio::time::timeout(STALLED, ws_out.send(Message::Binary(bytes.into()))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                }
                None => break,
            },
            message = ws_in.next() => {
                let bytes = match message {
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                if !matches!(tokio::time::timeout(STALLED, to_guest.send(bytes)).await, Ok(Ok(()))) {
                    break;
                }
            }
            () = &mut stopped => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws_out.send(Message::Close(None))).await;
    drop(to_guest);
    if let Some(session) = closing.session.take() {
        s.vmm.close_console(session).await;
    }
}

/// The console page and the libraries it loads (noVNC, xterm.js), built into the server.
#[derive(rust_embed::Embed)]
#[folder = "assets/console/"]
struct Page;

/// Serves `/console/` and its files. No bearer token: the page holds none, it reads the
/// console token from its own address and hands it to the websocket.
pub(crate) async fn page(uri: axum::http::Uri) -> Response {
    let path = uri.path().strip_prefix("/console/").unwrap_or_default();
    let path = if path.is_empty() { "index.html" } else { path };
    match Page::get(path) {
        Some(file) => (
            [
                (CONTENT_TYPE, file.metadata.mimetype().to_owned()),
                (CACHE_CONTROL, "no-cache".to_owned()),
                (REFERRER_POLICY, "no-referrer".to_owned()),
                (
                    CONTENT_SECURITY_POLICY,
                    "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
                        .to_owned(),
                ),
            ],
            file.data,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
