//! Who: sign-in and sign-out, users, and API tokens. The core decides who may do what; a
//! sign-in that fails counts against the client address like a bad token.

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{
    Actor, ApiToken, AuditEntry, AuditId, Page, Role, Secret, TokenId, TokenSpec, User, UserId, UserPatch,
    UserSpec, UserState,
};

use super::{created, ApiResult, Json, PageQuery, Paged, Path, Problems, Query};
use crate::auth::ClientIp;
use crate::{ApiError, AppState};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(delete_token))
}

pub(super) fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
}

/// An email and a password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The user's email.
    pub email: String,
    /// Their password.
    pub password: Secret,
}

/// A session: its token (shown this once), when it ends, and who signed in.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginAnswer {
    /// Present it as `Authorization: Bearer …`.
    pub token: String,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Who signed in.
    pub user: User,
}

/// A new token: its record and the token itself, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewToken {
    /// The record (as listed later).
    #[serde(flatten)]
    pub record: ApiToken,
    /// The token; only its hash is kept.
    pub token: String,
}

/// Sign in with an email and password.
#[utoipa::path(post, path = "/api/v1/auth/login", operation_id = "log_in", tag = "users", security(()),
    request_body(content = Login, example = json!({"email": "ann@example.com", "password": "correct horse battery"})),
    responses((status = 200, body = LoginAnswer), Problems))]
async fn login(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Json(body): Json<Login>,
) -> ApiResult<Json<LoginAnswer>> {
    // Every sign-in is recorded before it is tried (no session is given unrecorded), the
    // failed ones with the email that was tried, as printable text.
    let tried: String =
        body.email.trim().to_lowercase().chars().filter(|c| !c.is_control()).take(254).collect();
    let entry = AuditEntry {
        id: AuditId::new(),
        at: Utc::now(),
        actor_id: None,
        token_id: None,
        action: "POST /api/v1/auth/login".into(),
        target_id: Some(tried),
        request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned),
        client: Some(ip.to_string()),
        outcome: 0,
    };
    let audit = crate::audit::begin(&s, entry).await?;
    let answer = sign_in(&s, ip, &body).await;
    let outcome = answer.as_ref().map_or_else(|e| e.status().as_u16(), |_| 200);
    crate::audit::finish(&s, audit, outcome, answer.as_ref().ok().map(|a| a.user.id)).await;
    answer.map(Json)
}

async fn sign_in(s: &AppState, ip: std::net::IpAddr, body: &Login) -> ApiResult<LoginAnswer> {
    let now = Instant::now();
    // Refused before the password is looked at, alike for accounts that exist or not.
    s.logins.check(&body.email, ip, now).map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
    match s.vmm.login(&body.email, &body.password).await {
        Ok(session) => {
            s.logins.succeed(&body.email);
            Ok(LoginAnswer {
                token: session.token.expose().to_owned(),
                expires_at: session.record.expires_at,
                user: session.user,
            })
        }
        Err(e @ vmm_core::Error::Unauthenticated { .. }) => match s.logins.fail(&body.email, ip, now) {
            None => Err(e.into()),
            Some(retry_after) => {
                tracing::warn!(client = %ip, "too many failed sign-ins; refusing the account and the address for a while");
                Err(ApiError::TooManyRequests { retry_after })
            }
        },
        Err(e) => Err(e.into()),
    }
}

/// End the session (or revoke the token) this request presents.
#[utoipa::path(post, path = "/api/v1/auth/logout", operation_id = "log_out", tag = "users", responses((status = 204), Problems))]
async fn logout(State(s): State<AppState>, Extension(actor): Extension<Actor>) -> ApiResult<StatusCode> {
    s.vmm.logout(&actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who this token acts as.
#[utoipa::path(get, path = "/api/v1/users/me", operation_id = "get_current_user", tag = "users", responses((status = 200, body = User), Problems))]
async fn me(State(s): State<AppState>, Extension(actor): Extension<Actor>) -> ApiResult<Json<User>> {
    Ok(Json(s.vmm.get_user(&actor, actor.user_id).await?))
}

/// Add a user (admins).
#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body(content = UserSpec, example = json!({"email": "ann@example.com", "password": "correct horse battery", "role": "user", "quota": {"max_vms": 5, "max_vcpus": 8}})),
    responses((status = 201, body = User), Problems))]
async fn create_user(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Json(spec): Json<UserSpec>,
) -> ApiResult<Response> {
    let user = s.vmm.create_user(&actor, spec).await?;
    Ok(created(format!("/api/v1/users/{}", user.id), user))
}

/// Users, newest first (admins and read-only).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery), responses((status = 200, body = Page<User>), Problems))]
async fn list_users(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Paged<User>> {
    Ok(Paged(s.vmm.list_users(&actor, &q.page()).await?))
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = UserId, Path)),
    responses((status = 200, body = User), Problems))]
async fn get_user(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<UserId>,
) -> ApiResult<Json<User>> {
    Ok(Json(s.vmm.get_user(&actor, id).await?))
}

/// Change a user's role, state, password or quota (admins).
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = UserId, Path)),
    request_body(content = UserPatch, example = json!({"state": "disabled"})),
    responses((status = 200, body = User), Problems))]
async fn update_user(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<UserId>,
    Json(patch): Json<UserPatch>,
) -> ApiResult<Json<User>> {
    let lowers =
        patch.state.is_some_and(|st| st != UserState::Active) || patch.role.is_some_and(|r| r != Role::Admin);
    if lowers && s.is_bootstrap_admin(id) {
        return Err(vmm_core::Error::conflict(
            "the admin token acts as this admin: it stays an active admin",
        )
        .into());
    }
    Ok(Json(s.vmm.update_user(&actor, id, patch).await?))
}

/// Delete a user and their tokens (admins).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = UserId, Path)),
    responses((status = 204), Problems))]
async fn delete_user(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<UserId>,
) -> ApiResult<StatusCode> {
    if s.is_bootstrap_admin(id) {
        return Err(
            vmm_core::Error::conflict("the admin token acts as this admin: it cannot be deleted").into()
        );
    }
    s.vmm.delete_user(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a named token, optionally with a narrower role and an expiry; it is shown once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "users",
    request_body(content = TokenSpec, example = json!({"name": "ci", "role": "user", "expires_at": "2030-01-01T00:00:00Z"})),
    responses((status = 201, body = NewToken), Problems))]
async fn create_token(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Json(spec): Json<TokenSpec>,
) -> ApiResult<Response> {
    let (record, token) = s.vmm.create_token(&actor, spec).await?;
    Ok(created(
        format!("/api/v1/tokens/{}", record.id),
        NewToken { token: token.expose().to_owned(), record },
    ))
}

/// Tokens: your own (everyone's for admins and read-only), newest first.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "users", params(PageQuery), responses((status = 200, body = Page<ApiToken>), Problems))]
async fn list_tokens(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Paged<ApiToken>> {
    Ok(Paged(s.vmm.list_tokens(&actor, &q.page()).await?))
}

/// Revoke a token; it stops working on the next request.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "users", params(("id" = TokenId, Path)),
    responses((status = 204), Problems))]
async fn delete_token(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<TokenId>,
) -> ApiResult<StatusCode> {
    s.vmm.delete_token(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
