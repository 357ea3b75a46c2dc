//! The overlayfs snapshotter proper: snapshot directories, mounts and disk
//! usage, on top of the metadata [`Store`].
//!
//! It follows containerd's built-in overlayfs snapshotter
//! (`plugins/snapshots/overlay`) so that containerd, which performs the
//! mounts itself, can use it as its only snapshotter:
//!
//! - each snapshot owns `<root>/snapshots/<id>/fs` (its layer: the overlay
//!   upper dir while active, a lower dir once committed) and, if active,
//!   `<root>/snapshots/<id>/work` (overlayfs' work dir);
//! - directories are built under a temporary `new-*` name and renamed into
//!   place inside the metadata transaction, just before it commits, so a
//!   crash leaves at worst an orphan that [`Overlay::cleanup`] removes;
//! - removal deletes the record first and the directory after the
//!   transaction has committed;
//! - commit keeps the id, so the directory never moves.
//!
//! It knows nothing of checkpoints: [`crate::restore`] wraps it for that.
//!
//! Every method of [`Overlay`] blocks (filesystem walks, redb transactions);
//! [`OverlaySnapshotter`] implements [`Snapshotter`] on it, running each on
//! tokio's blocking pool.

use std::collections::HashSet;
use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use log::{debug, error, info, warn};
use revive_proto::types::Mount;

use crate::error::SnapshotError;
use crate::filter::Filter;
use crate::snapshots::Snapshotter;
use crate::store::{Entry, Info, Kind, Labels, Snapshot, Store, Usage};

type Result<T, E = SnapshotError> = std::result::Result<T, E>;

/// File name of the metadata database under the root.
pub const METADATA_FILE: &str = "metadata.redb";
/// Directory under the root holding one directory per snapshot id.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Prefix of directories still being prepared.
const TEMP_PREFIX: &str = "new-";
/// Mode of `fs`: the container's root (or a layer of it) must be
/// traversable by its processes, whatever their uid.
const FS_MODE: u32 = 0o755;
/// Mode of `work`, as containerd uses.
const WORK_MODE: u32 = 0o711;
/// Mode of `<root>/snapshots`.
const SNAPSHOTS_MODE: u32 = 0o700;

/// The snapshotter state rooted at one directory.
#[derive(Debug)]
pub struct Overlay {
    snapshots: PathBuf,
    store: Store,
    /// Taken shared while a `new-*` directory is in flight (Prepare/View)
    /// and exclusively by Cleanup, so Cleanup never deletes a directory that
    /// is about to be renamed into place.
    dirs: RwLock<()>,
}

impl Overlay {
    /// Opens the snapshotter state under `root` (which must exist),
    /// creating `snapshots/` and the metadata database as needed.
    pub fn open(root: &Path) -> Result<Self> {
        // Overlay options are comma-separated and lowerdir is
        // colon-separated: such paths could not be expressed.
        let text = root.to_string_lossy();
        if text.contains([',', ':']) {
            return Err(SnapshotError::InvalidArgument(format!(
                "root {text:?} must not contain ',' or ':' (overlayfs option separators)"
            )));
        }
        let snapshots = root.join(SNAPSHOTS_DIR);
        DirBuilder::new()
            .mode(SNAPSHOTS_MODE)
            .create(&snapshots)
            .or_else(|e| match e.kind() {
                ErrorKind::AlreadyExists if snapshots.is_dir() => Ok(()),
                _ => Err(e),
            })
            .map_err(|e| SnapshotError::io("failed to create directory", &snapshots, e))?;
        let store = Store::open(&root.join(METADATA_FILE))?;
        Ok(Overlay {
            snapshots,
            store,
            dirs: RwLock::new(()),
        })
    }

    /// Directory of snapshot `id`.
    pub fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.snapshots.join(id.to_string())
    }

    /// The layer directory of snapshot `id`.
    pub fn fs_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("fs")
    }

    /// The overlayfs work directory of active snapshot `id`.
    pub fn work_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("work")
    }

    /// Creates an active snapshot (`Prepare`) or a view (`View`) and returns
    /// its mounts.
    pub fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        let snapshot = self.create_with(kind, key, parent, labels, |_, _| Ok(()))?;
        Ok(self.mounts_of(&snapshot))
    }

    /// Creates an active snapshot or a view. `populate` runs once the new
    /// snapshot's directory (`fs`, `work`) is made and its id is known, before
    /// it is moved into place; if it fails, nothing is left.
    pub fn create_with(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
        populate: impl FnOnce(&Snapshot, &Path) -> Result<()>,
    ) -> Result<Snapshot> {
        let _dirs = self.dirs.read().unwrap_or_else(PoisonError::into_inner);
        let mut dir = NewDir::create(&self.snapshots, kind)?;
        let snapshot = self.store.create(kind, key, parent, labels, |s| {
            if let Some(&parent) = s.parent_ids.first() {
                // Like containerd: the new layer's root directory gets the
                // owner of the parent's, or the overlay's root would turn
                // root-owned in images whose `/` belongs to another user.
                let parent_fs = self.fs_dir(parent);
                let meta = fs::metadata(&parent_fs)
                    .map_err(|e| SnapshotError::io("failed to stat", &parent_fs, e))?;
                let fs_path = dir.path.join("fs");
                std::os::unix::fs::lchown(&fs_path, Some(meta.uid()), Some(meta.gid()))
                    .map_err(|e| SnapshotError::io("failed to chown", &fs_path, e))?;
            }
            populate(s, &dir.path)?;
            dir.rename(&self.snapshot_dir(s.id))
        })?;
        dir.keep();
        debug!("created {kind:?} snapshot {key:?} with id {}", snapshot.id);
        Ok(snapshot)
    }

    /// Mounts of an active snapshot or view.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        Ok(self.mounts_of(&self.snapshot(key)?))
    }

    /// The active snapshot or view `key`, with its ancestors' ids.
    pub fn snapshot(&self, key: &str) -> Result<Snapshot> {
        self.store.snapshot(key)
    }

    /// Mounts as containerd's overlayfs snapshotter builds them: the layers of
    /// `s`'s ancestors below its own.
    pub fn mounts_of(&self, s: &Snapshot) -> Vec<Mount> {
        let lower: Vec<PathBuf> = s.parent_ids.iter().map(|&id| self.fs_dir(id)).collect();
        self.mounts_on(s, &lower)
    }

    /// The mounts of `s` on the lower directories `lower`, topmost first.
    pub fn mounts_on(&self, s: &Snapshot, lower: &[PathBuf]) -> Vec<Mount> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let bind = |source: PathBuf, mode: &str| Mount {
            r#type: "bind".into(),
            source: path(source),
            target: String::new(),
            options: vec![mode.into(), "rbind".into()],
        };
        let mount = match (s.kind, lower) {
            // No parent: overlayfs needs a lower layer, so bind the layer.
            (Kind::View, []) => bind(self.fs_dir(s.id), "ro"),
            (_, []) => bind(self.fs_dir(s.id), "rw"),
            // overlayfs refuses a single lower dir without an upper dir.
            (Kind::View, [single]) => bind(single.clone(), "ro"),
            (kind, lower) => {
                let mut options = vec!["index=off".to_owned()];
                if kind == Kind::Active {
                    options.push(format!("workdir={}", path(self.work_dir(s.id))));
                    options.push(format!("upperdir={}", path(self.fs_dir(s.id))));
                }
                let lower: Vec<String> = lower.iter().map(|p| path(p.clone())).collect();
                options.push(format!("lowerdir={}", lower.join(":")));
                Mount {
                    r#type: "overlay".into(),
                    source: "overlay".into(),
                    target: String::new(),
                    options,
                }
            }
        };
        vec![mount]
    }

    /// Id, info and stored usage of `key`.
    pub fn entry(&self, key: &str) -> Result<Entry> {
        self.store.entry(key)
    }

    /// Ids of all snapshots.
    pub fn ids(&self) -> Result<HashSet<u64>> {
        self.store.ids()
    }

    /// Commits active snapshot `key` as `name`. Usage is measured before
    /// the write transaction starts, as containerd does.
    pub fn commit(
        &self,
        name: &str,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<()> {
        let entry = self.store.entry(key)?;
        if entry.info.kind != Kind::Active {
            return Err(SnapshotError::FailedPrecondition(format!(
                "snapshot {key:?} is not active"
            )));
        }
        let usage = disk_usage(&self.fs_dir(entry.id))?;
        self.store
            .commit(key, name, parent, labels, entry.id, usage)?;
        debug!("committed {key:?} as {name:?} (id {}, {usage:?})", entry.id);
        Ok(())
    }

    /// Removes snapshot `key`: the record first, then its directory. Returns
    /// its id.
    pub fn remove(&self, key: &str) -> Result<u64> {
        let (id, _) = self.store.remove(key)?;
        let dir = self.snapshot_dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => debug!("removed snapshot {key:?} ({})", dir.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            // The record is gone; Cleanup will retry the directory.
            Err(e) => warn!("failed to remove {}: {e}", dir.display()),
        }
        Ok(id)
    }

    /// Info of `key`.
    pub fn stat(&self, key: &str) -> Result<Info> {
        self.store.stat(key)
    }

    /// Updates the labels of `name`; see [`Store::update`].
    pub fn update(&self, name: &str, labels: &Labels, paths: &[String]) -> Result<Info> {
        self.store.update(name, labels, paths)
    }

    /// Infos of all snapshots matching `filter`.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Info>> {
        self.store.list(filter)
    }

    /// Disk usage: stored at commit for committed snapshots, measured now
    /// for active ones, zero for views (they own no data).
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let entry = self.store.entry(key)?;
        match entry.info.kind {
            Kind::Active => disk_usage(&self.fs_dir(entry.id)),
            Kind::Committed | Kind::View => Ok(entry.usage.unwrap_or_default()),
        }
    }

    /// Removes directories under `snapshots/` that no snapshot owns:
    /// leftovers of failed removals, crashes and interrupted prepares.
    /// Returns the removed paths.
    pub fn cleanup(&self) -> Result<Vec<PathBuf>> {
        let _dirs = self.dirs.write().unwrap_or_else(PoisonError::into_inner);
        let ids = self.store.ids()?;
        let mut removed = Vec::new();
        let entries = fs::read_dir(&self.snapshots)
            .map_err(|e| SnapshotError::io("failed to read", &self.snapshots, e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| SnapshotError::io("failed to read", &self.snapshots, e))?;
            let name = entry.file_name();
            let owned = name
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|id| ids.contains(&id));
            if owned {
                continue;
            }
            let path = entry.path();
            let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match result {
                Ok(()) => {
                    info!("cleanup: removed {}", path.display());
                    removed.push(path);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(SnapshotError::io("failed to remove", path, e)),
            }
        }
        Ok(removed)
    }
}

/// The overlay snapshotter behind the [`Snapshotter`] contract: each call
/// runs on tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct OverlaySnapshotter {
    overlay: Arc<Overlay>,
}

impl OverlaySnapshotter {
    /// Opens the snapshotter state under `root` (which must exist).
    pub fn open(root: &Path) -> Result<Self> {
        Ok(OverlaySnapshotter {
            overlay: Arc::new(Overlay::open(root)?),
        })
    }

    /// The state itself, for blocking callers.
    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// Runs `f` on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Overlay) -> Result<T> + Send + 'static,
    {
        let overlay = Arc::clone(&self.overlay);
        tokio::task::spawn_blocking(move || f(&overlay))
            .await
            .unwrap_or_else(|e| Err(thread_failed(&e)))
    }
}

/// A blocking operation's thread ended without a result (it panicked).
pub fn thread_failed(e: &tokio::task::JoinError) -> SnapshotError {
    error!("snapshot operation failed: {e}");
    SnapshotError::Internal(format!("snapshot operation failed: {e}"))
}

#[tonic::async_trait]
impl Snapshotter for OverlaySnapshotter {
    async fn stat(&self, key: String) -> Result<Info> {
        self.run(move |o| o.stat(&key)).await
    }

    async fn update(&self, name: String, labels: Labels, paths: Vec<String>) -> Result<Info> {
        self.run(move |o| o.update(&name, &labels, &paths)).await
    }

    async fn usage(&self, key: String) -> Result<Usage> {
        self.run(move |o| o.usage(&key)).await
    }

    async fn mounts(&self, key: String) -> Result<Vec<Mount>> {
        self.run(move |o| o.mounts(&key)).await
    }

    async fn create(
        &self,
        kind: Kind,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        self.run(move |o| o.create(kind, &key, parent.as_deref(), labels))
            .await
    }

    async fn commit(
        &self,
        name: String,
        key: String,
        parent: Option<String>,
        labels: Labels,
    ) -> Result<()> {
        self.run(move |o| o.commit(&name, &key, parent.as_deref(), labels))
            .await
    }

    async fn remove(&self, key: String) -> Result<()> {
        self.run(move |o| o.remove(&key).map(drop)).await
    }

    async fn list(&self, filters: Vec<String>) -> Result<Vec<Info>> {
        let filter = Filter::parse_all(&filters)?;
        self.run(move |o| o.list(&filter)).await
    }

    async fn cleanup(&self) -> Result<()> {
        self.run(|o| o.cleanup().map(drop)).await
    }
}

/// A snapshot directory being prepared: removed on drop unless kept.
struct NewDir {
    path: PathBuf,
    keep: bool,
}

impl NewDir {
    /// `snapshots/new-XXXX/{fs,work}`; `work` only for active snapshots.
    fn create(snapshots: &Path, kind: Kind) -> Result<NewDir> {
        let path = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(snapshots)
            .map_err(|e| SnapshotError::io("failed to create directory in", snapshots, e))?
            .keep();
        let dir = NewDir { path, keep: false };
        let mkdir = |name: &str, mode: u32| {
            let p = dir.path.join(name);
            DirBuilder::new()
                .mode(mode)
                .create(&p)
                .map_err(|e| SnapshotError::io("failed to create directory", &p, e))?;
            // The umask may have cleared bits we need (e.g. 0755 for fs).
            fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(|e| SnapshotError::io("failed to set mode of", &p, e))
        };
        mkdir("fs", FS_MODE)?;
        if kind == Kind::Active {
            mkdir("work", WORK_MODE)?;
        }
        Ok(dir)
    }

    /// Moves the directory to its final place (still removed on drop).
    fn rename(&mut self, to: &Path) -> Result<()> {
        fs::rename(&self.path, to).map_err(|e| SnapshotError::io("failed to rename to", to, e))?;
        self.path = to.to_owned();
        Ok(())
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for NewDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path) {
            warn!("failed to remove {}: {e}", self.path.display());
        }
    }
}

/// Disk usage of the tree at `root` without following symlinks: bytes of
/// regular files and number of inodes, each inode counted once (hard links).
pub fn disk_usage(root: &Path) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut count = |meta: &fs::Metadata, usage: &mut Usage| {
        if seen.insert((meta.dev(), meta.ino())) {
            usage.inodes += 1;
            if meta.is_file() {
                usage.size += meta.len();
            }
        }
    };
    let meta =
        fs::symlink_metadata(root).map_err(|e| SnapshotError::io("failed to stat", root, e))?;
    count(&meta, &mut usage);
    let mut dirs = Vec::new();
    if meta.is_dir() {
        dirs.push(root.to_owned());
    }
    while let Some(dir) = dirs.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed while we walk (a running container): skip it.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(SnapshotError::io("failed to read", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| SnapshotError::io("failed to read", &dir, e))?;
            // `DirEntry::metadata` does not follow symlinks.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(SnapshotError::io("failed to stat", entry.path(), e)),
            };
            count(&meta, &mut usage);
            if meta.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay() -> (tempfile::TempDir, Overlay) {
        let dir = tempfile::tempdir().unwrap();
        let o = Overlay::open(dir.path()).unwrap();
        (dir, o)
    }

    fn s(id: u64, kind: Kind, parent_ids: &[u64]) -> Snapshot {
        Snapshot {
            id,
            kind,
            parent_ids: parent_ids.to_vec(),
        }
    }

    fn p(path: PathBuf) -> String {
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn mount_rules() {
        let (_d, o) = overlay();
        let fs = |id| p(o.fs_dir(id));

        // The first mount of `snapshot`: its type, source and options.
        let check = |snapshot: Snapshot, r#type: &str, source: &str, options: &[&str]| {
            let m = o.mounts_of(&snapshot);
            assert_eq!(
                (m[0].r#type.as_str(), m[0].source.as_str()),
                (r#type, source)
            );
            assert_eq!(m[0].options, options);
        };

        assert_eq!(o.mounts_of(&s(1, Kind::Active, &[])).len(), 1);
        check(s(1, Kind::Active, &[]), "bind", &fs(1), &["rw", "rbind"]);
        check(s(1, Kind::View, &[]), "bind", &fs(1), &["ro", "rbind"]);
        check(s(3, Kind::View, &[2]), "bind", &fs(2), &["ro", "rbind"]);
        let lower = format!("lowerdir={}:{}", fs(2), fs(1));
        check(
            s(3, Kind::View, &[2, 1]),
            "overlay",
            "overlay",
            &["index=off", &lower],
        );
        check(
            s(3, Kind::Active, &[2, 1]),
            "overlay",
            "overlay",
            &[
                "index=off",
                &format!("workdir={}", p(o.work_dir(3))),
                &format!("upperdir={}", fs(3)),
                &lower,
            ],
        );
    }

    #[test]
    fn directories_and_lifecycle() {
        let (_d, o) = overlay();
        o.create(Kind::Active, "a", None, Labels::new()).unwrap();
        let id = |key| o.store.entry(key).unwrap().id;
        let a = id("a");
        let mode = |p: PathBuf| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(o.fs_dir(a)), FS_MODE);
        assert_eq!(mode(o.work_dir(a)), WORK_MODE);

        fs::write(o.fs_dir(a).join("f"), b"hello").unwrap();
        fs::hard_link(o.fs_dir(a).join("f"), o.fs_dir(a).join("g")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", o.fs_dir(a).join("l")).unwrap();
        // fs dir + f (= g) + l
        assert_eq!(o.usage("a").unwrap(), Usage { size: 5, inodes: 3 });

        o.commit("base", "a", None, Labels::new()).unwrap();
        assert_eq!(id("base"), a, "commit keeps the id");
        assert_eq!(o.usage("base").unwrap(), Usage { size: 5, inodes: 3 });
        assert!(matches!(
            o.mounts("base"),
            Err(SnapshotError::FailedPrecondition(_))
        ));

        o.create(Kind::View, "v", Some("base"), Labels::new())
            .unwrap();
        let v = id("v");
        assert!(o.fs_dir(v).is_dir());
        assert!(!o.work_dir(v).exists(), "views need no work dir");
        assert_eq!(o.usage("v").unwrap(), Usage::default());

        assert!(matches!(
            o.remove("base"),
            Err(SnapshotError::FailedPrecondition(_))
        ));
        o.remove("v").unwrap();
        assert!(!o.snapshot_dir(v).exists());
        o.remove("base").unwrap();
        assert!(!o.snapshot_dir(a).exists());
    }

    #[test]
    fn failed_create_leaves_no_directory() {
        let (_d, o) = overlay();
        o.create(Kind::Active, "a", None, Labels::new()).unwrap();
        let err = o
            .create(Kind::Active, "a", None, Labels::new())
            .unwrap_err();
        assert!(matches!(err, SnapshotError::AlreadyExists(_)));
        let err = o
            .create(Kind::Active, "b", Some("a"), Labels::new())
            .unwrap_err();
        assert!(matches!(err, SnapshotError::InvalidArgument(_)));
        let names: Vec<_> = fs::read_dir(&o.snapshots)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["1"]);
    }

    #[test]
    fn cleanup_removes_orphans_only() {
        let (_d, o) = overlay();
        o.create(Kind::Active, "a", None, Labels::new()).unwrap();
        fs::create_dir_all(o.snapshot_dir(99).join("fs")).unwrap();
        fs::create_dir(o.snapshots.join("new-stale")).unwrap();
        let mut removed = o.cleanup().unwrap();
        removed.sort();
        assert_eq!(removed, [o.snapshot_dir(99), o.snapshots.join("new-stale")]);
        assert!(o.fs_dir(1).is_dir());
    }

    #[test]
    fn refuses_root_with_separators() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a:b");
        fs::create_dir(&root).unwrap();
        assert!(matches!(
            Overlay::open(&root),
            Err(SnapshotError::InvalidArgument(_))
        ));
    }
}
