//! Checkpoint images: a container created from one is restored, not started.
//!
//! A checkpoint image (kubelet/CRI, CRI-O, Podman, checkpointctl) has one layer holding a
//! checkpoint archive: CRIU's images under `checkpoint/`, `config.dump`, `spec.dump`,
//! `rootfs-diff.tar`, `deleted.files` (see `revive_checkpoint::archive`). containerd tells a
//! snapshotter nothing about images when it prepares a container's root filesystem: the
//! parent is the image's top layer. So the snapshotter recognises such a layer by its
//! content, the first time a snapshot is prepared on it, and then:
//!
//! 1. resolves the checkpointed container's base image (named in `config.dump`) through
//!    containerd and unpacks it into directories of its own ([`BaseSource`]);
//! 2. builds `<snapshot dir>/rootfs`: the archive's rootfs diff, its deletions as overlayfs
//!    whiteouts, directories it needed but did not list given the base's modes and owners;
//! 3. records that in `<snapshot dir>/rebuilt.json` (written last, so a crash leaves
//!    nothing that looks complete).
//!
//! From then on the layer's mounts are `rootfs` over the base's layers: the container sees
//! the checkpointed container's files and never the archive (the layer's own `fs`, made
//! root-only, is in no mount). Every active snapshot prepared on it gets a [`HANDOFF_FILE`]
//! naming the archive, which the revive shim finds beside the overlay's upper directory and
//! restores from instead of starting the container.

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use log::{info, warn};
use revive_checkpoint::archive::{self, ArchiveError};
use revive_checkpoint::extract::{self, ExtractError};
use revive_checkpoint::handoff::{HANDOFF_FILE, Handoff};
use serde::{Deserialize, Serialize};

use crate::error::SnapshotError;

type Result<T, E = SnapshotError> = std::result::Result<T, E>;

/// The rebuilt root filesystem of a checkpoint layer.
pub const ROOTFS_DIR: &str = "rootfs";
/// The record of a finished rebuild.
pub const REBUILT_FILE: &str = "rebuilt.json";
/// Where a rebuild is assembled.
const NEW_ROOTFS_DIR: &str = "new-rootfs";

/// What a finished rebuild recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rebuilt {
    /// The base image, as resolved in containerd.
    pub base_image: String,
    /// The base image's layer directories, topmost first.
    pub base_lowers: Vec<PathBuf>,
}

/// The base image of a checkpoint, ready to be a lower layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The name it was found under.
    pub image: String,
    /// Its layer directories, topmost first.
    pub lowers: Vec<PathBuf>,
}

/// Boxed future of a [`BaseSource`].
pub type BaseFuture<'a> = Pin<Box<dyn Future<Output = Result<Base>> + Send + 'a>>;

/// Finds a checkpoint's base image and makes its layers available as directories.
pub trait BaseSource: Send + Sync + std::fmt::Debug {
    /// The first of `refs` (names or ids, best first) that names an image in containerd's
    /// namespace `namespace`, unpacked. An error names the image and what to do.
    fn base<'a>(&'a self, namespace: &'a str, refs: &'a [String]) -> BaseFuture<'a>;

    /// Removes the unpacked base layers not among `in_use` (layer directories); blocks.
    /// Returns what it removed.
    fn remove_unused(&self, in_use: &[PathBuf]) -> Result<Vec<String>> {
        let _ = in_use;
        Ok(Vec::new())
    }
}

/// A committed snapshot holding a checkpoint archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The snapshot's id.
    pub id: u64,
    /// Its directory.
    pub dir: PathBuf,
    /// containerd's namespace it belongs to (from its name, `<namespace>/<n>/<chain id>`).
    pub namespace: String,
}

impl Layer {
    /// The archive: the layer as unpacked.
    pub fn archive(&self) -> PathBuf {
        Layer::archive_in(&self.dir)
    }

    /// The archive of the checkpoint layer whose snapshot directory is `dir`.
    pub fn archive_in(dir: &Path) -> PathBuf {
        dir.join("fs")
    }
}

/// containerd's namespace of a snapshot name made by its metadata store.
pub fn namespace_of(name: &str) -> Option<&str> {
    let mut parts = name.splitn(3, '/');
    let namespace = parts.next().filter(|n| !n.is_empty())?;
    parts.next().filter(|n| n.parse::<u64>().is_ok())?;
    parts.next()?;
    Some(namespace)
}

fn archive_error(e: ArchiveError) -> SnapshotError {
    SnapshotError::InvalidArgument(format!(
        "{e}; this checkpoint image cannot be restored (was it built from a complete checkpoint archive?)"
    ))
}

fn extract_error(what: &str, e: ExtractError) -> SnapshotError {
    SnapshotError::InvalidArgument(format!(
        "checkpoint image: {what}: {e}; refusing to restore from it"
    ))
}

/// What this snapshotter knows of committed snapshots' rebuilds, by snapshot id: `Some`
/// once rebuilt, `None` for a snapshot not rebuilt (any snapshot that is not a checkpoint
/// layer, and a checkpoint layer until its rebuild, which replaces the entry). Committed
/// snapshots never change and ids are never reused, so entries stay true until the
/// snapshot is removed.
#[derive(Debug, Default)]
pub struct Layers {
    known: Mutex<HashMap<u64, Option<Arc<Rebuilt>>>>,
    /// Held while a rootfs is rebuilt, so concurrent prepares rebuild it once.
    rebuilding: Mutex<()>,
}

impl Layers {
    /// The rebuild of snapshot `id` (directory `dir`), if it was rebuilt.
    pub fn rebuilt(&self, id: u64, dir: &Path) -> Option<Arc<Rebuilt>> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = known.get(&id) {
            return entry.clone();
        }
        let entry = read_rebuilt(dir).map(Arc::new);
        known.insert(id, entry.clone());
        entry
    }

    /// Forgets snapshot `id` (removed).
    pub fn forget(&self, id: u64) {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Builds the root filesystem of checkpoint layer `layer` on `base` (see the module's
    /// documentation), unless done already. On failure nothing is left but the archive.
    pub fn rebuild(&self, layer: &Layer, base: &Base) -> Result<Arc<Rebuilt>> {
        let _one = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(done) = read_rebuilt(&layer.dir) {
            return Ok(self.remember(layer.id, done));
        }
        let archive = layer.archive();
        archive::validate(&archive).map_err(archive_error)?;
        // The shim reads the spec; a broken one is refused here, before any container.
        archive::read_spec(&archive).map_err(archive_error)?;
        // Root only from now on: the archive holds every memory page of the container.
        fs::set_permissions(&archive, fs::Permissions::from_mode(0o700))
            .map_err(|e| SnapshotError::io("failed to restrict", &archive, e))?;
        let new = layer.dir.join(NEW_ROOTFS_DIR);
        remove_if_present(&new)?;
        let result = build_rootfs(&archive, &new, &base.lowers);
        if let Err(e) = result {
            let _ = remove_if_present(&new);
            return Err(e);
        }
        let rootfs = layer.dir.join(ROOTFS_DIR);
        remove_if_present(&rootfs)?;
        fs::rename(&new, &rootfs).map_err(|e| SnapshotError::io("failed to rename", &new, e))?;
        let rebuilt = Rebuilt {
            base_image: base.image.clone(),
            base_lowers: base.lowers.clone(),
        };
        write_atomically(
            &layer.dir.join(REBUILT_FILE),
            &serde_json::to_vec(&rebuilt).expect("a record serializes"),
        )?;
        info!(
            "checkpoint layer {}: root filesystem rebuilt on {} ({} layers)",
            layer.dir.display(),
            base.image,
            base.lowers.len()
        );
        Ok(self.remember(layer.id, rebuilt))
    }

    fn remember(&self, id: u64, rebuilt: Rebuilt) -> Arc<Rebuilt> {
        let rebuilt = Arc::new(rebuilt);
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Some(Arc::clone(&rebuilt)));
        rebuilt
    }
}

/// The record of a finished rebuild in `dir`, if there is one (and it is readable).
fn read_rebuilt(dir: &Path) -> Option<Rebuilt> {
    let path = dir.join(REBUILT_FILE);
    match fs::read(&path) {
        Ok(data) => match serde_json::from_slice(&data) {
            Ok(rebuilt) => Some(rebuilt),
            Err(e) => {
                warn!("ignoring unreadable {}: {e}", path.display());
                None
            }
        },
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            warn!("ignoring unreadable {}: {e}", path.display());
            None
        }
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(SnapshotError::io("failed to remove", path, e))
        }
        _ => Ok(()),
    }
}

/// Writes `data` to `path` through a temporary file renamed over it, mode 0600.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| SnapshotError::io("failed to create a file in", dir, e))?;
    std::io::Write::write_all(&mut tmp, data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| SnapshotError::io("failed to write", path, e))?;
    tmp.persist(path)
        .map_err(|e| SnapshotError::io("failed to write", path, e.error))?;
    Ok(())
}

/// Builds the rootfs of `archive` in the new directory `target`, over `lowers`.
fn build_rootfs(archive: &Path, target: &Path, lowers: &[PathBuf]) -> Result<()> {
    fs::create_dir(target).map_err(|e| SnapshotError::io("failed to create", target, e))?;
    extract::copy_dir_attrs(target, Path::new("."), lowers)
        .map_err(|e| extract_error("the root directory", e))?;
    let mut implicit = Vec::new();
    if let Some(diff) = archive::open_rootfs_diff(archive).map_err(archive_error)? {
        let options = extract::Options {
            // The container may have made setuid files, as image layers may hold them;
            // they stay as the container left them. Device nodes are not restored.
            keep_setid: true,
            keep_owner: true,
            allow_devices: false,
            overlay_whiteouts: true,
            ..extract::Options::default()
        };
        let report = extract::extract(std::io::BufReader::new(diff), target, &options)
            .map_err(|e| extract_error(archive::ROOTFS_DIFF, e))?;
        implicit.extend(report.implicit_dirs);
    }
    let deleted = archive::read_deleted(archive).map_err(archive_error)?;
    let made = extract::make_whiteouts(target, &deleted)
        .map_err(|e| extract_error(archive::DELETED_FILES, e))?;
    implicit.extend(made.implicit_dirs);
    for dir in &implicit {
        extract::copy_dir_attrs(target, dir, lowers)
            .map_err(|e| extract_error("a directory of the rootfs", e))?;
    }
    Ok(())
}

/// Writes the handoff for the shim into the new active snapshot's directory `dir`, on the
/// checkpoint layer whose archive is `archive`.
pub fn write_handoff(dir: &Path, archive: PathBuf, rebuilt: &Rebuilt) -> Result<()> {
    let handoff = Handoff {
        version: Handoff::VERSION,
        archive,
        base_image: rebuilt.base_image.clone(),
    };
    write_atomically(
        &dir.join(HANDOFF_FILE),
        &serde_json::to_vec(&handoff).expect("a handoff serializes"),
    )
}

/// The base images of checkpoints, found in containerd and unpacked into
/// [`crate::base::Bases`].
///
/// A checkpoint of a container that was itself restored from a checkpoint image names that
/// checkpoint image as its base (CRI records the image the container was created from). Its
/// root filesystem is then the base checkpoint's rebuilt root over *its* base, and so on down
/// to a plain image: each generation's root is rebuilt once, in `<bases>/<chain id>/rootfs`
/// beside the unpacked archive, and stacked over the generations below it.
#[derive(Debug)]
pub struct ContainerdBases {
    client: crate::containerd::Client,
    bases: crate::base::Bases,
    pulls: Pulls,
    /// Held while a base checkpoint's root is rebuilt, so it is rebuilt once.
    rebuilding: tokio::sync::Mutex<()>,
}

/// How many checkpoint generations may stand on one plain image (each adds an overlay
/// lower directory; the kernel's limit on a mount's options is a page).
pub const MAX_GENERATIONS: usize = 16;

/// The rebuilt root of a base checkpoint, beside its unpacked archive `<chain id>/fs`.
const BASE_ROOTFS_DIR: &str = "rootfs";

/// The digest of a reference `name@sha256:<hex>`.
fn pinned_digest(reference: &str) -> Option<&str> {
    reference
        .rsplit_once('@')
        .map(|(_, digest)| digest)
        .filter(|d| crate::containerd::is_sha256_digest(d))
}

/// What a checkpoint's base image references say of the image it was taken on: its id (the
/// config's digest) and digests of its index or manifest.
#[derive(Debug, Default, PartialEq)]
struct TakenOn {
    id: Option<String>,
    digests: Vec<String>,
}

impl TakenOn {
    fn of(refs: &[String]) -> TakenOn {
        TakenOn {
            id: refs
                .iter()
                .find(|r| is_image_id(r))
                .map(|r| crate::containerd::image_id_digest(r)),
            digests: refs
                .iter()
                .filter_map(|r| pinned_digest(r))
                .map(str::to_string)
                .collect(),
        }
    }

    /// Whether `image` is the one: Err says what it is instead.
    fn check(&self, image: &crate::containerd::BaseImage) -> std::result::Result<(), Mismatch> {
        let id_differs = self
            .id
            .as_ref()
            .is_some_and(|id| *id != image.config_digest);
        let digest_differs = self
            .digests
            .iter()
            .any(|d| *d != image.target_digest && *d != image.manifest_digest);
        if !id_differs && !digest_differs {
            return Ok(());
        }
        let taken_on: Vec<&str> = self
            .id
            .iter()
            .chain(&self.digests)
            .map(String::as_str)
            .collect();
        let what = format!(
            "{} is image {} (manifest {}), and the checkpoint was taken on {}",
            image.name,
            image.config_digest,
            image.manifest_digest,
            taken_on.join(", also known as ")
        );
        // The index the checkpoint names, resolved for this machine to another image: the
        // checkpoint was taken on another platform's member of it.
        let same_index = self.digests.contains(&image.target_digest);
        match same_index && id_differs {
            true => Err(Mismatch::OtherPlatform(what)),
            false => Err(Mismatch::Moved(what)),
        }
    }
}

/// How an image differs from the one a checkpoint was taken on.
#[derive(Debug, PartialEq, Eq)]
enum Mismatch {
    /// The name now names another image.
    Moved(String),
    /// The same multi-platform image, resolved for this machine's platform to another
    /// member than the checkpoint's.
    OtherPlatform(String),
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Moved(what) | Mismatch::OtherPlatform(what) => f.write_str(what),
        }
    }
}

/// Whether `reference` is an image id (a digest, or its 64 hex digits) rather than a name.
fn is_image_id(reference: &str) -> bool {
    crate::containerd::is_sha256_digest(reference)
        || reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// From which registries a checkpoint's base image that containerd lacks is pulled.
#[derive(Debug, Clone, Default)]
pub struct Pulls {
    /// Registry hosts (`host[:port]`); none: never pull.
    pub from: Vec<String>,
    /// The registry hosts configuration the pulls use.
    pub hosts_dir: PathBuf,
}

impl Pulls {
    /// The first of `refs` that names an image on a registry pulls are allowed from, with
    /// that registry: a name with a digest first, which names the very image whatever its
    /// tags name now.
    pub fn choose(&self, refs: &[String]) -> Option<(String, String)> {
        let pinned = refs.iter().filter(|r| pinned_digest(r).is_some());
        let tagged = refs.iter().filter(|r| pinned_digest(r).is_none());
        pinned
            .chain(tagged)
            .filter(|r| !is_image_id(r))
            .find_map(|reference| {
                let registry = crate::containerd::registry_of(reference)?;
                self.from
                    .contains(&registry)
                    .then(|| (reference.clone(), registry))
            })
    }

    /// What an operator could allow, when a name in `refs` is on a registry.
    fn hint(&self, refs: &[String]) -> String {
        refs.iter()
            .filter(|r| !is_image_id(r))
            .find_map(|r| crate::containerd::registry_of(r))
            .map(|registry| {
                format!(
                    " (or let revive-snapshotter pull base images from {registry}: \
                     --pull-bases-from {registry})"
                )
            })
            .unwrap_or_default()
    }
}

impl ContainerdBases {
    pub fn new(client: crate::containerd::Client, bases: crate::base::Bases) -> Self {
        ContainerdBases {
            client,
            bases,
            pulls: Pulls::default(),
            rebuilding: tokio::sync::Mutex::new(()),
        }
    }

    /// Pulls base images containerd lacks as `pulls` allows.
    pub fn pulling(mut self, pulls: Pulls) -> Self {
        self.pulls = pulls;
        self
    }

    /// The unpacked layers' directories.
    pub fn bases(&self) -> &crate::base::Bases {
        &self.bases
    }

    /// The first of `refs` in containerd, unpacked: its name and layer directories.
    async fn find(&self, namespace: &str, refs: &[String]) -> Result<(String, Vec<PathBuf>)> {
        use crate::containerd::{ContainerdError, ImageRef};
        // The image the checkpoint was taken on, as far as it says: a name that names
        // another image now is not its base.
        let taken_on = TakenOn::of(refs);
        for reference in refs {
            let wanted = if is_image_id(reference) {
                ImageRef::Id(reference.clone())
            } else {
                ImageRef::Name(reference.clone())
            };
            let image = match self.client.image_layers(namespace, &wanted).await {
                Ok(image) => image,
                Err(ContainerdError::ImageNotFound { .. }) => continue,
                Err(e) => return Err(SnapshotError::FailedPrecondition(e.to_string())),
            };
            if let Err(other) = taken_on.check(&image) {
                info!("{reference} in containerd is not the checkpoint's base: {other}");
                continue;
            }
            let lowers = self
                .bases
                .ensure_image(&self.client, namespace, &image)
                .await
                .map_err(|e| SnapshotError::FailedPrecondition(e.to_string()))?;
            return Ok((reference.clone(), lowers));
        }
        let missing = refs.join(", also known as ");
        let Some((name, registry)) = self.pulls.choose(refs) else {
            return Err(SnapshotError::FailedPrecondition(format!(
                "the checkpoint's base image {missing} is not in containerd (namespace \
                 {namespace}): import or pull it, then create the container again{}",
                self.pulls.hint(refs)
            )));
        };
        info!(
            "the checkpoint's base image {name} is not in containerd: pulling it from {registry}"
        );
        self.client
            .pull(namespace, &name, &self.pulls.hosts_dir)
            .await
            .map_err(|e| {
                SnapshotError::FailedPrecondition(format!(
                    "the checkpoint's base image {missing} is not in containerd (namespace \
                     {namespace}) and pulling {name} from {registry} failed: {e}"
                ))
            })?;
        let pulled = |e: String| {
            SnapshotError::FailedPrecondition(format!(
                "the checkpoint's base image {name}, pulled from {registry}: {e}"
            ))
        };
        let image = self
            .client
            .image_layers(namespace, &ImageRef::Name(name.clone()))
            .await
            .map_err(|e| pulled(e.to_string()))?;
        taken_on.check(&image).map_err(|other| match other {
            Mismatch::Moved(what) => pulled(format!(
                "{what}: the name has moved since; put the checkpoint's base image in \
                 containerd (or back under {name} in the registry), then create the container \
                 again"
            )),
            Mismatch::OtherPlatform(what) => pulled(format!(
                "{what}, this image for another platform than this node's (linux/{}): a \
                 checkpoint restores only on the platform it was taken on; restore it on a \
                 node of that platform",
                revive_checkpoint::oci::host_arch()
            )),
        })?;
        self.bases
            .ensure_image(&self.client, namespace, &image)
            .await
            .map(|lowers| (name.clone(), lowers))
            .map_err(|e| pulled(e.to_string()))
    }

    /// The base named by `refs`, with every checkpoint generation below it rebuilt, at most
    /// `generations` of them.
    async fn base_within(
        &self,
        namespace: &str,
        refs: &[String],
        generations: usize,
    ) -> Result<Base> {
        let (image, lowers) = self.find(namespace, refs).await?;
        let archive = match lowers.as_slice() {
            [only] if archive::is_checkpoint(only) => only.clone(),
            _ => return Ok(Base { image, lowers }),
        };
        if generations == 0 {
            return Err(SnapshotError::FailedPrecondition(format!(
                "the checkpoint's base image {image} is a checkpoint image more than \
                 {MAX_GENERATIONS} generations above a plain image; restore it into a container \
                 of a plain image before checkpointing it again"
            )));
        }
        let config = {
            let archive = archive.clone();
            tokio::task::spawn_blocking(move || archive::read_config(&archive))
                .await
                .map_err(thread_failed)?
                .map_err(|e| {
                    SnapshotError::InvalidArgument(format!(
                        "the checkpoint's base image {image} is a checkpoint image: {e}; \
                         refusing to restore from it"
                    ))
                })?
        };
        let below_refs = config.base_image_refs();
        if below_refs.is_empty() {
            return Err(SnapshotError::InvalidArgument(format!(
                "the checkpoint's base image {image} is a checkpoint image whose {} names no \
                 base image; it cannot be restored",
                archive::CONFIG_DUMP
            )));
        }
        let below = Box::pin(self.base_within(namespace, &below_refs, generations - 1)).await?;
        // `<bases>/<chain id>/fs`, so never the file system's root.
        let rootfs = archive.with_file_name(BASE_ROOTFS_DIR);
        let _one = self.rebuilding.lock().await;
        if !rootfs.is_dir() {
            let (archive, rootfs, lowers) = (archive.clone(), rootfs.clone(), below.lowers.clone());
            tokio::task::spawn_blocking(move || rebuild_base(&archive, &rootfs, &lowers))
                .await
                .map_err(thread_failed)??;
            info!(
                "base checkpoint image {image}: root filesystem rebuilt on {} ({} layers)",
                below.image,
                below.lowers.len()
            );
        }
        let mut lowers = vec![rootfs];
        lowers.extend(below.lowers);
        Ok(Base { image, lowers })
    }
}

fn thread_failed(e: tokio::task::JoinError) -> SnapshotError {
    SnapshotError::FailedPrecondition(format!("a rebuilding thread failed: {e}"))
}

/// Rebuilds the root of the base checkpoint `archive` into `rootfs` over `lowers`: complete
/// or not at all.
fn rebuild_base(archive: &Path, rootfs: &Path, lowers: &[PathBuf]) -> Result<()> {
    archive::validate(archive).map_err(archive_error)?;
    fs::set_permissions(archive, fs::Permissions::from_mode(0o700))
        .map_err(|e| SnapshotError::io("failed to restrict", archive, e))?;
    let new = rootfs.with_file_name(NEW_ROOTFS_DIR);
    remove_if_present(&new)?;
    if let Err(e) = build_rootfs(archive, &new, lowers) {
        let _ = remove_if_present(&new);
        return Err(e);
    }
    fs::rename(&new, rootfs).map_err(|e| SnapshotError::io("failed to rename", &new, e))
}

impl BaseSource for ContainerdBases {
    fn base<'a>(&'a self, namespace: &'a str, refs: &'a [String]) -> BaseFuture<'a> {
        Box::pin(self.base_within(namespace, refs, MAX_GENERATIONS))
    }

    fn remove_unused(&self, in_use: &[PathBuf]) -> Result<Vec<String>> {
        // Layer directories are `<bases>/<chain id hex>/fs` or, for a base checkpoint's
        // rebuilt root, `<bases>/<chain id hex>/rootfs`.
        let chains: std::collections::HashSet<String> = in_use
            .iter()
            .filter_map(|fs| fs.parent()?.file_name()?.to_str().map(str::to_string))
            .collect();
        self.bases
            .remove_unused(&chains)
            .map_err(|e| SnapshotError::FailedPrecondition(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_come_from_containerd_names() {
        assert_eq!(namespace_of("default/12/sha256:ab"), Some("default"));
        assert_eq!(namespace_of("k8s.io/3/ctr"), Some("k8s.io"));
        assert_eq!(namespace_of("plain"), None);
        assert_eq!(namespace_of("default/x/sha256:ab"), None);
        assert_eq!(namespace_of("/1/a"), None);
    }

    fn refs(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn base_images_are_pulled_only_from_allowed_registries() {
        let pulls = Pulls {
            from: vec!["198.18.0.1:5000".into()],
            hosts_dir: PathBuf::from("/etc/containerd/certs.d"),
        };
        let id = "a".repeat(64);
        assert_eq!(
            pulls.choose(&refs(&[&id, "198.18.0.1:5000/revive/busybox:1"])),
            Some((
                "198.18.0.1:5000/revive/busybox:1".to_string(),
                "198.18.0.1:5000".to_string()
            ))
        );
        // Docker Hub's short names are docker.io's, which is not allowed; an id names no
        // registry, whatever it looks like once normalised.
        assert_eq!(pulls.choose(&refs(&["busybox", &id])), None);
        assert_eq!(
            Pulls::default().choose(&refs(&["198.18.0.1:5000/x:1"])),
            None
        );
        assert_eq!(
            pulls.hint(&refs(&[&id, "busybox"])),
            " (or let revive-snapshotter pull base images from docker.io: --pull-bases-from \
             docker.io)"
        );
        assert_eq!(pulls.hint(&refs(&[&id])), "");
        // A name with a digest is pulled before a tag, which may name another image now.
        let pinned = format!("198.18.0.1:5000/revive/busybox@sha256:{}", "b".repeat(64));
        assert_eq!(
            pulls
                .choose(&refs(&["198.18.0.1:5000/revive/busybox:1", &pinned]))
                .map(|(r, _)| r),
            Some(pinned)
        );
    }

    #[test]
    fn a_base_is_the_image_the_checkpoint_was_taken_on() {
        use crate::containerd::BaseImage;
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let image = BaseImage {
            name: "r/busybox:1".into(),
            target_digest: digest('1'),
            manifest_digest: digest('2'),
            config_digest: digest('3'),
            layers: Vec::new(),
        };
        // Only names: any image under them.
        assert_eq!(TakenOn::of(&refs(&["r/busybox:1"])).check(&image), Ok(()));
        let by_id = TakenOn::of(&refs(&["r/busybox:1", &"3".repeat(64)]));
        assert_eq!(by_id.check(&image), Ok(()));
        let by_index = TakenOn::of(&refs(&[&format!("r/busybox@{}", digest('1'))]));
        assert_eq!(by_index.check(&image), Ok(()));
        let by_manifest = TakenOn::of(&refs(&[&format!("r/busybox@{}", digest('2'))]));
        assert_eq!(by_manifest.check(&image), Ok(()));
        // The tag moved: another id, or another digest.
        let err = TakenOn::of(&refs(&["r/busybox:1", &digest('9')]))
            .check(&image)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "r/busybox:1 is image {} (manifest {}), and the checkpoint was taken on {}",
                digest('3'),
                digest('2'),
                digest('9')
            )
        );
        let moved = TakenOn::of(&refs(&[&format!("r/busybox@{}", digest('8'))]));
        assert!(matches!(moved.check(&image), Err(Mismatch::Moved(_))));
        // The index the checkpoint names, its member for this platform another image than
        // the one the checkpoint was taken on (another platform's).
        let other_platform = TakenOn::of(&refs(&[
            &format!("r/busybox@{}", digest('1')),
            &"7".repeat(64),
        ]));
        assert!(matches!(
            other_platform.check(&image),
            Err(Mismatch::OtherPlatform(_))
        ));
    }
}
