//! Webhooks on the fakes: events reach a subscription in order, signed; a receiver that
//! fails is retried with backoff and, after a run of failures, the subscription is disabled
//! with an event, and taken up again where it stopped; a subscription gets only what its
//! owner may read; addresses the policy refuses are refused.

use std::sync::Arc;

use chrono::Utc;
use futures::executor::block_on;
use vmm_core::memory::{InMemoryWebhookSender, SentRequest};
use vmm_core::webhook::{signature, WebhookPatch, WebhookSpec};
use vmm_core::{
    Actor, AuthSource, Error, EventPattern, ManualClock, NodeSpec, NodeUriPolicy, Quota, Role, Secret,
    UserSpec, VmSpec, Vmm, VmmConfig,
};

const SECRET: &str = "whsec_0123456789abcdef";

struct World {
    vmm: Vmm,
    clock: Arc<ManualClock>,
    sender: InMemoryWebhookSender,
    ann: Actor,
    bob: Actor,
    admin: Actor,
}

async fn world(max_failures: u32) -> World {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let config = VmmConfig {
        node_uris: NodeUriPolicy::for_tests(),
        webhook_max_failures: max_failures,
        ..VmmConfig::default()
    };
    let vmm = Vmm::builder().with_clock(clock.clone()).with_config(config).build();
    vmm.create_node(NodeSpec::new("n1", "memory://n1")).await.unwrap();
    let admin = Actor::new(&vmm.bootstrap_admin("admin@localhost").await.unwrap(), None).unwrap();
    let mut users = Vec::new();
    for email in ["ann@example.com", "bob@example.com"] {
        let spec = UserSpec {
            email: email.into(),
            password: None,
            role: Role::User,
            auth: AuthSource::Ldap,
            quota: Quota::default(),
        };
        let user = vmm.create_user(&admin, spec).await.unwrap();
        users.push(Actor::new(&user, None).unwrap());
    }
    World { vmm, clock, sender: InMemoryWebhookSender::new(), ann: users[0], bob: users[1], admin }
}

fn spec(url: &str, events: &str) -> WebhookSpec {
    WebhookSpec {
        url: url.into(),
        events: EventPattern::parse_list(events).unwrap(),
        secret: Some(Secret::new(SECRET)),
    }
}

impl World {
    /// Delivers until nothing is due (time stands still).
    async fn deliver(&self) {
        while self.vmm.deliver_next(&self.sender).await.unwrap() {}
    }

    /// A VM of `who`'s made, stopped and deleted.
    async fn vm_life(&self, who: &Actor) {
        let (vm, _) = self.vmm.create_vm_for(who, VmSpec::new("web", 1, 128, 1)).await.unwrap();
        self.vmm.run_until_idle().await.unwrap();
        self.vmm.acting_for(who).power_vm(vm.id, vmm_core::PowerAction::Stop).await.unwrap();
        self.vmm.run_until_idle().await.unwrap();
        self.vmm.acting_for(who).delete_vm(vm.id).await.unwrap();
        self.vmm.run_until_idle().await.unwrap();
    }
}

fn kinds(sent: &[SentRequest]) -> Vec<String> {
    sent.iter().map(|r| r.header("Vmm-Event").unwrap().to_owned()).collect()
}

#[test]
fn events_arrive_in_order_signed_and_only_the_owners() {
    block_on(async {
        let w = world(10).await;
        let hook = w.vmm.create_webhook(&w.ann, spec("https://hooks.example/ann", "vm.*")).await.unwrap();
        assert!(hook.has_secret);
        assert!(!serde_json::to_string(&hook).unwrap().contains(SECRET), "the secret never shows");
        w.vm_life(&w.bob).await;
        w.vm_life(&w.ann).await;
        w.deliver().await;
        let sent = w.sender.sent();
        assert_eq!(kinds(&sent), ["vm.created", "vm.stopped", "vm.deleted"], "Ann's VM only");
        let mut last = 0;
        for r in &sent {
            assert_eq!(r.url, "https://hooks.example/ann");
            let event: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(event["owner_id"], w.ann.user_id.to_string());
            let id = event["id"].as_u64().unwrap();
            assert!(id > last);
            last = id;
            assert_eq!(r.header("Vmm-Event-Id").unwrap(), id.to_string());
            let sig = r.header("Vmm-Signature").unwrap();
            let t: i64 = sig.strip_prefix("t=").unwrap().split(',').next().unwrap().parse().unwrap();
            assert_eq!(sig, signature(&Secret::new(SECRET), t, &r.body), "a valid signature");
        }
        let deliveries = w.vmm.list_deliveries_for(&w.ann, hook.id, &Default::default()).await.unwrap().items;
        assert_eq!(deliveries.len(), 3);
        assert!(deliveries.iter().all(|d| d.response_code == Some(200) && d.attempt == 1));
        // Bob sees nothing of Ann's subscription.
        assert!(matches!(
            w.vmm.webhook_for(&w.bob, hook.id, vmm_core::Access::Read).await,
            Err(Error::WebhookNotFound { .. })
        ));
        assert!(w.vmm.list_webhooks_for(&w.bob, &Default::default()).await.unwrap().items.is_empty());
    });
}

#[test]
fn failures_back_off_disable_and_resume_where_they_stopped() {
    block_on(async {
        let w = world(3).await;
        let hook =
            w.vmm.create_webhook(&w.ann, spec("https://hooks.example/ann", "vm.created")).await.unwrap();
        w.vm_life(&w.ann).await;
        w.sender.answer_next(Ok(500));
        w.deliver().await;
        assert_eq!(w.sender.sent().len(), 1, "the next try waits for its backoff");
        w.clock.advance(chrono::Duration::seconds(2));
        w.sender.answer_next(Err(Error::unavailable("webhook", "the receiver could not be reached")));
        w.deliver().await;
        w.clock.advance(chrono::Duration::seconds(3));
        w.sender.answer_next(Ok(404));
        w.deliver().await;
        let hook_now = w.vmm.webhook_for(&w.ann, hook.id, vmm_core::Access::Read).await.unwrap();
        assert!(!hook_now.enabled, "disabled after 3 failures");
        assert_eq!(hook_now.failures, 3);
        let attempts: Vec<u32> = w
            .vmm
            .list_deliveries_for(&w.ann, hook.id, &Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|d| d.attempt)
            .collect();
        assert_eq!(attempts, [3, 2, 1]);
        let disabled = w
            .vmm
            .list_events_for(&w.ann, 0, EventPattern::parse_list("webhook.*").unwrap(), 10)
            .await
            .unwrap();
        assert_eq!(disabled.len(), 1);
        assert_eq!(disabled[0].data["webhook_id"], hook.id.to_string());
        w.clock.advance(chrono::Duration::seconds(3600));
        w.deliver().await;
        assert_eq!(w.sender.sent().len(), 3, "a disabled subscription gets nothing");
        // Enabled again: the same event, then the rest.
        w.vmm
            .update_webhook_for(&w.ann, hook.id, WebhookPatch { enabled: Some(true), ..Default::default() })
            .await
            .unwrap();
        w.deliver().await;
        let sent = w.sender.sent();
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[3].body, sent[0].body, "taken up where it stopped");
    });
}

#[test]
fn refused_addresses_and_bad_specs_change_nothing() {
    block_on(async {
        let w = world(10).await;
        for url in [
            "http://127.0.0.1:9/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://169.254.169.254/latest",
            "http://10.0.0.1/hook",
            "file:///etc/passwd",
            "https://user:pw@hooks.example/",
        ] {
            let r = w.vmm.create_webhook(&w.ann, spec(url, "*")).await;
            assert!(matches!(&r, Err(Error::Invalid { field, .. }) if field == "url"), "{url}: {r:?}");
        }
        let short = WebhookSpec { secret: Some(Secret::new("short")), ..spec("https://hooks.example/", "*") };
        assert!(
            matches!(w.vmm.create_webhook(&w.ann, short).await, Err(Error::Invalid { field, .. }) if field == "secret")
        );
        assert!(w.vmm.list_webhooks_for(&w.ann, &Default::default()).await.unwrap().items.is_empty());
    });
}

#[test]
fn channels_get_a_short_message_per_event_and_are_no_webhooks() {
    use vmm_core::webhook::{ChannelKind, ChannelSpec};
    block_on(async {
        let w = world(10).await;
        let spec = ChannelSpec {
            kind: ChannelKind::Email,
            to: "ann@example.com".into(),
            events: EventPattern::parse_list("vm.created,vm.deleted").unwrap(),
        };
        let channel = w.vmm.create_channel(&w.ann, spec).await.unwrap();
        w.vm_life(&w.ann).await;
        w.deliver().await;
        let sent = w.sender.notified();
        let subjects: Vec<&str> = sent.iter().map(|(_, s, _)| s.as_str()).collect();
        assert_eq!(subjects, ["VM web: vm.created", "VM web: vm.deleted"]);
        assert_eq!(sent[0].0.to, "ann@example.com");
        assert!(sent[0].2.contains("UTC") && sent[0].2.contains("Event "), "{}", sent[0].2);
        assert!(w.sender.sent().is_empty(), "no HTTP delivery for a channel");
        // A channel is no webhook, and a webhook no channel.
        assert!(w.vmm.webhook_for(&w.ann, channel.id, vmm_core::Access::Read).await.is_err());
        assert!(w.vmm.list_webhooks_for(&w.ann, &Default::default()).await.unwrap().items.is_empty());
        assert_eq!(w.vmm.list_channels_for(&w.ann, &Default::default()).await.unwrap().items.len(), 1);
        for (kind, to) in [
            (ChannelKind::Email, "not an address"),
            (ChannelKind::Email, "a@b.example\r\nBcc: x@y.example"),
            (ChannelKind::Telegram, "12ab"),
            (ChannelKind::Telegram, "@ab"),
        ] {
            let bad = ChannelSpec { kind, to: to.into(), events: EventPattern::parse_list("*").unwrap() };
            assert!(
                matches!(w.vmm.create_channel(&w.ann, bad).await, Err(Error::Invalid { field, .. }) if field == "to"),
                "{to:?}"
            );
        }
        w.vmm.delete_channel_for(&w.ann, channel.id).await.unwrap();
        assert!(w.vmm.list_channels_for(&w.ann, &Default::default()).await.unwrap().items.is_empty());
    });
}

#[test]
fn a_webhook_made_with_a_narrower_token_reads_with_that_role() {
    block_on(async {
        let w = world(10).await;
        // An admin's token narrowed to `user`: the webhook gets the admin's own objects only.
        let narrowed = Actor { role: Role::User, ..w.admin };
        w.vmm.create_webhook(&narrowed, spec("https://hooks.example/admin", "vm.*")).await.unwrap();
        w.vm_life(&w.bob).await;
        w.deliver().await;
        assert!(w.sender.sent().is_empty(), "Bob's VM is not the narrowed token's to see");
        // The admin's full role sees it.
        w.vmm.create_webhook(&w.admin, spec("https://hooks.example/all", "vm.created")).await.unwrap();
        w.vm_life(&w.bob).await;
        w.deliver().await;
        assert_eq!(kinds(&w.sender.sent()), ["vm.created"]);
    });
}
