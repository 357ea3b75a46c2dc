//! Errors of the snapshotter process (startup, socket handling, serving).

use std::io;
use std::path::PathBuf;

/// A filesystem or socket operation on a path failed: `<context> <path>: <cause>`.
#[derive(Debug, thiserror::Error)]
#[error("{context} {}: {source}", .path.display())]
pub struct PathError {
    /// What was being done, e.g. "failed to create root directory".
    pub context: &'static str,
    /// The path involved.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl PathError {
    pub(crate) fn new(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        PathError {
            context,
            path: path.into(),
            source,
        }
    }
}

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
    #[error(transparent)]
    Io(#[from] PathError),

    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),

    /// The snapshot store could not be opened.
    #[error("failed to open snapshot store: {0}")]
    Store(#[from] SnapshotError),
}

impl Error {
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io(PathError::new(context, path, source))
    }
}

/// Why a snapshot operation failed.
///
/// The first variants are the caller's fault and carry a message naming the
/// snapshot; `server` maps each of them to the gRPC code containerd turns
/// into the matching `errdefs` error (e.g. `NotFound` -> `ErrNotFound`, which
/// containerd's unpacker and garbage collector rely on). The rest are
/// internal failures.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot (or its parent) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A snapshot with that key or name already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The snapshot is in the wrong state for the operation (e.g. committing
    /// a committed snapshot, removing one with children).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request itself is malformed (bad filter, unknown update field,
    /// parent that is not committed, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A worker thread of the operation failed (panicked or was cancelled); the message
    /// says which.
    #[error("{0}")]
    Internal(String),
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Db(#[from] redb::Error),
    /// A stored record could not be decoded or encoded.
    #[error("corrupt metadata record {key:?}: {source}")]
    Corrupt {
        /// Key of the record.
        key: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A filesystem operation failed.
    #[error(transparent)]
    Io(#[from] PathError),
}

impl SnapshotError {
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SnapshotError::Io(PathError::new(context, path, source))
    }
}

/// redb reports each stage (open, transaction, table, storage, commit) with
/// its own error type; they all convert into `redb::Error`.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for SnapshotError {
            fn from(e: $t) -> Self {
                SnapshotError::Db(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
