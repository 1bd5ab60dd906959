//! The SQL store: the conformance suite on SQLite (memory and file) and PostgreSQL,
//! concurrency on both databases, and a `Vmm` that restarts with its state and recovers a
//! task whose worker died.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use chrono::Utc;
use vmm_backends::SqlStore;
use vmm_core::conformance::store as suite;
use vmm_core::memory::InMemoryConnector;
use vmm_core::{
    Error, IpPool, IpPoolSpec, IpamStore, ManualClock, NodeSpec, NodeStore, NodeUriPolicy, PageRequest,
    PlacementRequest, Store, Strategy, Task, TaskKind, TaskParams, TaskState, TaskStore, VmAction, VmSpec,
    VmState, VmStore, Vmm, VmmConfig,
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
    store.create_pool(&pool).await.unwrap();
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
    store.create_node(&suite::node("n", 8)).await.unwrap();
    let (vm, create) = suite::new_vm(None);
    store
        .create_vm(
            &vm,
            &create,
            &PlacementRequest { pinned: None, strategy: Strategy::Spread, only: None, group: None },
            None,
        )
        .await
        .unwrap();
    let mut t = store.claim_task("w", Utc::now(), Duration::from_secs(60)).await.unwrap().unwrap();
    t.state = TaskState::Succeeded;
    store.save_task(&t, t.fence()).await.unwrap();
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
    let connector = Arc::new(InMemoryConnector::new());
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let build = |store: Arc<SqlStore>| {
        let config = VmmConfig {
            worker_id: "restarted".into(),
            node_uris: NodeUriPolicy::for_tests(),
            ..VmmConfig::default()
        };
        Vmm::builder()
            .with_store(store)
            .with_connector(connector.clone())
            .with_clock(clock.clone())
            .with_config(config)
            .build()
    };
    let store = Arc::new(SqlStore::connect(url).await.unwrap());
    let vmm = build(store.clone());
    let node = vmm.create_node(NodeSpec::new("n1", "memory://n1")).await.unwrap();
    let pool = vmm.create_ip_pool(IpPoolSpec::new("p", "198.51.100.0/24")).await.unwrap();
    let (vm, task) =
        vmm.create_vm(VmSpec { ip_pool_id: Some(pool.id), ..VmSpec::new("kept", 1, 512, 1) }).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    // A second create whose worker claims it and dies; its lease (a millisecond) runs out
    // by the database's clock.
    let (orphan, orphan_task) = vmm.create_vm(VmSpec::new("orphan", 1, 512, 1)).await.unwrap();
    let now = vmm_core::Clock::now(clock.as_ref());
    store.claim_task("dead-worker", now, Duration::from_millis(1)).await.unwrap().expect("claimed");
    drop(vmm);
    store.close().await;

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
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while vmm.run_until_idle().await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "the orphan was never recovered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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

/// SQLite's reads use their own read-only connections: with the one writer connection busy
/// (waiting for a write lock another process holds), reads still answer.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_reads_do_not_wait_for_the_writer() {
    use sqlx::Connection;
    let (url, dir) = sqlite_file();
    let store = Arc::new(SqlStore::connect(&url).await.unwrap());
    store.create_node(&suite::node("n", 8)).await.unwrap();
    let (vm, task) = suite::new_vm(None);
    let vm = store
        .create_vm(
            &vm,
            &task,
            &PlacementRequest { pinned: None, strategy: Strategy::Spread, only: None, group: None },
            None,
        )
        .await
        .unwrap();
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
    let writer = tokio::spawn({
        let store = store.clone();
        let vm = vm.clone();
        async move { store.update_vm(&vm).await }
    });
    for _ in 0..20 {
        let read = tokio::time::timeout(Duration::from_secs(5), store.get_vm(vm.id)).await;
        assert!(matches!(read, Ok(Ok(_))), "a read waited behind the writer: {read:?}");
        let listed = tokio::time::timeout(
            Duration::from_secs(5),
            store.list_tasks(&Default::default(), &PageRequest::default()),
        )
        .await;
        assert!(matches!(listed, Ok(Ok(_))), "a list waited behind the writer");
    }
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    writer.await.unwrap().expect("the write goes through once the lock is free");
    std::fs::remove_dir_all(dir).ok();
}

/// PostgreSQL claims skip rows another transaction has locked instead of waiting for them.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432; CI runs it"]
async fn postgres_claims_skip_locked_tasks() {
    use sqlx::Connection;
    let url = postgres_db().await;
    let store = SqlStore::connect(&url).await.unwrap();
    store.create_node(&suite::node("n", 8)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (vm, task) = suite::new_vm(None);
        store
            .create_vm(
                &vm,
                &task,
                &PlacementRequest { pinned: None, strategy: Strategy::Spread, only: None, group: None },
                None,
            )
            .await
            .unwrap();
        tasks.push(task.id);
    }
    let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut tx = other.begin().await.unwrap();
    sqlx::query("SELECT id FROM tasks WHERE id = $1 FOR UPDATE")
        .bind(tasks[0].to_string())
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let claimed = tokio::time::timeout(
        Duration::from_secs(10),
        store.claim_task("w", Utc::now(), Duration::from_secs(60)),
    )
    .await
    .expect("the claim waited for a locked row")
    .unwrap()
    .expect("a task");
    assert_eq!(claimed.id, tasks[1], "the locked task is skipped, the next one taken");
    tx.rollback().await.unwrap();
    let next = store.claim_task("w", Utc::now(), Duration::from_secs(60)).await.unwrap().expect("a task");
    assert_eq!(next.id, tasks[0]);
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
