//! The `Snapshotter` contract: containerd's `snapshots.Snapshotter`
//! (`core/snapshots/snapshotter.go`), in Rust types.
//!
//! [`crate::server`] serves any implementation over gRPC and never looks behind it.
//! Two implement it: [`crate::overlay::OverlaySnapshotter`], a plain overlayfs
//! snapshotter, and [`crate::restore::CheckpointSnapshotter`], which wraps it and restores
//! containers created from checkpoint images. Errors are [`SnapshotError`]s; their kinds
//! are the contract's (`NotFound`, `AlreadyExists`, `FailedPrecondition`,
//! `InvalidArgument`), which the server maps to gRPC codes in one place.

use revive_proto::types::Mount;

use crate::error::SnapshotError;
pub use crate::store::{Info, Kind, Labels, Usage};

/// Result of a snapshot operation.
pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

/// Allocates, snapshots and mounts filesystem changesets, built up as a tree of snapshots.
///
/// A snapshot is a filesystem state with at most one parent, which is a committed
/// snapshot; an empty parent is an empty directory. Active snapshots (from
/// [`Snapshotter::prepare`]) are writable and may be committed; views (from
/// [`Snapshotter::view`]) are read-only and may not; committed snapshots are immutable
/// and are the only ones that can be parents.
#[tonic::async_trait]
pub trait Snapshotter: Send + Sync + 'static {
    /// The info of the snapshot `key` (the key of an active snapshot or view, or the name
    /// of a committed one): for parent resolution, existence checks and its kind.
    async fn stat(&self, key: String) -> Result<Info>;

    /// Changes the labels of snapshot `name`, the only mutable part of a snapshot:
    /// `labels` replaces all of them when `paths` is empty or holds `labels`; the path
    /// `labels.<key>` sets that one label from `labels`, or removes it if `labels` lacks it.
    /// Any other path is `InvalidArgument`. Returns the updated info.
    async fn update(&self, name: String, labels: Labels, paths: Vec<String>) -> Result<Info>;

    /// The resources snapshot `key` uses, excluding its parents'. For active snapshots
    /// this may take time proportional to their size.
    async fn usage(&self, key: String) -> Result<Usage>;

    /// The mounts of active snapshot or view `key`, as [`Snapshotter::prepare`] or
    /// [`Snapshotter::view`] returned them. A committed snapshot has none
    /// (`FailedPrecondition`).
    async fn mounts(&self, key: String) -> Result<Vec<Mount>>;

    /// Creates the active snapshot `key` on the committed snapshot `parent` (none: an
    /// empty directory) and returns the mounts that show it, the parent's content first.
    /// Changes made through them belong to `key` until [`Snapshotter::commit`] or
    /// [`Snapshotter::remove`]. A second Prepare or View of one key fails
    /// (`AlreadyExists`); a parent that is not committed is `InvalidArgument`, a missing
    /// one `NotFound`.
    async fn prepare(
        &self,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent, labels).await
    }

    /// [`Snapshotter::prepare`] for a read-only view of `parent`: its mounts are
    /// read-only and it can never be committed, only removed.
    async fn view(
        &self,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent, labels).await
    }

    /// [`Snapshotter::prepare`] (`kind` [`Kind::Active`]) or [`Snapshotter::view`]
    /// ([`Kind::View`]); the one method implementations provide for both.
    async fn create(
        &self,
        kind: Kind,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<Vec<Mount>>;

    /// Turns the active snapshot `key` into the committed snapshot `name` with the labels
    /// `labels`; `key` no longer exists afterwards. `parent` may give a parent to a
    /// snapshot prepared without one, never change an existing one.
    async fn commit(
        &self,
        name: String,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<()>;

    /// Removes snapshot `key` and what it holds. A snapshot that is a parent is kept
    /// (`FailedPrecondition`) until its children are removed.
    async fn remove(&self, key: String) -> Result<()>;

    /// The infos of every snapshot matching `filters` (containerd's filter language; a
    /// snapshot matches if it matches any of them, or there are none); a filter that does
    /// not parse is `InvalidArgument`.
    async fn list(&self, filters: Vec<String>) -> Result<Vec<Info>>;

    /// Removes what removed snapshots left behind (containerd's `Cleaner`).
    async fn cleanup(&self) -> Result<()>;
}
