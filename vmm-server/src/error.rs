//! One error type for the HTTP layer: every failure becomes an RFC 9457 problem+json body
//! with a stable `type` and `code`, mapped from vmm-core's error kinds in one match.
//! Bodies of 5xx answers say nothing of the cause; the log keeps it.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use serde::Serialize;
use std::str::FromStr;
use utoipa::ToSchema;
use vmm_core::{Error, ErrorKind, Rejection, TaskId, VmId};

/// The prefix of every problem `type`: a URN, since the project owns no domain.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:vmm:problem:";

/// An RFC 9457 problem details body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:vmm:problem:vm-not-found`); stable.
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
    /// For `no_capacity`: every node considered, with every reason it could not take the VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejections: Option<Vec<Rejection>>,
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
    /// Too many bad tokens from this client address.
    TooManyRequests {
        /// When it may try again.
        retry_after: Duration,
    },
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

/// The HTTP status of each kind of core error (the mapping is core's) and its title.
fn status_of(kind: ErrorKind) -> (u16, &'static str) {
    let title = match kind {
        ErrorKind::NotFound => "Not found",
        ErrorKind::Conflict => "Conflict",
        ErrorKind::Forbidden => "Forbidden",
        ErrorKind::Unauthenticated => "Unauthorized",
        ErrorKind::Invalid => "Invalid request",
        ErrorKind::Unsupported => "Not supported by the backend",
        ErrorKind::Unavailable => "Backend unavailable",
        ErrorKind::Timeout => "Timed out",
        _ => "Internal error",
    };
    (kind.http_status(), title)
}

impl ApiError {
    /// A typical problem answered with `status`, as the API makes it: the examples of the
    /// OpenAPI document.
    pub(crate) fn example(status: u16) -> Option<Problem> {
        let vm = VmId::from_str("01900000-0000-7000-8000-000000000001").ok()?;
        let task = TaskId::from_str("01900000-0000-7000-8000-000000000002").ok()?;
        let error = match status {
            400 => Self::Request {
                status: StatusCode::BAD_REQUEST,
                code: "malformed_json",
                detail:
                    "Failed to parse the request body as JSON: EOF while parsing an object at line 1 column 1"
                        .into(),
                field: None,
            },
            401 => Self::Unauthorized,
            403 => Error::Forbidden { reason: "a readonly user may not change VMs".into() }.into(),
            404 => Error::VmNotFound { id: vm }.into(),
            405 => Self::MethodNotAllowed,
            409 => Error::ActiveTask { vm, task }.into(),
            413 => Self::Request {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "body_too_large",
                detail: "Failed to buffer the request body: length limit exceeded".into(),
                field: None,
            },
            415 => Self::Request {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                detail: "Expected request with `Content-Type: application/json`".into(),
                field: None,
            },
            422 => Error::invalid("vcpus", "must be between 1 and 256").into(),
            429 => Self::TooManyRequests { retry_after: Duration::from_secs(60) },
            500 => Error::backend("postgres", "connection reset").into(),
            501 => Error::unsupported("test:///default", "installing from images").into(),
            503 => Error::unavailable("qemu+tcp://node-2/system", "the node does not answer").into(),
            _ => return None,
        };
        Some(error.problem())
    }

    /// A 422 for `field`.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Core(Error::invalid(field, detail))
    }

    fn problem(&self) -> Problem {
        let (status, code, title, field, ids, rejections) = match self {
            Self::Core(e) => {
                let (status, title) = status_of(e.kind());
                let ids =
                    e.ids().into_iter().map(|(k, v)| (k.to_owned(), serde_json::Value::String(v))).collect();
                let rejections = match e {
                    Error::NoCapacity { rejections } => Some(rejections.clone()),
                    _ => None,
                };
                (status, e.code(), title, e.field().map(str::to_owned), ids, rejections)
            }
            Self::Request { status, code, field, .. } => {
                (status.as_u16(), *code, "Bad request", field.clone(), Default::default(), None)
            }
            Self::Unauthorized => (401, "unauthorized", "Unauthorized", None, Default::default(), None),
            Self::TooManyRequests { .. } => {
                (429, "too_many_requests", "Too many requests", None, Default::default(), None)
            }
            Self::NoRoute => (404, "no_route", "No such route", None, Default::default(), None),
            Self::MethodNotAllowed => {
                (405, "method_not_allowed", "Method not allowed", None, Default::default(), None)
            }
        };
        let detail = match self {
            // The cause of an internal error is for the log; unsupported and unavailable
            // errors carry vmm's own words (never a backend's message text).
            Self::Core(e) if status >= 500 && e.kind() == ErrorKind::Internal => {
                "The server failed; the log has the details.".to_owned()
            }
            Self::Core(e) => e.public_message(),
            Self::Request { detail, .. } => detail.clone(),
            Self::Unauthorized => "A valid bearer token is required.".to_owned(),
            Self::TooManyRequests { retry_after } => format!(
                "Too many failed attempts to authenticate from this address; try again in {}s.",
                retry_after.as_secs().max(1)
            ),
            Self::NoRoute => "There is no such route.".to_owned(),
            Self::MethodNotAllowed => "The route does not take this method.".to_owned(),
        };
        Problem {
            kind: format!("{PROBLEM_TYPE_PREFIX}{}", code.replace('_', "-")),
            title: title.to_owned(),
            status,
            detail,
            code,
            field,
            ids,
            rejections,
        }
    }
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.problem().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
        if let Self::TooManyRequests { retry_after } = &self {
            let seconds = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
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
