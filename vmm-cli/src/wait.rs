//! `--wait`: following a task to its end, with a progress bar fed by the task's progress
//! and its latest step.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};

/// The longest one wait call holds (the API allows 60 s); shorter keeps the bar moving.
const POLL_S: &str = "2";

/// Whether a task's state is final.
pub fn is_final(task: &Value) -> bool {
    matches!(task["state"].as_str(), Some("succeeded" | "failed" | "cancelled"))
}

/// Waits for `task` to end (at most `timeout`), showing its progress on stderr when that
/// is a terminal and `bar` is asked for; returns the ended task, or an error when it did
/// not succeed.
pub fn follow(client: &Client, task: Value, timeout: Option<Duration>, bar: bool) -> Result<Value> {
    let id = task["id"].as_str().ok_or_else(|| Error::Answer("a task without an id".into()))?.to_owned();
    let started = Instant::now();
    let progress = ProgressBar::with_draw_target(
        Some(100),
        match bar {
            true => ProgressDrawTarget::stderr(),
            false => ProgressDrawTarget::hidden(),
        },
    );
    progress.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos:>3}% {wide_msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    progress.set_prefix(task["kind"].as_str().unwrap_or("task").to_owned());
    progress.enable_steady_tick(Duration::from_millis(120));
    let mut task = task;
    while !is_final(&task) {
        update(&progress, &task);
        if let Some(limit) = timeout {
            if started.elapsed() >= limit {
                progress.finish_and_clear();
                return Err(Error::WaitTimeout {
                    id,
                    state: task["state"].as_str().unwrap_or("running").to_owned(),
                    seconds: limit.as_secs(),
                });
            }
        }
        task = client.get(&format!("/tasks/{id}/wait"), &[("timeout_s".into(), POLL_S.into())])?;
    }
    update(&progress, &task);
    progress.finish_and_clear();
    match task["state"].as_str() {
        Some("succeeded") => Ok(task),
        state => Err(Error::Task {
            id,
            state: state.unwrap_or("failed").to_owned(),
            reason: task["error"].as_str().unwrap_or("no reason given").to_owned(),
        }),
    }
}

fn update(progress: &ProgressBar, task: &Value) {
    progress.set_position(task["progress"].as_u64().unwrap_or(0).min(100));
    let step = task["steps"].as_array().and_then(|s| s.last()).and_then(|s| s["message"].as_str());
    progress.set_message(step.unwrap_or_else(|| task["state"].as_str().unwrap_or("")).to_owned());
}
