//! Why an extraction or a deletion stops. Every reason is a type whose text says what the
//! archive (or `deleted.files`) holds; the archive is hostile or damaged either way, so what
//! to do is the same for all of them: discard the target, and take or fetch the checkpoint
//! again.

use std::io;
use std::path::{Path, PathBuf};

use super::header::PaxError;

/// Why an extraction (or a deletion) stopped. `path` is the entry's name as the archive
/// wrote it (or the path being deleted).
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// A name that would reach outside the target.
    #[error("{path:?}: refused, it would escape the target: {reason}")]
    PathEscape { path: PathBuf, reason: EscapeReason },
    /// A hard link to something other than an entry this archive extracted beneath the
    /// target.
    #[error("{path:?}: refused link to {target:?}: {reason}")]
    LinkEscape {
        path: PathBuf,
        target: PathBuf,
        reason: LinkReason,
    },
    /// An entry of a type this extractor does not write.
    #[error("{path:?}: unsupported entry type: {kind}")]
    Unsupported { path: PathBuf, kind: EntryKind },
    /// The archive goes past one of the [`super::Limits`].
    #[error("{path:?}: {what} exceeds the limit of {limit}")]
    LimitExceeded {
        path: PathBuf,
        what: &'static str,
        limit: u64,
    },
    /// The archive is not a well-formed tar (or `deleted.files` not a JSON list of paths).
    #[error("entry {entry} ({path:?}): malformed archive: {reason}")]
    Malformed {
        /// Index of the member (from 1) being read; 0 before the first one.
        entry: u64,
        path: PathBuf,
        reason: Malformation,
    },
    /// The target refused an operation (no space, no permission...).
    #[error("{path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl ExtractError {
    /// `Ok` while `value` is at most `limit`; otherwise [`ExtractError::LimitExceeded`] for
    /// `what` at `path`.
    pub(super) fn check_limit(
        value: u64,
        limit: u64,
        what: &'static str,
        path: &Path,
    ) -> Result<(), Self> {
        if value > limit {
            return Err(Self::LimitExceeded {
                path: path.to_path_buf(),
                what,
                limit,
            });
        }
        Ok(())
    }
}

/// Why a name would escape the target.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EscapeReason {
    #[error("the name contains a NUL byte")]
    Nul,
    #[error("the name contains a `..` component")]
    DotDot,
    /// A member's name that is empty once normalised, for an entry that is not a directory.
    #[error("the name is empty")]
    Empty,
    /// A deletion of the target itself (`/`, `.`).
    #[error("the path is the target itself")]
    Target,
    /// A whiteout `.wh.`, `.wh..` or `.wh...`.
    #[error("the whiteout names no file")]
    WhiteoutNamesNothing,
    #[error("the whiteout names the target itself")]
    WhiteoutIsTarget,
    #[error("the link target contains a NUL byte")]
    NulInLink,
    /// A component on the way, relative to the target, is a symlink.
    #[error("{0:?} is a symlink")]
    Symlink(PathBuf),
    /// A directory was swapped for a symlink between its creation and its opening.
    #[error("the directory was replaced by a symlink")]
    ReplacedBySymlink,
}

/// Why a hard link is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkReason {
    /// The link's target is not a name beneath the target.
    #[error(transparent)]
    Name(#[from] EscapeReason),
    /// The link names something this archive did not extract (something that was there
    /// before, or a whiteout).
    #[error("not an entry extracted before from this archive")]
    NotExtracted,
    #[error("empty name")]
    Empty,
    #[error("the target's path has a symlink")]
    SymlinkOnPath,
    #[error("the target's directory is gone")]
    DirectoryGone,
}

/// An entry type this extractor does not write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryKind {
    /// A file over 8 GiB, whose size only the PAX header holds.
    #[error("a PAX size ({pax}) different from the header's ({header}), as for files over 8 GiB")]
    PaxSize { pax: u64, header: u64 },
    #[error("sparse file")]
    Sparse,
    /// A character device other than a whiteout, without [`super::Options::allow_devices`].
    #[error("character device")]
    CharDevice,
    /// A block device, without [`super::Options::allow_devices`].
    #[error("block device")]
    BlockDevice,
    /// Any other tar type flag.
    #[error("{}", type_name(*.0))]
    Other(u8),
}

fn type_name(kind: u8) -> String {
    match kind {
        b'S' => "GNU sparse file".into(),
        b'V' => "volume label".into(),
        b'M' => "multi-volume continuation".into(),
        b'D' => "GNU directory dump".into(),
        b'N' => "old GNU long name".into(),
        other => format!("type {:?}", char::from(other)),
    }
}

/// How an archive (or `deleted.files`) is malformed.
#[derive(Debug, thiserror::Error)]
pub enum Malformation {
    /// The archive cannot be read at all.
    #[error("cannot read the archive: {0}")]
    Unreadable(io::Error),
    /// The archive's first header is not a tar header.
    #[error("cannot read the first header: {0}")]
    FirstHeader(io::Error),
    /// A header after the member `after` is not a tar header.
    #[error("cannot read the header after {after:?}: {source}")]
    Header { after: PathBuf, source: io::Error },
    /// A header field (mode, owner, time, device) or an entry's metadata cannot be read.
    #[error(transparent)]
    Read(#[from] io::Error),
    /// A member's data cannot be read.
    #[error("cannot read the data: {0}")]
    Data(io::Error),
    /// The archive ends before a member's data does.
    #[error("the archive ends inside the file ({written} of {size} bytes)")]
    Truncated { written: u64, size: u64 },
    #[error("metadata entries at the end describe no entry")]
    TrailingMetadata,
    #[error("two GNU long names for one entry")]
    TwoLongNames,
    #[error("two PAX headers for one entry")]
    TwoPaxHeaders,
    #[error(transparent)]
    Pax(#[from] PaxError),
    #[error("an entry beneath a whiteout")]
    BeneathWhiteout,
    #[error("a symlink without a target")]
    SymlinkWithoutTarget,
    #[error("a hard link without a target")]
    HardLinkWithoutTarget,
    #[error("no device numbers")]
    NoDeviceNumbers,
    /// A uid or gid that does not fit 32 bits, or is `chown`'s "unchanged".
    #[error("{what} {value} out of range")]
    IdOutOfRange { what: &'static str, value: u64 },
    /// A path in `deleted.files` that names an overlay whiteout.
    #[error(
        "a deleted file named like an overlay whiteout (`.wh.`), which no image layer can hold"
    )]
    WhiteoutNamedDeletion,
    /// `deleted.files` is not a JSON array of strings.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub(super) fn io_error(path: &Path, source: impl Into<io::Error>) -> ExtractError {
    ExtractError::Io {
        path: path.to_path_buf(),
        source: source.into(),
    }
}

pub(super) fn escape(path: &Path, reason: EscapeReason) -> ExtractError {
    ExtractError::PathEscape {
        path: path.to_path_buf(),
        reason,
    }
}
