//! The checkpoint-aware snapshotter: [`OverlaySnapshotter`] plus checkpoint images.
//!
//! [`CheckpointSnapshotter`] passes every call to the overlay snapshotter it wraps and
//! adds what [`crate::checkpoint`] describes: before a snapshot is made on a committed
//! snapshot, it recognises a checkpoint image's layer, finds the checkpoint's base image
//! ([`BaseSource`]) and rebuilds the container's root filesystem on it; the mounts of
//! snapshots above a rebuilt layer show the rebuilt root over the base's layers instead of
//! the archive; an active snapshot on one gets the handoff the shim restores from; Cleanup
//! also removes the base layers no rebuilt layer stands on.
//!
//! Concurrency: `rebuilds` is held shared from the moment a base image is looked up until
//! the rebuild that uses it is recorded (or has failed), and exclusively while Cleanup
//! decides which base layers are unused and removes them. So Cleanup never removes a base
//! that a rebuild in flight has found but not yet recorded.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{debug, info};
use revive_proto::types::Mount;

use crate::checkpoint::{self, BaseSource, Layer, Layers, Rebuilt};
use crate::error::SnapshotError;
use crate::overlay::{Overlay, OverlaySnapshotter};
use crate::snapshots::{Info, Kind, Labels, Result, Snapshotter, Usage};
use crate::store::Snapshot;

/// An overlay snapshotter that restores containers created from checkpoint images.
#[derive(Debug, Clone)]
pub struct CheckpointSnapshotter {
    inner: OverlaySnapshotter,
    layers: Arc<Layers>,
    /// Where checkpoint layers find their base images; none: checkpoint images are refused.
    bases: Option<Arc<dyn BaseSource>>,
    /// Held shared from finding a base image to recording the rebuild that uses it, and
    /// exclusively while unused base layers are removed.
    rebuilds: Arc<tokio::sync::RwLock<()>>,
    /// Told when Cleanup has to wait for rebuilds in flight.
    #[cfg(test)]
    cleanup_waits: Option<Arc<tokio::sync::Notify>>,
}

impl CheckpointSnapshotter {
    /// Wraps `inner`, finding checkpoints' base images in `bases` (none: containers are not
    /// created from checkpoint images, and a Prepare on one's layer fails).
    pub fn new(inner: OverlaySnapshotter, bases: Option<Arc<dyn BaseSource>>) -> Self {
        CheckpointSnapshotter {
            inner,
            layers: Arc::default(),
            bases,
            rebuilds: Arc::default(),
            #[cfg(test)]
            cleanup_waits: None,
        }
    }

    /// Before a snapshot is made on `parent`: if `parent` is a checkpoint image's layer not
    /// rebuilt yet, finds its base image and rebuilds its root filesystem. A failure here
    /// fails the Prepare or View, leaving nothing.
    async fn rebuild_if_checkpoint(&self, parent: &str) -> Result<()> {
        let layers = Arc::clone(&self.layers);
        let name = parent.to_string();
        let Some((layer, None)) = self
            .inner
            .run(move |o| checkpoint_layer(o, &layers, &name))
            .await?
        else {
            return Ok(());
        };
        let Some(bases) = &self.bases else {
            return Err(SnapshotError::FailedPrecondition(format!(
                "snapshot {parent:?} is a checkpoint image's layer, and this snapshotter was \
                 started without access to containerd, so it cannot find the checkpoint's base \
                 image"
            )));
        };
        let archive = layer.archive();
        let config =
            tokio::task::spawn_blocking(move || revive_checkpoint::archive::read_config(&archive))
                .await
                .map_err(|e| SnapshotError::Internal(e.to_string()))?
                .map_err(|e| {
                    SnapshotError::InvalidArgument(format!("{e}; refusing to restore from it"))
                })?;
        let refs = config.base_image_refs();
        if refs.is_empty() {
            return Err(SnapshotError::InvalidArgument(format!(
                "checkpoint image: {} names no base image (rootfsImageName, rootfsImage, \
                 rootfsImageRef are empty); it cannot be restored",
                revive_checkpoint::archive::CONFIG_DUMP
            )));
        }
        // Until the rebuild is recorded, the base's layers are in use by nothing Cleanup
        // can see: it waits for this guard.
        let _rebuilding = self.rebuilds.read().await;
        let base = bases.base(&layer.namespace, &refs).await?;
        let layers = Arc::clone(&self.layers);
        self.inner
            .run(move |_| layers.rebuild(&layer, &base).map(drop))
            .await
    }
}

/// The checkpoint layer `parent` is, if it is one: a committed snapshot without a parent
/// whose content is a checkpoint archive. With its rebuild, if done.
fn checkpoint_layer(
    overlay: &Overlay,
    layers: &Layers,
    parent: &str,
) -> Result<Option<(Layer, Option<Arc<Rebuilt>>)>> {
    let entry = overlay.entry(parent)?;
    if entry.info.kind != Kind::Committed || entry.info.parent.is_some() {
        return Ok(None);
    }
    let dir = overlay.snapshot_dir(entry.id);
    let rebuilt = layers.rebuilt(entry.id, &dir);
    if rebuilt.is_none() && !revive_checkpoint::archive::is_checkpoint(&dir.join("fs")) {
        return Ok(None);
    }
    let namespace = checkpoint::namespace_of(parent).ok_or_else(|| {
        SnapshotError::InvalidArgument(format!(
            "snapshot {parent:?} holds a checkpoint, but its name is not one containerd made \
             (<namespace>/<n>/<name>): create containers from checkpoint images through \
             containerd"
        ))
    })?;
    Ok(Some((
        Layer {
            id: entry.id,
            dir,
            namespace: namespace.to_string(),
        },
        rebuilt,
    )))
}

/// The directories committed snapshot `id` contributes to a mount, topmost first: its
/// layer, or for a rebuilt checkpoint layer the rebuilt rootfs over the base's layers (the
/// archive itself is in no mount).
fn layer_dirs(overlay: &Overlay, layers: &Layers, id: u64) -> Vec<PathBuf> {
    let dir = overlay.snapshot_dir(id);
    match layers.rebuilt(id, &dir) {
        Some(rebuilt) => std::iter::once(dir.join(checkpoint::ROOTFS_DIR))
            .chain(rebuilt.base_lowers.iter().cloned())
            .collect(),
        None => vec![overlay.fs_dir(id)],
    }
}

/// The mounts of `snapshot`, rebuilt checkpoint layers shown as their roots.
fn mounts(overlay: &Overlay, layers: &Layers, snapshot: &Snapshot) -> Vec<Mount> {
    let lower: Vec<PathBuf> = snapshot
        .parent_ids
        .iter()
        .flat_map(|&id| layer_dirs(overlay, layers, id))
        .collect();
    overlay.mounts_on(snapshot, &lower)
}

/// Completes the new snapshot directory `dir` of `s` on a rebuilt checkpoint layer: its
/// layer's root gets the owner of the rebuilt root (which stands in for the parent's), and
/// an active snapshot the handoff naming the archive.
fn populate(overlay: &Overlay, layers: &Layers, s: &Snapshot, dir: &Path) -> Result<()> {
    let Some(&parent) = s.parent_ids.first() else {
        return Ok(());
    };
    let parent_dir = overlay.snapshot_dir(parent);
    let Some(rebuilt) = layers.rebuilt(parent, &parent_dir) else {
        return Ok(());
    };
    let rootfs = parent_dir.join(checkpoint::ROOTFS_DIR);
    let meta =
        fs::metadata(&rootfs).map_err(|e| SnapshotError::io("failed to stat", &rootfs, e))?;
    let fs_path = dir.join("fs");
    std::os::unix::fs::lchown(&fs_path, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| SnapshotError::io("failed to chown", &fs_path, e))?;
    if s.kind == Kind::Active {
        checkpoint::write_handoff(dir, Layer::archive_in(&parent_dir), &rebuilt)?;
    }
    Ok(())
}

/// The base layer directories rebuilt checkpoint layers stand on.
fn bases_in_use(overlay: &Overlay, layers: &Layers) -> Result<Vec<PathBuf>> {
    let mut in_use = Vec::new();
    for id in overlay.ids()? {
        if let Some(rebuilt) = layers.rebuilt(id, &overlay.snapshot_dir(id)) {
            in_use.extend(rebuilt.base_lowers.iter().cloned());
        }
    }
    Ok(in_use)
}

#[tonic::async_trait]
impl Snapshotter for CheckpointSnapshotter {
    async fn stat(&self, key: String) -> Result<Info> {
        self.inner.stat(key).await
    }

    async fn update(&self, name: String, labels: Labels, paths: Vec<String>) -> Result<Info> {
        self.inner.update(name, labels, paths).await
    }

    async fn usage(&self, key: String) -> Result<Usage> {
        self.inner.usage(key).await
    }

    async fn mounts(&self, key: String) -> Result<Vec<Mount>> {
        let layers = Arc::clone(&self.layers);
        self.inner
            .run(move |o| Ok(mounts(o, &layers, &o.snapshot(&key)?)))
            .await
    }

    /// Prepare or View: rebuilds a checkpoint parent first, then creates the snapshot with
    /// a handoff if it is an active snapshot on a rebuilt checkpoint layer.
    async fn create(
        &self,
        kind: Kind,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        if let Some(parent) = &parent {
            self.rebuild_if_checkpoint(parent).await?;
        }
        let layers = Arc::clone(&self.layers);
        self.inner
            .run(move |o| {
                let snapshot = o.create_with(kind, &key, parent.as_deref(), labels, |s, dir| {
                    populate(o, &layers, s, dir)
                })?;
                Ok(mounts(o, &layers, &snapshot))
            })
            .await
    }

    async fn commit(
        &self,
        name: String,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<()> {
        self.inner.commit(name, key, parent, labels).await
    }

    async fn remove(&self, key: String) -> Result<()> {
        let layers = Arc::clone(&self.layers);
        self.inner
            .run(move |o| o.remove(&key).map(|id| layers.forget(id)))
            .await
    }

    async fn list(&self, filters: Vec<String>) -> Result<Vec<Info>> {
        self.inner.list(filters).await
    }

    async fn cleanup(&self) -> Result<()> {
        self.inner.cleanup().await?;
        let Some(bases) = self.bases.clone() else {
            return Ok(());
        };
        let _removing = match self.rebuilds.try_write() {
            Ok(guard) => guard,
            Err(_) => {
                debug!("cleanup: waiting for rebuilds in flight");
                #[cfg(test)]
                if let Some(waits) = &self.cleanup_waits {
                    waits.notify_one();
                }
                self.rebuilds.write().await
            }
        };
        let layers = Arc::clone(&self.layers);
        let in_use = self.inner.run(move |o| bases_in_use(o, &layers)).await?;
        let removed = tokio::task::spawn_blocking(move || bases.remove_unused(&in_use))
            .await
            .map_err(|e| SnapshotError::Internal(e.to_string()))??;
        if !removed.is_empty() {
            info!("cleanup: removed {} unused base layers", removed.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
