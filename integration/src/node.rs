//! The harness's handle on a running node: start, run commands inside, tear down.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cgroup::{self, NodeCgroup};
use crate::image::Image;
use crate::init::{NodeSpec, c_paths};
use crate::rootfs::{self, FileLock, Flavour, Rootfs};
use crate::{host, mounts};

/// PATH inside a node.
pub const NODE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where node directories live: `$REVIVE_NODE_DIR`, else /var/lib/revive-test/nodes.
pub fn nodes_dir() -> PathBuf {
    std::env::var_os("REVIVE_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/revive-test/nodes"))
}

/// The `BinaryName` of the test handler `revive-options` (config/node-*.toml): runc, with each
/// call's arguments appended to [`RUNC_RECORDS`] first.
pub const RUNC_RECORDER: &str =
    "#!/bin/sh\necho \"$*\" >> /var/log/revive/runc-calls.log\nexec runc \"$@\"\n";
/// Where [`RUNC_RECORDER`] writes, inside the node.
pub const RUNC_RECORDS: &str = "/var/log/revive/runc-calls.log";

/// The project binaries a node gets in /usr/local/bin.
pub const PROJECT_BINARIES: &[&str] =
    &["containerd-shim-revive-v2", "revive-snapshotter", "revive"];

/// Where the project's binaries are: `$REVIVE_BIN_DIR`, else next to the running
/// executable (cargo's target/<profile>, also for test executables in target/<profile>/deps).
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("REVIVE_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("executable without a directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// containerd's configuration for a node, chosen by the node's containerd version: the
/// revive registration users install (as `make install` writes it for that version), plus
/// the settings only test nodes need.
pub fn containerd_config(containerd_version: &str) -> String {
    if containerd_version.starts_with("1.") {
        return format!(
            "{}{}",
            include_str!("../../config/containerd-1.7.toml"),
            include_str!("../../config/node-1.7.toml")
        );
    }
    let revive = include_str!("../../config/containerd-2.x.toml");
    let revive = match config_version(containerd_version) {
        3 => revive.to_string(),
        v => revive.replacen("\nversion = 3\n", &format!("\nversion = {v}\n"), 1),
    };
    format!("{revive}{}", include_str!("../../config/node-2.x.toml"))
}

/// The configuration version a containerd 2.x release reads without migrating it: 3 up to
/// 2.2, 4 from 2.3 on (2.3 migrates a version 3 file with a warning; 2.2 and older refuse 4).
pub fn config_version(containerd_version: &str) -> u32 {
    let mut parts = containerd_version
        .trim_start_matches('v')
        .split(['.', '-', '~', '+'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    match (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) {
        (0 | 1, _) => 2,
        (2, 0..=2) => 3,
        _ => 4,
    }
}

static NODE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The lock file in a node's directory (see [`Node`]'s `lock`).
const LOCK_FILE: &str = "lock";

/// A running node. Dropping it tears it down; [`Node::stop`] does the same and reports.
///
/// A node lives at most as long as the thread that started it: if that thread or its
/// process dies without dropping the node (a signal, an abort), the kernel kills the node's
/// processes, and the next [`Node::start`] removes what is left (see [`sweep_stale_nodes`]).
pub struct Node {
    flavour: Flavour,
    rootfs: Rootfs,
    spec: NodeSpec,
    /// `<dir>/lock`, held from before the spec is written until teardown has finished: the
    /// sweep of another harness never takes a node that is starting or being torn down.
    lock: Option<FileLock>,
    default_snapshotter: Option<String>,
    launcher: Option<Child>,
    init_pid: Pid,
    keep_logs: bool,
    stopped: bool,
}

/// What a stopped node left behind on the host; empty when teardown was complete.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub processes: Vec<String>,
    pub mounts: Vec<PathBuf>,
    pub cgroups: Vec<PathBuf>,
    pub dir: Option<PathBuf>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
            && self.mounts.is_empty()
            && self.cgroups.is_empty()
            && self.dir.is_none()
    }
}

/// Options for [`Node::start_with`].
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Appears in the node's name (and its cgroup and directory), e.g. the test name.
    pub label: String,
    /// Start revive-snapshotter before containerd.
    pub snapshotter: bool,
    /// The snapshotter `ctr` uses when not told (`CONTAINERD_SNAPSHOTTER` in every command
    /// run in the node); containerd's default (overlayfs) when None.
    pub default_snapshotter: Option<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            label: "node".into(),
            snapshotter: true,
            default_snapshotter: None,
        }
    }
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect()
}

impl Node {
    /// Starts a node of `flavour` with default options, labelled `label`.
    pub fn start(flavour: Flavour, label: &str) -> Result<Node> {
        Node::start_with(
            flavour,
            NodeOptions {
                label: label.into(),
                ..Default::default()
            },
        )
    }

    pub fn start_with(flavour: Flavour, options: NodeOptions) -> Result<Node> {
        host::require_root()?;
        host::check_device_nodes(Path::new("/dev"))?;
        let bins = bin_dir()?;
        let launcher_bin = bins.join("revive-node");
        let mut missing: Vec<&str> = PROJECT_BINARIES
            .iter()
            .copied()
            .filter(|b| !bins.join(b).is_file())
            .collect();
        if !launcher_bin.is_file() {
            missing.push("revive-node");
        }
        if !missing.is_empty() {
            bail!(
                "project binaries missing from {}: {}; build them first (`make build` or \
                 `cargo build --workspace`), or point REVIVE_BIN_DIR at them",
                bins.display(),
                missing.join(", ")
            );
        }
        let rootfs = rootfs::ensure(flavour)?;
        sweep_stale_nodes();
        let name = format!(
            "{flavour}-{}-{}-{}",
            sanitize(&options.label),
            std::process::id(),
            NODE_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = nodes_dir().join(&name);
        rootfs::remove_tree(&dir)?;
        fs::create_dir_all(&dir)?;
        let lock = FileLock::acquire(&dir.join(LOCK_FILE))?;
        for sub in [
            "upper",
            "work",
            "root",
            "logs",
            "share",
            "data/containerd",
            "data/revive",
            "data/containers",
        ] {
            fs::create_dir_all(dir.join(sub))?;
        }
        fs::set_permissions(nodes_dir(), fs::Permissions::from_mode(0o700))?;
        let spec = NodeSpec {
            hostname: format!("revive-{flavour}"),
            dir: dir.clone(),
            lower: rootfs.path.clone(),
            cgroup: NodeCgroup::new(format!("revive-node-{name}"), cgroup::host_layout()?),
            harness_pid: std::process::id(),
            binds: vec![
                (dir.join("logs"), "/var/log/revive".into()),
                (dir.join("share"), "/share".into()),
                (dir.join("data/containerd"), "/var/lib/containerd".into()),
                (dir.join("data/revive"), "/var/lib/revive".into()),
                (dir.join("data/containers"), "/var/lib/containers".into()),
            ],
            name,
        };
        prepare_upper(&spec, &rootfs, &bins)?;
        let spec_path = dir.join("spec.json");
        fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
        let launcher = Command::new(&launcher_bin)
            .arg("__launch")
            .arg(&spec_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.join("logs/launcher.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", launcher_bin.display()))?;
        let mut node = Node {
            flavour,
            rootfs,
            spec,
            lock: Some(lock),
            default_snapshotter: options.default_snapshotter.clone(),
            launcher: Some(launcher),
            init_pid: Pid::from_raw(0),
            keep_logs: false,
            stopped: false,
        };
        // From here on, Drop cleans up whatever part of the start succeeded.
        node.handshake()?;
        if options.snapshotter {
            node.start_snapshotter("")?;
        }
        node.start_containerd()?;
        Ok(node)
    }

    /// Reads `pid N` and then `ready` from the launcher.
    fn handshake(&mut self) -> Result<()> {
        let stdout = self
            .launcher
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("launcher without stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "node {} did not come up within 60 s{}",
                    self.spec.name,
                    self.log_tails()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                    "the launcher of node {} exited before the node was ready{}",
                    self.spec.name,
                    self.log_tails()
                ),
            };
            if let Some(pid) = line.strip_prefix("pid ") {
                self.init_pid = Pid::from_raw(pid.trim().parse().context("bad pid from launcher")?);
            } else if line == "ready" {
                return Ok(());
            } else if let Some(err) = line.strip_prefix("error: ") {
                bail!("node {} failed to start: {err}", self.spec.name);
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }
    pub fn rootfs(&self) -> &Rootfs {
        &self.rootfs
    }
    /// The node's directory on the host.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }
    /// The host pid of the node's init.
    pub fn init_pid(&self) -> Pid {
        self.init_pid
    }
    /// Host directory visible as /share inside the node.
    /// Where the host reaches `path` of the node's own file system (through its init's
    /// root), for what the harness reads without a command in the node.
    pub fn host_path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.init_pid()))
    }

    pub fn share_dir(&self) -> PathBuf {
        self.spec.dir.join("share")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.spec.dir.join("logs")
    }
    /// Version of a package in the node (e.g. "containerd").
    pub fn version(&self, package: &str) -> Option<&str> {
        self.rootfs
            .completion
            .versions
            .get(package)
            .map(String::as_str)
    }
    /// Keep the node's logs directory after teardown (for failing tests it always is).
    pub fn cgroup_name(&self) -> &str {
        &self.spec.cgroup.name
    }
    pub fn keep_logs(&mut self) {
        self.keep_logs = true;
    }

    /// A command that runs inside the node: all its namespaces, its root, its cgroup, and a
    /// clean environment.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.init_pid))
            .args([
                "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup", "--root", "--wd", "--",
            ])
            .args(args)
            .env_clear()
            .env("PATH", NODE_PATH)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        if let Some(snapshotter) = &self.default_snapshotter {
            cmd.env("CONTAINERD_SNAPSHOTTER", snapshotter);
        }
        if let Ok(files) = c_paths(&self.spec.cgroup.procs_files(true)) {
            // SAFETY: runs between fork and exec; only async-signal-safe libc calls on
            // memory prepared before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    for file in &files {
                        let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                        if fd < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                        libc::close(fd);
                        if !ok {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Runs a command in the node and waits for it (at most `timeout`), whatever its status.
    pub fn exec_timeout<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        timeout: Duration,
    ) -> Result<Output> {
        let mut cmd = self.command(args);
        let what = describe(args);
        run_with_timeout(&mut cmd, timeout)
            .with_context(|| format!("in node {}: {what}", self.spec.name))
    }

    /// Runs a command in the node; fails with its output unless it exits 0. Returns stdout.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<String> {
        let out = self.exec_timeout(args, Duration::from_secs(120))?;
        if !out.status.success() {
            bail!(
                "in node {}: `{}` failed ({}):\nstdout: {}\nstderr: {}",
                self.spec.name,
                describe(args),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                without_deprecations(&String::from_utf8_lossy(&out.stderr)).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a shell script in the node (`sh -c`).
    pub fn sh(&self, script: &str) -> Result<String> {
        self.run(&["sh", "-c", script])
    }

    /// Runs `ctr` against the node's containerd.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["ctr"];
        full.extend_from_slice(args);
        self.run(&full)
    }

    /// Runs `ctr` on a terminal of its own (a pty the harness holds), as ctr needs for
    /// containers with one (`ctr run -t`, and `ctr c restore` of a checkpoint of such a
    /// container, which stays attached). Returns once ctr has exited, or after `grace`,
    /// leaving it running attached to the terminal, which is then closed (ctr exits; the
    /// task stays). Returns what ctr wrote to the terminal.
    pub fn ctr_on_tty(&self, args: &[&str], grace: Duration) -> Result<String> {
        let pty = nix::pty::openpty(None, None).context("openpty")?;
        let mut full = vec!["ctr"];
        full.extend_from_slice(args);
        let mut cmd = self.command(&full);
        let slave = fs::File::from(pty.slave);
        cmd.stdin(slave.try_clone()?)
            .stdout(slave.try_clone()?)
            .stderr(slave);
        // SAFETY: setsid and ioctl are async-signal-safe; the pty becomes the controlling
        // terminal of ctr's new session, as a login shell's would.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("starting ctr on a terminal")?;
        drop(cmd);
        let master = fs::File::from(pty.master);
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            // EIO once the last holder of the terminal closed it.
            while let Ok(n) = Read::read(&mut &master, &mut buf) {
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            out
        });
        let deadline = Instant::now() + grace;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.is_none() {
            // Still attached: hang it up like a closed terminal window would.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGHUP);
            let _ = child.wait();
        }
        let out = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
        if let Some(status) = status
            && !status.success()
        {
            bail!(
                "in node {}: `{}` failed ({status}) on a terminal:\n{}",
                self.spec.name,
                describe(&full),
                out.trim()
            );
        }
        Ok(out)
    }

    /// Starts a daemon inside the node, detached (adopted by the node's init), with its
    /// output appended to /var/log/revive/<log>.log. Returns its pid inside the node.
    pub fn spawn_daemon(&self, log: &str, command: &str) -> Result<u32> {
        let script =
            format!("setsid {command} >>/var/log/revive/{log}.log 2>&1 </dev/null & echo $!");
        let out = self.sh(&script)?;
        out.trim()
            .parse()
            .with_context(|| format!("daemon {log} reported pid {out:?}"))
    }

    /// Stops revive-snapshotter (SIGTERM, as systemd would) and starts it again, waiting
    /// until the old one has exited and the new one listens. (The kernel keeps 15 characters
    /// of a process name: `revive-snapshot`.)
    pub fn restart_snapshotter(&self) -> Result<()> {
        self.restart_snapshotter_with("")
    }

    /// [`Node::restart_snapshotter`], the new one started with the extra arguments `args`.
    pub fn restart_snapshotter_with(&self, args: &str) -> Result<()> {
        self.sh(
            "pkill -TERM -x revive-snapshot || exit 1; \
             for i in $(seq 100); do pgrep -x revive-snapshot >/dev/null || exit 0; sleep 0.1; done; \
             echo 'revive-snapshotter did not exit within 10 s' >&2; exit 1",
        )
        .context("stopping revive-snapshotter")?;
        self.start_snapshotter(args)
    }

    /// Starts revive-snapshotter (not running) with the extra arguments `args`, waiting
    /// until it listens.
    pub fn start_snapshotter(&self, args: &str) -> Result<()> {
        self.spawn_daemon(
            "snapshotter",
            &format!("revive-snapshotter --log-level debug {args}"),
        )?;
        self.wait_for(
            "revive-snapshotter's socket",
            "test -S /run/revive/snapshotter.sock",
            "snapshotter",
        )
    }

    /// Stops the node's containerd (SIGTERM, as systemd would, by its pid: shims and their
    /// containers keep running) and starts it again, waiting until it answers.
    pub fn restart_containerd(&self) -> Result<()> {
        self.restart_containerd_under("")
    }

    /// [`Node::restart_containerd`], the new one started by the command `wrapper` (e.g.
    /// `prlimit --sigpending=1024:1024`), or directly when it is empty.
    pub fn restart_containerd_under(&self, wrapper: &str) -> Result<()> {
        let pid = self.run(&["pidof", "containerd"])?.trim().to_string();
        if pid.is_empty() || pid.contains(' ') {
            bail!(
                "expected one containerd in node {}, pidof says {pid:?}",
                self.spec.name
            );
        }
        self.run(&["kill", "-TERM", &pid])?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .exec_timeout(&["kill", "-0", &pid], Duration::from_secs(10))?
            .status
            .success()
        {
            if Instant::now() > deadline {
                bail!("containerd ({pid}) did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.start_containerd_under(wrapper)
    }

    /// Starts (or restarts, after it was killed) the node's containerd and waits until it
    /// answers.
    pub fn start_containerd(&self) -> Result<()> {
        self.start_containerd_under("")
    }

    fn start_containerd_under(&self, wrapper: &str) -> Result<()> {
        self.spawn_daemon(
            "containerd",
            format!("{wrapper} containerd --log-level debug").trim_start(),
        )?;
        self.wait_for("containerd", "ctr version", "containerd")
    }

    fn wait_for(&self, what: &str, probe: &str, log: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.exec_timeout(&["sh", "-c", probe], Duration::from_secs(10))?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let text = fs::read_to_string(self.logs_dir().join(format!("{log}.log")))
                    .unwrap_or_default();
                bail!(
                    "{what} did not come up in node {} within 30 s; last lines of its log:\n{}",
                    self.spec.name,
                    tail(&text, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Imports the busybox image built from this node's busybox-static
    /// ([`crate::image::BUSYBOX`]).
    pub fn import_busybox(&self) -> Result<()> {
        self.import_image(&Image::busybox(&self.rootfs().path)?)
    }

    /// Imports an image archive into the node's containerd.
    pub fn import_image(&self, image: &Image) -> Result<()> {
        let file = format!("{}.tar", image.file_stem());
        image.write_archive(&self.share_dir().join(&file))?;
        self.ctr(&["images", "import", &format!("/share/{file}")])?;
        Ok(())
    }

    /// The last lines of every log of the node, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = fs::read_dir(self.logs_dir()) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let mut text = String::new();
            if fs::File::open(&path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .is_ok()
            {
                out.push_str(&format!(
                    "\n----- {} (last 60 lines) -----\n{}",
                    path.display(),
                    tail(&text, 60)
                ));
            }
        }
        out
    }

    /// Stops the node and reports what it left behind (nothing, when teardown works).
    pub fn stop(mut self) -> Result<Leftovers> {
        self.teardown()
    }

    /// Stops every process of the node, containers included, and waits until they are gone;
    /// its files stay until [`Node::stop`] (or dropping it) removes them.
    pub fn kill(&mut self) -> Result<()> {
        if self.init_pid.as_raw() > 0 {
            // Killing the pid namespace's init kills every process in the node, containers
            // included; the kernel reaps them all before the init itself exits, and then the
            // launcher, its parent, exits too.
            let _ = kill(self.init_pid, Signal::SIGKILL);
        }
        if let Some(mut launcher) = self.launcher.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while launcher.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = launcher.kill();
                    let _ = launcher.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !processes_in_cgroup(&self.spec.cgroup.name).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn teardown(&mut self) -> Result<Leftovers> {
        self.stopped = true;
        self.kill()?;
        self.spec.cgroup.remove()?;
        let mut left = self.leftovers();
        // Only delete files when nothing is mounted below the node's directory: an rm -rf
        // through a live mount could reach the host's files.
        if left.mounts.is_empty() {
            let keep_logs = self.keep_logs || std::thread::panicking();
            let logs = self.logs_dir();
            let lock = self.spec.dir.join(LOCK_FILE);
            for entry in fs::read_dir(&self.spec.dir)?.flatten() {
                let path = entry.path();
                if (keep_logs && path == logs) || path == lock {
                    continue;
                }
                if entry.file_type()?.is_dir() {
                    rootfs::remove_tree(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
            fs::remove_file(&lock)?;
            if !keep_logs {
                fs::remove_dir(&self.spec.dir)?;
            }
            left.dir = None;
        }
        self.lock = None;
        Ok(left)
    }

    /// What of this node is still on the host.
    pub fn leftovers(&self) -> Leftovers {
        Leftovers {
            processes: processes_in_cgroup(&self.spec.cgroup.name),
            mounts: mounts::mounts_below(&self.spec.dir)
                .map(|m| m.into_iter().map(|m| m.mount_point).collect())
                .unwrap_or_default(),
            cgroups: self.spec.cgroup.leftovers(),
            dir: self.spec.dir.exists().then(|| self.spec.dir.clone()),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "\n===== node {} ({} flavour): logs of the failed test, kept in {} ====={}",
                self.spec.name,
                self.flavour,
                self.logs_dir().display(),
                self.log_tails()
            );
        }
        match self.teardown() {
            Ok(left) if left.is_empty() => {}
            Ok(left) => eprintln!(
                "revive: node {} left things behind: {left:?}",
                self.spec.name
            ),
            Err(err) => eprintln!(
                "revive: tearing down node {} failed: {err:#}",
                self.spec.name
            ),
        }
    }
}

/// Removes what nodes of dead harnesses left: their cgroups and directories (keeping their
/// logs). A node counts as dead when nobody holds its lock (its harness is gone: the kernel
/// released the lock with it) and no process is in its cgroup. A node that is starting or
/// being torn down by a live harness is never taken, even once its processes are gone.
pub fn sweep_stale_nodes() {
    let Ok(entries) = fs::read_dir(nodes_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let lock_path = entry.path().join(LOCK_FILE);
        if !lock_path.exists() {
            // Finished (logs kept), or not yet locked by the harness creating it.
            continue;
        }
        let Ok(Some(_lock)) = FileLock::try_acquire(&lock_path) else {
            continue;
        };
        let Ok(spec) = fs::read(entry.path().join("spec.json"))
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(serde_json::from_slice::<NodeSpec>(&b)?))
        else {
            continue;
        };
        if !processes_in_cgroup(&spec.cgroup.name).is_empty() {
            continue;
        }
        if spec.cgroup.remove().is_err()
            || !mounts::mounts_below(&spec.dir)
                .map(|m| m.is_empty())
                .unwrap_or(false)
        {
            continue;
        }
        for sub in fs::read_dir(&spec.dir).into_iter().flatten().flatten() {
            if sub.file_name() == "logs" || sub.file_name() == LOCK_FILE {
                continue;
            }
            let path = sub.path();
            let _ = if path.is_dir() {
                rootfs::remove_tree(&path)
            } else {
                fs::remove_file(&path).map_err(Into::into)
            };
        }
        let _ = fs::remove_file(&lock_path);
        eprintln!(
            "revive: removed stale node {} (its harness died; logs kept)",
            spec.dir.display()
        );
    }
}

/// Writes what the node needs into its upper layer before it starts: containerd's config,
/// hostname and hosts, and the project binaries.
fn prepare_upper(spec: &NodeSpec, rootfs: &Rootfs, bins: &Path) -> Result<()> {
    let upper = spec.upper();
    let containerd = rootfs
        .completion
        .versions
        .get("containerd")
        .context("node root without containerd")?;
    let etc = upper.join("etc");
    fs::create_dir_all(etc.join("containerd"))?;
    fs::write(
        etc.join("containerd/config.toml"),
        containerd_config(containerd),
    )?;
    fs::write(etc.join("hostname"), format!("{}\n", spec.hostname))?;
    fs::write(
        etc.join("hosts"),
        format!("127.0.0.1 localhost {}\n::1 localhost\n", spec.hostname),
    )?;
    for built in &rootfs.peers {
        let dir = upper.join(&built.completion.peer.dir);
        fs::create_dir_all(&dir)?;
        for name in built.completion.digests.keys() {
            link_or_copy(&built.binary(name), &dir.join(name))
                .with_context(|| format!("installing {name} into the node"))?;
        }
    }
    let local_bin = upper.join("usr/local/bin");
    fs::create_dir_all(&local_bin)?;
    let recorder = local_bin.join("runc-recorder");
    fs::write(&recorder, RUNC_RECORDER)?;
    fs::set_permissions(&recorder, fs::Permissions::from_mode(0o755))?;
    for bin in PROJECT_BINARIES.iter().chain(&["revive-node"]) {
        let dest = local_bin.join(bin);
        // A copy, not a link: a rebuild while the node runs must not change its binaries.
        fs::copy(bins.join(bin), &dest).with_context(|| format!("copying {bin} into the node"))?;
    }
    Ok(())
}

/// `text` without the warnings containerd 2.3+'s `ctr` prints on every command about
/// features containerd deprecates (on a cgroup v1 host: cgroup v1), which would otherwise
/// hide the real error in a report.
pub fn without_deprecations(text: &str) -> String {
    text.lines()
        .filter(|l| !(l.contains("level=warning") && l.contains("msg=\"DEPRECATION: ")))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Hard-links a verified cache file into a node's upper directory (copies it across file
/// systems). The node's own writes to it would change the cache entry, whose digests are
/// checked on every use, so such a change is caught, never silently reused.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(err) if err.raw_os_error() == Some(libc::EXDEV) => {
            fs::copy(from, to).map(|_| ()).map_err(Into::into)
        }
        Err(err) => Err(err.into()),
    }
}

/// Host processes that belong to the node whose cgroup is named `cgroup_name` (every process
/// of a node, containers included, lives in that cgroup's subtree; the name is unique,
/// unlike a namespace's inode number, which the kernel reuses once the namespace is gone).
pub fn processes_in_cgroup(cgroup_name: &str) -> Vec<String> {
    let needle = format!("/{cgroup_name}");
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            fs::read_to_string(e.path().join("cgroup"))
                .map(|c| c.lines().any(|l| l.contains(&needle)))
                .unwrap_or(false)
        })
        .map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            format!("{pid} ({})", comm.trim())
        })
        .collect()
}

fn describe<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` capturing its output; kills it after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let mut stderr = child.stderr.take().context("no stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// The usual shape of an end-to-end test: starts a node of `flavour` labelled `label`, runs
/// `scenario` on it with a narrator printing each step, fails with the node's logs if the
/// scenario fails and if the node leaves anything behind. The scenario's result. Its test
/// needs root ([`crate::harness`] ignores it without).
pub fn on_node<T>(
    flavour: Flavour,
    label: &str,
    what: &str,
    scenario: impl FnOnce(&Node, &mut dyn FnMut(&str)) -> Result<T>,
) -> T {
    let node = Node::start(flavour, label).expect("node starts");
    let result = scenario(&node, &mut |step| eprintln!("  {step}"))
        .unwrap_or_else(|e| panic!("{what} on {flavour}: {e:#}\n{}", node.log_tails()));
    let left = node.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deprecation_warnings_are_dropped() {
        let stderr = "time=\"2026-12-06T00:00:00Z\" level=warning msg=\"DEPRECATION: The support \
                      for cgroup v1 is deprecated\"\nctr: container \"x\" not found\n";
        assert_eq!(
            without_deprecations(stderr),
            "ctr: container \"x\" not found\n"
        );
    }

    #[test]
    fn tail_takes_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[test]
    fn config_follows_containerd_major_version() {
        assert!(containerd_config("1.7.24~ds1-6").contains("version = 2"));
        assert!(containerd_config("2.1.9+ds1-5").contains("\nversion = 3\n"));
        let v4 = containerd_config("2.3.7");
        assert!(
            v4.contains("\nversion = 4\n") && !v4.contains("version = 3"),
            "{v4}"
        );
        assert_eq!(config_version("2.4.2"), 4);
        assert_eq!(config_version("v2.2.9"), 3);
        assert_eq!(config_version("10.0.0"), 4);
    }

    #[test]
    fn timeout_kills_the_command() {
        let err = run_with_timeout(Command::new("sleep").arg("5"), Duration::from_millis(100))
            .unwrap_err();
        assert!(err.to_string().contains("timed out"));
    }

    #[test]
    fn labels_are_sanitized() {
        assert_eq!(
            sanitize("smoke::checkpoint restore"),
            "smoke--checkpoint-restore"
        );
    }
}
