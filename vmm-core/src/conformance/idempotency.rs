//! The idempotency part of the [`Store`](crate::Store) suite: of concurrent first tries one
//! proceeds, the answer is replayed, another request is refused, a forgotten or expired
//! key runs again.

use std::time::Duration;

use chrono::Utc;

use crate::idempotency::{IdempotencyBegin, StoredResponse};
use crate::Store;

const STALE: Duration = Duration::from_secs(300);
const TTL: Duration = Duration::from_secs(3600);

/// One key through its life, with `tries` first tries at once.
pub async fn one_try_per_key(s: &dyn Store, tries: usize) {
    let now = Utc::now();
    let all = (0..tries).map(|_| s.begin_request("u1", "k", "h", now, STALE, TTL));
    let decisions = futures::future::join_all(all).await;
    let proceed = decisions.iter().filter(|d| matches!(d, Ok(IdempotencyBegin::Proceed))).count();
    let in_flight = decisions.iter().filter(|d| matches!(d, Ok(IdempotencyBegin::InFlight))).count();
    assert_eq!((proceed, in_flight), (1, tries - 1), "{decisions:?}");

    let answer = StoredResponse {
        status: 202,
        location: Some("/api/v1/tasks/x".into()),
        content_type: Some("application/json".into()),
        body: "{\"vm\": 1}".into(),
    };
    s.finish_request("u1", "k", &answer).await.unwrap();
    assert_eq!(
        s.begin_request("u1", "k", "h", now, STALE, TTL).await.unwrap(),
        IdempotencyBegin::Replay(answer)
    );
    assert_eq!(
        s.begin_request("u1", "k", "other", now, STALE, TTL).await.unwrap(),
        IdempotencyBegin::Mismatch
    );
    // Another user's key of the same name is theirs.
    assert_eq!(
        s.begin_request("u2", "k", "other", now, STALE, TTL).await.unwrap(),
        IdempotencyBegin::Proceed
    );
    // A forgotten key (its first try failed on the server) runs again.
    s.forget_request("u2", "k").await.unwrap();
    assert_eq!(s.begin_request("u2", "k", "h2", now, STALE, TTL).await.unwrap(), IdempotencyBegin::Proceed);
    // A first try older than STALE is taken to have died.
    let later = now + chrono::Duration::seconds(301);
    assert_eq!(s.begin_request("u2", "k", "h2", later, STALE, TTL).await.unwrap(), IdempotencyBegin::Proceed);
    // Expired keys are pruned, and then run again.
    let expired = now + chrono::Duration::seconds(7200);
    assert_eq!(s.prune_requests(expired).await.unwrap(), 2);
    assert_eq!(
        s.begin_request("u1", "k", "new", expired, STALE, TTL).await.unwrap(),
        IdempotencyBegin::Proceed
    );
}
