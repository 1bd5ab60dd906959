//! [`BackupStore`] in memory, and the in-memory backup target: [`InMemoryTarget`], opened
//! by [`InMemoryTargets`] for `memory://NAME` target URLs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{lock, InMemoryStore};
use crate::backup::target::check_key;
use crate::backup::{
    Backup, BackupFilter, BackupSchedule, BackupTarget, BackupTargetConfig, TargetOpener, TargetUrl,
};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::id::{BackupId, BackupTargetId, ScheduleId, UserId};
use crate::page::{Page, PageRequest};
use crate::store::BackupStore;
use crate::task::Task;

#[async_trait]
impl BackupStore for InMemoryStore {
    async fn create_backup_target(&self, target: &BackupTargetConfig) -> Result<()> {
        let mut s = self.state();
        if s.backup_targets.values().any(|t| t.name == target.name) {
            return Err(Error::conflict(format!("a backup target named {:?} exists", target.name)));
        }
        s.backup_targets.insert(target.id, target.clone());
        Ok(())
    }

    async fn get_backup_target(&self, id: BackupTargetId) -> Result<BackupTargetConfig> {
        self.state().backup_targets.get(&id).cloned().ok_or(Error::BackupTargetNotFound { id })
    }

    async fn list_backup_targets(&self, page: &PageRequest) -> Result<Page<BackupTargetConfig>> {
        let p = super::page_of(&self.state().backup_targets, page, |_| true)?;
        Ok(Page {
            items: p.items.into_iter().map(BackupTargetConfig::without_secret).collect(),
            next_cursor: p.next_cursor,
        })
    }

    async fn delete_backup_target(&self, id: BackupTargetId) -> Result<()> {
        let mut s = self.state();
        if !s.backup_targets.contains_key(&id) {
            return Err(Error::BackupTargetNotFound { id });
        }
        if s.backups.values().any(|b| b.target_id == id) || s.schedules.values().any(|x| x.target_id == id) {
            return Err(Error::conflict(format!("backup target {id} still holds backups or schedules")));
        }
        s.backup_targets.remove(&id);
        Ok(())
    }

    async fn enqueue_backup_task(&self, backup: &Backup, task: &Task) -> Result<()> {
        let mut s = self.state();
        if !s.backup_targets.contains_key(&backup.target_id) {
            return Err(Error::BackupTargetNotFound { id: backup.target_id });
        }
        super::tasks::enqueue_in(&mut s, task, None)?;
        s.backups.insert(backup.id, backup.clone());
        Ok(())
    }

    async fn get_backup(&self, id: BackupId) -> Result<Backup> {
        self.state().backups.get(&id).cloned().ok_or(Error::BackupNotFound { id })
    }

    async fn list_backups(&self, filter: &BackupFilter, page: &PageRequest) -> Result<Page<Backup>> {
        super::page_of(&self.state().backups, page, |b| filter.matches(b))
    }

    async fn update_backup(&self, backup: &Backup, event: Option<Event>) -> Result<()> {
        let mut s = self.state();
        let slot = s.backups.get_mut(&backup.id).ok_or(Error::BackupNotFound { id: backup.id })?;
        *slot = backup.clone();
        s.emit_all(event);
        Ok(())
    }

    async fn delete_backup(&self, id: BackupId, event: Option<Event>) -> Result<()> {
        let mut s = self.state();
        s.backups.remove(&id).ok_or(Error::BackupNotFound { id })?;
        s.emit_all(event);
        Ok(())
    }

    async fn create_schedule(&self, schedule: &BackupSchedule) -> Result<()> {
        let mut s = self.state();
        if !s.backup_targets.contains_key(&schedule.target_id) {
            return Err(Error::BackupTargetNotFound { id: schedule.target_id });
        }
        s.schedules.insert(schedule.id, schedule.clone());
        Ok(())
    }

    async fn get_schedule(&self, id: ScheduleId) -> Result<BackupSchedule> {
        self.state().schedules.get(&id).cloned().ok_or(Error::ScheduleNotFound { id })
    }

    async fn list_schedules(
        &self,
        owner: Option<UserId>,
        page: &PageRequest,
    ) -> Result<Page<BackupSchedule>> {
        super::page_of(&self.state().schedules, page, |s| owner.is_none_or(|o| s.owner_id == Some(o)))
    }

    async fn update_schedule(&self, schedule: &BackupSchedule) -> Result<()> {
        let mut s = self.state();
        let slot = s.schedules.get_mut(&schedule.id).ok_or(Error::ScheduleNotFound { id: schedule.id })?;
        *slot = schedule.clone();
        Ok(())
    }

    async fn delete_schedule(&self, id: ScheduleId) -> Result<()> {
        self.state().schedules.remove(&id).map(drop).ok_or(Error::ScheduleNotFound { id })
    }

    async fn claim_due_schedule(&self, now: DateTime<Utc>) -> Result<Option<BackupSchedule>> {
        let mut s = self.state();
        let Some(due) = s.schedules.values().filter(|x| x.is_due(now)).min_by_key(|x| x.next_run_at).cloned()
        else {
            return Ok(None);
        };
        let ran = due.ran(now)?;
        s.schedules.insert(ran.id, ran.clone());
        Ok(Some(ran))
    }
}

/// A backup target in memory, with a capacity and corruption on demand.
#[derive(Debug, Default)]
pub struct InMemoryTarget {
    name: String,
    state: Mutex<TargetState>,
}

#[derive(Debug, Default)]
struct TargetState {
    objects: BTreeMap<String, Vec<u8>>,
    /// The most bytes it holds (`None`: no limit).
    capacity: Option<u64>,
}

impl InMemoryTarget {
    /// An empty target named `memory://NAME`.
    pub fn new(name: &str) -> Self {
        Self { name: format!("memory://{name}"), state: Mutex::default() }
    }

    /// Limits the bytes it holds: a put past them fails as a full disk would.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        lock(&self.state).capacity = bytes;
    }

    /// Flips a bit of the object under `key`; false if there is none.
    pub fn corrupt(&self, key: &str) -> bool {
        match lock(&self.state).objects.get_mut(key) {
            Some(data) if !data.is_empty() => {
                let middle = data.len() / 2;
                data[middle] ^= 1;
                true
            }
            _ => false,
        }
    }

    /// Every key it holds.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.state).objects.keys().cloned().collect()
    }

    /// The bytes it holds.
    pub fn used_bytes(&self) -> u64 {
        lock(&self.state).objects.values().map(|d| d.len() as u64).sum()
    }
}

#[async_trait]
impl BackupTarget for InMemoryTarget {
    fn describe(&self) -> &str {
        &self.name
    }

    async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        check_key(key)?;
        let mut s = lock(&self.state);
        if let Some(capacity) = s.capacity {
            let used: u64 =
                s.objects.iter().filter(|(k, _)| k.as_str() != key).map(|(_, d)| d.len() as u64).sum();
            if used + data.len() as u64 > capacity {
                return Err(Error::unavailable(&self.name, "the target is full"));
            }
        }
        s.objects.insert(key.to_owned(), data);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        Ok(lock(&self.state).objects.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let s = lock(&self.state);
        Ok(s.objects
            .range(prefix.to_owned()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        lock(&self.state).objects.remove(key);
        Ok(())
    }
}

/// Opens `memory://NAME` targets: the same name is the same target for as long as this
/// opener lives.
#[derive(Debug, Default, Clone)]
pub struct InMemoryTargets {
    targets: Arc<Mutex<HashMap<String, Arc<InMemoryTarget>>>>,
}

impl InMemoryTargets {
    /// An opener with no targets yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The target `memory://NAME`, made if new.
    pub fn target(&self, name: &str) -> Arc<InMemoryTarget> {
        lock(&self.targets)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(InMemoryTarget::new(name)))
            .clone()
    }
}

#[async_trait]
impl TargetOpener for InMemoryTargets {
    async fn open(&self, config: &BackupTargetConfig) -> Result<Arc<dyn BackupTarget>> {
        match TargetUrl::parse(&config.url)? {
            TargetUrl::Memory(name) => Ok(self.target(&name)),
            _ => Err(Error::unsupported(&config.url, "opening this kind of backup target in memory")),
        }
    }
}
