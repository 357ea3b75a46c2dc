//! The OCI runtime binary (runc by default, crun when `Options.binary_name` says so),
//! driven through the `runc` crate.
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

use crate::error::{Error, Result};

/// Where runc keeps container state for a namespace (as containerd's Go shim does).
pub const RUNTIME_ROOT: &str = "/run/containerd/runc";

/// Runtime settings from `containerd.runc.v1.Options`.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Binary name or path; empty means runc.
    pub binary: String,
    /// State root; empty means [`RUNTIME_ROOT`]/<namespace>.
    pub root: String,
    pub systemd_cgroup: bool,
}

impl RuntimeConfig {
    pub fn binary(&self) -> &str {
        if self.binary.is_empty() {
            "runc"
        } else {
            &self.binary
        }
    }

    pub fn root(&self, namespace: &str) -> PathBuf {
        if self.root.is_empty() {
            Path::new(RUNTIME_ROOT).join(namespace)
        } else {
            PathBuf::from(&self.root)
        }
    }

    /// A client for this runtime.
    pub fn client(&self, namespace: &str) -> Result<Runc> {
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
            .systemd_cgroup(self.systemd_cgroup);
        opts.custom_spawner(Arc::new(MonitorSpawner));
        opts.build()
            .map_err(|e| Error::Internal(format!("building the runtime client: {e}")))
    }
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
                return exit.exit_code;
            }
        }
        -1
    };
    let (out, err, code) = tokio::join!(read_out, read_err, wait);
    // The reaper already collected the child; dropping the handle must not wait again.
    drop(child);
    debug!("runtime command {pid} exited with {code}");
    // exit_code is the exit status, or 128+signal: encode it the way wait(2) does.
    let raw = if code > 128 { code - 128 } else { code << 8 };
    Ok((ExitStatus::from_raw(raw), pid, out, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_resolve_by_name_and_path() {
        assert!(resolve_binary("sh").is_some());
        assert!(resolve_binary("/bin/sh").is_some());
        assert!(resolve_binary("no-such-runtime-binary").is_none());
        assert!(resolve_binary("/nonexistent/runc").is_none());
    }

    #[test]
    fn defaults_follow_containerd() {
        let config = RuntimeConfig::default();
        assert_eq!(config.binary(), "runc");
        assert_eq!(
            config.root("k8s.io"),
            PathBuf::from("/run/containerd/runc/k8s.io")
        );
        let missing = RuntimeConfig {
            binary: "no-such-runc".into(),
            ..Default::default()
        };
        let err = missing.client("default").unwrap_err().to_string();
        assert!(
            err.contains("no-such-runc") && err.contains("BinaryName"),
            "{err}"
        );
    }
}
