//! [`WebhookStore`] in memory.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::id::{UserId, WebhookId};
use crate::page::{Page, PageRequest};
use crate::store::WebhookStore;
use crate::webhook::{Delivery, Webhook};

/// A subscription, and who holds it until when.
#[derive(Debug, Clone)]
pub(super) struct HookState {
    hook: Webhook,
    claim: Option<(String, DateTime<Utc>)>,
}

impl HookState {
    pub(super) fn owner_id(&self) -> UserId {
        self.hook.owner_id
    }
}

#[async_trait]
impl WebhookStore for InMemoryStore {
    async fn create_webhook(&self, hook: &Webhook) -> Result<()> {
        let mut s = self.state();
        if !s.users.contains_key(&hook.owner_id) {
            return Err(Error::UserNotFound { id: hook.owner_id });
        }
        s.webhooks.insert(hook.id, HookState { hook: hook.clone(), claim: None });
        Ok(())
    }

    async fn get_webhook(&self, id: WebhookId) -> Result<Webhook> {
        self.state().webhooks.get(&id).map(|h| h.hook.clone()).ok_or(Error::WebhookNotFound { id })
    }

    async fn list_webhooks(
        &self,
        owner: Option<UserId>,
        channels: bool,
        page: &PageRequest,
    ) -> Result<Page<Webhook>> {
        let keep = |h: &HookState| {
            owner.is_none_or(|o| h.hook.owner_id == o) && h.hook.channel.is_some() == channels
        };
        super::page_of(&self.state().webhooks, page, keep).map(|p| Page {
            items: p.items.into_iter().map(|h| h.hook).collect(),
            next_cursor: p.next_cursor,
        })
    }

    async fn update_webhook(&self, hook: &Webhook) -> Result<()> {
        let mut s = self.state();
        let kept = s.webhooks.get_mut(&hook.id).ok_or(Error::WebhookNotFound { id: hook.id })?;
        // The delivery state is the dispatcher's, but for what a re-enable resets.
        let last_event_id = kept.hook.last_event_id;
        kept.hook = Webhook { last_event_id, ..hook.clone() };
        Ok(())
    }

    async fn delete_webhook(&self, id: WebhookId) -> Result<()> {
        let mut s = self.state();
        s.webhooks.remove(&id).ok_or(Error::WebhookNotFound { id })?;
        s.deliveries.retain(|_, d| d.webhook_id != id);
        Ok(())
    }

    async fn claim_webhook(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Webhook>> {
        let mut s = self.state();
        let due = s
            .webhooks
            .values_mut()
            .filter(|h| h.hook.enabled && h.hook.next_attempt_at <= now)
            .filter(|h| h.claim.as_ref().is_none_or(|(_, until)| *until <= now))
            .min_by_key(|h| h.hook.next_attempt_at);
        Ok(due.map(|h| {
            h.claim = Some((worker.to_owned(), now + crate::service::chrono_duration(lease)));
            h.hook.clone()
        }))
    }

    async fn finish_webhook_claim(
        &self,
        hook: &Webhook,
        worker: &str,
        delivery: Option<&Delivery>,
        events: Vec<Event>,
    ) -> Result<()> {
        let mut s = self.state();
        let Some(kept) = s.webhooks.get_mut(&hook.id) else { return Ok(()) };
        if kept.claim.as_ref().is_none_or(|(w, _)| w != worker) {
            return Ok(());
        }
        kept.claim = None;
        kept.hook.take_delivery_state(hook);
        if let Some(d) = delivery {
            s.deliveries.insert(d.id, d.clone());
        }
        for e in events {
            s.emit(e);
        }
        Ok(())
    }

    async fn list_deliveries(&self, id: WebhookId, page: &PageRequest) -> Result<Page<Delivery>> {
        let s = self.state();
        if !s.webhooks.contains_key(&id) {
            return Err(Error::WebhookNotFound { id });
        }
        super::page_of(&s.deliveries, page, |d| d.webhook_id == id)
    }
}
