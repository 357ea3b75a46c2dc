//! The layout of a checkpoint archive, as kubelet (through CRI), CRI-O, Podman and
//! checkpointctl write it, and as a checkpoint image's single layer holds it:
//!
//! ```text
//! checkpoint/       CRIU's images (inventory.img, pstree.img, pages-*.img, ...)
//! config.dump       the engine's record: container name and id, base image name and id
//! spec.dump         the container's OCI runtime spec at checkpoint
//! rootfs-diff.tar   files the container added or changed (gzip, despite the name)
//! deleted.files     JSON array of the paths it deleted
//! ...               logs and statistics (dump.log, stats-dump, status, ...)
//! ```
//!
//! Everything here reads a directory that came out of an untrusted image: files are opened
//! without following symlinks and must be regular files, reads are bounded, and anything
//! malformed is an error naming the file and what to do, never a panic.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::libc;
use serde::Deserialize;

/// CRIU's images.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The engine's record of the container.
pub const CONFIG_DUMP: &str = "config.dump";
/// The container's OCI runtime spec.
pub const SPEC_DUMP: &str = "spec.dump";
/// Added and changed files of the container's root filesystem.
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
/// Paths deleted from the container's root filesystem.
pub const DELETED_FILES: &str = "deleted.files";
/// The content of the container's `/dev/shm` (Podman's checkpoints, when `/dev/shm` was
/// Podman's own): an uncompressed tar.
pub const DEVSHM_TAR: &str = "devshm-checkpoint.tar";
/// CRIU images a restore cannot do without.
pub const REQUIRED_IMAGES: &[&str] = &["inventory.img", "pstree.img"];

/// Largest config.dump read (real ones are under 1 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest spec.dump read (real ones are a few KiB; a spec with many mounts or devices,
/// tens of KiB).
pub const MAX_SPEC_BYTES: u64 = 4 << 20;
/// Largest deleted.files read.
pub const MAX_DELETED_BYTES: u64 = 16 << 20;
/// Most entries accepted in `checkpoint/` (CRIU writes a few per process and memory area).
pub const MAX_IMAGE_FILES: usize = 100_000;

/// Why a checkpoint directory cannot be used. `file` is relative to the directory.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file of the checkpoint is not what the format says: the checkpoint is damaged or
    /// hostile, so take or fetch it again.
    #[error("checkpoint image: {file} {reason}")]
    Invalid { file: PathBuf, reason: Invalidity },
    /// A file of the checkpoint cannot be read.
    #[error("checkpoint image: {file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is wrong with a file of a checkpoint; the text follows the file's name.
#[derive(Debug, thiserror::Error)]
pub enum Invalidity {
    #[error("is a symlink")]
    Symlink,
    #[error("is not a regular file")]
    NotRegular,
    #[error("is {len} bytes, more than the {max} accepted")]
    TooLarge { len: u64, max: u64 },
    /// The file grew between its size was checked and its end was read.
    #[error("grew beyond the size accepted")]
    Grew,
    #[error("is not valid JSON: {0}")]
    Json(serde_json::Error),
    /// `spec.dump` lacks the `process` or `linux` object.
    #[error("has no `{0}` object: not an OCI runtime spec")]
    NotASpec(&'static str),
    #[error("`mounts` is not an array")]
    MountsNotAnArray,
    /// `deleted.files` is refused.
    #[error("{0}")]
    Deleted(crate::extract::ExtractError),
    #[error("is not a directory")]
    NotADirectory,
    /// `checkpoint/` is missing.
    #[error("is missing: the image holds no CRIU images, so there is nothing to restore")]
    NoImages,
    #[error("holds more than {MAX_IMAGE_FILES} entries")]
    TooManyImages,
    /// An entry of `checkpoint/` that is not a regular file ("a symlink", "a device"...).
    #[error("is {0}; CRIU's images are regular files only")]
    NotAnImage(&'static str),
    /// One of [`REQUIRED_IMAGES`] is missing.
    #[error("is missing: the CRIU images are incomplete")]
    MissingImage,
}

fn invalid(file: &Path, reason: Invalidity) -> ArchiveError {
    ArchiveError::Invalid {
        file: file.to_path_buf(),
        reason,
    }
}

/// config.dump: the fields revive uses (the file has more; unknown fields are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    /// The base image as the engine named it (a reference, possibly not normalised).
    pub rootfs_image: String,
    /// The base image's id (CRI: its config digest).
    pub rootfs_image_ref: String,
    /// The base image's full name.
    pub rootfs_image_name: String,
    /// The runtime the container ran on.
    pub runtime: String,
}

impl ContainerConfig {
    /// The ways this record names the base image, best first, without repeats: the full
    /// name, the name as given, the id.
    pub fn base_image_refs(&self) -> Vec<String> {
        let mut refs: Vec<String> = Vec::new();
        for r in [
            &self.rootfs_image_name,
            &self.rootfs_image,
            &self.rootfs_image_ref,
        ] {
            let r = r.trim();
            if !r.is_empty() && !refs.iter().any(|have| have == r) {
                refs.push(r.to_string());
            }
        }
        refs
    }
}

/// Whether `dir` holds a checkpoint archive's layout: a regular `config.dump` and
/// `spec.dump`, which every engine writes. Whether it is complete is [`validate`]'s question.
pub fn is_checkpoint(dir: &Path) -> bool {
    [CONFIG_DUMP, SPEC_DUMP].iter().all(|name| {
        std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.file_type().is_file())
    })
}

/// Opens `dir/name` for reading: a regular file, not through a symlink.
fn open_regular(dir: &Path, name: &str) -> Result<(File, u64), ArchiveError> {
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => invalid(Path::new(name), Invalidity::Symlink),
            _ => ArchiveError::Io {
                file: name.into(),
                source,
            },
        })?;
    let meta = file.metadata().map_err(|source| ArchiveError::Io {
        file: name.into(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(invalid(Path::new(name), Invalidity::NotRegular));
    }
    Ok((file, meta.len()))
}

/// Reads `dir/name` whole, refusing more than `max` bytes.
pub fn read_bounded(dir: &Path, name: &str, max: u64) -> Result<Vec<u8>, ArchiveError> {
    let (file, len) = open_regular(dir, name)?;
    if len > max {
        return Err(invalid(Path::new(name), Invalidity::TooLarge { len, max }));
    }
    let mut data = Vec::with_capacity(len as usize);
    file.take(max + 1)
        .read_to_end(&mut data)
        .map_err(|source| ArchiveError::Io {
            file: name.into(),
            source,
        })?;
    if data.len() as u64 > max {
        return Err(invalid(Path::new(name), Invalidity::Grew));
    }
    Ok(data)
}

/// Parses config.dump.
pub fn parse_config(data: &[u8]) -> Result<ContainerConfig, ArchiveError> {
    serde_json::from_slice(data).map_err(|e| invalid(Path::new(CONFIG_DUMP), Invalidity::Json(e)))
}

/// Parses spec.dump: a JSON object with a `process` object (the restored process) and a
/// `linux` object.
pub fn parse_spec(data: &[u8]) -> Result<serde_json::Value, ArchiveError> {
    let spec: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| invalid(Path::new(SPEC_DUMP), Invalidity::Json(e)))?;
    for field in ["process", "linux"] {
        if !spec[field].is_object() {
            return Err(invalid(Path::new(SPEC_DUMP), Invalidity::NotASpec(field)));
        }
    }
    if let Some(mounts) = spec.get("mounts")
        && !mounts.is_array()
    {
        return Err(invalid(Path::new(SPEC_DUMP), Invalidity::MountsNotAnArray));
    }
    Ok(spec)
}

/// Reads and parses config.dump.
pub fn read_config(dir: &Path) -> Result<ContainerConfig, ArchiveError> {
    parse_config(&read_bounded(dir, CONFIG_DUMP, MAX_CONFIG_BYTES)?)
}

/// Reads and parses spec.dump.
pub fn read_spec(dir: &Path) -> Result<serde_json::Value, ArchiveError> {
    parse_spec(&read_bounded(dir, SPEC_DUMP, MAX_SPEC_BYTES)?)
}

/// Reads and parses deleted.files; none when the archive has no such file.
pub fn read_deleted(dir: &Path) -> Result<Vec<String>, ArchiveError> {
    match std::fs::symlink_metadata(dir.join(DELETED_FILES)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        _ => {}
    }
    let data = read_bounded(dir, DELETED_FILES, MAX_DELETED_BYTES)?;
    let limits = crate::extract::Limits::default();
    crate::extract::parse_deleted_files(&data, &limits)
        .map_err(|e| invalid(Path::new(DELETED_FILES), Invalidity::Deleted(e)))
}

/// Opens rootfs-diff.tar; none when the archive has none (the container changed nothing).
pub fn open_rootfs_diff(dir: &Path) -> Result<Option<File>, ArchiveError> {
    match std::fs::symlink_metadata(dir.join(ROOTFS_DIFF)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => open_regular(dir, ROOTFS_DIFF).map(|(file, _)| Some(file)),
    }
}

/// Checks that `dir`'s CRIU images can be handed to CRIU: `checkpoint/` is a real directory
/// holding only regular files (a symlink there would let an image make CRIU, which runs as
/// root, read any file of the host into the restored process's memory), at most
/// [`MAX_IMAGE_FILES`] of them, including [`REQUIRED_IMAGES`]. Returns the directory.
pub fn validate(dir: &Path) -> Result<PathBuf, ArchiveError> {
    let images = dir.join(CHECKPOINT_DIR);
    let rel = Path::new(CHECKPOINT_DIR);
    match std::fs::symlink_metadata(&images) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(_) => return Err(invalid(rel, Invalidity::NotADirectory)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(invalid(rel, Invalidity::NoImages));
        }
        Err(source) => {
            return Err(ArchiveError::Io {
                file: rel.into(),
                source,
            });
        }
    }
    let io = |source| ArchiveError::Io {
        file: rel.into(),
        source,
    };
    let mut count = 0usize;
    for entry in std::fs::read_dir(&images).map_err(io)? {
        let entry = entry.map_err(io)?;
        count += 1;
        if count > MAX_IMAGE_FILES {
            return Err(invalid(rel, Invalidity::TooManyImages));
        }
        let kind = entry.file_type().map_err(io)?;
        if !kind.is_file() {
            let what = if kind.is_symlink() {
                "a symlink"
            } else if kind.is_dir() {
                "a directory"
            } else if kind.is_block_device() || kind.is_char_device() {
                "a device"
            } else {
                "not a regular file"
            };
            return Err(invalid(
                &rel.join(entry.file_name()),
                Invalidity::NotAnImage(what),
            ));
        }
    }
    for name in REQUIRED_IMAGES {
        if !std::fs::symlink_metadata(images.join(name)).is_ok_and(|m| m.file_type().is_file()) {
            return Err(invalid(&rel.join(name), Invalidity::MissingImage));
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path) {
        std::fs::create_dir(dir.join(CHECKPOINT_DIR)).unwrap();
        for img in REQUIRED_IMAGES {
            std::fs::write(dir.join(CHECKPOINT_DIR).join(img), b"x").unwrap();
        }
        std::fs::write(
            dir.join(CONFIG_DUMP),
            br#"{"id":"4be9","name":"w","rootfsImage":"busybox","rootfsImageRef":"sha256:ab","rootfsImageName":"docker.io/library/busybox:latest","runtime":"io.containerd.revive.v2","restored":false}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join(SPEC_DUMP),
            br#"{"process":{"args":["sh"]},"linux":{},"mounts":[]}"#,
        )
        .unwrap();
    }

    /// A fresh directory holding a complete checkpoint layout.
    fn laid_out() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        layout(dir.path());
        dir
    }

    #[test]
    fn a_complete_layout_is_recognised_and_valid() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_checkpoint(dir.path()));
        layout(dir.path());
        assert!(is_checkpoint(dir.path()));
        assert_eq!(
            validate(dir.path()).unwrap(),
            dir.path().join(CHECKPOINT_DIR)
        );
        let config = read_config(dir.path()).unwrap();
        assert_eq!(
            config.base_image_refs(),
            ["docker.io/library/busybox:latest", "busybox", "sha256:ab"]
        );
        assert_eq!(read_spec(dir.path()).unwrap()["process"]["args"][0], "sh");
        assert!(read_deleted(dir.path()).unwrap().is_empty());
        assert!(open_rootfs_diff(dir.path()).unwrap().is_none());
    }

    #[test]
    fn a_symlink_among_the_images_is_refused() {
        let dir = laid_out();
        std::os::unix::fs::symlink("/etc/shadow", dir.path().join("checkpoint/pages-1.img"))
            .unwrap();
        let err = validate(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pages-1.img is a symlink"), "{err}");
    }

    #[test]
    fn missing_images_are_named() {
        let dir = laid_out();
        std::fs::remove_file(dir.path().join("checkpoint/pstree.img")).unwrap();
        let err = validate(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pstree.img is missing"), "{err}");
        std::fs::remove_dir_all(dir.path().join(CHECKPOINT_DIR)).unwrap();
        let err = validate(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no CRIU images"), "{err}");
    }

    #[test]
    fn metadata_through_a_symlink_is_refused() {
        let dir = laid_out();
        std::fs::remove_file(dir.path().join(SPEC_DUMP)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(SPEC_DUMP)).unwrap();
        assert!(!is_checkpoint(dir.path()));
        let err = read_spec(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a symlink"), "{err}");
    }

    #[test]
    fn bad_json_and_giant_files_are_errors() {
        let dir = laid_out();
        std::fs::write(dir.path().join(CONFIG_DUMP), b"{\"id\": 3").unwrap();
        assert!(read_config(dir.path()).is_err());
        std::fs::write(dir.path().join(CONFIG_DUMP), b"{\"id\": 3}").unwrap();
        assert!(read_config(dir.path()).is_err(), "a number is not an id");
        std::fs::write(dir.path().join(SPEC_DUMP), b"[]").unwrap();
        let err = read_spec(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an OCI runtime spec"), "{err}");
        let big = File::create(dir.path().join(SPEC_DUMP)).unwrap();
        big.set_len(MAX_SPEC_BYTES + 1).unwrap();
        let err = read_spec(dir.path()).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
        std::fs::write(dir.path().join(DELETED_FILES), b"[\"/a\", 1]").unwrap();
        assert!(read_deleted(dir.path()).is_err());
    }
}
