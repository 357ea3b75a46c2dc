//! Driving containerd's CRI in a node as the kubelet does: pod sandboxes with host
//! networking, containers, ExecSync, stats, stop and remove, over CRI's gRPC API
//! (`runtime.v1`) on the node's containerd socket.
//!
//! The client is ours, not `crictl`: Debian ships no cri-tools (neither trixie nor sid).
//! Its messages and gRPC clients are generated from k8s.io/cri-api's
//! `pkg/apis/runtime/v1/api.proto` of the kubelet release the harness runs
//! (`revive_proto::cri`, see `proto/vendor/cri/SOURCE.md`).
//!
//! The test images live in containerd's `k8s.io` namespace, where CRI looks; the sandbox
//! ("pause") image is built locally and named as the node's containerd expects (read from
//! `containerd config dump`: `sandbox_image` in 1.7, `pinned_images.sandbox` in 2.x).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use tonic::transport::Channel;

use crate::image::{BUSYBOX, Image, busybox_builder};
use crate::node::Node;

/// containerd's socket inside a node; CRI is served on it.
pub use crate::containerd::SOCKET;
/// The containerd namespace CRI keeps its images, containers and sandboxes in.
pub const NAMESPACE: &str = "k8s.io";
/// Where pod logs go inside the node: below the node's logs directory, so a failed test
/// keeps them.
pub const POD_LOG_ROOT: &str = "/var/log/revive/pods";

/// A marker in the sandbox image's command line, to find pause processes with `pgrep -f`.
pub const PAUSE_MARKER: &str = "revive-pause";
/// The pause image's sleeper (a child of its shell), also looked for after teardown.
pub const PAUSE_SLEEP: &str = "sleep 2147483647";
/// A marker in the test container's command line.
pub const WORKLOAD_MARKER: &str = "revive-cri-workload";

/// CRI's `runtime.v1` messages, generated from k8s.io/cri-api's `api.proto` (vendored in
/// `proto/vendor/cri`, compiled by `revive-proto` with its `cri` feature).
pub mod api {
    pub use revive_proto::cri::v1::security_profile::ProfileType;
    pub use revive_proto::cri::v1::*;
}

use api::image_service_client::ImageServiceClient;
use api::runtime_service_client::RuntimeServiceClient;
use api::{ContainerState, NamespaceMode, PodSandboxState};

/// A CRI call failed; keeps the gRPC status so callers can tell rejections apart.
#[derive(Debug)]
pub struct CriError {
    pub method: &'static str,
    pub code: tonic::Code,
    pub message: String,
}

impl fmt::Display for CriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CRI {} failed ({:?}): {}",
            self.method, self.code, self.message
        )
    }
}

impl std::error::Error for CriError {}

/// What ExecSync returned.
#[derive(Debug, Clone, Serialize)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// The numbers of a ContainerStats answer (None where the runtime reported nothing).
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub cpu_usage_core_nano_seconds: Option<u64>,
    pub memory_working_set_bytes: Option<u64>,
    pub memory_usage_bytes: Option<u64>,
    pub memory_rss_bytes: Option<u64>,
    pub writable_layer_used_bytes: Option<u64>,
}

impl Stats {
    fn from_api(stats: &api::ContainerStats) -> Stats {
        let value = |v: &Option<api::UInt64Value>| v.as_ref().map(|v| v.value);
        let memory = stats.memory.as_ref();
        Stats {
            cpu_usage_core_nano_seconds: stats
                .cpu
                .as_ref()
                .and_then(|c| value(&c.usage_core_nano_seconds)),
            memory_working_set_bytes: memory.and_then(|m| value(&m.working_set_bytes)),
            memory_usage_bytes: memory.and_then(|m| value(&m.usage_bytes)),
            memory_rss_bytes: memory.and_then(|m| value(&m.rss_bytes)),
            writable_layer_used_bytes: stats
                .writable_layer
                .as_ref()
                .and_then(|w| value(&w.used_bytes)),
        }
    }
}

/// A CRI client connected to a node's containerd (through the node's root, from the host).
pub struct Cri {
    tokio: tokio::runtime::Runtime,
    runtime_service: RuntimeServiceClient<Channel>,
    image_service: ImageServiceClient<Channel>,
    socket: PathBuf,
}

/// How long a CRI call may take unless the call says otherwise.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the calls that start or stop processes (sandboxes, containers) may take.
const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(120);

impl Cri {
    /// Connects to the CRI of `node`'s containerd.
    pub fn connect(node: &Node) -> Result<Cri> {
        let hosts_dir = KUBELET_HOSTS.rsplit_once('/').map_or("/", |(dir, _)| dir);
        node.sh(&format!(
            "mkdir -p {hosts_dir} && printf '127.0.0.1 localhost\\n' > {KUBELET_HOSTS}"
        ))
        .context("writing the kubelet's hosts file in the node")?;
        let socket = crate::containerd::socket_of(node);
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let channel = crate::containerd::unix_channel(&tokio, &socket).with_context(|| {
            format!(
                "connecting to containerd's CRI in node {} ({})",
                node.name(),
                socket.display()
            )
        })?;
        Ok(Cri {
            tokio,
            runtime_service: RuntimeServiceClient::new(channel.clone()),
            image_service: ImageServiceClient::new(channel),
            socket,
        })
    }

    /// A client of CRI's RuntimeService (clients share the connection).
    fn runtime(&self) -> RuntimeServiceClient<Channel> {
        self.runtime_service.clone()
    }

    /// A client of CRI's ImageService.
    fn images(&self) -> ImageServiceClient<Channel> {
        self.image_service.clone()
    }

    /// Runs `call`, CRI's `method`, to its answer or for at most `timeout`.
    fn call<Resp>(
        &self,
        method: &'static str,
        timeout: Duration,
        call: impl Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    ) -> Result<Resp> {
        // The deadline's timer is made inside the runtime, which owns the timers.
        let answer = self
            .tokio
            .block_on(async { tokio::time::timeout(timeout, call).await });
        match answer {
            Err(_) => bail!(
                "CRI {method} did not answer within {timeout:?} (socket {})",
                self.socket.display()
            ),
            Ok(Err(status)) => Err(CriError {
                method,
                code: status.code(),
                message: status.message().to_string(),
            }
            .into()),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    pub fn version(&mut self) -> Result<api::VersionResponse> {
        let request = api::VersionRequest {
            version: "v1".into(),
        };
        self.call("Version", CALL_TIMEOUT, self.runtime().version(request))
    }

    /// ImageStatus: the image as CRI sees it, None when CRI does not know it.
    pub fn image_status(&mut self, image: &str) -> Result<Option<api::Image>> {
        let request = api::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        let response = self.call(
            "ImageStatus",
            CALL_TIMEOUT,
            self.images().image_status(request),
        )?;
        Ok(response.image)
    }

    /// RunPodSandbox on runtime handler `handler`; returns the sandbox id.
    pub fn run_pod_sandbox(
        &mut self,
        config: &api::PodSandboxConfig,
        handler: &str,
    ) -> Result<String> {
        let request = api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        let response = self.call(
            "RunPodSandbox",
            LIFECYCLE_TIMEOUT,
            self.runtime().run_pod_sandbox(request),
        )?;
        ensure!(
            !response.pod_sandbox_id.is_empty(),
            "RunPodSandbox returned no sandbox id"
        );
        Ok(response.pod_sandbox_id)
    }

    pub fn pod_sandbox_status(&mut self, id: &str) -> Result<api::PodSandboxStatus> {
        let request = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        let response = self.call(
            "PodSandboxStatus",
            CALL_TIMEOUT,
            self.runtime().pod_sandbox_status(request),
        )?;
        response
            .status
            .with_context(|| format!("PodSandboxStatus of {id} carries no status"))
    }

    pub fn list_pod_sandboxes(&mut self) -> Result<Vec<api::PodSandbox>> {
        let request = api::ListPodSandboxRequest::default();
        let response = self.call(
            "ListPodSandbox",
            CALL_TIMEOUT,
            self.runtime().list_pod_sandbox(request),
        )?;
        Ok(response.items)
    }

    pub fn stop_pod_sandbox(&mut self, id: &str) -> Result<()> {
        let request = api::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call(
            "StopPodSandbox",
            LIFECYCLE_TIMEOUT,
            self.runtime().stop_pod_sandbox(request),
        )?;
        Ok(())
    }

    pub fn remove_pod_sandbox(&mut self, id: &str) -> Result<()> {
        let request = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call(
            "RemovePodSandbox",
            LIFECYCLE_TIMEOUT,
            self.runtime().remove_pod_sandbox(request),
        )?;
        Ok(())
    }

    /// CreateContainer in sandbox `pod_id` (created with `sandbox_config`); returns the id.
    pub fn create_container(
        &mut self,
        pod_id: &str,
        config: &api::ContainerConfig,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<String> {
        let request = api::CreateContainerRequest {
            pod_sandbox_id: pod_id.into(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox_config.clone()),
        };
        let response = self.call(
            "CreateContainer",
            LIFECYCLE_TIMEOUT,
            self.runtime().create_container(request),
        )?;
        ensure!(
            !response.container_id.is_empty(),
            "CreateContainer returned no container id"
        );
        Ok(response.container_id)
    }

    pub fn start_container(&mut self, id: &str) -> Result<()> {
        let request = api::StartContainerRequest {
            container_id: id.into(),
        };
        self.call(
            "StartContainer",
            LIFECYCLE_TIMEOUT,
            self.runtime().start_container(request),
        )?;
        Ok(())
    }

    /// StopContainer: the stop signal, then SIGKILL after `grace` seconds.
    pub fn stop_container(&mut self, id: &str, grace: u32) -> Result<()> {
        let request = api::StopContainerRequest {
            container_id: id.into(),
            timeout: grace.into(),
        };
        self.call(
            "StopContainer",
            Duration::from_secs(u64::from(grace) + 60),
            self.runtime().stop_container(request),
        )?;
        Ok(())
    }

    pub fn remove_container(&mut self, id: &str) -> Result<()> {
        let request = api::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.call(
            "RemoveContainer",
            CALL_TIMEOUT,
            self.runtime().remove_container(request),
        )?;
        Ok(())
    }

    pub fn container_status(&mut self, id: &str) -> Result<api::ContainerStatus> {
        let request = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let response = self.call(
            "ContainerStatus",
            CALL_TIMEOUT,
            self.runtime().container_status(request),
        )?;
        response
            .status
            .with_context(|| format!("ContainerStatus of {id} carries no status"))
    }

    pub fn list_containers(&mut self) -> Result<Vec<api::Container>> {
        let request = api::ListContainersRequest::default();
        let response = self.call(
            "ListContainers",
            CALL_TIMEOUT,
            self.runtime().list_containers(request),
        )?;
        Ok(response.containers)
    }

    /// ExecSync `cmd` in container `id`; `timeout` in seconds bounds the command.
    pub fn exec_sync(&mut self, id: &str, cmd: &[&str], timeout: u32) -> Result<ExecOutput> {
        let request = api::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout.into(),
        };
        let response = self.call(
            "ExecSync",
            Duration::from_secs(u64::from(timeout) + 60),
            self.runtime().exec_sync(request),
        )?;
        Ok(ExecOutput {
            stdout: String::from_utf8_lossy(&response.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&response.stderr).into_owned(),
            exit_code: response.exit_code,
        })
    }

    pub fn container_stats(&mut self, id: &str) -> Result<Stats> {
        let request = api::ContainerStatsRequest {
            container_id: id.into(),
        };
        let response = self.call(
            "ContainerStats",
            CALL_TIMEOUT,
            self.runtime().container_stats(request),
        )?;
        let stats = response
            .stats
            .with_context(|| format!("ContainerStats of {id} carries no stats"))?;
        Ok(Stats::from_api(&stats))
    }

    /// CheckpointContainer (containerd 2.x; 1.7 answers Unimplemented): writes a checkpoint
    /// archive of container `id` to `location` (a path inside the node).
    pub fn checkpoint_container(&mut self, id: &str, location: &str, timeout: u32) -> Result<()> {
        let request = api::CheckpointContainerRequest {
            container_id: id.into(),
            location: location.into(),
            timeout: timeout.into(),
        };
        self.call(
            "CheckpointContainer",
            Duration::from_secs(u64::from(timeout) + 60),
            self.runtime().checkpoint_container(request),
        )?;
        Ok(())
    }

    /// Waits (bounded) until CRI knows `image`; an import is seen by CRI's image store
    /// through containerd's events, not synchronously.
    pub fn wait_for_image(&mut self, image: &str) -> Result<api::Image> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = self.image_status(image)? {
                return Ok(found);
            }
            ensure!(
                Instant::now() < deadline,
                "CRI does not know image {image} 30 s after it was imported into namespace \
                 {NAMESPACE}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded) until [`WORKLOAD_SCRIPT`] in container `id` has written its token
    /// (once the script has run its first lines), and returns it.
    pub fn wait_for_token(&mut self, id: &str) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.exec_sync(id, &["cat", TOKEN_FILE], 30)?;
            if out.exit_code == 0 && !out.stdout.trim().is_empty() {
                return Ok(out.stdout.trim().to_string());
            }
            ensure!(
                Instant::now() < deadline,
                "the workload wrote no {TOKEN_FILE} within 30 s: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded) until container `id` is in `state`.
    pub fn wait_for_state(
        &mut self,
        id: &str,
        state: ContainerState,
    ) -> Result<api::ContainerStatus> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.container_status(id)?;
            if status.state == state as i32 {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "container {id} is {} 30 s later, not {}",
                state_name(status.state),
                state_name(state as i32)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn image_spec(image: &str) -> api::ImageSpec {
    api::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}

fn state_name(state: i32) -> String {
    ContainerState::try_from(state)
        .map(|s| format!("{s:?}"))
        .unwrap_or_else(|_| format!("state {state}"))
}

/// What CheckpointContainer did in the scenario.
#[derive(Debug, Clone, Serialize)]
pub enum CheckpointOutcome {
    /// containerd 1.7 has no CheckpointContainer: its answer.
    Unimplemented(String),
    /// containerd 2.x wrote a Kubernetes checkpoint archive, which checkpointctl read.
    Archive {
        /// Its top-level entries.
        entries: Vec<String>,
        /// `checkpointctl show` and `checkpointctl inspect --stats --ps-tree`.
        show: String,
        inspect: String,
        /// The archive itself, as the kubelet stores it.
        archive: Vec<u8>,
    },
}

impl fmt::Display for CheckpointOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointOutcome::Unimplemented(said) => write!(f, "unimplemented ({said})"),
            CheckpointOutcome::Archive {
                entries,
                show,
                inspect,
                ..
            } => write!(
                f,
                "archive with {}\ncheckpointctl show:\n{show}\ncheckpointctl inspect:\n{inspect}",
                entries.join(" ")
            ),
        }
    }
}

/// What a complete archive of containerd 2.1.9's CheckpointContainer holds at its top level:
/// CRIU's images, the container's config, spec and status, its rw layer, and CRIU's log and
/// statistics (which `checkpointctl inspect --stats` reads).
pub const ARCHIVE_ENTRIES: &[&str] = &[
    "checkpoint/",
    "config.dump",
    "spec.dump",
    "status.dump",
    "status",
    "rootfs-diff.tar",
    "dump.log",
    "stats-dump",
];

/// The top-level entries of a tar listing (`tar -tf`), directories with a trailing slash.
pub fn top_level_entries(listing: &str) -> Vec<String> {
    let mut entries: Vec<String> = listing
        .lines()
        .map(|l| l.trim_start_matches("./"))
        .filter(|l| !l.is_empty() && *l != ".")
        .map(|l| match l.split_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => l.to_string(),
        })
        .collect();
    entries.sort();
    entries.dedup();
    entries
}

/// CheckpointContainer of the running container `id` (the kubelet's checkpoint API): on
/// containerd 1.7 it must answer Unimplemented; on 2.x it must write a root-only archive
/// holding [`ARCHIVE_ENTRIES`] and CRIU's images, which `checkpointctl show` and `inspect`
/// read, and leave the container running with its memory (its token).
pub fn checkpoint_container(
    node: &Node,
    cri: &mut Cri,
    id: &str,
    token: &str,
) -> Result<CheckpointOutcome> {
    let location = format!("/var/lib/revive/checkpoint-{id}.tar");
    let result = cri.checkpoint_container(id, &location, 60);
    if node.version("containerd").unwrap_or("").starts_with("1.") {
        return match result {
            Err(err) => match err.downcast_ref::<CriError>() {
                Some(e) if e.code == tonic::Code::Unimplemented => {
                    Ok(CheckpointOutcome::Unimplemented(e.message.clone()))
                }
                _ => Err(err.context("CheckpointContainer on containerd 1.7")),
            },
            Ok(()) => bail!("containerd 1.7 answered CheckpointContainer, which it lacks"),
        };
    }
    result?;
    let owner = node.run(&["stat", "-c", "%a %U", &location])?;
    ensure!(
        owner.trim() == "600 root",
        "the checkpoint archive is {}, not 600 root",
        owner.trim()
    );
    let listing = node.run(&["tar", "-tf", &location])?;
    let entries = top_level_entries(&listing);
    let missing: Vec<&&str> = ARCHIVE_ENTRIES
        .iter()
        .filter(|e| !entries.iter().any(|have| have == *e))
        .collect();
    ensure!(
        missing.is_empty(),
        "the checkpoint archive lacks {missing:?}; it has {entries:?}"
    );
    ensure!(
        listing
            .lines()
            .any(|l| l.ends_with("checkpoint/pstree.img")),
        "the archive's checkpoint/ has no CRIU images:\n{listing}"
    );
    let show = node.run(&["checkpointctl", "show", &location])?;
    let inspect = node.run(&[
        "checkpointctl",
        "inspect",
        "--stats",
        "--ps-tree",
        &location,
    ])?;
    ensure!(
        inspect.contains("CRIU dump statistics") && inspect.contains("Process tree"),
        "checkpointctl inspect --stats --ps-tree shows no dump statistics or process \
         tree:\n{inspect}"
    );
    let after = cri.exec_sync(id, &["cat", TOKEN_FILE], 30)?;
    ensure!(
        after.stdout.trim() == token,
        "after CheckpointContainer the container holds {:?}, not its token {token}",
        after.stdout
    );
    let kept = format!("checkpoint-{id}.tar");
    node.run(&["mv", &location, &format!("/share/{kept}")])?;
    let archive = std::fs::read(node.share_dir().join(&kept))?;
    Ok(CheckpointOutcome::Archive {
        entries,
        show,
        inspect,
        archive,
    })
}

/// The namespaces of a host-network pod and of its containers as the kubelet asks for them
/// without shareProcessNamespace: the node's network, a pid namespace of each container's
/// own, the pod's ipc.
fn host_network_namespaces() -> api::NamespaceOption {
    api::NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        target_id: String::new(),
        ..Default::default()
    }
}

/// A pod the way the kubelet asks for a `hostNetwork: true` pod: the node's network (and
/// so no CNI), no hostname (there is no private UTS namespace to set it in), a private PID
/// namespace per container, the pod's IPC namespace, logs in `log_directory`.
pub fn host_network_pod(name: &str, uid: &str) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: String::new(),
        log_directory: format!("{POD_LOG_ROOT}/default_{name}_{uid}"),
        labels: [("io.kubernetes.pod.name".to_string(), name.to_string())].into(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(host_network_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The hosts file every container's `/etc/hosts` is mounted from, as the kubelet mounts its
/// own `/var/lib/kubelet/pods/<uid>/etc-hosts` there (and CRI then mounts none of its own);
/// [`Cri::connect`] writes it.
pub const KUBELET_HOSTS: &str = "/var/lib/kubelet/pods/revive-cri/etc-hosts";

/// A container running `command` from `image`, logging to `<name>/0.log` in the pod's log
/// directory (as the kubelet names it), with the kubelet's hosts file at `/etc/hosts`.
pub fn container(name: &str, image: &str, command: &[&str]) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(image_spec(image)),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        mounts: vec![api::Mount {
            container_path: "/etc/hosts".into(),
            host_path: KUBELET_HOSTS.into(),
            readonly: false,
            ..Default::default()
        }],
        labels: [("io.kubernetes.container.name".to_string(), name.to_string())].into(),
        // What the kubelet sends for a container of a host-network pod without
        // shareProcessNamespace: the node's network, a pid namespace of its own, the pod's ipc.
        linux: Some(api::LinuxContainerConfig {
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(host_network_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `key = value` string settings of a TOML text, by section (`[a.'b'.c]` headers kept
/// verbatim, quotes of either kind removed from values). Enough for `containerd config dump`.
pub fn toml_strings(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.replace('\'', "\"");
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
        if let Some(v) = unquoted {
            out.entry(section.clone())
                .or_default()
                .insert(key.trim().to_string(), v.to_string());
        }
    }
    out
}

/// What the node's containerd was configured with, as far as CRI tests care.
#[derive(Debug, Clone, Serialize)]
pub struct CriConfig {
    /// The sandbox image containerd runs pods with (and never pulls when present).
    pub sandbox_image: String,
    /// Runtime handler -> runtime_type.
    pub runtimes: BTreeMap<String, String>,
}

/// Reads the CRI settings from `containerd config dump` in the node (1.7's
/// `plugins."io.containerd.grpc.v1.cri"`, 2.x's `io.containerd.cri.v1.images` and
/// `io.containerd.cri.v1.runtime`).
pub fn cri_config(node: &Node) -> Result<CriConfig> {
    let dump = node.run(&["containerd", "config", "dump"])?;
    parse_cri_config(&dump)
}

pub fn parse_cri_config(dump: &str) -> Result<CriConfig> {
    let sections = toml_strings(dump);
    let sandbox_image = sections
        .get("plugins.\"io.containerd.grpc.v1.cri\"")
        .and_then(|s| s.get("sandbox_image"))
        .or_else(|| {
            sections
                .get("plugins.\"io.containerd.cri.v1.images\".pinned_images")
                .and_then(|s| s.get("sandbox"))
        })
        .filter(|s| !s.is_empty())
        .context("containerd's config names no sandbox image")?
        .clone();
    let mut runtimes = BTreeMap::new();
    for (section, keys) in &sections {
        let handler = section
            .strip_prefix("plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.")
            .or_else(|| {
                section
                    .strip_prefix("plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.")
            });
        if let (Some(handler), Some(runtime_type)) = (handler, keys.get("runtime_type"))
            && !handler.contains('.')
        {
            runtimes.insert(handler.to_string(), runtime_type.clone());
        }
    }
    Ok(CriConfig {
        sandbox_image,
        runtimes,
    })
}

/// The shim binary containerd starts for `runtime_type` (io.containerd.runc.v2 ->
/// containerd-shim-runc-v2).
pub fn shim_binary(runtime_type: &str) -> Result<String> {
    let parts: Vec<&str> = runtime_type.split('.').collect();
    ensure!(
        parts.len() >= 2 && parts.iter().all(|p| !p.is_empty()),
        "runtime type {runtime_type:?} does not name a shim"
    );
    Ok(format!(
        "containerd-shim-{}-{}",
        parts[parts.len() - 2],
        parts[parts.len() - 1]
    ))
}

/// The sandbox ("pause") image: busybox whose command sleeps until SIGTERM or SIGINT (and
/// dies with SIGKILL, as anything does), named `name`.
pub fn pause_image(node: &Node, name: &str) -> Result<Image> {
    let script = format!(": {PAUSE_MARKER}; trap 'exit 0' TERM INT; {PAUSE_SLEEP} & wait");
    busybox_builder(&node.rootfs().path, name)?
        .cmd(&["/bin/sh", "-c", &script])
        .build()
}

/// Imports the sandbox image and `base` (the busybox image) into CRI's namespace and
/// connects to CRI, once it knows both.
pub fn prepare(node: &Node, base: &Image) -> Result<Cri> {
    let config = cri_config(node)?;
    import_image(node, &pause_image(node, &config.sandbox_image)?)?;
    import_image(node, base)?;
    let mut cri = Cri::connect(node)?;
    cri.wait_for_image(&config.sandbox_image)?;
    cri.wait_for_image(BUSYBOX)?;
    Ok(cri)
}

/// Imports an image into the node's containerd in CRI's namespace (unpacked for the
/// default snapshotter).
pub fn import_image(node: &Node, image: &Image) -> Result<()> {
    let file = format!("cri-{}.tar", image.file_stem());
    image.write_archive(&node.share_dir().join(&file))?;
    node.ctr(&[
        "-n",
        NAMESPACE,
        "images",
        "import",
        &format!("/share/{file}"),
    ])?;
    Ok(())
}

/// Host pids (as the node sees them) of processes whose command line matches `pattern`.
pub fn pgrep(node: &Node, pattern: &str) -> Result<Vec<u32>> {
    let out = node.exec_timeout(&["pgrep", "-f", pattern], Duration::from_secs(30))?;
    match out.status.code() {
        Some(0) => String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|p| p.parse().context("pgrep printed a non-pid"))
            .collect(),
        Some(1) => Ok(Vec::new()),
        _ => bail!(
            "pgrep -f {pattern} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

fn parent_pid(node: &Node, pid: u32) -> Result<u32> {
    let status = node.run(&["cat", &format!("/proc/{pid}/status")])?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("no PPid in /proc/{pid}/status"))
}

/// Waits (bounded) until nothing in the node matches any of `patterns`.
fn wait_for_no_processes(node: &Node, patterns: &[&str]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut left = Vec::new();
        for pattern in patterns {
            for pid in pgrep(node, pattern)? {
                let cmdline = node
                    .run(&["cat", &format!("/proc/{pid}/cmdline")])
                    .unwrap_or_default()
                    .replace('\0', " ");
                left.push(format!("{pid} ({})", cmdline.trim()));
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "processes left in the node 30 s after the pod was removed: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The test container's command: draws a token, prints it (to its log) and keeps it in
/// [`TOKEN_FILE`], then waits; SIGTERM makes it exit 0, so a graceful stop is visible in its
/// exit code.
pub const WORKLOAD_SCRIPT: &str = ": revive-cri-workload; t=$(cat /proc/sys/kernel/random/uuid); \
     echo \"$t\" > /tmp/token.new; mv /tmp/token.new /tmp/token; echo \"token $t\"; \
     trap 'echo stopping; exit 0' TERM; while true; do sleep 1 & wait $!; done";

/// Where [`WORKLOAD_SCRIPT`] keeps its token: in the rw layer, and in `/tmp` (mode 1777) so
/// that a workload running as another user than root can write it too.
pub const TOKEN_FILE: &str = "/tmp/token";

/// What the CRI scenario observed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub handler: String,
    pub runtime_type: String,
    pub shim: String,
    pub runtime: String,
    pub sandbox_image: String,
    pub sandbox_image_pinned: bool,
    pub unknown_handler_error: String,
    pub pod_id: String,
    pub container_id: String,
    pub token: String,
    pub exec: ExecOutput,
    pub stats: Stats,
    pub checkpoint: CheckpointOutcome,
    pub stop_exit_code: i32,
    pub stop_reason: String,
    pub log_lines: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "handler {} -> {} ({}), {}",
            self.handler, self.runtime_type, self.shim, self.runtime
        )?;
        writeln!(
            f,
            "sandbox image {} (pinned: {})",
            self.sandbox_image, self.sandbox_image_pinned
        )?;
        writeln!(f, "unknown handler: {}", self.unknown_handler_error)?;
        writeln!(f, "pod {} container {}", self.pod_id, self.container_id)?;
        writeln!(
            f,
            "exec: exit {} stdout {:?} stderr {:?}",
            self.exec.exit_code, self.exec.stdout, self.exec.stderr
        )?;
        writeln!(
            f,
            "stats: {}",
            serde_json::to_string(&self.stats).unwrap_or_default()
        )?;
        writeln!(f, "CheckpointContainer: {}", self.checkpoint)?;
        writeln!(
            f,
            "stopped: exit {} ({})",
            self.stop_exit_code, self.stop_reason
        )?;
        write!(f, "log: {:?}", self.log_lines)
    }
}

/// The kubelet's sequence on `handler`: RunPodSandbox (host network, no hostname),
/// CreateContainer, StartContainer, ExecSync, ContainerStats, StopContainer,
/// RemoveContainer, StopPodSandbox, RemovePodSandbox; checks the outcomes (the pod runs on
/// the handler's shim, ExecSync's output and exit code, the container's log, non-zero
/// memory, a graceful stop) and that nothing is left: no container, no sandbox, no shim,
/// no pause or workload process.
pub fn cri_scenario(node: &Node, handler: &str) -> Result<Report> {
    let config = cri_config(node)?;
    let runtime_type = config
        .runtimes
        .get(handler)
        .with_context(|| {
            format!(
                "containerd's CRI has no runtime handler {handler:?}; it has {:?}",
                config.runtimes
            )
        })?
        .clone();
    let shim = shim_binary(&runtime_type)?;

    import_image(node, &pause_image(node, &config.sandbox_image)?)?;
    import_image(node, &Image::busybox(&node.rootfs().path)?)?;

    let mut cri = Cri::connect(node)?;
    let version = cri.version()?;
    ensure!(
        version.runtime_api_version == "v1",
        "CRI speaks {:?}, expected v1",
        version.runtime_api_version
    );
    let sandbox = cri.wait_for_image(&config.sandbox_image)?;
    cri.wait_for_image(BUSYBOX)?;

    let pod = host_network_pod("revive-cri", "3f1c2a9e-0000-4000-8000-000000000001");
    let log_dir = pod.log_directory.clone();
    node.run(&["mkdir", "-p", &log_dir])?;

    // The handler is really sent and used: one containerd does not know is refused.
    let bogus = format!("{handler}-no-such-handler");
    let unknown_handler_error = match cri.run_pod_sandbox(&pod, &bogus) {
        Ok(id) => bail!("RunPodSandbox on unknown handler {bogus:?} succeeded (sandbox {id})"),
        Err(err) => {
            let text = format!("{err:#}");
            ensure!(
                text.contains(&bogus),
                "RunPodSandbox on unknown handler {bogus:?} failed without naming it: {text}"
            );
            text
        }
    };
    ensure!(
        cri.list_pod_sandboxes()?.is_empty(),
        "a refused RunPodSandbox left a sandbox behind"
    );

    let pod_id = cri.run_pod_sandbox(&pod, handler)?;
    let status = cri.pod_sandbox_status(&pod_id)?;
    ensure!(
        status.state == PodSandboxState::SandboxReady as i32,
        "sandbox {pod_id} is not ready: state {}",
        status.state
    );
    ensure!(
        status.runtime_handler == handler,
        "sandbox {pod_id} runs on handler {:?}, asked for {handler:?}",
        status.runtime_handler
    );
    let network = status
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .map(|o| o.network);
    ensure!(
        network == Some(NamespaceMode::Node as i32),
        "sandbox {pod_id} does not use the node's network: {network:?}"
    );
    let pause_pids = pgrep(node, PAUSE_MARKER)?;
    ensure!(
        pause_pids.len() == 1,
        "expected one pause process in the node, found {pause_pids:?}"
    );
    let shim_pids = pgrep(node, &shim)?;
    let pause_parent = parent_pid(node, pause_pids[0])?;
    ensure!(
        shim_pids.contains(&pause_parent),
        "the pause process's parent {pause_parent} is not a {shim} process ({shim_pids:?})"
    );

    let ctr_config = container("workload", BUSYBOX, &["/bin/sh", "-c", WORKLOAD_SCRIPT]);
    let ctr_id = cri.create_container(&pod_id, &ctr_config, &pod)?;
    let created = cri.container_status(&ctr_id)?;
    ensure!(
        created.state == ContainerState::ContainerCreated as i32,
        "container {ctr_id} is {} after CreateContainer",
        state_name(created.state)
    );
    cri.start_container(&ctr_id)?;
    cri.wait_for_state(&ctr_id, ContainerState::ContainerRunning)?;
    // The workload's `sleep 1 &` forks a copy of the shell, with the same command line
    // until it execs sleep: count only the top of the workload's tree.
    let matching = pgrep(node, WORKLOAD_MARKER)?;
    let mut workload = Vec::new();
    for pid in &matching {
        // A fork that is already gone is no workload.
        let Ok(parent) = parent_pid(node, *pid) else {
            continue;
        };
        if !matching.contains(&parent) {
            workload.push((*pid, parent));
        }
    }
    ensure!(
        workload.len() == 1,
        "expected one workload process, found {workload:?} (of {matching:?})"
    );
    let workload_parent = workload[0].1;
    ensure!(
        pgrep(node, &shim)?.contains(&workload_parent),
        "the workload's parent {workload_parent} is not a {shim} process"
    );

    let token = cri.wait_for_token(&ctr_id)?;

    // ExecSync returns stdout, stderr and the exit code; the exec runs in the container
    // (its token) on the node's network and UTS namespace (the node's hostname).
    let exec = cri.exec_sync(
        &ctr_id,
        &[
            "sh",
            "-c",
            &format!("cat {TOKEN_FILE}; hostname; echo to-stderr >&2; exit 7"),
        ],
        30,
    )?;
    let node_hostname = node.run(&["hostname"])?.trim().to_string();
    ensure!(
        exec.exit_code == 7,
        "ExecSync exit code {} (expected 7): {exec:?}",
        exec.exit_code
    );
    ensure!(
        exec.stdout == format!("{token}\n{node_hostname}\n"),
        "ExecSync stdout {:?}, expected the token and the node's hostname {node_hostname:?}",
        exec.stdout
    );
    ensure!(
        exec.stderr == "to-stderr\n",
        "ExecSync stderr {:?}",
        exec.stderr
    );
    let failing = cri.exec_sync(&ctr_id, &["/no/such/binary"], 30);
    ensure!(
        !matches!(&failing, Ok(out) if out.exit_code == 0),
        "ExecSync of a missing binary succeeded: {failing:?}"
    );

    let stats = cri.container_stats(&ctr_id)?;
    ensure!(
        stats.memory_working_set_bytes.unwrap_or(0) > 0,
        "ContainerStats reports no memory in use: {stats:?}"
    );

    let checkpoint = checkpoint_container(node, &mut cri, &ctr_id, &token)?;

    cri.stop_container(&ctr_id, 30)?;
    let stopped = cri.wait_for_state(&ctr_id, ContainerState::ContainerExited)?;
    ensure!(
        stopped.exit_code == 0,
        "the workload did not exit on SIGTERM (exit code {}, reason {:?}): StopContainer \
         should have sent the stop signal before killing it",
        stopped.exit_code,
        stopped.reason
    );
    let log_file = node
        .logs_dir()
        .join(log_dir.trim_start_matches("/var/log/revive/"))
        .join(&ctr_config.log_path);
    let log = std::fs::read_to_string(&log_file)
        .with_context(|| format!("reading the container log {}", log_file.display()))?;
    let log_lines: Vec<String> = log.lines().map(str::to_string).collect();
    // CRI log lines: "<RFC3339 time> stdout|stderr F|P <text>".
    let logged = |text: &str| {
        log_lines
            .iter()
            .any(|l| l.contains(" stdout F ") && l.ends_with(text))
    };
    ensure!(
        logged(&format!("token {token}")) && logged("stopping"),
        "the container log lacks the workload's output:\n{log}"
    );

    cri.remove_container(&ctr_id)?;
    ensure!(
        cri.list_containers()?.is_empty(),
        "RemoveContainer left containers: {:?}",
        cri.list_containers()?
    );
    cri.stop_pod_sandbox(&pod_id)?;
    cri.remove_pod_sandbox(&pod_id)?;
    let sandboxes = cri.list_pod_sandboxes()?;
    ensure!(
        sandboxes.is_empty(),
        "RemovePodSandbox left sandboxes: {sandboxes:?}"
    );
    ensure!(
        cri.list_containers()?.is_empty(),
        "containers left after RemovePodSandbox"
    );
    let tasks = node.ctr(&["-n", NAMESPACE, "tasks", "ls", "-q"])?;
    ensure!(tasks.trim().is_empty(), "containerd tasks left: {tasks}");
    let containers = node.ctr(&["-n", NAMESPACE, "containers", "ls", "-q"])?;
    ensure!(
        containers.trim().is_empty(),
        "containerd containers left: {containers}"
    );
    wait_for_no_processes(
        node,
        &[
            "containerd-shim",
            PAUSE_MARKER,
            PAUSE_SLEEP,
            WORKLOAD_MARKER,
        ],
    )?;

    Ok(Report {
        handler: handler.into(),
        runtime_type,
        shim,
        runtime: format!("{} {}", version.runtime_name, version.runtime_version),
        sandbox_image: config.sandbox_image,
        sandbox_image_pinned: sandbox.pinned,
        unknown_handler_error,
        pod_id,
        container_id: ctr_id,
        token,
        exec,
        stats,
        checkpoint,
        stop_exit_code: stopped.exit_code,
        stop_reason: stopped.reason,
        log_lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn config_dumps_of_both_versions_parse() {
        let v17 = r#"
version = 2
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.8"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.revive]
      runtime_type = "io.containerd.revive.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.revive.options]
        BinaryName = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"#;
        let c = parse_cri_config(v17).unwrap();
        assert_eq!(c.sandbox_image, "registry.k8s.io/pause:3.8");
        assert_eq!(c.runtimes["revive"], "io.containerd.revive.v2");
        assert_eq!(c.runtimes["runc"], "io.containerd.runc.v2");
        assert_eq!(c.runtimes.len(), 2);

        let v21 = r#"
version = 3
[plugins]
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'registry.k8s.io/pause:3.10'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    sandboxer = 'podsandbox'
"#;
        let c = parse_cri_config(v21).unwrap();
        assert_eq!(c.sandbox_image, "registry.k8s.io/pause:3.10");
        assert_eq!(c.runtimes["runc"], "io.containerd.runc.v2");
        assert!(parse_cri_config("version = 3\n").is_err());
    }

    #[test]
    fn shim_binaries_follow_containerd_naming() {
        assert_eq!(
            shim_binary("io.containerd.runc.v2").unwrap(),
            "containerd-shim-runc-v2"
        );
        assert_eq!(
            shim_binary("io.containerd.revive.v2").unwrap(),
            "containerd-shim-revive-v2"
        );
        assert!(shim_binary("runc").is_err());
    }

    /// Hand-encoded bytes as api.proto defines them decode into our types.
    #[test]
    fn wire_format_matches_api_proto() {
        // ExecSyncResponse: stdout (1, bytes) "a", stderr (2, bytes) "b", exit_code (3) 7.
        let resp =
            api::ExecSyncResponse::decode(&[0x0a, 1, b'a', 0x12, 1, b'b', 0x18, 7][..]).unwrap();
        assert_eq!(
            (resp.stdout, resp.stderr, resp.exit_code),
            (b"a".to_vec(), b"b".to_vec(), 7)
        );
        // RunPodSandboxRequest: runtime_handler is field 2.
        let req = api::RunPodSandboxRequest {
            config: None,
            runtime_handler: "x".into(),
        };
        assert_eq!(req.encode_to_vec(), vec![0x12, 1, b'x']);
        // NamespaceOption.network = NODE (2) is field 1, varint.
        let ns = api::NamespaceOption {
            network: NamespaceMode::Node as i32,
            ..Default::default()
        };
        assert_eq!(ns.encode_to_vec(), vec![0x08, 2]);
        // LinuxContainerSecurityContext: run_as_user (5) an Int64Value of 1000, no_new_privs
        // (11) true, seccomp (15) present and empty: RuntimeDefault.
        let sc = api::LinuxContainerSecurityContext {
            run_as_user: Some(api::Int64Value { value: 1000 }),
            no_new_privs: true,
            seccomp: Some(api::SecurityProfile::default()),
            ..Default::default()
        };
        assert_eq!(
            sc.encode_to_vec(),
            vec![0x2a, 3, 0x08, 0xe8, 0x07, 0x58, 1, 0x7a, 0]
        );
    }
}
