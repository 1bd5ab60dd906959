//! Idempotency keys (the IETF httpapi `Idempotency-Key` draft): a client that retries a
//! POST with the same key gets the answer of the first try instead of a second VM. The
//! first answer is kept with a hash of the request for a while (24 hours by default); the
//! same key with another request is refused; while the first try runs, a second one is a
//! conflict. Keys belong to the user who sent them: two users never share one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A key from its header: 1 to 255 visible ASCII characters, optionally written as a
/// structured-field string (`"…"`), as the draft does.
pub fn parse_key(header: &str) -> Result<String> {
    let key = header.trim();
    let key = key.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap_or(key);
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        ));
    }
    Ok(key.to_owned())
}

/// What identifies a request: its method, path with query, and body.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The answer kept for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body (JSON text).
    pub body: String,
}

/// A key's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Whose key (a user id).
    pub scope: String,
    /// The key.
    pub key: String,
    /// The hash of the request it was first used with.
    pub request_hash: String,
    /// When the request began.
    pub created_at: DateTime<Utc>,
    /// When the record may be forgotten.
    pub expires_at: DateTime<Utc>,
    /// The answer, once there is one.
    pub response: Option<StoredResponse>,
}

/// What to do with a request that carries a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// Run it: the key is new (or its record expired, or its first try died).
    Proceed,
    /// Answer with what the first try answered.
    Replay(StoredResponse),
    /// The first try still runs.
    InFlight,
    /// The key was used with another request.
    Mismatch,
}

/// The one rule, shared by every store: what a request with `hash` at `now` does given the
/// key's `existing` record. A first try that has run longer than `stale_after` is taken
/// to have died with its server (its request timed out long ago), and may be run again.
pub fn begin(
    existing: Option<&IdempotencyRecord>,
    hash: &str,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> IdempotencyBegin {
    let Some(record) = existing else { return IdempotencyBegin::Proceed };
    if record.expires_at <= now {
        return IdempotencyBegin::Proceed;
    }
    if record.request_hash != hash {
        return IdempotencyBegin::Mismatch;
    }
    match &record.response {
        Some(response) => IdempotencyBegin::Replay(response.clone()),
        None if now - record.created_at > crate::service::chrono_duration(stale_after) => {
            IdempotencyBegin::Proceed
        }
        None => IdempotencyBegin::InFlight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hash: &str, response: Option<StoredResponse>, age_s: i64) -> IdempotencyRecord {
        let now = Utc::now();
        IdempotencyRecord {
            scope: "u".into(),
            key: "k".into(),
            request_hash: hash.into(),
            created_at: now - chrono::Duration::seconds(age_s),
            expires_at: now + chrono::Duration::hours(1),
            response,
        }
    }

    #[test]
    fn keys_are_visible_ascii_optionally_quoted() {
        assert_eq!(parse_key("abc-123").unwrap(), "abc-123");
        assert_eq!(parse_key("\"8e03978e-40d5-43e8\"").unwrap(), "8e03978e-40d5-43e8");
        for bad in ["", "\"\"", "a b", "ключ", &"x".repeat(256), "a\u{0}"] {
            assert!(parse_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_key_runs_once_replays_after_and_refuses_another_request() {
        let now = Utc::now();
        let stale = Duration::from_secs(120);
        let answer = StoredResponse { status: 202, location: None, content_type: None, body: "{}".into() };
        assert_eq!(begin(None, "h", now, stale), IdempotencyBegin::Proceed);
        assert_eq!(begin(Some(&record("h", None, 1)), "h", now, stale), IdempotencyBegin::InFlight);
        assert_eq!(begin(Some(&record("h", None, 600)), "h", now, stale), IdempotencyBegin::Proceed);
        assert_eq!(
            begin(Some(&record("h", Some(answer.clone()), 1)), "h", now, stale),
            IdempotencyBegin::Replay(answer.clone())
        );
        assert_eq!(
            begin(Some(&record("h", Some(answer), 1)), "other", now, stale),
            IdempotencyBegin::Mismatch
        );
        let mut expired = record("h", None, 1);
        expired.expires_at = now;
        assert_eq!(begin(Some(&expired), "other", now, stale), IdempotencyBegin::Proceed);
        assert_ne!(request_hash("POST", "/a", b"{}"), request_hash("POST", "/b", b"{}"));
        assert_ne!(request_hash("POST", "/a", b"{}"), request_hash("POST", "/a", b"{ }"));
    }
}
