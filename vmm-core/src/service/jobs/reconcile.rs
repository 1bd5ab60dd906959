//! `reconcile`: every node compared with the database; the report is the task's result.
//! Nothing to undo: what it removed were orphans.

use super::{Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::task::TaskParams;

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let TaskParams::Reconcile { dry_run } = run.task.params else {
        return Err(Error::invalid("task", "a reconcile without its parameters"));
    };
    if vmm.cancel_requested(run).await? {
        return Ok(Outcome::Cancelled);
    }
    vmm.step(run, 10, "comparing every node with the database").await?;
    let report = vmm.reconcile(dry_run).await?;
    run.task.result = Some(serde_json::to_value(&report).map_err(|e| Error::backend("report", e))?);
    Ok(Outcome::Done)
}
