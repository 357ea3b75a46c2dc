//! Base images unpacked by the snapshotter itself, for the root filesystems of containers
//! restored from checkpoint images.
//!
//! A checkpoint holds only the difference between the container's root filesystem and its
//! image (the *base* image). The base image is in containerd (its images and content
//! store) but not necessarily unpacked into this snapshotter, and snapshots containerd
//! knows of may be garbage-collected at any time. So [`Bases`] unpacks base images itself,
//! into directories containerd never sees:
//!
//! ```text
//! <snapshotter root>/bases/            0700
//!     <chain ID hex>/                  0700, one per layer, keyed like containerd's
//!         fs/                          0755 root: the layer's diff, overlayfs-style
//!     new-XXXXXX/                      being unpacked (or removed); never used
//! ```
//!
//! Each layer directory holds only its own layer's diff, with OCI whiteouts turned into
//! overlayfs ones (0:0 character devices, `trusted.overlay.opaque` on opaque directories),
//! so the layers stacked as overlay lower directories give the image's file system.
//! A layer directory is built in `new-*`, complete and verified, then renamed into place;
//! once there it never changes and is shared by every container using the layer. Layers
//! are unpacked one at a time per chain ID within the process (a lock per chain ID), and a
//! lost rename race (another unpack of the same layer finished first) just discards the
//! copy.
//!
//! Unpacking streams the layer blob from containerd, decompresses it (gzip, zstd or none,
//! by media type), checks that the uncompressed stream's sha256 is the layer's diff ID
//! from the image config (which containerd's image record names by digest, through the
//! manifest, both checked by [`crate::containerd`]), and extracts it with
//! [`revive_checkpoint::extract`], safely (nothing beneath the layer directory is followed,
//! sizes are bounded by [`layer_limits`]). What extraction keeps, deliberately, as
//! containerd does for the images it unpacks:
//!
//! - owners (uid/gid) and setuid/setgid bits: images legitimately hold setuid programs
//!   (`su`, `passwd`, `ping`);
//! - device nodes: a few images ship some in `/dev`; whether a container may open one is
//!   decided by its devices cgroup, not by the node's presence. The checkpoint only names
//!   the image; the image itself is one the node's operator pulled or imported, which
//!   containerd would unpack the same way for any container.
//!
//! Not kept: extended attributes (file capabilities such as `security.capability` on
//! `ping`, SELinux labels), which the extractor does not read; hard links across layers
//! (impossible in any layer format).
//!
//! Directories a layer needs but does not list get the mode and owner of the same
//! directory in the layers below, as containerd's applier does.

use std::collections::{HashMap, HashSet};
use std::fs::{self, DirBuilder, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use log::{debug, info, warn};
use revive_checkpoint::extract::{self, ExtractError, Limits, Options};
use sha2::{Digest, Sha256};

use crate::containerd::{BaseImage, Client, Compression, ContainerdError, ImageRef, Layer};
use crate::error::PathError;

/// The directory beneath the snapshotter's root that holds the base layers.
pub const BASES_DIR: &str = "bases";
/// Mode of `bases/` and of each `<chain ID>/` in it.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of a layer's `fs` directory (the root of a container's file system).
pub const LAYER_FS_MODE: u32 = 0o755;
/// Bytes of one layer's uncompressed tar stream.
pub const MAX_LAYER_BYTES: u64 = 64 << 30;
/// Bytes of one file in a layer.
pub const MAX_LAYER_FILE_BYTES: u64 = 32 << 30;
/// Entries (files, directories, links...) of one layer.
pub const MAX_LAYER_ENTRIES: u64 = 4_000_000;
/// Prefix of the directories being built or removed.
const TEMP_PREFIX: &str = "new-";

/// The extraction limits for a base image layer: generous (these are images the node
/// already runs) but bounded.
pub fn layer_limits() -> Limits {
    Limits {
        max_entries: MAX_LAYER_ENTRIES,
        max_total_bytes: MAX_LAYER_BYTES,
        max_file_bytes: MAX_LAYER_FILE_BYTES,
        ..Limits::default()
    }
}

/// How base layers are extracted: see the module's documentation.
pub fn layer_options() -> Options {
    Options {
        limits: layer_limits(),
        allow_devices: true,
        keep_setid: true,
        keep_owner: true,
        overlay_whiteouts: true,
    }
}

/// Why a base image could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// containerd does not have the image or its content, or cannot be reached.
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    /// A layer could not be unpacked. Nothing of it was kept.
    #[error("layer {index} ({digest}) of image {image}: {reason}")]
    Layer {
        image: String,
        /// From 1, bottom first.
        index: usize,
        digest: String,
        reason: String,
    },
    /// A filesystem operation on the snapshotter's own directories failed.
    #[error(transparent)]
    Io(#[from] PathError),
}

impl BaseError {
    fn io(context: &'static str, path: &Path, source: io::Error) -> Self {
        BaseError::Io(PathError::new(context, path, source))
    }
}

/// Base image layers unpacked beneath `<snapshotter root>/bases`.
#[derive(Debug)]
pub struct Bases {
    dir: PathBuf,
    /// One lock per chain ID (hex) being unpacked or removed.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Bases {
    /// Opens (creating it 0700 if needed) `<snapshotter_root>/bases` and removes what
    /// interrupted unpacks and removals left there. Only the one process that owns the
    /// snapshotter's root may do this (the snapshotter's metadata lock ensures there is
    /// one).
    pub fn open(snapshotter_root: &Path) -> Result<Bases, BaseError> {
        let dir = snapshotter_root.join(BASES_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR_MODE)
            .create(&dir)
            .map_err(|e| BaseError::io("failed to create", &dir, e))?;
        fs::set_permissions(&dir, Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(|e| BaseError::io("failed to set the mode of", &dir, e))?;
        for entry in fs::read_dir(&dir).map_err(|e| BaseError::io("failed to read", &dir, e))? {
            let entry = entry.map_err(|e| BaseError::io("failed to read", &dir, e))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let path = entry.path();
                match fs::remove_dir_all(&path) {
                    Ok(()) => info!("removed the leftover {}", path.display()),
                    Err(e) => warn!("failed to remove the leftover {}: {e}", path.display()),
                }
            }
        }
        Ok(Bases {
            dir,
            locks: Mutex::default(),
        })
    }

    /// `<snapshotter root>/bases`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the layer with chain ID `chain_id` (`sha256:<hex>` or `<hex>`),
    /// `bases/<hex>/fs`, whether or not it exists; None if `chain_id` is not a sha256.
    pub fn layer_dir(&self, chain_id: &str) -> Option<PathBuf> {
        let hex = chain_hex(chain_id)?;
        Some(self.dir.join(hex).join("fs"))
    }

    /// The chain IDs (`sha256:<hex>`) of the layers unpacked.
    pub fn list(&self) -> Result<Vec<String>, BaseError> {
        let mut chain_ids = Vec::new();
        let entries =
            fs::read_dir(&self.dir).map_err(|e| BaseError::io("failed to read", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| BaseError::io("failed to read", &self.dir, e))?;
            if let Some(hex) = entry.file_name().to_str().and_then(chain_hex) {
                chain_ids.push(format!("sha256:{hex}"));
            }
        }
        chain_ids.sort();
        Ok(chain_ids)
    }

    fn lock(&self, hex: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if locks.len() > 256 {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(hex.to_string()).or_default().clone()
    }

    /// Makes sure the layers of image `image` (for this machine's platform) are unpacked,
    /// fetching from containerd what is missing; returns their directories topmost first,
    /// ready to be overlay lower directories. Resolves the image with
    /// [`Client::image_layers`]; see [`Bases::ensure_image`] to keep its chain IDs.
    pub async fn ensure(
        &self,
        client: &Client,
        namespace: &str,
        image: &ImageRef,
    ) -> Result<Vec<PathBuf>, BaseError> {
        let image = client.image_layers(namespace, image).await?;
        self.ensure_image(client, namespace, &image).await
    }

    /// [`Bases::ensure`] for an image already resolved.
    pub async fn ensure_image(
        &self,
        client: &Client,
        namespace: &str,
        image: &BaseImage,
    ) -> Result<Vec<PathBuf>, BaseError> {
        let mut dirs: Vec<PathBuf> = Vec::with_capacity(image.layers.len());
        for (i, layer) in image.layers.iter().enumerate() {
            let failed = |reason: String| BaseError::Layer {
                image: image.name.clone(),
                index: i + 1,
                digest: layer.digest.clone(),
                reason,
            };
            let hex = chain_hex(&layer.chain_id)
                .ok_or_else(|| failed(format!("invalid chain ID {:?}", layer.chain_id)))?;
            let top = self.dir.join(hex);
            let fs_dir = top.join("fs");
            let lock = self.lock(hex);
            let _guard = lock.lock().await;
            match fs::symlink_metadata(&fs_dir) {
                Ok(meta) if meta.is_dir() => {
                    debug!("layer {} of {} is unpacked already", i + 1, image.name);
                }
                Ok(_) => return Err(corrupt(&fs_dir)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if fs::symlink_metadata(&top).is_ok() {
                        return Err(corrupt(&top));
                    }
                    // The layers below, topmost first, for the attributes of the
                    // directories this layer does not list.
                    let lowers: Vec<PathBuf> = dirs.iter().rev().cloned().collect();
                    self.unpack(client, namespace, image, i, layer, hex, lowers)
                        .await?;
                }
                Err(e) => return Err(BaseError::io("failed to inspect", &fs_dir, e)),
            }
            dirs.push(fs_dir);
        }
        dirs.reverse();
        Ok(dirs)
    }

    /// Unpacks layer `i` (from 0) of `image` into `bases/<hex>`.
    #[allow(clippy::too_many_arguments)]
    async fn unpack(
        &self,
        client: &Client,
        namespace: &str,
        image: &BaseImage,
        i: usize,
        layer: &Layer,
        hex: &str,
        lowers: Vec<PathBuf>,
    ) -> Result<(), BaseError> {
        let failed = |reason: String| BaseError::Layer {
            image: image.name.clone(),
            index: i + 1,
            digest: layer.digest.clone(),
            reason,
        };
        let compression = layer.compression().map_err(|e| failed(e.to_string()))?;
        let what = format!("layer {} of image {}", i + 1, image.name);
        let blob = client
            .read_blob(namespace, &layer.digest)
            .await
            .map_err(|e| e.describing_blob(what.clone()))?;
        if blob.size != layer.size {
            return Err(failed(format!(
                "the content store has {} bytes, the manifest says {}",
                blob.size, layer.size
            )));
        }
        info!(
            "unpacking {what} ({}, {} bytes) into {}",
            layer.digest,
            layer.size,
            self.dir.join(hex).display()
        );
        let reader = tokio_util::io::SyncIoBridge::new(blob.reader);
        let job = Unpack {
            bases: self.dir.clone(),
            hex: hex.to_string(),
            diff_id: layer.diff_id.clone(),
            compression,
            lowers,
        };
        let outcome = tokio::task::spawn_blocking(move || job.run(reader))
            .await
            .map_err(|e| failed(format!("the unpacking thread failed: {e}")))?;
        match outcome {
            Ok(Unpacked::New { entries, bytes }) => {
                info!("unpacked {what}: {entries} entries, {bytes} bytes");
                Ok(())
            }
            Ok(Unpacked::AlreadyThere) => {
                info!("{what} was unpacked by someone else meanwhile; discarded this copy");
                Ok(())
            }
            Err(reason) => Err(failed(reason)),
        }
    }

    /// Removes the unpacked layers whose chain ID (`sha256:<hex>` or `<hex>`) is not in
    /// `in_use`; returns the chain IDs removed. A layer being unpacked or used by a
    /// running [`Bases::ensure`] is kept. Blocking: call it off the async threads.
    pub fn remove_unused(&self, in_use: &HashSet<String>) -> Result<Vec<String>, BaseError> {
        let keep: HashSet<&str> = in_use.iter().filter_map(|c| chain_hex(c)).collect();
        let mut removed = Vec::new();
        for chain_id in self.list()? {
            let hex = &chain_id["sha256:".len()..];
            if keep.contains(hex) {
                continue;
            }
            let lock = self.lock(hex);
            let Ok(_guard) = lock.try_lock() else {
                debug!("layer {chain_id} is busy; not removing it");
                continue;
            };
            // Out of the way first, so that a half-removed layer is never used.
            let from = self.dir.join(hex);
            let to = self.dir.join(format!("{TEMP_PREFIX}rm-{hex}"));
            if let Err(e) = fs::rename(&from, &to) {
                if e.kind() == io::ErrorKind::NotFound {
                    continue;
                }
                return Err(BaseError::io("failed to move aside", &from, e));
            }
            fs::remove_dir_all(&to).map_err(|e| BaseError::io("failed to remove", &to, e))?;
            info!("removed the unused base layer {chain_id}");
            removed.push(chain_id);
        }
        Ok(removed)
    }
}

/// The hex digits of a chain ID written `sha256:<hex>` or `<hex>`, if it is one.
fn chain_hex(chain_id: &str) -> Option<&str> {
    let hex = chain_id.strip_prefix("sha256:").unwrap_or(chain_id);
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

fn corrupt(path: &Path) -> BaseError {
    BaseError::io(
        "a base layer is incomplete (not made by revive-snapshotter?); remove it:",
        path,
        io::Error::from(io::ErrorKind::InvalidData),
    )
}

/// What an unpack did.
enum Unpacked {
    New {
        entries: u64,
        bytes: u64,
    },
    /// Another unpack of the same layer was renamed into place first.
    AlreadyThere,
}

/// One layer's unpack, run on a blocking thread.
struct Unpack {
    bases: PathBuf,
    hex: String,
    diff_id: String,
    compression: Compression,
    lowers: Vec<PathBuf>,
}

impl Unpack {
    /// Unpacks `blob` into `bases/new-*/fs`, checks it, renames `new-*` to `bases/<hex>`.
    /// On error, nothing is left.
    fn run(self, blob: impl Read + 'static) -> Result<Unpacked, String> {
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(&self.bases)
            .map_err(|e| format!("cannot create a directory in {}: {e}", self.bases.display()))?;
        let fs_dir = temp.path().join("fs");
        let io_failed = |what: &str, path: &Path, e: io::Error| {
            format!("cannot {what} {}: {e}", path.display())
        };
        fs::set_permissions(temp.path(), Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(|e| io_failed("set the mode of", temp.path(), e))?;
        fs::create_dir(&fs_dir).map_err(|e| io_failed("create", &fs_dir, e))?;
        fs::set_permissions(&fs_dir, Permissions::from_mode(LAYER_FS_MODE))
            .map_err(|e| io_failed("set the mode of", &fs_dir, e))?;

        let stream: Box<dyn Read> = match self.compression {
            Compression::None => Box::new(blob),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(blob)
                    .map_err(|e| format!("cannot start zstd decompression: {e}"))?,
            ),
        };
        let mut tar = HashingReader::new(stream, MAX_LAYER_BYTES);
        let report = extract::extract(&mut tar, &fs_dir, &layer_options())
            .map_err(|e| describe_extract_error(e, &tar))?;
        // What follows the archive's end (padding) counts for the digest too.
        io::copy(&mut tar, &mut io::sink())
            .map_err(|e| format!("cannot read the layer's end: {e}"))?;
        let actual = tar.digest();
        if actual != self.diff_id {
            return Err(format!(
                "its uncompressed content has the digest {actual}, but the image's config \
                 says {} (a corrupt blob or image; pull the image again); nothing was kept",
                self.diff_id
            ));
        }
        for dir in &report.implicit_dirs {
            extract::copy_dir_attrs(&fs_dir, dir, &self.lowers)
                .map_err(|e| format!("cannot give {dir:?} the attributes below it: {e}"))?;
        }

        // The layer's content is on disk before its name is.
        let sync = fs::File::open(&fs_dir)
            .and_then(|dir| nix::unistd::syncfs(&dir).map_err(io::Error::from))
            .map_err(|e| io_failed("sync", &fs_dir, e));
        sync?;
        let target = self.bases.join(&self.hex);
        match fs::rename(temp.path(), &target) {
            Ok(()) => {
                let _ = temp.keep();
                if let Ok(bases) = fs::File::open(&self.bases) {
                    let _ = bases.sync_all();
                }
                Ok(Unpacked::New {
                    entries: report.entries,
                    bytes: report.bytes,
                })
            }
            // ENOTEMPTY or EEXIST: another unpack of this layer finished first. `temp`
            // is removed when dropped.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOTEMPTY | nix::libc::EEXIST)
                ) && target.join("fs").is_dir() =>
            {
                Ok(Unpacked::AlreadyThere)
            }
            Err(e) => Err(io_failed("rename into place", &target, e)),
        }
    }
}

fn describe_extract_error(error: ExtractError, tar: &HashingReader<Box<dyn Read>>) -> String {
    if tar.exceeded {
        format!(
            "its uncompressed content is over the limit of {MAX_LAYER_BYTES} bytes; nothing \
             was kept"
        )
    } else {
        format!("cannot unpack it: {error}; nothing was kept")
    }
}

/// A reader that hashes what it reads with sha256 and fails past `limit` bytes.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    limit: u64,
    exceeded: bool,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R, limit: u64) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
            limit,
            exceeded: false,
        }
    }

    /// `sha256:<hex>` of what was read.
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            self.exceeded = true;
            return Err(io::Error::other(format!(
                "over the limit of {} bytes",
                self.limit
            )));
        }
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
