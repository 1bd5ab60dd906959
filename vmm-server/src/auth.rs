//! Who a request comes from: the bootstrap admin token (compared in constant time, never
//! logged, never shown by `Debug`) or a user's token, checked by the core. A client address
//! that presents bad tokens or passwords again and again is throttled: 429 with
//! `Retry-After`, before its token is even looked at. [`gate`] applies the roles' rules to
//! each area's routes.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use vmm_core::{Access, Actor, Area};

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

/// How many bad tokens one client address may present, and for how long it is then
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Bad tokens allowed in `window`.
    pub max_failures: u32,
    /// The window they are counted in.
    pub window: Duration,
    /// How long an address that went over is refused.
    pub lockout: Duration,
}

impl ThrottleConfig {
    /// Sign-ins: the fifth failed one in five minutes, per account and per address, shuts
    /// both out for five minutes.
    pub const LOGIN: Self =
        Self { max_failures: 4, window: Duration::from_secs(300), lockout: Duration::from_secs(300) };
}

/// Failed sign-ins, counted per account (whether it exists or not) and per client address.
#[derive(Debug)]
pub struct LoginThrottle {
    accounts: Throttle<String>,
    addresses: Throttle<IpAddr>,
}

impl LoginThrottle {
    /// Both counted under `config`.
    pub fn new(config: ThrottleConfig) -> Self {
        Self { accounts: Throttle::new(config), addresses: Throttle::new(config) }
    }

    /// `Err(retry_after)` while the account or the address is shut out.
    pub fn check(&self, email: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let account = self.accounts.check(&email.to_owned(), now);
        let address = self.addresses.check(&ip, now);
        match (account, address) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(a.max(b)),
            (Err(d), _) | (_, Err(d)) => Err(d),
        }
    }

    /// Counts a failed sign-in; `Some(lockout)` once the account or the address is shut out.
    pub fn fail(&self, email: &str, ip: IpAddr, now: Instant) -> Option<Duration> {
        let account = self.accounts.fail(&email.to_owned(), now);
        let address = self.addresses.fail(&ip, now);
        account.max(address)
    }

    /// Forgets the account's failures after a sign-in. The address's stay: one good
    /// sign-in of their own must not let a client spray passwords over other accounts.
    pub fn succeed(&self, email: &str) {
        self.accounts.succeed(&email.to_owned());
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(ThrottleConfig::LOGIN)
    }
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self { max_failures: 10, window: Duration::from_secs(60), lockout: Duration::from_secs(60) }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
    blocked_until: Option<Instant>,
}

/// What failures are counted by: a client address (IPv6 by /64, so that one host cannot
/// rotate its way around it) or an account (its email, as typed, lower-cased).
pub trait ThrottleKey: std::hash::Hash + Eq + Clone + Send {
    /// The key failures are counted under.
    fn normalized(&self) -> Self;
}

impl ThrottleKey for IpAddr {
    fn normalized(&self) -> Self {
        client_key(*self)
    }
}

impl ThrottleKey for String {
    fn normalized(&self) -> Self {
        self.trim().to_lowercase()
    }
}

/// Counts failures per key and refuses a key that had too many.
#[derive(Debug)]
pub struct Throttle<K = IpAddr> {
    config: ThrottleConfig,
    failures: Mutex<HashMap<K, Failures>>,
}

/// Addresses tracked at most; past it, entries whose window and lockout ended go first.
const MAX_TRACKED: usize = 65_536;

fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl<K: ThrottleKey> Throttle<K> {
    /// A throttle with `config`.
    pub fn new(config: ThrottleConfig) -> Self {
        Self { config, failures: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Failures>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(retry_after)` while `key` is refused.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        match self.lock().get(&key.normalized()).and_then(|f| f.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure of `key`; `Some(lockout)` once it is refused.
    pub fn fail(&self, key: &K, now: Instant) -> Option<Duration> {
        let config = self.config;
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| {
                f.blocked_until.is_some_and(|u| u > now) || now.duration_since(f.since) < config.window
            });
        }
        if failures.len() >= MAX_TRACKED {
            // Still full of live entries: refuse the newcomer rather than forget an attacker.
            return Some(config.lockout);
        }
        let entry = failures.entry(key.normalized()).or_insert(Failures {
            count: 0,
            since: now,
            blocked_until: None,
        });
        if now.duration_since(entry.since) >= config.window {
            *entry = Failures { count: 0, since: now, blocked_until: None };
        }
        entry.count += 1;
        if entry.count > config.max_failures {
            entry.blocked_until = Some(now + config.lockout);
            return Some(config.lockout);
        }
        None
    }

    /// Forgets `key`'s failures after a success.
    pub fn succeed(&self, key: &K) {
        self.lock().remove(&key.normalized());
    }
}

impl Default for Throttle<IpAddr> {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

/// The client address of a request (0.0.0.0 when the server was not told).
pub(crate) fn client_ip(request: &Request) -> IpAddr {
    ip_of(request.extensions())
}

fn ip_of(extensions: &axum::http::Extensions) -> IpAddr {
    extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// The client address, as an extractor.
pub(crate) struct ClientIp(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(ip_of(&parts.extensions)))
    }
}

/// Finds who presents the request's bearer token and hands the [`Actor`] to the handler;
/// refuses requests without a valid token, and addresses that presented too many bad ones.
/// The bootstrap admin token acts as the first admin.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ip = client_ip(&request);
    let now = Instant::now();
    state.throttle.check(&ip, now).map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
    let presented = bearer(request.headers());
    let actor = match presented {
        Some(token) if state.token.matches(token) => Some(state.bootstrap_actor().await?),
        Some(token) => match state.vmm.authenticate(token).await {
            Ok(actor) => Some(actor),
            Err(vmm_core::Error::Unauthenticated { .. }) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    match actor {
        Some(actor) => {
            state.throttle.succeed(&ip);
            request.extensions_mut().insert(actor);
            Ok(next.run(request).await)
        }
        None => Err(refuse(&state, ip, now)),
    }
}

/// The bearer token the request presents, if any.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Counts a failed attempt to authenticate from `ip`: 401, or 429 once it is too many.
pub(crate) fn refuse(state: &AppState, ip: IpAddr, now: Instant) -> ApiError {
    match state.throttle.fail(&ip, now) {
        Some(retry_after) => {
            tracing::warn!(client = %ip, "too many failed attempts to authenticate; refusing the address for a while");
            ApiError::TooManyRequests { retry_after }
        }
        None => ApiError::Unauthorized,
    }
}

/// Lets through only actors whose role may read (GET) or change (anything else) the
/// routes' area; the handlers check ownership of the objects they touch.
pub async fn gate(area: Area, request: Request, next: Next) -> Result<Response, ApiError> {
    let access = if request.method() == Method::GET || request.method() == Method::HEAD {
        Access::Read
    } else {
        Access::Write
    };
    let actor = request.extensions().get::<Actor>().copied().ok_or(ApiError::Unauthorized)?;
    actor.may(area, access)?;
    Ok(next.run(request).await)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_too_many_bad_tokens_and_forgiven_later() {
        let t: Throttle = Throttle::new(ThrottleConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(30),
        });
        let (ip, other): (IpAddr, IpAddr) = ("192.0.2.9".parse().unwrap(), "192.0.2.10".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.fail(&ip, t0), None);
            assert!(t.check(&ip, t0).is_ok());
        }
        assert_eq!(t.fail(&ip, t0), Some(Duration::from_secs(30)));
        assert_eq!(t.check(&ip, t0 + Duration::from_secs(10)), Err(Duration::from_secs(20)));
        assert!(t.check(&other, t0).is_ok(), "other addresses are not affected");
        assert!(t.check(&ip, t0 + Duration::from_secs(31)).is_ok(), "the lockout ends");
        // A new window starts after the old one ends.
        assert_eq!(t.fail(&ip, t0 + Duration::from_secs(120)), None);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let t: Throttle = Throttle::new(ThrottleConfig { max_failures: 1, ..ThrottleConfig::default() });
        let now = Instant::now();
        t.fail(&"2001:db8::1".parse().unwrap(), now);
        t.fail(&"2001:db8::2".parse().unwrap(), now);
        assert!(t.check(&"2001:db8::ffff".parse().unwrap(), now).is_err());
        assert!(t.check(&"2001:db8:1::1".parse().unwrap(), now).is_ok());
    }
}
