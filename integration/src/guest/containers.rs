//! containerd's API as the guest's driver calls it: task states and listings (a call costs
//! a round trip where a `ctr` command costs a Go program's start), and containers that
//! `ctr` creates, given the runtime options `ctr` cannot give them.
//!
//! ctr sends runc's options (`--runc-systemd-cgroup`, `--runc-binary`) only to the runtime
//! named `io.containerd.runc.v2`; for any other runtime it sends at most a
//! `--runtime-config-path`. containerd hands a container's runtime options to its shim when a
//! task is created without options of its own (what `ctr task start` does), and records them
//! in a checkpoint for the restored container. So: `ctr container create` a prototype, then
//! through containerd's Containers API create the real container from it, with a systemd
//! cgroups path and runc's options (`SystemdCgroup`, `BinaryName`), and delete the prototype's
//! record. The real container takes over the prototype's snapshot, which is referenced by one
//! of the two records at every moment, so containerd's garbage collector never sees it
//! unreferenced. `ctr container rm` of the real container removes that snapshot.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use revive_proto::prost;
use revive_proto::prost::Message;
use revive_proto::prost_types::{Any, Timestamp};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::containerd::unix_channel;

/// containerd's socket.
pub const SOCKET: &str = "/run/containerd/containerd.sock";

/// `containerd.services.containers.v1.Container`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Container {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(map = "string, string", tag = "2")]
    pub labels: HashMap<String, String>,
    #[prost(string, tag = "3")]
    pub image: String,
    #[prost(message, optional, tag = "4")]
    pub runtime: Option<Runtime>,
    #[prost(message, optional, tag = "5")]
    pub spec: Option<Any>,
    #[prost(string, tag = "6")]
    pub snapshotter: String,
    #[prost(string, tag = "7")]
    pub snapshot_key: String,
    #[prost(message, optional, tag = "8")]
    pub created_at: Option<Timestamp>,
    #[prost(message, optional, tag = "9")]
    pub updated_at: Option<Timestamp>,
    #[prost(map = "string, message", tag = "10")]
    pub extensions: HashMap<String, Any>,
    #[prost(string, tag = "11")]
    pub sandbox: String,
}

/// `containerd.services.containers.v1.Container.Runtime`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Runtime {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub options: Option<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct IdRequest {
    #[prost(string, tag = "1")]
    id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ContainerMessage {
    #[prost(message, optional, tag = "1")]
    container: Option<Container>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

/// `containerd.runc.v1.Options`, every field (revive reads the same message).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RuncOptions {
    #[prost(bool, tag = "1")]
    pub no_pivot_root: bool,
    #[prost(bool, tag = "2")]
    pub no_new_keyring: bool,
    #[prost(string, tag = "3")]
    pub shim_cgroup: String,
    #[prost(uint32, tag = "4")]
    pub io_uid: u32,
    #[prost(uint32, tag = "5")]
    pub io_gid: u32,
    #[prost(string, tag = "6")]
    pub binary_name: String,
    #[prost(string, tag = "7")]
    pub root: String,
    #[prost(bool, tag = "9")]
    pub systemd_cgroup: bool,
    #[prost(string, tag = "10")]
    pub criu_image_path: String,
    #[prost(string, tag = "11")]
    pub criu_work_path: String,
}

/// The type URL containerd gives [`RuncOptions`].
pub const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";

/// `containerd.v1.types.Process`: a task or exec as containerd's Tasks API reports it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Process {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(uint32, tag = "3")]
    pub pid: u32,
    /// UNKNOWN, CREATED, RUNNING, STOPPED, PAUSED, PAUSING (0 to 5).
    #[prost(int32, tag = "4")]
    pub status: i32,
    #[prost(uint32, tag = "9")]
    pub exit_status: u32,
}

impl Process {
    /// The status as `ctr task ls` prints it.
    pub fn status_name(&self) -> &'static str {
        match self.status {
            1 => "CREATED",
            2 => "RUNNING",
            3 => "STOPPED",
            4 => "PAUSED",
            5 => "PAUSING",
            _ => "UNKNOWN",
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetTaskRequest {
    #[prost(string, tag = "1")]
    container_id: String,
    #[prost(string, tag = "2")]
    exec_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetTaskResponse {
    #[prost(message, optional, tag = "1")]
    process: Option<Process>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListTasksRequest {
    #[prost(string, tag = "1")]
    filter: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListTasksResponse {
    #[prost(message, repeated, tag = "1")]
    tasks: Vec<Process>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListContainersRequest {
    #[prost(string, repeated, tag = "1")]
    filters: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListContainersResponse {
    #[prost(message, repeated, tag = "1")]
    containers: Vec<Container>,
}

/// containerd's API (Containers and Tasks), for the calls the driver makes often or that
/// ctr cannot make. A call is a round trip on the socket, where a `ctr` command costs a Go
/// program's start, seconds under emulation.
pub struct Api {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
}

fn rpc_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

impl Api {
    pub fn connect() -> Result<Api> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let channel = unix_channel(&runtime, Path::new(SOCKET))?;
        Ok(Api { runtime, channel })
    }

    fn call<Req, Resp>(&self, namespace: &str, method: &'static str, message: Req) -> Result<Resp>
    where
        Req: Message + Send + Sync + 'static,
        Resp: Message + Default + Send + Sync + 'static,
    {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("containerd-namespace", namespace.parse()?);
        request.set_timeout(Duration::from_secs(60));
        let path = PathAndQuery::from_static(method);
        let channel = self.channel.clone();
        let response = self
            .runtime
            .block_on(async move {
                let mut grpc = tonic::client::Grpc::new(channel);
                grpc.ready()
                    .await
                    .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                grpc.unary(
                    request,
                    path,
                    tonic_prost::ProstCodec::<Req, Resp>::default(),
                )
                .await
            })
            .map_err(rpc_error)?;
        Ok(response.into_inner())
    }

    /// Task `id`'s init process; an error when it has no task.
    pub fn task(&self, namespace: &str, id: &str) -> Result<Process> {
        let response: GetTaskResponse = self
            .call(
                namespace,
                "/containerd.services.tasks.v1.Tasks/Get",
                GetTaskRequest {
                    container_id: id.into(),
                    exec_id: String::new(),
                },
            )
            .with_context(|| format!("getting task {id}"))?;
        response
            .process
            .with_context(|| format!("containerd returned no process for task {id}"))
    }

    pub fn tasks(&self, namespace: &str) -> Result<Vec<Process>> {
        let response: ListTasksResponse = self
            .call(
                namespace,
                "/containerd.services.tasks.v1.Tasks/List",
                ListTasksRequest::default(),
            )
            .context("listing tasks")?;
        Ok(response.tasks)
    }

    pub fn containers(&self, namespace: &str) -> Result<Vec<Container>> {
        let response: ListContainersResponse = self
            .call(
                namespace,
                "/containerd.services.containers.v1.Containers/List",
                ListContainersRequest::default(),
            )
            .context("listing containers")?;
        Ok(response.containers)
    }

    pub fn container(&self, namespace: &str, id: &str) -> Result<Container> {
        let response: ContainerMessage = self
            .call(
                namespace,
                "/containerd.services.containers.v1.Containers/Get",
                IdRequest { id: id.into() },
            )
            .with_context(|| format!("getting container {id}"))?;
        response
            .container
            .with_context(|| format!("containerd returned no container {id}"))
    }

    pub fn create_container(&self, namespace: &str, container: Container) -> Result<Container> {
        let id = container.id.clone();
        let response: ContainerMessage = self
            .call(
                namespace,
                "/containerd.services.containers.v1.Containers/Create",
                ContainerMessage {
                    container: Some(container),
                },
            )
            .with_context(|| format!("creating container {id}"))?;
        response
            .container
            .with_context(|| format!("containerd returned no container {id}"))
    }

    /// Deletes the record only (its snapshot stays).
    pub fn delete_container(&self, namespace: &str, id: &str) -> Result<()> {
        let _: Empty = self
            .call(
                namespace,
                "/containerd.services.containers.v1.Containers/Delete",
                IdRequest { id: id.into() },
            )
            .with_context(|| format!("deleting container {id}"))?;
        Ok(())
    }

    /// Creates container `id` in `namespace` from the prototype `prototype` (made by `ctr
    /// container create`): the same image, snapshot and spec, the spec's cgroups path set to
    /// `cgroups_path`, and the runtime given `options`; then deletes the prototype's record.
    pub fn recreate(
        &self,
        namespace: &str,
        prototype: &str,
        id: &str,
        cgroups_path: &str,
        options: &RuncOptions,
    ) -> Result<Container> {
        let mut container = self.container(namespace, prototype)?;
        let spec = container
            .spec
            .as_mut()
            .with_context(|| format!("container {prototype} has no spec"))?;
        let mut json: serde_json::Value =
            serde_json::from_slice(&spec.value).context("the prototype's spec is not JSON")?;
        json["linux"]["cgroupsPath"] = serde_json::Value::String(cgroups_path.into());
        spec.value = serde_json::to_vec(&json)?;
        let runtime = container
            .runtime
            .as_mut()
            .with_context(|| format!("container {prototype} has no runtime"))?;
        runtime.options = Some(Any {
            type_url: RUNC_OPTIONS.into(),
            value: options.encode_to_vec(),
        });
        container.id = id.into();
        container.created_at = None;
        container.updated_at = None;
        let created = self.create_container(namespace, container)?;
        self.delete_container(namespace, prototype)?;
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_options_use_containerds_field_numbers() {
        let options = RuncOptions {
            binary_name: "crun".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        // field 6 (binary_name, length-delimited), field 9 (systemd_cgroup, varint).
        assert_eq!(
            options.encode_to_vec(),
            [0x32, 4, b'c', b'r', b'u', b'n', 0x48, 1]
        );
    }
}
