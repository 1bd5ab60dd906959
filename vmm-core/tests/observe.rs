//! Seeing the VM on the in-memory fakes: console tickets (one use, expiry, who may have
//! one, the session cap, the events), the usage collector (rates, rollups, queries), and
//! the scrape.

use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use futures::{SinkExt, StreamExt};
use vmm_core::event::{EventFilter, EventType};
use vmm_core::memory::{InMemoryConnector, InMemoryHypervisor, InMemoryStore};
use vmm_core::usage::UsageRetention;
use vmm_core::{
    Actor, ConsoleKind, Error, ManualClock, NodeSpec, NodeUriPolicy, PowerAction, Role, UsageCollector, Vm,
    VmSpec, Vmm, VmmConfig,
};

struct World {
    vmm: Vmm,
    clock: Arc<ManualClock>,
    hv: Arc<InMemoryHypervisor>,
    store: Arc<InMemoryStore>,
}

const URI: &str = "memory://n1?cpus=16&memory_mib=65536&storage_gib=1000";

async fn world(config: VmmConfig) -> World {
    // A fixed start: the rounds never cross an hour boundary, whatever the time of the run.
    let clock = Arc::new(ManualClock::new("2026-03-01T10:00:00Z".parse().unwrap()));
    let store = Arc::new(InMemoryStore::with_clock(clock.clone()));
    let connector = Arc::new(InMemoryConnector::new());
    let config = VmmConfig { node_uris: NodeUriPolicy::for_tests(), ..config };
    let vmm = Vmm::builder()
        .with_store(store.clone())
        .with_connector(connector.clone())
        .with_clock(clock.clone())
        .with_config(config)
        .build();
    vmm.create_node(NodeSpec::new("n1", URI)).await.unwrap();
    let hv = connector.get(URI).unwrap();
    World { vmm, clock, hv, store }
}

async fn running_vm(w: &World, name: &str) -> Vm {
    let (vm, _) = w.vmm.create_vm(VmSpec::new(name, 2, 1024, 10)).await.unwrap();
    w.vmm.run_until_idle().await.unwrap();
    w.vmm.get_vm(vm.id).await.unwrap()
}

fn admin() -> Actor {
    Actor { role: Role::Admin, ..Actor::system() }
}

#[test]
fn a_console_ticket_opens_once_and_the_session_is_recorded() {
    block_on(async {
        let w = world(VmmConfig::default()).await;
        let vm = running_vm(&w, "web-1").await;
        let grant = w.vmm.console_ticket(&admin(), vm.id, ConsoleKind::Serial).await.unwrap();
        assert!(!format!("{grant:?}").contains(grant.token.expose()), "the token is kept out of Debug");

        let mut session = w.vmm.open_console(grant.token.expose()).await.unwrap();
        assert_eq!((session.ticket.vm_id, session.ticket.kind), (vm.id, ConsoleKind::Serial));
        let stream = session.take_stream();
        let (mut to_guest, mut from_guest) = (stream.to_guest, stream.from_guest);
        let banner = from_guest.next().await.unwrap();
        assert!(String::from_utf8_lossy(&banner).contains(&vm.id.domain_name()));
        to_guest.send(b"echo".to_vec()).await.unwrap();
        assert_eq!(from_guest.next().await.unwrap(), b"echo");
        assert_eq!(w.vmm.console_sessions(vm.id), 1);

        // The same token again: refused, like an unknown one or a made-up one.
        for token in [grant.token.expose(), "vmmc_0000", "anything"] {
            assert!(matches!(w.vmm.open_console(token).await, Err(Error::Unauthenticated { .. })), "{token}");
        }
        w.vmm.close_console(session).await;
        assert_eq!(w.vmm.console_sessions(vm.id), 0);
        let events =
            vmm_core::EventStore::list_events(w.store.as_ref(), &EventFilter::default(), 1000).await.unwrap();
        let kinds: Vec<_> = events.iter().filter(|e| e.vm_id == Some(vm.id)).map(|e| e.kind).collect();
        assert!(
            kinds.contains(&EventType::VmConsoleOpened) && kinds.contains(&EventType::VmConsoleClosed),
            "{kinds:?}"
        );
    })
}

#[test]
fn console_tickets_expire_and_need_a_running_vm_its_user_may_operate() {
    block_on(async {
        let w = world(VmmConfig { console_ttl: Duration::from_secs(60), ..VmmConfig::default() }).await;
        let vm = running_vm(&w, "web-1").await;
        let grant = w.vmm.console_ticket(&admin(), vm.id, ConsoleKind::Vnc).await.unwrap();
        w.clock.advance(chrono::Duration::seconds(61));
        assert!(matches!(w.vmm.open_console(grant.token.expose()).await, Err(Error::Unauthenticated { .. })));

        // A user who does not own the VM does not see it.
        let stranger = Actor { role: Role::User, user_id: vmm_core::UserId::new(), token_id: None };
        assert!(matches!(
            w.vmm.console_ticket(&stranger, vm.id, ConsoleKind::Vnc).await,
            Err(Error::VmNotFound { .. })
        ));
        // A stopped VM has no console.
        w.vmm.power_vm(vm.id, PowerAction::Stop).await.unwrap();
        w.vmm.run_until_idle().await.unwrap();
        assert!(matches!(
            w.vmm.console_ticket(&admin(), vm.id, ConsoleKind::Vnc).await,
            Err(Error::Conflict { .. })
        ));
    })
}

#[test]
fn a_vm_has_at_most_its_console_sessions_open() {
    block_on(async {
        let w = world(VmmConfig { console_sessions: 2, ..VmmConfig::default() }).await;
        let vm = running_vm(&w, "web-1").await;
        let mut open = Vec::new();
        for _ in 0..2 {
            let grant = w.vmm.console_ticket(&admin(), vm.id, ConsoleKind::Vnc).await.unwrap();
            open.push(w.vmm.open_console(grant.token.expose()).await.unwrap());
        }
        let third = w.vmm.console_ticket(&admin(), vm.id, ConsoleKind::Vnc).await.unwrap();
        assert!(matches!(w.vmm.open_console(third.token.expose()).await, Err(Error::Conflict { .. })));
        // Closing one (or dropping it) makes room.
        w.vmm.close_console(open.pop().unwrap()).await;
        let fourth = w.vmm.console_ticket(&admin(), vm.id, ConsoleKind::Vnc).await.unwrap();
        let session = w.vmm.open_console(fourth.token.expose()).await.unwrap();
        drop(session);
        drop(open);
        assert_eq!(w.vmm.console_sessions(vm.id), 0);
    })
}

/// Runs `rounds` of the collector, a minute apart.
async fn collect(w: &World, collector: &mut UsageCollector, rounds: usize) {
    for _ in 0..rounds {
        w.clock.advance(chrono::Duration::seconds(60));
        w.vmm.collect_usage(collector).await.unwrap();
    }
}

#[test]
fn the_collector_stores_rates_that_follow_the_load() {
    block_on(async {
        let w = world(VmmConfig::default()).await;
        let (busy, idle) = (running_vm(&w, "busy").await, running_vm(&w, "idle").await);
        w.hv.set_cpu_load(busy.id, 0.5);
        let mut collector = UsageCollector::default();
        collect(&w, &mut collector, 4).await;
        let points = w.vmm.vm_usage(&admin(), busy.id, None, None, Some(60)).await.unwrap();
        // The first round only primes: three rates.
        assert_eq!(points.len(), 3, "{points:?}");
        assert!(points.iter().all(|p| (p.cpu_percent - 50.0).abs() < 0.01), "{points:?}");
        // A mebibyte each way per minute.
        assert!(points.iter().all(|p| (p.disk_read_bps - 1048576.0 / 60.0).abs() < 0.01));
        let quiet = w.vmm.vm_usage(&admin(), idle.id, None, None, Some(60)).await.unwrap();
        assert!(quiet.iter().all(|p| p.cpu_percent == 0.0), "{quiet:?}");
        // The node: its CPUs are 16, one VM uses one of them.
        let node = w.vmm.node_usage(&admin(), busy.node_id, None, None, Some(60)).await.unwrap();
        assert!(node.iter().all(|p| (p.cpu_percent - 100.0 / 16.0).abs() < 0.01), "{node:?}");
        // The load goes up: so does the CPU %.
        w.hv.set_cpu_load(busy.id, 1.0);
        collect(&w, &mut collector, 1).await;
        let last = *w.vmm.vm_usage(&admin(), busy.id, None, None, Some(60)).await.unwrap().last().unwrap();
        assert!((last.cpu_percent - 100.0).abs() < 0.01, "{last:?}");
        // Coarser steps average the points; a step the range cannot hold is refused.
        let hourly = w.vmm.vm_usage(&admin(), busy.id, None, None, Some(3600)).await.unwrap();
        assert_eq!(hourly.len(), 1, "{hourly:?}");
        assert!(matches!(
            w.vmm.vm_usage(&admin(), busy.id, None, None, Some(0)).await,
            Err(Error::Invalid { .. })
        ));
    })
}

#[test]
fn the_stats_store_stays_within_its_rollup_bound() {
    block_on(async {
        let retention = UsageRetention {
            interval: Duration::from_secs(60),
            raw: Duration::from_secs(600),
            five_minutes: Duration::from_secs(1800),
            hourly: Duration::from_secs(3600),
        };
        let w = world(VmmConfig { usage: retention, ..VmmConfig::default() }).await;
        let vms = [running_vm(&w, "a").await, running_vm(&w, "b").await];
        let mut collector = UsageCollector::default();
        collect(&w, &mut collector, 180).await;
        let stored = vmm_core::UsageStore::count_usage(w.store.as_ref()).await.unwrap();
        let subjects = vms.len() as u64 + 1;
        assert!(stored <= subjects * retention.bound_per_subject(), "{stored} points");
        assert!(stored >= subjects * 10, "{stored} points: the last ten minutes at least");
    })
}

#[test]
fn a_scrape_has_every_running_vm() {
    block_on(async {
        let w = world(VmmConfig::default()).await;
        let vms = [running_vm(&w, "web-1").await, running_vm(&w, "web-2").await];
        let mut registry = prometheus_client::registry::Registry::default();
        w.vmm.scrape(&mut registry).await.unwrap();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for vm in &vms {
            let series = format!(
                "libvirt_domain_info_cpu_time_seconds_total{{vm_id=\"{}\",vm_name=\"{}\"",
                vm.id, vm.name
            );
            assert!(text.contains(&series), "{series} in\n{text}");
        }
        assert!(text.contains("vmm_task_runs_total{kind=\"create_vm\",state=\"succeeded\"} 2"), "{text}");
        assert!(text.contains("vmm_node_up{"), "{text}");
        assert!(text.contains("vmm_tasks{state=\"queued\"} 0"), "{text}");
    })
}
