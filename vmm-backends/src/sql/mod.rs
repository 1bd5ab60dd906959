//! The [`Store`] on SQL: SQLite (feature `sqlite`) and PostgreSQL (feature `postgres`), through
//! sqlx with queries checked at run time, so building needs no database.
//!
//! Correctness lives in the database: a lease's address is its primary key within its pool;
//! at most one active task per VM is a partial unique index; every method is one transaction
//! (`BEGIN IMMEDIATE` on SQLite, so that writers queue instead of failing to upgrade a lock;
//! row locks on PostgreSQL, with `FOR UPDATE SKIP LOCKED` when claiming tasks). The free
//! addresses of a pool are kept as intervals, so the next free one is the first row of an
//! index scan: O(log n) in the leases, whatever the pool's size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::Row;
use vmm_core::placement::{self, Demand, Rejection};
use vmm_core::{
    Capacity, Error, IpLease, IpPool, Node, NodeId, NodeState, Page, PageRequest, PlacementRequest, PoolId,
    Result, Store, Task, TaskFilter, TaskId, TaskLease, TaskState, Usage, Vm, VmAction, VmId,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A store on SQLite or PostgreSQL.
#[derive(Debug)]
pub struct SqlStore {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    #[cfg(feature = "sqlite")]
    Sqlite(Sql<sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(Sql<sqlx::Postgres>),
}

#[derive(Debug)]
struct Sql<DB: sqlx::Database> {
    /// Reads.
    pool: sqlx::Pool<DB>,
    /// Writes. On SQLite one connection: SQLite has one writer at a time anyway, and queueing
    /// for it here, in async code, beats waiting inside SQLite's busy handler, which under
    /// load let writers time out behind each other. On PostgreSQL the same pool as `pool`.
    writer: sqlx::Pool<DB>,
    name: &'static str,
}

fn bad_url(url: &str, why: impl std::fmt::Display) -> Error {
    let shown = url.split('@').next_back().unwrap_or_default();
    Error::invalid("database_url", format!("{shown}: {why}"))
}

impl SqlStore {
    /// Opens `sqlite://PATH` (created if missing), `sqlite::memory:` or `postgres://…`, and
    /// brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        // One grammar for store URLs, whoever opens them.
        crate::StoreConfig::parse(url)?;
        #[cfg(feature = "sqlite")]
        if url.starts_with("sqlite:") {
            use sqlx::sqlite::{
                SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
            };
            use std::str::FromStr;
            let memory = url.contains(":memory:");
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| bad_url(url, e))?
                .create_if_missing(true)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let options = if memory {
                options
            } else {
                options.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal)
            };
            let single = || {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(Duration::from_secs(30))
            };
            let writer = single().connect_with(options.clone()).await.map_err(|e| classify("sqlite", e))?;
            MIGRATOR.run(&writer).await.map_err(|e| Error::backend("sqlite", e))?;
            // An in-memory database lives in its one connection: reads share it.
            let pool = if memory {
                writer.clone()
            } else {
                SqlitePoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options.read_only(true))
                    .await
                    .map_err(|e| classify("sqlite", e))?
            };
            return Ok(Self { inner: Inner::Sqlite(Sql { pool, writer, name: "sqlite" }) });
        }
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
            use std::str::FromStr;
            let options = PgConnectOptions::from_str(url).map_err(|e| bad_url(url, e))?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|e| classify("postgres", e))?;
            MIGRATOR.run(&pool).await.map_err(|e| Error::backend("postgres", e))?;
            return Ok(Self { inner: Inner::Postgres(Sql { writer: pool.clone(), pool, name: "postgres" }) });
        }
        Err(bad_url(
            url,
            "expected sqlite://PATH, sqlite::memory: or postgres://… (of the features built in)",
        ))
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &self.inner {
            #[cfg(feature = "sqlite")]
            Inner::Sqlite(s) => s.name,
            #[cfg(feature = "postgres")]
            Inner::Postgres(s) => s.name,
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match &self.inner {
            #[cfg(feature = "sqlite")]
            Inner::Sqlite(s) => {
                s.pool.close().await;
                s.writer.close().await;
            }
            #[cfg(feature = "postgres")]
            Inner::Postgres(s) => s.writer.close().await,
        }
    }
}

/// Which nodes to read.
#[derive(Debug, Clone, Copy)]
enum Nodes {
    One(NodeId),
    All,
    Page { before: Option<NodeId>, limit: usize },
}

/// A sqlx error in its vmm category: lost connections are `Unavailable` (retryable).
fn classify(backend: &str, e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            Error::Unavailable { backend: backend.to_owned(), reason: e.to_string() }
        }
        e => Error::backend(backend.to_owned(), e),
    }
}

/// The first row. Every query is stepped to its end (`fetch_all`) so that SQLite resets the
/// statement: a half-read statement keeps its connection's transaction open, and a write on
/// that connection would then hold the database's write lock while it idles in the pool.
fn first<R>(rows: Vec<R>) -> Option<R> {
    rows.into_iter().next()
}

/// The one row an aggregate returns.
fn only<R>(rows: Vec<R>) -> std::result::Result<R, sqlx::Error> {
    rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(|e| Error::backend("sql", e))
}

/// A serde enum as the text it serializes to (`running`, `kvm`…).
fn text<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

fn from_text<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| Error::backend("sql", e))
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::backend("sql", e))
}

fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::backend("sql", e))
}

fn addr_value(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn key(n: u128) -> String {
    format!("{n:032x}")
}

fn unkey(s: &str) -> Result<u128> {
    u128::from_str_radix(s, 16).map_err(|e| Error::backend("sql", e))
}

fn addr(n: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

fn id<T: std::str::FromStr>(s: &str) -> Result<T> {
    s.parse().map_err(|_| Error::backend("sql", format!("bad id {s:?} in the database")))
}

/// Implements the store's operations for one database. `$begin` opens a write
/// transaction; `$lock` is appended to row reads that must lock; `$skip` to the claim query.
macro_rules! sql_impl {
    ($db:ty, $begin:literal, $lock:literal, $skip:literal) => {
        impl Sql<$db> {
            fn err(&self, e: sqlx::Error) -> Error {
                classify(self.name, e)
            }

            async fn begin(&self) -> Result<sqlx::Transaction<'static, $db>> {
                self.writer.begin_with($begin).await.map_err(|e| self.err(e))
            }

            async fn commit(&self, tx: sqlx::Transaction<'static, $db>) -> Result<()> {
                tx.commit().await.map_err(|e| self.err(e))
            }

            /// What the VMs of the nodes with ids from `lo` to `hi` have taken.
            async fn usage(&self, c: &mut <$db as sqlx::Database>::Connection, lo: &str, hi: &str) -> Result<std::collections::HashMap<NodeId, Usage>> {
                let rows = sqlx::query(
                    "SELECT node_id, COUNT(*) AS n, CAST(COALESCE(SUM(vcpus), 0) AS BIGINT) AS vcpus, \
                     CAST(COALESCE(SUM(memory_mib), 0) AS BIGINT) AS memory_mib, \
                     CAST(COALESCE(SUM(disk_gib), 0) AS BIGINT) AS disk_gib FROM vms \
                     WHERE node_id >= $1 AND node_id <= $2 GROUP BY node_id",
                )
                .bind(lo)
                .bind(hi)
                .fetch_all(&mut *c)
                .await
                .map_err(|e| self.err(e))?;
                let mut out = std::collections::HashMap::new();
                for r in rows {
                    let node: String = r.try_get("node_id").map_err(|e| self.err(e))?;
                    let get = |k: &str| r.try_get::<i64, _>(k).map(|v| v as u64);
                    let u = Usage {
                        vms: get("n").map_err(|e| self.err(e))?,
                        vcpus: get("vcpus").map_err(|e| self.err(e))?,
                        memory_mib: get("memory_mib").map_err(|e| self.err(e))?,
                        storage_gib: get("disk_gib").map_err(|e| self.err(e))?,
                    };
                    out.insert(id(&node)?, u);
                }
                Ok(out)
            }

            fn node(&self, r: &<$db as sqlx::Database>::Row) -> Result<Node> {
                let s = |k: &str| r.try_get::<String, _>(k).map_err(|e| self.err(e));
                let n = |k: &str| r.try_get::<i64, _>(k).map_err(|e| self.err(e));
                let f = |k: &str| r.try_get::<f64, _>(k).map_err(|e| self.err(e));
                Ok(Node {
                    id: id(&s("id")?)?,
                    name: s("name")?,
                    uri: s("uri")?,
                    virt_type: from_text(&s("virt_type")?)?,
                    capacity: Capacity {
                        cpus: n("cpus")? as u32,
                        memory_mib: n("memory_mib")? as u64,
                        storage_gib: n("storage_gib")? as u64,
                    },
                    cpu_overcommit: f("cpu_overcommit")?,
                    memory_overcommit: f("memory_overcommit")?,
                    state: from_text(&s("state")?)?,
                    allocated: Usage::default(),
                    created_at: parse_ts(&s("created_at")?)?,
                })
            }

            /// Nodes with their usage: one, a page (newest first), or all (oldest first).
            async fn nodes(&self, c: &mut <$db as sqlx::Database>::Connection, which: Nodes) -> Result<Vec<Node>> {
                let rows = match which {
                    Nodes::One(n) => sqlx::query("SELECT * FROM nodes WHERE id = $1").bind(n.to_string()).fetch_all(&mut *c).await,
                    Nodes::All => sqlx::query("SELECT * FROM nodes ORDER BY id").fetch_all(&mut *c).await,
                    Nodes::Page { before: Some(b), limit } => {
                        sqlx::query("SELECT * FROM nodes WHERE id < $1 ORDER BY id DESC LIMIT $2")
                            .bind(b.to_string())
                            .bind(limit as i64)
                            .fetch_all(&mut *c)
                            .await
                    }
                    Nodes::Page { before: None, limit } => {
                        sqlx::query("SELECT * FROM nodes ORDER BY id DESC LIMIT $1").bind(limit as i64).fetch_all(&mut *c).await
                    }
                }
                .map_err(|e| self.err(e))?;
                let mut nodes = rows.iter().map(|r| self.node(r)).collect::<Result<Vec<_>>>()?;
                // The nodes read are consecutive in id order: their usage is one range query.
                let ids: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
                if let (Some(lo), Some(hi)) = (ids.iter().min(), ids.iter().max()) {
                    let usage = self.usage(c, lo, hi).await?;
                    for n in &mut nodes {
                        n.allocated = usage.get(&n.id).copied().unwrap_or_default();
                    }
                }
                Ok(nodes)
            }

            fn vm(&self, r: &<$db as sqlx::Database>::Row) -> Result<Vm> {
                let s = |k: &str| r.try_get::<String, _>(k).map_err(|e| self.err(e));
                let n = |k: &str| r.try_get::<i64, _>(k).map_err(|e| self.err(e));
                let pool: Option<String> = r.try_get("ip_pool_id").map_err(|e| self.err(e))?;
                Ok(Vm {
                    id: id(&s("id")?)?,
                    name: s("name")?,
                    vcpus: n("vcpus")? as u32,
                    memory_mib: n("memory_mib")? as u64,
                    disk_gib: n("disk_gib")? as u64,
                    node_id: id(&s("node_id")?)?,
                    ip_pool_id: pool.as_deref().map(id).transpose()?,
                    state: from_text(&s("state")?)?,
                    addresses: from_json(&s("addresses")?)?,
                    created_at: parse_ts(&s("created_at")?)?,
                })
            }

            fn task(&self, r: &<$db as sqlx::Database>::Row) -> Result<Task> {
                let s = |k: &str| r.try_get::<String, _>(k).map_err(|e| self.err(e));
                let o = |k: &str| r.try_get::<Option<String>, _>(k).map_err(|e| self.err(e));
                let mut t: Task = from_json(&s("task")?)?;
                t.state = from_text(&s("state")?)?;
                t.cancel_requested = r.try_get::<bool, _>("cancel_requested").map_err(|e| self.err(e))?;
                t.lease = match (o("lease_owner")?, o("lease_expires")?) {
                    (Some(owner), Some(expires)) => Some(TaskLease { owner, expires_at: parse_ts(&expires)? }),
                    _ => None,
                };
                Ok(t)
            }

            async fn pool_row(&self, c: &mut <$db as sqlx::Database>::Connection, pool: PoolId) -> Result<IpPool> {
                let row = sqlx::query(concat!("SELECT pool FROM ip_pools WHERE id = $1", $lock))
                    .bind(pool.to_string())
                    .fetch_all(&mut *c)
                    .await
                        .map(first)
                    .map_err(|e| self.err(e))?
                    .ok_or(Error::PoolNotFound { id: pool })?;
                from_json(&row.try_get::<String, _>("pool").map_err(|e| self.err(e))?)
            }

            async fn add_interval(&self, c: &mut <$db as sqlx::Database>::Connection, pool: &str, start: u128, end: u128) -> Result<()> {
                sqlx::query("INSERT INTO ip_free (pool_id, start_key, end_key) VALUES ($1, $2, $3)")
                    .bind(pool)
                    .bind(key(start))
                    .bind(key(end))
                    .execute(&mut *c)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(())
            }

            async fn remove_interval(&self, c: &mut <$db as sqlx::Database>::Connection, pool: &str, start: u128) -> Result<()> {
                sqlx::query("DELETE FROM ip_free WHERE pool_id = $1 AND start_key = $2")
                    .bind(pool)
                    .bind(key(start))
                    .execute(&mut *c)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(())
            }

            /// Takes `address` (or the lowest free one) out of the pool's free intervals.
            async fn take(&self, c: &mut <$db as sqlx::Database>::Connection, p: &IpPool, address: Option<IpAddr>) -> Result<IpAddr> {
                let pool = p.id.to_string();
                let wanted = match address {
                    Some(a) => {
                        p.check_usable(a)?;
                        Some(addr_value(a))
                    }
                    None => None,
                };
                let row = match wanted {
                    Some(n) => sqlx::query(
                        "SELECT start_key, end_key FROM ip_free WHERE pool_id = $1 AND start_key <= $2 ORDER BY start_key DESC LIMIT 1",
                    )
                    .bind(&pool)
                    .bind(key(n))
                    .fetch_all(&mut *c)
                    .await.map(first),
                    None => sqlx::query("SELECT start_key, end_key FROM ip_free WHERE pool_id = $1 ORDER BY start_key LIMIT 1")
                        .bind(&pool)
                        .fetch_all(&mut *c)
                        .await.map(first),
                }
                .map_err(|e| self.err(e))?;
                let interval = match row {
                    Some(r) => {
                        let start = unkey(&r.try_get::<String, _>("start_key").map_err(|e| self.err(e))?)?;
                        let end = unkey(&r.try_get::<String, _>("end_key").map_err(|e| self.err(e))?)?;
                        Some((start, end))
                    }
                    None => None,
                };
                let (start, end, n) = match (interval, wanted, address) {
                    (Some((s, e)), Some(n), _) if n <= e => (s, e, n),
                    (_, Some(_), Some(a)) => return Err(Error::AddressInUse { pool: p.id, address: a }),
                    (Some((s, e)), None, _) => (s, e, s),
                    _ => return Err(Error::PoolExhausted { pool: p.id }),
                };
                self.remove_interval(c, &pool, start).await?;
                if start < n {
                    self.add_interval(c, &pool, start, n - 1).await?;
                }
                if n < end {
                    self.add_interval(c, &pool, n + 1, end).await?;
                }
                Ok(addr(n, p.is_v6()))
            }

            /// Gives `a` back to the pool's free intervals, merging with its neighbours.
            async fn give_back(&self, c: &mut <$db as sqlx::Database>::Connection, pool: PoolId, a: IpAddr) -> Result<()> {
                let pool = pool.to_string();
                let n = addr_value(a);
                let (mut start, mut end) = (n, n);
                // A free interval ending just below `a`, and one starting just above it.
                let below = match n.checked_sub(1) {
                    Some(prev) => sqlx::query("SELECT start_key FROM ip_free WHERE pool_id = $1 AND end_key = $2")
                        .bind(&pool)
                        .bind(key(prev))
                        .fetch_all(&mut *c)
                        .await
                        .map_err(|e| self.err(e))?
                        .first()
                        .map(|r| r.try_get::<String, _>("start_key"))
                        .transpose()
                        .map_err(|e| self.err(e))?,
                    None => None,
                };
                if let Some(s) = below {
                    start = unkey(&s)?;
                    self.remove_interval(c, &pool, start).await?;
                }
                if let Some(next) = n.checked_add(1) {
                    let above = sqlx::query("SELECT end_key FROM ip_free WHERE pool_id = $1 AND start_key = $2")
                        .bind(&pool)
                        .bind(key(next))
                        .fetch_all(&mut *c)
                        .await
                        .map_err(|e| self.err(e))?
                        .first()
                        .map(|r| r.try_get::<String, _>("end_key"))
                        .transpose()
                        .map_err(|e| self.err(e))?;
                    if let Some(e) = above {
                        end = unkey(&e)?;
                        self.remove_interval(c, &pool, next).await?;
                    }
                }
                self.add_interval(c, &pool, start, end).await?;
                Ok(())
            }

            async fn lease_in(
                &self,
                c: &mut <$db as sqlx::Database>::Connection,
                pool: PoolId,
                address: Option<IpAddr>,
                vm: Option<VmId>,
                now: DateTime<Utc>,
            ) -> Result<IpLease> {
                let p = self.pool_row(c, pool).await?;
                let a = self.take(c, &p, address).await?;
                sqlx::query("INSERT INTO ip_leases (pool_id, address_key, address, vm_id, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(pool.to_string())
                    .bind(key(addr_value(a)))
                    .bind(a.to_string())
                    .bind(vm.map(|v| v.to_string()))
                    .bind(ts(now))
                    .execute(&mut *c)
                    .await
                    .map_err(|e| if is_unique_violation(&e) { Error::AddressInUse { pool, address: a } } else { self.err(e) })?;
                Ok(IpLease { pool_id: pool, address: a, vm_id: vm, created_at: now })
            }

            async fn active_task_of(&self, vm: VmId) -> Result<Option<TaskId>> {
                let row = sqlx::query("SELECT id FROM tasks WHERE vm_id = $1 AND state IN ('queued', 'running')")
                    .bind(vm.to_string())
                    .fetch_all(&self.pool)
                    .await
                        .map(first)
                    .map_err(|e| self.err(e))?;
                row.map(|r| r.try_get::<String, _>("id").map_err(|e| self.err(e)).and_then(|s| id(&s))).transpose()
            }

            async fn insert_task(&self, c: &mut <$db as sqlx::Database>::Connection, t: &Task) -> std::result::Result<(), sqlx::Error> {
                sqlx::query(
                    "INSERT INTO tasks (id, vm_id, state, lease_owner, lease_expires, cancel_requested, task) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(t.id.to_string())
                .bind(t.vm_id.map(|v| v.to_string()))
                .bind(text(&t.state))
                .bind(t.lease.as_ref().map(|l| l.owner.clone()))
                .bind(t.lease.as_ref().map(|l| ts(l.expires_at)))
                .bind(t.cancel_requested)
                .bind(serde_json::to_string(t).unwrap_or_default())
                .execute(&mut *c)
                .await
                .map(drop)
            }

            async fn write_task(&self, c: &mut <$db as sqlx::Database>::Connection, t: &Task) -> Result<()> {
                sqlx::query("UPDATE tasks SET state = $2, lease_owner = $3, lease_expires = $4, task = $5 WHERE id = $1")
                    .bind(t.id.to_string())
                    .bind(text(&t.state))
                    .bind(t.lease.as_ref().map(|l| l.owner.clone()))
                    .bind(t.lease.as_ref().map(|l| ts(l.expires_at)))
                    .bind(to_json(t)?)
                    .execute(&mut *c)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(())
            }

            async fn task_row(&self, c: &mut <$db as sqlx::Database>::Connection, task: TaskId, lock: bool) -> Result<Task> {
                let q = if lock { concat!("SELECT * FROM tasks WHERE id = $1", $lock) } else { "SELECT * FROM tasks WHERE id = $1" };
                let row = sqlx::query(q)
                    .bind(task.to_string())
                    .fetch_all(&mut *c)
                    .await
                        .map(first)
                    .map_err(|e| self.err(e))?
                    .ok_or(Error::TaskNotFound { id: task })?;
                self.task(&row)
            }
        }

        #[async_trait]
        impl Store for Sql<$db> {
            async fn insert_node(&self, node: &Node) -> Result<()> {
                sqlx::query(
                    "INSERT INTO nodes (id, name, uri, virt_type, cpus, memory_mib, storage_gib, cpu_overcommit, \
                     memory_overcommit, state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(node.id.to_string())
                .bind(&node.name)
                .bind(&node.uri)
                .bind(text(&node.virt_type))
                .bind(i64::from(node.capacity.cpus))
                .bind(node.capacity.memory_mib as i64)
                .bind(node.capacity.storage_gib as i64)
                .bind(node.cpu_overcommit)
                .bind(node.memory_overcommit)
                .bind(text(&node.state))
                .bind(ts(node.created_at))
                .execute(&self.writer)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::conflict(format!("a node named {:?} exists", node.name))
                    } else {
                        self.err(e)
                    }
                })?;
                Ok(())
            }

            async fn get_node(&self, node: NodeId) -> Result<Node> {
                let mut c = self.pool.acquire().await.map_err(|e| self.err(e))?;
                self.nodes(&mut c, Nodes::One(node)).await?.pop().ok_or(Error::NodeNotFound { id: node })
            }

            async fn list_nodes(&self, page: &PageRequest) -> Result<Page<Node>> {
                let limit = page.limit()?;
                let before: Option<NodeId> = page.cursor()?;
                let mut c = self.pool.acquire().await.map_err(|e| self.err(e))?;
                let items = self.nodes(&mut c, Nodes::Page { before, limit: limit + 1 }).await?;
                Ok(Page::from_overfetch(items, limit, |n| n.id.to_string()))
            }

            async fn update_node(&self, node: &Node) -> Result<()> {
                let done = sqlx::query(
                    "UPDATE nodes SET name = $2, cpu_overcommit = $3, memory_overcommit = $4, state = $5, cpus = $6, \
                     memory_mib = $7, storage_gib = $8 WHERE id = $1",
                )
                .bind(node.id.to_string())
                .bind(&node.name)
                .bind(node.cpu_overcommit)
                .bind(node.memory_overcommit)
                .bind(text(&node.state))
                .bind(i64::from(node.capacity.cpus))
                .bind(node.capacity.memory_mib as i64)
                .bind(node.capacity.storage_gib as i64)
                .execute(&self.writer)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::conflict(format!("a node named {:?} exists", node.name))
                    } else {
                        self.err(e)
                    }
                })?;
                if done.rows_affected() == 0 {
                    return Err(Error::NodeNotFound { id: node.id });
                }
                Ok(())
            }

            async fn delete_node(&self, node: NodeId) -> Result<()> {
                let mut tx = self.begin().await?;
                let vms: i64 = sqlx::query("SELECT COUNT(*) AS n FROM vms WHERE node_id = $1")
                    .bind(node.to_string())
                    .fetch_all(&mut *tx)
                    .await.and_then(only)
                    .and_then(|r| r.try_get("n"))
                    .map_err(|e| self.err(e))?;
                if vms > 0 {
                    return Err(Error::conflict(format!("node {node} still has {vms} VMs")));
                }
                let done = sqlx::query("DELETE FROM nodes WHERE id = $1")
                    .bind(node.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
                if done.rows_affected() == 0 {
                    return Err(Error::NodeNotFound { id: node });
                }
                self.commit(tx).await
            }

            async fn insert_pool(&self, pool: &IpPool) -> Result<()> {
                let mut tx = self.begin().await?;
                sqlx::query("INSERT INTO ip_pools (id, name, pool) VALUES ($1, $2, $3)")
                    .bind(pool.id.to_string())
                    .bind(&pool.name)
                    .bind(to_json(pool)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            Error::conflict(format!("a pool named {:?} exists", pool.name))
                        } else {
                            self.err(e)
                        }
                    })?;
                for (start, end) in pool.usable_intervals() {
                    self.add_interval(&mut tx, &pool.id.to_string(), start, end).await?;
                }
                self.commit(tx).await
            }

            async fn get_pool(&self, pool: PoolId) -> Result<IpPool> {
                let mut c = self.pool.acquire().await.map_err(|e| self.err(e))?;
                let row = sqlx::query("SELECT pool FROM ip_pools WHERE id = $1")
                    .bind(pool.to_string())
                    .fetch_all(&mut *c)
                    .await
                        .map(first)
                    .map_err(|e| self.err(e))?
                    .ok_or(Error::PoolNotFound { id: pool })?;
                from_json(&row.try_get::<String, _>("pool").map_err(|e| self.err(e))?)
            }

            async fn list_pools(&self, page: &PageRequest) -> Result<Page<IpPool>> {
                let limit = page.limit()?;
                let before: Option<PoolId> = page.cursor()?;
                let rows = match before {
                    Some(b) => sqlx::query("SELECT pool FROM ip_pools WHERE id < $1 ORDER BY id DESC LIMIT $2")
                        .bind(b.to_string())
                        .bind((limit + 1) as i64)
                        .fetch_all(&self.pool)
                        .await,
                    None => sqlx::query("SELECT pool FROM ip_pools ORDER BY id DESC LIMIT $1")
                        .bind((limit + 1) as i64)
                        .fetch_all(&self.pool)
                        .await,
                }
                .map_err(|e| self.err(e))?;
                let items = rows
                    .iter()
                    .map(|r| from_json(&r.try_get::<String, _>("pool").map_err(|e| self.err(e))?))
                    .collect::<Result<Vec<IpPool>>>()?;
                Ok(Page::from_overfetch(items, limit, |p| p.id.to_string()))
            }

            async fn delete_pool(&self, pool: PoolId) -> Result<()> {
                let mut tx = self.begin().await?;
                self.pool_row(&mut tx, pool).await?;
                let leases: i64 = sqlx::query("SELECT COUNT(*) AS n FROM ip_leases WHERE pool_id = $1")
                    .bind(pool.to_string())
                    .fetch_all(&mut *tx)
                    .await.and_then(only)
                    .and_then(|r| r.try_get("n"))
                    .map_err(|e| self.err(e))?;
                if leases > 0 {
                    return Err(Error::conflict(format!("pool {pool} still has {leases} leases")));
                }
                for q in ["DELETE FROM ip_free WHERE pool_id = $1", "DELETE FROM ip_pools WHERE id = $1"] {
                    sqlx::query(q).bind(pool.to_string()).execute(&mut *tx).await.map_err(|e| self.err(e))?;
                }
                self.commit(tx).await
            }

            async fn allocate_lease(&self, pool: PoolId, address: Option<IpAddr>, vm: Option<VmId>, now: DateTime<Utc>) -> Result<IpLease> {
                let mut tx = self.begin().await?;
                let lease = self.lease_in(&mut tx, pool, address, vm, now).await?;
                self.commit(tx).await?;
                Ok(lease)
            }

            async fn release_lease(&self, pool: PoolId, address: IpAddr) -> Result<()> {
                let mut tx = self.begin().await?;
                self.pool_row(&mut tx, pool).await?;
                let row = sqlx::query("SELECT vm_id FROM ip_leases WHERE pool_id = $1 AND address_key = $2")
                    .bind(pool.to_string())
                    .bind(key(addr_value(address)))
                    .fetch_all(&mut *tx)
                    .await
                        .map(first)
                    .map_err(|e| self.err(e))?
                    .ok_or(Error::LeaseNotFound { pool, address })?;
                if let Some(vm) = row.try_get::<Option<String>, _>("vm_id").map_err(|e| self.err(e))? {
                    return Err(Error::conflict(format!("{address} is held by VM {vm}")));
                }
                sqlx::query("DELETE FROM ip_leases WHERE pool_id = $1 AND address_key = $2")
                    .bind(pool.to_string())
                    .bind(key(addr_value(address)))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
                self.give_back(&mut tx, pool, address).await?;
                self.commit(tx).await
            }

            async fn list_leases(&self, pool: PoolId, page: &PageRequest) -> Result<Page<IpLease>> {
                let limit = page.limit()?;
                let after: Option<IpAddr> = page.cursor()?;
                self.get_pool(pool).await?;
                let rows = sqlx::query(
                    "SELECT address, vm_id, created_at FROM ip_leases WHERE pool_id = $1 AND address_key > $2 \
                     ORDER BY address_key LIMIT $3",
                )
                .bind(pool.to_string())
                .bind(after.map(|a| key(addr_value(a))).unwrap_or_default())
                .bind((limit + 1) as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
                let items = rows
                    .iter()
                    .map(|r| {
                        let vm: Option<String> = r.try_get("vm_id").map_err(|e| self.err(e))?;
                        Ok(IpLease {
                            pool_id: pool,
                            address: r.try_get::<String, _>("address").map_err(|e| self.err(e))?.parse().map_err(|e| Error::backend("sql", e))?,
                            vm_id: vm.as_deref().map(id).transpose()?,
                            created_at: parse_ts(&r.try_get::<String, _>("created_at").map_err(|e| self.err(e))?)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Page::from_overfetch(items, limit, |l| l.address.to_string()))
            }

            async fn create_vm(&self, vm: &Vm, task: &Task, placement: PlacementRequest) -> Result<Vm> {
                let mut tx = self.begin().await?;
                // Two creates must not both take the last room on a node.
                sqlx::query(concat!("SELECT id FROM nodes", $lock)).fetch_all(&mut *tx).await.map_err(|e| self.err(e))?;
                let nodes = self.nodes(&mut tx, Nodes::All).await?;
                let demand = Demand { vcpus: vm.vcpus, memory_mib: vm.memory_mib, disk_gib: vm.disk_gib };
                let chosen = placement::place(&demand, &nodes, placement.strategy, placement.pinned)?;
                let mut vm = Vm { node_id: chosen.node_id, addresses: Vec::new(), ..vm.clone() };
                if let Some(pool) = vm.ip_pool_id {
                    vm.addresses.push(self.lease_in(&mut tx, pool, None, Some(vm.id), vm.created_at).await?.address);
                }
                sqlx::query(
                    "INSERT INTO vms (id, name, vcpus, memory_mib, disk_gib, node_id, ip_pool_id, state, addresses, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(vm.id.to_string())
                .bind(&vm.name)
                .bind(i64::from(vm.vcpus))
                .bind(vm.memory_mib as i64)
                .bind(vm.disk_gib as i64)
                .bind(vm.node_id.to_string())
                .bind(vm.ip_pool_id.map(|p| p.to_string()))
                .bind(text(&vm.state))
                .bind(to_json(&vm.addresses)?)
                .bind(ts(vm.created_at))
                .execute(&mut *tx)
                .await
                .map_err(|e| if is_unique_violation(&e) { Error::conflict(format!("VM {} exists", vm.id)) } else { self.err(e) })?;
                self.insert_task(&mut tx, task).await.map_err(|e| self.err(e))?;
                self.commit(tx).await?;
                Ok(vm)
            }

            async fn get_vm(&self, vm: VmId) -> Result<Vm> {
                let row = sqlx::query("SELECT * FROM vms WHERE id = $1")
                    .bind(vm.to_string())
                    .fetch_all(&self.pool)
                    .await
                        .map(first)
                    .map_err(|e| self.err(e))?
                    .ok_or(Error::VmNotFound { id: vm })?;
                self.vm(&row)
            }

            async fn list_vms(&self, page: &PageRequest) -> Result<Page<Vm>> {
                let limit = page.limit()?;
                let before: Option<VmId> = page.cursor()?;
                let rows = match before {
                    Some(b) => sqlx::query("SELECT * FROM vms WHERE id < $1 ORDER BY id DESC LIMIT $2")
                        .bind(b.to_string())
                        .bind((limit + 1) as i64)
                        .fetch_all(&self.pool)
                        .await,
                    None => sqlx::query("SELECT * FROM vms ORDER BY id DESC LIMIT $1").bind((limit + 1) as i64).fetch_all(&self.pool).await,
                }
                .map_err(|e| self.err(e))?;
                let items = rows.iter().map(|r| self.vm(r)).collect::<Result<Vec<_>>>()?;
                Ok(Page::from_overfetch(items, limit, |v| v.id.to_string()))
            }

            async fn update_vm(&self, vm: &Vm) -> Result<()> {
                let done = sqlx::query("UPDATE vms SET name = $2, state = $3 WHERE id = $1")
                    .bind(vm.id.to_string())
                    .bind(&vm.name)
                    .bind(text(&vm.state))
                    .execute(&self.writer)
                    .await
                    .map_err(|e| self.err(e))?;
                if done.rows_affected() == 0 {
                    return Err(Error::VmNotFound { id: vm.id });
                }
                Ok(())
            }

            async fn resize_vm(&self, vm: VmId, vcpus: u32, memory_mib: u64, disk_gib: u64) -> Result<Vm> {
                let mut tx = self.begin().await?;
                let row = sqlx::query("SELECT * FROM vms WHERE id = $1")
                    .bind(vm.to_string())
                    .fetch_all(&mut *tx)
                    .await
                        .map(first)
                    .map_err(|e| self.err(e))?
                    .ok_or(Error::VmNotFound { id: vm })?;
                let mut current = self.vm(&row)?;
                sqlx::query(concat!("SELECT id FROM nodes WHERE id = $1", $lock))
                    .bind(current.node_id.to_string())
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
                let mut node = self.nodes(&mut tx, Nodes::One(current.node_id)).await?.pop().ok_or(Error::NodeNotFound { id: current.node_id })?;
                node.allocated.vcpus -= u64::from(current.vcpus);
                node.allocated.memory_mib -= current.memory_mib;
                node.allocated.storage_gib -= current.disk_gib;
                // A node in maintenance still lets its VMs resize; only capacity counts here.
                node.state = NodeState::Online;
                if let Some(reason) = placement::check(&node, &Demand { vcpus, memory_mib, disk_gib }) {
                    return Err(Error::NoCapacity { rejections: vec![Rejection { node_id: node.id, node_name: node.name, reason }] });
                }
                sqlx::query("UPDATE vms SET vcpus = $2, memory_mib = $3, disk_gib = $4 WHERE id = $1")
                    .bind(vm.to_string())
                    .bind(i64::from(vcpus))
                    .bind(memory_mib as i64)
                    .bind(disk_gib as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
                self.commit(tx).await?;
                current.vcpus = vcpus;
                current.memory_mib = memory_mib;
                current.disk_gib = disk_gib;
                Ok(current)
            }

            async fn delete_vm(&self, vm: VmId) -> Result<()> {
                let mut tx = self.begin().await?;
                let leases = sqlx::query(concat!("SELECT pool_id, address FROM ip_leases WHERE vm_id = $1", $lock))
                    .bind(vm.to_string())
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
                for r in &leases {
                    let pool: PoolId = id(&r.try_get::<String, _>("pool_id").map_err(|e| self.err(e))?)?;
                    let a: IpAddr = r.try_get::<String, _>("address").map_err(|e| self.err(e))?.parse().map_err(|e| Error::backend("sql", e))?;
                    self.pool_row(&mut tx, pool).await?;
                    sqlx::query("DELETE FROM ip_leases WHERE pool_id = $1 AND address_key = $2")
                        .bind(pool.to_string())
                        .bind(key(addr_value(a)))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.err(e))?;
                    self.give_back(&mut tx, pool, a).await?;
                }
                let done = sqlx::query("DELETE FROM vms WHERE id = $1").bind(vm.to_string()).execute(&mut *tx).await.map_err(|e| self.err(e))?;
                if done.rows_affected() == 0 {
                    return Err(Error::VmNotFound { id: vm });
                }
                self.commit(tx).await
            }

            async fn enqueue_task(&self, task: &Task, action: Option<VmAction>) -> Result<()> {
                let mut tx = self.begin().await?;
                if let Some(vm) = task.vm_id {
                    let row = sqlx::query(concat!("SELECT * FROM vms WHERE id = $1", $lock))
                        .bind(vm.to_string())
                        .fetch_all(&mut *tx)
                        .await
                        .map(first)
                        .map_err(|e| self.err(e))?
                        .ok_or(Error::VmNotFound { id: vm })?;
                    let current = self.vm(&row)?;
                    let active = sqlx::query("SELECT id FROM tasks WHERE vm_id = $1 AND state IN ('queued', 'running')")
                        .bind(vm.to_string())
                        .fetch_all(&mut *tx)
                        .await
                        .map(first)
                        .map_err(|e| self.err(e))?;
                    if let Some(r) = active {
                        return Err(Error::ActiveTask { vm, task: id(&r.try_get::<String, _>("id").map_err(|e| self.err(e))?)? });
                    }
                    if let Some(action) = action {
                        current.state.apply(vm, action)?;
                    }
                }
                match self.insert_task(&mut tx, task).await {
                    Ok(()) => self.commit(tx).await,
                    Err(e) if is_unique_violation(&e) => {
                        drop(tx);
                        match task.vm_id {
                            Some(vm) => match self.active_task_of(vm).await? {
                                Some(active) => Err(Error::ActiveTask { vm, task: active }),
                                None => Err(Error::conflict(format!("task {} exists", task.id))),
                            },
                            None => Err(Error::conflict(format!("task {} exists", task.id))),
                        }
                    }
                    Err(e) => Err(self.err(e)),
                }
            }

            async fn get_task(&self, task: TaskId) -> Result<Task> {
                let mut c = self.pool.acquire().await.map_err(|e| self.err(e))?;
                self.task_row(&mut c, task, false).await
            }

            async fn list_tasks(&self, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>> {
                let limit = page.limit()?;
                let before: Option<TaskId> = page.cursor()?;
                // Fixed clauses only; every value is bound.
                let mut sql = String::from("SELECT * FROM tasks WHERE 1 = 1");
                let mut binds: Vec<String> = Vec::new();
                let mut clause = |sql: &mut String, column: &str, op: &str, value: String| {
                    binds.push(value);
                    sql.push_str(&format!(" AND {column} {op} ${}", binds.len()));
                };
                if let Some(vm) = filter.vm_id {
                    clause(&mut sql, "vm_id", "=", vm.to_string());
                }
                if let Some(state) = filter.state {
                    clause(&mut sql, "state", "=", text(&state));
                }
                if let Some(b) = before {
                    clause(&mut sql, "id", "<", b.to_string());
                }
                sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
                let mut q = sqlx::query(&sql);
                for b in &binds {
                    q = q.bind(b);
                }
                let rows = q.fetch_all(&self.pool).await.map_err(|e| self.err(e))?;
                let items = rows.iter().map(|r| self.task(r)).collect::<Result<Vec<_>>>()?;
                Ok(Page::from_overfetch(items, limit, |t| t.id.to_string()))
            }

            async fn claim_task(&self, owner: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<Option<Task>> {
                let mut tx = self.begin().await?;
                let row = sqlx::query(concat!(
                    "SELECT * FROM tasks WHERE state = 'queued' OR (state = 'running' AND (lease_expires IS NULL OR lease_expires <= $1)) \
                     ORDER BY id LIMIT 1",
                    $skip
                ))
                .bind(ts(now))
                .fetch_all(&mut *tx)
                .await
                        .map(first)
                .map_err(|e| self.err(e))?;
                let Some(row) = row else { return Ok(None) };
                let mut task = self.task(&row)?;
                task.claim(owner, now, until);
                self.write_task(&mut tx, &task).await?;
                self.commit(tx).await?;
                Ok(Some(task))
            }

            async fn renew_lease(&self, task: TaskId, owner: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<()> {
                let done = sqlx::query(
                    "UPDATE tasks SET lease_expires = $4 WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND lease_expires > $3",
                )
                .bind(task.to_string())
                .bind(owner)
                .bind(ts(now))
                .bind(ts(until))
                .execute(&self.writer)
                .await
                .map_err(|e| self.err(e))?;
                if done.rows_affected() == 0 {
                    self.get_task(task).await?;
                    return Err(Error::LeaseLost { task });
                }
                Ok(())
            }

            async fn save_task(&self, task: &Task, owner: &str, now: DateTime<Utc>) -> Result<()> {
                let mut tx = self.begin().await?;
                let stored = self.task_row(&mut tx, task.id, true).await?;
                if !stored.is_leased_by(owner, now) {
                    return Err(Error::LeaseLost { task: task.id });
                }
                let mut saved = task.clone();
                saved.lease = if saved.state.is_active() { stored.lease } else { None };
                self.write_task(&mut tx, &saved).await?;
                self.commit(tx).await
            }

            async fn cancel_task(&self, task: TaskId, now: DateTime<Utc>) -> Result<Task> {
                let mut tx = self.begin().await?;
                let mut t = self.task_row(&mut tx, task, true).await?;
                match t.state {
                    TaskState::Queued => {
                        t.state = TaskState::Cancelled;
                        t.finished_at = Some(now);
                        t.log(now, "cancelled before it started");
                        self.write_task(&mut tx, &t).await?;
                    }
                    TaskState::Running => {
                        t.cancel_requested = true;
                        sqlx::query("UPDATE tasks SET cancel_requested = TRUE WHERE id = $1")
                            .bind(task.to_string())
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| self.err(e))?;
                    }
                    state => return Err(Error::conflict(format!("task {task} has already {state}"))),
                }
                self.commit(tx).await?;
                Ok(t)
            }
        }
    };
}

#[cfg(feature = "sqlite")]
sql_impl!(sqlx::Sqlite, "BEGIN IMMEDIATE", "", "");
#[cfg(feature = "postgres")]
sql_impl!(sqlx::Postgres, "BEGIN", " FOR UPDATE", " FOR UPDATE SKIP LOCKED");

/// Forwards every `Store` method to the database in use.
macro_rules! forward {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.inner {
            #[cfg(feature = "sqlite")]
            Inner::Sqlite($s) => $call,
            #[cfg(feature = "postgres")]
            Inner::Postgres($s) => $call,
        }
    };
}

#[async_trait]
impl Store for SqlStore {
    async fn insert_node(&self, node: &Node) -> Result<()> {
        forward!(self, s => s.insert_node(node).await)
    }
    async fn get_node(&self, id: NodeId) -> Result<Node> {
        forward!(self, s => s.get_node(id).await)
    }
    async fn list_nodes(&self, page: &PageRequest) -> Result<Page<Node>> {
        forward!(self, s => s.list_nodes(page).await)
    }
    async fn update_node(&self, node: &Node) -> Result<()> {
        forward!(self, s => s.update_node(node).await)
    }
    async fn delete_node(&self, id: NodeId) -> Result<()> {
        forward!(self, s => s.delete_node(id).await)
    }
    async fn insert_pool(&self, pool: &IpPool) -> Result<()> {
        forward!(self, s => s.insert_pool(pool).await)
    }
    async fn get_pool(&self, id: PoolId) -> Result<IpPool> {
        forward!(self, s => s.get_pool(id).await)
    }
    async fn list_pools(&self, page: &PageRequest) -> Result<Page<IpPool>> {
        forward!(self, s => s.list_pools(page).await)
    }
    async fn delete_pool(&self, id: PoolId) -> Result<()> {
        forward!(self, s => s.delete_pool(id).await)
    }
    async fn allocate_lease(
        &self,
        pool: PoolId,
        address: Option<IpAddr>,
        vm: Option<VmId>,
        now: DateTime<Utc>,
    ) -> Result<IpLease> {
        forward!(self, s => s.allocate_lease(pool, address, vm, now).await)
    }
    async fn release_lease(&self, pool: PoolId, address: IpAddr) -> Result<()> {
        forward!(self, s => s.release_lease(pool, address).await)
    }
    async fn list_leases(&self, pool: PoolId, page: &PageRequest) -> Result<Page<IpLease>> {
        forward!(self, s => s.list_leases(pool, page).await)
    }
    async fn create_vm(&self, vm: &Vm, task: &Task, placement: PlacementRequest) -> Result<Vm> {
        forward!(self, s => s.create_vm(vm, task, placement).await)
    }
    async fn get_vm(&self, id: VmId) -> Result<Vm> {
        forward!(self, s => s.get_vm(id).await)
    }
    async fn list_vms(&self, page: &PageRequest) -> Result<Page<Vm>> {
        forward!(self, s => s.list_vms(page).await)
    }
    async fn update_vm(&self, vm: &Vm) -> Result<()> {
        forward!(self, s => s.update_vm(vm).await)
    }
    async fn resize_vm(&self, id: VmId, vcpus: u32, memory_mib: u64, disk_gib: u64) -> Result<Vm> {
        forward!(self, s => s.resize_vm(id, vcpus, memory_mib, disk_gib).await)
    }
    async fn delete_vm(&self, id: VmId) -> Result<()> {
        forward!(self, s => s.delete_vm(id).await)
    }
    async fn enqueue_task(&self, task: &Task, action: Option<VmAction>) -> Result<()> {
        forward!(self, s => s.enqueue_task(task, action).await)
    }
    async fn get_task(&self, id: TaskId) -> Result<Task> {
        forward!(self, s => s.get_task(id).await)
    }
    async fn list_tasks(&self, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>> {
        forward!(self, s => s.list_tasks(filter, page).await)
    }
    async fn claim_task(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Task>> {
        forward!(self, s => s.claim_task(owner, now, until).await)
    }
    async fn renew_lease(
        &self,
        id: TaskId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<()> {
        forward!(self, s => s.renew_lease(id, owner, now, until).await)
    }
    async fn save_task(&self, task: &Task, owner: &str, now: DateTime<Utc>) -> Result<()> {
        forward!(self, s => s.save_task(task, owner, now).await)
    }
    async fn cancel_task(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task> {
        forward!(self, s => s.cancel_task(id, now).await)
    }
}
