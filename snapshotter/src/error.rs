//! Errors of the snapshotter process (startup, socket handling, serving).

use std::io;
use std::path::PathBuf;

/// Errors that stop the snapshotter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process accepts connections on the socket we were asked to use.
    #[error(
        "another process is already listening on {}; refusing to replace its socket \
         (is another revive-snapshotter running?)",
        .0.display()
    )]
    AlreadyListening(PathBuf),

    /// Something other than a socket sits at the socket path.
    #[error("{} exists and is not a unix socket; refusing to remove it", .0.display())]
    NotASocket(PathBuf),

    /// A filesystem or socket operation failed.
    #[error("{context} {}: {source}", .path.display())]
    Io {
        /// What we were doing, e.g. "failed to create root directory".
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl Error {
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
