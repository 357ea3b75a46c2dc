//! Names beneath the target: an archive's names split into components, and directories
//! opened beneath a root, never through a symlink.
//!
//! A directory is opened with one `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` where the
//! kernel has it (Linux 5.6 and later), else, and whenever that call fails, by a walk that
//! opens one component at a time with `O_NOFOLLOW`. Both refuse every symlink on the way,
//! and the components never hold `..`, `.` or an empty name ([`normalise`]), so `openat2`
//! only ever opens the directory the walk would open; the walk alone tells a missing, a
//! symlinked and a non-directory component apart, and creates what is missing.

#[cfg(test)]
use std::cell::Cell;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, open, openat, openat2};
use nix::libc;
use nix::sys::stat::{Mode, fchmod, fstatat, mkdirat};

use super::{EscapeReason, ExtractError, Limits, bytes_path, io_error};

/// Mode of the directories created for entries whose parents the archive does not list.
pub(super) const IMPLICIT_DIR_MODE: u32 = 0o755;

/// Set once `openat2` failed with ENOSYS: the kernel lacks it, so only the walk is used.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

#[cfg(test)]
thread_local! {
    /// Makes [`open_beneath_created`] use only the component walk on this thread, so that
    /// tests run both ways of opening.
    pub(super) static WALK_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Splits an archive name into the components of a path beneath the target, like tar:
/// leading `/`, `.` and empty components are dropped. A `..` component or a NUL is an error
/// (the reason). The result is empty for the target itself (`/`, `./`).
pub(super) fn normalise(raw: &[u8]) -> Result<Vec<&[u8]>, EscapeReason> {
    if raw.contains(&0) {
        return Err(EscapeReason::Nul);
    }
    let mut components = Vec::new();
    for component in raw.split(|b| *b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(EscapeReason::DotDot),
            c => components.push(c),
        }
    }
    Ok(components)
}

pub(super) fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

pub(super) fn check_name(raw: &[u8], limits: &Limits, path: &Path) -> Result<(), ExtractError> {
    ExtractError::check_limit(
        raw.len() as u64,
        limits.max_path_len as u64,
        "name length",
        path,
    )
}

pub(super) fn check_depth(
    components: &[&[u8]],
    limits: &Limits,
    path: &Path,
) -> Result<(), ExtractError> {
    ExtractError::check_limit(
        components.len() as u64,
        limits.max_depth as u64,
        "path depth",
        path,
    )
}

pub(super) fn is_dir(mode: libc::mode_t) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_symlink(mode: libc::mode_t) -> bool {
    mode & libc::S_IFMT == libc::S_IFLNK
}

/// Opens the directory `path` that names a root beneath which things are opened (the
/// caller's, so symlinks in it are followed).
pub(super) fn open_root(path: &Path) -> Result<OwnedFd, ExtractError> {
    open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(path, e))
}

/// Opens the directory `name` in `at`, refusing a symlink.
pub(super) fn open_dir(at: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        at,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// What walking down a path beneath the target found.
pub(super) enum Beneath {
    Dir(OwnedFd),
    /// A component does not exist (and was not to be created).
    Missing,
    /// Component `n` (from 0) is a symlink.
    Symlink(usize),
    /// Component `n` is neither a directory nor a symlink.
    NotDir(usize),
}

/// Opens the directory at `components` beneath `root`, one component at a time without
/// following symlinks, creating missing ones if `create`.
pub(super) fn open_beneath(
    root: &OwnedFd,
    components: &[&[u8]],
    create: bool,
) -> io::Result<Beneath> {
    open_beneath_created(root, components, create, &mut Vec::new())
}

/// [`open_beneath`], which also appends to `created` the index of each component it
/// created.
pub(super) fn open_beneath_created(
    root: &OwnedFd,
    components: &[&[u8]],
    create: bool,
    created: &mut Vec<usize>,
) -> io::Result<Beneath> {
    // Whatever the callers normalised: a component that is not a plain name could climb
    // out in the walk, where the kernel would have refused it.
    if let Some(bad) = components
        .iter()
        .find(|c| c.is_empty() || **c == b"." || **c == b".." || c.contains(&b'/'))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{:?} is not a plain path component",
                String::from_utf8_lossy(bad)
            ),
        ));
    }
    #[cfg(test)]
    let walk_only = WALK_ONLY.get();
    #[cfg(not(test))]
    let walk_only = false;
    if !components.is_empty() && !walk_only && !NO_OPENAT2.load(Ordering::Relaxed) {
        match openat2_beneath(root, components) {
            Ok(fd) => return Ok(Beneath::Dir(fd)),
            Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // The path would leave the root: never retried by the walk.
            Err(Errno::EXDEV) => return Err(Errno::EXDEV.into()),
            // A missing, symlinked or non-directory component, or a rename racing the
            // lookup (EAGAIN): the walk finds out which, and creates what is missing.
            Err(_) => {}
        }
    }
    walk_beneath(root, components, create, created)
}

/// Opens the directory at `components` (not empty) beneath `root` in one call that fails
/// on any symlink (ELOOP) and on anything that would leave `root` (EXDEV).
pub(super) fn openat2_beneath(root: &OwnedFd, components: &[&[u8]]) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    openat2(root, OsStr::from_bytes(&join(components)), how)
}

/// [`open_beneath_created`] one component at a time, each opened with `O_NOFOLLOW` in the
/// one before.
fn walk_beneath(
    root: &OwnedFd,
    components: &[&[u8]],
    create: bool,
    created: &mut Vec<usize>,
) -> io::Result<Beneath> {
    let mut current: Option<OwnedFd> = None;
    for (i, component) in components.iter().enumerate() {
        let name = OsStr::from_bytes(component);
        let at = current.as_ref().map_or(root.as_fd(), |fd| fd.as_fd());
        let mut opened = open_dir(at, name);
        if matches!(opened, Err(Errno::ENOENT)) {
            if !create {
                return Ok(Beneath::Missing);
            }
            let made = match mkdirat(at, name, Mode::from_bits_truncate(IMPLICIT_DIR_MODE)) {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(e) => return Err(e.into()),
            };
            opened = open_dir(at, name);
            if made && let Ok(fd) = &opened {
                // The mode is the same whatever the umask.
                fchmod(fd, Mode::from_bits_truncate(IMPLICIT_DIR_MODE))?;
                created.push(i);
            }
        }
        match opened {
            Ok(fd) => current = Some(fd),
            Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) => {
                return match fstatat(at, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if is_symlink(st.st_mode) => Ok(Beneath::Symlink(i)),
                    Ok(_) => Ok(Beneath::NotDir(i)),
                    Err(_) => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    match current {
        Some(fd) => Ok(Beneath::Dir(fd)),
        None => Ok(Beneath::Dir(root.try_clone()?)),
    }
}

pub(super) fn relative(components: &[&[u8]]) -> PathBuf {
    if components.is_empty() {
        PathBuf::from(".")
    } else {
        bytes_path(&join(components))
    }
}
