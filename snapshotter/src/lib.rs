//! revive's containerd proxy snapshotter.
//!
//! containerd talks to it over gRPC (`containerd.services.snapshots.v1`) on a
//! unix socket configured under `proxy_plugins` in its config.
//!
//! It is an overlayfs snapshotter that behaves like containerd's built-in
//! one (same directory layout idea, same mounts, same error codes), so
//! containerd can use it as its only snapshotter; containerd performs the
//! mounts it returns. State lives under the root directory:
//! `metadata.redb` (snapshot records, see [`store`]) and
//! `snapshots/<id>/{fs,work}` (the layers, see [`overlay`]); both survive
//! restarts.
//!
//! Layout: [`config`] holds the settings, [`socket`] owns the listening
//! socket, [`snapshots`] states containerd's snapshotter contract,
//! [`store`] keeps the metadata, [`overlay`] is the plain overlayfs
//! snapshotter (directories, mounts, disk usage), [`filter`] implements
//! containerd's `List` filter language, [`restore`] wraps the overlay
//! snapshotter to restore checkpoint images (with [`checkpoint`], [`base`]
//! and [`containerd`]), [`server`] serves any snapshotter over gRPC, and
//! [`Snapshotter`] ties everything together.

pub mod base;
pub mod checkpoint;
pub mod config;
pub mod containerd;
pub mod error;
pub mod filter;
pub mod overlay;
pub mod restore;
pub mod server;
pub mod snapshots;
pub mod socket;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use log::{info, warn};
use tokio_stream::wrappers::UnixListenerStream;

use checkpoint::BaseSource;
pub use config::Config;
pub use error::{Error, Result, SnapshotError};
use overlay::OverlaySnapshotter;
use restore::CheckpointSnapshotter;
use server::SnapshotService;
use socket::BoundSocket;

/// Version reported by `--version` and the startup log line.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A snapshotter whose socket is bound and ready to serve.
///
/// Binding is separate from serving so that startup errors (such as another
/// instance owning the socket) surface before anything runs, and so callers
/// know the socket accepts connections once [`Snapshotter::bind`] returns.
#[derive(Debug)]
pub struct Snapshotter {
    config: Config,
    socket: BoundSocket,
    service: SnapshotService<CheckpointSnapshotter>,
}

impl Snapshotter {
    /// Creates the root directory (0700), binds the socket (0600) and opens
    /// the snapshot state under the root.
    ///
    /// The metadata database is locked by one process at a time, so a
    /// second instance on the same root fails here (and removes the socket
    /// it just bound).
    ///
    /// Must be called within a tokio runtime.
    pub fn bind(config: Config) -> Result<Self> {
        socket::create_private_dir(&config.root)?;
        let bases = base::Bases::open(&config.root)
            .map_err(|e| Error::Store(SnapshotError::FailedPrecondition(e.to_string())))?;
        let client = containerd::Client::new(&config.containerd_socket);
        let pulls = checkpoint::Pulls {
            from: config.pull_bases_from.clone(),
            hosts_dir: config.registry_hosts_dir.clone(),
        };
        let source: Arc<dyn BaseSource> =
            Arc::new(checkpoint::ContainerdBases::new(client, bases).pulling(pulls));
        Self::bind_with_bases(config, Some(source))
    }

    /// [`Snapshotter::bind`], finding checkpoints' base images in `bases` (none: containers
    /// are not created from checkpoint images).
    pub fn bind_with_bases(config: Config, bases: Option<Arc<dyn BaseSource>>) -> Result<Self> {
        socket::create_private_dir(&config.root)?;
        let socket = BoundSocket::bind(&config.address)?;
        let overlay = OverlaySnapshotter::open(&config.root)?;
        let service = SnapshotService::new(CheckpointSnapshotter::new(overlay, bases));
        Ok(Snapshotter {
            config,
            socket,
            service,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves gRPC until `shutdown` completes, then stops accepting
    /// connections, waits up to `shutdown_grace` for open ones to finish and
    /// removes the socket file.
    pub async fn serve<F>(mut self, shutdown: F) -> Result<()>
    where
        F: Future<Output = ()>,
    {
        let listener = self
            .socket
            .take_listener()
            .expect("listener is only taken here");
        let service = self.service;

        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            info!("shutting down");
            let _ = stopping_tx.send(());
        };
        let serve = tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), signal);
        let grace = self.config.shutdown_grace;
        let deadline = async move {
            match stopping_rx.await {
                Ok(()) => tokio::time::sleep(grace).await,
                // The server ended on its own; let that branch report it.
                Err(_) => std::future::pending().await,
            }
        };

        tokio::select! {
            res = serve => res?,
            () = deadline => warn!(
                "connections still open after {grace:?}; closing them"
            ),
        }
        // Dropping `self.socket` removes the socket file. The service (and
        // with it the metadata database) was dropped with the server.
        drop(self.socket);
        info!("stopped");
        Ok(())
    }
}
