//! Safe extraction of untrusted tar archives: a checkpoint's `rootfs-diff.tar` (plain or
//! gzip-compressed) and its `deleted.files`.
//!
//! A checkpoint archive may come from anywhere, so nothing in it may write outside the
//! directory it is extracted into, or exhaust memory or disk, or crash the program:
//!
//! - Entry names are relative to the target: a leading `/` is stripped, `.` components and
//!   repeated slashes are dropped, and a `..` component or a NUL byte is an error.
//! - Every path is opened component by component from a descriptor of the target, with
//!   `O_NOFOLLOW`, and every object is created with an `*at` call on its parent's
//!   descriptor: a symlink is never followed, whether the archive made it or it was there
//!   before, so an archive that makes `a -> /etc` and then writes `a/passwd` fails.
//!   Symlinks themselves are created (their target is only text).
//! - A hard link may only point at an entry this archive extracted before, found beneath
//!   the target the same way; links to symlinks link the symlink itself.
//! - Character and block devices are refused unless [`Options::allow_devices`]; FIFOs are
//!   created; sockets and other types are refused.
//! - Setuid and setgid bits are dropped unless [`Options::keep_setid`].
//! - [`Limits`] bounds the number of entries, the bytes of each file and of the whole
//!   archive, and the length and depth of names. Archive metadata (GNU long names, PAX
//!   records) is bounded too, before it is read.
//! - Overlay whiteouts (`.wh.<name>`, `.wh..wh..opq`, and 0:0 character devices) are reported
//!   in the [`Report`]; they are only created when [`Options::overlay_whiteouts`] asks for
//!   overlayfs' own form (a 0:0 character device, the `trusted.overlay.opaque` xattr), as
//!   when a layer is unpacked to be an overlay lower or upper directory.
//! - Directories the extraction creates for entries whose parents the archive does not list
//!   are reported ([`Report::implicit_dirs`]), so that a caller building an overlay layer can
//!   give them the attributes of the layers below ([`copy_dir_attrs`]).
//!
//! An error stops the extraction where it happened: what was extracted before stays in the
//! target, which the caller should then discard.
//!
//! The module's files, one concern each: `beneath` resolves names beneath the target without
//! following symlinks; `header` reads the GNU and PAX metadata entries; `extractor` writes
//! an archive's members; `overlay` makes overlayfs whiteouts and gives implicit directories
//! their lowers' attributes; `deleted` reads and applies a checkpoint's `deleted.files`;
//! `error` says why any of them stopped.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

mod beneath;
mod deleted;
mod error;
mod extractor;
mod header;
mod overlay;
#[cfg(test)]
mod tests;

use error::{escape, io_error};

pub use deleted::{apply_deletions, parse_deleted_files};
pub use error::{EntryKind, EscapeReason, ExtractError, LinkReason, Malformation};
pub use extractor::extract;
pub use header::{Pax, PaxError, parse_pax};
pub use overlay::{Whiteouts, copy_dir_attrs, make_whiteouts};

/// The prefix of overlay whiteout files in containerd's and containers/storage's diffs.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The whiteout that makes its directory opaque (hides the lower layers' content).
const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
/// The prefix of aufs metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): never extracted.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// Bounds on what an archive may make the extraction do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Archive members (files, directories, links... not counting the GNU and PAX metadata
    /// that describe them).
    pub max_entries: u64,
    /// Bytes of entry data in the whole archive (sum of the sizes in the headers, including
    /// metadata entries).
    pub max_total_bytes: u64,
    /// Bytes of one entry.
    pub max_file_bytes: u64,
    /// Bytes of an entry's name or link target, as written in the archive.
    pub max_path_len: usize,
    /// Components of an entry's name, once normalised.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
            max_total_bytes: 64 << 30,
            max_file_bytes: 16 << 30,
            max_path_len: 4096,
            max_depth: 256,
        }
    }
}

/// How to extract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub limits: Limits,
    /// Create character and block devices (with `mknod`) instead of refusing them.
    pub allow_devices: bool,
    /// Keep the setuid and setgid bits of the archive's modes (and the sticky bit of
    /// non-directories; directories always keep it, since it only restricts).
    pub keep_setid: bool,
    /// Give entries the archive's uid and gid (needs CAP_CHOWN); otherwise they belong to
    /// the extracting process.
    pub keep_owner: bool,
    /// Turn the archive's whiteouts into overlayfs whiteouts (they are still reported): a
    /// `.wh.<name>` (or a 0:0 character device) becomes a 0:0 character device `<name>`,
    /// replacing whatever the archive put there before (a directory with its content), and
    /// `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory. Needs
    /// CAP_MKNOD and CAP_SYS_ADMIN (for the `trusted.` xattr namespace). For OCI image
    /// layers unpacked as overlay lower directories; off by default.
    pub overlay_whiteouts: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            allow_devices: false,
            keep_setid: false,
            keep_owner: true,
            overlay_whiteouts: false,
        }
    }
}

/// What an extraction did. Paths are relative to the target; `.` is the target itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Archive members processed (metadata entries not counted).
    pub entries: u64,
    /// Bytes written to regular files.
    pub bytes: u64,
    /// Paths the archive's whiteouts delete (applied only with
    /// [`Options::overlay_whiteouts`]).
    pub whiteouts: Vec<PathBuf>,
    /// Directories the archive marks opaque (applied only with
    /// [`Options::overlay_whiteouts`]).
    pub opaque_dirs: Vec<PathBuf>,
    /// Directories the extraction created (mode 0755, owned by the extracting process)
    /// because an entry needed a parent the archive did not list, and that the archive
    /// did not list later either; in creation order, parents first. Only those still
    /// directories at the end.
    pub implicit_dirs: Vec<PathBuf>,
}

fn bytes_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}
