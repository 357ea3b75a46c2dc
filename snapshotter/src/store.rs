//! Snapshot metadata, kept in an embedded transactional store ([redb]) at
//! `<root>/metadata.redb` so that it survives restarts and crashes.
//!
//! This mirrors containerd's `core/snapshots/storage` (the bolt metastore
//! its own overlayfs snapshotter uses): every snapshot has a key, a numeric
//! id that names its directory, a kind, an optional parent and labels.
//! Committing renames the record (key -> name) but keeps the id, so the
//! directory never moves.
//!
//! Tables:
//! - `snapshots`: key -> JSON record (with a version field, so the format
//!   can evolve);
//! - `children`: parent key -> child keys, so "has children?" is one lookup
//!   (only committed snapshots can be parents, and they are never renamed,
//!   so keying by name is stable);
//! - `meta`: the id counter and the schema version.
//!
//! Every method runs one redb transaction and blocks; callers on an async
//! runtime must use `spawn_blocking`. redb serializes write transactions, so
//! callers do slow filesystem work (measuring usage, creating directories)
//! before or after, never inside, a write transaction.

use std::collections::{BTreeMap, HashSet};
use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    TableDefinition,
};
use serde::{Deserialize, Serialize};

use crate::error::SnapshotError;
use crate::filter::Filter;

type Result<T, E = SnapshotError> = std::result::Result<T, E>;

/// Version written into every record and into the `meta` table.
pub const SCHEMA_VERSION: u32 = 1;
/// Mode of the metadata file: it is only for this process (root).
pub const METADATA_MODE: u32 = 0o600;
/// containerd refuses labels whose key and value together exceed this.
pub const MAX_LABEL_SIZE: usize = 4096;

const SNAPSHOTS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("snapshots");
const CHILDREN: MultimapTableDefinition<'static, &str, &str> =
    MultimapTableDefinition::new("children");
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
const META_NEXT_ID: &str = "next_id";
const META_SCHEMA: &str = "schema_version";

/// Snapshot labels. Ordered so records encode deterministically.
pub type Labels = BTreeMap<String, String>;

/// Kind of a snapshot (containerd's `snapshots.Kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Read-only view of a committed snapshot.
    View,
    /// Writable snapshot that may be committed.
    Active,
    /// Immutable snapshot that can be a parent.
    Committed,
}

impl Kind {
    /// Name used by containerd's filters (`kind==committed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

/// Disk usage of a snapshot's `fs` directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes of regular files, each inode counted once.
    pub size: u64,
    /// Number of distinct inodes.
    pub inodes: u64,
}

/// Wall-clock time, stored as seconds and nanoseconds since the epoch like
/// `google.protobuf.Timestamp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

impl Timestamp {
    /// The current time (the epoch if the clock is before it).
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: d.subsec_nanos(),
        }
    }
}

/// The stored form of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    version: u32,
    id: u64,
    kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    #[serde(default)]
    labels: Labels,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// Measured at commit; absent for active snapshots and views.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

impl Record {
    fn info(self, name: &str) -> Info {
        Info {
            name: name.to_owned(),
            parent: self.parent,
            kind: self.kind,
            labels: self.labels,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// What `Stat` reports about a snapshot (containerd's `snapshots.Info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Key of an active snapshot or view, name of a committed one.
    pub name: String,
    /// Name of the parent, if any.
    pub parent: Option<String>,
    /// Kind of the snapshot.
    pub kind: Kind,
    /// Labels.
    pub labels: Labels,
    /// Creation time (for committed snapshots: commit time).
    pub created_at: Timestamp,
    /// Last update time.
    pub updated_at: Timestamp,
}

impl Info {
    /// A snapshot's info as no store holds it, created and updated at the epoch: what a
    /// filter is matched against outside a store (unit tests, fuzzing).
    pub fn unstored(name: &str, parent: Option<&str>, kind: Kind, labels: &[(&str, &str)]) -> Info {
        Info {
            name: name.into(),
            parent: parent.map(Into::into),
            kind,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
        }
    }
}

/// A snapshot with everything needed to build its mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Id naming the snapshot's directory.
    pub id: u64,
    /// Kind of the snapshot.
    pub kind: Kind,
    /// Ids of the ancestors, nearest parent first.
    pub parent_ids: Vec<u64>,
}

/// A snapshot's id, info and stored usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Id naming the snapshot's directory.
    pub id: u64,
    /// Public information.
    pub info: Info,
    /// Usage measured at commit (committed snapshots only).
    pub usage: Option<Usage>,
}

/// The metadata store.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates, mode 0600) the database at `path` and makes sure
    /// its tables exist.
    pub fn open(path: &Path) -> Result<Store> {
        // Create the file ourselves to control its mode; redb then opens the
        // existing (possibly empty) file.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(METADATA_MODE)
            .open(path)
            .map_err(|e| SnapshotError::io("failed to create metadata file", path, e))?;
        std::fs::set_permissions(path, Permissions::from_mode(METADATA_MODE))
            .map_err(|e| SnapshotError::io("failed to set mode of metadata file", path, e))?;
        let db = Database::create(path)?;

        let txn = db.begin_write()?;
        {
            txn.open_table(SNAPSHOTS)?;
            txn.open_multimap_table(CHILDREN)?;
            let mut meta = txn.open_table(META)?;
            let schema = meta.get(META_SCHEMA)?.map(|v| v.value());
            match schema {
                None => {
                    meta.insert(META_SCHEMA, u64::from(SCHEMA_VERSION))?;
                }
                Some(v) if v == u64::from(SCHEMA_VERSION) => {}
                Some(v) => {
                    return Err(SnapshotError::FailedPrecondition(format!(
                        "metadata schema version {v} is not supported (expected {SCHEMA_VERSION})"
                    )));
                }
            }
        }
        txn.commit()?;
        Ok(Store { db })
    }

    /// Creates an active snapshot or view named `key` on top of the
    /// committed snapshot `parent`.
    ///
    /// `before_commit` runs inside the write transaction once the id is
    /// allocated and all checks passed; the caller moves the prepared
    /// directory into place there. If it fails, nothing is recorded.
    pub fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
        before_commit: impl FnOnce(&Snapshot) -> Result<()>,
    ) -> Result<Snapshot> {
        if kind == Kind::Committed {
            return Err(SnapshotError::InvalidArgument(format!(
                "snapshot {key:?}: only active snapshots and views can be created"
            )));
        }
        check_key("key", key)?;
        validate_labels(&labels)?;
        let txn = self.db.begin_write()?;
        let snapshot = {
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            let mut children = txn.open_multimap_table(CHILDREN)?;
            let mut meta = txn.open_table(META)?;

            if snapshots.get(key)?.is_some() {
                return Err(SnapshotError::AlreadyExists(format!(
                    "snapshot {key:?} already exists"
                )));
            }
            let parent_ids = match parent {
                Some(parent) => {
                    let record = read(&snapshots, parent)?.ok_or_else(|| {
                        SnapshotError::NotFound(format!(
                            "parent snapshot {parent:?} does not exist"
                        ))
                    })?;
                    if record.kind != Kind::Committed {
                        return Err(SnapshotError::InvalidArgument(format!(
                            "parent {parent:?} is not a committed snapshot"
                        )));
                    }
                    ancestors(&snapshots, parent, record)?
                }
                None => Vec::new(),
            };

            let id = meta.get(META_NEXT_ID)?.map_or(1, |v| v.value());
            meta.insert(META_NEXT_ID, id + 1)?;
            let now = Timestamp::now();
            let record = Record {
                version: SCHEMA_VERSION,
                id,
                kind,
                parent: parent.map(str::to_owned),
                labels,
                created_at: now,
                updated_at: now,
                usage: None,
            };
            write(&mut snapshots, key, &record)?;
            if let Some(parent) = parent {
                children.insert(parent, key)?;
            }
            Snapshot {
                id,
                kind,
                parent_ids,
            }
        };
        // Dropping `txn` without commit aborts it.
        before_commit(&snapshot)?;
        txn.commit()?;
        Ok(snapshot)
    }

    /// The active snapshot or view `key` with its ancestors' ids.
    pub fn snapshot(&self, key: &str) -> Result<Snapshot> {
        let txn = self.db.begin_read()?;
        let snapshots = txn.open_table(SNAPSHOTS)?;
        let record = read(&snapshots, key)?.ok_or_else(|| not_found(key))?;
        if record.kind == Kind::Committed {
            return Err(SnapshotError::FailedPrecondition(format!(
                "snapshot {key:?} is committed; only active snapshots and views have mounts"
            )));
        }
        let (id, kind) = (record.id, record.kind);
        let parent_ids = match record.parent.clone() {
            Some(parent) => {
                let precord = read(&snapshots, &parent)?.ok_or_else(|| missing_parent(&parent))?;
                ancestors(&snapshots, &parent, precord)?
            }
            None => Vec::new(),
        };
        Ok(Snapshot {
            id,
            kind,
            parent_ids,
        })
    }

    /// Id, info and stored usage of `key`.
    pub fn entry(&self, key: &str) -> Result<Entry> {
        let txn = self.db.begin_read()?;
        let snapshots = txn.open_table(SNAPSHOTS)?;
        let record = read(&snapshots, key)?.ok_or_else(|| not_found(key))?;
        Ok(Entry {
            id: record.id,
            usage: record.usage,
            info: record.info(key),
        })
    }

    /// Info of `key`.
    pub fn stat(&self, key: &str) -> Result<Info> {
        Ok(self.entry(key)?.info)
    }

    /// Turns the active snapshot `key` into the committed snapshot `name`,
    /// keeping its id. `expected_id` is the id the caller measured `usage`
    /// for; if `key` was replaced meanwhile the commit fails.
    ///
    /// As in containerd, the committed snapshot gets the labels given here
    /// and fresh timestamps. `parent` may name a parent for a snapshot
    /// prepared without one, but never change an existing parent.
    pub fn commit(
        &self,
        key: &str,
        name: &str,
        parent: Option<&str>,
        labels: Labels,
        expected_id: u64,
        usage: Usage,
    ) -> Result<Info> {
        check_key("name", name)?;
        validate_labels(&labels)?;
        let txn = self.db.begin_write()?;
        let info = {
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            let mut children = txn.open_multimap_table(CHILDREN)?;
            if snapshots.get(name)?.is_some() {
                return Err(SnapshotError::AlreadyExists(format!(
                    "snapshot {name:?} already exists"
                )));
            }
            let mut record = read(&snapshots, key)?.ok_or_else(|| not_found(key))?;
            if record.kind != Kind::Active {
                return Err(not_active(key));
            }
            if record.id != expected_id {
                return Err(SnapshotError::FailedPrecondition(format!(
                    "snapshot {key:?} was replaced during commit"
                )));
            }
            match (&record.parent, parent) {
                (Some(old), Some(new)) if old != new => {
                    return Err(SnapshotError::InvalidArgument(format!(
                        "cannot change parent of active snapshot {key:?} from {old:?} to {new:?} on commit"
                    )));
                }
                (None, Some(new)) => {
                    let precord = read(&snapshots, new)?.ok_or_else(|| {
                        SnapshotError::NotFound(format!("parent snapshot {new:?} does not exist"))
                    })?;
                    if precord.kind != Kind::Committed {
                        return Err(SnapshotError::InvalidArgument(format!(
                            "parent {new:?} is not a committed snapshot"
                        )));
                    }
                    record.parent = Some(new.to_owned());
                }
                _ => {}
            }
            let now = Timestamp::now();
            record.kind = Kind::Committed;
            record.labels = labels;
            record.created_at = now;
            record.updated_at = now;
            record.usage = Some(usage);
            snapshots.remove(key)?;
            write(&mut snapshots, name, &record)?;
            if let Some(parent) = &record.parent {
                children.remove(parent.as_str(), key)?;
                children.insert(parent.as_str(), name)?;
            }
            record.info(name)
        };
        txn.commit()?;
        Ok(info)
    }

    /// Removes the record of `key`, returning its id and kind so that the
    /// caller can delete the directory once this has committed.
    pub fn remove(&self, key: &str) -> Result<(u64, Kind)> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            let mut children = txn.open_multimap_table(CHILDREN)?;
            let record = read(&snapshots, key)?.ok_or_else(|| not_found(key))?;
            if !children.get(key)?.is_empty() {
                return Err(SnapshotError::FailedPrecondition(format!(
                    "cannot remove snapshot {key:?}: it has children"
                )));
            }
            snapshots.remove(key)?;
            if let Some(parent) = &record.parent {
                children.remove(parent.as_str(), key)?;
            }
            (record.id, record.kind)
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Changes the labels of `name` as containerd's `UpdateInfo` does:
    /// `labels` replaces all labels, `labels.<key>` sets (or, if absent from
    /// `labels`, removes) one label; an empty `paths` replaces all labels.
    /// Any other path is refused.
    pub fn update(&self, name: &str, labels: &Labels, paths: &[String]) -> Result<Info> {
        // Validate before touching anything, so a bad path changes nothing.
        for path in paths {
            if path != "labels" && !path.starts_with("labels.") {
                return Err(SnapshotError::InvalidArgument(format!(
                    "cannot update {path:?} of snapshot {name:?}: only labels can change"
                )));
            }
        }
        let txn = self.db.begin_write()?;
        let info = {
            let mut snapshots = txn.open_table(SNAPSHOTS)?;
            let mut record = read(&snapshots, name)?.ok_or_else(|| not_found(name))?;
            if paths.is_empty() {
                record.labels = labels.clone();
            }
            for path in paths {
                match path.strip_prefix("labels.") {
                    Some(key) => match labels.get(key) {
                        Some(value) => {
                            record.labels.insert(key.to_owned(), value.clone());
                        }
                        None => {
                            record.labels.remove(key);
                        }
                    },
                    None => record.labels = labels.clone(),
                }
            }
            validate_labels(&record.labels)?;
            record.updated_at = Timestamp::now();
            write(&mut snapshots, name, &record)?;
            record.info(name)
        };
        txn.commit()?;
        Ok(info)
    }

    /// Infos of all snapshots matching `filter`, ordered by name.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Info>> {
        let txn = self.db.begin_read()?;
        let snapshots = txn.open_table(SNAPSHOTS)?;
        let mut out = Vec::new();
        for item in snapshots.iter()? {
            let (key, value) = item?;
            let key = key.value();
            let info = decode(key, value.value())?.info(key);
            if filter.matches(&info) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Ids of all snapshots (their directories must be kept).
    pub fn ids(&self) -> Result<HashSet<u64>> {
        let txn = self.db.begin_read()?;
        let snapshots = txn.open_table(SNAPSHOTS)?;
        let mut ids = HashSet::new();
        for item in snapshots.iter()? {
            let (key, value) = item?;
            ids.insert(decode(key.value(), value.value())?.id);
        }
        Ok(ids)
    }
}

fn not_found(key: &str) -> SnapshotError {
    SnapshotError::NotFound(format!("snapshot {key:?} does not exist"))
}

fn missing_parent(parent: &str) -> SnapshotError {
    SnapshotError::FailedPrecondition(format!(
        "parent snapshot {parent:?} is missing from the metadata"
    ))
}

fn not_active(key: &str) -> SnapshotError {
    SnapshotError::FailedPrecondition(format!("snapshot {key:?} is not active"))
}

fn check_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(SnapshotError::InvalidArgument(format!(
            "snapshot {what} must not be empty"
        )));
    }
    Ok(())
}

/// containerd's `labels.Validate`: key and value together at most 4096 bytes.
fn validate_labels(labels: &Labels) -> Result<()> {
    for (k, v) in labels {
        if k.len() + v.len() > MAX_LABEL_SIZE {
            return Err(SnapshotError::InvalidArgument(format!(
                "label {k:?}: key and value length ({} bytes) greater than maximum size ({MAX_LABEL_SIZE} bytes)",
                k.len() + v.len()
            )));
        }
    }
    Ok(())
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes).map_err(|source| SnapshotError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

fn read(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<Record>> {
    match table.get(key)? {
        Some(guard) => decode(key, guard.value()).map(Some),
        None => Ok(None),
    }
}

fn write(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    record: &Record,
) -> Result<()> {
    let bytes = serde_json::to_vec(record).map_err(|source| SnapshotError::Corrupt {
        key: key.to_owned(),
        source,
    })?;
    table.insert(key, bytes.as_slice())?;
    Ok(())
}

/// Ids of `parent` (whose record is given) and all its ancestors, nearest
/// first.
fn ancestors(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    parent: &str,
    record: Record,
) -> Result<Vec<u64>> {
    let mut ids = vec![record.id];
    let mut next = record.parent;
    while let Some(key) = next {
        let record = read(table, &key)?.ok_or_else(|| missing_parent(&key))?;
        ids.push(record.id);
        next = record.parent;
        // A cycle can only come from a corrupt database; stop rather than loop.
        if ids.len() > 100_000 {
            return Err(SnapshotError::FailedPrecondition(format!(
                "parent chain of {parent:?} does not end"
            )));
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Store {
        Store::open(&dir.join("metadata.redb")).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ok(_: &Snapshot) -> Result<()> {
        Ok(())
    }

    fn usage(size: u64) -> Usage {
        Usage { size, inodes: 2 }
    }

    /// Prepares `key` on `parent` and commits it as `name`.
    fn committed(store: &Store, name: &str, parent: Option<&str>) -> u64 {
        let key = format!("{name}-active");
        let s = store
            .create(Kind::Active, &key, parent, Labels::new(), ok)
            .unwrap();
        store
            .commit(&key, name, None, Labels::new(), s.id, usage(1))
            .unwrap();
        s.id
    }

    #[test]
    fn metadata_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path());
        let mode = std::fs::metadata(dir.path().join("metadata.redb"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, METADATA_MODE);
    }

    #[test]
    fn ids_increase_and_parents_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = committed(&store, "a", None);
        let b = committed(&store, "b", Some("a"));
        assert!(b > a);
        let c = store
            .create(Kind::Active, "c", Some("b"), Labels::new(), ok)
            .unwrap();
        assert!(c.id > b);
        assert_eq!(c.parent_ids, vec![b, a]);
        assert_eq!(store.snapshot("c").unwrap(), c);
        let v = store
            .create(Kind::View, "v", Some("a"), Labels::new(), ok)
            .unwrap();
        assert_eq!((v.kind, v.parent_ids.clone()), (Kind::View, vec![a]));
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, c) = {
            let store = open(dir.path());
            let a = committed(&store, "a", None);
            let c = store
                .create(Kind::Active, "c", Some("a"), labels(&[("x", "1")]), ok)
                .unwrap();
            (a, c)
        };
        let store = open(dir.path());
        assert_eq!(store.snapshot("c").unwrap(), c);
        let info = store.stat("c").unwrap();
        assert_eq!(info.parent.as_deref(), Some("a"));
        assert_eq!(info.labels, labels(&[("x", "1")]));
        assert_eq!(store.entry("a").unwrap().usage, Some(usage(1)));
        assert_eq!(store.ids().unwrap(), HashSet::from([a, c.id]));
        // The counter persisted too: no id is reused.
        let d = store
            .create(Kind::Active, "d", None, Labels::new(), ok)
            .unwrap();
        assert!(d.id > c.id);
        // Children survived: "a" still cannot go.
        assert!(matches!(
            store.remove("a"),
            Err(SnapshotError::FailedPrecondition(_))
        ));
    }

    #[test]
    fn create_checks() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .create(Kind::Active, "k", None, Labels::new(), ok)
            .unwrap();
        let err = store
            .create(Kind::View, "k", None, Labels::new(), ok)
            .unwrap_err();
        assert!(matches!(err, SnapshotError::AlreadyExists(_)), "{err}");
        let err = store
            .create(Kind::Active, "x", Some("nope"), Labels::new(), ok)
            .unwrap_err();
        assert!(matches!(err, SnapshotError::NotFound(_)), "{err}");
        let err = store
            .create(Kind::Active, "x", Some("k"), Labels::new(), ok)
            .unwrap_err();
        assert!(matches!(err, SnapshotError::InvalidArgument(_)), "{err}");
        let err = store
            .create(Kind::Active, "", None, Labels::new(), ok)
            .unwrap_err();
        assert!(matches!(err, SnapshotError::InvalidArgument(_)), "{err}");
        let big = labels(&[("k", &"v".repeat(MAX_LABEL_SIZE))]);
        let err = store.create(Kind::Active, "x", None, big, ok).unwrap_err();
        assert!(matches!(err, SnapshotError::InvalidArgument(_)), "{err}");
    }

    #[test]
    fn failing_hook_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let err = store
            .create(Kind::Active, "k", None, Labels::new(), |_| {
                Err(SnapshotError::FailedPrecondition("hook".into()))
            })
            .unwrap_err();
        assert!(matches!(err, SnapshotError::FailedPrecondition(_)), "{err}");
        assert!(matches!(store.stat("k"), Err(SnapshotError::NotFound(_))));
        assert!(store.ids().unwrap().is_empty());
    }

    #[test]
    fn commit_rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let s = store
            .create(Kind::Active, "k", None, labels(&[("old", "1")]), ok)
            .unwrap();
        let err = store
            .commit("k", "n", None, Labels::new(), s.id + 1, usage(3))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::FailedPrecondition(_)), "{err}");

        let info = store
            .commit("k", "n", None, labels(&[("new", "2")]), s.id, usage(3))
            .unwrap();
        assert_eq!(info.kind, Kind::Committed);
        assert_eq!(info.labels, labels(&[("new", "2")]));
        assert!(matches!(store.stat("k"), Err(SnapshotError::NotFound(_))));
        let entry = store.entry("n").unwrap();
        assert_eq!((entry.id, entry.usage), (s.id, Some(usage(3))));

        // Committing again: the key is gone; a committed snapshot is not active.
        let err = store
            .commit("k", "n2", None, Labels::new(), s.id, usage(3))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::NotFound(_)), "{err}");
        let err = store
            .commit("n", "n2", None, Labels::new(), s.id, usage(3))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::FailedPrecondition(_)), "{err}");
        // Name taken.
        let v = store
            .create(Kind::View, "v", Some("n"), Labels::new(), ok)
            .unwrap();
        let err = store
            .commit("v", "n", None, Labels::new(), v.id, usage(3))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::AlreadyExists(_)), "{err}");
        // Views cannot be committed.
        let err = store
            .commit("v", "n3", None, Labels::new(), v.id, usage(3))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::FailedPrecondition(_)), "{err}");
        // Mounts of a committed snapshot are refused.
        assert!(matches!(
            store.snapshot("n"),
            Err(SnapshotError::FailedPrecondition(_))
        ));
    }

    #[test]
    fn commit_moves_child_link_and_can_set_parent() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        committed(&store, "base", None);
        committed(&store, "child", Some("base"));
        assert_eq!(store.stat("child").unwrap().parent.as_deref(), Some("base"));
        // The link follows the rename: removing child frees base.
        store.remove("child").unwrap();
        store.remove("base").unwrap();

        committed(&store, "p", None);
        let s = store
            .create(Kind::Active, "k", None, Labels::new(), ok)
            .unwrap();
        let info = store
            .commit("k", "n", Some("p"), Labels::new(), s.id, usage(1))
            .unwrap();
        assert_eq!(info.parent.as_deref(), Some("p"));
        assert!(store.remove("p").is_err());
        let s = store
            .create(Kind::Active, "k2", Some("p"), Labels::new(), ok)
            .unwrap();
        let err = store
            .commit("k2", "n2", Some("n"), Labels::new(), s.id, usage(1))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::InvalidArgument(_)), "{err}");
    }

    #[test]
    fn remove_rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = committed(&store, "a", None);
        let v = store
            .create(Kind::View, "v", Some("a"), Labels::new(), ok)
            .unwrap();
        assert!(matches!(
            store.remove("missing"),
            Err(SnapshotError::NotFound(_))
        ));
        assert!(matches!(
            store.remove("a"),
            Err(SnapshotError::FailedPrecondition(_))
        ));
        assert_eq!(store.remove("v").unwrap(), (v.id, Kind::View));
        assert_eq!(store.remove("a").unwrap(), (a, Kind::Committed));
        assert!(store.ids().unwrap().is_empty());
    }

    #[test]
    fn update_masks() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .create(
                Kind::Active,
                "k",
                None,
                labels(&[("a", "1"), ("b", "2")]),
                ok,
            )
            .unwrap();
        let before = store.stat("k").unwrap();

        let new = labels(&[("b", "20"), ("c", "3")]);
        let info = store
            .update("k", &new, &["labels.b".into(), "labels.a".into()])
            .unwrap();
        assert_eq!(info.labels, labels(&[("b", "20")]));
        assert!(info.updated_at >= before.updated_at);
        assert_eq!(info.created_at, before.created_at);

        let info = store.update("k", &new, &["labels".into()]).unwrap();
        assert_eq!(info.labels, new);
        let info = store.update("k", &labels(&[("z", "9")]), &[]).unwrap();
        assert_eq!(info.labels, labels(&[("z", "9")]));

        let err = store
            .update("k", &new, &["labels.q".into(), "parent".into()])
            .unwrap_err();
        assert!(matches!(err, SnapshotError::InvalidArgument(_)), "{err}");
        assert_eq!(store.stat("k").unwrap().labels, labels(&[("z", "9")]));
        assert!(matches!(
            store.update("nope", &new, &[]),
            Err(SnapshotError::NotFound(_))
        ));
    }

    #[test]
    fn list_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        committed(&store, "a", None);
        store
            .create(Kind::Active, "b", Some("a"), labels(&[("x", "1")]), ok)
            .unwrap();
        let names = |f: &[&str]| -> Vec<String> {
            let f: Vec<String> = f.iter().map(|s| (*s).to_owned()).collect();
            let filter = Filter::parse_all(&f).unwrap();
            store
                .list(&filter)
                .unwrap()
                .into_iter()
                .map(|i| i.name)
                .collect()
        };
        assert_eq!(names(&[]), ["a", "b"]);
        assert_eq!(names(&["kind==committed"]), ["a"]);
        assert_eq!(names(&["parent==a"]), ["b"]);
        assert_eq!(names(&["labels.x"]), ["b"]);
        assert_eq!(names(&["labels.x==2", "name==a"]), ["a"]);
    }
}
