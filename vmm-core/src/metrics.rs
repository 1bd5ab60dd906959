//! vmm's own metrics: tasks run by this process (by kind and how they ended), how long they
//! waited in the queue and ran, and the leases it holds. Families are shared handles: the
//! engine updates them, and a scrape registers them beside its own into a
//! [`Registry`](prometheus_client::registry::Registry) to encode (see `Vmm::scrape`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::task::{Task, TaskKind};

/// Labels: a task's kind, or its kind and state.
pub type Labels = Vec<(&'static str, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn seconds_buckets() -> Histogram {
    // 5 ms to about 45 minutes.
    Histogram::new(exponential_buckets(0.005, 3.0, 13))
}

/// The engine's metrics. Cheap to clone; clones share the values.
#[derive(Debug, Clone)]
pub struct TaskMetrics {
    runs: Family<Labels, Counter>,
    queue_wait: HistogramFamily,
    run_time: HistogramFamily,
    leases_held: Gauge,
}

impl Default for TaskMetrics {
    fn default() -> Self {
        Self {
            runs: Family::default(),
            queue_wait: Family::new_with_constructor(seconds_buckets),
            run_time: Family::new_with_constructor(seconds_buckets),
            leases_held: Gauge::default(),
        }
    }
}

impl TaskMetrics {
    /// A run of `task` began `waited` seconds after the task was queued (counted for
    /// first runs only).
    pub(crate) fn started(&self, task: &Task, waited: f64) {
        self.leases_held.inc();
        if task.attempts <= 1 {
            self.queue_wait.get_or_create(&vec![("kind", task.kind.to_string())]).observe(waited.max(0.0));
        }
    }

    /// A run of a task of `kind` ended `state` (`succeeded`, `failed`, `cancelled`, or
    /// `lease_lost`) after `ran` seconds.
    pub(crate) fn ended(&self, kind: TaskKind, state: &str, ran: f64) {
        self.leases_held.dec();
        self.runs.get_or_create(&vec![("kind", kind.to_string()), ("state", state.to_owned())]).inc();
        self.run_time.get_or_create(&vec![("kind", kind.to_string())]).observe(ran.max(0.0));
    }

    /// Registers the families (shared handles) into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vmm_task_runs",
            "Task runs of this process, by kind and how they ended",
            self.runs.clone(),
        );
        registry.register(
            "vmm_task_queue_wait_seconds",
            "How long tasks waited in the queue before their first run",
            self.queue_wait.clone(),
        );
        registry.register("vmm_task_run_seconds", "How long task runs took", self.run_time.clone());
        registry.register("vmm_task_leases_held", "Task leases this process holds", self.leases_held.clone());
    }
}
