//! A client of a node's containerd API for the calls `ctr` cannot make: a checkpoint with
//! any `CheckpointOptions` (ctr has no open_tcp flag, and containerd 1.7's ctr sends
//! options only to runtimes named `io.containerd.runc*`), a restore from a CRIU image
//! directory (`Options.criu_image_path`, which ctr cannot set either), and Tasks.Update.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use revive_proto::prost::Message;
use revive_proto::prost_types::Any;
use revive_proto::runc::{CheckpointOptions, Options, RUNC_CHECKPOINT_OPTIONS, RUNC_OPTIONS};
use revive_proto::snapshots::v1::MountsRequest;
use revive_proto::snapshots::v1::snapshots_client::SnapshotsClient;
use revive_proto::tasks::v1::tasks_client::TasksClient;
use revive_proto::tasks::v1::{
    CheckpointTaskRequest, CreateTaskRequest, StartRequest, UpdateTaskRequest,
};
use revive_proto::types::Descriptor;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::node::Node;

/// containerd's socket inside a node.
pub const SOCKET: &str = "/run/containerd/containerd.sock";

/// A gRPC channel to the unix socket at `socket` (seen from the host).
pub(crate) fn unix_channel(runtime: &tokio::runtime::Runtime, socket: &Path) -> Result<Channel> {
    let path = socket.to_path_buf();
    runtime
        .block_on(async move {
            // The URI is ignored; the connector always dials the socket.
            Endpoint::try_from("http://[::]:50051")?
                .connect_timeout(Duration::from_secs(10))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
        })
        .with_context(|| format!("connecting to {}", socket.display()))
}

/// The host's path to the socket of a node's containerd.
pub(crate) fn socket_of(node: &Node) -> std::path::PathBuf {
    node.host_path(SOCKET)
}

/// containerd's API in one namespace of a node.
pub struct Containerd {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    namespace: String,
}

/// How long a call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A failed call as an error: containerd's code and message.
fn rpc_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

impl Containerd {
    pub fn connect(node: &Node, namespace: &str) -> Result<Containerd> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let channel = unix_channel(&runtime, &socket_of(node))
            .with_context(|| format!("containerd of node {}", node.name()))?;
        Ok(Containerd {
            runtime,
            channel,
            namespace: namespace.to_string(),
        })
    }

    /// A request in our namespace, with a deadline.
    fn request<T>(&self, message: T) -> Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("containerd-namespace", self.namespace.parse()?);
        request.set_timeout(CALL_TIMEOUT);
        Ok(request)
    }

    /// Checkpoints task `id` with `options` (through the runtime: runc's types, which
    /// revive takes too). With `options.image_path` set, CRIU's images go there and
    /// containerd stores nothing; otherwise it returns what it stored.
    pub fn checkpoint(&self, id: &str, options: &CheckpointOptions) -> Result<Vec<Descriptor>> {
        let request = self.request(CheckpointTaskRequest {
            container_id: id.to_string(),
            parent_checkpoint: String::new(),
            options: Some(Any {
                type_url: RUNC_CHECKPOINT_OPTIONS.to_string(),
                value: options.encode_to_vec(),
            }),
        })?;
        let mut tasks = TasksClient::new(self.channel.clone());
        let response = self
            .runtime
            .block_on(tasks.checkpoint(request))
            .map_err(rpc_error)
            .with_context(|| format!("checkpoint of task {id}"))?;
        Ok(response.into_inner().descriptors)
    }

    /// Updates the resources of task `id` (runtime-spec LinuxResources as JSON, in the Any
    /// containerd's client makes of them).
    pub fn update(&self, id: &str, resources: Any) -> Result<()> {
        let request = self.request(UpdateTaskRequest {
            container_id: id.to_string(),
            resources: Some(resources),
            ..Default::default()
        })?;
        let mut tasks = TasksClient::new(self.channel.clone());
        self.runtime
            .block_on(tasks.update(request))
            .map_err(rpc_error)
            .with_context(|| format!("Tasks.Update of {id}"))?;
        Ok(())
    }

    /// Creates and starts the task of container `id` (whose rootfs is snapshot `id` of
    /// `snapshotter`) restored from the CRIU images in `image_path`, without stdio.
    /// Returns the restored init's pid.
    pub fn restore_from_dir(&self, id: &str, snapshotter: &str, image_path: &str) -> Result<u32> {
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let mounts = self
            .runtime
            .block_on(snapshots.mounts(self.request(MountsRequest {
                snapshotter: snapshotter.to_string(),
                key: id.to_string(),
            })?))
            .map_err(rpc_error)
            .with_context(|| format!("mounts of snapshot {id} ({snapshotter})"))?
            .into_inner()
            .mounts;
        let options = Options {
            criu_image_path: image_path.to_string(),
            criu_work_path: String::new(),
            ..Default::default()
        };
        let mut tasks = TasksClient::new(self.channel.clone());
        let create = self.request(CreateTaskRequest {
            container_id: id.to_string(),
            rootfs: mounts,
            options: Some(Any {
                type_url: RUNC_OPTIONS.to_string(),
                value: options.encode_to_vec(),
            }),
            ..Default::default()
        })?;
        self.runtime
            .block_on(tasks.create(create))
            .map_err(rpc_error)
            .with_context(|| format!("creating task {id} from {image_path}"))?;
        let start = self.request(StartRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        })?;
        let started = self
            .runtime
            .block_on(tasks.start(start))
            .map_err(rpc_error)
            .with_context(|| format!("starting (restoring) task {id} from {image_path}"))?;
        Ok(started.into_inner().pid)
    }
}
