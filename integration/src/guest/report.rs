//! What the guest's driver sends back to the host: one line per scenario on the guest's
//! second serial port, `REVIVE-RESULT <json>`, then `REVIVE-DONE` once every scenario ran.
//! A guest that dies half-way still leaves the lines of the scenarios it finished.

use serde::{Deserialize, Serialize};

/// Starts the line of one scenario's result.
pub const RESULT_PREFIX: &str = "REVIVE-RESULT ";
/// The line written after the last scenario.
pub const DONE: &str = "REVIVE-DONE";

/// One scenario's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub name: String,
    /// Whether every check of the scenario held. A row that only records (the Go shim's
    /// crun row) may be false without failing the test.
    pub ok: bool,
    pub error: Option<String>,
    /// What the scenario did and saw, in order.
    pub steps: Vec<String>,
    /// What the scenario measured, for the host test's assertions (one of the report types
    /// below, as JSON); as much as it got when it failed.
    pub data: serde_json::Value,
    pub seconds: f64,
    /// For a failure: the last lines of containerd's and revive-snapshotter's journals.
    pub logs: Option<String>,
}

impl ScenarioResult {
    /// The data as `T`.
    pub fn data<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_value(self.data.clone()).map_err(|e| {
            anyhow::anyhow!(
                "scenario {}: its data is not a {}: {e}: {}",
                self.name,
                std::any::type_name::<T>(),
                self.data
            )
        })
    }

    /// A readable account of the scenario, for test output.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} {} ({:.1} s)\n",
            if self.ok { "PASS" } else { "FAIL" },
            self.name,
            self.seconds
        );
        for step in &self.steps {
            out.push_str(&format!("    {step}\n"));
        }
        if let Some(err) = &self.error {
            out.push_str(&format!("    error: {err}\n"));
        }
        if let Some(logs) = &self.logs {
            out.push_str(&format!("    ----- guest logs -----\n{logs}\n"));
        }
        out
    }
}

/// The results in the text of the results port (serial line endings tolerated), and whether
/// the driver finished.
pub fn parse_results(text: &str) -> (Vec<ScenarioResult>, bool) {
    let mut results = Vec::new();
    let mut done = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(json) = line.strip_prefix(RESULT_PREFIX) {
            if let Ok(result) = serde_json::from_str(json) {
                results.push(result);
            }
        } else if line == DONE {
            done = true;
        }
    }
    (results, done)
}

/// A counter container's state: the token it drew at start and its count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterState {
    pub token: String,
    pub count: u64,
}

impl std::fmt::Display for CounterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "count {} (token {})",
            self.count,
            &self.token[..8.min(self.token.len())]
        )
    }
}

/// The guest as the driver found it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Environment {
    pub kernel: String,
    /// `stat -f -c %T /sys/fs/cgroup`: `cgroup2fs` on a unified hierarchy.
    pub cgroup_fs: String,
    /// The root cgroup's `cgroup.controllers`.
    pub controllers: Vec<String>,
    /// The cgroup v1 hierarchies mounted (none with `cgroup_no_v1=all`).
    pub v1_mounts: Vec<String>,
    pub containerd: String,
    pub runc: String,
    pub crun: String,
    pub criu: String,
    pub systemd: String,
    /// `criu check`'s last line.
    pub criu_check: String,
    /// containerd's cgroup (a systemd service).
    pub containerd_cgroup: String,
    /// `systemd-analyze time` and the slowest units of the boot.
    pub boot: String,
    pub slowest_units: String,
}

/// The shim's lifecycle under the systemd cgroup driver.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lifecycle {
    pub pid: u32,
    /// The task's cgroup (`/proc/PID/cgroup`, the unified line's path).
    pub cgroup: String,
    pub shim: String,
    pub shim_cgroup: String,
    pub exec_stdout: String,
    /// An exec's cgroup: the container's.
    pub exec_cgroup: String,
    pub exec_exit_code: i32,
    pub paused_status: String,
    /// `cgroup.freeze` and the `frozen` line of `cgroup.events` while paused.
    pub freeze_file: String,
    pub frozen_event: String,
    /// The counter twice, a second apart, while paused.
    pub paused_counts: (u64, u64),
    pub resumed_status: String,
    pub resumed_count: u64,
    /// The exit status `ctr task delete` reports after SIGTERM (the script exits 3 on it).
    pub term_exit_code: i32,
    /// The `/tasks/exit` event of that exit.
    pub term_exit_event: String,
    /// `ctr task start` (attached) of `sh -c 'exit 7'`.
    pub short_exit_code: i32,
    /// Whether the task's cgroup was gone after the delete.
    pub cgroup_removed: bool,
}

/// A checkpoint and restore of a counter through one shim and one runtime binary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckpointRestore {
    /// containerd's runtime name (the shim).
    pub shim: String,
    /// The OCI runtime the shim ran (`runc`, `crun`).
    pub binary: String,
    pub cgroup: String,
    pub before: Option<CounterState>,
    /// When `ctr container checkpoint --task --rw` returned.
    pub checkpointed: Option<CounterState>,
    /// Counting on after that checkpoint (it leaves the task running).
    pub after_checkpoint: Option<CounterState>,
    /// After `ctr container restore --live --rw`, the container removed before.
    pub restored: Option<CounterState>,
    pub restored_cgroup: String,
    pub restored_shim_cgroup: String,
    /// `ip -o link show lo` in the task's network namespace before and after.
    pub lo_before: String,
    pub lo_after: String,
    pub lo_addr_after: String,
    /// The rw layer's file written at start holds the restored token.
    pub rw_layer_kept: bool,
    /// `ctr task checkpoint --exit --image-path` of the restored task: CRIU's files there,
    /// and the task stopped.
    pub exit_checkpoint_files: Vec<String>,
    pub exit_checkpoint_stopped: bool,
}

/// Checkpoint images restored through `ctr run` and through CRI.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageRestore {
    /// The checkpointed counter (Go shim, overlayfs) the ctr image was built from.
    pub checkpointed: Option<CounterState>,
    /// What `revive image build` printed.
    pub built: String,
    /// `ctr run` on revive-snapshotter and revive (cgroupfs driver, as ctr gives it).
    pub ctr_restored: Option<CounterState>,
    pub ctr_cgroup: String,
    /// The same image created by ctr, run with the systemd cgroup driver.
    pub systemd_restored: Option<CounterState>,
    pub systemd_cgroup: String,
    /// CRI: the token of the workload checkpointed with `crictl checkpoint`.
    pub cri_token: String,
    pub cri_source_cgroup: String,
    pub cri_archive_bytes: u64,
    pub cri_built: String,
    /// CRI: the token the pod created from the checkpoint image holds.
    pub cri_restored_token: String,
    pub cri_restored_state: String,
    pub cri_restored_cgroup: String,
    pub cri_restored_ps: String,
}

/// Stats and an OOM kill under revive.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsOom {
    /// `ctr task metrics --format json`.
    pub metrics: serde_json::Value,
    pub pids_current: u64,
    pub memory_usage: u64,
    pub memory_limit: u64,
    /// The scope's `memory.max`, as systemd set it.
    pub memory_max_file: String,
    /// `ctr task start` (attached) of a task allocating past its limit.
    pub oom_exit_code: i32,
    /// The `/tasks/oom` event `ctr events` printed for it.
    pub oom_event: String,
    /// The `/tasks/exit` event.
    pub exit_event: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse_from_serial_text() {
        let one = ScenarioResult {
            name: "a".into(),
            ok: true,
            error: None,
            steps: vec!["did".into()],
            data: serde_json::json!({"x": 1}),
            seconds: 1.5,
            logs: None,
        };
        let text = format!(
            "noise\r\n{RESULT_PREFIX}{}\r\n{RESULT_PREFIX}{{broken\r\n{DONE}\r\n",
            serde_json::to_string(&one).unwrap()
        );
        let (results, done) = parse_results(&text);
        assert!(done);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].name, "a");
        let (none, done) = parse_results("REVIVE-RESULT {}\n");
        assert!(none.is_empty() && !done);
    }
}
