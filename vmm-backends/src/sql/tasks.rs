//! [`TaskStore`] on SQL. The columns (`state`, `lease_owner`, `fence`, `lease_until_us`,
//! `cancel_requested`) are authoritative over the task's JSON. Leases are judged by the
//! database's clock (`Dialect::now_us`), and only the run holding the current fence may
//! renew a lease or save the task.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use vmm_core::{
    Error, Event, Finished, Page, PageRequest, Result, Task, TaskFilter, TaskId, TaskLease, TaskState,
    TaskStore, UserId, VmAction, VmId,
};

use super::statement::{Bound, Statement};
use super::{
    first, from_json, from_us, is_unique_violation, signed, to_json, unsigned, Columns, Dialect, SqlStore, Tx,
};

/// The columns of a task, the database's clock among them as `db_now`. `cancel_requested`
/// is read as a number: sqlx's `Any` driver cannot read SQLite's BOOLEAN columns.
fn columns(now_us: &str) -> String {
    format!(
        "id, state, lease_owner, fence, lease_until_us, CAST(cancel_requested AS INTEGER) AS cancel_requested, \
         task, owner_id, {now_us} AS db_now"
    )
}

/// A task from its row, and the database's clock when it was read.
fn task(r: &AnyRow) -> Result<(Task, DateTime<Utc>)> {
    let mut t: Task = from_json(&r.text("task")?)?;
    t.state = r.parsed("state")?;
    t.cancel_requested = r.int("cancel_requested")? != 0;
    t.owner_id = r.opt_text("owner_id")?.map(|o| o.parse()).transpose()?;
    let fence = u64::try_from(r.int("fence")?).map_err(|e| Error::backend("sql", e))?;
    t.lease = match (r.opt_text("lease_owner")?, r.opt_int("lease_until_us")?) {
        (Some(owner), Some(until)) => Some(TaskLease { owner, expires_at: from_us(until), fence }),
        _ => None,
    };
    Ok((t, from_us(r.int("db_now")?)))
}

/// The fence a task's row keeps: its run's, or once it has ended, its attempts.
fn stored_fence(t: &Task) -> u64 {
    t.lease.as_ref().map_or(u64::from(t.attempts), |l| l.fence)
}

/// `UPDATE tasks` of `tasks`' columns and JSON, from one `VALUES` list (whose columns
/// PostgreSQL and SQLite alike name column1, column2…).
fn tasks_update(st: &mut Statement, tasks: &[Task]) -> Result<()> {
    let mut rows = Vec::with_capacity(tasks.len());
    for t in tasks {
        rows.push([
            Bound::from(t.id.to_string()),
            t.state.as_str().into(),
            t.lease.as_ref().map(|l| l.owner.clone()).into(),
            signed(stored_fence(t)).into(),
            t.lease.as_ref().map(|l| l.expires_at.timestamp_micros()).into(),
            t.cancel_requested.into(),
            to_json(t)?.into(),
        ]);
    }
    st.sql(
        "UPDATE tasks SET state = v.column2, lease_owner = v.column3, fence = v.column4, \
         lease_until_us = v.column5, cancel_requested = v.column6, task = v.column7 FROM (",
    )
    .values(rows)
    .sql(") AS v WHERE tasks.id = v.column1");
    Ok(())
}

/// Tasks written by one statement at most.
const TASKS_PER_STATEMENT: usize = 100;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl SqlStore {
    /// Inserts a new task, as its VM's owner's, and records it queued.
    pub(super) async fn insert_task(&self, tx: &mut Tx, t: &Task) -> Result<()> {
        let owner = self.try_insert_task(tx, t).await.map_err(|e| self.err(e))?;
        self.task_changed(tx, None, &Task { owner_id: owner, ..t.clone() }).await
    }

    /// Queues `t` in `tx` ([`TaskStore::enqueue_task`]): the VM's row is locked, a VM with
    /// an active task refuses it. `Ok(false)`: a concurrent insert won (the task id, or
    /// another active task of the VM); the caller ends `tx` and asks [`Self::duplicate`].
    pub(super) async fn enqueue_in(&self, tx: &mut Tx, t: &Task, action: Option<VmAction>) -> Result<bool> {
        if let Some(image) = t.image_id() {
            self.lock_image(tx, image).await?;
        }
        if let Some(vm) = t.vm_id {
            let sql = format!("SELECT state FROM vms WHERE id = $1{}", self.dialect.lock());
            let row = self
                .row(sqlx::query(&sql).bind(vm.to_string()), &mut **tx, Error::VmNotFound { id: vm })
                .await?;
            let active =
                sqlx::query("SELECT id FROM tasks WHERE vm_id = $1 AND state IN ('queued', 'running')")
                    .bind(vm.to_string())
                    .fetch_all(&mut **tx)
                    .await
                    .map(first)
                    .map_err(|e| self.err(e))?;
            if let Some(r) = active {
                return Err(Error::ActiveTask { vm, task: r.parsed("id")? });
            }
            if let Some(action) = action {
                row.parsed::<vmm_core::VmState>("state")?.apply(vm, action)?;
            }
        }
        match self.try_insert_task(tx, t).await {
            Ok(owner) => {
                self.task_changed(tx, None, &Task { owner_id: owner, ..t.clone() }).await.map(|()| true)
            }
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Why `t` could not be inserted: its VM's active task, or its id taken.
    pub(super) async fn duplicate(&self, t: &Task) -> Error {
        match t.vm_id {
            Some(vm) => match self.active_task_of(vm).await {
                Ok(Some(active)) => Error::ActiveTask { vm, task: active },
                Ok(None) => Error::conflict(format!("task {} exists", t.id)),
                Err(e) => e,
            },
            None => Error::conflict(format!("task {} exists", t.id)),
        }
    }

    /// Inserts a new task; returns its owner.
    async fn try_insert_task(
        &self,
        tx: &mut Tx,
        t: &Task,
    ) -> std::result::Result<Option<UserId>, sqlx::Error> {
        let rows = sqlx::query(
            "INSERT INTO tasks (id, vm_id, state, lease_owner, fence, lease_until_us, cancel_requested, task, image_id, \
             owner_id, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE((SELECT owner_id FROM vms WHERE id = $2), $10), \
             $11) RETURNING owner_id",
        )
        .bind(t.id.to_string())
        .bind(t.vm_id.map(|v| v.to_string()))
        .bind(t.state.as_str())
        .bind(t.lease.as_ref().map(|l| l.owner.clone()))
        .bind(signed(t.fence()))
        .bind(t.lease.as_ref().map(|l| l.expires_at.timestamp_micros()))
        .bind(t.cancel_requested)
        .bind(serde_json::to_string(t).unwrap_or_default())
        .bind(t.image_id().map(|i| i.to_string()))
        .bind(t.owner_id.map(|o| o.to_string()))
        .bind(t.kind.as_str())
        .fetch_all(&mut **tx)
        .await?;
        let owner: Option<String> = match rows.first() {
            Some(r) => sqlx::Row::try_get(r, "owner_id")?,
            None => None,
        };
        Ok(owner.and_then(|o| o.parse().ok()))
    }

    /// Writes `tasks`' columns and JSON (rows locked in `tx`) with `events` (their
    /// changes'), in one statement per hundred.
    async fn write_tasks(&self, tx: &mut Tx, tasks: &[Task], mut events: Vec<Event>) -> Result<()> {
        for chunk in tasks.chunks(TASKS_PER_STATEMENT) {
            self.change_with_events(tx, std::mem::take(&mut events), |st| tasks_update(st, chunk)).await?;
        }
        self.emit(tx, events).await
    }

    /// Appends the query of up to `max` claimable tasks, oldest first, locked, skipping
    /// those another transaction holds, and `except` (tasks this transaction has just
    /// ended: their rows, locked by this transaction already, may look claimable to a query
    /// that runs before the ends are written and after their leases have run out).
    fn claimable(&self, st: &mut Statement, max: usize, except: &[TaskId]) {
        let now_us = self.dialect.now_us();
        st.sql(&format!(
            "SELECT {} FROM tasks WHERE state IN ('queued', 'running') \
             AND (state = 'queued' OR lease_until_us IS NULL OR lease_until_us <= {now_us})",
            columns(now_us)
        ));
        if !except.is_empty() {
            st.sql(" AND id NOT IN ").row(except.iter().map(|id| Bound::from(id.to_string())));
        }
        st.sql(&format!(" ORDER BY id LIMIT {}{}", max.min(1000), self.dialect.skip_locked()));
    }

    /// Claims up to `max` tasks in `tx` ([`TaskStore::claim_tasks`]).
    async fn claim_in(
        &self,
        tx: &mut Tx,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        let mut query = Statement::default();
        self.claimable(&mut query, max, &[]);
        let rows = query.fetch_all(&mut **tx).await.map_err(|e| self.err(e))?;
        self.claim_rows(tx, &rows, owner, now, lease).await
    }

    /// Claims the tasks of `rows` (read by [`claimable`](Self::claimable) in `tx`).
    async fn claim_rows(
        &self,
        tx: &mut Tx,
        rows: &[AnyRow],
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Vec<Task>> {
        let mut claimed = Vec::with_capacity(rows.len());
        let mut before = Vec::with_capacity(rows.len());
        for row in rows {
            let (mut t, db_now) = task(row)?;
            before.push(t.clone());
            let until = db_now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
            t.claim(owner, now, until);
            claimed.push(t);
        }
        if !claimed.is_empty() {
            let changes: Vec<_> = before.iter().zip(&claimed).map(|(b, a)| (Some(b), a)).collect();
            let events = self.task_events(tx, &changes).await?;
            self.write_tasks(tx, &claimed, events).await?;
        }
        Ok(claimed)
    }

    /// What recording `ends` (each a run's task and fence) writes, checked in `tx` against
    /// the stored tasks (read in one query, locked in id order): per end, the task as saved,
    /// or `LeaseLost` if its run no longer holds the lease, `TaskNotFound` if it is gone;
    /// and the events of the changes.
    async fn prepare_saves(
        &self,
        tx: &mut Tx,
        ends: &[(&Task, u64)],
    ) -> Result<(Vec<Result<Task>>, Vec<Event>)> {
        let mut query = Statement::default();
        query
            .sql(&format!("SELECT {} FROM tasks WHERE id IN ", columns(self.dialect.now_us())))
            .row(ends.iter().map(|(t, _)| Bound::from(t.id.to_string())))
            .sql(" ORDER BY id")
            .sql(self.dialect.lock());
        let mut stored = HashMap::new();
        for row in query.fetch_all(&mut **tx).await.map_err(|e| self.err(e))? {
            let (t, db_now) = task(&row)?;
            stored.insert(t.id, (t, db_now));
        }
        let mut saves = Vec::with_capacity(ends.len());
        let mut changes = Vec::with_capacity(ends.len());
        for (t, fence) in ends {
            saves.push(match stored.get_mut(&t.id) {
                None => Err(Error::TaskNotFound { id: t.id }),
                Some((s, db_now)) if !s.is_leased_with(*fence, *db_now) => {
                    Err(Error::LeaseLost { task: t.id })
                }
                Some((s, _)) => {
                    let saved = t.saved_over(s);
                    // The same task twice: the second end is judged against the first.
                    changes.push((std::mem::replace(s, saved.clone()), saved.clone()));
                    Ok(saved)
                }
            });
        }
        let changes: Vec<_> = changes.iter().map(|(before, after)| (Some(before), after)).collect();
        let events = self.task_events(tx, &changes).await?;
        Ok((saves, events))
    }

    /// Saves a run's task in `tx` ([`TaskStore::save_task`]).
    async fn save_in(&self, tx: &mut Tx, t: &Task, fence: u64) -> Result<()> {
        let (mut saves, events) = self.prepare_saves(tx, &[(t, fence)]).await?;
        let saved = saves.pop().unwrap_or(Err(Error::TaskNotFound { id: t.id }))?;
        self.write_tasks(tx, &[saved], events).await
    }

    /// Records `ends` in `tx` and reads (locked) up to `max` claimable tasks, none of those
    /// ended: on PostgreSQL in one statement, the writes in its `WITH`. Returns whether each
    /// end was recorded, and the rows read.
    async fn save_and_read_next(
        &self,
        tx: &mut Tx,
        ends: &[(&Task, u64)],
        max: usize,
    ) -> Result<(Vec<Result<()>>, Vec<AnyRow>)> {
        let (saves, events) =
            if ends.is_empty() { (Vec::new(), Vec::new()) } else { self.prepare_saves(tx, ends).await? };
        let ended: Vec<TaskId> = ends.iter().map(|(t, _)| t.id).collect();
        let mut saved: Vec<Task> = Vec::with_capacity(saves.len());
        let outcomes = saves
            .into_iter()
            .map(|s| {
                s.map(|t| {
                    // A task saved twice in one call is written once, as last saved.
                    saved.retain(|earlier| earlier.id != t.id);
                    saved.push(t);
                })
            })
            .collect();
        let one_statement = self.dialect == Dialect::Postgres
            && max > 0
            && !saved.is_empty()
            && saved.len() <= TASKS_PER_STATEMENT;
        let mut query = if one_statement {
            let mut st = self.events_first(tx, events).await?;
            st.cte("u");
            tasks_update(&mut st, &saved)?;
            // The main query sees the snapshot from before the update, where the ended
            // tasks are still running: they are left out by their ids.
            st.sql(") ");
            st
        } else {
            self.write_tasks(tx, &saved, events).await?;
            Statement::default()
        };
        if max == 0 {
            return Ok((outcomes, Vec::new()));
        }
        self.claimable(&mut query, max, &ended);
        let rows = query.fetch_all(&mut **tx).await.map_err(|e| self.err(e))?;
        Ok((outcomes, rows))
    }

    /// A task and the database's clock, read (and locked) in `tx`.
    async fn task_in(&self, tx: &mut Tx, id: TaskId) -> Result<(Task, DateTime<Utc>)> {
        let sql = format!(
            "SELECT {} FROM tasks WHERE id = $1{}",
            columns(self.dialect.now_us()),
            self.dialect.lock()
        );
        let row =
            self.row(sqlx::query(&sql).bind(id.to_string()), &mut **tx, Error::TaskNotFound { id }).await?;
        task(&row)
    }

    async fn active_task_of(&self, vm: VmId) -> Result<Option<TaskId>> {
        let row = sqlx::query("SELECT id FROM tasks WHERE vm_id = $1 AND state IN ('queued', 'running')")
            .bind(vm.to_string())
            .fetch_all(&self.read)
            .await
            .map(first)
            .map_err(|e| self.err(e))?;
        row.map(|r| r.parsed("id")).transpose()
    }
}

#[async_trait]
impl TaskStore for SqlStore {
    async fn enqueue_task(&self, t: &Task, action: Option<VmAction>) -> Result<()> {
        let mut tx = self.begin().await?;
        if self.enqueue_in(&mut tx, t, action).await? {
            self.commit(tx).await
        } else {
            drop(tx);
            Err(self.duplicate(t).await)
        }
    }

    async fn get_task(&self, id: TaskId) -> Result<Task> {
        let sql = format!("SELECT {} FROM tasks WHERE id = $1", columns(self.dialect.now_us()));
        let row =
            self.row(sqlx::query(&sql).bind(id.to_string()), &self.read, Error::TaskNotFound { id }).await?;
        task(&row).map(|(t, _)| t)
    }

    async fn count_active_tasks(&self) -> Result<Vec<(TaskState, u64)>> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM tasks WHERE state IN ('queued', 'running') GROUP BY state",
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.err(e))?;
        let mut counts = vec![(TaskState::Queued, 0), (TaskState::Running, 0)];
        for row in rows {
            let state: TaskState = row.parsed("state")?;
            let n = unsigned(&row, "n")?;
            if let Some(c) = counts.iter_mut().find(|(s, _)| *s == state) {
                c.1 = n;
            }
        }
        Ok(counts)
    }

    async fn list_tasks(&self, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>> {
        let limit = page.limit()?;
        let before: Option<TaskId> = page.cursor()?;
        // Fixed clauses only; every value is bound.
        let mut q = Statement::default();
        q.sql(&format!("SELECT {} FROM tasks WHERE 1 = 1", columns(self.dialect.now_us())));
        if let Some(vm) = filter.vm_id {
            q.sql(" AND vm_id = ").param(vm.to_string());
        }
        if let Some(state) = filter.state {
            q.sql(" AND state = ").param(state.to_string());
        }
        if let Some(owner) = filter.owner_id {
            q.sql(" AND owner_id = ").param(owner.to_string());
        }
        if let Some(kind) = filter.kind {
            q.sql(" AND kind = ").param(kind.to_string());
        }
        if let Some(b) = before {
            q.sql(" AND id < ").param(b.to_string());
        }
        q.sql(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
        let rows = q.fetch_all(&self.read).await.map_err(|e| self.err(e))?;
        let items = rows.iter().map(|r| task(r).map(|(t, _)| t)).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |t| t.id.to_string()))
    }

    async fn claim_tasks(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Task>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let claimed = self.claim_in(&mut tx, owner, now, lease, max).await?;
        if !claimed.is_empty() {
            self.commit(tx).await?;
        }
        Ok(claimed)
    }

    async fn finish_and_claim(
        &self,
        ends: &[(Task, u64)],
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        max: usize,
    ) -> Result<Finished> {
        if ends.is_empty() && max == 0 {
            return Ok(Finished { saved: Vec::new(), claimed: Vec::new() });
        }
        let ends: Vec<(&Task, u64)> = ends.iter().map(|(t, fence)| (t, *fence)).collect();
        let mut tx = self.begin().await?;
        let (saved, rows) = self.save_and_read_next(&mut tx, &ends, max).await?;
        let claimed = self.claim_rows(&mut tx, &rows, owner, now, lease).await?;
        self.commit(tx).await?;
        Ok(Finished { saved, claimed })
    }

    async fn renew_lease(&self, id: TaskId, fence: u64, lease: Duration) -> Result<()> {
        let now_us = self.dialect.now_us();
        let sql = format!(
            "UPDATE tasks SET lease_until_us = {now_us} + $3 \
             WHERE id = $1 AND state = 'running' AND fence = $2 AND lease_until_us > {now_us}"
        );
        let done = sqlx::query(&sql)
            .bind(id.to_string())
            .bind(signed(fence))
            .bind(micros(lease))
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            self.get_task(id).await?;
            return Err(Error::LeaseLost { task: id });
        }
        Ok(())
    }

    async fn save_task(&self, t: &Task, fence: u64) -> Result<()> {
        let mut tx = self.begin().await?;
        self.save_in(&mut tx, t, fence).await?;
        self.commit(tx).await
    }

    async fn cancel_task(&self, id: TaskId, now: DateTime<Utc>) -> Result<Task> {
        let mut tx = self.begin().await?;
        let (mut t, _) = self.task_in(&mut tx, id).await?;
        let before = t.clone();
        t.cancel(now)?;
        let events = self.task_events(&mut tx, &[(Some(&before), &t)]).await?;
        self.write_tasks(&mut tx, std::slice::from_ref(&t), events).await?;
        self.commit(tx).await?;
        Ok(t)
    }
}
