//! Shim entry points (`start`, `delete`, the daemon) and the Task API service.
//!
//! This layer only handles RPCs and events. For now it implements `Connect`
//! and `Shutdown`; every other Task RPC answers `UNIMPLEMENTED` until the task
//! lifecycle (runc, CRIU) is added.

use std::{
    collections::HashMap,
    fs::File,
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use containerd_shim::{
    Config, Error, Flags, StartOpts,
    asynchronous::{ExitSignal, Shim, publisher::RemotePublisher, spawn, util::write_str_to_file},
    logger::FifoLogger,
    util::timestamp,
};
use containerd_shim_protos::{
    api::{
        CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
        CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
        PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest,
        StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
        UpdateTaskRequest, WaitRequest, WaitResponse,
    },
    shim_async::Task,
    ttrpc::{self, r#async::TtrpcContext},
};
use log::{debug, info, warn};
use serde::Deserialize;

use crate::SHIM_NAME;

/// Annotations that put containers into one shim, checked in order. Same as
/// containerd's Go runc shim: an explicit group, then the CRI pod sandbox.
const GROUP_LABELS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// The OCI runtime spec containerd writes into the bundle.
const CONFIG_FILE: &str = "config.json";

/// File in the bundle holding the shim's address, read back by the daemon on
/// exit to remove its socket.
const ADDRESS_FILE: &str = "address";

/// Exit status reported when the shim is gone without a task exit (SIGKILL).
const KILLED_EXIT_STATUS: u32 = 128 + 9;

/// Entry point the `containerd-shim` crate drives for every action.
pub struct Service {
    exit: Arc<ExitSignal>,
    id: String,
    /// `-bundle`, passed to `delete` only; the other actions run in the bundle.
    bundle: String,
}

#[async_trait]
impl Shim for Service {
    type T = TaskService;

    async fn new(_runtime_id: &str, flags: &Flags, _config: &mut Config) -> Self {
        if flags.action == "delete" {
            // containerd reads `delete`'s stderr and logs it as cleanup
            // warnings; the log FIFO is only for the daemon.
            init_stderr_logger(flags.debug);
        }
        Service {
            exit: Arc::new(ExitSignal::default()),
            id: flags.id.clone(),
            bundle: flags.bundle.clone(),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        // containerd runs `start` in the bundle directory.
        let grouping = grouping(Path::new(CONFIG_FILE), &opts.id).await?;
        let address = spawn(opts, &grouping, Vec::new()).await?;
        write_str_to_file(ADDRESS_FILE, &address).await?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        let bundle = if self.bundle.is_empty() {
            std::env::current_dir().ok()
        } else {
            Some(PathBuf::from(&self.bundle))
        };
        info!("cleaning up after shim for {}", self.id);
        if let Some(bundle) = bundle {
            cleanup_bundle(&bundle);
        }
        Ok(killed_response())
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, _publisher: RemotePublisher) -> Self::T {
        TaskService {
            exit: self.exit.clone(),
        }
    }
}

/// What `delete` reports: nothing is running, so the task counts as killed now.
fn killed_response() -> DeleteResponse {
    let mut response = DeleteResponse {
        exit_status: KILLED_EXIT_STATUS,
        ..Default::default()
    };
    match timestamp() {
        Ok(now) => response.exited_at = Some(now).into(),
        Err(e) => warn!("failed to read the clock for exited_at: {e}"),
    }
    response
}

/// Best-effort cleanup of what the shim may have left in `bundle`: the
/// container rootfs mount. A bundle that is already gone is not an error.
fn cleanup_bundle(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    let Some(rootfs) = rootfs.to_str() else {
        warn!(
            "rootfs path {} is not UTF-8, not unmounting",
            rootfs.display()
        );
        return;
    };
    if let Err(e) = containerd_shim::mount::umount_recursive(Some(rootfs), 0) {
        warn!("failed to unmount {rootfs}: {e}");
    }
}

/// Sends `log` records to stderr, formatted by the crate's logger.
fn init_stderr_logger(debug: bool) {
    let stderr = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(_) => return,
    };
    if log::set_boxed_logger(Box::new(FifoLogger::with_file(stderr))).is_ok() {
        log::set_max_level(if debug {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        });
    }
}

/// The part of the OCI spec that decides grouping.
#[derive(Deserialize)]
struct SpecAnnotations {
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

/// Shim group of the container `id` whose spec is at `config`: the first
/// [`GROUP_LABELS`] annotation present, else the container itself.
async fn grouping(config: &Path, id: &str) -> Result<String, Error> {
    let content = tokio::fs::read(config)
        .await
        .map_err(|err| Error::IoError {
            context: format!("read {}", config.display()),
            err,
        })?;
    let spec: SpecAnnotations = serde_json::from_slice(&content)?;
    let annotations = spec.annotations.unwrap_or_default();
    Ok(GROUP_LABELS
        .iter()
        .find_map(|label| annotations.get(*label).filter(|group| !group.is_empty()))
        .cloned()
        .unwrap_or_else(|| id.to_string()))
}

/// The ttrpc error every Task RPC that is not there yet returns.
fn unimplemented(method: &str) -> ttrpc::Error {
    debug!("{method} called, not implemented yet");
    ttrpc::Error::RpcStatus(ttrpc::get_status(
        ttrpc::Code::UNIMPLEMENTED,
        format!("{SHIM_NAME}: {method} is not implemented yet"),
    ))
}

/// The Task API (`containerd.task.v3.Task`) served by the shim daemon.
pub struct TaskService {
    exit: Arc<ExitSignal>,
}

#[async_trait]
impl Task for TaskService {
    async fn state(&self, _: &TtrpcContext, _: StateRequest) -> ttrpc::Result<StateResponse> {
        Err(unimplemented("State"))
    }

    async fn create(
        &self,
        _: &TtrpcContext,
        _: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        Err(unimplemented("Create"))
    }

    async fn start(&self, _: &TtrpcContext, _: StartRequest) -> ttrpc::Result<StartResponse> {
        Err(unimplemented("Start"))
    }

    async fn delete(&self, _: &TtrpcContext, _: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        Err(unimplemented("Delete"))
    }

    async fn pids(&self, _: &TtrpcContext, _: PidsRequest) -> ttrpc::Result<PidsResponse> {
        Err(unimplemented("Pids"))
    }

    async fn pause(&self, _: &TtrpcContext, _: PauseRequest) -> ttrpc::Result<Empty> {
        Err(unimplemented("Pause"))
    }

    async fn resume(&self, _: &TtrpcContext, _: ResumeRequest) -> ttrpc::Result<Empty> {
        Err(unimplemented("Resume"))
    }

    async fn checkpoint(&self, _: &TtrpcContext, _: CheckpointTaskRequest) -> ttrpc::Result<Empty> {
        Err(unimplemented("Checkpoint"))
    }

    async fn kill(&self, _: &TtrpcContext, _: KillRequest) -> ttrpc::Result<Empty> {
        Err(unimplemented("Kill"))
    }

    async fn exec(&self, _: &TtrpcContext, _: ExecProcessRequest) -> ttrpc::Result<Empty> {
        Err(unimplemented("Exec"))
    }

    async fn resize_pty(&self, _: &TtrpcContext, _: ResizePtyRequest) -> ttrpc::Result<Empty> {
        Err(unimplemented("ResizePty"))
    }

    async fn close_io(&self, _: &TtrpcContext, _: CloseIORequest) -> ttrpc::Result<Empty> {
        Err(unimplemented("CloseIO"))
    }

    async fn update(&self, _: &TtrpcContext, _: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        Err(unimplemented("Update"))
    }

    async fn wait(&self, _: &TtrpcContext, _: WaitRequest) -> ttrpc::Result<WaitResponse> {
        Err(unimplemented("Wait"))
    }

    async fn stats(&self, _: &TtrpcContext, _: StatsRequest) -> ttrpc::Result<StatsResponse> {
        Err(unimplemented("Stats"))
    }

    async fn connect(
        &self,
        _: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        debug!("connect {}", req.id);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            // No task runs in this shim yet.
            task_pid: 0,
            ..Default::default()
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> ttrpc::Result<Empty> {
        // With no tasks there is nothing to keep the shim alive for. Once
        // tasks exist, shutdown must be ignored while any is still present.
        info!("shutdown requested, exiting");
        self.exit.signal();
        Ok(Empty::default())
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim_protos::{
        shim_async::{TaskClient, create_task},
        ttrpc::{
            r#async::{Client, Server},
            context,
        },
    };

    use super::*;

    fn rpc_status(err: &ttrpc::Error) -> (ttrpc::Code, String) {
        match err {
            ttrpc::Error::RpcStatus(status) => (status.code(), status.message().to_string()),
            other => panic!("expected an RPC status, got {other:?}"),
        }
    }

    #[test]
    fn unimplemented_error_has_code_and_message() {
        let (code, message) = rpc_status(&unimplemented("Checkpoint"));
        assert_eq!(code, ttrpc::Code::UNIMPLEMENTED);
        assert_eq!(
            message,
            "containerd-shim-revive-v2: Checkpoint is not implemented yet"
        );
    }

    fn service(bundle: &Path) -> Service {
        Service {
            exit: Arc::new(ExitSignal::default()),
            id: "c1".to_string(),
            bundle: bundle.to_string_lossy().into_owned(),
        }
    }

    #[tokio::test]
    async fn delete_on_missing_bundle_reports_killed() {
        let dir = tempfile::tempdir().unwrap();
        let mut shim = service(&dir.path().join("gone"));

        let response = shim.delete_shim().await.unwrap();

        assert_eq!(response.exit_status, 137);
        assert_eq!(response.pid, 0);
        let exited_at = response.exited_at.as_ref().expect("exited_at is set");
        assert!(exited_at.seconds > 0);
    }

    #[tokio::test]
    async fn delete_on_present_bundle_reports_killed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let mut shim = service(dir.path());

        let response = shim.delete_shim().await.unwrap();

        assert_eq!(response.exit_status, 137);
        assert!(dir.path().join("rootfs").is_dir());
    }

    async fn grouping_of(config: &str) -> Result<String, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(&path, config).unwrap();
        grouping(&path, "c1").await
    }

    #[tokio::test]
    async fn grouping_follows_the_sandbox_annotation() {
        let config = r#"{"ociVersion":"1.2.0","annotations":{
            "io.kubernetes.cri.container-type":"container",
            "io.kubernetes.cri.sandbox-id":"pod1"}}"#;
        assert_eq!(grouping_of(config).await.unwrap(), "pod1");
    }

    #[tokio::test]
    async fn grouping_prefers_the_explicit_group() {
        let config = r#"{"annotations":{
            "io.kubernetes.cri.sandbox-id":"pod1",
            "io.containerd.runc.v2.group":"group1"}}"#;
        assert_eq!(grouping_of(config).await.unwrap(), "group1");
    }

    #[tokio::test]
    async fn grouping_defaults_to_the_container() {
        assert_eq!(
            grouping_of(r#"{"ociVersion":"1.2.0"}"#).await.unwrap(),
            "c1"
        );
        assert_eq!(grouping_of(r#"{"annotations":null}"#).await.unwrap(), "c1");
        let empty = r#"{"annotations":{"io.kubernetes.cri.sandbox-id":""}}"#;
        assert_eq!(grouping_of(empty).await.unwrap(), "c1");
    }

    #[tokio::test]
    async fn grouping_fails_without_a_valid_spec() {
        assert!(grouping_of("not json").await.is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(grouping(&dir.path().join(CONFIG_FILE), "c1").await.is_err());
    }

    /// Serves the task service on a socket and talks to it as containerd does.
    #[tokio::test]
    async fn task_api_over_ttrpc() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix://{}", dir.path().join("shim.sock").display());
        let exit = Arc::new(ExitSignal::default());
        let task: Arc<dyn Task + Send + Sync> = Arc::new(TaskService { exit: exit.clone() });
        let mut server = Server::new()
            .bind(&address)
            .unwrap()
            .register_service(create_task(task));
        server.start().await.unwrap();

        let client = TaskClient::new(Client::connect(&address).await.unwrap());

        let connected = client
            .connect(
                context::with_timeout(0),
                &ConnectRequest {
                    id: "c1".to_string(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(connected.shim_pid, std::process::id());
        assert_eq!(connected.task_pid, 0);

        let err = client
            .state(context::with_timeout(0), &StateRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            rpc_status(&err),
            (
                ttrpc::Code::UNIMPLEMENTED,
                "containerd-shim-revive-v2: State is not implemented yet".to_string()
            )
        );
        let err = client
            .create(context::with_timeout(0), &CreateTaskRequest::default())
            .await
            .unwrap_err();
        assert_eq!(rpc_status(&err).0, ttrpc::Code::UNIMPLEMENTED);

        client
            .shutdown(context::with_timeout(0), &ShutdownRequest::default())
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), exit.wait())
            .await
            .expect("shutdown sets the exit signal");

        server.shutdown().await.unwrap();
    }
}
