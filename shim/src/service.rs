//! The shim's `start` and `delete` actions, driven by the `containerd-shim` crate. The daemon
//! itself is [`crate::daemon`]; the Task API is [`crate::task`].

use std::{
    collections::HashMap,
    fs::File,
    io::Write,
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
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use log::{info, warn};
use runc::options::DeleteOpts;
use serde::Deserialize;

use crate::options::{as_runc_options, parse_options};
use crate::runtime::{RuntimeConfig, resolve_binary};
use crate::spec::CONFIG_FILE;
use crate::task::TaskService;

/// Annotations that put containers into one shim, checked in order. Same as
/// containerd's Go runc shim: an explicit group, then the CRI pod sandbox.
const GROUP_LABELS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// File in the bundle holding the shim's address, read back by the daemon on
/// exit to remove its socket.
const ADDRESS_FILE: &str = "address";

/// The type URL containerd registers for the OCI runtime-spec features document.
const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

fn runtime_info(runtime_id: &str, options: Option<&Any>) -> crate::error::Result<RuntimeInfo> {
    let parsed = parse_options(options)?.runtime;
    let config = RuntimeConfig::from_options(&parsed);
    let binary = resolve_binary(config.binary()).ok_or_else(|| {
        crate::error::Error::InvalidArgument(format!(
            "failed to look up the path of {:?}: not found in $PATH",
            config.binary()
        ))
    })?;
    let mut info = RuntimeInfo {
        name: runtime_id.to_string(),
        version: MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: option_env!("REVIVE_REVISION")
                .unwrap_or_default()
                .to_string(),
            ..Default::default()
        }),
        options: MessageField::from_option(options.cloned()),
        ..Default::default()
    };
    // Runtimes without `features` (older runc, youki) leave it out, as in the Go shim.
    match std::process::Command::new(&binary)
        .arg("features")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
    {
        Ok(out)
            if out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok() =>
        {
            info.features = MessageField::some(Any {
                type_url: FEATURES_TYPE_URL.into(),
                value: out.stdout,
                ..Default::default()
            });
        }
        Ok(out) => warn!("{} features: {}", binary.display(), out.status),
        Err(e) => warn!("{} features: {e}", binary.display()),
    }
    Ok(info)
}

/// Exit status reported when the shim is gone without a task exit (SIGKILL).
const KILLED_EXIT_STATUS: u32 = 128 + 9;

/// Entry point the `containerd-shim` crate drives for every action.
pub struct Service {
    exit: Arc<ExitSignal>,
    id: String,
    namespace: String,
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
            namespace: flags.namespace.clone(),
            bundle: flags.bundle.clone(),
        }
    }

    async fn start_shim(&mut self, mut opts: StartOpts) -> Result<String, Error> {
        // The crate puts the daemon into the runtime options' shim cgroup, but reads only
        // containerd.runc.v1.Options; containerd 1.7 sends ours its legacy CreateOptions,
        // CRI the handler's TOML.
        let converted: Vec<_> = opts.extensions.iter().filter_map(as_runc_options).collect();
        opts.extensions.extend(converted);
        // containerd runs `start` in the bundle directory.
        let grouping = grouping(Path::new(CONFIG_FILE), &opts.id).await?;
        let legacy = opts.containerd_version.is_empty();
        let address = spawn(opts, &grouping, Vec::new()).await?;
        write_str_to_file(ADDRESS_FILE, &address).await?;
        if legacy {
            // containerd before 2.3 (no bootstrap protocol) announces the highest task API
            // it speaks in MAX_SHIM_VERSION (2 from both 1.7 and 2.1) and rejects anything
            // higher; the crate would always answer 3. The daemon serves v2 and v3.
            let max = std::env::var("MAX_SHIM_VERSION").ok();
            let reply = legacy_start_reply(&address, max.as_deref());
            let mut stdout = std::io::stdout();
            let written = stdout
                .write_all(reply.as_bytes())
                .and_then(|()| stdout.flush());
            std::process::exit(if written.is_ok() { 0 } else { 1 });
        }
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        let bundle = if self.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&self.bundle)
        };
        info!("cleaning up after shim for {}", self.id);
        // The shim died: make sure the runtime forgets the container (its processes die),
        // with the runtime and state root it was created with.
        match RuntimeConfig::load(&bundle).client(&self.namespace, &bundle) {
            Ok(runtime) => {
                if let Err(e) = runtime
                    .delete(&self.id, Some(&DeleteOpts::new().force(true)))
                    .await
                {
                    info!("runtime delete of {}: {e}", self.id);
                }
            }
            Err(e) => warn!("{e}"),
        }
        if bundle.is_dir() {
            cleanup_bundle(&bundle);
        }
        Ok(killed_response())
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    /// `-info`: who we are, the options containerd passed, and the OCI runtime's features
    /// (`runc features`), which containerd checks container specs against.
    fn runtime_info(runtime_id: &str, options: Option<&Any>) -> Result<RuntimeInfo, Error> {
        runtime_info(runtime_id, options).map_err(|e| Error::Other(e.to_string()))
    }

    /// The crate's publisher reconnects only on some errors and loses every event after a
    /// containerd restart; the service publishes through [`crate::events::Publisher`] instead.
    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let ours = crate::events::Publisher::new(&publisher.address);
        TaskService::new(&self.namespace, Some(ours), self.exit.clone()).await
    }
}

/// The `start` reply for containerd before 2.3: the task API version containerd allows
/// (`MAX_SHIM_VERSION`, 2 if unset or unreadable, at most 3) over ttrpc.
fn legacy_start_reply(address: &str, max_shim_version: Option<&str>) -> String {
    let version = max_shim_version
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(2)
        .clamp(2, 3);
    serde_json::json!({ "version": version, "address": address, "protocol": "ttrpc" }).to_string()
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

/// Best-effort cleanup of what the shim may have left in `bundle`: the container rootfs
/// mount and a restored container's stand-ins. A bundle that is already gone is not an
/// error.
fn cleanup_bundle(bundle: &Path) {
    crate::standins::remove(&bundle.join(crate::standins::DIR));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn service(bundle: &Path) -> Service {
        Service {
            exit: Arc::new(ExitSignal::default()),
            id: "c1".to_string(),
            namespace: "revive-unit-test".to_string(),
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

    #[test]
    fn legacy_reply_follows_max_shim_version() {
        let version = |max: Option<&str>| {
            let reply: serde_json::Value =
                serde_json::from_str(&legacy_start_reply("unix:///run/x", max)).unwrap();
            assert_eq!(reply["address"], "unix:///run/x");
            assert_eq!(reply["protocol"], "ttrpc");
            reply["version"].as_u64().unwrap()
        };
        assert_eq!(version(None), 2);
        assert_eq!(version(Some("2")), 2);
        assert_eq!(version(Some("3")), 3);
        assert_eq!(version(Some("9")), 3);
        assert_eq!(version(Some("x")), 2);
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
}
