//! vmm-server: `vmmd`, the HTTP adapter over [`vmm_core::Vmm`].
//!
//! [`app`] builds the whole router: the v1 API under `/api/v1` (bearer token), the OpenAPI
//! document at `/openapi.json` and Swagger UI at `/docs`. Routes and the document come from
//! one source (utoipa-axum), so they cannot drift apart. Handlers extract, make one `Vmm`
//! call and return JSON; [`ApiError`] maps every failure to problem+json in one place.
//! [`serve()`] serves it with the limits a public endpoint needs (header-read and request
//! timeouts, a connection cap).

mod audit;
mod auth;
pub mod config;
mod error;
mod idempotency;
pub mod metrics;
mod openapi;
mod routes;
pub mod serve;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;
use vmm_core::{Actor, UserId, Vmm};

use auth::BearerScheme;
pub use auth::{AdminToken, LoginThrottle, Throttle, ThrottleConfig, ThrottleKey};
pub use error::{ApiError, Problem, PROBLEM_TYPE_PREFIX};
pub use serve::serve;

/// Largest JSON request body accepted, in bytes: room for 64 KiB of user-data, escaped.
/// Image data (`PUT /images/{id}/data`) is streamed and limited by the image size limit.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How long a request may take, and its body to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From the request head to the response head (long-polls wait at most 60 s).
    pub request_timeout: Duration,
    /// For the request body to arrive.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { request_timeout: Duration::from_secs(90), body_timeout: Duration::from_secs(30) }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The service.
    pub vmm: Vmm,
    /// The admin bearer token.
    pub token: Arc<AdminToken>,
    /// Bad tokens counted per client address.
    pub throttle: Arc<Throttle>,
    /// Failed sign-ins counted per account and per client address.
    pub logins: Arc<LoginThrottle>,
    /// Request timeouts.
    pub limits: Limits,
    /// The email of the first admin, whom the bootstrap token acts as.
    pub admin_email: String,
    /// The first admin's id, once made or found.
    pub admin: Arc<tokio::sync::OnceCell<UserId>>,
    /// Turns true when the server stops: long answers (event streams, consoles) end then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The read-only token for `GET /metrics`, if configured.
    pub metrics_token: Option<Arc<AdminToken>>,
    /// Request counts and latencies.
    pub http_metrics: metrics::HttpMetrics,
    /// Set once the store and every node have answered (`/api/v1/ready`).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// The last readiness probe, and when (one at a time, not too often).
    pub readiness: Arc<tokio::sync::Mutex<Option<(std::time::Instant, routes::Readiness)>>>,
}

impl AppState {
    /// The state for `vmm` and `token`, with the default throttle and limits.
    pub fn new(vmm: Vmm, token: AdminToken) -> Self {
        Self {
            vmm,
            token: Arc::new(token),
            throttle: Arc::new(Throttle::default()),
            logins: Arc::new(LoginThrottle::default()),
            limits: Limits::default(),
            admin_email: DEFAULT_ADMIN_EMAIL.to_owned(),
            admin: Arc::default(),
            stopping: tokio::sync::watch::channel(false).1,
            metrics_token: None,
            http_metrics: metrics::HttpMetrics::default(),
            ready: Arc::default(),
            readiness: Arc::default(),
        }
    }

    /// The actor of the bootstrap admin token: the first admin, made on first use. Should
    /// that user be gone all the same (deleted through another server), the token is
    /// refused (401), never answered with the missing user.
    pub async fn bootstrap_actor(&self) -> Result<Actor, ApiError> {
        let id = self
            .admin
            .get_or_try_init(|| async { self.vmm.bootstrap_admin(&self.admin_email).await.map(|u| u.id) })
            .await?;
        match self.vmm.bootstrap_actor(*id).await {
            Ok(actor) => Ok(actor),
            Err(vmm_core::Error::UserNotFound { .. } | vmm_core::Error::Unauthenticated { .. }) => {
                tracing::error!("the first admin, whom the admin token acts as, is gone or disabled");
                Err(ApiError::Unauthorized)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `user` is the first admin, whom the admin token acts as.
    pub fn is_bootstrap_admin(&self, user: UserId) -> bool {
        self.admin.get() == Some(&user)
    }
}

/// The first admin's email unless configured.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@localhost";

#[derive(OpenApi)]
#[openapi(
    info(title = "vmm", description = "Manage KVM virtual machines across hypervisor nodes."),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    components(schemas(Problem, vmm_core::PowerAction, vmm_core::Rejection, vmm_core::RejectReason)),
    tags(
        (name = "meta", description = "Version, health, readiness and metrics"),
        (name = "nodes", description = "Hypervisor nodes"),
        (name = "placement", description = "Which node takes a VM, and why"),
        (name = "ip-pools", description = "IP pools and leases"),
        (name = "networks", description = "Networks VMs plug into"),
        (name = "images", description = "OS images VMs are installed from"),
        (name = "recipes", description = "Scripts run at a guest's first boot"),
        (name = "vms", description = "Virtual machines; every change is a task"),
        (name = "tasks", description = "Long operations"),
        (name = "users", description = "Users, sign-in and API tokens"),
        (name = "events", description = "What happened: the event log, paged or streamed"),
    )
)]
struct ApiDoc;

/// The token-guarded routes, the public ones, and the document describing both.
fn parts() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (guarded, mut spec) = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::routes())
        .split_for_parts();
    let (public, public_spec) = routes::public().split_for_parts();
    spec.merge(public_spec);
    (guarded, public, openapi::polish(spec))
}

/// The OpenAPI document of the v1 API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    parts().2
}

/// The whole HTTP application over `state`.
pub fn app(state: AppState) -> Router {
    let (guarded, public, spec) = parts();
    let limits = state.limits;
    let request_id = HeaderName::from_static("x-request-id");
    // The token is checked first, then the request is recorded, then a retry with an
    // idempotency key is answered as its first try was (or runs).
    let api = guarded
        .route_layer(axum::middleware::from_fn(routes::link_next))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::idempotent))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), audit::record))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        .merge(public)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::record))
        .with_state(state);
    Router::new()
        .merge(api)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .route("/console/", axum::routing::get(routes::console_page))
        .route("/console/{*file}", axum::routing::get(routes::console_page))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .layer(axum::middleware::from_fn(
            move |req: Request<axum::body::Body>, next: axum::middleware::Next| {
                request_timeout(req, next, limits.request_timeout)
            },
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", id = %id, method = %req.method(), path = %logged_path(req.uri().path()))
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The path as logged: a console token (the credential of the console websocket) is left
/// out.
fn logged_path(path: &str) -> &str {
    if path.starts_with("/api/v1/console/") {
        "/api/v1/console/{token}"
    } else {
        path
    }
}

/// Ends a request that runs past `limit` with 408, except an image upload: that one is
/// limited by the image size and by the body timeout between its chunks, since a large
/// image takes longer than any fixed limit.
async fn request_timeout(
    req: Request<axum::body::Body>,
    next: axum::middleware::Next,
    limit: Duration,
) -> axum::response::Response {
    let upload = req.method() == axum::http::Method::PUT && req.uri().path().ends_with("/data");
    if upload {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(StatusCode::REQUEST_TIMEOUT),
    }
}
