//! The OCI runtime: the operations the shim asks of it ([`OciRuntime`]), implemented for
//! runc and crun (any binary with runc's command line, [`Cli`]) through the `runc` crate,
//! and by a fake in unit tests.
//!
//! The shim is a subreaper and reaps every child on SIGCHLD (see [`crate::daemon`]), so a
//! runtime invocation must not `waitpid` itself: [`MonitorSpawner`] subscribes to the exit
//! monitor before spawning and takes the exit status from there.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::monitor::{monitor_subscribe, monitor_unsubscribe};
use containerd_shim::monitor::{Subject, Topic};
use log::debug;
use runc::{Command, Runc, Spawner};
use tokio::io::AsyncReadExt;

use containerd_shim_protos::shim::oci::Options;

use crate::error::{Error, Result, runtime_error, runtime_said};
use crate::io::ProcessIo;
use crate::options::{CheckpointConfig, CriuFlags};
use crate::preflight::Unready;

/// What `create` needs besides the bundle.
#[derive(Debug, Clone)]
pub struct CreateConfig {
    /// Where the runtime writes the init's pid.
    pub pid_file: PathBuf,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
}

/// What `restore --detach` needs besides the bundle.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    /// Where the runtime writes the restored init's pid.
    pub pid_file: PathBuf,
    /// CRIU's images.
    pub image: PathBuf,
    /// CRIU's work directory (its log, its stats).
    pub work: PathBuf,
    pub no_pivot: bool,
    pub criu: CriuFlags,
    /// The runtime's arguments for the container's LSM labels (see `privilege::lsm_args`).
    pub lsm: Vec<String>,
    /// The runtime's JSON log of this restore.
    pub log: PathBuf,
}

/// The OCI runtime's operations on a container, as the shim uses them. Errors carry the
/// runtime's own words; "does not exist" is [`Error::NotFound`] (see
/// [`crate::error::runtime_error`]).
#[async_trait]
pub trait OciRuntime: Send + Sync {
    /// `create`: the container exists, its init waits for `start`; its pid is in
    /// `config.pid_file`.
    async fn create(
        &self,
        id: &str,
        bundle: &Path,
        config: &CreateConfig,
        io: &ProcessIo,
    ) -> Result<()>;
    async fn start(&self, id: &str) -> Result<()>;
    /// `exec --detach` of `spec` in the container; the new process's pid is in `pid_file`.
    async fn exec(
        &self,
        id: &str,
        spec: &oci_spec::runtime::Process,
        pid_file: &Path,
        io: &ProcessIo,
    ) -> Result<()>;
    /// Signals the container's init (every process of it with `all`).
    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()>;
    async fn pause(&self, id: &str) -> Result<()>;
    async fn resume(&self, id: &str) -> Result<()>;
    async fn ps(&self, id: &str) -> Result<Vec<usize>>;
    async fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()>;
    async fn delete(&self, id: &str, force: bool) -> Result<()>;
    /// Whether CRIU and the kernel can checkpoint (`restore` false) or restore here.
    async fn preflight(&self, restore: bool) -> std::result::Result<(), Unready>;
    /// `checkpoint` with CRIU into `config.image_path`, logging to `log`.
    async fn checkpoint(
        &self,
        id: &str,
        config: &CheckpointConfig,
        work: &Path,
        log: &Path,
    ) -> Result<()>;
    /// `restore --detach` from a checkpoint; the restored init's pid is in
    /// `config.pid_file`.
    async fn restore(
        &self,
        id: &str,
        bundle: &Path,
        config: &RestoreConfig,
        io: &ProcessIo,
    ) -> Result<()>;
    /// Whether the runtime hands CRIU the container's freezer cgroup (runc does), so a
    /// checkpoint that ends the container may freeze it first (see [`crate::freezer`]).
    fn hands_criu_the_freezer(&self) -> bool;
}

/// Opens the runtime a container's options name, for its namespace and bundle.
pub type Connect =
    Arc<dyn Fn(&RuntimeConfig, &str, &Path) -> Result<Arc<dyn OciRuntime>> + Send + Sync>;

/// The [`Connect`] of the shim: the runtime binary on this host.
pub fn connect_cli() -> Connect {
    Arc::new(|config, namespace, bundle| Ok(Arc::new(Cli::new(config, namespace, bundle)?)))
}

#[cfg(test)]
pub mod fake;

/// Where runc keeps container state for a namespace (as containerd's Go shim does).
pub const RUNTIME_ROOT: &str = "/run/containerd/runc";

/// The runtime's JSON log in a bundle (`--log`), as the Go shim names it.
pub const LOG_FILE: &str = "log.json";

/// Where [`RuntimeConfig::save`] keeps the settings in a bundle, for the `delete` action.
const CONFIG_FILE: &str = "revive-runtime.json";

/// Runtime settings from `containerd.runc.v1.Options`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeConfig {
    /// Binary name or path; empty means runc.
    pub binary: String,
    /// State root; empty means [`RUNTIME_ROOT`]. The namespace is a directory below it.
    pub root: String,
    pub systemd_cgroup: bool,
}

impl RuntimeConfig {
    pub fn from_options(options: &Options) -> Self {
        RuntimeConfig {
            binary: options.binary_name.clone(),
            root: options.root.clone(),
            systemd_cgroup: options.systemd_cgroup,
        }
    }

    /// Records the settings in the bundle: the `delete` action, run after the shim died,
    /// has only the bundle to find the container's runtime and state root from.
    pub fn save(&self, bundle: &Path) -> Result<()> {
        let path = bundle.join(CONFIG_FILE);
        let json = serde_json::to_vec(self).expect("plain struct");
        std::fs::write(&path, json).map_err(Error::io(format!("writing {}", path.display())))
    }

    /// The settings [`RuntimeConfig::save`] recorded, or the defaults.
    pub fn load(bundle: &Path) -> Self {
        std::fs::read(bundle.join(CONFIG_FILE))
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_default()
    }

    pub fn binary(&self) -> &str {
        if self.binary.is_empty() {
            "runc"
        } else {
            &self.binary
        }
    }

    /// The runtime's state directory for a namespace: `<root>/<namespace>`, as in the Go
    /// shim (so `runc --root <root>/<namespace>` finds containers created by either).
    pub fn root(&self, namespace: &str) -> PathBuf {
        let root = if self.root.is_empty() {
            RUNTIME_ROOT
        } else {
            &self.root
        };
        Path::new(root).join(namespace)
    }

    /// A client for this runtime, logging (JSON) to the bundle's `log.json`.
    pub fn client(&self, namespace: &str, bundle: &Path) -> Result<Runc> {
        let binary = self.binary();
        // Resolve the binary first, so a missing one is a clear error naming it.
        let resolved = resolve_binary(binary).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "OCI runtime binary {binary:?} not found: exec: {binary:?}: executable file not \
                 found in $PATH; install it or set the runtime's BinaryName option (containerd \
                 config: [...runtimes.revive.options] BinaryName)"
            ))
        })?;
        let mut opts = runc::options::GlobalOpts::new()
            .command(resolved)
            .root(self.root(namespace))
            .log(bundle.join(LOG_FILE))
            .log_json()
            .systemd_cgroup(self.systemd_cgroup);
        opts.custom_spawner(Arc::new(MonitorSpawner));
        opts.build()
            .map_err(|e| Error::Internal(format!("building the runtime client: {e}")))
    }

    /// The runtime binary for the commands the client does not offer.
    fn raw(&self, namespace: &str) -> Result<RawRuntime> {
        let binary = resolve_binary(self.binary()).ok_or_else(|| {
            Error::InvalidArgument(format!("OCI runtime binary {:?} not found", self.binary()))
        })?;
        Ok(RawRuntime {
            binary,
            root: self.root(namespace),
            systemd_cgroup: self.systemd_cgroup,
        })
    }
}

/// The runtime binary for the commands the `runc` crate does not offer (checkpoint,
/// restore), run through the same reaper-aware spawner.
#[derive(Debug, Clone)]
struct RawRuntime {
    binary: PathBuf,
    root: PathBuf,
    systemd_cgroup: bool,
}

impl RawRuntime {
    /// Whether the binary is runc, which hands CRIU the container's freezer cgroup (see
    /// [`crate::freezer`]).
    fn is_runc(&self) -> bool {
        self.binary.file_name().is_some_and(|name| name == "runc")
    }

    /// Runs `<binary> --root R [--systemd-cgroup] --log LOG --log-format json ARGS`, with `io`
    /// as the process's stdio if given. Fails with the runtime's last logged error.
    async fn run(
        &self,
        what: &str,
        args: &[String],
        log: &Path,
        io: Option<&Arc<dyn runc::Io>>,
    ) -> Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.arg("--log")
            .arg(log)
            .args(["--log-format", "json"])
            .args(args);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .env_remove("NOTIFY_SOCKET");
        if let Some(io) = io {
            io.set(&mut cmd)
                .await
                .map_err(Error::io(format!("{what}: setting up stdio")))?;
        }
        debug!("running {:?} {args:?}", self.binary);
        let result = MonitorSpawner.execute(cmd).await;
        if let Some(io) = io {
            io.close_after_start().await;
        }
        let (status, _, stdout, stderr) =
            result.map_err(|e| Error::Runtime(format!("{what}: {e}")))?;
        if status.success() {
            return Ok(());
        }
        Err(Error::Runtime(format!(
            "{what}: runtime exited with {status}: {}",
            runtime_said(Some(log), &stderr, &stdout)
        )))
    }
}

/// runc, crun or another binary with runc's command line.
pub struct Cli {
    client: Runc,
    raw: RawRuntime,
    /// The runtime's JSON log in the bundle.
    log: PathBuf,
}

impl Cli {
    pub fn new(config: &RuntimeConfig, namespace: &str, bundle: &Path) -> Result<Cli> {
        Ok(Cli {
            client: config.client(namespace, bundle)?,
            raw: config.raw(namespace)?,
            log: bundle.join(LOG_FILE),
        })
    }

    /// The outcome of the runtime's `what`, its failure told with the runtime's last logged
    /// error.
    fn checked<T>(
        &self,
        what: &str,
        result: std::result::Result<T, runc::error::Error>,
    ) -> Result<T> {
        result.map_err(|err| runtime_error(what, err, Some(&self.log)))
    }
}

#[async_trait]
impl OciRuntime for Cli {
    async fn create(
        &self,
        id: &str,
        bundle: &Path,
        config: &CreateConfig,
        io: &ProcessIo,
    ) -> Result<()> {
        let opts = runc::options::CreateOpts::new()
            .pid_file(&config.pid_file)
            .no_pivot(config.no_pivot)
            .no_new_keyring(config.no_new_keyring);
        let opts = with_stdio(
            opts,
            io,
            runc::options::CreateOpts::io,
            runc::options::CreateOpts::console_socket::<PathBuf>,
        );
        let created = self.client.create(id, bundle, Some(&opts)).await;
        self.checked("create", created.map(drop))
    }

    async fn start(&self, id: &str) -> Result<()> {
        let started = self.client.start(id).await;
        self.checked("start", started.map(drop))
    }

    async fn exec(
        &self,
        id: &str,
        spec: &oci_spec::runtime::Process,
        pid_file: &Path,
        io: &ProcessIo,
    ) -> Result<()> {
        let opts = runc::options::ExecOpts::new()
            .pid_file(pid_file)
            .detach(true);
        let opts = with_stdio(
            opts,
            io,
            runc::options::ExecOpts::io,
            runc::options::ExecOpts::console_socket::<PathBuf>,
        );
        self.checked("exec", self.client.exec(id, spec, Some(&opts)).await)
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let opts = runc::options::KillOpts::new().all(all);
        self.checked("kill", self.client.kill(id, signal, Some(&opts)).await)
    }

    async fn pause(&self, id: &str) -> Result<()> {
        self.checked("pause", self.client.pause(id).await)
    }

    async fn resume(&self, id: &str) -> Result<()> {
        self.checked("resume", self.client.resume(id).await)
    }

    async fn ps(&self, id: &str) -> Result<Vec<usize>> {
        self.checked("ps", self.client.ps(id).await)
    }

    async fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        self.checked("update", self.client.update(id, resources).await)
    }

    async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let opts = runc::options::DeleteOpts::new().force(force);
        self.checked("delete", self.client.delete(id, Some(&opts)).await)
    }

    async fn preflight(&self, restore: bool) -> std::result::Result<(), Unready> {
        crate::preflight::check(restore).await
    }

    async fn checkpoint(
        &self,
        id: &str,
        config: &CheckpointConfig,
        work: &Path,
        log: &Path,
    ) -> Result<()> {
        self.raw
            .run("checkpoint", &config.args(id, work), log, None)
            .await
    }

    async fn restore(
        &self,
        id: &str,
        bundle: &Path,
        config: &RestoreConfig,
        io: &ProcessIo,
    ) -> Result<()> {
        let mut args = vec![
            "restore".to_string(),
            "--detach".into(),
            "--pid-file".into(),
            config.pid_file.to_string_lossy().into_owned(),
            "--bundle".into(),
            bundle.to_string_lossy().into_owned(),
            "--image-path".into(),
            config.image.to_string_lossy().into_owned(),
            "--work-path".into(),
            config.work.to_string_lossy().into_owned(),
        ];
        if config.no_pivot {
            args.push("--no-pivot".into());
        }
        args.extend(config.criu.args());
        args.extend(config.lsm.iter().cloned());
        if let Some(socket) = io.console_socket() {
            args.push("--console-socket".into());
            args.push(socket.to_string_lossy().into_owned());
        }
        args.push(id.to_string());
        self.raw
            .run("restore", &args, &config.log, io.runc_io().as_ref())
            .await
    }

    fn hands_criu_the_freezer(&self) -> bool {
        self.raw.is_runc()
    }
}

/// `opts` of a call that starts a process, given the process's stdio: its pipes (`pipes`) or
/// its terminal's console socket (`console`), whichever it has.
fn with_stdio<O>(
    mut opts: O,
    io: &ProcessIo,
    pipes: fn(O, Arc<dyn runc::Io>) -> O,
    console: fn(O, PathBuf) -> O,
) -> O {
    if let Some(runc_io) = io.runc_io() {
        opts = pipes(opts, runc_io);
    }
    if let Some(socket) = io.console_socket() {
        opts = console(opts, socket);
    }
    opts
}

/// The pid a runtime wrote to `path`.
pub async fn read_pid(path: &Path) -> Result<u32> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(Error::io(format!("reading {}", path.display())))?;
    text.trim()
        .parse()
        .map_err(|_| Error::Internal(format!("{} holds no pid: {text:?}", path.display())))
}

/// Finds `binary` (a name looked up in PATH, or a path).
pub fn resolve_binary(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        let path = PathBuf::from(binary);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

/// Runs runtime commands, taking their exit status from the shim's reaper.
#[derive(Debug)]
pub struct MonitorSpawner;

#[async_trait]
impl Spawner for MonitorSpawner {
    async fn execute(&self, mut cmd: Command) -> runc::Result<(ExitStatus, u32, String, String)> {
        let subscription = monitor_subscribe(Topic::Pid)
            .await
            .map_err(|e| runc::error::Error::Other(Box::new(e)))?;
        let result = spawn_and_wait(&mut cmd, subscription.rx).await;
        let _ = monitor_unsubscribe(subscription.id).await;
        result
    }
}

async fn spawn_and_wait(
    cmd: &mut Command,
    mut exits: tokio::sync::mpsc::UnboundedReceiver<containerd_shim::monitor::ExitEvent>,
) -> runc::Result<(ExitStatus, u32, String, String)> {
    let mut child = cmd
        .spawn()
        .map_err(runc::error::Error::ProcessSpawnFailed)?;
    let pid = child.id().unwrap_or_default();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read_out = async {
        let mut buf = Vec::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_to_end(&mut buf).await;
        }
        String::from_utf8_lossy(&buf).into_owned()
    };
    let read_err = async {
        let mut buf = Vec::new();
        if let Some(err) = stderr.as_mut() {
            let _ = err.read_to_end(&mut buf).await;
        }
        String::from_utf8_lossy(&buf).into_owned()
    };
    let wait = async {
        while let Some(exit) = exits.recv().await {
            if let Subject::Pid(p) = exit.subject
                && p as u32 == pid
            {
                return Some(exit.exit_code);
            }
        }
        None
    };
    let (out, err, code) = tokio::join!(read_out, read_err, wait);
    // The reaper already collected the child; dropping the handle must not wait again.
    drop(child);
    // Without its exit the command's outcome is unknown, never a success.
    let code = code.ok_or_else(|| {
        runc::error::Error::Other(Box::new(std::io::Error::other(format!(
            "the exit of runtime command {pid} was not seen (the exit monitor closed)"
        ))))
    })?;
    debug!("runtime command {pid} exited with {code}");
    Ok((exit_status(code), pid, out, err))
}

/// The reaper reports an exit code, or 128+signal for a killed process, which cannot be told
/// apart from the code itself; report it as an exit code (only success matters to callers,
/// and a code above 128 must not look like a stopped or signalled status).
fn exit_status(code: i32) -> ExitStatus {
    ExitStatus::from_raw((code.clamp(0, 255)) << 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_in_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RuntimeConfig::load(dir.path()), RuntimeConfig::default());
        let config = RuntimeConfig {
            binary: "crun".into(),
            root: "/r".into(),
            systemd_cgroup: true,
        };
        config.save(dir.path()).unwrap();
        assert_eq!(RuntimeConfig::load(dir.path()), config);
    }

    #[test]
    fn exit_codes_stay_exit_codes() {
        assert!(exit_status(0).success());
        for code in [1, 128, 137, 255] {
            let status = exit_status(code);
            assert_eq!(status.code(), Some(code), "{status}");
            assert!(!status.success());
        }
    }

    #[test]
    fn binaries_resolve_by_name_and_path() {
        assert!(resolve_binary("sh").is_some());
        assert!(resolve_binary("/bin/sh").is_some());
        assert!(resolve_binary("no-such-runtime-binary").is_none());
        assert!(resolve_binary("/nonexistent/runc").is_none());
    }

    #[test]
    fn defaults_follow_containerd() {
        assert_eq!(RuntimeConfig::default().binary(), "runc");
        // An explicit root gets the namespace too (containerd's TestKillContainerDeletedByRunc
        // runs `runc --root <root>/<namespace> delete` behind the shim's back).
        for (root, namespace, state) in [
            ("", "k8s.io", "/run/containerd/runc/k8s.io"),
            ("/tmp/runc-test", "testing", "/tmp/runc-test/testing"),
        ] {
            let config = RuntimeConfig {
                root: root.into(),
                ..Default::default()
            };
            assert_eq!(config.root(namespace), PathBuf::from(state), "{root:?}");
        }
        let missing = RuntimeConfig {
            binary: "no-such-runc".into(),
            ..Default::default()
        };
        let err = missing
            .client("default", Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no-such-runc") && err.contains("BinaryName"),
            "{err}"
        );
    }
}
