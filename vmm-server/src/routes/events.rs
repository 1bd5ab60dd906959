//! The event log: what happened, oldest first, a page at a time or as it happens
//! (Server-Sent Events). Each reader sees what the rules let them: everything for admins
//! and read-only users, the fleet for operators, their own objects for users.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use vmm_core::{Actor, Error, Event, EventPattern, Vmm};

use super::{ApiResult, Json, Problems, Query};
use crate::AppState;

/// Events per page unless asked otherwise.
const DEFAULT_LIMIT: u32 = 100;
/// How long one stream lasts: then the client reconnects with `Last-Event-ID` and its token
/// is checked again (a revoked token ends its streams within this time).
const STREAM_LIFE: Duration = Duration::from_secs(300);
/// How long a stream waits for events before asking again.
const STREAM_WAIT: Duration = Duration::from_secs(15);

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events)).routes(routes!(stream_events))
}

/// Which events.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events with a larger id (the `next_cursor` of the previous page); 0 by default.
    pub after: Option<u64>,
    /// Comma-separated types or prefixes: `vm.*,task.failed`; all by default.
    pub types: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Which events to stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Only events with a larger id; the `Last-Event-ID` header, when sent, wins.
    pub after: Option<u64>,
    /// Comma-separated types or prefixes: `vm.*,task.failed`; all by default.
    pub types: Option<String>,
}

/// A page of the event log, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// The events.
    pub items: Vec<Event>,
    /// Pass as `after` for the next page (the last id read, or the `after` given when
    /// there was nothing new): polling with it never misses nor repeats an event.
    pub next_cursor: String,
}

fn patterns(types: Option<&str>) -> ApiResult<Vec<EventPattern>> {
    Ok(EventPattern::parse_list(types.unwrap_or(""))?)
}

/// Events after `after`, oldest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery), responses((status = 200, body = EventPage), Problems))]
async fn list_events(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<EventPage>> {
    let after = q.after.unwrap_or(0);
    let types = patterns(q.types.as_deref())?;
    let items = s.vmm.list_events_for(&actor, after, types, q.limit.unwrap_or(DEFAULT_LIMIT)).await?;
    let next = items.last().map_or(after, |e| e.id);
    Ok(Json(EventPage { items, next_cursor: next.to_string() }))
}

/// The event log as Server-Sent Events: every event after `after` (or `Last-Event-ID`),
/// then each new one as it happens, each with `id:` (its id), `event:` (its type) and
/// `data:` (its JSON). A stream ends after five minutes; reconnecting with `Last-Event-ID`
/// resumes it with no gap and no repeat, across restarts of the server too.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", params(StreamQuery), responses((status = 200, content_type = "text/event-stream", body = String), Problems))]
async fn stream_events(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Response> {
    let last_id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| Error::invalid("Last-Event-ID", "is not an event id"))?,
        ),
        None => None,
    };
    let after = last_id.or(q.after).unwrap_or(0);
    let types = patterns(q.types.as_deref())?;
    // Errors that the request itself causes are answered before the stream begins.
    s.vmm.list_events_for(&actor, after, types.clone(), 1).await?;
    let mut stopping = s.stopping.clone();
    let stopped = async move {
        // No sender (a state made without a server around it): it never stops.
        if stopping.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    // The stream ends when the server stops, so that it never holds a shutdown up.
    let stream = event_stream(s.vmm.clone(), actor, after, types).take_until(stopped);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// What a stream has read and not yet sent.
struct Cursor {
    vmm: Vmm,
    actor: Actor,
    after: u64,
    types: Vec<EventPattern>,
    ready: VecDeque<Event>,
    ends: Instant,
}

fn event_stream(
    vmm: Vmm,
    actor: Actor,
    after: u64,
    types: Vec<EventPattern>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let cursor =
        Cursor { vmm, actor, after, types, ready: VecDeque::new(), ends: Instant::now() + STREAM_LIFE };
    stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(event) = c.ready.pop_front() {
                c.after = event.id;
                let sse = SseEvent::default().id(event.id.to_string()).event(event.kind.as_str());
                let sse =
                    sse.json_data(&event).unwrap_or_else(|_| SseEvent::default().comment("unencodable"));
                return Some((Ok(sse), c));
            }
            let left = c.ends.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let wait = left.min(STREAM_WAIT);
            match c.vmm.wait_events_for(&c.actor, c.after, c.types.clone(), DEFAULT_LIMIT, wait).await {
                Ok(events) => c.ready.extend(events),
                Err(e) => {
                    // The client reconnects with the last id it got and loses nothing.
                    tracing::warn!(error = %vmm_core::error_chain(&e), "event stream ends");
                    return None;
                }
            }
        }
    })
}
