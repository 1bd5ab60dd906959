//! The consoles and usage part of the [`Store`](crate::Store) suite: a console ticket is
//! taken once (by one of many concurrent takers), never after it expired; sessions are
//! events of their VM;
//! usage points roll up into averages, prune by age, and read back in order.

use chrono::{DateTime, Duration, Utc};

use super::store::{created_vm, node};
use crate::console::{console_token_hash, ConsoleKind, ConsoleTicket};
use crate::event::{EventFilter, EventType};
use crate::usage::{UsagePoint, UsageSubject, RAW};
use crate::{Error, NodeId, Store, UserId, VmId};

fn ticket(vm: VmId, token: &str, expires_at: DateTime<Utc>) -> ConsoleTicket {
    ConsoleTicket {
        token_hash: console_token_hash(token),
        vm_id: vm,
        user_id: UserId::new(),
        kind: ConsoleKind::Serial,
        expires_at,
    }
}

fn refused(r: crate::Result<ConsoleTicket>) -> bool {
    matches!(r, Err(Error::Unauthenticated { .. }))
}

/// Tickets: one use, by one of `takers` racing for it; expired or unknown ones refused;
/// the open and close are events of the VM.
pub async fn console_tickets(s: &dyn Store, takers: usize) {
    s.create_node(&node("n1", 8)).await.unwrap();
    let vm = created_vm(s, None).await;
    let now = Utc::now();
    let good = ticket(vm.id, "good", now + Duration::seconds(60));
    s.add_console_ticket(&good, now).await.unwrap();
    let takes = (0..takers).map(|_| s.take_console_ticket(&good.token_hash, now));
    let results = futures::future::join_all(takes).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.into_iter().filter(|r| r.is_err()).all(refused));
    assert!(refused(s.take_console_ticket(&good.token_hash, now).await), "a ticket is good once");
    assert!(refused(s.take_console_ticket(&console_token_hash("unknown"), now).await));

    let old = ticket(vm.id, "old", now + Duration::seconds(1));
    s.add_console_ticket(&old, now).await.unwrap();
    assert!(refused(s.take_console_ticket(&old.token_hash, now + Duration::seconds(2)).await), "expired");

    // A ticket whose VM is gone is refused (and gone).
    let orphan = ticket(VmId::new(), "orphan", now + Duration::seconds(60));
    s.add_console_ticket(&orphan, now).await.unwrap();
    assert!(refused(s.take_console_ticket(&orphan.token_hash, now).await));

    s.record_console(&good, EventType::VmConsoleOpened, now).await.unwrap();
    s.record_console(&good, EventType::VmConsoleClosed, now).await.unwrap();
    let events = s.list_events(&EventFilter::default(), 1000).await.unwrap();
    let kinds: Vec<EventType> =
        events.into_iter().filter(|e| e.vm_id == Some(vm.id)).map(|e| e.kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| matches!(k, EventType::VmConsoleOpened | EventType::VmConsoleClosed)).count(),
        2,
        "{kinds:?}"
    );
    // The VM's create task was queued and ended: nothing is active.
    let active = s.count_active_tasks().await.unwrap();
    assert!(active.iter().all(|(_, n)| *n == 0), "{active:?}");
    let opened = kinds.iter().position(|k| *k == EventType::VmConsoleOpened).unwrap();
    let closed = kinds.iter().position(|k| *k == EventType::VmConsoleClosed).unwrap();
    assert!(opened < closed, "{kinds:?}");
}

fn point(t: i64, cpu: f64) -> UsagePoint {
    UsagePoint {
        t: DateTime::from_timestamp(t, 0).unwrap(),
        cpu_percent: cpu,
        memory_used_mib: 100.0,
        disk_read_bps: cpu * 10.0,
        ..UsagePoint::default()
    }
}

/// Points: written, replaced at the same time, averaged into buckets, pruned by age.
pub async fn usage_points(s: &dyn Store) {
    let (a, b) = (UsageSubject::Vm(VmId::new()), UsageSubject::Node(NodeId::new()));
    let at = |t: i64| DateTime::from_timestamp(t, 0).unwrap();
    // Two 5-minute buckets of a: [3000, 3300) with 10, 20, 30 and [3300, 3600) with 40.
    let mut points: Vec<_> = [(3000, 10.0), (3060, 20.0), (3120, 30.0), (3300, 40.0)]
        .into_iter()
        .map(|(t, c)| (a, point(t, c)))
        .collect();
    points.push((b, point(3000, 99.0)));
    s.add_usage(&points).await.unwrap();
    // The same time again replaces the point.
    s.add_usage(&[(a, point(3120, 60.0))]).await.unwrap();
    let raw = s.usage(a, RAW, at(0), at(10_000)).await.unwrap();
    assert_eq!(raw.iter().map(|p| p.cpu_percent).collect::<Vec<_>>(), [10.0, 20.0, 60.0, 40.0]);
    assert_eq!(s.usage(a, RAW, at(3060), at(3300)).await.unwrap().len(), 2, "from is in, to is out");

    s.roll_up_usage(300, at(3000), at(3600)).await.unwrap();
    let five = s.usage(a, 300, at(0), at(10_000)).await.unwrap();
    assert_eq!(five.len(), 2, "{five:?}");
    assert_eq!((five[0].t, five[0].cpu_percent, five[0].disk_read_bps), (at(3000), 30.0, 300.0));
    assert_eq!((five[1].t, five[1].cpu_percent), (at(3300), 40.0));
    assert_eq!(s.usage(b, 300, at(0), at(10_000)).await.unwrap()[0].cpu_percent, 99.0, "each subject alone");
    // Rolling up again (a bucket being filled) replaces the bucket.
    s.add_usage(&[(a, point(3360, 80.0))]).await.unwrap();
    s.roll_up_usage(300, at(3300), at(3600)).await.unwrap();
    assert_eq!(s.usage(a, 300, at(3300), at(3600)).await.unwrap()[0].cpu_percent, 60.0);

    assert_eq!(s.count_usage().await.unwrap(), 6 + 3);
    assert_eq!(s.prune_usage(RAW, at(3300)).await.unwrap(), 4, "a's three and b's one before 3300");
    assert_eq!(s.count_usage().await.unwrap(), 2 + 3, "the rollups stay");
    assert_eq!(s.prune_usage(300, at(4000)).await.unwrap(), 3);
}
