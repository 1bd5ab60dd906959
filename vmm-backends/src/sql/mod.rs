//! The [`Store`](vmm_core::Store) on SQL: SQLite (feature `sqlite`) and PostgreSQL (feature
//! `postgres`), through sqlx's `Any` driver with queries checked at run time, so building
//! needs no database. One implementation serves both; where their SQL differs, a
//! [`Dialect`] says how (how a write transaction begins, how rows are locked, how a claim
//! skips locked rows, what the database's clock reads). Each area's sub-trait is
//! implemented in a file of that area.
//!
//! Correctness lives in the database: a lease's address is its primary key within its pool;
//! at most one active task per VM is a partial unique index; a node's URI is unique; every
//! method is one transaction (`BEGIN IMMEDIATE` on SQLite, so that writers queue instead of
//! failing to upgrade a lock; row locks on PostgreSQL, with `FOR UPDATE SKIP LOCKED` when
//! claiming tasks). SQLite has one writer connection and a pool of read-only readers (WAL),
//! so reads never wait behind a write. Task leases expire by the database's clock.

mod audit;
mod backups;
mod consoles;
mod events;
mod ha;
mod idempotency;
mod images;
mod ipam;
mod migrations;
mod networks;
mod nodes;
mod placement_groups;
mod recipes;
mod singletons;
mod snapshots;
mod ssh_keys;
mod statement;
mod tasks;
mod usage;
mod users;
mod vms;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use vmm_core::{Error, Page, PageRequest, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where the SQL of the two databases differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// Opens a write transaction.
    fn begin(self) -> &'static str {
        match self {
            // Take the write lock at once: a deferred transaction that reads first and then
            // writes fails, rather than waits, when another writer came in between.
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }

    /// Appended to a read of rows the transaction will change.
    fn lock(self) -> &'static str {
        match self {
            // The transaction holds the database's write lock already.
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    /// Appended to the claim query: two workers never wait for, nor take, the same task.
    fn skip_locked(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The database's clock, in microseconds since the Unix epoch.
    fn now_us(self) -> &'static str {
        match self {
            Self::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS BIGINT)",
            Self::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
        }
    }
}

/// A store on SQLite or PostgreSQL.
#[derive(Debug)]
pub struct SqlStore {
    /// Reads. On SQLite a pool of read-only connections.
    read: AnyPool,
    /// Writes. On SQLite one connection: SQLite has one writer at a time anyway, and queueing
    /// for it here, in async code, beats waiting inside SQLite's busy handler, which under
    /// load let writers time out behind each other. On PostgreSQL the same pool as `read`.
    write: AnyPool,
    dialect: Dialect,
}

/// A write transaction.
type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A store URL as a short description without secrets, for errors.
fn shown(url: &str) -> String {
    crate::StoreConfig::describe(url)
}

fn bad_url(url: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid("database_url", format!("{}: {why}", shown(url)))
}

impl SqlStore {
    /// Opens `sqlite://PATH` (created if missing), `sqlite::memory:` or `postgres://…`, and
    /// brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        // One grammar for store URLs, whoever opens them.
        let config = crate::StoreConfig::parse(url)?;
        sqlx::any::install_default_drivers();
        match config {
            #[cfg(feature = "sqlite")]
            crate::StoreConfig::SqliteMemory => Self::sqlite("sqlite::memory:", true).await,
            #[cfg(feature = "sqlite")]
            crate::StoreConfig::Sqlite { path } => {
                Self::sqlite(&format!("sqlite://{}", path.display()), false).await
            }
            #[cfg(feature = "postgres")]
            crate::StoreConfig::Postgres { url } => Self::postgres(&url).await,
            _ => Err(bad_url(
                url,
                "expected sqlite://PATH, sqlite::memory: or postgres://… (of the features built in)",
            )),
        }
    }

    #[cfg(feature = "sqlite")]
    async fn sqlite(url: &str, memory: bool) -> Result<Self> {
        let single = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(if memory { sqlite_pragmas } else { sqlite_pragmas_wal });
        let write_url = if memory { url.to_owned() } else { format!("{url}?mode=rwc") };
        let write = single.connect(&write_url).await.map_err(|e| classify("sqlite", e))?;
        MIGRATOR.run(&write).await.map_err(|e| Error::backend("sqlite", e))?;
        // An in-memory database lives in its one connection: reads share it.
        let read = if memory {
            write.clone()
        } else {
            AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(sqlite_pragmas)
                .connect(&format!("{url}?mode=ro"))
                .await
                .map_err(|e| classify("sqlite", e))?
        };
        Ok(Self { read, write, dialect: Dialect::Sqlite })
    }

    #[cfg(feature = "postgres")]
    async fn postgres(url: &str) -> Result<Self> {
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| classify("postgres", e))?;
        MIGRATOR.run(&pool).await.map_err(|e| Error::backend("postgres", e))?;
        Ok(Self { read: pool.clone(), write: pool, dialect: Dialect::Postgres })
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.dialect.name()
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    fn err(&self, e: sqlx::Error) -> Error {
        classify(self.dialect.name(), e)
    }

    async fn begin(&self) -> Result<Tx> {
        self.write.begin_with(self.dialect.begin()).await.map_err(|e| self.err(e))
    }

    async fn commit(&self, tx: Tx) -> Result<()> {
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// The row `query` reads through `executor`, or `missing` when there is none.
    async fn row<'c, E>(
        &self,
        query: sqlx::query::Query<'c, sqlx::Any, sqlx::any::AnyArguments<'c>>,
        executor: E,
        missing: Error,
    ) -> Result<AnyRow>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        query.fetch_all(executor).await.map(first).map_err(|e| self.err(e))?.ok_or(missing)
    }

    /// A page of the JSON `record`s of `table`, newest first, keyset-paged by `id`, with the
    /// rows whose `column = value` for each of `only`. Only the conditions given are in the
    /// statement (each form then uses the index it has); every value is bound.
    async fn records<T: DeserializeOwned + Send>(
        &self,
        table: &'static str,
        only: &[(&'static str, String)],
        page: &PageRequest,
    ) -> Result<Page<T>> {
        let limit = page.limit()?;
        let before: Option<String> = page.cursor::<uuid::Uuid>()?.map(|c| c.to_string());
        let mut sql = format!("SELECT id, record FROM {table} WHERE TRUE");
        let mut values: Vec<String> = Vec::new();
        let conditions = only.iter().map(|(c, v)| (*c, "=", v.clone())).chain(before.map(|b| ("id", "<", b)));
        for (column, op, value) in conditions {
            values.push(value);
            sql.push_str(&format!(" AND {column} {op} ${}", values.len()));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", values.len() + 1));
        let mut query = sqlx::query(&sql);
        for v in values {
            query = query.bind(v);
        }
        let rows =
            query.bind(signed(limit as u64 + 1)).fetch_all(&self.read).await.map_err(|e| self.err(e))?;
        let items = rows
            .iter()
            .map(|r| Ok((r.text("id")?, from_json(&r.text("record")?)?)))
            .collect::<Result<Vec<(String, T)>>>()?;
        let page = Page::from_overfetch(items, limit, |(id, _)| id.clone());
        Ok(Page { items: page.items.into_iter().map(|(_, t)| t).collect(), next_cursor: page.next_cursor })
    }
}

/// Set on every SQLite connection.
#[cfg(feature = "sqlite")]
fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, std::result::Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000").await?;
        Ok(())
    })
}

/// Set on the writer of a SQLite file: write-ahead logging, so that readers never wait
/// for the writer.
#[cfg(feature = "sqlite")]
fn sqlite_pragmas_wal(
    conn: &mut sqlx::AnyConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, std::result::Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000").await?;
        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL").await?;
        Ok(())
    })
}

/// A sqlx error in its vmm category: lost connections are `Unavailable` (retryable). The
/// database's own message goes to the log (as the error's source), never to users.
fn classify(backend: &str, e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            tracing::warn!(backend, error = %e, "database unavailable");
            Error::unavailable(backend, "the database does not answer")
        }
        e => Error::backend(backend.to_owned(), e),
    }
}

/// The first row. Every query is stepped to its end (`fetch_all`, never `fetch_optional`)
/// so that SQLite resets the statement: a half-read statement keeps its connection's read
/// transaction open, and the connection would then see an old snapshot of the database.
fn first(rows: Vec<AnyRow>) -> Option<AnyRow> {
    rows.into_iter().next()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Times are RFC 3339 UTC text with microseconds, so that text order is time order.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(|e| Error::backend("sql", e))
}

/// A time from microseconds since the Unix epoch.
fn from_us(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::backend("sql", e))
}

fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::backend("sql", e))
}

/// An address as a key: 32 hex digits of its 128-bit value, so that text order is address
/// order.
fn key(n: u128) -> String {
    format!("{n:032x}")
}

fn unkey(s: &str) -> Result<u128> {
    u128::from_str_radix(s, 16).map_err(|e| Error::backend("sql", e))
}

/// Column reads with errors in vmm's terms.
trait Columns {
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    fn float(&self, column: &str) -> Result<f64>;
    /// A value parsed from text: an id, an address, a strum enum.
    fn parsed<T: FromStr>(&self, column: &str) -> Result<T> {
        let s = self.text(column)?;
        s.parse().map_err(|_| Error::backend("sql", format!("bad {column} {s:?} in the database")))
    }
}

impl Columns for AnyRow {
    fn text(&self, column: &str) -> Result<String> {
        self.try_get(column).map_err(|e| Error::backend("sql", e))
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.try_get(column).map_err(|e| Error::backend("sql", e))
    }
    fn int(&self, column: &str) -> Result<i64> {
        self.try_get(column).map_err(|e| Error::backend("sql", e))
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.try_get(column).map_err(|e| Error::backend("sql", e))
    }
    fn float(&self, column: &str) -> Result<f64> {
        self.try_get(column).map_err(|e| Error::backend("sql", e))
    }
}

/// A count or size column as an unsigned number.
fn unsigned(row: &AnyRow, column: &str) -> Result<u64> {
    u64::try_from(row.int(column)?).map_err(|e| Error::backend("sql", e))
}

/// An unsigned number for a BIGINT column.
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
