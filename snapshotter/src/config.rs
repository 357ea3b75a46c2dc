//! Runtime configuration of the snapshotter.

use std::path::PathBuf;
use std::time::Duration;

/// Default unix socket containerd connects to (`proxy_plugins` address).
pub const DEFAULT_ADDRESS: &str = "/run/revive/snapshotter.sock";
/// Default directory holding snapshot data and metadata.
pub const DEFAULT_ROOT: &str = "/var/lib/revive/snapshotter";
/// Default socket of containerd's own gRPC API (images, content), from which base images
/// of checkpoints are read.
pub const DEFAULT_CONTAINERD_SOCKET: &str = crate::containerd::DEFAULT_SOCKET;
/// Where containerd's CRI plugin is usually told to read registry hosts (`config_path`).
pub const DEFAULT_REGISTRY_HOSTS_DIR: &str = "/etc/containerd/certs.d";
/// How long a graceful shutdown waits for open gRPC connections to close.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Settings needed to run the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Path of the unix socket to serve gRPC on.
    pub address: PathBuf,
    /// Root directory for snapshot state.
    pub root: PathBuf,
    /// Upper bound for waiting on connections during shutdown.
    pub shutdown_grace: Duration,
    /// containerd's own gRPC socket (to read checkpoints' base images).
    pub containerd_socket: PathBuf,
    /// Registries (`host[:port]`) a checkpoint's base image missing from containerd is
    /// pulled from; none by default, since the name comes from the untrusted checkpoint.
    pub pull_bases_from: Vec<String>,
    /// The registry hosts configuration those pulls use (`hosts.toml` per registry).
    pub registry_hosts_dir: PathBuf,
}

impl Config {
    /// Configuration with the given socket and root, and defaults for the rest.
    pub fn new(address: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Config {
            address: address.into(),
            root: root.into(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            containerd_socket: PathBuf::from(DEFAULT_CONTAINERD_SOCKET),
            pull_bases_from: Vec::new(),
            registry_hosts_dir: PathBuf::from(DEFAULT_REGISTRY_HOSTS_DIR),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new(DEFAULT_ADDRESS, DEFAULT_ROOT)
    }
}
