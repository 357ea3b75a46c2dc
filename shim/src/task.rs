//! The Task API service: the container map, exit fan-in, event publishing, and the one
//! place where internal errors become ttrpc codes. It never runs the runtime itself
//! ([`crate::container`] does).

use std::collections::{HashMap, HashSet};

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::asynchronous::monitor::monitor_subscribe;
use containerd_shim::monitor::{Subject, Topic};
use containerd_shim_protos::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ProcessInfo, ResizePtyRequest, ResumeRequest,
    ShutdownRequest, StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest,
    StatsResponse, Status as ApiStatus, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::events::task::{
    TaskCheckpointed, TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO,
    TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageDyn, MessageField};
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext};
use log::{debug, info, warn};
use tokio::sync::Mutex;

use crate::container::{Container, Started};
use crate::error::{Error, Result};
use crate::events::Publisher;
use crate::io::StdioSpec;
use crate::options::checkpoint_config;
use crate::process::{Exit, Process, Status};
use crate::runtime::{Connect, connect_cli};

/// Which process a pid belongs to: (container id, exec id; empty for init).
type Owner = (String, String);

/// Exit bookkeeping shared by the RPCs and the exit fan-in. Exits of pids nobody owns yet
/// are kept only while a start is in flight (the process may exit before its pid is
/// known), each start's in a [`Collector`]; everything else unknown (runtime commands,
/// loggers) is dropped.
#[derive(Default)]
struct Exits {
    owners: HashMap<u32, Owner>,
    collectors: HashMap<u64, Vec<(u32, i32)>>,
    next_collector: u64,
}

struct Inner {
    namespace: String,
    /// Container ids whose memory cgroup saw an OOM kill (see [`crate::oom`]).
    oom: tokio::sync::mpsc::UnboundedSender<String>,
    publisher: Option<Publisher>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    /// Ids whose Create is in flight, so that a second Create of one fails at once rather
    /// than build a second container. Never held across an await.
    creating: std::sync::Mutex<HashSet<String>>,
    /// Never held across an await.
    exits: std::sync::Mutex<Exits>,
    exit: Arc<ExitSignal>,
    /// Opens a container's OCI runtime.
    connect: Connect,
}

/// Exits of pids nobody owns, collected while one start is in flight, from before the
/// runtime runs until the started process's pid is known ([`Collector::owned`]); dropping
/// it on an error path stops the collecting.
struct Collector<'a> {
    exits: &'a std::sync::Mutex<Exits>,
    token: u64,
}

impl Collector<'_> {
    /// Records that `pid` belongs to `owner` and stops collecting; returns the exit code
    /// if the pid already exited meanwhile.
    fn owned(self, pid: u32, owner: Owner) -> Option<i32> {
        let mut exits = lock(self.exits);
        let collected = exits.collectors.remove(&self.token).unwrap_or_default();
        if let Some((_, code)) = collected.iter().find(|(p, _)| *p == pid) {
            return Some(*code);
        }
        exits.owners.insert(pid, owner);
        None
    }
}

impl Drop for Collector<'_> {
    fn drop(&mut self) {
        lock(self.exits).collectors.remove(&self.token);
    }
}

/// A container id reserved while its Create runs; released when dropped, on every path.
struct Reserved<'a> {
    creating: &'a std::sync::Mutex<HashSet<String>>,
    id: &'a str,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.creating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(self.id);
    }
}

/// The exit bookkeeping, whatever a panicking holder left (each change is one insert or
/// remove, so there is no half-done state to fear).
fn lock(exits: &std::sync::Mutex<Exits>) -> std::sync::MutexGuard<'_, Exits> {
    exits
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The ttrpc Task service (served as both containerd.task.v2.Task and v3).
#[derive(Clone)]
pub struct TaskService {
    inner: Arc<Inner>,
}

fn to_ttrpc<T>(result: Result<T>) -> ttrpc::Result<T> {
    result.map_err(Error::into_ttrpc)
}

fn timestamp(exit: &Exit) -> MessageField<Timestamp> {
    MessageField::some(Timestamp::from(exit.at))
}

impl TaskService {
    /// A service for `namespace`, publishing through `publisher` (None in unit tests).
    /// Starts the exit fan-in.
    pub async fn new(
        namespace: &str,
        publisher: Option<Publisher>,
        exit: Arc<ExitSignal>,
    ) -> TaskService {
        TaskService::with_runtime(namespace, publisher, exit, connect_cli()).await
    }

    /// The same, with containers' runtimes opened by `connect`.
    pub async fn with_runtime(
        namespace: &str,
        publisher: Option<Publisher>,
        exit: Arc<ExitSignal>,
        connect: Connect,
    ) -> TaskService {
        let (oom, mut ooms) = tokio::sync::mpsc::unbounded_channel::<String>();
        let inner = Arc::new(Inner {
            namespace: namespace.to_string(),
            oom,
            publisher,
            containers: Mutex::new(HashMap::new()),
            creating: std::sync::Mutex::default(),
            exits: std::sync::Mutex::new(Exits::default()),
            exit,
            connect,
        });
        let publishing = inner.clone();
        tokio::spawn(async move {
            while let Some(id) = ooms.recv().await {
                info!("container {id} had an OOM kill");
                let event = TaskOOM {
                    container_id: id,
                    ..Default::default()
                };
                publishing
                    .publish(topics::TASK_OOM_EVENT_TOPIC, Box::new(event))
                    .await;
            }
        });
        match monitor_subscribe(Topic::Pid).await {
            Ok(mut subscription) => {
                let inner = inner.clone();
                tokio::spawn(async move {
                    while let Some(event) = subscription.rx.recv().await {
                        let Subject::Pid(pid) = event.subject else {
                            continue;
                        };
                        let Some((container, exec_id)) =
                            inner.owner_of_exit(pid as u32, event.exit_code)
                        else {
                            continue;
                        };
                        // An init's exit waits for its execs' exits, which come through
                        // this loop.
                        inner.spawn_exit(&container, &exec_id, pid as u32, event.exit_code);
                    }
                });
            }
            Err(e) => warn!("cannot watch process exits: {e}"),
        }
        TaskService { inner }
    }
}

impl Inner {
    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        publisher.publish(topic, &self.namespace, event);
    }

    /// Process `exec_id` (the init for "") of container `id`.
    async fn process(&self, id: &str, exec_id: &str) -> Result<Arc<Process>> {
        self.container(id).await?.process(exec_id).await
    }

    async fn container(&self, id: &str) -> Result<Arc<Container>> {
        self.containers
            .lock()
            .await
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {id:?} does not exist")))
    }

    /// Who owned `pid`; an exit nobody owns is handed to the starts in flight.
    fn owner_of_exit(&self, pid: u32, code: i32) -> Option<Owner> {
        let mut exits = lock(&self.exits);
        let owner = exits.owners.remove(&pid);
        if owner.is_none() {
            for collected in exits.collectors.values_mut() {
                collected.push((pid, code));
            }
        }
        owner
    }

    /// Starts collecting exits of unknown pids, until the collector is dropped or owned.
    fn collect(&self) -> Collector<'_> {
        let mut exits = lock(&self.exits);
        exits.next_collector += 1;
        let token = exits.next_collector;
        exits.collectors.insert(token, Vec::new());
        Collector {
            exits: &self.exits,
            token,
        }
    }

    /// Handles an exit on a task of its own: an init's exit waits for its execs' exits,
    /// and every exit waits for its process's output to be copied, which no caller waits
    /// for.
    fn spawn_exit(self: &Arc<Self>, container_id: &str, exec_id: &str, pid: u32, code: i32) {
        let (inner, container_id, exec_id) =
            (self.clone(), container_id.to_string(), exec_id.to_string());
        tokio::spawn(async move { inner.handle_exit(&container_id, &exec_id, pid, code).await });
    }

    async fn handle_exit(&self, container_id: &str, exec_id: &str, pid: u32, code: i32) {
        let Ok(container) = self.container(container_id).await else {
            return;
        };
        let Ok(process) = container.process(exec_id).await else {
            return;
        };
        if process.exit().is_some() {
            return;
        }
        if exec_id.is_empty() {
            container.kill_leftovers().await;
            // Until the execs are gone the init still counts as running (the Go shim's
            // order; containerd issue 10589): no exec starts meanwhile.
            container.init_exited_wait_for_execs().await;
        }
        // What the process wrote reaches the client before its exit does: containerd's
        // client stops reading a task's fifos once it sees the exit (cio.Cancel), so a late
        // copy would lose the output of a short-lived process. Children the process left
        // may hold its stdout open for longer: they get OUTPUT_DRAIN_NAPS naps, then the exit
        // goes out and the copy goes on.
        if !drained(&process.io).await {
            debug!("{container_id}/{exec_id}: output still open after the exit, not waiting");
        }
        if !process.set_exited(code as u32).await {
            return;
        }
        let exit = process.exit().unwrap_or(Exit {
            status: code as u32,
            at: std::time::SystemTime::now(),
        });
        debug!("{container_id}/{exec_id}: pid {pid} exited with {code}");
        let event = TaskExit {
            container_id: container_id.to_string(),
            id: if exec_id.is_empty() {
                container_id.to_string()
            } else {
                exec_id.to_string()
            },
            pid,
            exit_status: exit.status,
            exited_at: timestamp(&exit),
            ..Default::default()
        };
        self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(event))
            .await;
        if !exec_id.is_empty() {
            container.leave_exec();
        }
    }
}

/// An exit waits for its process's output to be copied out (see `handle_exit`) for up to
/// OUTPUT_DRAIN_NAPS naps of OUTPUT_DRAIN_NAP: about a second, but counted in the shim's own
/// turns rather than wall time. A shim starved of CPU on a loaded machine wakes with its
/// timer and the copy both ready; with a single deadline the timer could win before the copy
/// ran (one run in 100 of containerd's TestTaskResize under load lost its output so), while
/// a starved nap costs one nap and the copy still gets its turns.
const OUTPUT_DRAIN_NAP: std::time::Duration = std::time::Duration::from_millis(100);
const OUTPUT_DRAIN_NAPS: u32 = 10;

/// Whether everything the process wrote was copied out within the naps.
async fn drained(io: &crate::io::ProcessIo) -> bool {
    let wait = io.wait();
    tokio::pin!(wait);
    for _ in 0..OUTPUT_DRAIN_NAPS {
        if tokio::time::timeout(OUTPUT_DRAIN_NAP, &mut wait)
            .await
            .is_ok()
        {
            return true;
        }
    }
    false
}

fn api_status(status: Status) -> ApiStatus {
    match status {
        Status::Created | Status::CreatedCheckpoint => ApiStatus::CREATED,
        Status::Running => ApiStatus::RUNNING,
        Status::Paused => ApiStatus::PAUSED,
        Status::Stopped | Status::Deleted => ApiStatus::STOPPED,
    }
}

impl TaskService {
    async fn do_create(&self, req: CreateTaskRequest) -> Result<CreateTaskResponse> {
        let inner = &self.inner;
        let reserved = {
            let containers = inner.containers.lock().await;
            let mut creating = inner
                .creating
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if containers.contains_key(&req.id) || !creating.insert(req.id.clone()) {
                return Err(Error::AlreadyExists(format!(
                    "container {:?} already exists",
                    req.id
                )));
            }
            Reserved {
                creating: &inner.creating,
                id: &req.id,
            }
        };
        // The init can die before Create returns (killed, OOM; containerd issue 9103): its
        // exit must not be lost.
        let collector = inner.collect();
        let container = Arc::new(Container::create(&req, &inner.namespace, &inner.connect).await?);
        let pid = container.init.pid();
        // A container created from a checkpoint has no process until Start restores it.
        let from_checkpoint = container.init.status() == Status::CreatedCheckpoint;
        inner
            .containers
            .lock()
            .await
            .insert(req.id.clone(), container);
        drop(reserved);
        let early = if from_checkpoint {
            drop(collector);
            None
        } else {
            let early = collector.owned(pid, (req.id.clone(), String::new()));
            crate::oom::watch(pid, req.id.clone(), inner.oom.clone());
            early
        };
        info!("created container {} (pid {pid})", req.id);
        let event = TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            }),
            checkpoint: req.checkpoint.clone(),
            pid,
            ..Default::default()
        };
        inner
            .publish(topics::TASK_CREATE_EVENT_TOPIC, Box::new(event))
            .await;
        if let Some(code) = early {
            info!(
                "the init of {} (pid {pid}) exited before Create returned",
                req.id
            );
            inner.spawn_exit(&req.id, "", pid, code);
        }
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn do_start(&self, req: StartRequest) -> Result<StartResponse> {
        let inner = &self.inner;
        let container = inner.container(&req.id).await?;
        let pid = if req.exec_id.is_empty() {
            // An exit during the start goes to the collector, not to the owner Create
            // recorded: it is handled only after /tasks/start is published, and the pid is
            // owned again only if it did not exit (as the Go shim's preStart does).
            let owner = (req.id.clone(), String::new());
            let collector = inner.collect();
            let created = container.init.pid();
            let disowned = lock(&inner.exits).owners.remove(&created).is_some();
            let Started { pid, restored } = match container.start_init().await {
                Ok(started) => started,
                Err(err) => {
                    // The created init is owned again, its exit handled if it came meanwhile.
                    if disowned && let Some(code) = collector.owned(created, owner) {
                        inner.spawn_exit(&req.id, "", created, code);
                    }
                    return Err(err);
                }
            };
            let early = collector.owned(pid, owner);
            if restored {
                crate::oom::watch(pid, req.id.clone(), inner.oom.clone());
            }
            // /tasks/start before any /tasks/exit of the same init.
            inner
                .publish(
                    topics::TASK_START_EVENT_TOPIC,
                    Box::new(TaskStart {
                        container_id: req.id.clone(),
                        pid,
                        ..Default::default()
                    }),
                )
                .await;
            if let Some(code) = early {
                inner.spawn_exit(&req.id, "", pid, code);
            }
            pid
        } else {
            let slot = container.enter_exec()?;
            let collector = inner.collect();
            let pid = container.start_exec(&req.exec_id).await?;
            slot.running();
            let early = collector.owned(pid, (req.id.clone(), req.exec_id.clone()));
            inner
                .publish(
                    topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                    Box::new(TaskExecStarted {
                        container_id: req.id.clone(),
                        exec_id: req.exec_id.clone(),
                        pid,
                        ..Default::default()
                    }),
                )
                .await;
            if let Some(code) = early {
                inner.spawn_exit(&req.id, &req.exec_id, pid, code);
            }
            pid
        };
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn do_delete(&self, req: DeleteRequest) -> Result<DeleteResponse> {
        let inner = &self.inner;
        let container = inner.container(&req.id).await?;
        let process: Arc<Process> = if req.exec_id.is_empty() {
            container.delete().await?;
            inner.containers.lock().await.remove(&req.id);
            container.init.clone()
        } else {
            container.remove_exec(&req.exec_id).await?
        };
        let pid = process.pid();
        let exit = process.exit().unwrap_or(Exit {
            status: 0,
            at: std::time::SystemTime::now(),
        });
        if req.exec_id.is_empty() {
            inner
                .publish(
                    topics::TASK_DELETE_EVENT_TOPIC,
                    Box::new(TaskDelete {
                        container_id: req.id.clone(),
                        id: req.id.clone(),
                        pid,
                        exit_status: exit.status,
                        exited_at: timestamp(&exit),
                        ..Default::default()
                    }),
                )
                .await;
        }
        Ok(DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: timestamp(&exit),
            ..Default::default()
        })
    }

    async fn do_state(&self, req: StateRequest) -> Result<StateResponse> {
        let container = self.inner.container(&req.id).await?;
        let process = container.process(&req.exec_id).await?;
        let exit = process.exit();
        Ok(StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: container.bundle.to_string_lossy().into_owned(),
            pid: process.pid(),
            status: api_status(process.status()).into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: exit.map(|e| e.status).unwrap_or_default(),
            exited_at: exit.as_ref().map(timestamp).unwrap_or_default(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    /// The answer to a request whose work gave `result`: on success the event `event` makes
    /// of its value is published on `topic` first, as the Go shim publishes before replying.
    async fn answer<T, E: MessageDyn>(
        &self,
        result: Result<T>,
        topic: &str,
        event: impl FnOnce(T) -> E,
    ) -> ttrpc::Result<Empty> {
        let value = to_ttrpc(result)?;
        self.inner.publish(topic, Box::new(event(value))).await;
        Ok(Empty::new())
    }

    async fn do_pids(&self, req: PidsRequest) -> Result<PidsResponse> {
        let container = self.inner.container(&req.id).await?;
        let pids = container.pids().await?;
        let execs = container.exec_pids().await;
        let mut processes = Vec::with_capacity(pids.len());
        for pid in pids {
            let pid = pid as u32;
            let mut info = ProcessInfo {
                pid,
                ..Default::default()
            };
            if let Some(exec_id) = execs.get(&pid) {
                let details = ProcessDetails {
                    exec_id: exec_id.clone(),
                    ..Default::default()
                };
                let value = details
                    .write_to_bytes()
                    .map_err(|e| Error::Internal(e.to_string()))?;
                info.info = MessageField::some(Any {
                    type_url: "containerd.runc.v1.ProcessDetails".into(),
                    value,
                    ..Default::default()
                });
            }
            processes.push(info);
        }
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }
}

#[async_trait]
impl Task for TaskService {
    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        to_ttrpc(self.do_state(req).await)
    }

    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        to_ttrpc(self.do_create(req).await)
    }

    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        to_ttrpc(self.do_start(req).await)
    }

    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        to_ttrpc(self.do_delete(req).await)
    }

    async fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        to_ttrpc(self.do_pids(req).await)
    }

    async fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        let paused = async { self.inner.container(&req.id).await?.pause().await };
        self.answer(paused.await, topics::TASK_PAUSED_EVENT_TOPIC, |()| {
            TaskPaused {
                container_id: req.id.clone(),
                ..Default::default()
            }
        })
        .await
    }

    async fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        let resumed = async { self.inner.container(&req.id).await?.resume().await };
        self.answer(resumed.await, topics::TASK_RESUMED_EVENT_TOPIC, |()| {
            TaskResumed {
                container_id: req.id.clone(),
                ..Default::default()
            }
        })
        .await
    }

    async fn checkpoint(
        &self,
        _: &TtrpcContext,
        req: CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        let checkpointed = async {
            let container = self.inner.container(&req.id).await?;
            let config = checkpoint_config(&req)?;
            info!(
                "checkpointing {} into {}",
                req.id,
                config.image_path.display()
            );
            container.checkpoint(&config).await?;
            Ok(config.image_path)
        };
        let topic = topics::TASK_CHECKPOINTED_EVENT_TOPIC;
        self.answer(checkpointed.await, topic, |image: PathBuf| {
            TaskCheckpointed {
                container_id: req.id.clone(),
                checkpoint: image.to_string_lossy().into_owned(),
                ..Default::default()
            }
        })
        .await
    }

    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        let result = async {
            self.inner
                .container(&req.id)
                .await?
                .kill(&req.exec_id, req.signal, req.all)
                .await?;
            Ok(Empty::new())
        };
        to_ttrpc(result.await)
    }

    async fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        let added = async {
            let container = self.inner.container(&req.id).await?;
            let spec = req
                .spec
                .as_ref()
                .ok_or_else(|| Error::InvalidArgument("exec without a process spec".into()))?;
            let stdio = StdioSpec {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            };
            container.add_exec(&req.exec_id, spec, stdio).await
        };
        self.answer(added.await, topics::TASK_EXEC_ADDED_EVENT_TOPIC, |()| {
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            }
        })
        .await
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        let result = async {
            let process = self.inner.process(&req.id, &req.exec_id).await?;
            process.io.resize(req.width, req.height)?;
            Ok(Empty::new())
        };
        to_ttrpc(result.await)
    }

    async fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        let result = async {
            let process = self.inner.process(&req.id, &req.exec_id).await?;
            if req.stdin {
                process.io.close_stdin().await;
            }
            Ok(Empty::new())
        };
        to_ttrpc(result.await)
    }

    async fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        let result = async {
            let container = self.inner.container(&req.id).await?;
            let resources = req
                .resources
                .as_ref()
                .ok_or_else(|| Error::InvalidArgument("update without resources".into()))?;
            container.update(resources).await?;
            Ok(Empty::new())
        };
        to_ttrpc(result.await)
    }

    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let result = async {
            let process = self.inner.process(&req.id, &req.exec_id).await?;
            let exit = process.wait().await;
            Ok(WaitResponse {
                exit_status: exit.status,
                exited_at: timestamp(&exit),
                ..Default::default()
            })
        };
        to_ttrpc(result.await)
    }

    async fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let result = async {
            let container = self.inner.container(&req.id).await?;
            if container.init.exit().is_some() {
                return Err(Error::NotFound(format!(
                    "task {:?} has exited: no stats",
                    req.id
                )));
            }
            let pid = container.init.pid();
            let stats = tokio::task::spawn_blocking(move || crate::stats::collect(pid))
                .await
                .map_err(|e| Error::Internal(format!("collecting stats: {e}")))??;
            Ok(StatsResponse {
                stats: MessageField::some(stats),
                ..Default::default()
            })
        };
        to_ttrpc(result.await)
    }

    async fn connect(
        &self,
        _: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        let task_pid = match self.inner.container(&req.id).await {
            Ok(container) => container.init.pid(),
            Err(_) => 0,
        };
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> ttrpc::Result<Empty> {
        // One shim may serve a whole pod: only go when no container is left.
        if self.inner.containers.lock().await.is_empty() {
            info!("no containers left: shutting down");
            self.inner.exit.signal();
        }
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::options::CheckpointConfig;
    use crate::process::{Kind, Op};
    use crate::runtime::fake::{Fake, Script};

    /// A service over `fake`, and a bundle whose container has its own pid namespace.
    async fn service(fake: &Fake) -> (TaskService, tempfile::TempDir) {
        let service = TaskService::with_runtime(
            "revive-unit-test",
            None,
            Arc::new(ExitSignal::default()),
            fake.connect(),
        )
        .await;
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(
            bundle.path().join("config.json"),
            r#"{"process":{"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/"},
                "linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#,
        )
        .unwrap();
        (service, bundle)
    }

    async fn create(service: &TaskService, id: &str, bundle: &tempfile::TempDir) -> u32 {
        let req = CreateTaskRequest {
            id: id.into(),
            bundle: bundle.path().to_string_lossy().into_owned(),
            ..Default::default()
        };
        service.do_create(req).await.unwrap().pid
    }

    async fn start(service: &TaskService, id: &str, exec_id: &str) -> Result<u32> {
        let req = StartRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        service.do_start(req).await.map(|r| r.pid)
    }

    async fn add_exec(service: &TaskService, id: &str, exec_id: &str) -> Result<()> {
        let spec = Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: br#"{"user":{"uid":0,"gid":0},"args":["true"],"cwd":"/"}"#.to_vec(),
            ..Default::default()
        };
        let container = service.inner.container(id).await?;
        container
            .add_exec(exec_id, &spec, StdioSpec::default())
            .await
    }

    async fn state(service: &TaskService, id: &str, exec_id: &str) -> StateResponse {
        let req = StateRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        service.do_state(req).await.unwrap()
    }

    async fn process(service: &TaskService, id: &str, exec_id: &str) -> Arc<Process> {
        let container = service.inner.container(id).await.unwrap();
        container.process(exec_id).await.unwrap()
    }

    /// The exit of `id`/`exec_id`, waiting at most a few seconds for it.
    async fn exited(service: &TaskService, id: &str, exec_id: &str) -> Exit {
        let process = process(service, id, exec_id).await;
        tokio::time::timeout(Duration::from_secs(5), process.wait())
            .await
            .expect("the exit is recorded")
    }

    fn refusal(result: Result<impl std::fmt::Debug>) -> String {
        result.unwrap_err().to_string()
    }

    /// containerd issue 9103: an init killed before Create returns still has its exit
    /// reported, and is stopped, not started.
    #[tokio::test]
    async fn an_init_that_dies_before_create_returns_is_stopped() {
        let fake = Fake::new(Script {
            die_in_create: Some(137),
            ..Default::default()
        });
        let (service, bundle) = service(&fake).await;
        let pid = create(&service, "c1", &bundle).await;
        assert!(pid >= 5_000_000, "{pid}");
        assert_eq!(exited(&service, "c1", "").await.status, 137);
        let s = state(&service, "c1", "").await;
        assert_eq!(
            (s.status.enum_value(), s.pid, s.exit_status),
            (Ok(ApiStatus::STOPPED), pid, 137)
        );
        assert_eq!(
            refusal(start(&service, "c1", "").await),
            "cannot start a stopped process"
        );
        let deleted = service
            .do_delete(DeleteRequest {
                id: "c1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!((deleted.pid, deleted.exit_status), (pid, 137));
        assert_eq!(fake.calls(), ["create c1", "delete c1"]);
    }

    /// Two Creates of one id at once: one container, the other Create refused.
    #[tokio::test]
    async fn concurrent_creates_of_one_id_make_one_container() {
        let fake = Fake::new(Script {
            delay: Duration::from_millis(50),
            ..Default::default()
        });
        let (service, bundle) = service(&fake).await;
        let req = CreateTaskRequest {
            id: "c1".into(),
            bundle: bundle.path().to_string_lossy().into_owned(),
            ..Default::default()
        };
        let (a, b) = tokio::join!(
            service.do_create(req.clone()),
            service.do_create(req.clone())
        );
        let refused = a.err().or(b.err()).expect("one Create is refused");
        assert_eq!(refused.to_string(), "container \"c1\" already exists");
        assert_eq!(fake.calls(), ["create c1"]);
        // A Create that failed releases its id.
        let broken = CreateTaskRequest {
            id: "c2".into(),
            bundle: "/nonexistent".into(),
            ..Default::default()
        };
        assert!(service.do_create(broken).await.is_err());
        assert!(service.inner.creating.lock().unwrap().is_empty());
    }

    /// An init that exits while Start runs has its exit handled after the start, and its
    /// pid is not left owned for a later process that reuses it.
    #[tokio::test]
    async fn an_init_that_exits_during_start_leaves_no_owner() {
        let fake = Fake::new(Script {
            die_in_start: Some(7),
            ..Default::default()
        });
        let (service, bundle) = service(&fake).await;
        let pid = create(&service, "c1", &bundle).await;
        assert_eq!(start(&service, "c1", "").await.unwrap(), pid);
        assert_eq!(exited(&service, "c1", "").await.status, 7);
        assert!(lock(&service.inner.exits).owners.is_empty());
    }

    /// A Start the runtime refuses leaves the created init owned: its exit is still seen.
    #[tokio::test]
    async fn a_failed_start_keeps_the_init_owned() {
        let fake = Fake::new(Script {
            fail_start: true,
            ..Default::default()
        });
        let (service, bundle) = service(&fake).await;
        let pid = create(&service, "c1", &bundle).await;
        assert!(refusal(start(&service, "c1", "").await).contains("cannot start c1"));
        Fake::exit(pid, 9).await;
        assert_eq!(exited(&service, "c1", "").await.status, 9);
        assert!(lock(&service.inner.exits).owners.is_empty());
    }

    /// The Go shim's order (containerd issue 10589): an init's exit is recorded and
    /// published only after the exits of its execs, and no exec starts meanwhile.
    #[tokio::test]
    async fn an_exec_outlives_its_init() {
        let fake = Fake::new(Script::default());
        let (service, bundle) = service(&fake).await;
        let init_pid = create(&service, "c1", &bundle).await;
        start(&service, "c1", "").await.unwrap();
        add_exec(&service, "c1", "e1").await.unwrap();
        add_exec(&service, "c1", "e2").await.unwrap();
        let exec_pid = start(&service, "c1", "e1").await.unwrap();

        Fake::exit(init_pid, 0).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let init = process(&service, "c1", "").await;
        assert_eq!(init.exit(), None, "the init's exit waits for the exec's");
        assert_eq!(init.status(), Status::Running);
        assert_eq!(
            refusal(start(&service, "c1", "e2").await),
            "container c1 init process is not running"
        );

        Fake::exit(exec_pid, 3).await;
        let exec_exit = exited(&service, "c1", "e1").await;
        let init_exit = exited(&service, "c1", "").await;
        assert_eq!((exec_exit.status, init_exit.status), (3, 0));
        assert!(exec_exit.at <= init_exit.at);
        assert_eq!(
            state(&service, "c1", "e1").await.status.enum_value(),
            Ok(ApiStatus::STOPPED)
        );
        assert_eq!(
            fake.calls(),
            ["create c1", "start c1", "exec c1"],
            "the refused exec never reached the runtime"
        );
    }

    #[tokio::test]
    async fn an_exec_is_refused_after_its_init_died() {
        let fake = Fake::new(Script::default());
        let (service, bundle) = service(&fake).await;
        let init_pid = create(&service, "c1", &bundle).await;
        start(&service, "c1", "").await.unwrap();
        add_exec(&service, "c1", "added-before").await.unwrap();
        Fake::exit(init_pid, 1).await;
        assert_eq!(exited(&service, "c1", "").await.status, 1);
        assert_eq!(
            refusal(start(&service, "c1", "added-before").await),
            "container c1 init process is not running"
        );
        assert_eq!(
            refusal(add_exec(&service, "c1", "added-after").await),
            "cannot exec in a stopped state"
        );
        assert_eq!(fake.calls(), ["create c1", "start c1"]);
    }

    /// An exec added but not started has no process to signal. SIGWINCH, whose default
    /// action is to be ignored, keeps a regression (a signal to the test's own process
    /// group) harmless to the test run.
    #[tokio::test]
    async fn a_kill_of_an_exec_not_started_is_refused() {
        let fake = Fake::new(Script::default());
        let (service, bundle) = service(&fake).await;
        create(&service, "c1", &bundle).await;
        start(&service, "c1", "").await.unwrap();
        add_exec(&service, "c1", "e1").await.unwrap();
        let container = service.inner.container("c1").await.unwrap();
        assert_eq!(
            refusal(container.kill("e1", libc::SIGWINCH as u32, false).await),
            "process not created"
        );
        assert_eq!(state(&service, "c1", "e1").await.pid, 0);
    }

    /// Start, Pause, Checkpoint and Delete sent at once to one container run one after the
    /// other, each checked against the state the one before left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_operations_on_one_process_are_serialised() {
        let fake = Fake::new(Script {
            delay: Duration::from_millis(20),
            ..Default::default()
        });
        let (service, bundle) = service(&fake).await;
        let images = tempfile::tempdir().unwrap();
        for round in 0..8 {
            let id = format!("c{round}");
            create(&service, &id, &bundle).await;
            let container = service.inner.container(&id).await.unwrap();
            let config = CheckpointConfig {
                image_path: images.path().join(&id),
                ..Default::default()
            };
            let (started, paused, checkpointed, deleted) = tokio::join!(
                start(&service, &id, ""),
                container.pause(),
                container.checkpoint(&config),
                container.delete(),
            );
            assert!(!fake.overlapped(), "round {round}: calls overlapped");
            // Replay what reached the runtime, in order, against the table.
            let mut status = Status::Created;
            for call in fake.calls() {
                let Some(op) = call.strip_suffix(&format!(" {id}")) else {
                    continue;
                };
                let (op, next) = match op {
                    "create" => continue,
                    "start" => (Op::Start, Status::Running),
                    "pause" => (Op::Pause, Status::Paused),
                    "checkpoint" => (Op::Checkpoint, status),
                    "delete" => (Op::Delete, Status::Deleted),
                    other => panic!("unexpected call {other}"),
                };
                status.check(Kind::Init, op).unwrap();
                status = next;
            }
            assert_eq!(container.init.status(), status, "round {round}");
            // Each refusal is the table's, for the state the calls before it left.
            for (result, op) in [
                (started.map(drop), Op::Start),
                (paused, Op::Pause),
                (checkpointed, Op::Checkpoint),
                (deleted, Op::Delete),
            ] {
                if let Err(e) = result {
                    assert!(
                        matches!(e, Error::FailedPrecondition(_) | Error::NotFound(_)),
                        "round {round} {op:?}: {e}"
                    );
                }
            }
            if status != Status::Deleted {
                // Running or paused: end it, and delete it once its exit is in.
                container.kill("", 9, false).await.unwrap();
                assert_eq!(exited(&service, &id, "").await.status, 137);
                container.delete().await.unwrap();
            }
        }
    }

    /// An exec that failed to start no longer counts: its init's exit goes out at once.
    #[tokio::test]
    async fn a_failed_exec_start_does_not_hold_back_the_init() {
        let fake = Fake::new(Script {
            fail_exec: true,
            ..Default::default()
        });
        let (service, bundle) = service(&fake).await;
        let init_pid = create(&service, "c1", &bundle).await;
        start(&service, "c1", "").await.unwrap();
        add_exec(&service, "c1", "e1").await.unwrap();
        assert_eq!(
            refusal(start(&service, "c1", "e1").await),
            "exec: runtime exited with exit status: 1: exec failed in c1"
        );
        assert_eq!(
            state(&service, "c1", "e1").await.status.enum_value(),
            Ok(ApiStatus::CREATED)
        );
        Fake::exit(init_pid, 0).await;
        assert_eq!(exited(&service, "c1", "").await.status, 0);
    }
}
