//! Backup schedules: a five-field cron expression in UTC over chosen VMs or all VMs of the
//! schedule's owner, a target, a mode and a retention. Each run is claimed by moving the
//! schedule's next run from now (never from the missed one), so a scheduler that was down
//! runs once, not once per missed occurrence, and two schedulers never run the same one.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;
use serde::{Deserialize, Serialize};

use super::{BackupMode, RetentionPolicy};
use crate::error::{Error, Result};
use crate::id::{BackupTargetId, ScheduleId, UserId, VmId};
use crate::names::check_name;

/// Most VMs one schedule names.
pub const MAX_SCHEDULE_VMS: usize = 1000;

/// What makes a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Its name.
    pub name: String,
    /// When it runs: five cron fields in UTC (`0 3 * * *`: every day at 03:00).
    pub cron: String,
    /// Where its backups go.
    pub target_id: BackupTargetId,
    /// The VMs to back up (or `all`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vm_ids: Vec<VmId>,
    /// Every VM of the schedule's owner (every VM, for an admin's schedule) instead.
    #[serde(default)]
    pub all: bool,
    /// Full or incremental (default full).
    #[serde(default)]
    pub mode: BackupMode,
    /// What to keep of the backups it made, per VM (default: everything).
    #[serde(default)]
    pub retention: RetentionPolicy,
    /// Whether it runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A change to a schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SchedulePatch {
    /// A new name.
    #[serde(default)]
    pub name: Option<String>,
    /// A new cron expression.
    #[serde(default)]
    pub cron: Option<String>,
    /// A new mode.
    #[serde(default)]
    pub mode: Option<BackupMode>,
    /// A new retention.
    #[serde(default)]
    pub retention: Option<RetentionPolicy>,
    /// Enable or disable.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A recurring backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupSchedule {
    /// The id.
    pub id: ScheduleId,
    /// Its name.
    pub name: String,
    /// Whose it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<UserId>,
    /// When it runs, in UTC.
    pub cron: String,
    /// Where its backups go.
    pub target_id: BackupTargetId,
    /// The VMs it backs up (empty with `all`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vm_ids: Vec<VmId>,
    /// Whether it backs up every VM of its owner (of everyone, for an admin's).
    pub all: bool,
    /// Full or incremental.
    pub mode: BackupMode,
    /// What to keep.
    pub retention: RetentionPolicy,
    /// Whether it runs.
    pub enabled: bool,
    /// When it runs next.
    pub next_run_at: DateTime<Utc>,
    /// When it last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<DateTime<Utc>>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl BackupSchedule {
    /// A schedule from `spec`, checked, first running after `now`.
    ///
    /// ```
    /// use vmm_core::backup::{BackupSchedule, ScheduleSpec};
    /// use vmm_core::{BackupTargetId, VmId};
    /// let spec = ScheduleSpec {
    ///     name: "nightly".into(), cron: "0 3 * * *".into(), target_id: BackupTargetId::new(),
    ///     vm_ids: vec![VmId::new()], all: false, mode: Default::default(),
    ///     retention: Default::default(), enabled: true,
    /// };
    /// let now = "2026-01-01T12:00:00Z".parse().unwrap();
    /// let s = BackupSchedule::new(spec.clone(), None, now).unwrap();
    /// assert_eq!(s.next_run_at.to_rfc3339(), "2026-01-02T03:00:00+00:00");
    /// assert!(BackupSchedule::new(ScheduleSpec { cron: "61 * * * *".into(), ..spec }, None, now).is_err());
    /// ```
    pub fn new(spec: ScheduleSpec, owner_id: Option<UserId>, now: DateTime<Utc>) -> Result<Self> {
        check_name(&spec.name)?;
        check_vms(spec.all, &spec.vm_ids)?;
        let next_run_at = next_run(&spec.cron, now)?;
        Ok(Self {
            id: ScheduleId::new(),
            name: spec.name,
            owner_id,
            cron: spec.cron.trim().to_owned(),
            target_id: spec.target_id,
            vm_ids: spec.vm_ids,
            all: spec.all,
            mode: spec.mode,
            retention: spec.retention,
            enabled: spec.enabled,
            next_run_at,
            last_run_at: None,
            created_at: now,
        })
    }

    /// The schedule with `patch` applied, checked; a new cron counts from `now`.
    pub fn patched(mut self, patch: SchedulePatch, now: DateTime<Utc>) -> Result<Self> {
        if let Some(name) = patch.name {
            check_name(&name)?;
            self.name = name;
        }
        if let Some(cron) = patch.cron {
            self.next_run_at = next_run(&cron, now)?;
            self.cron = cron.trim().to_owned();
        }
        if let Some(mode) = patch.mode {
            self.mode = mode;
        }
        if let Some(retention) = patch.retention {
            self.retention = retention;
        }
        if let Some(enabled) = patch.enabled {
            self.enabled = enabled;
        }
        Ok(self)
    }

    /// Whether it is due at `now`.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.enabled && self.next_run_at <= now
    }

    /// The same schedule having run at `now`: its next run is the first after `now`, so the
    /// runs missed while no scheduler ran collapse into this one.
    pub fn ran(mut self, now: DateTime<Utc>) -> Result<Self> {
        self.next_run_at = next_run(&self.cron, now)?;
        self.last_run_at = Some(now);
        Ok(self)
    }
}

fn check_vms(all: bool, vm_ids: &[VmId]) -> Result<()> {
    match (all, vm_ids.len()) {
        (true, 0) => Ok(()),
        (true, _) => Err(Error::invalid("vm_ids", "name VMs, or say all: true, not both")),
        (false, 0) => Err(Error::invalid("vm_ids", "name the VMs, or say all: true")),
        (false, n) if n > MAX_SCHEDULE_VMS => {
            Err(Error::invalid("vm_ids", format!("at most {MAX_SCHEDULE_VMS} VMs")))
        }
        (false, _) => Ok(()),
    }
}

/// The first time `cron` fires strictly after `after`.
pub fn next_run(cron: &str, after: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let expr = cron.trim();
    if expr.split_whitespace().count() != 5 {
        return Err(Error::invalid("cron", "must have five fields: minute hour day month weekday"));
    }
    Cron::from_str(expr)
        .map_err(|e| Error::invalid("cron", e.to_string()))?
        .find_next_occurrence(&after, false)
        .map_err(|e| Error::invalid("cron", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions_are_checked() {
        let now = Utc::now();
        assert!(next_run("*/15 2 * * 1-5", now).is_ok());
        for bad in ["", "* * * *", "0 25 * * *", "banana", "0 0 * * * *"] {
            assert!(next_run(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_late_run_collapses_the_missed_ones() {
        let spec = ScheduleSpec {
            name: "every minute".into(),
            cron: "* * * * *".into(),
            target_id: BackupTargetId::new(),
            vm_ids: Vec::new(),
            all: true,
            mode: BackupMode::Full,
            retention: RetentionPolicy::default(),
            enabled: true,
        };
        let t0: DateTime<Utc> = "2026-01-01T00:00:30Z".parse().unwrap();
        let s = BackupSchedule::new(spec, None, t0).unwrap();
        assert_eq!(s.next_run_at, "2026-01-01T00:01:00Z".parse::<DateTime<Utc>>().unwrap());
        // Down for an hour: one run now, the next one a minute after it.
        let late: DateTime<Utc> = "2026-01-01T01:00:10Z".parse().unwrap();
        assert!(s.is_due(late));
        let s = s.ran(late).unwrap();
        assert_eq!(s.next_run_at, "2026-01-01T01:01:00Z".parse::<DateTime<Utc>>().unwrap());
        assert!(!s.is_due(late));
        assert!(!BackupSchedule { enabled: false, ..s.clone() }.is_due(s.next_run_at));
    }

    #[test]
    fn the_vms_are_named_or_all() {
        let json = serde_json::json!({"name": "n", "cron": "0 3 * * *", "target_id": BackupTargetId::new(), "all": true});
        let spec: ScheduleSpec = serde_json::from_value(json).unwrap();
        assert!(BackupSchedule::new(spec, None, Utc::now()).unwrap().all);
        let json = serde_json::json!({"name": "n", "cron": "0 3 * * *", "target_id": BackupTargetId::new(), "vm_ids": []});
        let spec: ScheduleSpec = serde_json::from_value(json).unwrap();
        assert!(BackupSchedule::new(spec, None, Utc::now()).is_err());
    }
}
