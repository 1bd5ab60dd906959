//! `GET /metrics`: Prometheus (OpenMetrics) text, for the admin token, the read-only
//! metrics token, or a user token whose role may read nodes.

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
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

/// The content type of OpenMetrics text, which Prometheus asks for.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic Prometheus text format, for every other client.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The classic Prometheus text format of OpenMetrics `text` (what the metrics crate
/// encodes): a counter family is named with its `_total` suffix there, as its samples are,
/// and there is no `# EOF` or `# UNIT` line.
fn prometheus_text(text: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(text.len() + counters.len() * 12);
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match described {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) { "_total" } else { "" };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Metrics for Prometheus: vmm's own (tasks, HTTP requests, leases, nodes) and each running
/// VM's counters from its node's bulk statistics (named as prometheus-libvirt-exporter
/// names them). Takes the admin token, the metrics token, or an admin's API token.
/// OpenMetrics text when the client accepts it (as Prometheus does), else the classic
/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", operation_id = "get_metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text (or OpenMetrics when accepted)", body = String, content_type = "text/plain"), Problems))]
async fn metrics(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> ApiResult<Response> {
    allowed(&s, ip, &headers).await?;
    let openmetrics = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let mut registry = Registry::default();
    s.vmm.scrape(&mut registry).await?;
    s.http_metrics.register(&mut registry);
    let mut text = String::with_capacity(64 * 1024);
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|e| vmm_core::Error::backend("metrics", e))?;
    if openmetrics {
        Ok(([(CONTENT_TYPE, OPENMETRICS)], text).into_response())
    } else {
        Ok(([(CONTENT_TYPE, PROMETHEUS_TEXT)], prometheus_text(&text)).into_response())
    }
}

async fn allowed(s: &AppState, ip: IpAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    let now = Instant::now();
    s.throttle.check(&ip, now).map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
    let presented = auth::bearer(headers);
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

#[cfg(test)]
mod tests {
    #[test]
    fn counters_are_named_with_their_suffix_in_the_classic_format() {
        let open = "# HELP a_seconds Time.\n# TYPE a_seconds counter\na_seconds_total{x=\"1\"} 2.0\n\
                    # HELP b Gauge.\n# TYPE b gauge\nb 1\n# EOF\n";
        let classic = super::prometheus_text(open);
        assert_eq!(
            classic,
            "# HELP a_seconds_total Time.\n# TYPE a_seconds_total counter\na_seconds_total{x=\"1\"} 2.0\n\
             # HELP b Gauge.\n# TYPE b gauge\nb 1\n"
        );
    }
}
