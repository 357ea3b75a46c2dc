//! revive's containerd proxy snapshotter.
//!
//! containerd talks to it over gRPC (`containerd.services.snapshots.v1`) on a
//! unix socket configured under `proxy_plugins` in its config.
//!
//! Layout: [`config`] holds the settings, [`socket`] owns the listening
//! socket, [`server`] implements the gRPC service and [`Snapshotter`] ties
//! them together.

pub mod config;
pub mod error;
pub mod server;
pub mod socket;

use std::future::Future;

use log::{info, warn};
use tokio_stream::wrappers::UnixListenerStream;

pub use config::Config;
pub use error::{Error, Result};
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
}

impl Snapshotter {
    /// Creates the root directory (0700) and binds the socket (0600).
    ///
    /// Must be called within a tokio runtime.
    pub fn bind(config: Config) -> Result<Self> {
        socket::create_private_dir(&config.root)?;
        let socket = BoundSocket::bind(&config.address)?;
        Ok(Snapshotter { config, socket })
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
        let service = SnapshotService::new(&self.config.root);

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
        // Dropping `self.socket` removes the socket file.
        drop(self.socket);
        info!("stopped");
        Ok(())
    }
}
