//! The webhooks area of the [`Store`](super::Store).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::event::Event;
use crate::id::{UserId, WebhookId};
use crate::page::{Page, PageRequest};
use crate::webhook::{Delivery, Webhook};

/// Webhook subscriptions and their delivery log. A dispatcher claims a subscription that is
/// due, delivers its next event, and records the attempt with the subscription's new
/// delivery state; while it holds the claim no other dispatcher (of any process) takes it,
/// so each subscription's events go out in order.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Keeps a new subscription, with its secret.
    async fn create_webhook(&self, hook: &Webhook) -> Result<()>;
    /// One subscription, with its secret.
    async fn get_webhook(&self, id: WebhookId) -> Result<Webhook>;
    /// Webhooks, or notification channels with `channels` (of `owner`, if given), newest first.
    async fn list_webhooks(
        &self,
        owner: Option<UserId>,
        channels: bool,
        page: &PageRequest,
    ) -> Result<Page<Webhook>>;
    /// Saves a subscription's settings (URL, events, secret, enabled; and the failures,
    /// reason and next attempt a re-enable resets).
    async fn update_webhook(&self, hook: &Webhook) -> Result<()>;
    /// Removes a subscription and its delivery log.
    async fn delete_webhook(&self, id: WebhookId) -> Result<()>;
    /// Claims the enabled subscription whose next attempt is the most overdue at `now` and
    /// that no other live claim holds, for `worker` until `now + lease`.
    async fn claim_webhook(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Webhook>>;
    /// Ends `worker`'s claim on `hook`: saves its delivery state (last event, failures,
    /// enabled, reason, next attempt), and the attempt made and `events` in the same
    /// transaction. Nothing is saved if the claim was lost to another worker.
    async fn finish_webhook_claim(
        &self,
        hook: &Webhook,
        worker: &str,
        delivery: Option<&Delivery>,
        events: Vec<Event>,
    ) -> Result<()>;
    /// A subscription's delivery attempts, newest first.
    async fn list_deliveries(&self, id: WebhookId, page: &PageRequest) -> Result<Page<Delivery>>;
}
