//! A container: its bundle, rootfs mounts, runtime client, init process and execs. Turns
//! Task API requests into runtime calls; the RPC layer ([`crate::service`]) never runs the
//! runtime itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::mount::{mount_rootfs, umount_recursive};
use containerd_shim_protos::api::CreateTaskRequest;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use log::{debug, info, warn};
use tokio::sync::Mutex;

use crate::checkpoint::{Target, checkpoint_image, reconcile_with};
use crate::error::{Error, Result, is_already_finished};
use crate::io::{ProcessIo, StdioSpec};
use crate::options::{CheckpointConfig, CreateOptions, parse_options};
use crate::process::{Op, Process, Restore, Status};
use crate::program::{EXEC_WAIT, Executable};
use crate::runtime::{Connect, CreateConfig, OciRuntime, RuntimeConfig, read_pid};
use crate::spec::{has_own_namespace, read_spec, write_spec};

/// An exec that has been added but maybe not started, with what starting it needs.
pub struct Exec {
    pub process: Arc<Process>,
    pub spec: oci_spec::runtime::Process,
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub namespace: String,
    runtime: Arc<dyn OciRuntime>,
    rootfs: Option<PathBuf>,
    pub init: Arc<Process>,
    execs: Mutex<HashMap<String, Arc<Exec>>>,
    io_uid: u32,
    io_gid: u32,
    /// Whether the container has a pid namespace of its own: if not, its processes outlive
    /// its init unless the shim kills them.
    own_pid_ns: bool,
    exec_gate: tokio::sync::watch::Sender<ExecGate>,
}

/// An exec counted as starting (see [`Container::enter_exec`]); dropped before
/// [`ExecSlot::running`], it no longer counts.
pub struct ExecSlot<'a> {
    container: &'a Container,
    started: bool,
}

impl ExecSlot<'_> {
    /// The exec started: it counts until its exit is handled.
    pub fn running(mut self) {
        self.started = true;
    }
}

impl Drop for ExecSlot<'_> {
    fn drop(&mut self) {
        if !self.started {
            self.container.leave_exec();
        }
    }
}

/// What Start did: the init's pid, and whether it was restored from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    pub restored: bool,
}

/// Execs starting or running, and whether the init has exited (the Go shim's runningExecs
/// and containerInitExit).
#[derive(Debug, Default, Clone, Copy)]
struct ExecGate {
    init_exited: bool,
    execs: usize,
}

/// Whether the bundle's spec gives the container a new pid namespace (a `pid` entry without
/// a path). Anything unreadable counts as shared, which only means an extra kill.
pub fn has_own_pid_ns(bundle: &Path) -> bool {
    read_spec(bundle).is_ok_and(|spec| has_own_namespace(&spec, "pid"))
}

impl Container {
    /// Mounts the rootfs, sets up stdio and runs `runtime create`. On any failure nothing is
    /// left behind: mounts are undone and the runtime's container deleted.
    pub async fn create(
        req: &CreateTaskRequest,
        namespace: &str,
        connect: &Connect,
    ) -> Result<Container> {
        let CreateOptions {
            runtime: options,
            restore: criu,
        } = parse_options(req.options.as_ref())?;
        let bundle = PathBuf::from(&req.bundle);
        let config = RuntimeConfig::from_options(&options);
        let runtime = connect(&config, namespace, &bundle)?;
        config.save(&bundle)?;
        // A checkpoint to restore from (containerd unpacked it, or the runtime options name
        // one): Create only records it; the restore runs at Start, as in the Go shim.
        let restore_image = [req.checkpoint.as_str(), options.criu_image_path.as_str()]
            .into_iter()
            .find(|p| !p.is_empty())
            .map(PathBuf::from);
        // Or a container created from a checkpoint image on revive-snapshotter. Its spec is
        // reconciled with the checkpoint's even when containerd names a checkpoint of its own
        // (`ctr c restore` of a container that was restored from an image: its spec is still
        // the image's, with no command). The policy of any restore is the spec as containerd
        // or CRI wrote it, read before anything here changes it.
        let policy = read_spec(&bundle)?;
        let from_image = checkpoint_image(&req.id, &req.rootfs)?;
        let restore_image =
            restore_image.or_else(|| from_image.as_ref().map(|(_, images)| images.clone()));
        // What cannot be restored here at all is said first, then what would hold too much;
        // the spec is rewritten only once both pass.
        let reconciled = match &from_image {
            Some((handoff, _)) => Some(reconcile_with(&req.id, handoff, &bundle, &policy)?),
            None => None,
        };
        if let Some(images) = &restore_image {
            let policy = reconciled.as_ref().map_or(&policy, |r| &r.policy);
            crate::privilege::check(&req.id, policy, images)?;
        }
        let stand_ins = match (reconciled, &from_image) {
            (Some(reconciled), Some((_, images))) => {
                write_spec(&bundle, &reconciled.spec)?;
                info!(
                    "{}: created from a checkpoint image: restoring from {} ({})",
                    req.id,
                    images.display(),
                    reconciled.notes.join("; ")
                );
                Some(reconciled.stand_ins)
            }
            _ => None,
        };
        let restore = restore_image.map(|image| Restore {
            image,
            work: (!options.criu_work_path.is_empty())
                .then(|| PathBuf::from(&options.criu_work_path)),
            no_pivot: options.no_pivot_root,
            criu,
        });
        let own_pid_ns = has_own_pid_ns(&bundle);
        let rootfs = mount_all(&req.rootfs, &bundle)?;
        // Made from the image at Create, like every other check of it, so that a hostile
        // one is refused with no task left; they go with the container at Delete.
        if let Some(stand_ins) = &stand_ins
            && let Err(err) = stand_ins.make()
        {
            unmount(rootfs.as_deref());
            return Err(err);
        }
        let stdio = StdioSpec {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let result = async {
            let io =
                ProcessIo::new(&req.id, namespace, &stdio, options.io_uid, options.io_gid).await?;
            if let Some(restore) = restore {
                return Ok(Process::from_checkpoint(stdio.clone(), io, restore));
            }
            let config = CreateConfig {
                pid_file: bundle.join("init.pid"),
                no_pivot: options.no_pivot_root,
                no_new_keyring: options.no_new_keyring,
            };
            let console = io.expect_console();
            if let Err(e) = runtime.create(&req.id, &bundle, &config, &io).await {
                if let Some(pending) = console {
                    pending.abort();
                }
                return Err(e);
            }
            io.attach_console(console, &stdio).await?;
            let pid = read_pid(&config.pid_file).await?;
            Ok::<_, Error>(Process::init(stdio.clone(), io, pid))
        }
        .await;
        match result {
            Ok(init) => Ok(Container {
                id: req.id.clone(),
                bundle,
                namespace: namespace.to_string(),
                runtime,
                rootfs,
                init: Arc::new(init),
                execs: Mutex::new(HashMap::new()),
                io_uid: options.io_uid,
                io_gid: options.io_gid,
                own_pid_ns,
                exec_gate: tokio::sync::watch::Sender::new(ExecGate::default()),
            }),
            Err(err) => {
                let _ = runtime.delete(&req.id, true).await;
                crate::standins::remove(&bundle.join(crate::standins::DIR));
                unmount(rootfs.as_deref());
                Err(err)
            }
        }
    }

    /// The process `exec_id` names (the init for an empty id).
    pub async fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        self.execs
            .lock()
            .await
            .get(exec_id)
            .map(|e| e.process.clone())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "exec {exec_id:?} of container {:?} does not exist",
                    self.id
                ))
            })
    }

    /// Counts an exec as starting until the slot is dropped, or, once
    /// [`ExecSlot::running`], until its exit ([`Container::leave_exec`]).
    /// Refused once the init has exited: no exec may start in a container whose init is
    /// gone, though containerd has not been told yet (containerd issue 10589).
    pub fn enter_exec(&self) -> Result<ExecSlot<'_>> {
        let mut refused = false;
        self.exec_gate.send_modify(|gate| {
            if gate.init_exited {
                refused = true;
            } else {
                gate.execs += 1;
            }
        });
        if refused {
            return Err(Error::FailedPrecondition(format!(
                "container {} init process is not running",
                self.id
            )));
        }
        Ok(ExecSlot {
            container: self,
            started: false,
        })
    }

    /// An exec counted by [`Container::enter_exec`] and started has exited.
    pub fn leave_exec(&self) {
        self.exec_gate
            .send_modify(|gate| gate.execs = gate.execs.saturating_sub(1));
    }

    /// Records the init's exit and waits until every exec that was starting or running has
    /// exited (or failed to start): containerd must see the execs' exits before the init's.
    pub async fn init_exited_wait_for_execs(&self) {
        self.exec_gate.send_modify(|gate| gate.init_exited = true);
        let mut gate = self.exec_gate.subscribe();
        let _ = gate.wait_for(|gate| gate.execs == 0).await;
    }

    /// The container for [`crate::checkpoint`].
    fn target(&self) -> Target<'_> {
        Target {
            id: &self.id,
            bundle: &self.bundle,
            runtime: self.runtime.as_ref(),
        }
    }

    /// Starts the init, or restores it if it was created from a checkpoint.
    pub async fn start_init(&self) -> Result<Started> {
        let mut init = self.init.lock().await;
        init.check(Op::Start)?;
        let (pid, restored) = match init.restore().cloned() {
            Some(restore) => {
                let restored = crate::checkpoint::restore(
                    &self.target(),
                    &restore,
                    &self.init.io,
                    &self.init.stdio,
                )
                .await?;
                if restored.sandboxed {
                    return self.hold_sandbox(&mut init, restored.pid).await;
                }
                (restored.pid, true)
            }
            None => {
                let pid = init.pid();
                let runtime_init = Executable::of(pid);
                self.runtime.start(&self.id).await?;
                if let Some(runtime_init) = runtime_init
                    && !runtime_init.wait_replaced(pid, EXEC_WAIT).await
                {
                    warn!(
                        "{}: the init (pid {pid}) had not yet run the container's program {} s after it started",
                        self.id,
                        EXEC_WAIT.as_secs()
                    );
                }
                (pid, false)
            }
        };
        init.started(pid)?;
        Ok(Started { pid, restored })
    }

    /// A sandboxed restore's init, stopped by CRIU: frozen by the runtime's pause, checked
    /// to be outside the node's network namespace, its root remounted read-only, then every
    /// process sent SIGCONT, which it takes once resumed; the init is Paused. A container
    /// that cannot be held so is killed, never left to run.
    async fn hold_sandbox(
        &self,
        init: &mut crate::process::Locked<'_>,
        pid: u32,
    ) -> Result<Started> {
        if let Err(e) = self.runtime.pause(&self.id).await {
            let _ = self.runtime.kill(&self.id, 9, true).await;
            return Err(Error::FailedPrecondition(format!(
                "the sandboxed restore of {} could not be frozen, so it was killed: {e}",
                self.id
            )));
        }
        if let Err(e) = crate::sandbox::check_isolated(pid)
            .and_then(|()| crate::sandbox::make_root_read_only(pid))
        {
            let _ = self.runtime.kill(&self.id, 9, true).await;
            return Err(e);
        }
        let pids = self.runtime.ps(&self.id).await.unwrap_or_default();
        crate::sandbox::wake_when_resumed(&pids);
        init.started(pid)?;
        init.transition(Status::Paused)?;
        info!(
            "{}: restored as a sandbox, paused with {} processes",
            self.id,
            pids.len()
        );
        Ok(Started {
            pid,
            restored: true,
        })
    }

    /// Checkpoints the running (or paused) init with the runtime and CRIU.
    pub async fn checkpoint(&self, config: &CheckpointConfig) -> Result<()> {
        let init = self.init.lock().await;
        init.check(Op::Checkpoint)?;
        crate::checkpoint::checkpoint(&self.target(), init.pid(), config).await?;
        Ok(())
    }

    /// Registers an exec (ExecProcessRequest); it runs at start. Its stdio is opened with
    /// no lock held: opening a FIFO waits for its reader, and the init and the other execs
    /// go on meanwhile.
    pub async fn add_exec(&self, exec_id: &str, spec: &Any, stdio: StdioSpec) -> Result<()> {
        self.init.lock().await.check(Op::Exec)?;
        let mut spec: oci_spec::runtime::Process = serde_json::from_slice(&spec.value)
            .map_err(|e| Error::InvalidArgument(format!("invalid exec process spec: {e}")))?;
        // The request's terminal flag wins over the spec's, as in the Go shim: containerd's
        // client passes the container's process spec with the exec's own stdio.
        spec.set_terminal(Some(stdio.terminal));
        let exists = || Error::AlreadyExists(format!("exec {exec_id:?} already exists"));
        if self.execs.lock().await.contains_key(exec_id) {
            return Err(exists());
        }
        let io =
            ProcessIo::new(&self.id, &self.namespace, &stdio, self.io_uid, self.io_gid).await?;
        let process = Arc::new(Process::exec(stdio, io));
        match self.execs.lock().await.entry(exec_id.to_string()) {
            std::collections::hash_map::Entry::Occupied(_) => Err(exists()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Arc::new(Exec { process, spec }));
                Ok(())
            }
        }
    }

    /// Added exec `exec_id`.
    async fn exec(&self, exec_id: &str) -> Result<Arc<Exec>> {
        self.execs
            .lock()
            .await
            .get(exec_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("exec {exec_id:?} does not exist")))
    }

    /// Runs `runtime exec --detach` for an added exec; returns its pid.
    pub async fn start_exec(&self, exec_id: &str) -> Result<u32> {
        let exec = self.exec(exec_id).await?;
        let mut process = exec.process.lock().await;
        process.check(Op::Start)?;
        let pid_file = self.bundle.join(format!("{exec_id}.pid"));
        let io = &exec.process.io;
        let console = io.expect_console();
        if let Err(e) = self.runtime.exec(&self.id, &exec.spec, &pid_file, io).await {
            if let Some(pending) = console {
                pending.abort();
            }
            return Err(e);
        }
        if let Err(err) = io.attach_console(console, &exec.process.stdio).await {
            // Running but out of the client's reach: it goes, as after a failed exec.
            if let Ok(pid) = read_pid(&pid_file).await {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(err);
        }
        let pid = read_pid(&pid_file).await?;
        process.started(pid)?;
        Ok(pid)
    }

    /// Deletes an exec. The map of execs is not held while the exec's own lock is awaited
    /// (a starting exec holds it across the runtime call).
    pub async fn remove_exec(&self, exec_id: &str) -> Result<Arc<Process>> {
        let exec = self.exec(exec_id).await?;
        let mut locked = exec.process.lock().await;
        locked.check(Op::Delete)?;
        locked.transition(Status::Deleted)?;
        drop(locked);
        let mut execs = self.execs.lock().await;
        if execs.get(exec_id).is_some_and(|e| Arc::ptr_eq(e, &exec)) {
            execs.remove(exec_id);
        }
        Ok(exec.process.clone())
    }

    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let process = self.process(exec_id).await?;
        let locked = process.lock().await;
        locked.check(Op::Kill)?;
        if exec_id.is_empty() {
            return match self.runtime.kill(&self.id, signal, all).await {
                Ok(()) => Ok(()),
                Err(err) => {
                    // The init may have died before the kill, its exit not yet recorded.
                    if process.exit().is_some() || is_already_finished(&err.to_string()) {
                        Err(Error::NotFound(format!("process already finished: {err}")))
                    } else {
                        Err(err)
                    }
                }
            };
        }
        let pid = locked.pid() as i32;
        // An exec that was added but not started has no process: a signal to pid 0 would
        // reach the shim's own process group.
        if pid <= 0 {
            return Err(Error::FailedPrecondition("process not created".into()));
        }
        let sig = nix::sys::signal::Signal::try_from(signal as i32)
            .map_err(|_| Error::InvalidArgument(format!("invalid signal {signal}")))?;
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => {
                Err(Error::NotFound("process already finished".into()))
            }
            Err(e) => Err(Error::Internal(format!("kill {pid}: {e}"))),
        }
    }

    /// After the init exited: a container without its own pid namespace may still have
    /// processes; kill them all (containerd's Go shim does the same).
    pub async fn kill_leftovers(&self) {
        if self.own_pid_ns {
            return;
        }
        if let Err(e) = self.runtime.kill(&self.id, 9, true).await {
            debug!("killing what is left of {}: {e}", self.id);
        }
    }

    pub async fn pause(&self) -> Result<()> {
        let mut init = self.init.lock().await;
        init.check(Op::Pause)?;
        let mut attempt = 0;
        loop {
            let Err(err) = self.runtime.pause(&self.id).await else {
                break;
            };
            if !freeze_gave_up(&err.to_string()) {
                return Err(err);
            }
            // Never leave the container half-frozen, whatever the runtime did.
            if crate::cgroup::thaw_if_freezing(init.pid()) {
                warn!("pause of {}: thawed a freezer left in FREEZING", self.id);
            }
            attempt += 1;
            if attempt > PAUSE_RETRIES {
                return Err(err);
            }
            warn!(
                "pause of {}: the runtime could not freeze it (try {attempt}); trying again",
                self.id
            );
            tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
        }
        init.transition(Status::Paused)
    }

    pub async fn resume(&self) -> Result<()> {
        let mut init = self.init.lock().await;
        init.check(Op::Resume)?;
        self.runtime.resume(&self.id).await?;
        init.transition(Status::Running)
    }

    pub async fn pids(&self) -> Result<Vec<usize>> {
        self.runtime.ps(&self.id).await
    }

    /// Exec ids by pid, for Pids.
    pub async fn exec_pids(&self) -> HashMap<u32, String> {
        self.execs
            .lock()
            .await
            .iter()
            .map(|(id, e)| (e.process.pid(), id.clone()))
            .collect()
    }

    pub async fn update(&self, resources: &Any) -> Result<()> {
        let init = self.init.lock().await;
        init.check(Op::Update)?;
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&resources.value)
            .map_err(|e| Error::InvalidArgument(format!("invalid resources: {e}")))?;
        self.runtime.update(&self.id, &resources).await
    }

    /// Deletes the container from the runtime and unmounts its rootfs.
    pub async fn delete(&self) -> Result<()> {
        let mut init = self.init.lock().await;
        init.check(Op::Delete)?;
        // Everything the process wrote reaches containerd before the task goes away.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.init.io.wait()).await;
        let force = matches!(init.status(), Status::Created | Status::CreatedCheckpoint);
        if let Err(err) = self.runtime.delete(&self.id, force).await {
            // Already gone from the runtime is fine: the task is being deleted anyway.
            if !matches!(err, Error::NotFound(_)) {
                return Err(err);
            }
            debug!("runtime had no container {}: {err}", self.id);
        }
        unmount(self.rootfs.as_deref());
        crate::standins::remove(&self.bundle.join(crate::standins::DIR));
        crate::sandbox::remove_netns(&self.bundle);
        init.transition(Status::Deleted)
    }
}

/// Mounts CreateTaskRequest's rootfs mounts on `<bundle>/rootfs`; `None` when there are none
/// (the bundle's rootfs is used as it is).
fn mount_all(
    mounts: &[containerd_shim_protos::api::Mount],
    bundle: &Path,
) -> Result<Option<PathBuf>> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target)
        .map_err(Error::io(format!("creating {}", target.display())))?;
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_rootfs(Some(&m.type_), Some(&m.source), &m.options, &target) {
            if i > 0 {
                unmount(Some(&target));
            }
            return Err(Error::Internal(format!(
                "mounting the rootfs ({} {}): {e}",
                m.type_, m.source
            )));
        }
    }
    Ok(Some(target))
}

fn unmount(rootfs: Option<&Path>) {
    let Some(rootfs) = rootfs.and_then(Path::to_str) else {
        return;
    };
    if let Err(e) = umount_recursive(Some(rootfs), 0) {
        warn!("unmounting {rootfs}: {e}");
    }
}

/// More tries of a pause that failed only to freeze.
const PAUSE_RETRIES: u64 = 3;

/// runc 1.1's cgroup v1 freezer gives up ("unable to freeze") when the container's processes
/// fork faster than they freeze, as happens under load; with the freezer thawed (by the
/// runtime or by `cgroup::thaw_if_freezing`), another try is safe.
fn freeze_gave_up(message: &str) -> bool {
    message.contains("unable to freeze")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_freeze_that_gave_up_is_tried_again() {
        assert!(freeze_gave_up(
            "pause: runtime exited with exit status: 1: unable to freeze"
        ));
        assert!(!freeze_gave_up("pause: container \"c\" does not exist"));
    }

    #[test]
    fn pid_namespace_ownership() {
        let dir = tempfile::tempdir().unwrap();
        let write = |spec: &str| std::fs::write(dir.path().join("config.json"), spec).unwrap();
        write(r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}"#);
        assert!(has_own_pid_ns(dir.path()));
        write(r#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#);
        assert!(!has_own_pid_ns(dir.path()));
        write(r#"{"linux":{"namespaces":[{"type":"mount"}]}}"#);
        assert!(!has_own_pid_ns(dir.path()));
    }

    /// A Create from a checkpoint only records it (containerd's createdCheckpointState);
    /// Start restores, and the pid is the restored init's.
    #[tokio::test]
    async fn a_container_created_from_a_checkpoint_is_restored_at_start() {
        use crate::runtime::fake::{Fake, Script};
        let fake = Fake::new(Script::default());
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(
            bundle.path().join("config.json"),
            r#"{"process":{"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/"}}"#,
        )
        .unwrap();
        let restore = Restore {
            image: bundle.path().join("images"),
            work: None,
            no_pivot: false,
            criu: Default::default(),
        };
        let stdio = StdioSpec::default();
        let io = ProcessIo::new("c1", "ns", &stdio, 0, 0).await.unwrap();
        let container = Container {
            id: "c1".into(),
            bundle: bundle.path().to_path_buf(),
            namespace: "ns".into(),
            runtime: Arc::new(fake.clone()),
            rootfs: None,
            init: Arc::new(Process::from_checkpoint(stdio, io, restore)),
            execs: Mutex::new(HashMap::new()),
            io_uid: 0,
            io_gid: 0,
            own_pid_ns: true,
            exec_gate: tokio::sync::watch::Sender::new(ExecGate::default()),
        };
        assert_eq!(
            (container.init.status(), container.init.pid()),
            (Status::CreatedCheckpoint, 0)
        );
        let started = container.start_init().await.unwrap();
        assert!(started.restored);
        assert!(started.pid >= 5_000_000, "{started:?}");
        assert_eq!(
            (container.init.status(), container.init.pid()),
            (Status::Running, started.pid)
        );
        assert_eq!(fake.calls(), ["restore c1"]);
        assert_eq!(
            container.start_init().await.unwrap_err().to_string(),
            "cannot start a running process"
        );
    }
}
