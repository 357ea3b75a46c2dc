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
use runc::Runc;
use runc::options::{CreateOpts, DeleteOpts, ExecOpts, KillOpts};
use tokio::sync::Mutex;

use crate::error::{Error, Result, is_already_finished, runtime_error};
use crate::io::{ProcessIo, StdioSpec};
use crate::options::{CheckpointConfig, CreateOptions, CriuFlags, parse_options};
use crate::process::{Op, Process, Status};
use crate::runtime::{LOG_FILE, RawRuntime, RuntimeConfig};
use crate::spec::{cri_checkpoint_dir, has_own_namespace, read_spec, write_spec};

/// An exec that has been added but maybe not started, with what starting it needs.
pub struct Exec {
    pub process: Arc<Process>,
    pub spec: oci_spec::runtime::Process,
}

/// A checkpoint the init is restored from at Start.
#[derive(Debug, Clone)]
struct Restore {
    image: PathBuf,
    work: Option<PathBuf>,
    no_pivot: bool,
    /// CRIU switches (containerd 1.7's legacy CreateOptions carry them).
    criu: CriuFlags,
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub namespace: String,
    runtime: Runc,
    raw: RawRuntime,
    /// Set between a Create from a checkpoint and its Start.
    restore: Mutex<Option<Restore>>,
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
    pub async fn create(req: &CreateTaskRequest, namespace: &str) -> Result<Container> {
        let CreateOptions {
            runtime: options,
            restore: criu,
        } = parse_options(req.options.as_ref())?;
        let bundle = PathBuf::from(&req.bundle);
        let config = RuntimeConfig::from_options(&options);
        let runtime = config.client(namespace, &bundle)?;
        let raw = config.raw(namespace)?;
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
        // the image's, with no command).
        // The policy of a restore: the spec as containerd or CRI wrote it, read before
        // anything here changes it.
        let policy = read_spec(&bundle)?;
        let from_image = checkpoint_image(&req.id, &req.rootfs)?;
        let restore_image =
            restore_image.or_else(|| from_image.as_ref().map(|(_, images)| images.clone()));
        // What cannot be restored here at all is said first, then what would hold too much;
        // the spec is rewritten only once both pass.
        let reconciled = match &from_image {
            Some((handoff, _)) => Some(reconcile_with(&req.id, handoff, &policy)?),
            None => None,
        };
        if let Some(images) = &restore_image {
            crate::privilege::check(&req.id, &policy, images)?;
        }
        if let (Some((spec, notes)), Some((_, images))) = (reconciled, &from_image) {
            write_spec(&bundle, &spec)?;
            info!(
                "{}: created from a checkpoint image: restoring from {} ({})",
                req.id,
                images.display(),
                notes.join("; ")
            );
        }
        let restore = restore_image.map(|image| Restore {
            image,
            work: (!options.criu_work_path.is_empty())
                .then(|| PathBuf::from(&options.criu_work_path)),
            no_pivot: options.no_pivot_root,
            criu,
        });
        let own_pid_ns = has_own_pid_ns(&bundle);
        let rootfs = mount_all(&req.rootfs, &bundle)?;
        let stdio = StdioSpec {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let result = async {
            let io =
                ProcessIo::new(&req.id, namespace, &stdio, options.io_uid, options.io_gid).await?;
            if restore.is_some() {
                return Ok(Process::new(false, stdio.clone(), io));
            }
            let pid_file = bundle.join("init.pid");
            let mut opts = CreateOpts::new()
                .pid_file(&pid_file)
                .no_pivot(options.no_pivot_root)
                .no_new_keyring(options.no_new_keyring);
            if let Some(runc_io) = io.runc_io() {
                opts = opts.io(runc_io);
            }
            if let Some(socket) = io.console_socket() {
                opts = opts.console_socket(socket);
            }
            let console = io.expect_console();
            if let Err(e) = runtime.create(&req.id, &bundle, Some(&opts)).await {
                if let Some(pending) = console {
                    pending.abort();
                }
                return Err(runtime_error("create", e, Some(&bundle.join(LOG_FILE))));
            }
            io.attach_console(console, &stdio).await?;
            let pid = read_pid(&pid_file).await?;
            let init = Process::new(false, stdio.clone(), io);
            init.set_pid(pid).await;
            Ok::<_, Error>(init)
        }
        .await;
        match result {
            Ok(init) => Ok(Container {
                id: req.id.clone(),
                bundle,
                namespace: namespace.to_string(),
                runtime,
                raw,
                restore: Mutex::new(restore),
                rootfs,
                init: Arc::new(init),
                execs: Mutex::new(HashMap::new()),
                io_uid: options.io_uid,
                io_gid: options.io_gid,
                own_pid_ns,
                exec_gate: tokio::sync::watch::Sender::new(ExecGate::default()),
            }),
            Err(err) => {
                let _ = runtime
                    .delete(&req.id, Some(&DeleteOpts::new().force(true)))
                    .await;
                unmount(rootfs.as_deref());
                Err(err)
            }
        }
    }

    /// A failed runtime command as an error, with what the runtime logged.
    fn runtime_error(&self, what: &str, err: runc::error::Error) -> Error {
        runtime_error(what, err, Some(&self.bundle.join(LOG_FILE)))
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

    /// Counts an exec as starting (and, once started, running) until [`Container::leave_exec`].
    /// Refused once the init has exited: no exec may start in a container whose init is
    /// gone, though containerd has not been told yet (containerd issue 10589).
    pub fn enter_exec(&self) -> Result<()> {
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
        Ok(())
    }

    /// An exec counted by [`Container::enter_exec`] failed to start or has exited.
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

    pub async fn start_init(&self) -> Result<u32> {
        self.init.check(Op::Start).await?;
        let restore = self.restore.lock().await.take();
        match restore {
            Some(restore) => self.restore_init(&restore).await?,
            None => {
                self.runtime
                    .start(&self.id)
                    .await
                    .map_err(|e| self.runtime_error("start", e))?;
            }
        }
        self.init.set_status(Status::Running).await;
        Ok(self.init.pid().await)
    }

    /// `runtime restore --detach` of the recorded checkpoint, with the init's stdio.
    async fn restore_init(&self, restore: &Restore) -> Result<()> {
        crate::preflight::check(true).await?;
        let mut spec = read_spec(&self.bundle)?;
        // Never into another container's cgroup (the checkpoint's spec names the original's).
        let moved = crate::cgroup::relocate_restore(&mut spec, &self.id)?.is_some();
        // Loopback up in a new network namespace before the processes resume.
        let shim = std::env::current_exe().map_err(Error::io("finding the shim binary"))?;
        let hooked = crate::network::add_loopback_hook(&mut spec, &shim);
        if moved || hooked {
            write_spec(&self.bundle, &spec)?;
        }
        let pid_file = self.bundle.join("init.pid");
        let work = self.criu_work(restore.work.as_ref())?;
        let mut args = vec![
            "restore".to_string(),
            "--detach".into(),
            "--pid-file".into(),
            pid_file.to_string_lossy().into_owned(),
            "--bundle".into(),
            self.bundle.to_string_lossy().into_owned(),
            "--image-path".into(),
            restore.image.to_string_lossy().into_owned(),
            "--work-path".into(),
            work.to_string_lossy().into_owned(),
        ];
        if restore.no_pivot {
            args.push("--no-pivot".into());
        }
        let mut criu = restore.criu.clone();
        // A checkpoint taken with open_tcp holds its connections as tcp-stream images;
        // CRIU restores them only with --tcp-established, which no restore request can
        // ask for (runc's Options has no such field).
        if !criu.open_tcp && holds_tcp_connections(&restore.image) {
            info!(
                "{}: the checkpoint holds established TCP connections: restoring them",
                self.id
            );
            criu.open_tcp = true;
        }
        args.extend(criu.args());
        args.extend(crate::privilege::lsm_args(&spec));
        let io = &self.init.io;
        if let Some(socket) = io.console_socket() {
            args.push("--console-socket".into());
            args.push(socket.to_string_lossy().into_owned());
        }
        args.push(self.id.clone());
        let console = io.expect_console();
        let log = self.bundle.join("restore-log.json");
        if let Err(e) = self
            .raw
            .run("restore", &args, &log, io.runc_io().as_ref())
            .await
        {
            if let Some(pending) = console {
                pending.abort();
            }
            let kept = keep_criu_log(
                &work.join("restore.log"),
                &self.bundle.join("criu-restore.log"),
            );
            // A failed restore leaves no container behind in the runtime.
            let _ = self
                .runtime
                .delete(&self.id, Some(&DeleteOpts::new().force(true)))
                .await;
            return Err(Error::Runtime(format!("{e}{kept}")));
        }
        io.attach_console(console, &self.init.stdio).await?;
        let pid = read_pid(&pid_file).await?;
        self.init.set_pid(pid).await;
        Ok(())
    }

    /// Checkpoints the running (or paused) init with the runtime and CRIU.
    pub async fn checkpoint(&self, config: &CheckpointConfig) -> Result<()> {
        let status = self.init.status().await;
        if !matches!(status, Status::Running | Status::Paused) {
            return Err(Error::FailedPrecondition(format!(
                "cannot checkpoint a task in {} state",
                format!("{status:?}").to_lowercase()
            )));
        }
        crate::preflight::check(false).await?;
        // CRI's archive directory when CRI sent no options (see `cri_checkpoint_dir`): CRIU's
        // log and stats land where CRI archives them, as they do for runc-typed runtimes.
        let asked_work = config.work_path.clone().or_else(|| {
            let dir = cri_checkpoint_dir(&read_spec(&self.bundle).ok()?, &self.id)?;
            dir.is_dir().then(|| {
                info!(
                    "checkpoint of {}: CRIU's log and stats go to CRI's archive directory {}",
                    self.id,
                    dir.display()
                );
                dir
            })
        });
        let work = self.criu_work(asked_work.as_ref())?;
        let image_existed = config.image_path.exists();
        let log = self.bundle.join("checkpoint-log.json");
        let mut result = self.dump(config, &work, &log).await;
        // A process caught in uninterruptible sleep fails the dump; the container goes on
        // running, and a second attempt a moment later usually finds it awake.
        if result.is_err()
            && std::fs::read_to_string(work.join("dump.log"))
                .is_ok_and(|text| revive_checkpoint::criulog::transient(&text))
        {
            warn!(
                "checkpoint of {}: a process was in state D; trying once more",
                self.id
            );
            if !image_existed {
                let _ = std::fs::remove_dir_all(&config.image_path);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            result = self.dump(config, &work, &log).await;
        }
        if let Err(e) = result {
            let kept = keep_criu_log(&work.join("dump.log"), &self.bundle.join("criu-dump.log"));
            // What CRIU wrote before failing holds memory pages: gone if the directory
            // was ours, root-only if it was there before.
            if image_existed {
                restrict(&config.image_path);
            } else {
                let _ = std::fs::remove_dir_all(&config.image_path);
            }
            if asked_work.is_none() {
                let _ = std::fs::remove_dir_all(&work);
            }
            return Err(Error::Runtime(format!(
                "checkpoint of {} failed; the container is left as it was: {e}{kept}",
                self.id
            )));
        }
        report_stats(&self.id, &work, &config.image_path);
        // Every memory page of the container is in there, secrets included: root only.
        restrict(&config.image_path);
        if asked_work.is_none() {
            let _ = std::fs::remove_dir_all(&work);
        } else {
            restrict(&work);
        }
        Ok(())
    }

    /// `runc checkpoint`. One that ends the container freezes its cgroup first, which spares
    /// CRIU's 100 ms freezer step (see [`crate::freezer`]); a failed one leaves it running.
    async fn dump(&self, config: &CheckpointConfig, work: &Path, log: &Path) -> Result<()> {
        let freezer = if config.exit && self.raw.is_runc() {
            self.freeze_early().await
        } else {
            None
        };
        let result = self
            .raw
            .run("checkpoint", &config.args(&self.id, work), log, None)
            .await;
        // After a dump that failed CRIU hands the processes back frozen, as it found them;
        // after one that succeeded they are gone and the cgroup with them. (One write to
        // the cgroup file: nothing to wait for.)
        if let Some(Err(e)) = freezer.map(|f| f.thaw()) {
            warn!("checkpoint of {}: thawing its cgroup: {e}", self.id);
        }
        result
    }

    /// Freezes the container's cgroup for a checkpoint with exit; None (and nothing changed)
    /// when there is no freezer, the container is already paused, or it did not freeze
    /// within [`crate::freezer::BUDGET`], leaving the freezing to CRIU as usual.
    async fn freeze_early(&self) -> Option<crate::freezer::Freezer> {
        let pid = self.init.pid().await;
        let id = self.id.clone();
        tokio::task::spawn_blocking(move || {
            let freezer = crate::freezer::Freezer::of(pid)?;
            match freezer.freeze(crate::freezer::BUDGET) {
                Ok(Some(took)) => {
                    info!(
                        "checkpoint of {id}: froze its cgroup in {} us",
                        took.as_micros()
                    );
                    Some(freezer)
                }
                Ok(None) => {
                    info!("checkpoint of {id}: cgroup not frozen early; CRIU freezes it");
                    None
                }
                Err(e) => {
                    warn!("checkpoint of {id}: freezing its cgroup early: {e}; CRIU freezes it");
                    None
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// CRIU's work directory (logs, stats): the one asked for, else `criu-work` in
    /// [`Container::work_dir`]; created.
    fn criu_work(&self, asked: Option<&PathBuf>) -> Result<PathBuf> {
        let work = asked
            .cloned()
            .unwrap_or_else(|| self.work_dir().join("criu-work"));
        std::fs::create_dir_all(&work)
            .map_err(Error::io(format!("creating {}", work.display())))?;
        Ok(work)
    }

    /// containerd's per-task work directory (`<bundle>/work`), else the bundle.
    fn work_dir(&self) -> PathBuf {
        let work = self.bundle.join("work");
        if work.is_dir() {
            work
        } else {
            self.bundle.clone()
        }
    }

    /// Registers an exec (ExecProcessRequest); it runs at start.
    pub async fn add_exec(&self, exec_id: &str, spec: &Any, stdio: StdioSpec) -> Result<()> {
        self.init.check(Op::Exec).await?;
        let mut spec: oci_spec::runtime::Process = serde_json::from_slice(&spec.value)
            .map_err(|e| Error::InvalidArgument(format!("invalid exec process spec: {e}")))?;
        // The request's terminal flag wins over the spec's, as in the Go shim: containerd's
        // client passes the container's process spec with the exec's own stdio.
        spec.set_terminal(Some(stdio.terminal));
        let mut execs = self.execs.lock().await;
        if execs.contains_key(exec_id) {
            return Err(Error::AlreadyExists(format!(
                "exec {exec_id:?} already exists"
            )));
        }
        let io =
            ProcessIo::new(&self.id, &self.namespace, &stdio, self.io_uid, self.io_gid).await?;
        let process = Arc::new(Process::new(true, stdio, io));
        execs.insert(exec_id.to_string(), Arc::new(Exec { process, spec }));
        Ok(())
    }

    /// Runs `runtime exec --detach` for an added exec; returns its pid.
    pub async fn start_exec(&self, exec_id: &str) -> Result<u32> {
        let exec = self
            .execs
            .lock()
            .await
            .get(exec_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("exec {exec_id:?} does not exist")))?;
        exec.process.check(Op::Start).await?;
        let pid_file = self.bundle.join(format!("{exec_id}.pid"));
        let mut opts = ExecOpts::new().pid_file(&pid_file).detach(true);
        if let Some(runc_io) = exec.process.io.runc_io() {
            opts = opts.io(runc_io);
        }
        if let Some(socket) = exec.process.io.console_socket() {
            opts = opts.console_socket(socket);
        }
        let console = exec.process.io.expect_console();
        if let Err(e) = self.runtime.exec(&self.id, &exec.spec, Some(&opts)).await {
            if let Some(pending) = console {
                pending.abort();
            }
            return Err(self.runtime_error("exec", e));
        }
        exec.process
            .io
            .attach_console(console, &exec.process.stdio)
            .await?;
        let pid = read_pid(&pid_file).await?;
        exec.process.set_pid(pid).await;
        exec.process.set_status(Status::Running).await;
        Ok(pid)
    }

    pub async fn remove_exec(&self, exec_id: &str) -> Result<Arc<Process>> {
        let mut execs = self.execs.lock().await;
        let exec = execs
            .get(exec_id)
            .ok_or_else(|| Error::NotFound(format!("exec {exec_id:?} does not exist")))?;
        exec.process.check(Op::Delete).await?;
        let exec = execs.remove(exec_id).map(|e| e.process.clone());
        exec.ok_or_else(|| Error::NotFound(format!("exec {exec_id:?} does not exist")))
    }

    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let process = self.process(exec_id).await?;
        process.check(Op::Kill).await?;
        if exec_id.is_empty() {
            let opts = KillOpts::new().all(all);
            return match self.runtime.kill(&self.id, signal, Some(&opts)).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let err = self.runtime_error("kill", e);
                    // The init may have exited between the check and the kill.
                    if process.exit().is_some() || is_already_finished(&err.to_string()) {
                        Err(Error::NotFound(format!("process already finished: {err}")))
                    } else {
                        Err(err)
                    }
                }
            };
        }
        let pid = process.pid().await as i32;
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
        let opts = KillOpts::new().all(true);
        if let Err(e) = self.runtime.kill(&self.id, 9, Some(&opts)).await {
            debug!("killing what is left of {}: {e}", self.id);
        }
    }

    pub async fn pause(&self) -> Result<()> {
        self.init.check(Op::Pause).await?;
        let mut attempt = 0;
        loop {
            let Err(e) = self.runtime.pause(&self.id).await else {
                break;
            };
            let err = self.runtime_error("pause", e);
            if !freeze_gave_up(&err.to_string()) {
                return Err(err);
            }
            // Never leave the container half-frozen, whatever the runtime did.
            if crate::cgroup::thaw_if_freezing(self.init.pid().await) {
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
        self.init.set_status(Status::Paused).await;
        Ok(())
    }

    pub async fn resume(&self) -> Result<()> {
        self.init.check(Op::Resume).await?;
        self.runtime
            .resume(&self.id)
            .await
            .map_err(|e| self.runtime_error("resume", e))?;
        self.init.set_status(Status::Running).await;
        Ok(())
    }

    pub async fn pids(&self) -> Result<Vec<usize>> {
        self.runtime
            .ps(&self.id)
            .await
            .map_err(|e| self.runtime_error("ps", e))
    }

    /// Exec ids by pid, for Pids.
    pub async fn exec_pids(&self) -> HashMap<u32, String> {
        let execs: Vec<(String, Arc<Process>)> = self
            .execs
            .lock()
            .await
            .iter()
            .map(|(id, e)| (id.clone(), e.process.clone()))
            .collect();
        let mut out = HashMap::new();
        for (id, p) in execs {
            out.insert(p.pid().await, id);
        }
        out
    }

    pub async fn update(&self, resources: &Any) -> Result<()> {
        self.init.check(Op::Update).await?;
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&resources.value)
            .map_err(|e| Error::InvalidArgument(format!("invalid resources: {e}")))?;
        self.runtime
            .update(&self.id, &resources)
            .await
            .map_err(|e| self.runtime_error("update", e))
    }

    /// Deletes the container from the runtime and unmounts its rootfs.
    pub async fn delete(&self) -> Result<()> {
        self.init.check(Op::Delete).await?;
        // Everything the process wrote reaches containerd before the task goes away.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.init.io.wait()).await;
        let force = self.init.status().await == Status::Created;
        if let Err(e) = self
            .runtime
            .delete(&self.id, Some(&DeleteOpts::new().force(force)))
            .await
        {
            let err = self.runtime_error("delete", e);
            // Already gone from the runtime is fine: the task is being deleted anyway.
            if !matches!(err, Error::NotFound(_)) {
                return Err(err);
            }
            debug!("runtime had no container {}: {err}", self.id);
        }
        unmount(self.rootfs.as_deref());
        self.init.set_status(Status::Deleted).await;
        Ok(())
    }
}

/// If revive-snapshotter made the container's rootfs from a checkpoint image (its handoff
/// lies beside the overlay's upper directory, see `revive_checkpoint::handoff`): the handoff
/// and the checkpoint's CRIU images, once checked. `None` for any other container.
fn checkpoint_image(
    id: &str,
    rootfs: &[containerd_shim_protos::api::Mount],
) -> Result<Option<(revive_checkpoint::handoff::Handoff, PathBuf)>> {
    use revive_checkpoint::{archive, handoff};
    let Some(upper) = rootfs
        .iter()
        .filter(|m| m.type_ == "overlay")
        .find_map(|m| handoff::upperdir(&m.options))
    else {
        return Ok(None);
    };
    let Some(handoff) = handoff::find(upper).map_err(Error::InvalidArgument)? else {
        return Ok(None);
    };
    let images = archive::validate(&handoff.archive)
        .map_err(|e| refuse_image(id, &handoff, e.to_string()))?;
    Ok(Some((handoff, images)))
}

fn refuse_image(id: &str, handoff: &revive_checkpoint::handoff::Handoff, what: String) -> Error {
    Error::InvalidArgument(format!(
        "{id} is created from a checkpoint image (of a container of {}), but cannot be \
         restored: {what}",
        handoff.base_image
    ))
}

/// The new container's `spec` reconciled with the checkpoint's `spec.dump` (see
/// [`crate::reconcile`]), and what changed.
fn reconcile_with(
    id: &str,
    handoff: &revive_checkpoint::handoff::Handoff,
    spec: &serde_json::Value,
) -> Result<(serde_json::Value, Vec<String>)> {
    let dumped = revive_checkpoint::archive::read_spec(&handoff.archive)
        .map_err(|e| refuse_image(id, handoff, e.to_string()))?;
    let mut spec = spec.clone();
    let notes = crate::reconcile::reconcile(&mut spec, &dumped)
        .map_err(|e| refuse_image(id, handoff, e))?;
    Ok((spec, notes))
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

/// Whether CRIU's images in `image` hold established TCP connections (`tcp-stream-*.img`,
/// written only by a dump with --tcp-established).
fn holds_tcp_connections(image: &Path) -> bool {
    std::fs::read_dir(image).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("tcp-stream-") && name.ends_with(".img")
        })
    })
}

/// Copies CRIU's `stats-dump` from the work directory into the image directory, logs its
/// timings and writes them there as `stats-dump.json`. Best effort: a checkpoint without
/// stats is still a checkpoint.
fn report_stats(id: &str, work: &Path, image: &Path) {
    let Ok(data) = std::fs::read(work.join("stats-dump")) else {
        return;
    };
    if work != image {
        let _ = std::fs::write(image.join("stats-dump"), &data);
    }
    match revive_checkpoint::criu::parse_stats(&data) {
        Ok(stats) => {
            if let Some(d) = &stats.dump {
                info!(
                    "checkpoint of {id}: freezing {} us, frozen {} us, memory dump {} us, memory write {} us, {} pages scanned, {} written",
                    d.freezing_time,
                    d.frozen_time,
                    d.memdump_time,
                    d.memwrite_time,
                    d.pages_scanned,
                    d.pages_written
                );
            }
            if let Ok(json) = serde_json::to_vec_pretty(&stats) {
                let _ = std::fs::write(image.join("stats-dump.json"), json);
            }
        }
        Err(e) => warn!("checkpoint of {id}: unreadable stats-dump: {e}"),
    }
}

/// Makes a checkpoint tree root-only: directories 0700, files 0600 (symlinks untouched).
pub fn restrict(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            restrict(&entry.path());
        }
    } else if meta.is_file() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o600));
    }
}

/// Copies CRIU's log of a failed dump or restore next to the bundle and returns a message
/// part with its last lines and where the whole log is.
fn keep_criu_log(log: &Path, keep: &Path) -> String {
    use revive_checkpoint::criulog;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    // Root only, like the checkpoint: the log names the container's files and sockets.
    let _ = std::fs::remove_file(keep);
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(keep)
    {
        let _ = std::io::Write::write_all(&mut file, text.as_bytes());
    }
    let errors = criulog::errors(&text, 5);
    let mut out = String::new();
    if errors.is_empty() {
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!(
            "\nlast lines of CRIU's log:\n{}",
            lines[lines.len().saturating_sub(10)..].join("\n")
        ));
    } else {
        out.push_str(&format!("\nCRIU: {}", errors.join("; ")));
    }
    if let Some(advice) = criulog::advice(&errors) {
        out.push_str(&format!("\nwhat to do: {advice}"));
    }
    out.push_str(&format!("\nCRIU's full log: {}", keep.display()));
    out
}

fn unmount(rootfs: Option<&Path>) {
    let Some(rootfs) = rootfs.and_then(Path::to_str) else {
        return;
    };
    if let Err(e) = umount_recursive(Some(rootfs), 0) {
        warn!("unmounting {rootfs}: {e}");
    }
}

async fn read_pid(path: &Path) -> Result<u32> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(Error::io(format!("reading {}", path.display())))?;
    text.trim()
        .parse()
        .map_err(|_| Error::Internal(format!("{} holds no pid: {text:?}", path.display())))
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

    #[test]
    fn only_a_freeze_that_gave_up_is_tried_again() {
        assert!(freeze_gave_up(
            "pause: runtime exited with exit status: 1: unable to freeze"
        ));
        assert!(!freeze_gave_up("pause: container \"c\" does not exist"));
    }
    use super::*;

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

    #[test]
    fn tcp_streams_in_the_images_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inventory.img"), b"").unwrap();
        assert!(!holds_tcp_connections(dir.path()));
        std::fs::write(dir.path().join("tcp-stream-3a2b.img"), b"").unwrap();
        assert!(holds_tcp_connections(dir.path()));
        assert!(!holds_tcp_connections(&dir.path().join("missing")));
    }

    #[test]
    fn checkpoint_trees_become_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("ck/inner");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("pages-1.img"), b"secret").unwrap();
        std::fs::write(dir.path().join("ck/core.img"), b"x").unwrap();
        restrict(&dir.path().join("ck"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("ck")), 0o700);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join("pages-1.img")), 0o600);
        assert_eq!(mode(&dir.path().join("ck/core.img")), 0o600);
    }
}
