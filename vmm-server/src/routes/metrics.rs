//! `GET /metrics`: Prometheus (OpenMetrics) text, for the admin token, the read-only
//! metrics token, or a user token whose role may read nodes.

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::users::{Access, Area};

use super::{ApiResult, Problems};
use crate::auth::{self, ClientIp};
use crate::{ApiError, AppState};

pub(super) fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// The content type of OpenMetrics text, which Prometheus scrapes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Metrics for Prometheus: vmm's own (tasks, HTTP requests, leases, nodes) and each running
/// VM's counters from its node's bulk statistics (named as prometheus-libvirt-exporter
/// names them). Takes the admin token, the metrics token, or an admin's API token.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"), Problems))]
async fn metrics(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> ApiResult<Response> {
    allowed(&s, ip, &headers).await?;
    let mut registry = Registry::default();
    s.vmm.scrape(&mut registry).await?;
    s.http_metrics.register(&mut registry);
    let mut text = String::with_capacity(64 * 1024);
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|e| vmm_core::Error::backend("metrics", e))?;
    Ok(([(CONTENT_TYPE, OPENMETRICS)], text).into_response())
}

async fn allowed(s: &AppState, ip: IpAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    let now = Instant::now();
    s.throttle.check(&ip, now).map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = presented else { return Err(auth::refuse(s, ip, now)) };
    if s.token.matches(token) || s.metrics_token.as_ref().is_some_and(|m| m.matches(token)) {
        s.throttle.succeed(&ip);
        return Ok(());
    }
    match s.vmm.authenticate(token).await {
        Ok(actor) => {
            s.throttle.succeed(&ip);
            Ok(actor.may(Area::Nodes, Access::Read)?)
        }
        Err(vmm_core::Error::Unauthenticated { .. }) => Err(auth::refuse(s, ip, now)),
        Err(e) => Err(e.into()),
    }
}
