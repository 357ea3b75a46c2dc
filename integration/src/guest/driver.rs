//! The scenarios `revive-guest run` runs inside the guest, against containerd 2.3 with the
//! systemd cgroup driver on a cgroup v2 host, each checking what it sees and sending back a
//! [`ScenarioResult`] with a report (see [`crate::guest::report`]) for the host test.
//!
//! Containers on revive are created by `ctr container create` and given runc's options
//! (`SystemdCgroup`, `BinaryName`) through containerd's API ([`crate::guest::containers`]),
//! which ctr cannot send to a runtime not named `io.containerd.runc.v2`; the Go shim's get
//! them from ctr's own flags. Their cgroup is the systemd scope
//! `/system.slice/revive-guest-<id>.scope`.

use std::fs;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use crate::checkpoint_image::{tar_dir, write_dumps};
use crate::cri::{TOKEN_FILE, WORKLOAD_MARKER, WORKLOAD_SCRIPT};
use crate::guest::containers::{Api, RuncOptions};
use crate::guest::report::{
    CheckpointRestore, CounterState, DONE, Environment, ImageRestore, Lifecycle, RESULT_PREFIX,
    ScenarioResult, StatsOom,
};
use crate::image::BUSYBOX;
use crate::node::run_with_timeout;
use crate::scenario::{COUNTER_SCRIPT, parse_counter};

/// revive's runtime name.
pub const REVIVE: &str = "io.containerd.revive.v2";
/// containerd's Go shim.
pub const GO_SHIM: &str = "io.containerd.runc.v2";
/// The slice and unit prefix of containers created here: `system.slice:revive-guest:<id>`
/// puts a container in `/system.slice/revive-guest-<id>.scope`.
pub const SLICE: &str = "system.slice";
pub const UNIT_PREFIX: &str = "revive-guest";
/// CRI's namespace.
pub const K8S: &str = "k8s.io";

/// How long one command may take (emulation is slow; a checkpoint takes seconds).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a wait for a container's state may take.
const WAIT: Duration = Duration::from_secs(90);

/// The scenarios, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "environment",
    "lifecycle",
    "checkpoint-restore-revive-runc",
    "checkpoint-restore-revive-crun",
    "checkpoint-image",
    "stats-oom",
    "checkpoint-restore-goshim-crun",
    "checkpoint-restore-goshim-runc",
    "checkpoint-stress",
];

/// Scenarios that run only when asked for by name (`--only`): the Go shim's runc row, a
/// reference for revive's that the suite does not need.
pub const EXTRA: &[&str] = &["checkpoint-restore-goshim-runc", "checkpoint-stress"];

/// Whether scenario `name` runs, given `only` (`--only`; empty: the default set).
pub fn selected(name: &str, only: &[String]) -> bool {
    if only.iter().any(|o| o == name) || name == "environment" {
        return true;
    }
    only.is_empty() && !EXTRA.contains(&name)
}

/// Scenarios that record what happens without requiring success: the Go shim's, for
/// comparison with revive's.
pub const RECORDED: &[&str] = &[
    "checkpoint-restore-goshim-crun",
    "checkpoint-restore-goshim-runc",
];

/// Where `revive-guest run` works.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where results go: the guest's second serial port.
    pub results: PathBuf,
    /// Scratch space for checkpoints and archives.
    pub work: PathBuf,
    /// The job disk's image archives (busybox.tar, pause.tar).
    pub images: PathBuf,
    /// Run only these scenarios (the default set when empty, see [`selected`]).
    pub only: Vec<String>,
}

/// The results port: raw (no newline translation), drained after every line so a power-off
/// right after cannot lose it.
struct Results(fs::File);

impl Results {
    fn open(path: &Path) -> Result<Results> {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("opening the results port {}", path.display()))?;
        if let Ok(mut termios) = nix::sys::termios::tcgetattr(file.as_fd()) {
            nix::sys::termios::cfmakeraw(&mut termios);
            nix::sys::termios::tcsetattr(
                file.as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                &termios,
            )?;
        }
        Ok(Results(file))
    }

    fn line(&mut self, line: &str) -> Result<()> {
        self.0.write_all(format!("{line}\n").as_bytes())?;
        self.0.flush()?;
        let _ = nix::sys::termios::tcdrain(self.0.as_fd());
        Ok(())
    }
}

/// One scenario's narration and scratch space.
pub struct Ctx {
    steps: Vec<String>,
    work: PathBuf,
    images: PathBuf,
}

impl Ctx {
    fn step(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("revive guest:   {text}");
        self.steps.push(text);
    }
}

/// Runs the scenarios and writes their results, then [`DONE`].
pub fn run_all(options: &Options) -> Result<()> {
    let mut results = Results::open(&options.results)?;
    fs::create_dir_all(&options.work)?;
    for &name in SCENARIOS {
        if !selected(name, &options.only) {
            continue;
        }
        println!("revive guest: scenario {name}");
        let mut ctx = Ctx {
            steps: Vec::new(),
            work: options.work.join(name),
            images: options.images.clone(),
        };
        fs::create_dir_all(&ctx.work)?;
        let started = Instant::now();
        let (outcome, data) = match name {
            "environment" => scenario(&mut ctx, environment),
            "lifecycle" => scenario(&mut ctx, lifecycle),
            "checkpoint-restore-revive-runc" => scenario(&mut ctx, |c, r| {
                checkpoint_restore(c, r, REVIVE, "runc", true)
            }),
            "checkpoint-restore-revive-crun" => scenario(&mut ctx, |c, r| {
                checkpoint_restore(c, r, REVIVE, "crun", true)
            }),
            "checkpoint-restore-goshim-crun" => scenario(&mut ctx, |c, r| {
                checkpoint_restore(c, r, GO_SHIM, "crun", false)
            }),
            "checkpoint-restore-goshim-runc" => scenario(&mut ctx, |c, r| {
                checkpoint_restore(c, r, GO_SHIM, "runc", false)
            }),
            "checkpoint-image" => scenario(&mut ctx, checkpoint_image),
            "checkpoint-stress" => scenario(&mut ctx, checkpoint_stress),
            "stats-oom" => scenario(&mut ctx, stats_oom),
            other => bail!("unknown scenario {other}"),
        };
        let logs = outcome.as_ref().err().map(|_| guest_logs());
        cleanup();
        let result = ScenarioResult {
            name: name.to_string(),
            ok: outcome.is_ok(),
            error: outcome.err().map(|e| format!("{e:#}")),
            steps: ctx.steps,
            data,
            seconds: started.elapsed().as_secs_f64(),
            logs,
        };
        println!(
            "revive guest: {} {name} ({:.1} s){}",
            if result.ok { "PASS" } else { "FAIL" },
            result.seconds,
            result
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        results.line(&format!(
            "{RESULT_PREFIX}{}",
            serde_json::to_string(&result)?
        ))?;
    }
    results.line(DONE)
}

/// Runs `f` with a fresh report; returns its outcome and the report as far as it got.
fn scenario<T: Default + Serialize>(
    ctx: &mut Ctx,
    f: impl FnOnce(&mut Ctx, &mut T) -> Result<()>,
) -> (Result<()>, serde_json::Value) {
    let mut report = T::default();
    let outcome = f(ctx, &mut report);
    let data = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
    (outcome, data)
}

// ----- commands -----

fn describe(args: &[&str]) -> String {
    args.join(" ")
}

/// Runs a command (at most [`COMMAND_TIMEOUT`]), whatever its status.
fn output(args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]).stdin(Stdio::null());
    run_with_timeout(&mut cmd, COMMAND_TIMEOUT).with_context(|| describe(args))
}

/// Runs a command; fails with its output unless it exits 0. Returns stdout.
fn run(args: &[&str]) -> Result<String> {
    let out = output(args)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\nstdout: {}\nstderr: {}",
            describe(args),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command and returns its exit code (-1 for a signal), stdout and stderr.
fn run_code(args: &[&str]) -> Result<(i32, String, String)> {
    let out = output(args)?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn ctr(args: &[&str]) -> Result<String> {
    let mut full = vec!["ctr"];
    full.extend_from_slice(args);
    run(&full)
}

fn ctr_code(args: &[&str]) -> Result<(i32, String, String)> {
    let mut full = vec!["ctr"];
    full.extend_from_slice(args);
    run_code(&full)
}

fn crictl(args: &[&str]) -> Result<String> {
    let mut full = vec!["crictl"];
    full.extend_from_slice(args);
    Ok(run(&full)?.trim().to_string())
}

/// The last lines of containerd's and revive-snapshotter's journals.
fn guest_logs() -> String {
    output(&[
        "journalctl",
        "-u",
        "containerd",
        "-u",
        "revive-snapshotter",
        "-n",
        "60",
        "--no-pager",
        "-o",
        "short-monotonic",
    ])
    .map(|o| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
    .unwrap_or_else(|e| format!("journalctl failed: {e:#}"))
}

/// containerd's API, connected once.
fn api() -> Result<&'static Api> {
    static API: OnceLock<Api> = OnceLock::new();
    if let Some(api) = API.get() {
        return Ok(api);
    }
    let api = Api::connect()?;
    Ok(API.get_or_init(|| api))
}

/// Removes every pod, task and container, so that a failed scenario leaves nothing to the
/// next. Best effort.
fn cleanup() {
    let Ok(api) = api() else {
        return;
    };
    if api.containers(K8S).is_ok_and(|c| !c.is_empty()) {
        let _ = output(&["crictl", "rmp", "-af"]);
    }
    for ns in ["default", K8S] {
        for task in api.tasks(ns).unwrap_or_default() {
            let id = task.container_id.clone();
            if task.status_name() != "STOPPED" {
                let _ = ctr(&["-n", ns, "tasks", "kill", "-s", "SIGKILL", &id]);
                let _ = wait_until(&format!("task {id} stops"), Duration::from_secs(20), || {
                    Ok(task_status_in(ns, &id)? == "STOPPED")
                });
            }
            let _ = ctr_code(&["-n", ns, "tasks", "delete", &id]);
        }
        for container in api.containers(ns).unwrap_or_default() {
            let _ = ctr(&["-n", ns, "containers", "rm", &container.id]);
        }
    }
}

/// Waits (polling) until `done` holds, at most `limit`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let last = done();
        if let Ok(true) = last {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return match last {
                Err(e) => Err(e.context(format!("waiting until {what}"))),
                _ => bail!("timed out after {limit:?} waiting until {what}"),
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ----- tasks and their processes -----

fn task_status_in(ns: &str, id: &str) -> Result<String> {
    Ok(api()?.task(ns, id)?.status_name().to_string())
}

fn task_status(id: &str) -> Result<String> {
    task_status_in("default", id)
}

fn task_pid(id: &str) -> Result<u32> {
    Ok(api()?.task("default", id)?.pid)
}

fn wait_until_stopped(id: &str) -> Result<()> {
    wait_until(&format!("task {id} stops"), WAIT, || {
        Ok(task_status(id)? == "STOPPED")
    })
}

/// The unified hierarchy's cgroup of `pid`.
fn cgroup_of(pid: u32) -> Result<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .with_context(|| format!("reading /proc/{pid}/cgroup"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
        .with_context(|| format!("/proc/{pid}/cgroup has no unified line: {text}"))
}

fn status_field(pid: u32, field: &str) -> Result<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The shim above `pid`: its nearest ancestor named `containerd-shim*`, (pid, name).
fn shim_of(pid: u32) -> Result<(u32, String)> {
    let mut at = pid;
    for _ in 0..8 {
        let parent: u32 = status_field(at, "PPid:")?.parse()?;
        ensure!(parent > 1, "no containerd shim above pid {pid}");
        let name = status_field(parent, "Name:")?;
        if name.starts_with("containerd-shim") {
            return Ok((parent, name));
        }
        at = parent;
    }
    bail!("no containerd shim within 8 ancestors of pid {pid}")
}

/// `err` with the error lines of the CRIU log it names (`criu failed: ... path= <log>`, the
/// Go shim's copy of CRIU's log in the task's bundle).
fn with_criu_log(err: anyhow::Error) -> anyhow::Error {
    let text = format!("{err:#}");
    let log = text
        .split_once("path= ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|path| fs::read_to_string(path).ok());
    crate::scenario::with_criu_errors(err, log)
}

/// `ip -o <what> show lo` in the network namespace of `pid`.
fn loopback(pid: u32, what: &str) -> Result<String> {
    Ok(run(&[
        "nsenter",
        &format!("--net=/proc/{pid}/ns/net"),
        "ip",
        "-o",
        what,
        "show",
        "lo",
    ])?
    .trim()
    .to_string())
}

/// Whether an `ip -o link` line shows the interface UP.
pub fn link_is_up(line: &str) -> bool {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .is_some_and(|(flags, _)| flags.split(',').any(|f| f == "UP"))
}

/// The state [`COUNTER_SCRIPT`] publishes, read through the task's root.
fn read_counter(id: &str) -> Result<CounterState> {
    let pid = task_pid(id)?;
    let text = fs::read_to_string(format!("/proc/{pid}/root/state"))
        .with_context(|| format!("reading /state of {id} (pid {pid})"))?;
    let c = parse_counter(&text)?;
    Ok(CounterState {
        token: c.token,
        count: c.count,
    })
}

fn wait_for_count(id: &str, min: u64) -> Result<CounterState> {
    let mut last = None;
    wait_until(&format!("the counter of {id} reaches {min}"), WAIT, || {
        let c = read_counter(id)?;
        let done = c.count >= min;
        last = Some(c);
        Ok(done)
    })
    .with_context(|| format!("last seen: {last:?}"))?;
    Ok(last.expect("set when done"))
}

static EXEC_ID: AtomicU32 = AtomicU32::new(0);

fn exec_id(what: &str) -> String {
    format!("{what}-{}", EXEC_ID.fetch_add(1, Ordering::SeqCst))
}

/// The scope a container created by [`create_systemd`] or [`run_systemd`] runs in.
pub fn scope_of(id: &str) -> String {
    format!("/{SLICE}/{UNIT_PREFIX}-{id}.scope")
}

/// Whether `cgroup` is the scope of container `id` or below it (crun puts the container in
/// a `container` cgroup inside its scope).
pub fn in_scope(cgroup: &str, id: &str) -> bool {
    let scope = scope_of(id);
    cgroup == scope || cgroup.starts_with(&format!("{scope}/"))
}

fn systemd_cgroups_path(id: &str) -> String {
    format!("{SLICE}:{UNIT_PREFIX}:{id}")
}

/// Creates container `id` on `shim` (not the Go shim) running `binary`, with the systemd
/// cgroup driver: `ctr container create` of a prototype with `flags`, `image` and `args`,
/// recreated with runc's options through containerd's API.
fn create_systemd(
    id: &str,
    shim: &str,
    binary: &str,
    flags: &[&str],
    image: &str,
    args: &[&str],
) -> Result<()> {
    let prototype = format!("{id}-prototype");
    let mut full = vec!["containers", "create", "--runtime", shim];
    full.extend_from_slice(flags);
    full.push(image);
    full.push(&prototype);
    full.extend_from_slice(args);
    ctr(&full)?;
    api()?.recreate(
        "default",
        &prototype,
        id,
        &systemd_cgroups_path(id),
        &RuncOptions {
            binary_name: binary.into(),
            systemd_cgroup: true,
            ..Default::default()
        },
    )?;
    Ok(())
}

/// Starts container `id` running `sh -c script` from busybox on `shim` and `binary` with the
/// systemd cgroup driver: the Go shim through ctr's own flags, revive through
/// [`create_systemd`] and `ctr task start -d`.
fn run_systemd(id: &str, shim: &str, binary: &str, script: &str) -> Result<()> {
    if shim == GO_SHIM {
        let cgroup = systemd_cgroups_path(id);
        ctr(&[
            "run",
            "-d",
            "--runtime",
            GO_SHIM,
            "--runc-binary",
            binary,
            "--runc-systemd-cgroup",
            "--cgroup",
            &cgroup,
            BUSYBOX,
            id,
            "sh",
            "-c",
            script,
        ])?;
    } else {
        create_systemd(id, shim, binary, &[], BUSYBOX, &["sh", "-c", script])?;
        ctr(&["tasks", "start", "-d", id])?;
    }
    Ok(())
}

/// The exit status `ctr task delete` reports on stderr ("task X exit with non-zero exit code
/// N"; nothing for 0).
pub fn deleted_exit_code(stderr: &str) -> i32 {
    stderr
        .split("exit with non-zero exit code ")
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Kills (if needed) and deletes task and container `id`.
fn remove_container(id: &str) -> Result<()> {
    if let Ok(status) = task_status(id) {
        if status != "STOPPED" {
            ctr(&["tasks", "kill", "-s", "SIGKILL", id])?;
            wait_until_stopped(id)?;
        }
        let (code, _, err) = ctr_code(&["tasks", "delete", id])?;
        ensure!(
            code == 0,
            "ctr tasks delete {id} failed ({code}): {}",
            err.trim()
        );
    }
    ctr(&["containers", "rm", id])?;
    Ok(())
}

// ----- scenarios -----

/// The guest is what the suite needs: a unified cgroup hierarchy with the memory, pids and
/// cpu controllers and no v1 hierarchy, containerd 2.3 in its own systemd service, CRIU 4.2
/// passing `criu check`; then the test images are imported (default namespace and CRI's).
fn environment(ctx: &mut Ctx, r: &mut Environment) -> Result<()> {
    r.kernel = fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_string();
    r.cgroup_fs = run(&["stat", "-f", "-c", "%T", "/sys/fs/cgroup"])?
        .trim()
        .to_string();
    r.controllers = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    r.v1_mounts = fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .filter(|l| l.contains(" - cgroup "))
        .map(|l| l.split_whitespace().nth(4).unwrap_or_default().to_string())
        .collect();
    let first_line = |args: &[&str]| -> String {
        run_code(args)
            .map(|(_, out, err)| {
                format!("{out}{err}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_else(|e| format!("{e:#}"))
    };
    r.containerd = first_line(&["containerd", "--version"]);
    r.runc = first_line(&["runc", "--version"]);
    r.crun = first_line(&["crun", "--version"]);
    r.criu = first_line(&["criu", "--version"]);
    r.systemd = first_line(&["systemctl", "--version"]);
    let (_, out, err) = run_code(&["criu", "check"])?;
    r.criu_check = format!("{out}{err}")
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    r.boot = run(&["systemd-analyze", "time"])
        .map(|t| t.lines().next().unwrap_or_default().to_string())
        .unwrap_or_else(|e| format!("{e:#}"));
    r.slowest_units = run(&["systemd-analyze", "blame", "--no-pager"])
        .map(|t| {
            t.lines()
                .take(6)
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    r.containerd_cgroup = run(&[
        "systemctl",
        "show",
        "-p",
        "ControlGroup",
        "--value",
        "containerd",
    ])?
    .trim()
    .to_string();
    ctx.step(format!(
        "kernel {}, /sys/fs/cgroup is {}, controllers {:?}, v1 hierarchies {:?}",
        r.kernel, r.cgroup_fs, r.controllers, r.v1_mounts
    ));
    ctx.step(format!(
        "{} / {} / {} / {} / {}",
        r.containerd, r.runc, r.crun, r.criu, r.systemd
    ));
    ctx.step(format!(
        "criu check: {}; containerd runs in {}",
        r.criu_check, r.containerd_cgroup
    ));
    ctx.step(format!("{}; slowest units: {}", r.boot, r.slowest_units));
    ensure!(
        r.cgroup_fs == "cgroup2fs",
        "/sys/fs/cgroup is {}, not cgroup2fs",
        r.cgroup_fs
    );
    for c in ["cpu", "memory", "pids", "io"] {
        ensure!(
            r.controllers.iter().any(|x| x == c),
            "controller {c} missing: {:?}",
            r.controllers
        );
    }
    ensure!(
        r.v1_mounts.is_empty(),
        "cgroup v1 hierarchies mounted: {:?}",
        r.v1_mounts
    );
    ensure!(
        r.containerd.contains(" v2.3."),
        "not containerd 2.3: {}",
        r.containerd
    );
    ensure!(r.criu.contains("4.2"), "not CRIU 4.2: {}", r.criu);
    ensure!(
        r.criu_check.contains("Looks good"),
        "criu check: {}",
        r.criu_check
    );
    ensure!(
        r.containerd_cgroup == "/system.slice/containerd.service",
        "containerd runs in {}",
        r.containerd_cgroup
    );
    let images = ctx.images.clone();
    let busybox = images.join("busybox.tar");
    let pause = images.join("pause.tar");
    let (busybox, pause) = (
        busybox.to_str().context("path")?,
        pause.to_str().context("path")?,
    );
    ctr(&["images", "import", busybox])?;
    ctr(&["-n", K8S, "images", "import", busybox])?;
    ctr(&["-n", K8S, "images", "import", pause])?;
    ctx.step("imported busybox (default and k8s.io namespaces) and the sandbox image (k8s.io)");
    Ok(())
}

/// The revive shim's lifecycle under the systemd cgroup driver: run, exec, pause and resume
/// through the v2 freezer, kill, delete, exit statuses.
fn lifecycle(ctx: &mut Ctx, r: &mut Lifecycle) -> Result<()> {
    let id = "life";
    let script = "trap 'exit 3' TERM; i=0; while true; do i=$((i+1)); echo $i > /n.new; \
                  mv /n.new /n; sleep 0.1; done";
    create_systemd(id, REVIVE, "runc", &[], BUSYBOX, &["sh", "-c", script])?;
    ctr(&["tasks", "start", "-d", id])?;
    let count = || -> Result<u64> {
        let pid = task_pid(id)?;
        Ok(fs::read_to_string(format!("/proc/{pid}/root/n"))?
            .trim()
            .parse()?)
    };
    wait_until("the task counts to 3", WAIT, || Ok(count()? >= 3))?;
    let status = task_status(id)?;
    ensure!(status == "RUNNING", "{id} is {status}");
    r.pid = task_pid(id)?;
    r.cgroup = cgroup_of(r.pid)?;
    let (shim_pid, shim) = shim_of(r.pid)?;
    r.shim = shim;
    r.shim_cgroup = cgroup_of(shim_pid)?;
    ctx.step(format!(
        "{id} runs as pid {} in {}; its shim ({}) in {}",
        r.pid, r.cgroup, r.shim, r.shim_cgroup
    ));
    ensure!(
        r.cgroup == scope_of(id),
        "{id} runs in {}, not its systemd scope {}",
        r.cgroup,
        scope_of(id)
    );
    ensure!(
        r.shim_cgroup != r.cgroup,
        "the shim shares its task's cgroup {}",
        r.cgroup
    );

    let exec = ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        &exec_id("hello"),
        id,
        "sh",
        "-c",
        "echo exec-ok; cat /proc/self/cgroup",
    ])?;
    r.exec_stdout = exec.trim().to_string();
    r.exec_cgroup = exec
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default()
        .to_string();
    ensure!(
        exec.lines().next() == Some("exec-ok"),
        "exec printed {exec:?}"
    );
    // In the container's own cgroup namespace its cgroup is the namespace's root.
    ensure!(
        r.exec_cgroup == "/" || r.exec_cgroup == r.cgroup,
        "the exec ran in cgroup {}, not the container's",
        r.exec_cgroup
    );
    let (code, _, _) = ctr_code(&[
        "tasks",
        "exec",
        "--exec-id",
        &exec_id("exit"),
        id,
        "sh",
        "-c",
        "exit 5",
    ])?;
    r.exec_exit_code = code;
    ctx.step(format!(
        "exec: {:?}, in cgroup {}; `sh -c 'exit 5'` exec exits {code}",
        r.exec_stdout.lines().next().unwrap_or_default(),
        r.exec_cgroup
    ));
    ensure!(code == 5, "the exec of `exit 5` reported {code}");

    ctr(&["tasks", "pause", id])?;
    r.paused_status = task_status(id)?;
    let dir = PathBuf::from(format!("/sys/fs/cgroup{}", r.cgroup));
    r.freeze_file = fs::read_to_string(dir.join("cgroup.freeze"))?
        .trim()
        .to_string();
    r.frozen_event = fs::read_to_string(dir.join("cgroup.events"))?
        .lines()
        .find(|l| l.starts_with("frozen "))
        .unwrap_or_default()
        .to_string();
    let first = count()?;
    std::thread::sleep(Duration::from_secs(1));
    r.paused_counts = (first, count()?);
    ctx.step(format!(
        "paused: {}, cgroup.freeze {}, cgroup.events {:?}, counter {:?} a second apart",
        r.paused_status, r.freeze_file, r.frozen_event, r.paused_counts
    ));
    ensure!(
        r.paused_status == "PAUSED",
        "paused task is {}",
        r.paused_status
    );
    ensure!(
        r.freeze_file == "1" && r.frozen_event == "frozen 1",
        "the v2 freezer is not frozen: cgroup.freeze {}, {:?}",
        r.freeze_file,
        r.frozen_event
    );
    ensure!(
        r.paused_counts.0 == r.paused_counts.1,
        "the paused task kept counting: {:?}",
        r.paused_counts
    );

    ctr(&["tasks", "resume", id])?;
    r.resumed_status = task_status(id)?;
    wait_until("the resumed task counts on", WAIT, || {
        Ok(count()? > r.paused_counts.1 + 2)
    })?;
    r.resumed_count = count()?;
    ctx.step(format!(
        "resumed: {}, counting again ({})",
        r.resumed_status, r.resumed_count
    ));
    ensure!(
        r.resumed_status == "RUNNING",
        "resumed task is {}",
        r.resumed_status
    );

    let events = Events::start(ctx.work.join("events.log"))?;
    ctr(&["tasks", "kill", "-s", "SIGTERM", id])?;
    wait_until_stopped(id)?;
    r.term_exit_event = events.find("/tasks/exit", id).unwrap_or_default();
    drop(events);
    let (_, _, err) = ctr_code(&["tasks", "delete", id])?;
    let code = deleted_exit_code(&err);
    r.term_exit_code = code;
    let scope = dir.clone();
    r.cgroup_removed = wait_until(
        "the task's cgroup is removed",
        Duration::from_secs(20),
        || Ok(!scope.exists()),
    )
    .is_ok();
    ctr(&["containers", "rm", id])?;
    ctx.step(format!(
        "SIGTERM: stopped, exit status {code} (ctr task delete), event {:?}; cgroup removed: {}",
        r.term_exit_event, r.cgroup_removed
    ));
    ensure!(
        code == 3,
        "ctr task delete reports exit status {code}, not 3"
    );
    ensure!(
        r.term_exit_event.contains("\"exit_status\":3"),
        "the /tasks/exit event does not carry exit status 3: {:?}",
        r.term_exit_event
    );
    ensure!(r.cgroup_removed, "{} is still there", dir.display());

    let short = "short";
    create_systemd(short, REVIVE, "runc", &[], BUSYBOX, &["sh", "-c", "exit 7"])?;
    let (code, _, err) = ctr_code(&["tasks", "start", short])?;
    r.short_exit_code = code;
    ctx.step(format!("ctr task start of `sh -c 'exit 7'` exits {code}"));
    ensure!(code == 7, "`exit 7` reported {code}: {err}");
    remove_container(short)?;
    Ok(())
}

/// The files of directory `dir` (names).
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn check_criu_images(dir: &Path) -> Result<Vec<String>> {
    let names = file_names(dir);
    for want in ["inventory.img", "pstree.img"] {
        ensure!(
            names.iter().any(|n| n == want),
            "{} lacks CRIU's {want}: {names:?}",
            dir.display()
        );
    }
    Ok(names)
}

fn checked_counter(
    ctx: &mut Ctx,
    what: &str,
    id: &str,
    min: u64,
    token: &str,
) -> Result<CounterState> {
    let c = wait_for_count(id, min)?;
    ctx.step(format!("{what}: {c}"));
    ensure!(
        c.token == token,
        "{id} started afresh instead of keeping its memory: token {} -> {}",
        &token[..8.min(token.len())],
        c.token
    );
    Ok(c)
}

/// A counter held in a shell's memory, on `shim` running `binary` with the systemd cgroup
/// driver: `ctr container checkpoint --task --rw` (it keeps running), the container
/// removed, `ctr container restore --live --rw`: the counter continues with its token, in
/// its own systemd scope (not its shim's), with loopback up; then `ctr task checkpoint
/// --exit --image-path` writes CRIU's images there and stops it. `strict`: every check must
/// hold; otherwise (a recorded row) network checks only record.
fn checkpoint_restore(
    ctx: &mut Ctx,
    r: &mut CheckpointRestore,
    shim: &str,
    binary: &str,
    strict: bool,
) -> Result<()> {
    r.shim = shim.into();
    r.binary = binary.into();
    let id = format!(
        "ck-{}-{binary}",
        if shim == REVIVE { "revive" } else { "goshim" }
    );
    let id = id.as_str();
    run_systemd(id, shim, binary, COUNTER_SCRIPT)?;
    let before = wait_for_count(id, 5)?;
    let pid = task_pid(id)?;
    r.cgroup = cgroup_of(pid)?;
    r.lo_before = loopback(pid, "link")?;
    ctx.step(format!(
        "{id} on {shim} ({binary}): {before}, in {}; lo: {}",
        r.cgroup, r.lo_before
    ));
    r.before = Some(before.clone());
    ensure!(
        in_scope(&r.cgroup, id),
        "{id} runs in {}, not in its systemd scope {}",
        r.cgroup,
        scope_of(id)
    );

    let image = format!("revive.test/guest-checkpoint/{id}:1");
    let cg = r.cgroup.clone();
    watched(
        &[
            "ctr",
            "containers",
            "checkpoint",
            "--task",
            "--rw",
            id,
            &image,
        ],
        &cg,
    )?;
    let checkpointed = read_counter(id)?;
    ctx.step(format!(
        "ctr container checkpoint --task --rw: checkpointed by {checkpointed}"
    ));
    r.checkpointed = Some(checkpointed.clone());
    let after = checked_counter(
        ctx,
        "still running after the checkpoint",
        id,
        checkpointed.count + 3,
        &before.token,
    )?;
    r.after_checkpoint = Some(after);
    ctx.step(format!("removing {id}"));
    remove_container(id)?;

    ctr(&["containers", "restore", "--live", "--rw", id, &image]).map_err(with_criu_log)?;
    let restored = checked_counter(
        ctx,
        "after ctr container restore --live --rw",
        id,
        checkpointed.count + 3,
        &checkpointed.token,
    )?;
    r.restored = Some(restored.clone());
    let pid = task_pid(id)?;
    r.restored_cgroup = cgroup_of(pid)?;
    let (shim_pid, shim_name) = shim_of(pid)?;
    r.restored_shim_cgroup = cgroup_of(shim_pid)?;
    ctx.step(format!(
        "restored pid {pid} in {}; its shim ({shim_name}) in {}",
        r.restored_cgroup, r.restored_shim_cgroup
    ));
    ensure!(
        in_scope(&r.restored_cgroup, id),
        "the restored task runs in {}, not in its systemd scope {}",
        r.restored_cgroup,
        scope_of(id)
    );
    ensure!(
        r.restored_cgroup != r.restored_shim_cgroup,
        "the restored task shares its shim's cgroup {}",
        r.restored_cgroup
    );
    r.lo_after = loopback(pid, "link")?;
    r.lo_addr_after = loopback(pid, "addr")?;
    ctx.step(format!(
        "restored lo: {} / {}",
        r.lo_after,
        r.lo_addr_after.replace('\n', " / ")
    ));
    if strict {
        ensure!(
            link_is_up(&r.lo_after) && r.lo_addr_after.contains("127.0.0.1"),
            "loopback is not up in the restored network namespace: {} / {}",
            r.lo_after,
            r.lo_addr_after
        );
    }
    let written = written_at_start(id)?;
    r.rw_layer_kept = written.trim() == restored.token;
    ensure!(
        r.rw_layer_kept,
        "the rw layer's /written-at-start holds {:?}, not {}",
        written.trim(),
        restored.token
    );

    let exit_dir = ctx.work.join(format!("{id}-exit"));
    let exit_dir_s = exit_dir.to_str().context("path")?.to_string();
    let restored_cg = r.restored_cgroup.clone();
    watched(
        &[
            "ctr",
            "tasks",
            "checkpoint",
            "--exit",
            "--image-path",
            &exit_dir_s,
            id,
        ],
        &restored_cg,
    )?;
    r.exit_checkpoint_files = check_criu_images(&exit_dir)?;
    wait_until_stopped(id)?;
    r.exit_checkpoint_stopped = true;
    ctx.step("ctr task checkpoint --exit: CRIU's images written, the task stopped");
    remove_container(id)?;
    ctr(&["images", "rm", &image])?;
    Ok(())
}

/// The overlay upper directory of container `id`'s snapshot (overlayfs).
fn upperdir(id: &str) -> Result<String> {
    let mounts = ctr(&["snapshots", "mounts", "/unused", id])?;
    mounts
        .split([',', ' '])
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(str::to_string)
        .with_context(|| format!("no upperdir in the mounts of {id}: {mounts}"))
}

/// A checkpoint archive of counter `id` (Go shim, overlayfs) in `dir`, made as an engine
/// makes one: CRIU's images, the spec, a config naming the image, the rw layer. The
/// container is removed. The Go shim's dump is retried (at most 3 attempts, each failure
/// narrated with CRIU's errors): under emulation it fails now and then, and the task keeps
/// running after a failed dump.
fn archive_of(ctx: &mut Ctx, id: &str, dir: &Path) -> Result<()> {
    let images = dir.join("checkpoint");
    fs::create_dir_all(dir)?;
    let images = images.to_str().context("path")?;
    for attempt in 1.. {
        match ctr(&["tasks", "checkpoint", "--exit", "--image-path", images, id])
            .map_err(with_criu_log)
        {
            Ok(_) => break,
            Err(e) if attempt < 3 && task_status(id)? == "RUNNING" => {
                ctx.step(format!(
                    "the Go shim's dump failed (attempt {attempt}), retrying: {}",
                    format!("{e:#}").replace('\n', " ")
                ));
                let _ = fs::remove_dir_all(images);
            }
            Err(e) => return Err(e),
        }
    }
    write_dumps(dir, id, &ctr(&["containers", "info", id])?)?;
    let upper = upperdir(id)?;
    run(&[
        "tar",
        "-C",
        &upper,
        "-cf",
        dir.join("rootfs-diff.tar").to_str().context("path")?,
        ".",
    ])?;
    remove_container(id)
}

/// What the rw-layer file `/written-at-start` of counter `id` holds.
fn written_at_start(id: &str) -> Result<String> {
    ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        &exec_id("rw"),
        id,
        "cat",
        "/written-at-start",
    ])
}

/// The rw-layer file of a restored counter holds its token.
fn check_written_at_start(id: &str, token: &str) -> Result<()> {
    let written = written_at_start(id)?;
    ensure!(
        written.trim() == token,
        "{id}'s /written-at-start holds {:?}, not {token}",
        written.trim()
    );
    Ok(())
}

/// A pod's sandbox config for crictl: the node's network, a pid namespace per container,
/// a systemd slice as cgroup parent (so CRI gives its containers systemd scopes).
fn pod_json(name: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name, "uid": format!("revive-guest-{name}"), "namespace": "default", "attempt": 0},
        "log_directory": format!("/var/log/pods/{name}"),
        "linux": {
            "cgroup_parent": format!("kubepods-besteffort-pod{name}.slice"),
            "security_context": {"namespace_options": {"network": 2, "pid": 1, "ipc": 0}}
        }
    })
}

fn container_json(image: &str, command: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": "workload", "attempt": 0},
        "image": {"image": image},
        "command": command,
        "log_path": "workload.log",
        "linux": {"security_context": {"namespace_options": {"network": 2, "pid": 1, "ipc": 0}}}
    })
}

/// RunPodSandbox on handler `revive` and CreateContainer, StartContainer of `image` with
/// `command` in it (crictl). Returns (pod id, container id).
fn crictl_pod(ctx: &Ctx, name: &str, image: &str, command: &[&str]) -> Result<(String, String)> {
    let pod = pod_json(name);
    fs::create_dir_all(format!("/var/log/pods/{name}"))?;
    let pod_file = ctx.work.join(format!("{name}-pod.json"));
    let ctr_file = ctx.work.join(format!("{name}-container.json"));
    fs::write(&pod_file, serde_json::to_vec_pretty(&pod)?)?;
    fs::write(
        &ctr_file,
        serde_json::to_vec_pretty(&container_json(image, command))?,
    )?;
    let (pod_file, ctr_file) = (
        pod_file.to_str().context("path")?,
        ctr_file.to_str().context("path")?,
    );
    let pod_id = crictl(&["runp", "--runtime", "revive", pod_file])?;
    let id = crictl(&["create", &pod_id, ctr_file, pod_file])?;
    crictl(&["start", &id])?;
    Ok((pod_id, id))
}

/// `crictl inspect`'s pid and state of container `id`.
fn crictl_inspect(id: &str) -> Result<(u32, String)> {
    let info: serde_json::Value = serde_json::from_str(&crictl(&["inspect", id])?)?;
    let pid = info["info"]["pid"].as_u64().unwrap_or(0) as u32;
    let state = info["status"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok((pid, state))
}

fn remove_pod(pod: &str) -> Result<()> {
    crictl(&["stopp", pod])?;
    crictl(&["rmp", pod])?;
    Ok(())
}

/// `revive image build --format <format> <archive> <reference> -o <built>`: the digest it
/// prints, narrated.
fn image_build(
    ctx: &mut Ctx,
    format: &str,
    archive: &Path,
    reference: &str,
    built: &Path,
) -> Result<String> {
    let digest = run(&[
        "revive",
        "image",
        "build",
        "--format",
        format,
        archive.to_str().context("path")?,
        reference,
        "-o",
        built.to_str().context("path")?,
    ])?
    .trim()
    .to_string();
    ctx.step(format!("revive image build: {digest}"));
    Ok(digest)
}

/// Container `id`, created from the checkpoint image of the counter that stood at `before`,
/// counts on from there with its token (`what` names it) and holds the token in its rw
/// layer: its `counter` and then its `cgroup` are recorded as they are read.
fn restored_from_image(
    ctx: &mut Ctx,
    what: &str,
    id: &str,
    before: &CounterState,
    counter: &mut Option<CounterState>,
    cgroup: &mut String,
) -> Result<()> {
    let restored = checked_counter(ctx, what, id, before.count + 3, &before.token)?;
    *counter = Some(restored.clone());
    check_written_at_start(id, &restored.token)?;
    *cgroup = cgroup_of(task_pid(id)?)?;
    ctx.step(format!("{id} runs in {cgroup}"));
    Ok(())
}

/// Checkpoint images built by `revive image build`:
/// 1. from an engine-style archive of a counter (Go shim): `ctr run` on revive-snapshotter
///    and revive restores it (the cgroupfs driver, as ctr gives it), and the same image
///    created by ctr restores under the systemd cgroup driver;
/// 2. from `crictl checkpoint --export` of a CRI workload on handler `revive`: a new pod
///    (`crictl runp`, `crictl create` of the checkpoint image, `crictl start`) comes up
///    with the workload restored, in a systemd scope of its pod's slice.
fn checkpoint_image(ctx: &mut Ctx, r: &mut ImageRestore) -> Result<()> {
    let id = "exported";
    ctr(&[
        "run",
        "-d",
        "--runtime",
        GO_SHIM,
        BUSYBOX,
        id,
        "sh",
        "-c",
        COUNTER_SCRIPT,
    ])?;
    let before = wait_for_count(id, 3)?;
    let dir = ctx.work.join("exported-archive");
    archive_of(ctx, id, &dir)?;
    let archive = ctx.work.join("exported.tar");
    fs::write(&archive, tar_dir(&dir)?)?;
    ctx.step(format!(
        "counter {id} (Go shim) checkpointed after {before} into an archive of {} bytes",
        fs::metadata(&archive)?.len()
    ));
    r.checkpointed = Some(before.clone());
    let reference = "revive.test/guest/built:1";
    let built = ctx.work.join("built.tar");
    r.built = image_build(ctx, "podman", &archive, reference, &built)?;
    ctr(&[
        "images",
        "import",
        "--snapshotter",
        "revive",
        built.to_str().context("path")?,
    ])?;

    let new = "restored-ctr";
    ctr(&[
        "run",
        "-d",
        "--snapshotter",
        "revive",
        "--runtime",
        REVIVE,
        reference,
        new,
    ])?;
    restored_from_image(
        ctx,
        "ctr run of the checkpoint image",
        new,
        &before,
        &mut r.ctr_restored,
        &mut r.ctr_cgroup,
    )?;
    remove_container(new)?;

    let new = "restored-systemd";
    create_systemd(
        new,
        REVIVE,
        "runc",
        &["--snapshotter", "revive"],
        reference,
        &[],
    )?;
    ctr(&["tasks", "start", "-d", new])?;
    restored_from_image(
        ctx,
        "the checkpoint image created by ctr, systemd cgroup driver",
        new,
        &before,
        &mut r.systemd_restored,
        &mut r.systemd_cgroup,
    )?;
    ensure!(
        r.systemd_cgroup == scope_of(new),
        "{new} runs in {}, not its systemd scope",
        r.systemd_cgroup
    );
    remove_container(new)?;

    // CRI.
    let (pod, source) = crictl_pod(ctx, "source", BUSYBOX, &["/bin/sh", "-c", WORKLOAD_SCRIPT])?;
    wait_until("the CRI workload writes its token", WAIT, || {
        let out = crictl(&["exec", "-s", &source, "cat", TOKEN_FILE]);
        Ok(out.is_ok_and(|t| !t.is_empty()))
    })?;
    r.cri_token = crictl(&["exec", "-s", &source, "cat", TOKEN_FILE])?;
    let (pid, _) = crictl_inspect(&source)?;
    r.cri_source_cgroup = cgroup_of(pid)?;
    ctx.step(format!(
        "pod source (handler revive): workload {} holds token {}, runs in {}",
        &source[..12.min(source.len())],
        r.cri_token,
        r.cri_source_cgroup
    ));
    ensure!(
        r.cri_source_cgroup
            .ends_with(&format!("/cri-containerd-{source}.scope"))
            && r.cri_source_cgroup
                .contains("kubepods-besteffort-podsource.slice"),
        "the CRI workload runs in {}, not a systemd scope of its pod's slice",
        r.cri_source_cgroup
    );
    let archive = ctx.work.join("cri-archive.tar");
    crictl(&[
        "checkpoint",
        &format!("--export={}", archive.display()),
        &source,
    ])?;
    r.cri_archive_bytes = fs::metadata(&archive)?.len();
    ctx.step(format!(
        "crictl checkpoint --export: {} bytes",
        r.cri_archive_bytes
    ));
    remove_pod(&pod)?;
    let reference = "revive.test/guest/cri:1";
    let built = ctx.work.join("cri-built.tar");
    r.cri_built = image_build(ctx, "cri-o", &archive, reference, &built)?;
    ctr(&[
        "-n",
        K8S,
        "images",
        "import",
        built.to_str().context("path")?,
    ])?;
    let (pod, restored) = crictl_pod(ctx, "restored", reference, &["/bin/sh"])?;
    let (pid, state) = crictl_inspect(&restored)?;
    r.cri_restored_state = state;
    r.cri_restored_token = crictl(&["exec", "-s", &restored, "cat", TOKEN_FILE])?;
    r.cri_restored_ps = crictl(&["exec", "-s", &restored, "ps", "-o", "args"])?;
    r.cri_restored_cgroup = cgroup_of(pid)?;
    ctx.step(format!(
        "pod restored from {reference}: {}, token {}, in {}",
        r.cri_restored_state, r.cri_restored_token, r.cri_restored_cgroup
    ));
    ensure!(
        r.cri_restored_state == "CONTAINER_RUNNING",
        "the restored container is {}",
        r.cri_restored_state
    );
    ensure!(
        r.cri_restored_token == r.cri_token,
        "the pod's container holds token {:?}, not the checkpointed {}",
        r.cri_restored_token,
        r.cri_token
    );
    ensure!(
        r.cri_restored_ps.contains(WORKLOAD_MARKER),
        "the checkpointed workload is not running in the restored container:\n{}",
        r.cri_restored_ps
    );
    ensure!(
        r.cri_restored_cgroup
            .ends_with(&format!("/cri-containerd-{restored}.scope"))
            && r.cri_restored_cgroup
                .contains("kubepods-besteffort-podrestored.slice"),
        "the restored workload runs in {}, not a systemd scope of its pod's slice",
        r.cri_restored_cgroup
    );
    remove_pod(&pod)?;
    Ok(())
}

/// `ctr events`, running until dropped, its output in a file.
struct Events {
    child: Child,
    file: PathBuf,
}

impl Events {
    fn start(file: PathBuf) -> Result<Events> {
        let child = Command::new("ctr")
            .arg("events")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&file)?)
            .stderr(Stdio::null())
            .spawn()
            .context("starting ctr events")?;
        // Let it subscribe before anything happens.
        std::thread::sleep(Duration::from_secs(2));
        Ok(Events { child, file })
    }

    /// The first event line naming `topic` and container `id`, waiting for it a while.
    fn find(&self, topic: &str, id: &str) -> Option<String> {
        let needle = format!("\"{id}\"");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read_to_string(&self.file).unwrap_or_default();
            if let Some(line) = text
                .lines()
                .find(|l| l.contains(topic) && l.contains(&needle))
            {
                return Some(line.to_string());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stats and OOM under revive with the systemd cgroup driver: `ctr task metrics` reports
/// cgroup v2 metrics (pids, memory usage and the limit systemd set on the scope); a task
/// allocating past its memory limit is OOM-killed, reported as a `/tasks/oom` event and exit
/// status 137.
fn stats_oom(ctx: &mut Ctx, r: &mut StatsOom) -> Result<()> {
    let id = "stats";
    let limit: u64 = 64 << 20;
    let limit_s = limit.to_string();
    create_systemd(
        id,
        REVIVE,
        "runc",
        &["--memory-limit", &limit_s],
        BUSYBOX,
        &["sh", "-c", "sleep 100000 & sleep 100000 & wait"],
    )?;
    ctr(&["tasks", "start", "-d", id])?;
    let pid = task_pid(id)?;
    let scope = PathBuf::from(format!("/sys/fs/cgroup{}", cgroup_of(pid)?));
    wait_until("the stats task has its three processes", WAIT, || {
        Ok(fs::read_to_string(scope.join("cgroup.procs"))?
            .lines()
            .count()
            >= 3)
    })?;
    let metrics = ctr(&["tasks", "metrics", "--format", "json", id])?;
    r.metrics = serde_json::from_str(&metrics)
        .with_context(|| format!("ctr task metrics printed {metrics}"))?;
    r.pids_current = r.metrics["pids"]["current"].as_u64().unwrap_or(0);
    r.memory_usage = r.metrics["memory"]["usage"].as_u64().unwrap_or(0);
    r.memory_limit = r.metrics["memory"]["usage_limit"].as_u64().unwrap_or(0);
    r.memory_max_file = fs::read_to_string(scope.join("memory.max"))?
        .trim()
        .to_string();
    ctx.step(format!(
        "ctr task metrics: pids.current {}, memory.usage {}, memory.usage_limit {}; the \
         scope's memory.max {}",
        r.pids_current, r.memory_usage, r.memory_limit, r.memory_max_file
    ));
    ensure!(
        r.metrics.get("memory_events").is_some() || r.metrics["memory"]["usage"].is_u64(),
        "ctr task metrics printed no cgroup v2 metrics: {metrics}"
    );
    ensure!(
        r.pids_current >= 3,
        "pids.current is {}, the task has 3 processes",
        r.pids_current
    );
    ensure!(r.memory_usage > 0, "memory.usage is 0");
    ensure!(
        r.memory_limit == limit && r.memory_max_file == limit_s,
        "the memory limit {limit} is not applied: metrics {}, memory.max {}",
        r.memory_limit,
        r.memory_max_file
    );
    remove_container(id)?;

    let events = Events::start(ctx.work.join("events.log"))?;
    let id = "oom";
    let small = (32u64 << 20).to_string();
    create_systemd(
        id,
        REVIVE,
        "runc",
        &["--memory-limit", &small],
        BUSYBOX,
        &["awk", "BEGIN { s = \"x\"; while (1) s = s s }"],
    )?;
    let (code, _, err) = ctr_code(&["tasks", "start", id])?;
    r.oom_exit_code = code;
    r.oom_event = events.find("/tasks/oom", id).unwrap_or_default();
    r.exit_event = events.find("/tasks/exit", id).unwrap_or_default();
    drop(events);
    ctx.step(format!(
        "a task allocating past {small} bytes: ctr task start exits {code}; events: {:?}, {:?}",
        r.oom_event, r.exit_event
    ));
    ensure!(code == 137, "the OOM-killed task exited {code}: {err}");
    ensure!(
        !r.oom_event.is_empty(),
        "no /tasks/oom event for {id} (ctr events)"
    );
    remove_container(id)?;
    Ok(())
}

/// What the processes of cgroup `cg` (below /sys/fs/cgroup) are doing: the freezer's files,
/// then each process's state, wchan and the top of its kernel stack.
fn cgroup_snapshot(cg: &str) -> String {
    let dir = Path::new("/sys/fs/cgroup").join(cg.trim_start_matches('/'));
    let mut out = String::new();
    let mut dirs = vec![dir];
    while let Some(d) = dirs.pop() {
        let freeze = fs::read_to_string(d.join("cgroup.freeze")).unwrap_or_default();
        let events = fs::read_to_string(d.join("cgroup.events")).unwrap_or_default();
        out.push_str(&format!(
            "  [{}] freeze={} {}\n",
            d.display(),
            freeze.trim(),
            events.replace('\n', " ")
        ));
        for pid in fs::read_to_string(d.join("cgroup.threads"))
            .unwrap_or_default()
            .lines()
        {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let (comm, rest) = stat.rsplit_once(") ").unwrap_or(("", ""));
            let comm = comm.split_once(" (").map(|c| c.1).unwrap_or(comm);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            let stack = fs::read_to_string(format!("/proc/{pid}/stack")).unwrap_or_default();
            let stack: Vec<&str> = stack
                .lines()
                .take(6)
                .map(|l| l.split_whitespace().nth(1).unwrap_or(l))
                .collect();
            let tracer = status_field(pid.parse().unwrap_or(0), "TracerPid:").unwrap_or_default();
            out.push_str(&format!(
                "    {pid} ({comm}) {} ppid {} tracer {tracer} wchan {wchan} stack {}\n",
                fields.first().unwrap_or(&"?"),
                fields.get(1).unwrap_or(&"?"),
                stack.join("<")
            ));
        }
        if let Ok(entries) = fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
        }
    }
    out
}

/// Runs a checkpoint command while sampling what the processes of cgroup `cg` do; a
/// failure carries CRIU's whole log (revive's copy or the Go shim's) and the samples.
fn watched(args: &[&str], cg: &str) -> Result<String> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let cg = cg.to_string();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples: Vec<String> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                samples.push(format!(
                    "t={:.2}s\n{}",
                    started.elapsed().as_secs_f64(),
                    cgroup_snapshot(&cg)
                ));
                std::thread::sleep(Duration::from_millis(500));
            }
            samples
        })
    };
    let started = Instant::now();
    let out = output(args);
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.join().unwrap_or_default();
    let out = out?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let path = err
        .split("CRIU's full log: ")
        .nth(1)
        .or_else(|| err.split("path= ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string);
    let log = path
        .as_deref()
        .and_then(|p| fs::read_to_string(p).ok())
        .unwrap_or_default();
    println!(
        "revive guest: FAILED after {:.1} s: `{}`: {err}",
        started.elapsed().as_secs_f64(),
        args.join(" ")
    );
    println!("revive guest: CRIU log {path:?}:\n{log}");
    for s in &samples {
        println!("revive guest: sample {s}");
    }
    bail!(
        "`{}` failed ({}): {err}\n===== CRIU log {path:?} =====\n{log}\n===== samples \
         =====\n{}",
        args.join(" "),
        out.status,
        samples.join("")
    )
}

/// The checkpoint and restore scenario of revive with runc, then crun, over and over.
fn checkpoint_stress(ctx: &mut Ctx, r: &mut serde_json::Value) -> Result<()> {
    let mut failures = Vec::new();
    let mut total = 0;
    for round in 0..5 {
        for binary in ["runc", "crun"] {
            let id = format!("ck-revive-{binary}");
            let _ = ctr_code(&[
                "images",
                "rm",
                &format!("revive.test/guest-checkpoint/{id}:1"),
            ]);
            let _ = fs::remove_dir_all(ctx.work.join(format!("{id}-exit")));
            let mut report = CheckpointRestore::default();
            let started = Instant::now();
            let outcome = checkpoint_restore(ctx, &mut report, REVIVE, binary, true);
            total += 1;
            let secs = started.elapsed().as_secs_f64();
            match outcome {
                Ok(()) => ctx.step(format!("round {round} {binary}: ok in {secs:.1} s")),
                Err(e) => {
                    ctx.step(format!("round {round} {binary}: FAILED in {secs:.1} s"));
                    failures.push(serde_json::json!({
                        "round": round, "binary": binary, "error": format!("{e:#}"),
                    }));
                    cleanup();
                }
            }
        }
    }
    let errors: Vec<&str> = failures
        .iter()
        .filter_map(|f| f["error"].as_str())
        .collect();
    *r = serde_json::json!({"total": total, "failures": failures.clone()});
    ensure!(
        errors.is_empty(),
        "{} of {total} rounds failed:\n{}",
        errors.len(),
        errors.join("\n\n")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_flags_are_read() {
        assert!(link_is_up(
            "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN"
        ));
        assert!(!link_is_up(
            "1: lo: <LOOPBACK> mtu 65536 qdisc noop state DOWN"
        ));
        assert!(!link_is_up("garbage"));
    }

    #[test]
    fn systemd_names() {
        assert_eq!(scope_of("x"), "/system.slice/revive-guest-x.scope");
        assert_eq!(systemd_cgroups_path("x"), "system.slice:revive-guest:x");
        assert!(in_scope(
            "/system.slice/revive-guest-x.scope/container",
            "x"
        ));
        assert!(!in_scope("/system.slice/revive-guest-xy.scope", "x"));
        assert_eq!(
            deleted_exit_code("level=warning msg=\"task life exit with non-zero exit code 3\"\n"),
            3
        );
        assert_eq!(deleted_exit_code(""), 0);
        assert!(RECORDED.iter().all(|r| SCENARIOS.contains(r)));
        assert!(EXTRA.iter().all(|r| SCENARIOS.contains(r)));
        let none: Vec<String> = Vec::new();
        assert!(selected("lifecycle", &none) && !selected("checkpoint-restore-goshim-runc", &none));
        let only = vec!["checkpoint-restore-goshim-runc".to_string()];
        assert!(
            selected("checkpoint-restore-goshim-runc", &only) && selected("environment", &only)
        );
        assert!(!selected("lifecycle", &only));
    }
}
