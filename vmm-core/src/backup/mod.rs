//! Backups: the model, schedules (cron expressions) and the retention rule; where backups
//! are kept ([`target`]) and how a backup is laid out there ([`manifest`]). The sagas that
//! take, restore, verify and delete backups are in the service's jobs.
//!
//! Retention follows Proxmox's prune semantics: `keep_last` keeps the newest N; each of
//! `keep_daily`, `keep_weekly` and `keep_monthly` keeps the newest backup of each of the N
//! newest periods that hold one and that an earlier rule has not already covered. The newest
//! completed backup is never pruned, failed backups always are, and unfinished ones are never
//! touched. A policy that keeps nothing keeps everything.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{BackupId, BackupTargetId, ScheduleId, TaskId, UserId, VmId};
use crate::vm::Vm;

pub mod manifest;
mod schedule;
pub mod target;

pub use manifest::{Chunk, ChunkRef, Manifest, CHUNK_SIZE};
pub use schedule::{next_run, BackupSchedule, SchedulePatch, ScheduleSpec, MAX_SCHEDULE_VMS};
pub use target::{BackupTarget, BackupTargetConfig, BackupTargetSpec, S3Access, TargetOpener, TargetUrl};

/// The key of the day, ISO week or month a time falls in (the last field tells which).
type PeriodOf<'a> = &'a dyn Fn(&DateTime<Utc>) -> (i32, u32, u8);

/// Where a backup is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum BackupState {
    /// Not started.
    Pending,
    /// Being written.
    Running,
    /// Complete and usable: its manifest is on the target.
    Completed,
    /// Failed; not usable (nothing of it is left on the target).
    Failed,
    /// Being removed from its target.
    Deleting,
}

/// Whether a backup copies the whole disk or only what changed since its parent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum BackupMode {
    /// Every chunk is stored.
    #[default]
    Full,
    /// Only the chunks that differ from the newest completed backup of the VM on the same
    /// target are stored; a full one when there is none.
    Incremental,
}

/// How consistent a backup's copy of the disk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// The VM was shut off: the disk as the guest left it.
    Stopped,
    /// Taken from a running VM without the guest's help: as after a power loss.
    CrashConsistent,
    /// Taken while the guest agent held the filesystems frozen.
    FsFrozen,
}

/// The last check of a backup against its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verification {
    /// When it was checked.
    pub at: DateTime<Utc>,
    /// Whether every chunk matched.
    pub ok: bool,
    /// What was wrong, naming the chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A backup of one VM's disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backup {
    /// The id.
    pub id: BackupId,
    /// The VM (it may be gone since: backups outlive their VMs).
    pub vm_id: VmId,
    /// Whose it is: the VM's owner when it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<UserId>,
    /// Where it is kept.
    pub target_id: BackupTargetId,
    /// Full or incremental.
    pub mode: BackupMode,
    /// For an incremental backup: the backup whose chunks it shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<BackupId>,
    /// The schedule that made it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<ScheduleId>,
    /// Its state.
    pub state: BackupState,
    /// The task that takes (or took) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// Bytes this backup stored on its target (chunks shared with its parent not counted).
    pub size_bytes: u64,
    /// The size of the disk it copies, in bytes.
    pub disk_bytes: u64,
    /// How consistent the copy is, once taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
    /// The VM's settings when it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<Vm>,
    /// The last verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verification>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it became restorable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

impl Backup {
    /// A pending backup of `vm` to `target`.
    pub fn new(vm_id: VmId, target_id: BackupTargetId, mode: BackupMode, created_at: DateTime<Utc>) -> Self {
        Self {
            id: BackupId::new(),
            vm_id,
            owner_id: None,
            target_id,
            mode,
            parent_id: None,
            schedule_id: None,
            state: BackupState::Pending,
            task_id: None,
            size_bytes: 0,
            disk_bytes: 0,
            consistency: None,
            vm: None,
            verified: None,
            error: None,
            created_at,
            completed_at: None,
        }
    }
}

/// What a backup request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackupSpec {
    /// Where to keep it.
    pub target_id: BackupTargetId,
    /// Full (default) or incremental.
    #[serde(default)]
    pub mode: BackupMode,
}

/// Which backups to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupFilter {
    /// Only this VM's.
    pub vm_id: Option<VmId>,
    /// Only this user's.
    pub owner_id: Option<UserId>,
    /// Only those on this target.
    pub target_id: Option<BackupTargetId>,
}

impl BackupFilter {
    /// Whether `b` passes.
    pub fn matches(&self, b: &Backup) -> bool {
        self.vm_id.is_none_or(|v| b.vm_id == v)
            && self.owner_id.is_none_or(|o| b.owner_id == Some(o))
            && self.target_id.is_none_or(|t| b.target_id == t)
    }
}

/// Where a restore goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreSpec {
    /// A new VM (new id, new addresses from the same pools), placed like a create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_vm: Option<NewVmFromBackup>,
    /// Instead: the backup's own VM, stopped, whose disk is replaced (the old one is kept
    /// until the new one is whole, and put back if the restore fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<VmId>,
}

/// The new VM a restore makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewVmFromBackup {
    /// Its name.
    pub name: String,
    /// The node to put it on (placement chooses when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<crate::id::NodeId>,
    /// Start it once restored (default true).
    #[serde(default = "yes")]
    pub start: bool,
}

fn yes() -> bool {
    true
}

/// How many backups to keep. All zero keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// The newest N backups.
    #[serde(default)]
    pub keep_last: u32,
    /// The newest backup of each of the last N days that have one.
    #[serde(default)]
    pub keep_daily: u32,
    /// The newest backup of each of the last N ISO weeks that have one.
    #[serde(default)]
    pub keep_weekly: u32,
    /// The newest backup of each of the last N months that have one.
    #[serde(default)]
    pub keep_monthly: u32,
}

impl RetentionPolicy {
    /// Whether the policy keeps everything (no rule set).
    pub fn keeps_all(&self) -> bool {
        *self == Self::default()
    }
}

/// The backups `policy` prunes from `backups` (any order). Never the newest completed backup,
/// never a pending or running one; always the failed ones.
///
/// ```
/// use vmm_core::backup::{prune, Backup, BackupState, RetentionPolicy};
/// use vmm_core::{BackupTargetId, VmId};
/// let vm = VmId::new();
/// let at = |d: u32| format!("2026-03-{d:02}T03:00:00Z").parse().unwrap();
/// let target = BackupTargetId::new();
/// let backups: Vec<Backup> = (1..=5)
///     .map(|d| Backup { state: BackupState::Completed, ..Backup::new(vm, target, Default::default(), at(d)) })
///     .collect();
/// let pruned = prune(&backups, &RetentionPolicy { keep_last: 2, ..Default::default() });
/// assert_eq!(pruned, vec![backups[2].id, backups[1].id, backups[0].id]);
/// ```
pub fn prune(backups: &[Backup], policy: &RetentionPolicy) -> Vec<BackupId> {
    let mut good: Vec<&Backup> = backups.iter().filter(|b| b.state == BackupState::Completed).collect();
    good.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let mut keep: HashSet<BackupId> = HashSet::new();
    if policy.keeps_all() {
        keep.extend(good.iter().map(|b| b.id));
    }
    keep.extend(good.iter().take(policy.keep_last as usize).map(|b| b.id));
    let day = |t: &DateTime<Utc>| (t.year(), t.ordinal(), 0);
    let week = |t: &DateTime<Utc>| {
        let w = t.iso_week();
        (w.year(), w.week(), 1)
    };
    let month = |t: &DateTime<Utc>| (t.year(), t.month(), 2);
    let rules: [(u32, PeriodOf<'_>); 3] =
        [(policy.keep_daily, &day), (policy.keep_weekly, &week), (policy.keep_monthly, &month)];
    for (count, period) in rules {
        // Periods that an earlier rule already covers do not count against this one.
        let covered: HashSet<_> =
            good.iter().filter(|b| keep.contains(&b.id)).map(|b| period(&b.created_at)).collect();
        let mut chosen = HashSet::new();
        for b in &good {
            if chosen.len() >= count as usize {
                break;
            }
            let p = period(&b.created_at);
            if !keep.contains(&b.id) && !covered.contains(&p) && chosen.insert(p) {
                keep.insert(b.id);
            }
        }
    }
    if let Some(newest) = good.first() {
        keep.insert(newest.id);
    }
    let mut pruned: Vec<&Backup> = backups
        .iter()
        .filter(|b| match b.state {
            BackupState::Completed => !keep.contains(&b.id),
            BackupState::Failed => true,
            BackupState::Pending | BackupState::Running | BackupState::Deleting => false,
        })
        .collect();
    pruned.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    pruned.into_iter().map(|b| b.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn backup(vm: VmId, at: DateTime<Utc>, state: BackupState) -> Backup {
        Backup { state, ..Backup::new(vm, BackupTargetId::new(), BackupMode::Full, at) }
    }

    #[test]
    fn daily_weekly_monthly_keep_one_per_period() {
        let vm = VmId::new();
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        // Two backups a day for 90 days.
        let backups: Vec<Backup> =
            (0..180).map(|i| backup(vm, start + Duration::hours(12 * i), BackupState::Completed)).collect();
        let policy = RetentionPolicy { keep_last: 1, keep_daily: 7, keep_weekly: 4, keep_monthly: 3 };
        let pruned: HashSet<_> = prune(&backups, &policy).into_iter().collect();
        let mut kept: Vec<String> = backups
            .iter()
            .filter(|b| !pruned.contains(&b.id))
            .map(|b| b.created_at.format("%m-%d %H").to_string())
            .collect();
        kept.reverse();
        // keep_last: Mar 31. Daily: the 7 days before. Weekly: ISO weeks 12, 11, 10, 9 (weeks 13
        // and 14 are covered). Monthly: February and January (March is covered; there is no more).
        let expected = [
            "03-31 12", "03-30 12", "03-29 12", "03-28 12", "03-27 12", "03-26 12", "03-25 12", "03-24 12",
            "03-22 12", "03-15 12", "03-08 12", "03-01 12", "02-28 12", "01-31 12",
        ];
        assert_eq!(kept, expected);
    }

    #[test]
    fn failed_backups_go_and_unfinished_ones_stay() {
        let vm = VmId::new();
        let t = Utc::now();
        let ok = backup(vm, t - Duration::days(1), BackupState::Completed);
        let failed = backup(vm, t, BackupState::Failed);
        let running = backup(vm, t, BackupState::Running);
        let pruned = prune(
            &[ok.clone(), failed.clone(), running],
            &RetentionPolicy { keep_last: 1, ..Default::default() },
        );
        assert_eq!(pruned, vec![failed.id]);
    }

    #[test]
    fn an_empty_policy_keeps_everything_good() {
        let vm = VmId::new();
        let b: Vec<_> =
            (0..5).map(|i| backup(vm, Utc::now() - Duration::days(i), BackupState::Completed)).collect();
        assert!(prune(&b, &RetentionPolicy::default()).is_empty());
    }

    fn arb_state() -> impl Strategy<Value = BackupState> {
        prop_oneof![
            6 => Just(BackupState::Completed),
            1 => Just(BackupState::Failed),
            1 => Just(BackupState::Running),
            1 => Just(BackupState::Pending),
        ]
    }

    proptest! {
        /// Whatever the policy and history, the newest completed backup survives, unfinished
        /// ones are never pruned, and keep_last N keeps at least the N newest good ones.
        #[test]
        fn retention_never_prunes_the_newest_good_backup(
            history in proptest::collection::vec((0i64..400 * 24, arb_state()), 0..60),
            keep_last in 0u32..4, keep_daily in 0u32..8, keep_weekly in 0u32..5, keep_monthly in 0u32..4,
        ) {
            let vm = VmId::new();
            let start = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
            let backups: Vec<Backup> = history.iter().map(|&(h, s)| backup(vm, start + Duration::hours(h), s)).collect();
            let policy = RetentionPolicy { keep_last, keep_daily, keep_weekly, keep_monthly };
            let pruned: HashSet<_> = prune(&backups, &policy).into_iter().collect();
            let mut good: Vec<&Backup> = backups.iter().filter(|b| b.state == BackupState::Completed).collect();
            good.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
            if let Some(newest) = good.first() {
                prop_assert!(!pruned.contains(&newest.id));
            }
            for b in good.iter().take(keep_last as usize) {
                prop_assert!(!pruned.contains(&b.id));
            }
            for b in &backups {
                match b.state {
                    BackupState::Running | BackupState::Pending | BackupState::Deleting => prop_assert!(!pruned.contains(&b.id)),
                    BackupState::Failed => prop_assert!(pruned.contains(&b.id)),
                    BackupState::Completed => {}
                }
            }
            if policy.keeps_all() {
                prop_assert!(good.iter().all(|b| !pruned.contains(&b.id)));
            }
        }
    }
}
