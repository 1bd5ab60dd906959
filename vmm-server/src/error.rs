//! One error type for the HTTP layer: every failure becomes an RFC 9457 problem+json body
//! with a stable `type` and `code`, mapped from vmm-core's error categories in one match.
//! Bodies of 5xx answers say nothing of the cause; the log keeps it.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use vmm_core::Error;

/// An RFC 9457 problem details body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; stable.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// The kind of problem as a short code (`vm_not_found`, `active_task`…); stable.
    pub code: &'static str,
    /// The request field at fault, for invalid input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Ids involved, such as the active task that blocks a request.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    #[schema(value_type = Object)]
    pub ids: serde_json::Map<String, serde_json::Value>,
}

/// Every error an HTTP handler returns.
#[derive(Debug)]
pub enum ApiError {
    /// From the service.
    Core(Error),
    /// The request itself could not be understood.
    Request {
        /// Its status (400, 413, 415, 422).
        status: StatusCode,
        /// The problem code.
        code: &'static str,
        /// What is wrong.
        detail: String,
        /// The field at fault.
        field: Option<String>,
    },
    /// No or a wrong bearer token.
    Unauthorized,
    /// No such route.
    NoRoute,
    /// The route exists, the method does not.
    MethodNotAllowed,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self::Core(e)
    }
}

impl ApiError {
    /// A 422 for `field`.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Core(Error::invalid(field, detail))
    }

    fn problem(&self) -> Problem {
        let ids = |pairs: &[(&str, String)]| {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone()))).collect()
        };
        let (status, code, title, field, ids) = match self {
            Self::Core(e) => {
                let code = e.code();
                let (status, title) = match code {
                    "vm_not_found" => (404, "VM not found"),
                    "node_not_found" => (404, "Node not found"),
                    "pool_not_found" => (404, "IP pool not found"),
                    "lease_not_found" => (404, "Lease not found"),
                    "task_not_found" => (404, "Task not found"),
                    c if c.ends_with("_not_found") => (404, "Not found"),
                    "active_task" => (409, "The VM has an active task"),
                    "invalid_state" => (409, "Not allowed in the VM's state"),
                    "address_in_use" => (409, "Address already leased"),
                    "pool_exhausted" => (409, "IP pool exhausted"),
                    "no_capacity" => (409, "No node can take the VM"),
                    "conflict" => (409, "Conflict"),
                    "invalid" => (422, "Invalid request"),
                    "unsupported" => (501, "Not supported by the backend"),
                    "unavailable" => (503, "Backend unavailable"),
                    "timeout" => (503, "Timed out"),
                    _ => (500, "Internal error"),
                };
                let (field, ids) = match e {
                    Error::VmNotFound { id } | Error::InvalidState { id, .. } => {
                        (None, ids(&[("vm_id", id.to_string())]))
                    }
                    Error::NodeNotFound { id } => (None, ids(&[("node_id", id.to_string())])),
                    Error::PoolNotFound { id } => (None, ids(&[("pool_id", id.to_string())])),
                    Error::PoolExhausted { pool } => (None, ids(&[("pool_id", pool.to_string())])),
                    Error::TaskNotFound { id } => (None, ids(&[("task_id", id.to_string())])),
                    Error::LeaseNotFound { pool, address } => {
                        (None, ids(&[("pool_id", pool.to_string()), ("address", address.to_string())]))
                    }
                    Error::AddressInUse { pool, address } => (
                        Some("address".to_owned()),
                        ids(&[("pool_id", pool.to_string()), ("address", address.to_string())]),
                    ),
                    Error::ActiveTask { vm, task } => {
                        (None, ids(&[("vm_id", vm.to_string()), ("task_id", task.to_string())]))
                    }
                    Error::Invalid { field, .. } => (Some(field.clone()), Default::default()),
                    _ => (None, Default::default()),
                };
                (status, code, title, field, ids)
            }
            Self::Request { status, code, field, .. } => {
                (status.as_u16(), *code, "Bad request", field.clone(), Default::default())
            }
            Self::Unauthorized => (401, "unauthorized", "Unauthorized", None, Default::default()),
            Self::NoRoute => (404, "no_route", "No such route", None, Default::default()),
            Self::MethodNotAllowed => {
                (405, "method_not_allowed", "Method not allowed", None, Default::default())
            }
        };
        let detail = match self {
            _ if status >= 500
                && !matches!(self, Self::Core(Error::Unsupported { .. } | Error::Unavailable { .. })) =>
            {
                "The server failed; the log has the details.".to_owned()
            }
            Self::Core(e) => e.to_string(),
            Self::Request { detail, .. } => detail.clone(),
            Self::Unauthorized => "A valid bearer token is required.".to_owned(),
            Self::NoRoute => "There is no such route.".to_owned(),
            Self::MethodNotAllowed => "The route does not take this method.".to_owned(),
        };
        Problem {
            kind: format!("https://vmm.dev/problems/{}", code.replace('_', "-")),
            title: title.to_owned(),
            status,
            detail,
            code,
            field,
            ids,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            let cause = match &self {
                Self::Core(e) => vmm_core::error_chain(e),
                _ => problem.detail.clone(),
            };
            tracing::error!(status = status.as_u16(), error = %cause, "request failed");
        }
        let mut response = (status, axum::Json(&problem)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            _ => "malformed_json",
        };
        let detail = r.body_text();
        // serde names the field in its message: "unknown field `cpus`", "missing field `name`".
        let field = detail
            .split('`')
            .nth(1)
            .filter(|_| status == StatusCode::UNPROCESSABLE_ENTITY)
            .map(str::to_owned);
        Self::Request { status, code, detail, field }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::Request {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid",
            detail: r.body_text(),
            field: Some("path".into()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::Request {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid",
            detail: r.body_text(),
            field: Some("query".into()),
        }
    }
}
