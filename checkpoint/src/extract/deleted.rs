//! A checkpoint's `deleted.files`: the paths the container deleted from its image, parsed
//! with bounds and removed beneath the target without following symlinks.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

use super::beneath::{
    Beneath, check_depth, is_dir, normalise, open_beneath, open_dir, open_root, relative,
};
use super::{EscapeReason, ExtractError, Limits, Malformation, WHITEOUT_PREFIX, escape, io_error};

/// A deleted file's path must not name an overlay whiteout (`.wh.<name>`) anywhere: no image
/// layer holds such a file (unpacking turns it into a deletion), so a checkpoint's
/// `deleted.files` cannot have deleted one, and making a whiteout under that name would leave
/// a `.wh.` entry that a later diff of the layer would read as a deletion of its own.
pub(super) fn check_deleted_name(components: &[&[u8]], path: &Path) -> Result<(), ExtractError> {
    if components.iter().any(|c| c.starts_with(WHITEOUT_PREFIX)) {
        return Err(ExtractError::Malformed {
            entry: 0,
            path: path.to_path_buf(),
            reason: Malformation::WhiteoutNamedDeletion,
        });
    }
    Ok(())
}

/// Removes the paths of a checkpoint's `deleted.files` from `target`, beneath it and
/// without following symlinks: a path whose parent is a symlink is an error, a directory is
/// removed with its content (its symlinks removed, not followed), a missing path is
/// skipped. Returns the paths removed, relative to `target`.
pub fn apply_deletions(target: &Path, deleted: &[String]) -> Result<Vec<PathBuf>, ExtractError> {
    let root = open_root(target)?;
    let mut removed = Vec::new();
    for raw in deleted {
        let path = Path::new(raw);
        let components = normalise(raw.as_bytes()).map_err(|reason| escape(path, reason))?;
        let Some((name, parent)) = components.split_last() else {
            return Err(escape(path, EscapeReason::Target));
        };
        let dir = match open_beneath(&root, parent, false) {
            Ok(Beneath::Dir(fd)) => fd,
            Ok(Beneath::Missing | Beneath::NotDir(_)) => continue,
            Ok(Beneath::Symlink(i)) => {
                return Err(escape(
                    path,
                    EscapeReason::Symlink(relative(&components[..=i])),
                ));
            }
            Err(e) => return Err(io_error(path, e)),
        };
        let name = OsStr::from_bytes(name);
        let st = match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(io_error(path, e)),
        };
        if is_dir(st.st_mode) {
            remove_tree(&dir, name).map_err(|e| io_error(path, e))?;
        } else {
            match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(io_error(path, e)),
            }
        }
        removed.push(relative(&components));
    }
    Ok(removed)
}

/// Removes the directory `name` in `parent` and everything in it, without following
/// symlinks and without recursion (a tree may be deeper than the stack).
pub(super) fn remove_tree(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    enum Next {
        Descend(OwnedFd, OsString),
        Remove,
    }
    // The directories being emptied, each with its name in the one before (or `parent`).
    let mut stack = vec![(open_dir(parent.as_fd(), name)?, name.to_os_string())];
    while let Some((fd, _)) = stack.last() {
        // A fresh open file description, so each pass reads the directory from its start.
        let mut dir = Dir::openat(
            fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut next = Next::Remove;
        for item in dir.iter() {
            let item = item?;
            let child = item.file_name();
            if matches!(child.to_bytes(), b"." | b"..") {
                continue;
            }
            let child_is_dir = match item.file_type() {
                Some(kind) => kind == Type::Directory,
                None => is_dir(fstatat(fd, child, AtFlags::AT_SYMLINK_NOFOLLOW)?.st_mode),
            };
            if child_is_dir {
                let child = OsStr::from_bytes(child.to_bytes());
                next = Next::Descend(open_dir(fd.as_fd(), child)?, child.to_os_string());
                break;
            }
            match unlinkat(fd, child, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match next {
            Next::Descend(fd, name) => stack.push((fd, name)),
            Next::Remove => {
                let Some((_, name)) = stack.pop() else {
                    break;
                };
                let at = stack.last().map_or(parent, |(fd, _)| fd);
                match unlinkat(at, name.as_os_str(), UnlinkatFlags::RemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

/// Parses a checkpoint's `deleted.files`: a JSON array of paths, of at most
/// `limits.max_entries` paths of at most `limits.max_path_len` bytes, each a path beneath
/// the target (no `..`, no NUL).
pub fn parse_deleted_files(json: &[u8], limits: &Limits) -> Result<Vec<String>, ExtractError> {
    let file = Path::new("deleted.files");
    let mut exceeded = None;
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let parsed = BoundedPaths {
        limits,
        exceeded: &mut exceeded,
    }
    .deserialize(&mut deserializer)
    .and_then(|paths| deserializer.end().map(|()| paths));
    if let Some((path, what, limit)) = exceeded {
        return Err(ExtractError::LimitExceeded { path, what, limit });
    }
    let paths = parsed.map_err(|e| ExtractError::Malformed {
        entry: 0,
        path: file.to_path_buf(),
        reason: e.into(),
    })?;
    for path in &paths {
        let components =
            normalise(path.as_bytes()).map_err(|reason| escape(Path::new(path), reason))?;
        if components.is_empty() {
            return Err(escape(Path::new(path), EscapeReason::Target));
        }
        check_deleted_name(&components, Path::new(path))?;
        check_depth(&components, limits, Path::new(path))?;
    }
    Ok(paths)
}

/// Deserialises an array of strings, failing as soon as it breaks a limit (recorded in
/// `exceeded`).
struct BoundedPaths<'a> {
    limits: &'a Limits,
    exceeded: &'a mut Option<(PathBuf, &'static str, u64)>,
}

impl<'de> DeserializeSeed<'de> for BoundedPaths<'_> {
    type Value = Vec<String>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BoundedPaths<'_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of paths")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut paths = Vec::new();
        while let Some(path) = seq.next_element::<String>()? {
            if paths.len() as u64 >= self.limits.max_entries {
                *self.exceeded = Some((
                    PathBuf::from("deleted.files"),
                    "number of paths",
                    self.limits.max_entries,
                ));
                return Err(de::Error::custom("too many paths"));
            }
            if path.len() > self.limits.max_path_len {
                let shown: String = path.chars().take(64).collect();
                *self.exceeded = Some((
                    PathBuf::from(shown),
                    "path length",
                    self.limits.max_path_len as u64,
                ));
                return Err(de::Error::custom("path too long"));
            }
            paths.push(path);
        }
        Ok(paths)
    }
}
