//! Crash points, for tests of recovery: with `VMM_CRASH_AT=<name>` in its environment the
//! process dies at once (no unwinding, no cleanup, as under `kill -9`) when it reaches the
//! point of that name. Unset, a crash point costs one comparison.
//!
//! The migration saga has one after each phase's work and before it is recorded:
//! `migrate_vm.prepare`, `migrate_vm.transfer`, `migrate_vm.switch_over` and
//! `migrate_vm.clean_up`; and `migrate_vm.transferring`, which dies while the transfer is
//! under way.

use std::sync::OnceLock;

/// The variable that names the crash point.
pub const CRASH_AT: &str = "VMM_CRASH_AT";

fn named(point: &str) -> bool {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| std::env::var(CRASH_AT).ok().filter(|v| !v.is_empty())).as_deref() == Some(point)
}

/// Dies here if `VMM_CRASH_AT` names `point`.
pub fn point(point: &str) {
    if named(point) {
        tracing::error!(point, "crash point reached: dying as {CRASH_AT} asks");
        std::process::abort();
    }
}

/// Dies `after` from now, wherever the process is then, if `VMM_CRASH_AT` names `point`.
pub fn point_soon(point: &'static str, after: std::time::Duration) {
    if named(point) {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            tracing::error!(point, "crash point reached: dying as {CRASH_AT} asks");
            std::process::abort();
        });
    }
}
