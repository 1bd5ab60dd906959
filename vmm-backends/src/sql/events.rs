//! [`EventStore`] on SQL, and the appending of events inside the other areas' transactions.
//!
//! An event's public id (`pos`) must only grow in the order readers can see events. On
//! SQLite there is one writer at a time, so an event is numbered as it is written, from a
//! counter row. On PostgreSQL transactions commit in any order, so an event is written
//! unnumbered and numbered later, in commit order, by whoever reads next: the numbering
//! transaction locks the counter row (so numberings follow one another) and numbers the
//! unnumbered events it can see, which are those already committed. An event committed
//! later is numbered later, with a larger id; none is ever numbered below one a reader has
//! seen. Writers never wait for each other on the counter.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use vmm_core::event::task_events;
use vmm_core::{Event, EventFilter, EventStore, Result, Task, VmId};

use super::statement::{Bound, Statement};
use super::{first, from_json, to_json, ts, unsigned, Columns, Dialect, SqlStore, Tx};

/// The insert of events; [`SqlStore::event_rows`] are its values.
const INSERT_EVENTS: &str = "INSERT INTO events (id, pos, at, type, area, owner_id, record) ";

/// Events written by one statement at most.
const EVENTS_PER_STATEMENT: usize = 500;

impl SqlStore {
    /// Appends `events` in `tx`, the transaction of the change they record, in one
    /// statement per few hundred.
    pub(super) async fn emit(&self, tx: &mut Tx, mut events: Vec<Event>) -> Result<()> {
        for chunk in events.chunks_mut(EVENTS_PER_STATEMENT) {
            self.number_as_written(tx, chunk).await?;
            let mut insert = Statement::default();
            insert.sql(INSERT_EVENTS).values(self.event_rows(chunk)?);
            insert.execute(&mut **tx).await.map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Runs the statement `change` writes, with `events` (what it records) appended in the
    /// same transaction ([`events_first`](Self::events_first)).
    pub(super) async fn change_with_events(
        &self,
        tx: &mut Tx,
        events: Vec<Event>,
        change: impl FnOnce(&mut Statement) -> Result<()>,
    ) -> Result<()> {
        let mut statement = self.events_first(tx, events).await?;
        change(&mut statement)?;
        statement.execute(&mut **tx).await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A statement that appends `events` with the change written after it: on PostgreSQL it
    /// opens with `WITH e AS (INSERT INTO events …)` (one round trip for both); on SQLite,
    /// or for very many events, they are appended now and the statement starts empty.
    pub(super) async fn events_first(&self, tx: &mut Tx, events: Vec<Event>) -> Result<Statement> {
        let mut statement = Statement::default();
        if self.dialect == Dialect::Postgres && !events.is_empty() && events.len() <= EVENTS_PER_STATEMENT {
            statement.cte("e").sql(INSERT_EVENTS).values(self.event_rows(&events)?).sql(") ");
        } else {
            self.emit(tx, events).await?;
        }
        Ok(statement)
    }

    /// Numbers `events` from the counter (SQLite, where there is one writer at a time).
    async fn number_as_written(&self, tx: &mut Tx, events: &mut [Event]) -> Result<()> {
        if self.dialect != Dialect::Sqlite {
            return Ok(());
        }
        let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let row = sqlx::query("UPDATE event_counter SET last = last + $1 RETURNING last")
            .bind(n)
            .fetch_all(&mut **tx)
            .await
            .map(first)
            .map_err(|e| self.err(e))?;
        let last = row.map(|r| r.int("last")).transpose()?.unwrap_or_default();
        for (event, pos) in events.iter_mut().zip(last - n + 1..) {
            event.id = u64::try_from(pos).unwrap_or_default();
        }
        Ok(())
    }

    /// The rows of `events` for [`INSERT_EVENTS`]. On PostgreSQL they go unnumbered, to
    /// be numbered in commit order (see above).
    fn event_rows(&self, events: &[Event]) -> Result<Vec<[Bound; 7]>> {
        events
            .iter()
            .map(|event| {
                let pos =
                    (self.dialect == Dialect::Sqlite).then(|| i64::try_from(event.id).unwrap_or(i64::MAX));
                Ok([
                    uuid::Uuid::now_v7().to_string().into(),
                    pos.into(),
                    ts(event.at).into(),
                    event.kind.as_str().into(),
                    event.kind.area().to_string().into(),
                    event.owner_id.map(|o| o.to_string()).into(),
                    to_json(event)?.into(),
                ])
            })
            .collect()
    }

    /// Appends the events of a task's change from `before` (none: it is new) to `after`.
    pub(super) async fn task_changed(&self, tx: &mut Tx, before: Option<&Task>, after: &Task) -> Result<()> {
        let events = self.task_events(tx, &[(before, after)]).await?;
        self.emit(tx, events).await
    }

    /// The events of tasks' changes, each from `before` (none: it is new) to `after`, named
    /// after their VMs as `tx` sees them (read in one query).
    pub(super) async fn task_events(
        &self,
        tx: &mut Tx,
        changes: &[(Option<&Task>, &Task)],
    ) -> Result<Vec<Event>> {
        let now = Utc::now();
        let eventful: Vec<_> = changes
            .iter()
            .filter(|(before, after)| !task_events(*before, after, None, now).is_empty())
            .collect();
        let vms: BTreeSet<String> =
            eventful.iter().filter_map(|(_, after)| after.vm_id).map(|v| v.to_string()).collect();
        let mut names = HashMap::new();
        if !vms.is_empty() {
            let mut query = Statement::default();
            query.sql("SELECT id, name FROM vms WHERE id IN ").row(vms.into_iter().map(Bound::from));
            for row in query.fetch_all(&mut **tx).await.map_err(|e| self.err(e))? {
                names.insert(row.parsed::<VmId>("id")?, row.text("name")?);
            }
        }
        Ok(eventful
            .into_iter()
            .flat_map(|(before, after)| {
                let name = after.vm_id.and_then(|v| names.get(&v)).map(String::as_str);
                task_events(*before, after, name, now)
            })
            .collect())
    }

    /// Numbers the events committed since the last numbering (PostgreSQL).
    async fn number_events(&self) -> Result<()> {
        if self.dialect != Dialect::Postgres {
            return Ok(());
        }
        let waiting = sqlx::query("SELECT id FROM events WHERE pos IS NULL LIMIT 1")
            .fetch_all(&self.read)
            .await
            .map_err(|e| self.err(e))?;
        if waiting.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT last FROM event_counter FOR UPDATE")
            .fetch_all(&mut *tx)
            .await
            .map(first)
            .map_err(|e| self.err(e))?;
        let last = row.map(|r| r.int("last")).transpose()?.unwrap_or_default();
        // Each statement sees what was committed when it began: the rows numbered are
        // exactly the committed unnumbered ones, in the order they were written.
        let numbered = sqlx::query(
            "UPDATE events SET pos = $1 + todo.n FROM \
             (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM events WHERE pos IS NULL) AS todo \
             WHERE events.id = todo.id",
        )
        .bind(last)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?
        .rows_affected();
        sqlx::query("UPDATE event_counter SET last = last + $1")
            .bind(i64::try_from(numbered).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await
    }
}

fn event(r: &AnyRow) -> Result<Event> {
    let mut e: Event = from_json(&r.text("record")?)?;
    e.id = unsigned(r, "pos")?;
    Ok(e)
}

#[async_trait]
impl EventStore for SqlStore {
    async fn list_events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>> {
        self.number_events().await?;
        // Fixed clauses only; every value is bound.
        let mut sql = String::from("SELECT pos, record FROM events WHERE pos > $1");
        let mut binds: Vec<String> = Vec::new();
        let bind = |binds: &mut Vec<String>, value: String| {
            binds.push(value);
            format!("${}", binds.len() + 1)
        };
        if !filter.types.is_empty() {
            let terms: Vec<String> = filter
                .types
                .iter()
                .map(|p| match p.as_str().strip_suffix('*') {
                    Some("") => "TRUE".to_owned(),
                    Some(prefix) => format!("type LIKE {}", bind(&mut binds, format!("{prefix}%"))),
                    None => format!("type = {}", bind(&mut binds, p.as_str().to_owned())),
                })
                .collect();
            sql.push_str(&format!(" AND ({})", terms.join(" OR ")));
        }
        if let Some((areas, user)) = &filter.reader {
            let mut terms: Vec<String> =
                areas.iter().map(|a| format!("area = {}", bind(&mut binds, a.to_string()))).collect();
            terms.push(format!("owner_id = {}", bind(&mut binds, user.to_string())));
            sql.push_str(&format!(" AND ({})", terms.join(" OR ")));
        }
        sql.push_str(&format!(" ORDER BY pos LIMIT {limit}"));
        let mut query = sqlx::query(&sql).bind(i64::try_from(filter.after).unwrap_or(i64::MAX));
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.read).await.map_err(|e| self.err(e))?;
        rows.iter().map(event).collect()
    }

    async fn last_event_id(&self) -> Result<u64> {
        self.number_events().await?;
        let row = sqlx::query("SELECT last FROM event_counter")
            .fetch_all(&self.read)
            .await
            .map(first)
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| unsigned(&r, "last")).transpose()?.unwrap_or_default())
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64> {
        // Through the index on `at`: the cost is what is pruned. Unnumbered events stay
        // until they are numbered.
        let done = sqlx::query("DELETE FROM events WHERE at < $1 AND pos IS NOT NULL")
            .bind(ts(before))
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected())
    }
}
