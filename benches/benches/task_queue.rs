//! The task queue on PostgreSQL: tasks per second through claim → run (a no-op) → finish,
//! with one and with two servers' stores (each its own connection pool, as two `vmmd`
//! would have), beside a raw `FOR UPDATE SKIP LOCKED` loop over a plain table (each worker
//! claims a task and finishes it: two transactions per task), measured in the same run.
//!
//! vmm's workers claim as the engine does: one store call at a time records every run that
//! has ended and fills every free slot, in one transaction (a group commit). A claim
//! writes the task's JSON, its lease and fence and its `task.started` event; an end
//! re-reads the row under lock, checks the fence and lease, writes the task and its
//! `task.succeeded` event. The raw loop only flips a state column, in two transactions.
//!
//! `cargo bench -p vmm-benches --bench task_queue`; `TASK_QUEUE_TASKS` sets the count,
//! `TASK_QUEUE_ROUNDS` the rounds (5).
//! Skipped when PostgreSQL does not answer on 127.0.0.1:5432. In `cargo test` mode a few
//! hundred tasks only check that it runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::{PgPool, Row};
use tokio::task::JoinSet;
use vmm_backends::SqlStore;
use vmm_core::{Finished, Store, Task, TaskKind, TaskParams, TaskState};

/// Tasks run at once per server (the raw loop's workers, vmm's worker slots).
const WORKERS: usize = 16;

/// Tasks per second for `tasks` tasks through `servers` stores on a fresh database.
async fn through_vmm(tasks: usize, servers: usize) -> f64 {
    let url = vmm_benches::fresh_postgres_db().await.expect("PostgreSQL");
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..servers {
        stores.push(Arc::new(SqlStore::connect(&url).await.expect("the store")));
    }
    for _ in 0..tasks {
        let task = Task::new(TaskKind::Reconcile, None, TaskParams::Reconcile { dry_run: true }, Utc::now());
        stores[0].enqueue_task(&task, None).await.expect("enqueue");
    }
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut servers = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        let (store, done) = (store.clone(), done.clone());
        servers.push(tokio::spawn(serve(store, format!("server-{s}"), done)));
    }
    for s in servers {
        s.await.expect("a server");
    }
    let elapsed = started.elapsed();
    assert_eq!(done.load(Ordering::Relaxed), tasks, "every task once");
    drop(stores);
    vmm_benches::drop_postgres_db(&url).await;
    tasks as f64 / elapsed.as_secs_f64()
}

/// One server's worker loop, as `Vmm::run_workers` does it: one store call at a time records
/// every run that has ended and fills every free slot of `WORKERS` in one transaction (the
/// ends that come while it is on its way go together in the next); each claimed task runs
/// (a no-op) on the runtime and hands its end back.
async fn serve(store: Arc<dyn Store>, name: String, done: Arc<AtomicUsize>) {
    let mut calls: JoinSet<(Finished, usize, usize)> = JoinSet::new();
    let mut runs: JoinSet<(Task, u64)> = JoinSet::new();
    let (mut ends, mut idle) = (Vec::new(), false);
    loop {
        let free = WORKERS - runs.len();
        if calls.is_empty() && (!ends.is_empty() || (free > 0 && !idle)) {
            let (store, name, batch) = (store.clone(), name.clone(), std::mem::take(&mut ends));
            calls.spawn(async move {
                let lease = Duration::from_secs(60);
                let finished = store.finish_and_claim(&batch, &name, Utc::now(), lease, free).await;
                (finished.expect("finish"), batch.len(), free)
            });
            continue;
        }
        if calls.is_empty() && runs.is_empty() {
            return;
        }
        tokio::select! {
            Some(call) = calls.join_next() => {
                let (finished, recorded, asked) = call.expect("a store call");
                assert!(finished.saved.iter().all(Result::is_ok), "every end recorded");
                done.fetch_add(recorded, Ordering::Relaxed);
                idle = finished.claimed.len() < asked;
                for mut task in finished.claimed {
                    runs.spawn(async move {
                        // The job: nothing.
                        let fence = task.fence();
                        task.state = TaskState::Succeeded;
                        task.progress = 100;
                        task.finished_at = Some(Utc::now());
                        (task, fence)
                    });
                }
            }
            Some(run) = runs.join_next() => ends.push(run.expect("a run")),
        }
    }
}

/// The same through a raw loop: claim with `FOR UPDATE SKIP LOCKED`, then finish.
async fn raw_loop(tasks: usize) -> f64 {
    let url = vmm_benches::fresh_postgres_db().await.expect("PostgreSQL");
    let pool = PgPool::connect(&url).await.expect("a pool");
    sqlx::query("CREATE TABLE raw_tasks (id BIGSERIAL PRIMARY KEY, state TEXT NOT NULL, owner TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE INDEX raw_tasks_queued ON raw_tasks (id) WHERE state = 'queued'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO raw_tasks (state) SELECT 'queued' FROM generate_series(1, $1)")
        .bind(i64::try_from(tasks).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (pool, done) = (pool.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let owner = format!("worker-{w}");
            loop {
                let mut tx = pool.begin().await.unwrap();
                let row = sqlx::query(
                    "SELECT id FROM raw_tasks WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                )
                .fetch_optional(&mut *tx)
                .await
                .unwrap();
                let Some(row) = row else { break };
                let id: i64 = row.get("id");
                sqlx::query("UPDATE raw_tasks SET state = 'running', owner = $2 WHERE id = $1")
                    .bind(id)
                    .bind(&owner)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                sqlx::query("UPDATE raw_tasks SET state = 'succeeded' WHERE id = $1 AND owner = $2")
                    .bind(id)
                    .bind(&owner)
                    .execute(&pool)
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(done.load(Ordering::Relaxed), tasks);
    pool.close().await;
    vmm_benches::drop_postgres_db(&url).await;
    tasks as f64 / elapsed.as_secs_f64()
}

/// The median of `xs`.
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let number =
        |var: &str, default: usize| std::env::var(var).ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    // A disk's fsync time wanders: rounds of the three, interleaved, and their medians.
    let (tasks, rounds) =
        if benching { (number("TASK_QUEUE_TASKS", 5000), number("TASK_QUEUE_ROUNDS", 5)) } else { (200, 1) };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match rt.block_on(vmm_benches::fresh_postgres_db()) {
        Some(url) => rt.block_on(vmm_benches::drop_postgres_db(&url)),
        None => {
            println!("task_queue: skipped (no PostgreSQL on 127.0.0.1:5432)");
            return;
        }
    }
    let (mut raw, mut one, mut two) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(rt.block_on(raw_loop(tasks)));
        one.push(rt.block_on(through_vmm(tasks, 1)));
        two.push(rt.block_on(through_vmm(tasks, 2)));
    }
    let ratios = |xs: &[f64]| median(&xs.iter().zip(&raw).map(|(x, r)| x / r).collect::<Vec<_>>());
    let range = |xs: &[f64]| {
        let (lo, hi) = xs.iter().fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        format!("{lo:.0}–{hi:.0}")
    };
    println!(
        "task_queue: {tasks} tasks, claim → no-op → finish on PostgreSQL, {WORKERS} slots per server, \
         median of {rounds} interleaved rounds (range; median of the per-round ratios)"
    );
    println!("  raw FOR UPDATE SKIP LOCKED loop   {:>8.0} tasks/s  ({})", median(&raw), range(&raw));
    println!(
        "  vmm, one server                   {:>8.0} tasks/s  ({}; {:.2}x raw)",
        median(&one),
        range(&one),
        ratios(&one)
    );
    println!(
        "  vmm, two servers                  {:>8.0} tasks/s  ({}; {:.2}x raw)",
        median(&two),
        range(&two),
        ratios(&two)
    );
}
