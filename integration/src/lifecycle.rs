//! The lifecycle scenario table: every row drives a container through one part of
//! a task's life with `ctr` on a given runtime (`io.containerd.runc.v2` or
//! `io.containerd.revive.v2`) and checks what is observable from outside (ctr's exit codes,
//! output and errors, containerd's events, the node's processes, cgroups and mounts) and
//! from inside the container. The expected outcomes are what containerd's Go shim does, as
//! measured on both flavours; a drop-in shim must produce the same.
//!
//! A [`Table`] runs the rows one after another on one node and, after each row, checks that
//! nothing is left: no shim process, no bundle directory or mount below containerd's task
//! directory, no container cgroup (memory, pids and the unified hierarchy), no container or
//! task record. It reports every failing row, and cleans up after a failed row so that the
//! next one starts from a clean node.
//!
//! Differences between the flavours that the rows encode:
//! - `ctr task kill --all` with a signal other than SIGKILL reaches every process of the
//!   container with runc 1.1 (stable) but only its init with runc >= 1.2 (lts, latest), where
//!   `runc kill --all` is obsolete (the shim passes `--all` to runc either way).
//! - ctr 1.7 suffixes the gRPC code to errors (`...: unknown`), ctr 2.x does not; the rows
//!   match the message, not the suffix.
//! - ctr 1.7 sends the terminal size after the task started, ctr 2.x before: the tty rows wait
//!   inside the container until the size arrived.
//!
//! Things the rows rely on that are not obvious:
//! - ctr has no `task wait` and no `task update`: exit statuses come from `ctr events`
//!   (`/tasks/exit`, where a zero status is left out of the JSON) and from the warning
//!   `ctr task delete` prints for a non-zero one; updates go through containerd's gRPC API.
//! - Files inside a container are read and written from the node through
//!   `/proc/<init pid>/root`, which works for any shim and also while the task is paused.
//! - ctr closes a task's stdin on EOF only if the EOF comes after the task was created (an
//!   earlier one is lost), so the stdin row writes once the task runs.
//! - ctr accepts `--runc-binary` only with `--runtime io.containerd.runc.v2`; the
//!   missing-runtime row therefore hides runc from PATH, which works for any shim.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;

use crate::ctr::{self, Status, remove, wait_status};
use crate::harness::{Shared, Suite};
use crate::image::busybox_builder;
use crate::node::Node;
use crate::rootfs;
use crate::scenario::{COUNTER_SCRIPT, Counter, parse_counter, wait_count};

/// The image every row runs: busybox plus the scripts below in /lc.
pub const IMAGE: &str = "docker.io/revive/lifecycle:1";
/// containerd's runtime v2 task directory inside a node (bundles and rootfs mounts).
pub const TASK_DIR: &str = "/run/containerd/io.containerd.runtime.v2.task";
/// The containerd namespace ctr uses.
pub const NAMESPACE: &str = "default";
/// The cgroup v1 controllers (and the unified hierarchy) checked for leftovers.
pub const CGROUP_CONTROLLERS: &[&str] = &["memory", "pids", "unified"];

/// How long a ctr command may take.
const CTR_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for something that must happen (a status, a file, an event).
const WAIT: Duration = Duration::from_secs(30);
/// How long leftovers may take to go away after a row (shims exit asynchronously).
const SETTLE: Duration = Duration::from_secs(15);

/// Scripts in the image's /lc directory. (tty.sh waits for a size because busybox's
/// `stty size` prints nothing and exits 0 while the terminal has none.)
const SCRIPTS: &[(&str, &str)] = &[
    ("io.sh", "echo out\necho err >&2\nexit \"${1:-0}\"\n"),
    (
        "upper.sh",
        "while read -r l; do echo \"$l\" | tr a-z A-Z; done\necho eof\nexit 5\n",
    ),
    (
        "tty.sh",
        "tty\n[ -t 0 ] && echo stdin-is-tty\n[ -t 1 ] && echo stdout-is-tty\n\
         i=0\nuntil s=$(stty size 2>/dev/null) && [ -n \"$s\" ] && [ \"$s\" != \"0 0\" ]; do\n  \
         i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.1\ndone\n\
         echo \"size=$s\"\necho to-stderr >&2\nread -r l\necho \"got=$l\"\nexit 4\n",
    ),
    (
        "gate.sh",
        "echo ready > /gate-ready\nwhile [ ! -e /go ]; do sleep 0.1; done\nexit \"${1:-0}\"\n",
    ),
    (
        "trap.sh",
        "trap 'echo hup >> /signals' HUP\ntrap 'echo term >> /signals; exit 42' TERM\n\
         echo ready > /ready\nwhile true; do sleep 0.1; done\n",
    ),
    (
        "sig.sh",
        "trap \"echo $1-term >> /signals\" TERM\ntrap \"echo $1-winch >> /signals\" WINCH\n\
         echo \"$1\" >> /started\nwhile true; do sleep 0.1; done\n",
    ),
    (
        "family.sh",
        "sh /lc/sig.sh child &\nexec sh /lc/sig.sh init\n",
    ),
    (
        "sleepers.sh",
        "for s in \"$@\"; do sleep \"$s\" & done\necho ready > /sleepers-ready\nwait\n",
    ),
    (
        "orphan.sh",
        "sleep \"$1\" &\necho $! > /child\nwhile [ ! -e /go ]; do sleep 0.1; done\nexit 3\n",
    ),
    ("oom.sh", "x=a\nwhile true; do x=$x$x; done\n"),
];

/// One row of the table.
pub struct Row {
    pub name: &'static str,
    /// What the row checks, one line.
    pub checks: &'static str,
    pub run: fn(&Node, &str) -> Result<()>,
}

/// The table, in the order it runs.
pub const ROWS: &[Row] = &[
    Row {
        name: "run-detached",
        checks: "ctr run -d: RUNNING with the pid of /tasks/start; exit 7 in /tasks/exit, \
                 /tasks/delete and ctr task delete",
        run: run_detached,
    },
    Row {
        name: "run-attached",
        checks: "ctr run --rm: stdout and stderr kept apart, exit code 3 (and 0) propagated, \
                 container removed",
        run: run_attached,
    },
    Row {
        name: "stdin",
        checks: "ctr run with piped stdin: lines reach the process interactively, EOF closes \
                 its stdin, exit 5",
        run: stdin_piped,
    },
    Row {
        name: "tty",
        checks: "ctr run -t and ctr task exec -t: a pts on stdin and stdout, the terminal size, \
                 stderr on the tty, input, exit code",
        run: tty,
    },
    Row {
        name: "exec",
        checks: "exec exit code and separate streams, sees the init's files, exec ids (reuse, \
                 duplicate, ps), missing binary, exec in a stopped task",
        run: exec,
    },
    Row {
        name: "kill-signal",
        checks: "signals reach init (trapped HUP, TERM -> exit 42), SIGKILL -> 137, exec \
                 killed by TERM -> 143, kill of an exited task",
        run: kill_signal,
    },
    Row {
        name: "kill-all",
        checks: "ctr task kill --all: TERM reaches every process (runc 1.1) or only init \
                 (runc >= 1.2); KILL --all ends everything (exec 137)",
        run: kill_all,
    },
    Row {
        name: "shared-pid-ns",
        checks: "container in the node's pid namespace: kill --all reaches every process; \
                 when init exits the shim kills the rest",
        run: shared_pid_ns,
    },
    Row {
        name: "pause-resume",
        checks: "PAUSED with a frozen cgroup and a counter that stands still, exec/pause refused, \
                 RUNNING again and counting, SIGKILL while paused",
        run: pause_resume,
    },
    Row {
        name: "pids",
        checks: "ctr task ps lists exactly the container's cgroup: init, its children, an exec \
                 with its exec id",
        run: pids,
    },
    Row {
        name: "metrics",
        checks: "ctr task metrics: memory usage, cpu usage and pids of a running container, \
                 limit as in its cgroup",
        run: metrics,
    },
    Row {
        name: "update",
        checks: "Tasks.Update (gRPC): memory and pids limits land in the container's cgroups \
                 and metrics; a stopped task is refused",
        run: update,
    },
    Row {
        name: "log-uri",
        checks: "--log-uri file:// (both streams in the file) and binary:// (fd 3/4, ready on fd \
                 5, args and env); a missing logger is a clear error",
        run: log_uri,
    },
    Row {
        name: "delete",
        checks: "delete of a running task refused, delete after exit returns exit 9, second \
                 delete not found, delete --force kills (137)",
        run: delete,
    },
    Row {
        name: "containerd-restart",
        checks: "containerd killed and restarted: a running task keeps its pid and memory, execs, \
                 dies and deletes; one that exited meanwhile is cleaned up",
        run: containerd_restart,
    },
    Row {
        name: "oom",
        checks: "--memory-limit in the cgroup; exceeding it: /tasks/oom event, exit 137, \
                 oom_kill counted",
        run: oom,
    },
    Row {
        name: "missing-runc",
        checks: "runc missing from PATH (and --runc-binary for runc.v2): ctr fails naming the \
                 binary, no task, nothing left",
        run: missing_runc,
    },
];

/// The outcome of one row.
pub struct RowResult {
    pub row: &'static Row,
    pub result: Result<()>,
    pub elapsed: Duration,
}

/// Imports the table's image into the node.
pub fn import_image(node: &Node) -> Result<()> {
    let mut builder = busybox_builder(&node.rootfs().path, IMAGE)?.dir("lc", 0o755);
    for (name, text) in SCRIPTS {
        builder = builder.file(&format!("lc/{name}"), text.as_bytes(), 0o755);
    }
    builder = builder.file("lc/counter.sh", COUNTER_SCRIPT.as_bytes(), 0o755);
    node.import_image(&builder.cmd(&["sh"]).build()?)
}

/// The table on one node for one runtime: rows run one after another, each followed by the
/// check that nothing is left beyond what the node held before it. Every row runs, whatever
/// the previous ones did; each result says what failed.
pub struct Table {
    node: Node,
    runtime: String,
    baseline: Inventory,
    results: Vec<RowResult>,
    started: Instant,
}

impl Table {
    /// Imports the table's image into `node` and takes the baseline of what it holds.
    pub fn start(node: Node, runtime: &str) -> Result<Table> {
        import_image(&node)?;
        let baseline = Inventory::take(&node)?;
        Ok(Table {
            node,
            runtime: runtime.to_string(),
            baseline,
            results: Vec::new(),
            started: Instant::now(),
        })
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn runtime(&self) -> &str {
        &self.runtime
    }

    /// Runs `row`, then checks that nothing is left behind; after a failed row the node is
    /// cleaned up for the next one.
    pub fn run(&mut self, row: &'static Row) -> Result<&RowResult> {
        let node = &self.node;
        let started = Instant::now();
        let outcome = (row.run)(node, &self.runtime);
        let leftovers = self.baseline.wait_until_clean(node);
        let result = match (outcome, leftovers) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(err), Ok(())) => Err(err),
            (Ok(()), Err(left)) => Err(left),
            (Err(err), Err(left)) => Err(anyhow!("{err:#}\nand then: {left:#}")),
        };
        if result.is_err() {
            // Leave a clean node to the next row; whatever cannot be removed becomes part of
            // the baseline, so it is reported once, here.
            cleanup(node, &self.baseline);
            self.baseline = Inventory::take(node)?;
        }
        self.results.push(RowResult {
            row,
            result,
            elapsed: started.elapsed(),
        });
        Ok(self.results.last().expect("a result was just pushed"))
    }

    /// The rows run so far.
    pub fn results(&self) -> &[RowResult] {
        &self.results
    }

    /// How long since the table started (its image imported).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The node, once the rows are done.
    pub fn into_node(self) -> Node {
        self.node
    }
}

/// A table shared by the trials of its rows ([`add_row`]): the node `start` starts comes up
/// before the first row that runs; after the last, the rows' table is printed, `check` runs
/// on the node, and the node must stop leaving nothing behind. When a row failed, the node's
/// logs are printed and kept.
pub fn shared_table(
    runtime: &'static str,
    start: impl Fn() -> Result<Node> + Send + Sync + 'static,
    check: impl Fn(&Table) -> Result<()> + Send + Sync + 'static,
) -> Arc<Shared<Table>> {
    Shared::new(
        move || {
            let started = Instant::now();
            let node = start()?;
            eprintln!(
                "node {} up in {:.1?} ({}, {runtime})",
                node.name(),
                started.elapsed(),
                rootfs::versions_line(&node.rootfs().completion.versions)
            );
            Table::start(node, runtime)
        },
        move |table, failed| {
            let flavour = table.node().flavour();
            eprintln!(
                "{}({flavour} flavour, {:.1?} in all)",
                format_table(table.runtime(), table.results()),
                table.elapsed()
            );
            let checked = check(&table);
            let mut node = table.into_node();
            if failed || checked.is_err() {
                node.keep_logs();
                eprintln!(
                    "\n===== node {} ({flavour} flavour): logs of the failed rows, kept in {} \
                     ====={}",
                    node.name(),
                    node.logs_dir().display(),
                    node.log_tails()
                );
            }
            checked?;
            let left = node.stop()?;
            ensure!(left.is_empty(), "node left behind: {left:?}");
            Ok(())
        },
    )
}

/// Adds the trial of `row` on `table`, named `{prefix}::{row}`.
pub fn add_row(suite: &mut Suite, table: &Arc<Shared<Table>>, prefix: &str, row: &'static Row) {
    suite.on(table, &format!("{prefix}::{}", row.name), move |table| {
        let failure = table
            .run(row)?
            .result
            .as_ref()
            .err()
            .map(|e| format!("{e:#}"));
        match failure {
            None => Ok(()),
            Some(err) => bail!("{} on {}: {err}", row.name, table.runtime()),
        }
    });
}

/// The table as text: one line per row, then the errors of failed rows in full.
pub fn format_table(runtime: &str, results: &[RowResult]) -> String {
    let width = results.iter().map(|r| r.row.name.len()).max().unwrap_or(0);
    let mut out = format!("lifecycle table for {runtime}:\n");
    for r in results {
        let status = match &r.result {
            Ok(()) => "ok    ".to_string(),
            Err(_) => "FAILED".to_string(),
        };
        out.push_str(&format!(
            "  {:width$}  {status}  {:>5.1}s  {}\n",
            r.row.name,
            r.elapsed.as_secs_f64(),
            r.row.checks
        ));
    }
    for r in results {
        if let Err(err) = &r.result {
            out.push_str(&format!("\n--- {} failed:\n{err:#}\n", r.row.name));
        }
    }
    out
}

// ----- what the node holds ---------------------------------------------------------------

/// What of the node's containers exists: shim processes, bundles and mounts below the task
/// directory, container cgroups, and containerd's container and task records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub items: BTreeSet<String>,
}

impl Inventory {
    pub fn take(node: &Node) -> Result<Inventory> {
        let mut items = BTreeSet::new();
        for (pid, args) in node_processes(node)? {
            let program = args.split_whitespace().next().unwrap_or("");
            let base = program.rsplit('/').next().unwrap_or("");
            if base.starts_with("containerd-shim") {
                items.insert(format!("shim process {pid}: {args}"));
            }
        }
        let bundles = node.sh(&format!(
            "for d in {TASK_DIR}/*/*; do [ -e \"$d\" ] && echo \"$d\"; done; true"
        ))?;
        for bundle in bundles.lines().filter(|l| !l.is_empty()) {
            items.insert(format!("bundle directory {bundle}"));
        }
        for line in node.run(&["cat", "/proc/mounts"])?.lines() {
            if let Some(point) = line.split_whitespace().nth(1)
                && point.starts_with(&format!("{TASK_DIR}/"))
            {
                items.insert(format!("mount {point}"));
            }
        }
        let dirs: Vec<String> = CGROUP_CONTROLLERS
            .iter()
            .map(|c| format!("/sys/fs/cgroup/{c}"))
            .collect();
        let mut find = vec!["find"];
        find.extend(dirs.iter().map(String::as_str));
        find.extend(["-mindepth", "2", "-maxdepth", "2", "-type", "d"]);
        for dir in node.run(&find)?.lines().filter(|l| !l.is_empty()) {
            items.insert(format!("cgroup {dir}"));
        }
        for id in node.ctr(&["containers", "ls", "-q"])?.lines() {
            if !id.trim().is_empty() {
                items.insert(format!("container {}", id.trim()));
            }
        }
        for id in node.ctr(&["tasks", "ls", "-q"])?.lines() {
            if !id.trim().is_empty() {
                items.insert(format!("task {}", id.trim()));
            }
        }
        Ok(Inventory { items })
    }

    /// What `now` holds that this baseline does not.
    pub fn new_in(&self, now: &Inventory) -> Vec<String> {
        now.items.difference(&self.items).cloned().collect()
    }

    /// Waits until the node holds nothing beyond this baseline; fails listing what is left.
    pub fn wait_until_clean(&self, node: &Node) -> Result<()> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let now = Inventory::take(node)?;
            let left = self.new_in(&now);
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "left behind after the row (still there after {SETTLE:?}):\n  {}",
                    left.join("\n  ")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Best-effort removal of everything beyond `baseline`, after a failed row.
fn cleanup(node: &Node, baseline: &Inventory) {
    let Ok(now) = Inventory::take(node) else {
        return;
    };
    let left = baseline.new_in(&now);
    for item in &left {
        if let Some(id) = item.strip_prefix("task ") {
            let _ = node.exec_timeout(&["ctr", "task", "rm", "-f", id], CTR_TIMEOUT);
        }
    }
    for item in &left {
        if let Some(id) = item.strip_prefix("container ") {
            let _ = node.exec_timeout(&["ctr", "containers", "rm", id], CTR_TIMEOUT);
        }
    }
    for item in &left {
        if let Some(rest) = item.strip_prefix("shim process ")
            && let Some((pid, _)) = rest.split_once(':')
        {
            let _ = node.exec_timeout(&["kill", "-9", pid], CTR_TIMEOUT);
        }
    }
    let mut mounts: Vec<&str> = left
        .iter()
        .filter_map(|i| i.strip_prefix("mount "))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for point in mounts {
        let _ = node.exec_timeout(&["umount", "-l", point], CTR_TIMEOUT);
    }
    for item in &left {
        if let Some(dir) = item.strip_prefix("cgroup ") {
            let _ = node.exec_timeout(&["rmdir", dir], CTR_TIMEOUT);
        }
    }
}

/// The node's processes as (pid, command line).
pub fn node_processes(node: &Node) -> Result<Vec<(u32, String)>> {
    let out = node.run(&["ps", "-eo", "pid=,args="])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (pid, args) = l.split_once(' ')?;
            Some((pid.parse().ok()?, args.trim().to_string()))
        })
        .collect())
}

/// Pids of the node's processes whose command line is exactly `args`.
fn pids_running(node: &Node, args: &str) -> Result<Vec<u32>> {
    Ok(node_processes(node)?
        .into_iter()
        .filter(|(_, a)| a == args)
        .map(|(p, _)| p)
        .collect())
}

// ----- driving ctr ---------------------------------------------------------------------------

fn ctr_output(node: &Node, args: &[&str]) -> Result<std::process::Output> {
    let mut full = vec!["ctr"];
    full.extend_from_slice(args);
    node.exec_timeout(&full, CTR_TIMEOUT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `ctr args`, which must fail; returns its stderr.
fn ctr_fails(node: &Node, args: &[&str]) -> Result<String> {
    let out = ctr_output(node, args)?;
    ensure!(
        !out.status.success(),
        "`ctr {}` succeeded but must fail; stdout: {:?}, stderr: {:?}",
        args.join(" "),
        text(&out.stdout),
        text(&out.stderr)
    );
    Ok(text(&out.stderr))
}

/// Fails unless `haystack` (what `what` printed) contains every needle.
fn expect_contains(what: &str, haystack: &str, needles: &[&str]) -> Result<()> {
    for needle in needles {
        ensure!(
            haystack.contains(needle),
            "{what}: expected {needle:?} in {:?}",
            haystack.trim()
        );
    }
    Ok(())
}

/// Runs `ctr args`, which must fail saying every one of `needles` (`what` names the attempt).
fn ctr_refuses(node: &Node, args: &[&str], what: &str, needles: &[&str]) -> Result<()> {
    expect_contains(what, &ctr_fails(node, args)?, needles)
}

/// `ctr run -d --runtime <runtime> [extra] IMAGE id command...`
fn run_detached_task(
    node: &Node,
    runtime: &str,
    id: &str,
    extra: &[&str],
    command: &[&str],
) -> Result<()> {
    let mut args = vec!["run", "-d", "--runtime", runtime];
    args.extend_from_slice(extra);
    args.push(IMAGE);
    args.push(id);
    args.extend_from_slice(command);
    node.ctr(&args)
        .with_context(|| format!("starting container {id} on {runtime}"))?;
    Ok(())
}

/// [`run_detached_task`] of `/lc/sleepers.sh`, whose init starts `sleep <seconds>` for each
/// of `seconds` and waits for them: the init's pid once they have started.
fn run_sleepers(
    node: &Node,
    runtime: &str,
    id: &str,
    extra: &[&str],
    seconds: [&str; 2],
) -> Result<u32> {
    let [first, second] = seconds;
    run_detached_task(
        node,
        runtime,
        id,
        extra,
        &["sh", "/lc/sleepers.sh", first, second],
    )?;
    let (pid, _) = task(node, id)?;
    wait_file(node, &in_task(pid, "/sleepers-ready"))?;
    Ok(pid)
}

/// `ctr task kill -s SIGKILL` of task `id`, then a wait until it is stopped.
fn kill_task(node: &Node, id: &str) -> Result<()> {
    node.ctr(&["task", "kill", "-s", "SIGKILL", id])?;
    wait_status(node, id, Status::Stopped)?;
    Ok(())
}

/// `ctr run -d --runtime <runtime> [extra] IMAGE id true`, which must fail saying every one
/// of `needles` (`what` names the attempt) and leave no task; the container record it leaves
/// is removed.
fn run_refused(
    node: &Node,
    runtime: &str,
    extra: &[&str],
    id: &str,
    what: &str,
    needles: &[&str],
) -> Result<()> {
    let mut args = vec!["run", "-d", "--runtime", runtime];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMAGE, id, "true"]);
    ctr_refuses(node, &args, what, needles)?;
    expect_no_task(node, id)?;
    node.ctr(&["containers", "rm", id])?;
    Ok(())
}

/// The task's pid and status; fails when ctr task ls does not list it.
fn task(node: &Node, id: &str) -> Result<(u32, Status)> {
    ctr::task(node, id).map(|t| (t.pid, t.status))
}

fn expect_no_task(node: &Node, id: &str) -> Result<()> {
    ensure!(
        ctr::find_task(node, id)?.is_none(),
        "task {id} is still listed by ctr task ls"
    );
    Ok(())
}

fn containers(node: &Node) -> Result<Vec<String>> {
    Ok(node
        .ctr(&["containers", "ls", "-q"])?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// `ctr task delete` of a stopped task, which must report exit status `status` (ctr prints a
/// non-zero one as a warning on stderr, and nothing for 0).
fn delete_task(node: &Node, id: &str, status: i64) -> Result<()> {
    let out = ctr_output(node, &["task", "delete", id])?;
    ensure!(
        out.status.success(),
        "ctr task delete {id} failed ({}): {}",
        out.status,
        text(&out.stderr).trim()
    );
    let stderr = text(&out.stderr);
    if status == 0 {
        ensure!(
            !stderr.contains("exit code"),
            "ctr task delete {id} reports a non-zero exit: {stderr:?}"
        );
    } else {
        expect_contains(
            &format!("ctr task delete {id}"),
            &stderr,
            &[&format!("task {id} exit with non-zero exit code {status}")],
        )?;
    }
    Ok(())
}

/// [`delete_task`] of `id`'s stopped task, then `ctr containers rm` of the container.
fn delete_container(node: &Node, id: &str, status: i64) -> Result<()> {
    delete_task(node, id, status)?;
    node.ctr(&["containers", "rm", id])?;
    Ok(())
}

/// Fails unless task `id` is `want`; `when` says when, for the message.
fn expect_status(node: &Node, id: &str, want: Status, when: &str) -> Result<()> {
    let (_, status) = task(node, id)?;
    ensure!(status == want, "{when} the task is {status}");
    Ok(())
}

/// Removes the containers whatever state a failed row left them in, keeping the row's error.
fn finish(node: &Node, ids: &[&str], result: Result<()>) -> Result<()> {
    for id in ids {
        if let Err(err) = remove_quietly(node, id)
            && result.is_ok()
        {
            return Err(err);
        }
    }
    result
}

fn remove_quietly(node: &Node, id: &str) -> Result<()> {
    if !containers(node)?.iter().any(|c| c == id) {
        return Ok(());
    }
    remove(node, id)
}

/// A path inside the container through its init's /proc entry, as the node sees it.
fn in_task(pid: u32, path: &str) -> String {
    format!("/proc/{pid}/root{path}")
}

/// Waits until the node file `path` exists and returns its contents.
fn wait_file(node: &Node, path: &str) -> Result<String> {
    wait_file_until(node, path, |_| true)
}

/// Waits until the node file `path` exists and `done` accepts its contents.
fn wait_file_until(node: &Node, path: &str, done: impl Fn(&str) -> bool) -> Result<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = node.exec_timeout(&["cat", path], CTR_TIMEOUT)?;
        let contents = text(&out.stdout);
        if out.status.success() && done(&contents) {
            return Ok(contents);
        }
        ensure!(
            Instant::now() < deadline,
            "{path} in the node: not as expected after {WAIT:?} (now {:?}{})",
            contents,
            if out.status.success() {
                String::new()
            } else {
                format!(", cat: {}", text(&out.stderr).trim())
            }
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until no node process has the command line `args`.
fn wait_gone(node: &Node, args: &str) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let pids = pids_running(node, args)?;
        if pids.is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "`{args}` still runs (pids {pids:?}) after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Rows of `ctr task ps`: (pid, info).
fn task_ps(node: &Node, id: &str) -> Result<Vec<(u32, String)>> {
    Ok(node
        .ctr(&["task", "ps", id])?
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (pid, info) = l.trim().split_once(char::is_whitespace)?;
            Some((pid.parse().ok()?, info.trim().to_string()))
        })
        .collect())
}

/// Waits until `ctr task ps` lists the exec `exec_id`; returns its pid.
fn wait_exec(node: &Node, id: &str, exec_id: &str) -> Result<u32> {
    let info = format!("exec_id:\"{exec_id}\"");
    let deadline = Instant::now() + WAIT;
    loop {
        let ps = task_ps(node, id)?;
        if let Some((pid, _)) = ps.iter().find(|(_, i)| *i == info) {
            return Ok(*pid);
        }
        ensure!(
            Instant::now() < deadline,
            "exec {exec_id} of {id} not in ctr task ps after {WAIT:?}: {ps:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cgroup_file(controller: &str, id: &str, file: &str) -> String {
    format!("/sys/fs/cgroup/{controller}/{NAMESPACE}/{id}/{file}")
}

fn read_node_file(node: &Node, path: &str) -> Result<String> {
    Ok(node.run(&["cat", path])?.trim().to_string())
}

fn read_counter_of(node: &Node, pid: u32) -> Result<Counter> {
    parse_counter(&read_node_file(node, &in_task(pid, "/state"))?)
}

fn wait_counter(node: &Node, pid: u32, min: u64) -> Result<Counter> {
    wait_count(|| read_counter_of(node, pid), min, &format!("pid {pid}"))
}

// ----- a command running in the background --------------------------------------------------

/// A command in the node whose output is read while it runs.
struct Spawned {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<Vec<u8>>>,
}

/// What a background command did.
struct Finished {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
}

impl Spawned {
    fn start(node: &Node, args: &[&str], with_stdin: bool) -> Result<Spawned> {
        let what = args.join(" ");
        let mut cmd = node.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if with_stdin {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().with_context(|| format!("starting `{what}`"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut stderr = child.stderr.take().context("no stderr")?;
        let (tx, lines) = mpsc::channel();
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        Ok(Spawned {
            what,
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
        })
    }

    fn write(&mut self, data: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin.write_all(data.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits until the command printed the line `want`.
    fn expect_line(&mut self, want: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.seen.iter().any(|l| l == want) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => bail!(
                    "`{}` did not print {want:?} (printed so far: {:?})",
                    self.what,
                    self.seen
                ),
            }
        }
    }

    /// Waits for the command to exit (killing it after `WAIT`) and collects its output.
    fn finish(mut self) -> Result<Finished> {
        self.stdin = None;
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "`{}` did not exit within {WAIT:?} (printed: {:?})",
                    self.what,
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.stdout_reader.take() {
            let _ = reader.join();
        }
        let mut stdout = std::mem::take(&mut self.seen);
        stdout.extend(self.lines.try_iter());
        let stderr = self
            .stderr_reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default();
        Ok(Finished {
            status,
            stdout,
            stderr: text(&stderr),
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ----- containerd's events --------------------------------------------------------------------

/// `ctr events` running in the node, written to /var/log/revive/events-<tag>.log.
struct Events {
    pid: u32,
    path: std::path::PathBuf,
    tag: String,
}

/// One event line: topic and payload.
#[derive(Debug, Clone)]
struct Event {
    topic: String,
    payload: Value,
}

impl Events {
    /// Starts `ctr events` and waits until it receives events, so that nothing after this
    /// call is missed: it creates and removes marker namespaces until one of their events
    /// shows up (`ctr events` subscribes some time after it started).
    fn start(node: &Node, tag: &str) -> Result<Events> {
        let log = format!("events-{tag}");
        let pid = node.spawn_daemon(&log, "ctr events")?;
        let events = Events {
            pid,
            path: node.logs_dir().join(format!("{log}.log")),
            tag: tag.to_string(),
        };
        match events.sync(node) {
            Ok(()) => Ok(events),
            Err(err) => {
                events.stop(node);
                Err(err)
            }
        }
    }

    fn sync(&self, node: &Node) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        for attempt in 0.. {
            let marker = format!("lc-sync-{}-{attempt}", self.tag);
            node.ctr(&["namespaces", "create", &marker])?;
            node.ctr(&["namespaces", "remove", &marker])?;
            let round = Instant::now() + Duration::from_secs(1);
            while Instant::now() < round {
                if self.all().iter().any(|e| {
                    e.topic.starts_with("/namespaces/") && e.payload["name"] == marker.as_str()
                }) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            ensure!(
                Instant::now() < deadline,
                "ctr events ({}) received no event within {WAIT:?}",
                self.path.display()
            );
        }
        unreachable!("the attempts never end")
    }

    fn all(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                // "<date> <time> <zone offset> <zone> <namespace> <topic> <json>"
                let mut cols = line.splitn(7, ' ');
                let topic = cols.nth(5)?;
                let payload = serde_json::from_str(cols.next()?).ok()?;
                Some(Event {
                    topic: topic.to_string(),
                    payload,
                })
            })
            .collect()
    }

    /// Waits for an event of `topic` whose payload `matches`.
    fn wait(&self, node: &Node, topic: &str, matches: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self
                .all()
                .into_iter()
                .find(|e| e.topic == topic && matches(&e.payload))
            {
                return Ok(e.payload);
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self
                    .all()
                    .iter()
                    .map(|e| format!("{} {}", e.topic, e.payload))
                    .collect();
                bail!(
                    "no {topic} event as expected within {WAIT:?} (ctr events {} in node {}; saw:\n  {})",
                    self.tag,
                    node.name(),
                    seen.join("\n  ")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status of process `exec_id` (the init when equal to `id`) of container `id`,
    /// from its /tasks/exit event (a zero status is left out of the event's JSON).
    fn exit_status(&self, node: &Node, id: &str, exec_id: &str) -> Result<(i64, u64)> {
        let e = self.wait(node, "/tasks/exit", |p| {
            p["container_id"] == id && p["id"] == exec_id
        })?;
        Ok((
            e["exit_status"].as_i64().unwrap_or(0),
            e["pid"].as_u64().unwrap_or(0),
        ))
    }

    fn stop(self, node: &Node) {
        let _ = node.exec_timeout(&["kill", &self.pid.to_string()], CTR_TIMEOUT);
    }
}

/// Runs `body` with an event log, stopping it afterwards whatever happened.
fn with_events(node: &Node, tag: &str, body: impl FnOnce(&Events) -> Result<()>) -> Result<()> {
    let events = Events::start(node, tag)?;
    let result = body(&events);
    events.stop(node);
    result
}

// ----- the rows -------------------------------------------------------------------------------

fn run_detached(node: &Node, runtime: &str) -> Result<()> {
    let id = "lc-detached";
    let result = with_events(node, id, |events| {
        run_detached_task(node, runtime, id, &[], &["sh", "/lc/gate.sh", "7"])?;
        let (pid, status) = task(node, id)?;
        ensure!(
            status == Status::Running,
            "after ctr run -d, {id} is {status}"
        );
        let start = events.wait(node, "/tasks/start", |p| p["container_id"] == id)?;
        ensure!(
            start["pid"].as_u64() == Some(pid.into()),
            "/tasks/start names pid {} but ctr task ls {pid}",
            start["pid"]
        );
        wait_file(node, &in_task(pid, "/gate-ready"))?;
        node.run(&["touch", &in_task(pid, "/go")])?;
        wait_status(node, id, Status::Stopped)?;
        let (status, exit_pid) = events.exit_status(node, id, id)?;
        ensure!(
            status == 7,
            "/tasks/exit of {id}: exit status {status}, expected 7"
        );
        ensure!(
            exit_pid == u64::from(pid),
            "/tasks/exit names pid {exit_pid}, the task's pid is {pid}"
        );
        delete_task(node, id, 7)?;
        match events.wait(node, "/tasks/delete", |p| p["container_id"] == id) {
            Ok(deleted) => ensure!(
                deleted["exit_status"].as_i64() == Some(7),
                "/tasks/delete of {id} carries exit status {}, expected 7",
                deleted["exit_status"]
            ),
            // containerd-shim-runc-v2 publishes TaskDelete from a queue that its exit right
            // after Delete may cut short (containerd issue 8981: the daemon cannot tell
            // whether the shim sent it); seen once under load. Seen, reported, not failed on:
            // the reference.
            Err(e) if runtime == "io.containerd.runc.v2" => {
                eprintln!("NOTE: {runtime} published no /tasks/delete for {id}: {e:#}");
            }
            Err(e) => return Err(e),
        }
        expect_no_task(node, id)?;
        node.ctr(&["containers", "rm", id])?;
        Ok(())
    });
    finish(node, &[id], result)
}

fn run_attached(node: &Node, runtime: &str) -> Result<()> {
    let id = "lc-attached";
    let result = (|| {
        let out = ctr_output(
            node,
            &[
                "run",
                "--rm",
                "--runtime",
                runtime,
                IMAGE,
                id,
                "sh",
                "/lc/io.sh",
                "3",
            ],
        )?;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        ensure!(
            out.status.code() == Some(3),
            "ctr run --rm of `exit 3` exited with {} (stderr {stderr:?})",
            out.status
        );
        ensure!(
            stdout == "out\n",
            "stdout of ctr run is {stdout:?}, expected \"out\\n\""
        );
        ensure!(
            stderr.lines().any(|l| l == "err") && !stderr.lines().any(|l| l == "out"),
            "stderr of ctr run is {stderr:?}, expected the line \"err\" and not \"out\""
        );
        ensure!(
            !containers(node)?.iter().any(|c| c == id),
            "ctr run --rm left container {id}"
        );
        let out = ctr_output(
            node,
            &["run", "--rm", "--runtime", runtime, IMAGE, id, "true"],
        )?;
        ensure!(
            out.status.code() == Some(0) && out.stdout.is_empty(),
            "ctr run --rm of `true`: {} stdout {:?} stderr {:?}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        Ok(())
    })();
    finish(node, &[id], result)
}

fn stdin_piped(node: &Node, runtime: &str) -> Result<()> {
    let id = "lc-stdin";
    let result = (|| {
        let mut ctr = Spawned::start(
            node,
            &[
                "ctr",
                "run",
                "--rm",
                "--runtime",
                runtime,
                IMAGE,
                id,
                "sh",
                "/lc/upper.sh",
            ],
            true,
        )?;
        // ctr closes the task's stdin on EOF only once the task exists (an EOF that comes
        // earlier is lost: a race in ctr, not in the shim), so write once it runs.
        wait_status(node, id, Status::Running)?;
        ctr.write("hello\n")?;
        ctr.expect_line("HELLO")?;
        ctr.write("world\n")?;
        ctr.expect_line("WORLD")?;
        ctr.close_stdin();
        let done = ctr.finish()?;
        ensure!(
            done.stdout == ["HELLO", "WORLD", "eof"],
            "stdout of the stdin container: {:?}, expected HELLO, WORLD, eof",
            done.stdout
        );
        ensure!(
            done.status.code() == Some(5),
            "ctr run exited with {} after stdin closed, expected 5 (stderr {:?})",
            done.status,
            done.stderr
        );
        Ok(())
    })();
    finish(node, &[id], result)
}

/// Output of a terminal session as lines, without carriage returns and NULs.
fn tty_lines(bytes: &[u8]) -> Vec<String> {
    text(bytes)
        .replace(['\r', '\0'], "")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs `command` (a ctr command attached to a terminal) under `script`, with a terminal of
/// `rows` x `cols` and "hello" typed in; checks what /lc/tty.sh reports.
fn tty_session(node: &Node, what: &str, command: &str, rows: u32, cols: u32) -> Result<()> {
    let file = format!("lc-{}.sh", what.replace(' ', "-"));
    std::fs::write(
        node.share_dir().join(&file),
        format!("stty rows {rows} cols {cols}\nexec {command}\n"),
    )?;
    let out = node.exec_timeout(
        &[
            "sh",
            "-c",
            &format!("printf 'hello\\n' | script -qec 'sh /share/{file}' /dev/null"),
        ],
        CTR_TIMEOUT,
    )?;
    let lines = tty_lines(&out.stdout);
    let context = || format!("{what} on a terminal printed {lines:?}");
    ensure!(
        out.status.code() == Some(4),
        "{what}: exit status {}, expected 4 ({}; stderr {:?})",
        out.status,
        context(),
        text(&out.stderr)
    );
    ensure!(
        lines.iter().any(|l| l.starts_with("/dev/pts/")),
        "{what}: `tty` did not name a pts ({})",
        context()
    );
    for want in [
        "stdin-is-tty",
        "stdout-is-tty",
        &format!("size={rows} {cols}"),
        "to-stderr",
        "got=hello",
    ] {
        ensure!(
            lines.iter().any(|l| l == want),
            "{what}: no line {want:?} ({})",
            context()
        );
    }
    Ok(())
}

fn tty(node: &Node, runtime: &str) -> Result<()> {
    let (id, exec_host) = ("lc-tty", "lc-tty-exec");
    let result = (|| {
        tty_session(
            node,
            "tty run",
            &format!("ctr run --rm -t --runtime {runtime} {IMAGE} {id} sh /lc/tty.sh"),
            45,
            123,
        )?;
        ensure!(
            !containers(node)?.iter().any(|c| c == id),
            "ctr run --rm -t left container {id}"
        );
        run_detached_task(node, runtime, exec_host, &[], &["sleep", "1000"])?;
        tty_session(
            node,
            "tty exec",
            &format!("ctr task exec -t --exec-id t1 {exec_host} sh /lc/tty.sh"),
            22,
            77,
        )?;
        remove(node, exec_host)
    })();
    finish(node, &[id, exec_host], result)
}

fn exec(node: &Node, runtime: &str) -> Result<()> {
    let id = "lc-exec";
    let result = (|| {
        run_detached_task(
            node,
            runtime,
            id,
            &[],
            &["sh", "-c", "echo from-init > /marker; exec sleep 1000"],
        )?;
        let (pid, _) = task(node, id)?;
        wait_file(node, &in_task(pid, "/marker"))?;

        let out = ctr_output(
            node,
            &[
                "task",
                "exec",
                "--exec-id",
                "x1",
                id,
                "sh",
                "-c",
                "cat /marker; echo exec-err >&2; exit 6",
            ],
        )?;
        ensure!(
            out.status.code() == Some(6),
            "ctr task exec of `exit 6` exited with {} (stderr {:?})",
            out.status,
            text(&out.stderr)
        );
        ensure!(
            text(&out.stdout) == "from-init\n",
            "the exec's stdout is {:?}, expected the init's file (\"from-init\\n\")",
            text(&out.stdout)
        );
        ensure!(
            text(&out.stderr).lines().any(|l| l == "exec-err")
                && !text(&out.stderr).contains("from-init"),
            "the exec's stderr is {:?}",
            text(&out.stderr)
        );

        // An exec id is free again once its process exited and ctr deleted it.
        node.ctr(&["task", "exec", "--exec-id", "x1", id, "true"])
            .context("reusing the exec id of a finished exec")?;

        node.ctr(&["task", "exec", "-d", "--exec-id", "x2", id, "sleep", "1001"])?;
        let x2 = wait_exec(node, id, "x2")?;
        ensure!(
            pids_running(node, "sleep 1001")?.contains(&x2),
            "ctr task ps says exec x2 is pid {x2}, which is not `sleep 1001` in the node"
        );
        ctr_refuses(
            node,
            &["task", "exec", "-d", "--exec-id", "x2", id, "true"],
            "a second exec with a running exec's id",
            &["x2", "already exists"],
        )?;

        ctr_refuses(
            node,
            &["task", "exec", "--exec-id", "x3", id, "/lc-no-such-binary"],
            "exec of a missing binary",
            &["/lc-no-such-binary", "no such file or directory"],
        )?;
        expect_status(node, id, Status::Running, "after a failed exec")?;

        kill_task(node, id)?;
        ctr_refuses(
            node,
            &["task", "exec", "--exec-id", "x4", id, "true"],
            "exec in a stopped task",
            &["cannot exec in a stopped state"],
        )?;
        delete_container(node, id, 137)?;
        Ok(())
    })();
    finish(node, &[id], result)
}

fn kill_signal(node: &Node, runtime: &str) -> Result<()> {
    let (trapper, plain) = ("lc-kill-trap", "lc-kill-plain");
    let result = with_events(node, trapper, |events| {
        run_detached_task(node, runtime, trapper, &[], &["sh", "/lc/trap.sh"])?;
        let (pid, _) = task(node, trapper)?;
        wait_file(node, &in_task(pid, "/ready"))?;
        node.ctr(&["task", "kill", "-s", "SIGHUP", trapper])?;
        wait_file_until(node, &in_task(pid, "/signals"), |s| s.contains("hup"))
            .context("the init's HUP trap did not run")?;
        expect_status(node, trapper, Status::Running, "after a trapped SIGHUP")?;
        // ctr task kill sends SIGTERM by default; the trap exits 42.
        node.ctr(&["task", "kill", trapper])?;
        wait_status(node, trapper, Status::Stopped)?;
        let (status, _) = events.exit_status(node, trapper, trapper)?;
        ensure!(
            status == 42,
            "the TERM trap exits 42, containerd reports {status}"
        );
        delete_container(node, trapper, 42)?;

        run_detached_task(node, runtime, plain, &[], &["sleep", "1000"])?;
        let exec = Spawned::start(
            node,
            &[
                "ctr",
                "task",
                "exec",
                "--exec-id",
                "victim",
                plain,
                "sleep",
                "1001",
            ],
            false,
        )?;
        wait_exec(node, plain, "victim")?;
        node.ctr(&[
            "task",
            "kill",
            "--exec-id",
            "victim",
            "-s",
            "SIGTERM",
            plain,
        ])?;
        let done = exec.finish()?;
        ensure!(
            done.status.code() == Some(143),
            "ctr task exec of a process killed by SIGTERM exited with {}, expected 143 \
             (stderr {:?})",
            done.status,
            done.stderr
        );
        let (status, _) = events.exit_status(node, plain, "victim")?;
        ensure!(
            status == 143,
            "/tasks/exit of the exec: {status}, expected 143"
        );
        let (_, status) = task(node, plain)?;
        ensure!(
            status == Status::Running,
            "killing an exec stopped the task ({status})"
        );

        kill_task(node, plain)?;
        let (status, _) = events.exit_status(node, plain, plain)?;
        ensure!(status == 137, "SIGKILL: exit status {status}, expected 137");
        ctr_refuses(
            node,
            &["task", "kill", plain],
            "kill of an exited task",
            &["process already finished"],
        )?;
        delete_container(node, plain, 137)?;
        Ok(())
    });
    finish(node, &[trapper, plain], result)
}

/// Whether the node's runc signals only the init on `kill --all` (runc >= 1.2).
fn runc_kill_all_is_init_only(node: &Node) -> Result<bool> {
    let version = node
        .version("runc")
        .context("the node's runc version is unknown")?;
    let mut parts = version.split(['.', '+', '~', '-']);
    let major: u32 = parts.next().unwrap_or("").parse()?;
    let minor: u32 = parts.next().unwrap_or("").parse()?;
    Ok((major, minor) >= (1, 2))
}

fn kill_all(node: &Node, runtime: &str) -> Result<()> {
    let id = "lc-kill-all";
    let result = (|| {
        let init_only = runc_kill_all_is_init_only(node)?;
        run_detached_task(node, runtime, id, &[], &["sh", "/lc/family.sh"])?;
        let (pid, _) = task(node, id)?;
        let exec = Spawned::start(
            node,
            &[
                "ctr",
                "task",
                "exec",
                "--exec-id",
                "member",
                id,
                "sh",
                "/lc/sig.sh",
                "exec",
            ],
            false,
        )?;
        let started = in_task(pid, "/started");
        wait_file_until(node, &started, |s| {
            ["init", "child", "exec"]
                .iter()
                .all(|w| s.lines().any(|l| l == *w))
        })?;
        node.ctr(&["task", "kill", "--all", "-s", "SIGTERM", id])?;
        let signals = in_task(pid, "/signals");
        if init_only {
            // runc >= 1.2: `runc kill --all` is obsolete and signals the init only.
            wait_file_until(node, &signals, |s| s.contains("init-term"))?;
            // A barrier: SIGWINCH (28) sent to the others now is handled after a pending
            // SIGTERM (15), so once they report WINCH a TERM would have shown.
            let child = pids_running(node, "sh /lc/sig.sh child")?;
            let member = pids_running(node, "sh /lc/sig.sh exec")?;
            ensure!(
                child.len() == 1 && member.len() == 1,
                "expected one child and one exec shell, found {child:?} and {member:?}"
            );
            node.run(&[
                "kill",
                "-WINCH",
                &child[0].to_string(),
                &member[0].to_string(),
            ])?;
            let seen = wait_file_until(node, &signals, |s| {
                s.contains("child-winch") && s.contains("exec-winch")
            })?;
            ensure!(
                !seen.contains("child-term") && !seen.contains("exec-term"),
                "with runc >= 1.2, kill --all SIGTERM reached more than the init: {seen:?}"
            );
        } else {
            // runc 1.1: every process in the container's cgroup gets the signal.
            wait_file_until(node, &signals, |s| {
                ["init-term", "child-term", "exec-term"]
                    .iter()
                    .all(|w| s.contains(w))
            })
            .context("kill --all SIGTERM did not reach every process")?;
        }
        expect_status(
            node,
            id,
            Status::Running,
            "after kill --all SIGTERM (trapped everywhere)",
        )?;
        node.ctr(&["task", "kill", "--all", "-s", "SIGKILL", id])?;
        wait_status(node, id, Status::Stopped)?;
        let done = exec.finish()?;
        ensure!(
            done.status.code() == Some(137),
            "the exec's ctr exited with {} after kill --all SIGKILL, expected 137",
            done.status
        );
        for args in [
            "sh /lc/sig.sh child",
            "sh /lc/sig.sh exec",
            "sh /lc/sig.sh init",
        ] {
            wait_gone(node, args)?;
        }
        delete_container(node, id, 137)?;
        Ok(())
    })();
    finish(node, &[id], result)
}

fn shared_pid_ns(node: &Node, runtime: &str) -> Result<()> {
    let (all, orphan) = ("lc-sharedpid-all", "lc-sharedpid-orphan");
    let host_pid_ns = ["--with-ns", "pid:/proc/1/ns/pid"];
    let result = (|| {
        run_sleepers(node, runtime, all, &host_pid_ns, ["2301", "2302"])?;
        let ps: BTreeSet<u32> = task_ps(node, all)?.into_iter().map(|(p, _)| p).collect();
        for args in ["sleep 2301", "sleep 2302"] {
            let pids = pids_running(node, args)?;
            ensure!(
                pids.len() == 1 && ps.contains(&pids[0]),
                "`{args}` (node pids {pids:?}) is not one process listed by ctr task ps {ps:?}"
            );
        }
        node.ctr(&["task", "kill", "--all", "-s", "SIGKILL", all])?;
        wait_status(node, all, Status::Stopped)?;
        for args in ["sleep 2301", "sleep 2302"] {
            wait_gone(node, args).context("kill --all in a shared pid namespace")?;
        }
        delete_container(node, all, 137)?;

        // The init exits by itself and leaves a child: in a shared pid namespace the kernel
        // does not end it, the shim does.
        run_detached_task(
            node,
            runtime,
            orphan,
            &host_pid_ns,
            &["sh", "/lc/orphan.sh", "2303"],
        )?;
        let (pid, _) = task(node, orphan)?;
        let child: u32 = wait_file(node, &in_task(pid, "/child"))?.trim().parse()?;
        ensure!(
            pids_running(node, "sleep 2303")? == [child],
            "the orphan-to-be `sleep 2303` is not pid {child}"
        );
        node.run(&["touch", &in_task(pid, "/go")])?;
        wait_status(node, orphan, Status::Stopped)?;
        wait_gone(node, "sleep 2303")
            .context("the init of a shared-pid-namespace container exited; its child lives on")?;
        delete_container(node, orphan, 3)?;
        Ok(())
    })();
    finish(node, &[all, orphan], result)
}

fn pause_resume(node: &Node, runtime: &str) -> Result<()> {
    let id = "lc-pause";
    let result = with_events(node, id, |events| {
        run_detached_task(node, runtime, id, &[], &["sh", "/lc/counter.sh"])?;
        let (pid, _) = task(node, id)?;
        let before = wait_counter(node, pid, 3)?;
        node.ctr(&["task", "pause", id])?;
        expect_status(node, id, Status::Paused, "after ctr task pause")?;
        events.wait(node, "/tasks/paused", |p| p["container_id"] == id)?;
        let freezer = read_node_file(node, &cgroup_file("freezer", id, "freezer.state"))?;
        ensure!(
            freezer == "FROZEN",
            "freezer.state of a paused task: {freezer}"
        );
        let paused = read_counter_of(node, pid)?;
        std::thread::sleep(Duration::from_secs(1));
        let still = read_counter_of(node, pid)?;
        ensure!(
            still == paused,
            "the counter moved while paused: {paused} -> {still}"
        );
        ctr_refuses(
            node,
            &["task", "exec", "--exec-id", "p1", id, "true"],
            "exec in a paused task",
            &["cannot exec in a paused state"],
        )?;
        ctr_refuses(
            node,
            &["task", "pause", id],
            "pause of a paused task",
            &["cannot pause a paused container"],
        )?;

        node.ctr(&["task", "resume", id])?;
        expect_status(node, id, Status::Running, "after ctr task resume")?;
        events.wait(node, "/tasks/resumed", |p| p["container_id"] == id)?;
        let freezer = read_node_file(node, &cgroup_file("freezer", id, "freezer.state"))?;
        ensure!(
            freezer == "THAWED",
            "freezer.state of a resumed task: {freezer}"
        );
        let after = wait_counter(node, pid, still.count + 3)?;
        ensure!(
            after.token == before.token,
            "the process changed across pause/resume: {before} -> {after}"
        );
        ctr_refuses(
            node,
            &["task", "resume", id],
            "resume of a running task",
            &["cannot resume a running process"],
        )?;

        node.ctr(&["task", "pause", id])?;
        wait_status(node, id, Status::Paused)?;
        node.ctr(&["task", "kill", "-s", "SIGKILL", id])?;
        wait_status(node, id, Status::Stopped).context("SIGKILL of a paused task")?;
        let (status, _) = events.exit_status(node, id, id)?;
        ensure!(status == 137, "SIGKILL while paused: exit status {status}");
        ctr_refuses(
            node,
            &["task", "pause", id],
            "pause of a stopped task",
            &["cannot pause a stopped container"],
        )?;
        delete_container(node, id, 137)?;
        Ok(())
    });
    finish(node, &[id], result)
}

fn pids(node: &Node, runtime: &str) -> Result<()> {
    let id = "lc-pids";
    let result = (|| {
        let init = run_sleepers(node, runtime, id, &[], ["2101", "2102"])?;
        node.ctr(&["task", "exec", "-d", "--exec-id", "px", id, "sleep", "2103"])?;
        let exec_pid = wait_exec(node, id, "px")?;
        let ps = task_ps(node, id)?;
        let listed: BTreeSet<u32> = ps.iter().map(|(p, _)| *p).collect();
        let procs = read_node_file(node, &cgroup_file("pids", id, "cgroup.procs"))?;
        let in_cgroup: BTreeSet<u32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        ensure!(
            listed == in_cgroup,
            "ctr task ps lists {listed:?}, the container's pids cgroup holds {in_cgroup:?}"
        );
        ensure!(
            ps.iter().any(|(p, info)| *p == init && info == "-"),
            "the init {init} is not in ctr task ps as a plain process: {ps:?}"
        );
        for args in ["sleep 2101", "sleep 2102"] {
            let pids = pids_running(node, args)?;
            ensure!(
                pids.len() == 1 && listed.contains(&pids[0]),
                "the init's child `{args}` (node pids {pids:?}) is not in ctr task ps {ps:?}"
            );
        }
        ensure!(
            pids_running(node, "sleep 2103")? == [exec_pid],
            "exec px is pid {exec_pid} in ctr task ps but not `sleep 2103` in the node"
        );
        ensure!(
            listed.len() == 4,
            "expected init, 2 children and an exec: {ps:?}"
        );
        remove(node, id)
    })();
    finish(node, &[id], result)
}

/// `ctr task metrics` as (metric, value) pairs.
fn metrics_of(node: &Node, id: &str) -> Result<Vec<(String, String)>> {
    let out = node.ctr(&["task", "metrics", id])?;
    let table = out
        .split_once("METRIC")
        .with_context(|| format!("no METRIC table in ctr task metrics:\n{out}"))?
        .1;
    Ok(table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            Some((cols.next()?.to_string(), cols.collect::<Vec<_>>().join(" ")))
        })
        .collect())
}

fn metric(metrics: &[(String, String)], name: &str) -> Result<u64> {
    let value = &metrics
        .iter()
        .find(|(m, _)| m == name)
        .with_context(|| format!("ctr task metrics has no {name}: {metrics:?}"))?
        .1;
    value
        .parse()
        .with_context(|| format!("metric {name} is {value:?}, not a number"))
}

fn metrics(node: &Node, runtime: &str) -> Result<()> {
    let id = "lc-metrics";
    let result = (|| {
        run_sleepers(node, runtime, id, &[], ["2201", "2202"])?;
        let processes = task_ps(node, id)?.len() as u64;
        let m = metrics_of(node, id)?;
        ensure!(
            metric(&m, "memory.usage_in_bytes")? > 0,
            "memory usage of a running container is 0: {m:?}"
        );
        ensure!(
            metric(&m, "cpuacct.usage")? > 0,
            "cpu usage of a running container is 0: {m:?}"
        );
        let current = metric(&m, "pids.current")?;
        ensure!(
            current == processes && current == 3,
            "pids.current is {current}; ctr task ps lists {processes}, expected 3"
        );
        let limit: u64 =
            read_node_file(node, &cgroup_file("memory", id, "memory.limit_in_bytes"))?.parse()?;
        ensure!(
            metric(&m, "memory.limit_in_bytes")? == limit,
            "memory.limit_in_bytes in metrics {} differs from the cgroup's {limit}",
            metric(&m, "memory.limit_in_bytes")?
        );
        remove(node, id)
    })();
    finish(node, &[id], result)
}

fn update(node: &Node, runtime: &str) -> Result<()> {
    let id = "lc-update";
    let result = (|| {
        run_detached_task(node, runtime, id, &[], &["sleep", "1000"])?;
        let memory = cgroup_file("memory", id, "memory.limit_in_bytes");
        let pids_max = cgroup_file("pids", id, "pids.max");
        let unlimited = read_node_file(node, &memory)?;
        ensure!(
            unlimited.parse::<u64>()? > 1 << 40,
            "a container without a limit has memory.limit_in_bytes {unlimited}"
        );
        update_task(
            node,
            id,
            &serde_json::json!({"memory": {"limit": 67108864}, "pids": {"limit": 64}}),
        )?;
        ensure!(
            read_node_file(node, &memory)? == "67108864",
            "after an update to 64 MiB memory.limit_in_bytes is {}",
            read_node_file(node, &memory)?
        );
        ensure!(
            read_node_file(node, &pids_max)? == "64",
            "after an update to 64 pids pids.max is {}",
            read_node_file(node, &pids_max)?
        );
        let m = metrics_of(node, id)?;
        ensure!(
            metric(&m, "memory.limit_in_bytes")? == 67108864 && metric(&m, "pids.limit")? == 64,
            "metrics after the update: {m:?}"
        );
        update_task(
            node,
            id,
            &serde_json::json!({"memory": {"limit": 134217728}}),
        )?;
        ensure!(
            read_node_file(node, &memory)? == "134217728",
            "after an update to 128 MiB memory.limit_in_bytes is {}",
            read_node_file(node, &memory)?
        );
        ensure!(
            read_node_file(node, &pids_max)? == "64",
            "a memory-only update changed pids.max to {}",
            read_node_file(node, &pids_max)?
        );
        expect_status(node, id, Status::Running, "after the updates")?;
        kill_task(node, id)?;
        let err = update_task(
            node,
            id,
            &serde_json::json!({"memory": {"limit": 67108864}}),
        )
        .err()
        .context("Tasks.Update of a stopped task succeeded")?;
        expect_contains(
            "Tasks.Update of a stopped task",
            &format!("{err:#}"),
            &["cannot update a stopped container"],
        )?;
        remove(node, id)
    })();
    finish(node, &[id], result)
}

/// The binary logger: containerd's protocol gives it the container's stdout on fd 3, stderr
/// on fd 4, and a pipe on fd 5 it closes when ready; CONTAINER_ID and CONTAINER_NAMESPACE in
/// an otherwise empty environment; the URI's query as arguments (key, value).
const LOGGER: &str = "#!/bin/sh\n\
PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
[ \"$1\" = dir ] || exit 2\n\
dir=$2\n\
mkdir -p \"$dir\"\n\
echo \"args=$* id=$CONTAINER_ID ns=$CONTAINER_NAMESPACE\" > \"$dir/info\"\n\
exec 5>&-\n\
cat <&3 > \"$dir/out\" &\n\
cat <&4 > \"$dir/err\" &\n\
wait\n";

fn log_uri(node: &Node, runtime: &str) -> Result<()> {
    let (file_id, binary_id, missing_id) = ("lc-log-file", "lc-log-binary", "lc-log-missing");
    let result = (|| {
        let log = "/var/log/revive/lc-log-uri/file.log";
        let _ = node.run(&["rm", "-rf", "/var/log/revive/lc-log-uri"]);
        run_detached_task(
            node,
            runtime,
            file_id,
            &["--log-uri", &format!("file://{log}")],
            &["sh", "/lc/io.sh", "2"],
        )?;
        wait_status(node, file_id, Status::Stopped)?;
        match wait_file_until(node, log, |s| s.lines().count() >= 2) {
            // containerd-shim-runc-v2 loses stderr now and then (twice in many runs, under
            // load): both streams share one file, and its copyPipes hands stdout's copier
            // the file itself rather than the counting closer, so stdout's end closes the
            // file under stderr's copier. Seen, reported, not failed on: the reference.
            Err(_) if runtime == "io.containerd.runc.v2" => {
                let now = node.run(&["cat", log])?;
                ensure!(now == "out\n", "the file log {log} holds {now:?}");
                eprintln!(
                    "NOTE: {runtime} lost stderr in its file:// log (its known copyPipes race)"
                );
            }
            other => {
                let contents = other?;
                let mut lines: Vec<&str> = contents.lines().collect();
                lines.sort();
                ensure!(
                    lines == ["err", "out"],
                    "the file log {log} holds {contents:?}, expected the lines out and err"
                );
            }
        }
        delete_container(node, file_id, 2)?;

        std::fs::write(node.share_dir().join("lc-logger.sh"), LOGGER)?;
        node.run(&["chmod", "755", "/share/lc-logger.sh"])?;
        let dir = "/var/log/revive/lc-log-uri/binary";
        run_detached_task(
            node,
            runtime,
            binary_id,
            &[
                "--log-uri",
                &format!("binary:///share/lc-logger.sh?dir={dir}"),
            ],
            &["sh", "/lc/io.sh", "2"],
        )?;
        wait_status(node, binary_id, Status::Stopped)?;
        wait_file_until(node, &format!("{dir}/out"), |s| s == "out\n")
            .context("the binary logger's stdout (fd 3)")?;
        wait_file_until(node, &format!("{dir}/err"), |s| s == "err\n")
            .context("the binary logger's stderr (fd 4)")?;
        let info = read_node_file(node, &format!("{dir}/info"))?;
        let want = format!("args=dir {dir} id={binary_id} ns={NAMESPACE}");
        ensure!(info == want, "the logger saw {info:?}, expected {want:?}");
        delete_container(node, binary_id, 2)?;
        wait_gone(
            node,
            "/bin/sh /share/lc-logger.sh dir /var/log/revive/lc-log-uri/binary",
        )
        .context("the logger outlived its container")?;

        run_refused(
            node,
            runtime,
            &["--log-uri", "binary:///lc-no-such-logger"],
            missing_id,
            "a missing logging binary",
            &["/lc-no-such-logger", "no such file or directory"],
        )?;
        Ok(())
    })();
    finish(node, &[file_id, binary_id, missing_id], result)
}

fn delete(node: &Node, runtime: &str) -> Result<()> {
    let (id, forced) = ("lc-delete", "lc-delete-force");
    let result = (|| {
        run_detached_task(node, runtime, id, &[], &["sh", "/lc/gate.sh", "9"])?;
        let (pid, _) = task(node, id)?;
        ctr_refuses(
            node,
            &["task", "delete", id],
            "delete of a running task",
            &["task must be stopped before deletion"],
        )?;
        ctr_refuses(
            node,
            &["containers", "rm", id],
            "ctr containers rm with a running task",
            &["cannot delete a non stopped container"],
        )?;
        let (_, status) = task(node, id)?;
        ensure!(
            status == Status::Running,
            "a refused delete left the task {status}"
        );
        wait_file(node, &in_task(pid, "/gate-ready"))?;
        node.run(&["touch", &in_task(pid, "/go")])?;
        wait_status(node, id, Status::Stopped)?;
        delete_task(node, id, 9)?;
        expect_no_task(node, id)?;
        ctr_refuses(
            node,
            &["task", "delete", id],
            "a second delete",
            &["not found"],
        )?;
        node.ctr(&["containers", "rm", id])?;
        ensure!(
            !containers(node)?.iter().any(|c| c == id),
            "ctr containers rm left {id}"
        );

        run_detached_task(node, runtime, forced, &[], &["sleep", "1000"])?;
        let out = ctr_output(node, &["task", "delete", "--force", forced])?;
        ensure!(
            out.status.success(),
            "ctr task delete --force of a running task failed: {}",
            text(&out.stderr)
        );
        expect_contains(
            "ctr task delete --force",
            &text(&out.stderr),
            &["exit code 137"],
        )?;
        expect_no_task(node, forced)?;
        node.ctr(&["containers", "rm", forced])?;
        Ok(())
    })();
    finish(node, &[id, forced], result)
}

fn containerd_restart(node: &Node, runtime: &str) -> Result<()> {
    let (running, exiting) = ("lc-restart-running", "lc-restart-exiting");
    let result = (|| {
        run_detached_task(node, runtime, running, &[], &["sh", "/lc/counter.sh"])?;
        run_detached_task(node, runtime, exiting, &[], &["sh", "/lc/gate.sh", "9"])?;
        let (pid, _) = task(node, running)?;
        let (exiting_pid, _) = task(node, exiting)?;
        wait_file(node, &in_task(exiting_pid, "/gate-ready"))?;
        let before = wait_counter(node, pid, 3)?;

        let containerd = node.run(&["pidof", "containerd"])?.trim().to_string();
        ensure!(
            !containerd.is_empty() && !containerd.contains(' '),
            "pidof containerd: {containerd:?}"
        );
        node.run(&["kill", "-9", &containerd])?;
        let deadline = Instant::now() + WAIT;
        while node
            .exec_timeout(&["kill", "-0", &containerd], CTR_TIMEOUT)?
            .status
            .success()
        {
            ensure!(
                Instant::now() < deadline,
                "containerd {containerd} did not die"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // While containerd is down: one task keeps running, the other exits.
        let during = wait_counter(node, pid, before.count + 3)
            .context("the task did not keep running without containerd")?;
        node.run(&["touch", &in_task(exiting_pid, "/go")])?;
        let deadline = Instant::now() + WAIT;
        while node
            .exec_timeout(
                &["test", "-e", &format!("/proc/{exiting_pid}")],
                CTR_TIMEOUT,
            )?
            .status
            .success()
        {
            ensure!(Instant::now() < deadline, "{exiting} did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
        node.start_containerd()?;

        let (pid_after, status) = task(node, running)?;
        ensure!(
            status == Status::Running && pid_after == pid,
            "after containerd's restart {running} is {status} with pid {pid_after} (was {pid})"
        );
        let out = node.ctr(&[
            "task",
            "exec",
            "--exec-id",
            "after",
            running,
            "cat",
            "/state",
        ])?;
        let via_exec = parse_counter(&out)?;
        ensure!(
            via_exec.token == before.token && via_exec.count >= during.count,
            "after the restart, exec reads {via_exec}; before it was {during}"
        );
        // A task that exited while containerd was down: the shim has no process to report
        // (Pids), so containerd takes it for a leaked shim at load and deletes it; the task
        // is gone, its container stays.
        expect_no_task(node, exiting)?;
        ctr_refuses(
            node,
            &["task", "delete", exiting],
            "delete of the task that exited meanwhile",
            &["not found"],
        )?;
        ensure!(
            containers(node)?.iter().any(|c| c == exiting),
            "the container {exiting} disappeared with its task"
        );
        node.ctr(&["containers", "rm", exiting])?;

        kill_task(node, running)?;
        delete_container(node, running, 137)?;
        Ok(())
    })();
    finish(node, &[running, exiting], result)
}

fn oom(node: &Node, runtime: &str) -> Result<()> {
    let id = "lc-oom";
    let limit = 32 * 1024 * 1024;
    let result = with_events(node, id, |events| {
        run_detached_task(
            node,
            runtime,
            id,
            &["--memory-limit", &limit.to_string()],
            &["sh", "/lc/oom.sh"],
        )?;
        wait_status(node, id, Status::Stopped)?;
        events.wait(node, "/tasks/oom", |p| p["container_id"] == id)?;
        let (status, _) = events.exit_status(node, id, id)?;
        ensure!(
            status == 137,
            "the OOM-killed init exited {status}, expected 137"
        );
        let set = read_node_file(node, &cgroup_file("memory", id, "memory.limit_in_bytes"))?;
        ensure!(
            set == limit.to_string(),
            "memory.limit_in_bytes is {set}, expected {limit}"
        );
        let control = read_node_file(node, &cgroup_file("memory", id, "memory.oom_control"))?;
        let kills: u64 = control
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .with_context(|| format!("no oom_kill in memory.oom_control: {control:?}"))?
            .trim()
            .parse()?;
        ensure!(
            kills >= 1,
            "memory.oom_control counts no OOM kill: {control:?}"
        );
        delete_container(node, id, 137)?;
        Ok(())
    });
    finish(node, &[id], result)
}

/// Moves the node's runc out of PATH until dropped.
struct HiddenRunc<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> HiddenRunc<'a> {
    fn hide(node: &'a Node) -> Result<HiddenRunc<'a>> {
        let path = node.sh("command -v runc")?.trim().to_string();
        ensure!(
            path.starts_with('/'),
            "runc is not in the node's PATH: {path:?}"
        );
        node.run(&["mv", &path, &format!("{path}.hidden-by-lifecycle")])?;
        Ok(HiddenRunc { node, path })
    }
}

impl Drop for HiddenRunc<'_> {
    fn drop(&mut self) {
        let hidden = format!("{}.hidden-by-lifecycle", self.path);
        if let Err(err) = self.node.run(&["mv", &hidden, &self.path]) {
            eprintln!("lifecycle: could not put runc back in place: {err:#}");
        }
    }
}

fn missing_runc(node: &Node, runtime: &str) -> Result<()> {
    let (detached, attached, option) = ("lc-noruntime", "lc-noruntime-rm", "lc-noruntime-option");
    let result = (|| {
        {
            let _hidden = HiddenRunc::hide(node)?;
            ctr_refuses(
                node,
                &["run", "-d", "--runtime", runtime, IMAGE, detached, "true"],
                "ctr run -d without runc",
                &["\"runc\"", "executable file not found in $PATH"],
            )?;
            expect_no_task(node, detached)?;
            ensure!(
                containers(node)?.iter().any(|c| c == detached),
                "ctr run -d removed the container record after the failed start"
            );
            node.ctr(&["containers", "rm", detached])?;
            ctr_refuses(
                node,
                &["run", "--rm", "--runtime", runtime, IMAGE, attached, "true"],
                "ctr run --rm without runc",
                &["executable file not found in $PATH"],
            )?;
            ensure!(
                !containers(node)?.iter().any(|c| c == attached),
                "ctr run --rm left the container after the failed start"
            );
        }
        // ctr accepts --runc-binary only for io.containerd.runc.v2 (it refuses it for any other
        // runtime name before reaching containerd).
        if runtime == "io.containerd.runc.v2" {
            run_refused(
                node,
                runtime,
                &["--runc-binary", "/lc-nowhere/runc"],
                option,
                "ctr run --runc-binary /lc-nowhere/runc",
                &["/lc-nowhere/runc", "no such file or directory"],
            )?;
        }
        // With runc back, the runtime works again.
        let out = ctr_output(
            node,
            &["run", "--rm", "--runtime", runtime, IMAGE, attached, "true"],
        )?;
        ensure!(
            out.status.success(),
            "with runc back in place, ctr run fails: {}",
            text(&out.stderr)
        );
        Ok(())
    })();
    finish(node, &[detached, attached, option], result)
}

// ----- Tasks.Update over gRPC -------------------------------------------------------------------

/// containerd's `Tasks.Update` (ctr has no command for it): the messages of
/// api/services/tasks/v1/tasks.proto this needs, as prost types with the proto's field numbers.
/// The type URL containerd gives runtime-spec LinuxResources (JSON) in an Any.
const LINUX_RESOURCES_TYPE: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// Updates the resources of task `id` (OCI LinuxResources as JSON) through containerd's API
/// on the node's socket, reached from the host through the node's root.
pub fn update_task(node: &Node, id: &str, resources: &Value) -> Result<()> {
    let any = revive_proto::prost_types::Any {
        type_url: LINUX_RESOURCES_TYPE.into(),
        value: serde_json::to_vec(resources)?,
    };
    crate::containerd::Containerd::connect(node, NAMESPACE)?
        .update(id, any)
        .with_context(|| format!("with {resources}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_unique_names() {
        let names: BTreeSet<&str> = ROWS.iter().map(|r| r.name).collect();
        assert_eq!(names.len(), ROWS.len());
    }

    #[test]
    fn row_names_are_test_names() {
        for row in ROWS {
            assert!(
                row.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{:?} is not a plain test name",
                row.name
            );
        }
    }

    #[test]
    fn inventory_difference() {
        let base = Inventory {
            items: ["shim process 1: x".to_string()].into(),
        };
        let now = Inventory {
            items: ["shim process 1: x".to_string(), "cgroup /a/b".to_string()].into(),
        };
        assert_eq!(base.new_in(&now), ["cgroup /a/b"]);
    }

    #[test]
    fn tty_output_is_cleaned() {
        assert_eq!(
            tty_lines(b"\0/dev/pts/0\r\r\nsize=1 2\r\n"),
            ["/dev/pts/0", "size=1 2"]
        );
    }
}
