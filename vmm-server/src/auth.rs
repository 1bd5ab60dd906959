//! The admin bearer token: compared in constant time, never logged, never shown by `Debug`.

use std::fmt;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::{ApiError, AppState};

/// The admin token.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token; it must be at least 16 characters.
    pub fn new(token: impl Into<String>) -> Result<Self, vmm_core::Error> {
        let token = token.into().trim().to_owned();
        if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(vmm_core::Error::invalid(
                "admin_token",
                "must be at least 16 characters, no white space",
            ));
        }
        Ok(Self(token))
    }

    /// A fresh random token (256 bits, hex).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).expect("the operating system's random source");
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The token itself, to write to the token file.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the token, in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// Refuses requests without the admin bearer token.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if state.token.matches(token) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthorized),
    }
}

/// Declares the bearer scheme in the OpenAPI document.
pub struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
