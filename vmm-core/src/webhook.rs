//! Webhooks: subscriptions to event types, each delivered to a URL as a POST of the
//! event's JSON, signed with the subscription's secret:
//! `Vmm-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!
//! Deliveries are driven from the event log, never from the change itself: a change never
//! waits for a receiver, and a crash loses nothing (the subscription's cursor says what was
//! delivered). Each subscription gets its events in order, at least once: the next event
//! waits until the one before it was taken (a 2xx answer). A failure is retried after an
//! exponential backoff with jitter; after a run of failures the subscription is disabled,
//! with a `webhook.disabled` event. Target URLs follow the operator's address rules (no
//! loopback, link-local or private addresses unless allowed), checked when the subscription
//! is made and at each delivery.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::event::EventPattern;
use crate::id::{DeliveryId, UserId, WebhookId};
use crate::image::UrlPolicy;
use crate::secret::Secret;
use crate::users::Role;

/// The longest secret accepted.
const MAX_SECRET: usize = 256;

/// What a new subscription asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where events are POSTed (http or https).
    pub url: String,
    /// The event types, as patterns: `vm.*`, `task.failed`, `*`.
    pub events: Vec<EventPattern>,
    /// The key deliveries are signed with (16 to 256 characters); without one they are not
    /// signed. Never shown again.
    #[serde(default)]
    pub secret: Option<Secret>,
}

/// A change to a subscription; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    /// A new URL.
    #[serde(default)]
    pub url: Option<String>,
    /// New event patterns.
    #[serde(default)]
    pub events: Option<Vec<EventPattern>>,
    /// A new secret.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Enable (again, clearing the failures) or disable.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    /// The id.
    pub id: WebhookId,
    /// Whose it is: it gets the events its owner may read with `role`.
    pub owner_id: UserId,
    /// The role it reads with: that of the token it was made with (never more than its
    /// owner's role now; if the owner's role falls below it, it gets nothing).
    pub role: Role,
    /// Where events go.
    pub url: String,
    /// Which events.
    pub events: Vec<EventPattern>,
    /// Whether deliveries are signed.
    pub has_secret: bool,
    /// Whether events are being delivered.
    pub enabled: bool,
    /// Why it was disabled, if it was by vmm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// The id of the last event delivered (or passed over as not matching).
    pub last_event_id: u64,
    /// When the next attempt is due.
    pub next_attempt_at: DateTime<Utc>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// The secret (kept apart by the stores, never serialized).
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub secret: Option<Secret>,
    /// For a notification channel: where its messages go (then `url` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub channel: Option<Channel>,
}

/// How a notification channel reaches people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ChannelKind {
    /// Email, through the operator's SMTP server.
    Email,
    /// A Telegram chat, through the operator's bot.
    Telegram,
}

/// Where a notification channel's messages go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// How.
    pub kind: ChannelKind,
    /// The email address, or the Telegram chat id (`123456789`, `-100…`, `@channel`).
    pub to: String,
}

/// What a new notification channel asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// How.
    pub kind: ChannelKind,
    /// The email address, or the Telegram chat id.
    pub to: String,
    /// The event types, as patterns: `vm.*`, `task.failed`, `*`.
    pub events: Vec<EventPattern>,
}

impl ChannelSpec {
    /// Checks the address (an email address, or a Telegram chat id) and the patterns.
    pub fn validate(&self) -> Result<()> {
        check_events(&self.events)?;
        let ok = match self.kind {
            ChannelKind::Email => {
                self.to.len() <= 254
                    && email_address::EmailAddress::is_valid(&self.to)
                    && !self.to.contains(['<', '>', ' ', '"', '\r', '\n'])
            }
            ChannelKind::Telegram => {
                let digits = self.to.strip_prefix('-').unwrap_or(&self.to);
                let numeric =
                    !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit());
                let name = self.to.strip_prefix('@').is_some_and(|n| {
                    (5..=32).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
                numeric || name
            }
        };
        if !ok {
            return Err(Error::invalid("to", format!("is not a {} address", self.kind)));
        }
        Ok(())
    }
}

/// A notification channel as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationChannel {
    /// The id.
    pub id: WebhookId,
    /// Whose it is: it gets the events its owner may read.
    pub owner_id: UserId,
    /// How.
    pub kind: ChannelKind,
    /// Where.
    pub to: String,
    /// Which events.
    pub events: Vec<EventPattern>,
    /// Whether messages are being sent.
    pub enabled: bool,
    /// Why it was disabled, if it was by vmm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// The id of the last event sent (or passed over).
    pub last_event_id: u64,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl NotificationChannel {
    /// The channel a subscription is, if it is one.
    pub fn of(hook: &Webhook) -> Option<Self> {
        let channel = hook.channel.as_ref()?;
        Some(Self {
            id: hook.id,
            owner_id: hook.owner_id,
            kind: channel.kind,
            to: channel.to.clone(),
            events: hook.events.clone(),
            enabled: hook.enabled,
            disabled_reason: hook.disabled_reason.clone(),
            failures: hook.failures,
            last_event_id: hook.last_event_id,
            created_at: hook.created_at,
        })
    }
}

/// A short human message about `event`: a subject and a text (the VM's name, what
/// happened, when).
pub fn describe(event: &crate::event::Event) -> (String, String) {
    let what = event.kind.as_str();
    let name = event.data["vm_name"].as_str().or_else(|| event.data["name"].as_str());
    let subject = match (event.vm_id, name) {
        (Some(_), Some(name)) => format!("VM {name}: {what}"),
        (Some(vm), None) => format!("VM {vm}: {what}"),
        (None, Some(name)) => format!("{name}: {what}"),
        (None, None) => what.to_owned(),
    };
    let mut text = format!("{subject} at {}.", event.at.format("%Y-%m-%d %H:%M:%S UTC"));
    for (label, key) in [("Task", "kind"), ("Error", "error"), ("Why", "reason")] {
        if let Some(value) = event.data[key].as_str() {
            text.push_str(&format!("\n{label}: {value}"));
        }
    }
    text.push_str(&format!("\nEvent {}.", event.id));
    (subject, text)
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DeliveryStatus {
    /// The receiver answered 2xx.
    Succeeded,
    /// Anything else: another status, no answer, a refused address.
    Failed,
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    /// The id.
    pub id: DeliveryId,
    /// The subscription.
    pub webhook_id: WebhookId,
    /// The event.
    pub event_id: u64,
    /// The event's type.
    pub event_type: String,
    /// 1 for the first attempt at this event, then 2, 3…
    pub attempt: u32,
    /// When.
    pub at: DateTime<Utc>,
    /// How it ended.
    pub status: DeliveryStatus,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// Why it failed, in vmm's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl WebhookSpec {
    /// Checks the URL's shape and against `policy`'s hosts, the patterns and the secret.
    pub fn validate(&self, policy: &UrlPolicy) -> Result<()> {
        check_url(&self.url, policy)?;
        check_events(&self.events)?;
        check_secret(self.secret.as_ref())
    }
}

/// A URL's shape, and its host against the policy; its addresses are checked at delivery.
pub fn check_url(url: &str, policy: &UrlPolicy) -> Result<()> {
    let as_url_field = |e| match e {
        Error::Invalid { reason, .. } => Error::invalid("url", reason),
        e => e,
    };
    let parsed = policy.check_url(url).map_err(as_url_field)?;
    // An address written in the URL is checked now; a name's addresses at each delivery.
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) => policy.check_ip(ip.into()).map_err(as_url_field),
        Some(url::Host::Ipv6(ip)) => policy.check_ip(ip.into()).map_err(as_url_field),
        _ => Ok(()),
    }
}

fn check_events(events: &[EventPattern]) -> Result<()> {
    if events.is_empty() || events.len() > 64 {
        return Err(Error::invalid("events", "name 1 to 64 event types or patterns"));
    }
    Ok(())
}

fn check_secret(secret: Option<&Secret>) -> Result<()> {
    match secret {
        Some(s) if !(16..=MAX_SECRET).contains(&s.expose().len()) => {
            Err(Error::invalid("secret", format!("must be 16 to {MAX_SECRET} characters")))
        }
        _ => Ok(()),
    }
}

impl Webhook {
    /// A new, enabled subscription of `owner`'s that reads with `role` and starts after
    /// event `after`.
    pub fn new(spec: WebhookSpec, owner: UserId, role: Role, after: u64, now: DateTime<Utc>) -> Self {
        Self {
            id: WebhookId::new(),
            owner_id: owner,
            role,
            url: spec.url,
            events: spec.events,
            has_secret: spec.secret.is_some(),
            enabled: true,
            disabled_reason: None,
            failures: 0,
            last_event_id: after,
            next_attempt_at: now,
            created_at: now,
            secret: spec.secret,
            channel: None,
        }
    }

    /// A new notification channel of `owner`'s that starts after event `after`.
    pub fn channel(spec: ChannelSpec, owner: UserId, role: Role, after: u64, now: DateTime<Utc>) -> Self {
        let hook = WebhookSpec { url: String::new(), events: spec.events, secret: None };
        Self {
            channel: Some(Channel { kind: spec.kind, to: spec.to }),
            ..Self::new(hook, owner, role, after, now)
        }
    }

    /// Takes the delivery state a dispatcher worked out (last event, failures, next attempt,
    /// and a disable) over the subscription as it is stored, whose settings may have changed
    /// meanwhile. The one rule of finishing a claim, shared by every store.
    pub fn take_delivery_state(&mut self, from: &Webhook) {
        self.last_event_id = from.last_event_id;
        self.failures = from.failures;
        self.next_attempt_at = from.next_attempt_at;
        if !from.enabled {
            self.enabled = false;
            self.disabled_reason.clone_from(&from.disabled_reason);
        }
    }

    /// Applies a patch, checked like a spec.
    pub fn apply(&mut self, patch: WebhookPatch, policy: &UrlPolicy, now: DateTime<Utc>) -> Result<()> {
        if let Some(url) = &patch.url {
            check_url(url, policy)?;
        }
        if let Some(events) = &patch.events {
            check_events(events)?;
        }
        check_secret(patch.secret.as_ref())?;
        if let Some(url) = patch.url {
            self.url = url;
        }
        if let Some(events) = patch.events {
            self.events = events;
        }
        if let Some(secret) = patch.secret {
            self.has_secret = true;
            self.secret = Some(secret);
        }
        match patch.enabled {
            Some(true) if !self.enabled => {
                self.enabled = true;
                self.failures = 0;
                self.disabled_reason = None;
                self.next_attempt_at = now;
            }
            Some(false) => self.enabled = false,
            _ => {}
        }
        Ok(())
    }
}

/// The `Vmm-Signature` header value for `body` sent at `t` (Unix seconds).
pub fn signature(secret: &Secret, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// How long to wait before attempt `failures + 1` after `failures` failures in a row:
/// 2^(failures-1) seconds from 1 s up to an hour, plus up to a quarter more drawn from
/// `jitter` (0 to 1), so that receivers coming back are not hit by every sender at once.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let base = 2f64.powi(failures.saturating_sub(1).min(12) as i32).min(3600.0);
    Duration::from_secs_f64(base * (1.0 + 0.25 * jitter.clamp(0.0, 1.0)))
}

/// How deliveries are sent: an HTTP client (and SMTP and Telegram for notification
/// channels) in `vmm-backends`, a recording fake here.
#[async_trait]
pub trait WebhookSender: Send + Sync + Debug {
    /// POSTs `body` (JSON) with `headers` to `url`, connecting only to addresses `policy`
    /// allows and following no redirect; returns the receiver's status.
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        policy: &UrlPolicy,
    ) -> Result<u16>;

    /// Sends a message with `subject` and `text` to a notification channel.
    async fn notify(&self, channel: &Channel, subject: &str, text: &str) -> Result<()> {
        let _ = (subject, text);
        Err(Error::unsupported("this server", format!("{} notifications", channel.kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_time_dot_body() {
        // The value computed independently:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec_0123456789abcdef'
        let s = signature(&Secret::new("whsec_0123456789abcdef"), 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(s, "t=1700000000,v1=9f5e37cdc7ea587c7c02062d93283cad000d66a831b2a1676418696db47ed6c2");
        let other = signature(&Secret::new("whsec_0123456789abcdeF"), 1_700_000_000, br#"{"a":1}"#);
        assert_ne!(s, other);
    }

    #[test]
    fn backoff_doubles_to_an_hour_with_a_quarter_of_jitter() {
        assert_eq!(backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(5, 0.0), Duration::from_secs(16));
        assert_eq!(backoff(50, 0.0), Duration::from_secs(3600));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(5));
    }

    #[test]
    fn specs_and_patches_are_checked() {
        let policy = UrlPolicy { allowed_hosts: vec!["*".into()], ..UrlPolicy::default() };
        let events = vec![EventPattern::parse("vm.*").unwrap()];
        let spec = |url: &str, secret: Option<&str>| WebhookSpec {
            url: url.into(),
            events: events.clone(),
            secret: secret.map(Secret::new),
        };
        assert!(spec("https://hooks.example/vmm", Some("0123456789abcdef")).validate(&policy).is_ok());
        for bad in [
            spec("ftp://x.example/", None),
            spec("https://u:p@x.example/", None),
            spec("https://x.example/", Some("short")),
        ] {
            assert!(bad.validate(&policy).is_err(), "{bad:?}");
        }
        let no_events = WebhookSpec { events: Vec::new(), ..spec("https://x.example/", None) };
        assert!(
            matches!(no_events.validate(&policy), Err(Error::Invalid { field, .. }) if field == "events")
        );
        let now = Utc::now();
        let mut hook = Webhook::new(spec("https://x.example/", None), UserId::new(), Role::User, 7, now);
        assert_eq!((hook.last_event_id, hook.has_secret), (7, false));
        hook.enabled = false;
        hook.failures = 10;
        hook.apply(WebhookPatch { enabled: Some(true), ..WebhookPatch::default() }, &policy, now).unwrap();
        assert_eq!((hook.enabled, hook.failures), (true, 0));
        assert!(format!("{:?}", Webhook { secret: Some(Secret::new("0123456789abcdef!")), ..hook.clone() })
            .contains("***"));
    }
}
