//! End-to-end scenarios shared by the tests and `make demo`.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::ctr::{self, Status};
use crate::image::BUSYBOX;
use crate::node::Node;

/// A shell loop that keeps its state only in memory: a token drawn at start and a counter.
/// Each tick it publishes both in /state (atomically, via rename). A process started afresh
/// draws a new token and counts from 1; a restored one keeps both.
pub const COUNTER_SCRIPT: &str = "t=$(cat /proc/sys/kernel/random/uuid); i=0; \
    echo \"$t\" > /written-at-start; while true; do i=$((i+1)); echo \"$t $i\" > /state.new; mv /state.new /state; sleep 0.1; done";

/// What the counter container published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub token: String,
    pub count: u64,
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "count {} (token {})",
            self.count,
            &self.token[..8.min(self.token.len())]
        )
    }
}

pub fn parse_counter(text: &str) -> Result<Counter> {
    let mut words = text.split_whitespace();
    let (Some(token), Some(count), None) = (words.next(), words.next(), words.next()) else {
        bail!("unexpected counter state {text:?}");
    };
    Ok(Counter {
        token: token.to_string(),
        count: count.parse().context("counter is not a number")?,
    })
}

static EXEC_ID: AtomicU32 = AtomicU32::new(0);

/// `ctr task exec` of `command` in container `id`, with an exec id `<what>-<n>` no other
/// exec of this process has; its stdout.
pub fn exec_in(node: &Node, id: &str, what: &str, command: &[&str]) -> Result<String> {
    let exec_id = format!("{what}-{}", EXEC_ID.fetch_add(1, Ordering::SeqCst));
    let mut args = vec!["task", "exec", "--exec-id", &exec_id, id];
    args.extend_from_slice(command);
    node.ctr(&args)
}

/// Reads the counter of a running container through `ctr task exec`.
pub fn read_counter(node: &Node, id: &str) -> Result<Counter> {
    parse_counter(&exec_in(node, id, "read", &["cat", "/state"])?)
}

/// Reads with `read` every 100 ms until `done` holds of what it read, for at most
/// [`ctr::WAIT`]; then fails with the last value (`stuck` describes it) or the last error.
fn poll<T>(
    mut read: impl FnMut() -> Result<T>,
    done: impl Fn(&T) -> bool,
    stuck: impl Fn(&T) -> String,
) -> Result<T> {
    ctr::poll(ctr::WAIT, Duration::from_millis(100), || {
        let value = read()?;
        Ok(if done(&value) {
            ControlFlow::Break(value)
        } else {
            ControlFlow::Continue(stuck(&value))
        })
    })
}

/// Waits until the container's counter reaches at least `min`.
pub fn wait_for_count(node: &Node, id: &str, min: u64) -> Result<Counter> {
    wait_count(|| read_counter(node, id), min, id)
}

/// Waits until the counter `read` reads (of container `id`) reaches at least `min`.
pub fn wait_count(read: impl FnMut() -> Result<Counter>, min: u64, id: &str) -> Result<Counter> {
    poll(
        read,
        |c| c.count >= min,
        |c| format!("counter of {id} stuck at {c}, expected at least {min}"),
    )
}

/// Starts the counter container `id` on `runtime` from the busybox image.
pub fn run_counter(node: &Node, runtime: &str, id: &str) -> Result<()> {
    run_shell(node, runtime, id, COUNTER_SCRIPT)
}

/// [`run_counter`], then [`wait_for_count`] until it has counted to 3: the counter as it
/// stands then.
pub fn start_counter(node: &Node, runtime: &str, id: &str) -> Result<Counter> {
    run_counter(node, runtime, id)?;
    wait_for_count(node, id, 3)
}

/// Starts container `id` on `runtime` from the busybox image, running `sh -c script`.
pub fn run_shell(node: &Node, runtime: &str, id: &str, script: &str) -> Result<()> {
    run_shell_with(node, runtime, &[], id, script)
}

/// [`run_shell`] with more `ctr run` flags (`--privileged`, `--user 1000:1000`, ...).
pub fn run_shell_with(
    node: &Node,
    runtime: &str,
    flags: &[&str],
    id: &str,
    script: &str,
) -> Result<()> {
    let mut args = vec!["run", "-d", "--runtime", runtime];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[BUSYBOX, id, "sh", "-c", script]);
    node.ctr(&args)?;
    Ok(())
}

/// What the checkpoint/restore scenario observed.
#[derive(Debug)]
pub struct Report {
    pub runtime: String,
    pub before: Counter,
    /// None where the step could not run (containerd 1.7 with a non-runc runtime).
    pub after_task_checkpoint: Option<Counter>,
    pub checkpointed: Counter,
    pub restored: Counter,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "runtime:                   {}", self.runtime)?;
        writeln!(f, "before checkpoints:        {}", self.before)?;
        match &self.after_task_checkpoint {
            Some(c) => writeln!(f, "after ctr task checkpoint: {c} (kept running)")?,
            None => writeln!(
                f,
                "after ctr task checkpoint: skipped (containerd 1.7 passes no checkpoint options to this runtime)"
            )?,
        }
        writeln!(f, "at ctr c checkpoint:       {}", self.checkpointed)?;
        write!(
            f,
            "after ctr c restore:       {} (same token: the process kept its memory)",
            self.restored
        )
    }
}

/// CRIU images a checkpoint directory must hold.
const CRIU_IMAGES: &[&str] = &["inventory.img", "pstree.img"];

/// Checks a checkpoint directory: CRIU's images are there; for revive also that it is
/// root-only (directories 0700, files 0600) and carries CRIU's stats as JSON.
fn check_criu_dir(node: &Node, dir: &str, runtime: &str) -> Result<()> {
    for file in CRIU_IMAGES {
        node.run(&["test", "-s", &format!("{dir}/{file}")])
            .with_context(|| format!("checkpoint directory {dir} lacks CRIU's {file}"))?;
    }
    if runtime == "io.containerd.revive.v2" {
        let modes = node.sh(&format!("find {dir} -exec stat -c '%a %U %F %n' {{}} +"))?;
        for line in modes.lines() {
            let ok = line.starts_with("700 root directory") || line.starts_with("600 root regular");
            ensure!(ok, "checkpoint entry not root-only: {line}");
        }
        let stats = node.run(&["cat", &format!("{dir}/stats-dump.json")])?;
        let stats: serde_json::Value = serde_json::from_str(&stats).context("stats-dump.json")?;
        ensure!(
            stats["dump"]["pages_written"].as_u64().unwrap_or(0) > 0,
            "stats-dump.json reports no pages written: {stats}"
        );
    }
    Ok(())
}

/// The smoke scenario every node must pass:
/// 1. run a counter container on `runtime`;
/// 2. `ctr task checkpoint --image-path`: CRIU images are written, the task keeps running
///    with its memory;
/// 3. `ctr c checkpoint --task --rw`, remove the container, `ctr c restore --live --rw`:
///    the restored process continues counting with the same token;
/// 4. `ctr task checkpoint --exit --image-path` of the restored task: it checkpoints again
///    and stops.
///
/// (`ctr task checkpoint` into the content store is not combined with `ctr c checkpoint` of
/// the same container: containerd 1.7's client drops the CRIU data from the second
/// checkpoint's index, or fails with "already exists", when the first wrote identical
/// spec and options blobs.)
pub fn checkpoint_restore_counter(
    node: &Node,
    runtime: &str,
    id: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<Report> {
    node.import_busybox()?;
    narrate(&format!(
        "running container {id} on {runtime}: a counter held in a shell's memory"
    ));
    run_counter(node, runtime, id)?;
    let before = wait_for_count(node, id, 5)?;
    narrate(&format!("counter is running: {before}"));

    // containerd 1.7's ctr attaches CheckpointOptions (image path, exit, ...) only for
    // runtimes named io.containerd.runc*; for others `ctr task checkpoint --image-path`
    // silently checkpoints into the content store instead, so those steps cannot run there.
    let options_reach_runtime = !node.version("containerd").unwrap_or("").starts_with("1.")
        || runtime.starts_with("io.containerd.runc");
    let after_task_checkpoint = if options_reach_runtime {
        let task_dir = format!("/tmp/{id}-task-checkpoint");
        narrate(&format!(
            "ctr task checkpoint --image-path {task_dir} (the task keeps running)"
        ));
        ctr_checkpoint(
            node,
            runtime,
            &["task", "checkpoint", "--image-path", &task_dir, id],
        )?;
        check_criu_dir(node, &task_dir, runtime)?;
        let after_task_checkpoint = wait_for_count(node, id, before.count + 3)?;
        ensure!(
            after_task_checkpoint.token == before.token,
            "ctr task checkpoint restarted the task: {before} -> {after_task_checkpoint}"
        );
        narrate(&format!(
            "still running after the task checkpoint: {after_task_checkpoint}"
        ));
        Some(after_task_checkpoint)
    } else {
        narrate(
            "skipping ctr task checkpoint --image-path: containerd 1.7 passes checkpoint options only to io.containerd.runc* runtimes",
        );
        None
    };

    let image = format!("revive.test/checkpoint/{id}:1");
    narrate(&format!(
        "ctr container checkpoint --task --rw {id} {image}"
    ));
    checkpoint_container(node, runtime, id, &image)?;
    let checkpointed = read_counter(node, id)?;
    narrate(&format!(
        "checkpointed at {checkpointed}; removing the container"
    ));
    remove_container(node, id)?;

    narrate(&format!("ctr container restore --live --rw {id} {image}"));
    node.ctr(&["container", "restore", "--live", "--rw", id, &image])?;
    let restored = wait_for_count(node, id, checkpointed.count + 3)?;
    ensure!(
        restored.token == checkpointed.token,
        "the restored container started afresh instead of continuing: {checkpointed} -> {restored}"
    );
    narrate(&format!("restored container continues: {restored}"));
    check_written_at_start(node, id, &restored)?;
    narrate("the file written to the rw layer before the checkpoint is there");

    if options_reach_runtime {
        let exit_dir = format!("/tmp/{id}-exit-checkpoint");
        narrate(&format!(
            "ctr task checkpoint --exit --image-path {exit_dir} of the restored task"
        ));
        ctr_checkpoint(
            node,
            runtime,
            &[
                "task",
                "checkpoint",
                "--exit",
                "--image-path",
                &exit_dir,
                id,
            ],
        )?;
        check_criu_dir(node, &exit_dir, runtime)?;
        ctr::wait_status(node, id, Status::Stopped)?;
    }
    remove_container(node, id)?;
    Ok(Report {
        runtime: runtime.into(),
        before,
        after_task_checkpoint,
        checkpointed,
        restored,
    })
}

/// The media type containerd gives CRIU's images in a checkpoint's index.
pub const CRIU_CHECKPOINT_MEDIA_TYPE: &str =
    "application/vnd.containerd.container.criu.checkpoint.criu.tar";

/// `ctr task checkpoint <id>` with no options, containerd's default: counter `id` on
/// `runtime` is checkpointed into containerd's content store and keeps running with its
/// memory; ctr names the checkpoint image it made, whose index holds CRIU's images. The image
/// and the container are removed afterwards. Returns the image's name.
pub fn default_task_checkpoint(
    node: &Node,
    runtime: &str,
    id: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<String> {
    node.import_busybox()?;
    let before = start_counter(node, runtime, id)?;
    let name = ctr_checkpoint(node, runtime, &["task", "checkpoint", id])?
        .trim()
        .to_string();
    ensure!(
        name.starts_with(&format!("containerd.io/checkpoint/{id}:")),
        "ctr task checkpoint printed {name:?}, not a checkpoint image name"
    );
    let after = wait_for_count(node, id, before.count + 3)?;
    ensure!(
        after.token == before.token,
        "ctr task checkpoint restarted the task: {before} -> {after}"
    );
    let listing = node.ctr(&["images", "ls"])?;
    let digest = listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
        .with_context(|| format!("{name} is not among the images:\n{listing}"))?
        .to_string();
    let index = node.ctr(&["content", "get", &digest])?;
    ensure!(
        index.contains(CRIU_CHECKPOINT_MEDIA_TYPE),
        "the checkpoint's index holds no CRIU images: {index}"
    );
    narrate(&format!(
        "ctr task checkpoint {id}: {name}, CRIU's images in the content store; still running: {after}"
    ));
    remove_container(node, id)?;
    node.ctr(&["images", "rm", &name])?;
    Ok(name)
}

/// Whether revive's shim says (in containerd's log) that it froze `id`'s cgroup itself
/// before its checkpoint with exit, or that it gave the freezing back to CRIU; waits a few
/// seconds for containerd to pass the shim's line on, and fails if neither shows.
fn shim_froze_early(node: &Node, id: &str) -> Result<bool> {
    let log = node.logs_dir().join("containerd.log");
    let froze = format!("checkpoint of {id}: froze its cgroup in");
    let not = format!("checkpoint of {id}: cgroup not frozen early");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text =
            std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
        if text.contains(&froze) {
            return Ok(true);
        }
        if text.contains(&not) {
            return Ok(false);
        }
        ensure!(
            Instant::now() < deadline,
            "containerd's log has neither {froze:?} nor {not:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The counter of [`COUNTER_SCRIPT`] wrote its token into `/written-at-start`, in its rw
/// layer, once when it started: after a restore with `--rw` the file must still hold the
/// token of the restored process.
pub fn check_written_at_start(node: &Node, id: &str, restored: &Counter) -> Result<()> {
    let written = exec_in(node, id, "rw", &["cat", "/written-at-start"])?;
    ensure!(
        written.trim() == restored.token,
        "the rw layer's /written-at-start holds {:?}, not the token {}",
        written.trim(),
        restored.token
    );
    Ok(())
}

/// The cgroup paths of a process in the node (`/proc/<pid>/cgroup`, one line per hierarchy).
pub fn cgroups_of(node: &Node, pid: u32) -> Result<String> {
    node.run(&["cat", &format!("/proc/{pid}/cgroup")])
}

/// Which copy a [`restored_copy_lives_apart`] run removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remove {
    Original,
    Restored,
}

/// A checkpoint restored beside its running original (containerd issue 9691, CRI-O 6894):
/// 1. run counter `<id>-a` on `runtime`, `ctr c checkpoint --task --rw` it (it keeps running);
/// 2. `ctr c restore --live --rw <id>-b` from that checkpoint: containerd gives the new
///    container the checkpoint's spec verbatim, the original's cgroup path included;
/// 3. the two must be in different cgroups; remove one (kill, delete) and the other keeps
///    counting with its own token.
///
/// Returns the survivor's counter.
pub fn restored_copy_lives_apart(
    node: &Node,
    runtime: &str,
    id: &str,
    remove: Remove,
    narrate: &mut dyn FnMut(&str),
) -> Result<Counter> {
    node.import_busybox()?;
    let (a, b) = (format!("{id}-a"), format!("{id}-b"));
    let before = start_counter(node, runtime, &a)?;
    let image = format!("revive.test/checkpoint/{id}:1");
    narrate(&format!(
        "ctr c checkpoint --task --rw {a} {image} (keeps running)"
    ));
    checkpoint_container(node, runtime, &a, &image)?;
    narrate(&format!("ctr c restore --live --rw {b} {image}"));
    node.ctr(&["container", "restore", "--live", "--rw", &b, &image])?;
    let restored = wait_for_count(node, &b, 1)?;
    ensure!(
        restored.token == before.token,
        "{b} started afresh instead of continuing {a}: {before} -> {restored}"
    );
    let original = wait_for_count(node, &a, before.count + 3)?;
    ensure!(original.token == before.token, "{a} restarted: {original}");
    let (cg_a, cg_b) = (
        cgroups_of(node, ctr::task(node, &a)?.pid)?,
        cgroups_of(node, ctr::task(node, &b)?.pid)?,
    );
    narrate(&format!("{a} cgroups:\n{cg_a}\n{b} cgroups:\n{cg_b}"));
    let (gone, survivor) = match remove {
        Remove::Original => (&a, &b),
        Remove::Restored => (&b, &a),
    };
    narrate(&format!("removing {gone}; {survivor} must keep running"));
    remove_container(node, gone)?;
    let seen =
        read_counter(node, survivor).with_context(|| format!("{survivor} is gone with {gone}"))?;
    let later = wait_for_count(node, survivor, seen.count + 5)
        .with_context(|| format!("{survivor} stopped counting after {gone} was removed"))?;
    ensure!(
        ctr::status(node, survivor)? == Status::Running,
        "{survivor} is not running after {gone} was removed"
    );
    ensure!(later.token == before.token, "{survivor} restarted: {later}");
    ensure!(cg_a != cg_b, "{a} and {b} share their cgroups:\n{cg_a}");
    remove_container(node, survivor)?;
    Ok(later)
}

/// A server on the container's loopback answers after a restore:
/// 1. run busybox httpd on 127.0.0.1:8080 in container `id` on `runtime` (its own network
///    namespace, as `ctr run` gives it) and fetch its page from inside;
/// 2. `ctr c checkpoint --task --rw`, remove the container, `ctr c restore --live --rw`;
/// 3. fetch the page again from inside the restored container.
///
/// Returns `ip addr show lo` in the restored container, or the error with it.
pub fn loopback_server_after_restore(
    node: &Node,
    runtime: &str,
    id: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<String> {
    node.import_busybox()?;
    let page = format!("page of {id}");
    let script = format!(
        "mkdir -p /www && echo '{page}' > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"
    );
    run_shell(node, runtime, id, &script)?;
    let fetch = |what: &str| -> Result<String> {
        exec_in(
            node,
            id,
            what,
            &["wget", "-T", "5", "-qO-", "http://127.0.0.1:8080/"],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        match fetch("before") {
            Ok(text) => break text,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(e.context("the server never answered before the checkpoint")),
        }
    };
    ensure!(before.trim() == page, "unexpected page {before:?}");
    let image = format!("revive.test/checkpoint/{id}:1");
    narrate(&format!(
        "server answers; ctr c checkpoint --task --rw {id} {image}"
    ));
    checkpoint_container(node, runtime, id, &image)?;
    remove_container(node, id)?;
    node.ctr(&["container", "restore", "--live", "--rw", id, &image])?;
    let lo = exec_in(node, id, "lo", &["ip", "addr", "show", "lo"])?;
    narrate(&format!("restored; lo in the container:\n{lo}"));
    let after = fetch("after").with_context(|| format!("after the restore, with lo:\n{lo}"))?;
    ensure!(
        after.trim() == page,
        "unexpected page after restore {after:?}"
    );
    remove_container(node, id)?;
    Ok(lo)
}

/// A container whose state lives in the kernel as well as in memory. Its init (pid 1) reads
/// one line per tick from fd 3, a file of the numbers 1, 2, 3, ... opened once at start, and
/// publishes `token tick line` in /state: the line equals the tick only while the fd keeps
/// its offset. Beside it, a producer writes 1, 2, 3, ... into a pipe and a consumer
/// publishes the last number it received in /pipe. Three processes (and their `sleep`s) make
/// the tree.
pub const PROCESS_STATE_SCRIPT: &str = "seq 1 1000000 > /numbers; exec 3< /numbers; \
    (i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done) | \
    (while read n; do echo $n > /pipe.new; mv /pipe.new /pipe; done) & \
    t=$(cat /proc/sys/kernel/random/uuid); i=0; \
    while true; do i=$((i+1)); read -r l <&3; echo \"$t $i $l\" > /state.new; \
    mv /state.new /state; sleep 0.1; done";

/// What [`PROCESS_STATE_SCRIPT`] publishes, read in one exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessState {
    pub token: String,
    pub tick: u64,
    /// The last line read from fd 3.
    pub line: u64,
    /// The last number that came through the pipe.
    pub piped: u64,
    /// `pid ppid command` of every long-lived process (not `sleep`, not the reader, none
    /// that came or went within 0.3 s).
    pub tree: Vec<String>,
}

impl fmt::Display for ProcessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tick {} (token {}), fd 3 at line {}, pipe at {}, processes [{}]",
            self.tick,
            &self.token[..8.min(self.token.len())],
            self.line,
            self.piped,
            self.tree.join("; ")
        )
    }
}

pub fn parse_process_state(text: &str) -> Result<ProcessState> {
    let mut lines = text.lines();
    let state = lines.next().unwrap_or_default();
    let words: Vec<&str> = state.split_whitespace().collect();
    let [token, tick, line] = words[..] else {
        bail!("unexpected state {state:?}");
    };
    let piped = lines.next().unwrap_or_default();
    let tree = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() >= 3 && w[0] != "PID")
        // Not the reader (an exec: parent 0, not pid 1) nor the short-lived.
        .filter(|w| !(w[1] == "0" && w[0] != "1"))
        .filter(|w| !matches!(w[2], "sleep" | "ps" | "cat" | "grep" | "exe"))
        .map(|w| w[..3].join(" "))
        .collect();
    Ok(ProcessState {
        token: token.to_string(),
        tick: tick.parse().context("tick")?,
        line: line.parse().context("line read from fd 3")?,
        piped: piped.trim().parse().context("number from the pipe")?,
        tree,
    })
}

/// Runs `sh -c script` in container `id` through `ctr task exec`; its stdout.
pub fn exec_sh(node: &Node, id: &str, script: &str) -> Result<String> {
    exec_in(node, id, "sh", &["sh", "-c", script])
}

/// Reads the [`ProcessState`] of container `id` through `ctr task exec`.
pub fn read_process_state(node: &Node, id: &str) -> Result<ProcessState> {
    parse_process_state(&exec_sh(
        node,
        id,
        // Processes seen in two listings 0.3 s apart: the shell's short-lived forks
        // (mv, subshells, busybox applets exec'd as "exe") come and go.
        "cat /state /pipe; ps -o pid,ppid,comm > /tmp/ps1; sleep 0.3; \
         ps -o pid,ppid,comm | grep -Fx -f /tmp/ps1",
    )?)
}

/// Waits until the state's tick reaches at least `min`.
fn wait_for_tick(node: &Node, id: &str, min: u64) -> Result<ProcessState> {
    poll(
        || read_process_state(node, id),
        |s| s.tick >= min,
        |s| format!("{id} stuck at {s}"),
    )
}

/// The kernel-held state of a process tree survives checkpoint and restore, and the
/// restored task is a task like any other:
/// 1. run [`PROCESS_STATE_SCRIPT`] in `id` on `runtime`;
/// 2. `ctr c checkpoint --task --rw`, remove the container, `ctr c restore --live --rw`;
/// 3. the same processes with the same pids and parents; fd 3 still reads from its offset
///    (line = tick); the pipe still carries numbers, continuing;
/// 4. the restored task pauses (its tick stands still), resumes, reports metrics, and
///    is checkpointed and restored again, continuing; then it is killed.
///
/// Returns the states seen before the checkpoint and after the second restore.
pub fn process_state_survives(
    node: &Node,
    runtime: &str,
    id: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<(ProcessState, ProcessState)> {
    node.import_busybox()?;
    run_shell(node, runtime, id, PROCESS_STATE_SCRIPT)?;
    let before = wait_for_tick(node, id, 5)?;
    narrate(&format!("running: {before}"));
    let mut last = before.clone();
    // containerd 1.7's ctr cannot checkpoint a restored container again, whatever the shim:
    // `ctr c checkpoint` writes an index without the CRIU data (only the rw layer), whose
    // restore fails with "media type not found", and `ctr task checkpoint` fails with
    // "content ...: already exists" (the spec blob is the first checkpoint's). There the
    // scenario has one round.
    let rounds = if node.version("containerd").unwrap_or("").starts_with("1.") {
        1
    } else {
        2
    };
    for round in 1..=rounds {
        let image = format!("revive.test/checkpoint/{id}:{round}");
        let at = checkpoint_and_restore(node, runtime, id, &image, read_process_state)?;
        let after = wait_for_tick(node, id, at.tick + 3)?;
        narrate(&format!(
            "checkpointed at tick {}; restored: {after}",
            at.tick
        ));
        ensure!(
            after.token == before.token,
            "restore {round} started afresh: {before} -> {after}"
        );
        ensure!(
            after.line == after.tick,
            "fd 3 lost its offset in restore {round}: {after}"
        );
        ensure!(
            after.piped > at.piped.min(last.piped),
            "the pipe carried nothing after restore {round}: {at} -> {after}"
        );
        ensure!(
            after.tree == before.tree,
            "restore {round} changed the process tree: [{}] -> [{}]",
            before.tree.join("; "),
            after.tree.join("; ")
        );
        last = after;
        if round == 1 {
            restored_task_behaves(node, runtime, id, narrate)?;
        }
    }
    if rounds == 1 {
        narrate(
            "containerd 1.7: no second checkpoint (its ctr cannot checkpoint a restored container)",
        );
    }
    remove_container(node, id)?;
    Ok((before, last))
}

/// Pause, resume and metrics of a restored task. containerd 2.3+'s Go shim reports no
/// metrics for a task it restored (`ctr: no metrics received`): that is recorded for it, and
/// required of every other shim.
fn restored_task_behaves(
    node: &Node,
    runtime: &str,
    id: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<()> {
    node.ctr(&["task", "pause", id])?;
    ensure!(
        ctr::status(node, id)? == Status::Paused,
        "{id} is not paused after ctr task pause"
    );
    // A paused task takes no exec: its files are read through its bundle's rootfs.
    let state = rootfs_file(id, "state");
    let paused = node.run(&["cat", &state])?;
    std::thread::sleep(Duration::from_millis(500));
    let still = node.run(&["cat", &state])?;
    ensure!(
        paused == still,
        "{id} kept ticking while paused: {paused:?} -> {still:?}"
    );
    node.ctr(&["task", "resume", id])?;
    let paused_tick: u64 = paused
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .with_context(|| format!("unexpected state {paused:?}"))?;
    let resumed = wait_for_tick(node, id, paused_tick + 2)?;
    let metrics = match node.ctr(&["task", "metrics", id]) {
        Err(e)
            if runtime == crate::bench::RUNC_V2
                && crate::node::config_version(node.version("containerd").unwrap_or("")) >= 4
                && format!("{e:#}").contains("no metrics") =>
        {
            narrate(&format!(
                "paused, resumed ({resumed}); the Go shim of containerd {} reports no metrics \
                 for the restored task (`ctr: no metrics received`)",
                node.version("containerd").unwrap_or("?")
            ));
            return Ok(());
        }
        result => result?,
    };
    ensure!(
        metrics.contains("memory"),
        "no memory metrics for the restored {id}:\n{metrics}"
    );
    narrate(&format!("paused, resumed ({resumed}), metrics read"));
    Ok(())
}

/// The counter of [`COUNTER_SCRIPT`] that also publishes its terminal (`tty`'s answer: a
/// /dev/pts path, or "not a tty") in /tty.
pub const TTY_COUNTER_SCRIPT: &str = "t=$(cat /proc/sys/kernel/random/uuid); i=0; \
    while true; do i=$((i+1)); echo \"$t $i\" > /state.new; mv /state.new /state; \
    tty > /tty.new; mv /tty.new /tty; sleep 0.1; done";

/// A container with a terminal keeps it across checkpoint and restore:
/// 1. `ctr run -d -t` (ctr on a pty of the harness) runs [`TTY_COUNTER_SCRIPT`] in `id`;
/// 2. `ctr c checkpoint --task --rw`, remove the container, `ctr c restore --live --rw` (ctr
///    on a pty again: it attaches to the restored terminal; it is hung up after a moment,
///    and the task stays);
/// 3. the counter continues with its token, and its stdin is still a terminal.
///
/// Returns the terminal before and after.
pub fn terminal_survives(
    node: &Node,
    runtime: &str,
    id: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<(String, String)> {
    node.import_busybox()?;
    let grace = Duration::from_secs(3);
    node.ctr_on_tty(
        &ctr::run_args(
            &["-d", "-t"],
            runtime,
            BUSYBOX,
            id,
            &["sh", "-c", TTY_COUNTER_SCRIPT],
        ),
        Duration::from_secs(60),
    )?;
    let before = wait_for_count(node, id, 3)?;
    let read_tty = || -> Result<String> {
        Ok(exec_in(node, id, "tty", &["cat", "/tty"])?
            .trim()
            .to_string())
    };
    let tty_before = read_tty()?;
    ensure!(
        tty_before.starts_with("/dev/pts/"),
        "{id} has no terminal before the checkpoint: {tty_before:?}"
    );
    let image = format!("revive.test/checkpoint/{id}:1");
    checkpoint_container(node, runtime, id, &image)?;
    let checkpointed = read_counter(node, id)?;
    remove_container(node, id)?;
    narrate(&format!(
        "{before} on {tty_before}; checkpointed at {checkpointed}, removed; restoring"
    ));
    node.ctr_on_tty(
        &["container", "restore", "--live", "--rw", id, &image],
        grace,
    )?;
    let after = wait_for_count(node, id, checkpointed.count + 3)?;
    ensure!(
        after.token == before.token,
        "the restored {id} started afresh: {checkpointed} -> {after}"
    );
    // The tty file is rewritten every tick: wait for one written after the restore.
    let tty_after = read_tty()?;
    narrate(&format!("restored: {after} on {tty_after}"));
    ensure!(
        tty_after.starts_with("/dev/pts/"),
        "the restored {id} lost its terminal: {tty_after:?}"
    );
    remove_container(node, id)?;
    Ok((tty_before, tty_after))
}

/// Two processes of one container talk over an established TCP connection on its loopback:
/// a client sends 1, 2, 3, ... to an echo server (busybox `nc -l -e cat`) and publishes
/// every number that comes back in /echo. The number grows only while data flows both ways.
pub const TCP_ECHO_SCRIPT: &str = "nc -l -p 9000 -e cat & sleep 0.5; \
    (i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done) | nc 127.0.0.1 9000 | \
    while read n; do echo $n > /echo.new; mv /echo.new /echo; done";

/// The last number [`TCP_ECHO_SCRIPT`]'s client got back.
fn read_echo(node: &Node, id: &str) -> Result<u64> {
    let text = exec_in(node, id, "echo", &["cat", "/echo"])?;
    text.trim()
        .parse()
        .with_context(|| format!("unexpected /echo {text:?}"))
}

/// Waits until the echoed number of `id` passes `min`.
fn wait_for_echo(node: &Node, id: &str, min: u64) -> Result<u64> {
    poll(
        || read_echo(node, id),
        |n| *n > min,
        |n| format!("the connection in {id} carries nothing: stuck at {n}"),
    )
}

/// What [`tcp_connection_survives`] saw.
#[derive(Debug)]
pub struct TcpReport {
    /// The error of the checkpoint without open_tcp.
    pub refused: String,
    /// The echoed number when the checkpoint with open_tcp was taken, and after the restore.
    pub checkpointed: u64,
    pub restored: u64,
}

/// An established TCP connection over the container's loopback:
/// 1. run [`TCP_ECHO_SCRIPT`] in `id` on `runtime`;
/// 2. checkpoint (exit, into a directory) WITHOUT open_tcp through containerd's API: CRIU
///    refuses the connection; the error says so, and the container is still running with
///    its connection carrying data;
/// 3. checkpoint with open_tcp and exit; delete the task; create and start it again from
///    the directory (`Options.criu_image_path`): the numbers go on growing over the same
///    connection.
pub fn tcp_connection_survives(
    node: &Node,
    runtime: &str,
    id: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<TcpReport> {
    use revive_proto::runc::CheckpointOptions;
    node.import_busybox()?;
    run_shell(node, runtime, id, TCP_ECHO_SCRIPT)?;
    let first = wait_for_echo(node, id, 3)?;
    narrate(&format!("connection up: {first} echoed"));
    let api = crate::containerd::Containerd::connect(node, "default")?;
    let dir = format!("/tmp/{id}-tcp-checkpoint");
    let refused = match api.checkpoint(
        id,
        &CheckpointOptions {
            exit: true,
            image_path: dir.clone(),
            ..Default::default()
        },
    ) {
        Ok(_) => bail!("the checkpoint without open_tcp succeeded with a connection open"),
        Err(e) => format!("{e:#}"),
    };
    narrate(&format!("without open_tcp: {refused}"));
    if runtime == "io.containerd.revive.v2" {
        // The partial images of a failed dump hold memory pages: revive removes them.
        ensure!(
            node.run(&["test", "!", "-e", &dir]).is_ok(),
            "the failed checkpoint left {dir} behind"
        );
        // A checkpoint with exit freezes the cgroup before runc starts, so CRIU's first
        // look at the freezer (its kept log) finds it frozen; CRIU then hands the
        // processes back frozen and the shim thaws them (checked below: still running).
        // Unless the freeze took longer than the shim waits for it (50 ms, which a loaded
        // machine can exceed): then the shim thawed the cgroup, says so, and CRIU froze it.
        let log = node.run(&[
            "cat",
            &format!("{}/default/{id}/criu-dump.log", crate::lifecycle::TASK_DIR),
        ])?;
        let first = log.lines().find_map(|l| {
            l.split_once("freezer.state=")
                .map(|(_, state)| state.trim())
        });
        if shim_froze_early(node, id)? {
            ensure!(
                first == Some("FROZEN"),
                "the shim froze the cgroup, but CRIU did not find it frozen: first freezer \
                 state {first:?}"
            );
            narrate("CRIU found the cgroup frozen by the shim");
        } else {
            narrate(&format!(
                "!!! the shim's early freeze ran out of its budget on this machine; CRIU froze \
                 the cgroup itself (its first look: {first:?}) !!!"
            ));
        }
    }
    ensure!(
        ctr::status(node, id)? == Status::Running,
        "{id} is not running after the refused checkpoint"
    );
    let seen = read_echo(node, id)?;
    let still = wait_for_echo(node, id, seen + 3)
        .context("the connection stopped after the refused checkpoint")?;
    narrate(&format!("still running, connection carrying data: {still}"));
    node.run(&["rm", "-rf", &dir])?;
    let (checkpointed, restored) = restore_tcp_echo(node, &api, id, &dir, still, narrate)?;
    remove_container(node, id)?;
    Ok(TcpReport {
        refused,
        checkpointed,
        restored,
    })
}

/// Checkpoints the TCP echo client `id` with open_tcp and exit into `dir`, deletes its task,
/// restores it from `dir` (`Options.criu_image_path`) and waits until the echoed numbers
/// grow past where they stood: (checkpointed, restored). `seen` is the last number read
/// before the checkpoint.
fn restore_tcp_echo(
    node: &Node,
    api: &crate::containerd::Containerd,
    id: &str,
    dir: &str,
    seen: u64,
    narrate: &mut dyn FnMut(&str),
) -> Result<(u64, u64)> {
    api.checkpoint(
        id,
        &revive_proto::runc::CheckpointOptions {
            exit: true,
            open_tcp: true,
            image_path: dir.to_string(),
            ..Default::default()
        },
    )?;
    ctr::wait_status(node, id, Status::Stopped)?;
    let checkpointed = node
        .run(&["cat", &rootfs_file(id, "echo")])
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(seen);
    node.ctr(&["task", "delete", id])?;
    narrate(&format!(
        "checkpointed with open_tcp at {checkpointed}; task deleted; restoring from {dir}"
    ));
    api.restore_from_dir(id, "overlayfs", dir)?;
    let restored = wait_for_echo(node, id, checkpointed + 3)
        .context("the restored connection carries nothing")?;
    narrate(&format!("restored; the connection goes on: {restored}"));
    Ok((checkpointed, restored))
}

/// Whether `/proc/net/tcp{,6}` text shows a socket listening (state 0A) on `port`.
pub fn listens_on(tables: &str, port: u16) -> bool {
    let local = format!(":{port:04X}");
    tables.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "0A"
    })
}

/// The echo server outside the container: busybox `nc` in the node itself, on the node's
/// network, port [`OUTSIDE_PORT`].
pub const OUTSIDE_PORT: u16 = 9100;

/// The container's client for the server outside: sends 1, 2, 3, ... and publishes in /echo
/// every number that comes back.
pub const TCP_CLIENT_SCRIPT: &str = "(i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done) \
    | nc 127.0.0.1 9100 | while read n; do echo $n > /echo.new; mv /echo.new /echo; done";

/// A TCP connection to a server OUTSIDE the container: an echo server
/// runs in the node, and container `id` on `runtime` shares the node's network (`ctr run
/// --net-host`) and talks to it. Checkpointed with open_tcp and exit, its task deleted and
/// restored from the images, the container's end of the connection comes back and the
/// numbers go on growing: the server outside never noticed. It is the same connection: the
/// server accepts only one, so a client started afresh could not connect again. Returns
/// (checkpointed, restored).
pub fn tcp_to_outside_survives(
    node: &Node,
    runtime: &str,
    id: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<(u64, u64)> {
    node.import_busybox()?;
    node.spawn_daemon(
        "echo-server",
        &format!("busybox nc -l -p {OUTSIDE_PORT} -e /bin/cat"),
    )?;
    // Listening (IPv4 or IPv6); a probe connection would use up the one-shot server.
    poll(
        || node.run(&["cat", "/proc/net/tcp", "/proc/net/tcp6"]),
        |tables| listens_on(tables, OUTSIDE_PORT),
        |_| format!("the echo server did not listen on port {OUTSIDE_PORT}"),
    )?;
    node.ctr(&ctr::run_args(
        &["-d", "--net-host"],
        runtime,
        BUSYBOX,
        id,
        &["sh", "-c", TCP_CLIENT_SCRIPT],
    ))?;
    let first = wait_for_echo(node, id, 3)?;
    narrate(&format!(
        "connected to the node's echo server on 127.0.0.1:{OUTSIDE_PORT}: {first} echoed"
    ));
    let api = crate::containerd::Containerd::connect(node, "default")?;
    let dir = format!("/var/lib/revive/{id}-tcp-checkpoint");
    let (checkpointed, restored) = restore_tcp_echo(node, &api, id, &dir, first, narrate)?;
    remove_container(node, id)?;
    node.run(&["rm", "-rf", &dir])?;
    Ok((checkpointed, restored))
}

/// Without CRIU on the node, a checkpoint fails with an error that names it, and the
/// container goes on counting; with CRIU back, the same container checkpoints. Returns the
/// error.
pub fn checkpoint_without_criu(
    node: &Node,
    runtime: &str,
    id: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<String> {
    node.import_busybox()?;
    let before = start_counter(node, runtime, id)?;
    let criu = node
        .run(&["sh", "-c", "command -v criu"])?
        .trim()
        .to_string();
    node.run(&["mv", &criu, &format!("{criu}.away")])?;
    let image = format!("revive.test/checkpoint/{id}:1");
    let refused = node.ctr(&["container", "checkpoint", "--task", "--rw", id, &image]);
    node.run(&["mv", &format!("{criu}.away"), &criu])?;
    let refused = match refused {
        Ok(_) => bail!("the checkpoint succeeded without CRIU"),
        Err(e) => format!("{e:#}"),
    };
    narrate(&format!("without {criu}: {refused}"));
    let after = wait_for_count(node, id, before.count + 3)
        .context("the container stopped counting after the refused checkpoint")?;
    ensure!(
        after.token == before.token && ctr::status(node, id)? == Status::Running,
        "the refused checkpoint changed {id}: {before} -> {after}"
    );
    node.ctr(&["container", "checkpoint", "--task", "--rw", id, &image])
        .context("the checkpoint with CRIU back")?;
    narrate(&format!(
        "CRIU back: checkpointed at {}",
        read_counter(node, id)?
    ));
    remove_container(node, id)?;
    Ok(refused)
}

/// `ctr run -d` of the harness's busybox image (imported first) as `id` on `runtime`,
/// running `command`.
pub fn run_busybox(node: &Node, runtime: &str, id: &str, command: &[&str]) -> Result<()> {
    node.import_busybox()?;
    node.ctr(&ctr::run_args(&["-d"], runtime, BUSYBOX, id, command))
        .map(drop)
}

/// The container of [`zombie_survives`]: a child that has exited and is never reaped (its
/// parent became busybox's `tail`, which never waits).
pub const ZOMBIE_PARENT: &str = "sleep 0 & exec tail -f /dev/null";

/// A container whose process tree holds a zombie is checkpointed (`ctr c checkpoint --task
/// --rw`) and restored (`ctr c restore --live --rw`): CRIU dumps a zombie as a task core
/// alone, with a thread id it never set, which revive's restore check must read as CRIU
/// does. The restored `tail` has its zombie child again. Returns the restored tree (`ps`'s
/// `pid stat args` of the container's processes).
pub fn zombie_survives(
    node: &Node,
    runtime: &str,
    id: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<String> {
    run_busybox(node, runtime, id, &["sh", "-c", ZOMBIE_PARENT])?;
    let tree = |what: &str| -> Result<String> {
        poll(
            || {
                let pid = ctr::task(node, id)?.pid;
                node.run(&["ps", "-o", "pid,ppid,stat,args", "--ppid", &pid.to_string()])
            },
            |ps| {
                ps.lines().skip(1).any(|l| {
                    l.split_whitespace()
                        .nth(2)
                        .is_some_and(|s| s.starts_with('Z'))
                })
            },
            |ps| format!("{id}'s tail has no zombie child ({what}): {ps}"),
        )
    };
    narrate(&format!("before: {}", tree("before")?.trim()));
    let image = format!("revive.test/checkpoint/{id}:1");
    let result = checkpoint_and_restore(node, runtime, id, &image, |_, _| Ok(()))
        .and_then(|()| tree("restored"));
    if let Ok(restored) = &result {
        narrate(&format!("restored: {}", restored.trim()));
    }
    let removed = remove_container(node, id);
    let _ = node.ctr(&["images", "rm", &image]);
    let restored = result?;
    removed?;
    Ok(restored)
}

/// What the container of [`checkpoint_at_start`] runs.
pub const AT_START_LOOP: &str = "while :; do sleep 1; done";

/// How long the startContainer hook of [`checkpoint_at_start`] holds the init in the runtime.
const HOOK_SECONDS: u32 = 3;

/// A container paused and checkpointed the moment `ctr run -d` returns: the checkpoint
/// catches the container's program, not the runtime's init. A startContainer hook (which
/// runs after the runtime's start returned and before the init's execve) holds the init in
/// the runtime for [`HOOK_SECONDS`]; a checkpoint of that init fails, since its executable
/// is the runtime's sealed copy on a mount no namespace of the container has. The container
/// runs busybox from a directory of the node (`ctr run --config`, a spec with the hook).
/// Returns what the paused, checkpointed task runs after it resumes.
pub fn checkpoint_at_start(
    node: &Node,
    runtime: &str,
    id: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<String> {
    let root = format!("/tmp/{id}-root");
    node.sh(&format!(
        "mkdir -p {root}/bin && cp /bin/busybox {root}/bin/ && ln -s busybox {root}/bin/sleep && ln -s busybox {root}/bin/sh"
    ))?;
    let mut spec: serde_json::Value =
        serde_json::from_str(&node.ctr(&["oci", "spec"])?).context("ctr oci spec")?;
    spec["root"] = serde_json::json!({ "path": root, "readonly": true });
    // A loop, since busybox's sleep ends early when CRIU interrupts it.
    spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", AT_START_LOOP]);
    spec["hooks"] = serde_json::json!({ "startContainer": [{
        "path": "/bin/busybox",
        "args": ["busybox", "sleep", HOOK_SECONDS.to_string()],
    }] });
    let config = format!("/tmp/{id}.json");
    std::fs::write(node.host_path(&config), serde_json::to_vec(&spec)?)
        .with_context(|| format!("writing {config} in the node"))?;

    let result = (|| {
        node.ctr(&["run", "-d", "--runtime", runtime, "--config", &config, id])?;
        node.ctr(&["task", "pause", id])?;
        let image = ctr_checkpoint(node, runtime, &["task", "checkpoint", id])
            .context("checkpoint of a container paused as soon as it started")?;
        let image = image.trim().to_string();
        ensure!(
            ctr::status(node, id)? == Status::Paused,
            "the checkpoint did not leave the task paused"
        );
        node.ctr(&["task", "resume", id])?;
        let pid = ctr::task(node, id)?.pid;
        let runs = node
            .run(&["cat", &format!("/proc/{pid}/cmdline")])
            .with_context(|| {
                format!(
                    "the resumed task's pid {pid}; tasks: {}; processes: {}",
                    node.ctr(&["task", "ls"]).unwrap_or_default(),
                    node.run(&["ps", "-eo", "pid,stat,args"])
                        .unwrap_or_default()
                )
            })?;
        let runs = runs.replace('\0', " ").trim().to_string();
        narrate(&format!(
            "paused and checkpointed at once into {image}; resumed, it runs {runs}"
        ));
        node.ctr(&["images", "rm", &image])?;
        Ok(runs)
    })();
    if ctr::status(node, id).ok() == Some(Status::Paused) {
        node.ctr(&["task", "resume", id])?;
    }
    let removed = remove_container(node, id);
    node.run(&["rm", "-rf", &root, &config])?;
    let runs = result?;
    removed?;
    Ok(runs)
}

/// The node's path of `file` in the root filesystem of task `id` (namespace "default", where
/// ctr works), as its shim mounted it: readable when the task takes no exec (paused, stopped).
pub(crate) fn rootfs_file(id: &str, file: &str) -> String {
    format!("/run/containerd/io.containerd.runtime.v2.task/default/{id}/rootfs/{file}")
}

/// `ctr container checkpoint --task --rw <id> <image>` of a container on `runtime` through
/// [`ctr_checkpoint`]: its task keeps running.
pub fn checkpoint_container(node: &Node, runtime: &str, id: &str, image: &str) -> Result<String> {
    ctr_checkpoint(
        node,
        runtime,
        &["container", "checkpoint", "--task", "--rw", id, image],
    )
}

/// [`checkpoint_container`] of `id` into `image`, what `read` reads of it then, the container
/// removed and `ctr container restore --live --rw` of it from `image`: what `read` read.
pub fn checkpoint_and_restore<T>(
    node: &Node,
    runtime: &str,
    id: &str,
    image: &str,
    read: impl FnOnce(&Node, &str) -> Result<T>,
) -> Result<T> {
    checkpoint_container(node, runtime, id, image)?;
    let checkpointed = read(node, id)?;
    remove_container(node, id)?;
    node.ctr(&["container", "restore", "--live", "--rw", id, image])?;
    Ok(checkpointed)
}

/// `ctr <args>` for a checkpoint of a task on `runtime`. The Go shim's reference runs retry,
/// loudly, what revive's shim retries itself (see docs/shim.md): runc giving up freezing the
/// container ("unable to freeze", its freezer timing out on a loaded machine), and a dump
/// that met a process in uninterruptible sleep; the container keeps running after either, so
/// a retry is sound. The Go shim's other CRIU failures get the error lines of its
/// `criu-dump.log`, which goes away with the node. For revive a failure here is a failure.
pub fn ctr_checkpoint(node: &Node, runtime: &str, args: &[&str]) -> Result<String> {
    let what = format!("{runtime}: `ctr {}`", args.join(" "));
    with_retries(&what, || {
        let err = match node.ctr(args) {
            Err(e) if runtime != "io.containerd.revive.v2" => e,
            result => return Attempt::Done(result),
        };
        let text = format!("{err:#}");
        let log = criu_log_named(node, &text);
        if text.contains("unable to freeze") {
            Attempt::Retry(err, "runc could not freeze the container")
        } else if log
            .as_deref()
            .is_some_and(revive_checkpoint::criulog::transient)
        {
            Attempt::Retry(err, "CRIU met a process in uninterruptible sleep")
        } else {
            Attempt::Done(Err(with_criu_errors(err, log)))
        }
    })
}

/// What one attempt of [`with_retries`] came to.
pub enum Attempt<T> {
    Done(Result<T>),
    /// A failure that passes (the container is unchanged), and why it happened.
    Retry(anyhow::Error, &'static str),
}

/// Runs `attempt` until it is done, at most three times, announcing each retry of `what`
/// with a loud `***` line; the last failure if none is done.
pub fn with_retries<T>(what: &str, mut attempt: impl FnMut() -> Attempt<T>) -> Result<T> {
    let mut number = 1;
    loop {
        match attempt() {
            Attempt::Done(result) => return result,
            Attempt::Retry(err, _) if number == 3 => return Err(err),
            Attempt::Retry(_, why) => {
                eprintln!("*** {what} attempt {number}: {why}; retrying");
                number += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// The CRIU log a runc error names (`criu failed: type DUMP errno 0 path= <log>`: the Go
/// shim's copy of `dump.log` in the bundle, there while the container is), read in the node.
pub fn criu_log_named(node: &Node, err: &str) -> Option<String> {
    err.split_once("path= ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|path| node.run(&["cat", path]).ok())
}

/// `err` with the error lines of CRIU's `log`, when it has some.
pub fn with_criu_errors(err: anyhow::Error, log: Option<String>) -> anyhow::Error {
    let lines = log
        .map(|log| revive_checkpoint::criulog::errors(&log, 5).join("; "))
        .unwrap_or_default();
    if lines.is_empty() {
        err
    } else {
        err.context(format!("CRIU's log: {lines}"))
    }
}

/// The name the scenario modules use for [`ctr::remove`].
pub use crate::ctr::remove as remove_container;

/// A shim's events reach a containerd that restarted since the shim started: a container
/// runs on `runtime`, containerd restarts, and the kill that follows must reach it as
/// `/tasks/exit` (which CRI needs to see a container stop) within `wait`. Returns the
/// event's line from `ctr events`.
pub fn events_after_containerd_restart(
    node: &Node,
    runtime: &str,
    id: &str,
    wait: Duration,
) -> Result<String> {
    run_busybox(node, runtime, id, &["sleep", "1000"])?;
    node.restart_containerd()?;
    let log = format!("/var/log/revive/events-{id}.log");
    node.spawn_daemon(&format!("events-{id}"), "ctr events")?;
    // `ctr events` subscribes asynchronously: an event it was not yet listening for would be
    // missed by the test, not by the shim. A /tasks/paused round trip shows it listening.
    node.ctr(&["task", "pause", id])?;
    node.ctr(&["task", "resume", id])?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.run(&["cat", &log])?.contains("/tasks/resumed") {
        ensure!(
            Instant::now() < deadline,
            "no /tasks/resumed from {runtime} reached containerd after its restart (ctr events \
             saw:\n{})",
            node.run(&["cat", &log])?
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    node.ctr(&["task", "kill", "-s", "KILL", id])?;
    let deadline = Instant::now() + wait;
    loop {
        let seen = node.run(&["cat", &log])?;
        if let Some(line) = seen
            .lines()
            .find(|l| l.contains("/tasks/exit") && l.contains(id))
        {
            let line = line.to_string();
            node.sh("pkill -x ctr || true")?;
            remove_container(node, id)?;
            return Ok(line);
        }
        ensure!(
            Instant::now() < deadline,
            "no /tasks/exit for {id} from {runtime} reached containerd within {wait:?} after \
             its restart; ctr events saw:\n{seen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_state_parses() {
        let text = "tok 12 12\n40\nPID   PPID  COMMAND\n    1     0 sh\n    7     1 sh\n   \
                    88     1 sleep\n   89     0 ps\n   90     0 sh\n";
        let s = parse_process_state(text).unwrap();
        assert_eq!((s.tick, s.line, s.piped), (12, 12, 40));
        assert_eq!(s.tree, ["1 0 sh", "7 1 sh"]);
        assert!(parse_process_state("tok 12\n40\n").is_err());
        assert!(parse_process_state("tok 12 12\n").is_err());
    }

    #[test]
    fn listening_sockets_are_found_in_both_tables() {
        let tables = "  sl  local_address rem_address   st tx_queue\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n\
   1: 0100007F:238C 0100007F:9C40 01 00000000:00000000\n\
   0: 00000000000000000000000000000000:238C 00000000000000000000000000000000:0000 0A 0\n";
        assert!(listens_on(tables, 8080));
        assert!(listens_on(tables, 9100));
        assert!(!listens_on(tables, 9101));
        let established_only = "   1: 0100007F:238C 0100007F:9C40 01 00000000:00000000\n";
        assert!(!listens_on(established_only, 9100));
    }

    #[test]
    fn counter_state_parses() {
        let c = parse_counter("0b5f6c1e-aaaa 42\n").unwrap();
        assert_eq!(c.count, 42);
        assert_eq!(c.token, "0b5f6c1e-aaaa");
        assert!(parse_counter("").is_err());
        assert!(parse_counter("token x").is_err());
        assert!(parse_counter("a 1 2").is_err());
    }
}
