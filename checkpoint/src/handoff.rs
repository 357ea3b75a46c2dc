//! How revive-snapshotter tells the revive shim that a container is a restore.
//!
//! When a snapshot is prepared on a checkpoint image's layer, the snapshotter writes
//! [`HANDOFF_FILE`] into the new snapshot's directory, beside the overlay's upper directory
//! (`<root>/snapshots/<id>/fs`). The shim gets the container's rootfs mounts from containerd,
//! finds `upperdir=` among the overlay's options, and looks beside it. Nothing else passes
//! between them, so any client that creates the container (ctr, CRI, nerdctl) gets a restore.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::libc;
use serde::{Deserialize, Serialize};

/// The handoff's file name in the snapshot's directory.
pub const HANDOFF_FILE: &str = "revive-restore.json";
/// Largest handoff read.
const MAX_HANDOFF_BYTES: u64 = 64 << 10;

/// What the snapshotter hands the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handoff {
    /// [`Handoff::VERSION`].
    pub version: u32,
    /// The checkpoint archive (validated): CRIU's images in `checkpoint/`, `spec.dump`, ...
    pub archive: PathBuf,
    /// The checkpointed container's base image, under which the rootfs was rebuilt.
    pub base_image: String,
}

impl Handoff {
    /// The format written by this version.
    pub const VERSION: u32 = 1;
}

/// Why a handoff beside a snapshot is refused; `path` is the handoff file's. The container
/// is then not created, rather than created without the restore the snapshotter prepared.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The file exists but cannot be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file could have been written by someone other than root.
    #[error(
        "{}: not a regular file owned by root and writable only by it; ignoring a restore \
         nobody trusted asked for",
        path.display()
    )]
    Untrusted { path: PathBuf },
    /// The file is larger than any handoff.
    #[error("{}: too large", path.display())]
    TooLarge { path: PathBuf },
    /// The file is not a handoff's JSON.
    #[error("{}: {source}", path.display())]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The snapshotter writes a version this shim does not read.
    #[error(
        "{}: version {version} (this shim reads version {}): run a shim and a snapshotter of \
         the same release",
        path.display(),
        Handoff::VERSION
    )]
    Version { path: PathBuf, version: u32 },
}

/// The upper directory named by overlay mount options (`upperdir=...`).
pub fn upperdir(options: &[String]) -> Option<&Path> {
    options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(Path::new)
}

/// The handoff beside the overlay upper directory `upper`, if there is one. Only a file
/// owned by root and writable by nobody else counts, read without following symlinks.
pub fn find(upper: &Path) -> Result<Option<Handoff>, HandoffError> {
    let Some(dir) = upper.parent() else {
        return Ok(None);
    };
    let path = dir.join(HANDOFF_FILE);
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(HandoffError::Io { path, source }),
    };
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(source) => return Err(HandoffError::Io { path, source }),
    };
    if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(HandoffError::Untrusted { path });
    }
    if meta.len() > MAX_HANDOFF_BYTES {
        return Err(HandoffError::TooLarge { path });
    }
    let handoff: Handoff =
        match serde_json::from_reader(std::io::Read::take(file, MAX_HANDOFF_BYTES)) {
            Ok(handoff) => handoff,
            Err(source) => return Err(HandoffError::Malformed { path, source }),
        };
    if handoff.version != Handoff::VERSION {
        return Err(HandoffError::Version {
            path,
            version: handoff.version,
        });
    }
    Ok(Some(handoff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handoff_is_found_beside_the_upper_dir() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("fs");
        std::fs::create_dir(&upper).unwrap();
        let options = vec![
            "index=off".to_string(),
            format!("upperdir={}", upper.display()),
            "lowerdir=/a:/b".into(),
        ];
        assert_eq!(upperdir(&options), Some(upper.as_path()));
        assert_eq!(find(&upper).unwrap(), None);
        let handoff = Handoff {
            version: Handoff::VERSION,
            archive: "/var/lib/revive/snapshotter/snapshots/3/fs".into(),
            base_image: "docker.io/library/busybox:latest".into(),
        };
        std::fs::write(
            dir.path().join(HANDOFF_FILE),
            serde_json::to_vec(&handoff).unwrap(),
        )
        .unwrap();
        if nix::unistd::geteuid().is_root() {
            assert_eq!(find(&upper).unwrap(), Some(handoff.clone()));
            std::fs::write(
                dir.path().join(HANDOFF_FILE),
                serde_json::to_vec(&Handoff {
                    version: 9,
                    ..handoff
                })
                .unwrap(),
            )
            .unwrap();
            let err = find(&upper).unwrap_err();
            assert!(
                matches!(err, HandoffError::Version { version: 9, .. }),
                "{err}"
            );
            std::fs::write(dir.path().join(HANDOFF_FILE), b"{\"version\": 9}").unwrap();
            assert!(matches!(find(&upper), Err(HandoffError::Malformed { .. })));
        } else {
            eprintln!("SKIPPED part of the_handoff_is_found_beside_the_upper_dir: not root");
        }
    }
}
