//! Webhooks: each user's subscriptions, and the dispatcher that delivers the event log to
//! them (see [`crate::webhook`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{select, Either};
use futures_timer::Delay;

use super::Vmm;
use crate::error::{Error, Result};
use crate::event::{Event, EventFilter, EventType};
use crate::id::{DeliveryId, WebhookId};
use crate::page::{Page, PageRequest};
use crate::users::{sees_all, Access, Actor, Area, UserState};
use crate::webhook::{
    backoff, describe, signature, ChannelSpec, Delivery, DeliveryStatus, NotificationChannel, Webhook,
    WebhookPatch, WebhookSender, WebhookSpec,
};

/// How long a dispatcher holds a subscription it delivers to.
const CLAIM: Duration = Duration::from_secs(60);
/// How long one attempt may take, all of it (connecting, sending, the answer).
const SEND_DEADLINE: Duration = Duration::from_secs(30);
/// Dispatchers per process: a slow receiver holds up only its own subscription.
const DISPATCHERS: usize = 4;

impl Vmm {
    /// Subscribes `actor` to events: they get those they may read, from now on.
    pub async fn create_webhook(&self, actor: &Actor, spec: WebhookSpec) -> Result<Webhook> {
        actor.may(Area::Webhooks, Access::Write)?;
        spec.validate(&self.inner.config.webhook_urls)?;
        let after = self.inner.store.last_event_id().await?;
        let hook = Webhook::new(spec, actor.user_id, actor.role, after, self.now());
        self.inner.store.create_webhook(&hook).await?;
        Ok(hook)
    }

    /// A webhook `actor` may have `access` to (a notification channel is not one).
    pub async fn webhook_for(&self, actor: &Actor, id: WebhookId, access: Access) -> Result<Webhook> {
        let hook = self.subscription_for(actor, id, access).await?;
        if hook.channel.is_some() {
            return Err(Error::WebhookNotFound { id });
        }
        Ok(hook)
    }

    /// A webhook or channel `actor` may have `access` to.
    async fn subscription_for(&self, actor: &Actor, id: WebhookId, access: Access) -> Result<Webhook> {
        let hook = self.inner.store.get_webhook(id).await?;
        actor.check(Area::Webhooks, access, actor.target(hook.owner_id), || Error::WebhookNotFound { id })?;
        Ok(hook)
    }

    /// The subscriptions `actor` may see, newest first.
    pub async fn list_webhooks_for(&self, actor: &Actor, page: &PageRequest) -> Result<Page<Webhook>> {
        actor.may(Area::Webhooks, Access::Read)?;
        let owner = (!sees_all(actor.role, Area::Webhooks)).then_some(actor.user_id);
        self.inner.store.list_webhooks(owner, false, page).await
    }

    /// Makes a notification channel of `actor`'s: the events they may read that match go
    /// to an email address or a Telegram chat as short messages, from now on.
    pub async fn create_channel(&self, actor: &Actor, spec: ChannelSpec) -> Result<NotificationChannel> {
        actor.may(Area::Webhooks, Access::Write)?;
        spec.validate()?;
        let after = self.inner.store.last_event_id().await?;
        let hook = Webhook::channel(spec, actor.user_id, actor.role, after, self.now());
        self.inner.store.create_webhook(&hook).await?;
        Ok(NotificationChannel::of(&hook).expect("a channel"))
    }

    /// A channel `actor` may have `access` to.
    pub async fn channel_for(
        &self,
        actor: &Actor,
        id: WebhookId,
        access: Access,
    ) -> Result<NotificationChannel> {
        let hook = self.subscription_for(actor, id, access).await?;
        NotificationChannel::of(&hook).ok_or(Error::WebhookNotFound { id })
    }

    /// The channels `actor` may see, newest first.
    pub async fn list_channels_for(
        &self,
        actor: &Actor,
        page: &PageRequest,
    ) -> Result<Page<NotificationChannel>> {
        actor.may(Area::Webhooks, Access::Read)?;
        let owner = (!sees_all(actor.role, Area::Webhooks)).then_some(actor.user_id);
        let hooks = self.inner.store.list_webhooks(owner, true, page).await?;
        Ok(Page {
            items: hooks.items.iter().filter_map(NotificationChannel::of).collect(),
            next_cursor: hooks.next_cursor,
        })
    }

    /// Removes a channel `actor` may change.
    pub async fn delete_channel_for(&self, actor: &Actor, id: WebhookId) -> Result<()> {
        self.channel_for(actor, id, Access::Write).await?;
        self.inner.store.delete_webhook(id).await
    }

    /// Changes a subscription `actor` may change.
    pub async fn update_webhook_for(
        &self,
        actor: &Actor,
        id: WebhookId,
        patch: WebhookPatch,
    ) -> Result<Webhook> {
        let mut hook = self.webhook_for(actor, id, Access::Write).await?;
        hook.apply(patch, &self.inner.config.webhook_urls, self.now())?;
        self.inner.store.update_webhook(&hook).await?;
        self.notify();
        self.inner.store.get_webhook(id).await
    }

    /// Removes a subscription `actor` may change, with its delivery log.
    pub async fn delete_webhook_for(&self, actor: &Actor, id: WebhookId) -> Result<()> {
        self.webhook_for(actor, id, Access::Write).await?;
        self.inner.store.delete_webhook(id).await
    }

    /// The delivery attempts of a subscription `actor` may see, newest first.
    pub async fn list_deliveries_for(
        &self,
        actor: &Actor,
        id: WebhookId,
        page: &PageRequest,
    ) -> Result<Page<Delivery>> {
        self.webhook_for(actor, id, Access::Read).await?;
        self.inner.store.list_deliveries(id, page).await
    }

    /// Delivers events to webhooks through `sender` until `stopped` resolves: a few
    /// dispatchers, each claiming a subscription that is due and delivering its next event.
    /// Several processes may run this on one database; each subscription is delivered by
    /// one of them at a time.
    pub async fn run_webhooks(
        &self,
        sender: Arc<dyn WebhookSender>,
        stopped: impl std::future::Future<Output = ()>,
    ) {
        let dispatchers = (0..DISPATCHERS).map(|n| {
            let sender = sender.clone();
            let holder = format!("{}/{n}", self.inner.config.worker_id);
            async move {
                loop {
                    let listener = self.inner.changed.listen();
                    match self.deliver_next_as(&holder, sender.as_ref()).await {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %crate::error_chain(&e), "webhook delivery failed"),
                    }
                    select(listener, Delay::new(self.inner.config.poll_interval)).await;
                }
            }
        });
        let all = futures::future::join_all(dispatchers);
        let (all, stopped) = (std::pin::pin!(all), std::pin::pin!(stopped));
        if let Either::Right(_) = select(all, stopped).await {
            // A delivery cut short here is made again after its claim expires.
        }
    }

    /// Claims one subscription that is due and makes one attempt to deliver its next event;
    /// `false` when none was due.
    pub async fn deliver_next(&self, sender: &dyn WebhookSender) -> Result<bool> {
        self.deliver_next_as(&self.inner.config.worker_id, sender).await
    }

    /// [`deliver_next`](Self::deliver_next) with the claim held by `holder` (one per
    /// dispatcher, so that a dispatcher never takes over a claim its sibling still works on).
    async fn deliver_next_as(&self, holder: &str, sender: &dyn WebhookSender) -> Result<bool> {
        let config = &self.inner.config;
        let store = &self.inner.store;
        let now = self.now();
        let Some(mut hook) = store.claim_webhook(holder, now, CLAIM).await? else {
            return Ok(false);
        };
        let later = now + super::chrono_duration(config.poll_interval);
        // It gets what its owner may read with the role it was made with, while the owner
        // may sign in and still holds that role (as a token would).
        let owner = match store.get_user(hook.owner_id).await {
            Ok(user) if user.state == UserState::Active && user.role.may_grant(hook.role) => {
                Some(Actor { user_id: user.id, role: hook.role, token_id: None })
            }
            Ok(_) | Err(Error::UserNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let Some(owner) = owner else {
            hook.next_attempt_at = later;
            store.finish_webhook_claim(&hook, holder, None, Vec::new()).await?;
            return Ok(true);
        };
        // Every event up to `ceiling` is readable now: none matching means none to send.
        let ceiling = store.last_event_id().await?;
        let filter = EventFilter::for_actor(&owner, hook.last_event_id, hook.events.clone());
        let Some(event) = store.list_events(&filter, 1).await?.into_iter().next() else {
            hook.last_event_id = hook.last_event_id.max(ceiling);
            hook.next_attempt_at = later;
            store.finish_webhook_claim(&hook, holder, None, Vec::new()).await?;
            return Ok(false);
        };
        let (delivery, events) = self.attempt(&mut hook, &event, sender).await;
        store.finish_webhook_claim(&hook, holder, Some(&delivery), events).await?;
        Ok(true)
    }

    /// POSTs `event` to `hook` and updates the hook's delivery state with the outcome.
    async fn attempt(
        &self,
        hook: &mut Webhook,
        event: &Event,
        sender: &dyn WebhookSender,
    ) -> (Delivery, Vec<Event>) {
        let config = &self.inner.config;
        let now = self.now();
        let id = DeliveryId::new();
        let body = serde_json::to_vec(event).unwrap_or_default();
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Vmm-Event".to_owned(), event.kind.as_str().to_owned()),
            ("Vmm-Event-Id".to_owned(), event.id.to_string()),
            ("Vmm-Delivery".to_owned(), id.to_string()),
        ];
        if let Some(secret) = &hook.secret {
            headers.push(("Vmm-Signature".to_owned(), signature(secret, now.timestamp(), &body)));
        }
        let started = Instant::now();
        let send = async {
            match &hook.channel {
                Some(channel) => {
                    let (subject, text) = describe(event);
                    sender.notify(channel, &subject, &text).await.map(|()| 200)
                }
                None => sender.post(&hook.url, &headers, &body, &config.webhook_urls).await,
            }
        };
        // Well within the claim: no other dispatcher takes the subscription over meanwhile.
        let result = match select(std::pin::pin!(send), Delay::new(SEND_DEADLINE)).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => Err(Error::unavailable("webhook", "the receiver took too long")),
        };
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, response_code, error) = match result {
            Ok(code) if (200..300).contains(&code) => (DeliveryStatus::Succeeded, Some(code), None),
            Ok(code) => (DeliveryStatus::Failed, Some(code), Some(format!("the receiver answered {code}"))),
            Err(e) => (DeliveryStatus::Failed, None, Some(e.to_string())),
        };
        let delivery = Delivery {
            id,
            webhook_id: hook.id,
            event_id: event.id,
            event_type: event.kind.as_str().to_owned(),
            attempt: hook.failures + 1,
            at: now,
            status,
            response_code,
            latency_ms,
            error,
        };
        let mut events = Vec::new();
        if status == DeliveryStatus::Succeeded {
            hook.last_event_id = event.id;
            hook.failures = 0;
            hook.next_attempt_at = now;
        } else {
            hook.failures += 1;
            if hook.failures >= config.webhook_max_failures {
                hook.enabled = false;
                let reason = format!("{} deliveries in a row failed", hook.failures);
                hook.disabled_reason = Some(reason.clone());
                events.push(
                    Event::new(EventType::WebhookDisabled, now)
                        .owner(Some(hook.owner_id))
                        .with("webhook_id", hook.id)
                        .with("url", &hook.url)
                        .with("reason", reason),
                );
            }
            hook.next_attempt_at = now + super::chrono_duration(backoff(hook.failures, jitter()));
        }
        (delivery, events)
    }
}

/// A number from 0 to 1 for the backoff's jitter.
fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}
