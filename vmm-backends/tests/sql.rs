//! The SQL store: the conformance suite on SQLite (memory and file) and PostgreSQL,
//! concurrency on both databases, and a `Vmm` that restarts with its state and recovers a
//! task whose worker died.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{Duration, Utc};
use vmm_backends::SqlStore;
use vmm_core::conformance::store as suite;
use vmm_core::memory::MemoryConnector;
use vmm_core::{
    Error, IpPool, IpPoolSpec, ManualClock, NodeSpec, PageRequest, PlacementRequest, Store, Strategy, Task,
    TaskKind, TaskParams, TaskState, VmAction, VmSpec, VmState, Vmm, VmmConfig,
};

/// A fresh SQLite file in its own directory.
fn sqlite_file() -> (String, PathBuf) {
    let dir = std::env::temp_dir().join(format!("vmm-sql-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    (format!("sqlite://{}", dir.join("vmm.db").display()), dir)
}

fn postgres_base() -> String {
    std::env::var("VMM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database of its own.
async fn postgres_db() -> String {
    let base = postgres_base();
    let name = format!("vmm_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.expect("PostgreSQL on 127.0.0.1:5432");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
    admin.close().await;
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_memory_passes_the_store_suite() {
    suite::run(|| async { Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap()) as Arc<dyn Store> })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_file_passes_the_store_suite() {
    suite::run(|| async { Arc::new(SqlStore::connect(&sqlite_file().0).await.unwrap()) as Arc<dyn Store> })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432; CI runs it"]
async fn postgres_passes_the_store_suite() {
    suite::run(|| async {
        Arc::new(SqlStore::connect(&postgres_db().await).await.unwrap()) as Arc<dyn Store>
    })
    .await;
}

/// 64 concurrent allocations on a /28 give each usable address exactly once and
/// `PoolExhausted` to the rest, never another error.
async fn concurrent_allocations(store: Arc<SqlStore>) {
    let pool = IpPool::from_spec(&IpPoolSpec::new("tiny", "192.0.2.0/28"), Utc::now()).unwrap();
    store.insert_pool(&pool).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.allocate_lease(pool.id, None, None, Utc::now()).await })
        })
        .collect();
    let mut got = HashSet::new();
    let mut exhausted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(lease) => assert!(got.insert(lease.address), "{} handed out twice", lease.address),
            Err(Error::PoolExhausted { .. }) => exhausted += 1,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!((got.len(), exhausted), (14, 50));
    assert!(got.iter().all(|a| pool.check_usable(*a).is_ok()));
}

/// 32 concurrent actions on one VM: one winner, conflicts naming its task.
async fn concurrent_actions(store: Arc<SqlStore>) {
    store.insert_node(&suite::node("n", 8)).await.unwrap();
    let (vm, create) = suite::new_vm(None);
    store
        .create_vm(&vm, &create, PlacementRequest { pinned: None, strategy: Strategy::Spread })
        .await
        .unwrap();
    let now = Utc::now();
    let mut t = store.claim_task("w", now, now + Duration::seconds(60)).await.unwrap().unwrap();
    t.state = TaskState::Succeeded;
    store.save_task(&t, "w", now).await.unwrap();
    let mut stored = store.get_vm(vm.id).await.unwrap();
    stored.state = VmState::Stopped;
    store.update_vm(&stored).await.unwrap();
    let attempts: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let task = Task::new(TaskKind::StartVm, Some(vm.id), TaskParams::None, Utc::now());
                store.enqueue_task(&task, Some(VmAction::Start)).await.map(|()| task.id)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut named = Vec::new();
    for a in attempts {
        match a.await.unwrap() {
            Ok(id) => winners.push(id),
            Err(Error::ActiveTask { vm: v, task }) => {
                assert_eq!(v, vm.id);
                named.push(task);
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "one winner");
    assert_eq!(named.len(), 31);
    assert!(named.iter().all(|t| *t == winners[0]), "every conflict names the winner's task");
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_concurrent_allocations_and_actions() {
    let (url, dir) = sqlite_file();
    concurrent_allocations(Arc::new(SqlStore::connect(&url).await.unwrap())).await;
    concurrent_actions(Arc::new(SqlStore::connect(&url).await.unwrap())).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432; CI runs it"]
async fn postgres_concurrent_allocations_and_actions() {
    concurrent_allocations(Arc::new(SqlStore::connect(&postgres_db().await).await.unwrap())).await;
    concurrent_actions(Arc::new(SqlStore::connect(&postgres_db().await).await.unwrap())).await;
}

/// A `Vmm` dropped and reopened keeps its state; a task whose worker died is recovered.
async fn restart(url: &str) {
    let connector = Arc::new(MemoryConnector::new());
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let build = |store: Arc<SqlStore>| {
        Vmm::builder()
            .with_store(store)
            .with_connector(connector.clone())
            .with_clock(clock.clone())
            .with_config(VmmConfig { worker_id: "restarted".into(), ..VmmConfig::default() })
            .build()
    };
    let store = Arc::new(SqlStore::connect(url).await.unwrap());
    let vmm = build(store.clone());
    let node = vmm.add_node(NodeSpec::new("n1", "memory://n1")).await.unwrap();
    let pool = vmm.create_ip_pool(IpPoolSpec::new("p", "198.51.100.0/24")).await.unwrap();
    let (vm, task) =
        vmm.create_vm(VmSpec { ip_pool_id: Some(pool.id), ..VmSpec::new("kept", 1, 512, 1) }).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    // A second create whose worker claims it and dies.
    let (orphan, orphan_task) = vmm.create_vm(VmSpec::new("orphan", 1, 512, 1)).await.unwrap();
    let now = vmm_core::Clock::now(clock.as_ref());
    store.claim_task("dead-worker", now, now + Duration::seconds(30)).await.unwrap().expect("claimed");
    drop(vmm);
    store.close().await;

    clock.advance(Duration::seconds(31));
    let store = Arc::new(SqlStore::connect(url).await.unwrap());
    let vmm = build(store.clone());
    assert_eq!(vmm.get_node(node.id).await.unwrap().allocated.vms, 2);
    assert_eq!(vmm.get_ip_pool(pool.id).await.unwrap().name, "p");
    let kept = vmm.get_vm(vm.id).await.unwrap();
    assert_eq!((kept.state, kept.addresses[0].to_string()), (VmState::Running, "198.51.100.1".into()));
    assert_eq!(vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
    let leases = vmm.list_leases(pool.id, &PageRequest::default()).await.unwrap().items;
    assert_eq!(leases.len(), 1);
    assert_eq!(vmm.get_task(orphan_task.id).await.unwrap().state, TaskState::Running);
    assert_eq!(vmm.run_until_idle().await.unwrap(), 1);
    let recovered = vmm.get_task(orphan_task.id).await.unwrap();
    assert_eq!((recovered.state, recovered.attempts), (TaskState::Succeeded, 2), "{:?}", recovered.error);
    assert_eq!(vmm.get_vm(orphan.id).await.unwrap().state, VmState::Running);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_restart_keeps_state_and_recovers_tasks() {
    let (url, dir) = sqlite_file();
    restart(&url).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432; CI runs it"]
async fn postgres_restart_keeps_state_and_recovers_tasks() {
    restart(&postgres_db().await).await;
}

#[tokio::test]
async fn bad_urls_are_clear_errors() {
    for bad in ["mysql://x/y", "sqlite:", "postgres://", "banana"] {
        match SqlStore::connect(bad).await {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "database_url"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    let down = SqlStore::connect("postgres://postgres@127.0.0.1:1/nothing").await;
    assert!(matches!(down, Err(Error::Unavailable { .. })), "{down:?}");
}
