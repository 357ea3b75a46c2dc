//! What makes an extraction an overlay layer: overlayfs whiteouts and opaque directories,
//! and the attributes of the lowers' directories for the directories an extraction creates.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::libc;
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, fstatat, makedev, mknodat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};

use super::beneath::{
    Beneath, is_dir, join, normalise, open_beneath, open_beneath_created, open_root, relative,
};
use super::deleted::{check_deleted_name, remove_tree};
use super::{EscapeReason, ExtractError, bytes_path, escape, io_error};

/// The xattr overlayfs reads to tell that a directory hides the lower layers' content.
pub(super) const OVERLAY_OPAQUE_XATTR: &std::ffi::CStr = c"trusted.overlay.opaque";

/// Replaces `name` in `parent` (a directory with its content) with an overlayfs whiteout:
/// a character device 0:0 of mode 0. Returns whether a directory was removed.
pub(super) fn make_whiteout(parent: &OwnedFd, name: &OsStr) -> io::Result<bool> {
    let removed_dir = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if is_dir(st.st_mode) => {
            remove_tree(parent, name)?;
            true
        }
        Ok(_) => {
            match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
            false
        }
        Err(Errno::ENOENT) => false,
        Err(e) => return Err(e.into()),
    };
    mknodat(parent, name, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))?;
    Ok(removed_dir)
}

/// Marks the directory `dir` opaque for overlayfs (`trusted.overlay.opaque=y`).
pub(super) fn set_opaque(dir: &OwnedFd) -> io::Result<()> {
    let value = b"y";
    // SAFETY: the name is a NUL-terminated string and the value a live buffer of the length
    // given; the descriptor is open for as long as the call lasts.
    let rc = unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            OVERLAY_OPAQUE_XATTR.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What [`make_whiteouts`] did. Paths are relative to the target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Whiteouts {
    /// The whiteouts made, in the order of the paths given.
    pub whiteouts: Vec<PathBuf>,
    /// The directories created (mode 0755, owned by the calling process) to hold them,
    /// parents first; see [`Report::implicit_dirs`] and [`copy_dir_attrs`].
    pub implicit_dirs: Vec<PathBuf>,
}

/// Makes an overlayfs whiteout (a character device 0:0) at each of `paths` beneath
/// `target`, for a checkpoint's `deleted.files` applied as an overlay upper layer: missing
/// parents are created, never through a symlink (a path through a symlink is an error, as
/// is a `..` component or the target itself); an existing entry is replaced, a directory
/// with its content. A path beneath a non-directory (for instance beneath a whiteout made
/// for an earlier path) is hidden already and skipped. Needs CAP_MKNOD.
pub fn make_whiteouts(target: &Path, paths: &[String]) -> Result<Whiteouts, ExtractError> {
    let root = open_root(target)?;
    let mut made = Whiteouts::default();
    let mut implicit: Vec<Vec<u8>> = Vec::new();
    for raw in paths {
        let path = Path::new(raw);
        let components = normalise(raw.as_bytes()).map_err(|reason| escape(path, reason))?;
        check_deleted_name(&components, path)?;
        let Some((name, parent)) = components.split_last() else {
            return Err(escape(path, EscapeReason::Target));
        };
        let mut created = Vec::new();
        let walked = open_beneath_created(&root, parent, true, &mut created);
        implicit.extend(created.iter().map(|&i| join(&parent[..=i])));
        let dir = match walked.map_err(|e| io_error(path, e))? {
            Beneath::Dir(fd) => fd,
            Beneath::Symlink(i) => {
                return Err(escape(
                    path,
                    EscapeReason::Symlink(relative(&components[..=i])),
                ));
            }
            Beneath::NotDir(_) | Beneath::Missing => continue,
        };
        let removed_dir =
            make_whiteout(&dir, OsStr::from_bytes(name)).map_err(|e| io_error(path, e))?;
        let whiteout = relative(&components);
        if removed_dir {
            // What was beneath the directory it replaced is gone, whiteouts made for
            // earlier paths included.
            let key = join(&components);
            implicit.retain(|dir| {
                !(dir.starts_with(&key) && matches!(dir.get(key.len()), None | Some(b'/')))
            });
            made.whiteouts
                .retain(|earlier| !earlier.starts_with(&whiteout));
        }
        made.whiteouts.push(whiteout);
    }
    made.implicit_dirs = implicit.iter().map(|dir| bytes_path(dir)).collect();
    Ok(made)
}

/// Gives the directory `rel` beneath `target` the mode, owner and group of the same
/// directory in the first of `from_lowers` (overlay lower directories, topmost first) that
/// has it, for the directories an extraction created implicitly in an overlay upper
/// directory (so that e.g. `/tmp` keeps its 1777 mode). Nothing is followed: a symlink on
/// the way beneath `target` is an error; in a lower, a symlink or another non-directory on
/// the way hides the lowers below it, so the search stops there. Opaque directories of the
/// lowers are not considered. Returns whether attributes were copied (false when no lower
/// has the directory, or `rel` is not a directory beneath `target`).
pub fn copy_dir_attrs(
    target: &Path,
    rel: &Path,
    from_lowers: &[PathBuf],
) -> Result<bool, ExtractError> {
    let components = normalise(rel.as_os_str().as_bytes()).map_err(|reason| escape(rel, reason))?;
    let root = open_root(target)?;
    let dir = match open_beneath(&root, &components, false).map_err(|e| io_error(rel, e))? {
        Beneath::Dir(fd) => fd,
        Beneath::Symlink(i) => {
            return Err(escape(
                rel,
                EscapeReason::Symlink(relative(&components[..=i])),
            ));
        }
        Beneath::Missing | Beneath::NotDir(_) => return Ok(false),
    };
    for lower in from_lowers {
        let lower_root = open_root(lower)?;
        let found = open_beneath(&lower_root, &components, false)
            .map_err(|e| io_error(&lower.join(rel), e))?;
        let from = match found {
            Beneath::Dir(fd) => fd,
            Beneath::Missing => continue,
            Beneath::Symlink(_) | Beneath::NotDir(_) => return Ok(false),
        };
        let st = fstat(&from).map_err(|e| io_error(&lower.join(rel), e))?;
        fchown(
            &dir,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        )
        .map_err(|e| io_error(rel, e))?;
        // After chown, which clears setgid.
        fchmod(&dir, Mode::from_bits_truncate(st.st_mode & 0o7777))
            .map_err(|e| io_error(rel, e))?;
        return Ok(true);
    }
    Ok(false)
}
