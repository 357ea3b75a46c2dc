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

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::libc;
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstat, fstatat, futimens,
    makedev, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat,
};
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

/// Largest PAX extended header accepted (path, link path, times, xattrs of one entry).
const MAX_PAX_BYTES: u64 = 1 << 20;
/// The prefix of overlay whiteout files in containerd's and containers/storage's diffs.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The whiteout that makes its directory opaque (hides the lower layers' content).
const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
/// The prefix of aufs metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): never extracted.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
/// The xattr overlayfs reads to tell that a directory hides the lower layers' content.
const OVERLAY_OPAQUE_XATTR: &std::ffi::CStr = c"trusted.overlay.opaque";
/// Mode of the directories created for entries whose parents the archive does not list.
const IMPLICIT_DIR_MODE: u32 = 0o755;
/// Size of the buffer file contents are copied through.
const COPY_BUFFER: usize = 64 * 1024;
/// Bytes of paths kept in memory during an extraction (whiteouts and opaque directories
/// reported, directories whose times are set at the end): names compress well, so a small
/// gzip could otherwise make a large report.
const MAX_RETAINED_BYTES: usize = 128 << 20;

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

/// Why an extraction (or a deletion) stopped. `path` is the entry's name as the archive
/// wrote it (or the path being deleted).
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{path:?}: refused, it would escape the target: {reason}")]
    PathEscape { path: PathBuf, reason: String },
    #[error("{path:?}: refused link to {target:?}: {reason}")]
    LinkEscape {
        path: PathBuf,
        target: PathBuf,
        reason: String,
    },
    #[error("{path:?}: unsupported entry type: {kind}")]
    Unsupported { path: PathBuf, kind: String },
    #[error("{path:?}: {what} exceeds the limit of {limit}")]
    LimitExceeded {
        path: PathBuf,
        what: &'static str,
        limit: u64,
    },
    #[error("entry {entry} ({path:?}): malformed archive: {reason}")]
    Malformed {
        /// Index of the member (from 1) being read; 0 before the first one.
        entry: u64,
        path: PathBuf,
        reason: String,
    },
    #[error("{path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn bytes_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

fn io_error(path: &Path, source: impl Into<io::Error>) -> ExtractError {
    ExtractError::Io {
        path: path.to_path_buf(),
        source: source.into(),
    }
}

fn escape(path: &Path, reason: impl Into<String>) -> ExtractError {
    ExtractError::PathEscape {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Splits an archive name into the components of a path beneath the target, like tar:
/// leading `/`, `.` and empty components are dropped. A `..` component or a NUL is an error
/// (the reason). The result is empty for the target itself (`/`, `./`).
fn normalise(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.contains(&0) {
        return Err("the name contains a NUL byte");
    }
    let mut components = Vec::new();
    for component in raw.split(|b| *b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err("the name contains a `..` component"),
            c => components.push(c),
        }
    }
    Ok(components)
}

/// A deleted file's path must not name an overlay whiteout (`.wh.<name>`) anywhere: no image
/// layer holds such a file (unpacking turns it into a deletion), so a checkpoint's
/// `deleted.files` cannot have deleted one, and making a whiteout under that name would leave
/// a `.wh.` entry that a later diff of the layer would read as a deletion of its own.
fn check_deleted_name(components: &[&[u8]], path: &Path) -> Result<(), ExtractError> {
    if components.iter().any(|c| c.starts_with(WHITEOUT_PREFIX)) {
        return Err(ExtractError::Malformed {
            entry: 0,
            path: path.to_path_buf(),
            reason: "a deleted file named like an overlay whiteout (`.wh.`), which no image \
                     layer can hold"
                .into(),
        });
    }
    Ok(())
}

fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

fn check_name(raw: &[u8], limits: &Limits, path: &Path) -> Result<(), ExtractError> {
    if raw.len() > limits.max_path_len {
        return Err(ExtractError::LimitExceeded {
            path: path.to_path_buf(),
            what: "name length",
            limit: limits.max_path_len as u64,
        });
    }
    Ok(())
}

fn check_depth(components: &[&[u8]], limits: &Limits, path: &Path) -> Result<(), ExtractError> {
    if components.len() > limits.max_depth {
        return Err(ExtractError::LimitExceeded {
            path: path.to_path_buf(),
            what: "path depth",
            limit: limits.max_depth as u64,
        });
    }
    Ok(())
}

fn is_dir(mode: libc::mode_t) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_symlink(mode: libc::mode_t) -> bool {
    mode & libc::S_IFMT == libc::S_IFLNK
}

/// Opens the directory `name` in `at`, refusing a symlink.
fn open_dir(at: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        at,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// What walking down a path beneath the target found.
enum Beneath {
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
fn open_beneath(root: &OwnedFd, components: &[&[u8]], create: bool) -> io::Result<Beneath> {
    open_beneath_created(root, components, create, &mut Vec::new())
}

/// [`open_beneath`], which also appends to `created` the index of each component it
/// created.
fn open_beneath_created(
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

/// Metadata of an entry, already checked and with the mode filtered.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// GNU and PAX metadata read before the member it describes.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Pax>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// The PAX records this extractor uses (and the CLI's archive reader).
#[derive(Debug, Default)]
pub struct Pax {
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub mtime: Option<i64>,
    pub sparse: bool,
}

fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Parses PAX extended header records: `<length> <key>=<value>\n`, the length counting the
/// whole record.
pub fn parse_pax(data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .take(21)
            .position(|b| *b == b' ')
            .ok_or("a PAX record has no length")?;
        let len = parse_decimal(&rest[..space])
            .and_then(|l| usize::try_from(l).ok())
            .ok_or("a PAX record has an invalid length")?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("a PAX record's length does not match its content".into());
        }
        let record = &rest[space + 1..len - 1];
        rest = &rest[len..];
        let equals = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or("a PAX record has no `=`")?;
        let (key, value) = (&record[..equals], &record[equals + 1..]);
        let number = |what: &str| {
            parse_decimal(value).ok_or_else(|| format!("the PAX {what} is not a number"))
        };
        // An empty value removes the key: the header's field applies.
        if value.is_empty() {
            continue;
        }
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => pax.size = Some(number("size")?),
            b"uid" => pax.uid = Some(number("uid")?),
            b"gid" => pax.gid = Some(number("gid")?),
            b"mtime" => {
                // Seconds, maybe negative, maybe with a fraction: keep whole seconds.
                let whole = value.split(|b| *b == b'.').next().unwrap_or_default();
                let (negative, digits) = match whole.strip_prefix(b"-") {
                    Some(digits) => (true, digits),
                    None => (false, whole),
                };
                let seconds = parse_decimal(digits)
                    .and_then(|s| i64::try_from(s).ok())
                    .ok_or("the PAX mtime is not a number")?;
                pax.mtime = Some(if negative { -seconds } else { seconds });
            }
            k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
            _ => {}
        }
    }
    Ok(pax)
}

/// Reads an entry's data of `size` bytes (already bounded by the caller) whole.
fn read_bounded(reader: &mut impl Read, size: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    reader.take(size).read_to_end(&mut data)?;
    if (data.len() as u64) < size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the archive ends inside this entry",
        ));
    }
    Ok(data)
}

/// Extracts the tar archive `reader` (gzip-compressed or not) into the existing directory
/// `target`, safely: see the module's documentation.
pub fn extract(
    reader: impl Read,
    target: &Path,
    options: &Options,
) -> Result<Report, ExtractError> {
    let mut reader = reader;
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < magic.len() {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(ExtractError::Malformed {
                    entry: 0,
                    path: PathBuf::new(),
                    reason: format!("cannot read the archive: {e}"),
                });
            }
        }
    }
    let stream = io::Cursor::new(magic).take(got as u64).chain(reader);
    let root = open(
        target,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(target, e))?;
    let mut extractor = Extractor::new(root, options);
    if magic == [0x1f, 0x8b] {
        extractor.run(flate2::read::MultiGzDecoder::new(stream))?;
    } else {
        extractor.run(stream)?;
    }
    Ok(extractor.report)
}

struct Extractor<'o> {
    root: Rc<OwnedFd>,
    options: &'o Options,
    /// The last parent directory opened, by its path beneath the target.
    cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    /// Non-directories this archive extracted, what hard links may point at: 128-bit keyed
    /// hashes of their paths, so memory does not grow with the names' length.
    extracted: HashSet<(u64, u64)>,
    hashers: (RandomState, RandomState),
    /// Bytes of the paths in `report` and `dir_times`.
    retained: usize,
    /// Directories' modification times, set at the end (their entries change them).
    dir_times: Vec<(Vec<u8>, i64)>,
    /// Directories created for entries whose parents the archive did not list, in order
    /// (maybe repeated), and the ids of those the archive has not listed since.
    implicit: Vec<Vec<u8>>,
    implicit_ids: HashSet<(u64, u64)>,
    report: Report,
    /// Entry data bytes seen, for `max_total_bytes`.
    total: u64,
    buffer: Vec<u8>,
}

impl<'o> Extractor<'o> {
    fn new(root: OwnedFd, options: &'o Options) -> Self {
        Extractor {
            root: Rc::new(root),
            options,
            cache: None,
            extracted: HashSet::new(),
            hashers: (RandomState::new(), RandomState::new()),
            retained: 0,
            dir_times: Vec::new(),
            implicit: Vec::new(),
            implicit_ids: HashSet::new(),
            report: Report::default(),
            total: 0,
            buffer: Vec::new(),
        }
    }

    fn path_id(&self, key: &[u8]) -> (u64, u64) {
        (self.hashers.0.hash_one(key), self.hashers.1.hash_one(key))
    }

    /// Accounts for a path kept in memory until the end.
    fn retain(&mut self, path: &Path, len: usize) -> Result<(), ExtractError> {
        let retained = self.retained.saturating_add(len);
        if retained > MAX_RETAINED_BYTES {
            return Err(ExtractError::LimitExceeded {
                path: path.to_path_buf(),
                what: "bytes of whiteout paths",
                limit: MAX_RETAINED_BYTES as u64,
            });
        }
        self.retained = retained;
        Ok(())
    }

    fn limits(&self) -> &Limits {
        &self.options.limits
    }

    fn malformed(&self, path: &Path, reason: impl fmt::Display) -> ExtractError {
        ExtractError::Malformed {
            entry: self.report.entries,
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    fn run<R: Read>(&mut self, reader: R) -> Result<(), ExtractError> {
        let mut archive = tar::Archive::new(reader);
        // Raw entries: the tar crate would read GNU long names and PAX headers whole, of any
        // size, before we could bound them.
        let entries = archive
            .entries()
            .map_err(|e| self.malformed(Path::new(""), e))?
            .raw(true);
        let mut pending = Pending::default();
        let mut last = PathBuf::new();
        for entry in entries {
            let mut entry = entry.map_err(|e| ExtractError::Malformed {
                entry: self.report.entries + 1,
                path: PathBuf::new(),
                reason: if last.as_os_str().is_empty() {
                    format!("cannot read the first header: {e}")
                } else {
                    format!("cannot read the header after {last:?}: {e}")
                },
            })?;
            last = bytes_path(&entry.header().path_bytes());
            if let Some(path) = self.entry(&mut entry, &mut pending)? {
                last = path;
            }
        }
        if !pending.is_empty() {
            return Err(self.malformed(&last, "metadata entries at the end describe no entry"));
        }
        self.set_dir_times();
        self.report_implicit_dirs();
        Ok(())
    }

    /// Fills [`Report::implicit_dirs`]: the implicit directories not listed later, once
    /// each, if they are still directories.
    fn report_implicit_dirs(&mut self) {
        let implicit = std::mem::take(&mut self.implicit);
        for key in implicit {
            if !self.implicit_ids.remove(&self.path_id(&key)) {
                continue;
            }
            let components: Vec<&[u8]> = key.split(|b| *b == b'/').collect();
            if let Ok(Beneath::Dir(_)) = open_beneath(&self.root, &components, false) {
                self.report.implicit_dirs.push(bytes_path(&key));
            }
        }
    }

    fn count_bytes(&mut self, size: u64, path: &Path) -> Result<(), ExtractError> {
        let limits = self.limits();
        if size > limits.max_file_bytes {
            return Err(ExtractError::LimitExceeded {
                path: path.to_path_buf(),
                what: "entry size",
                limit: limits.max_file_bytes,
            });
        }
        let total = self.total.saturating_add(size);
        if total > limits.max_total_bytes {
            return Err(ExtractError::LimitExceeded {
                path: path.to_path_buf(),
                what: "total size",
                limit: limits.max_total_bytes,
            });
        }
        self.total = total;
        Ok(())
    }

    /// Handles one raw entry: metadata is kept in `pending` for the next member. Returns
    /// the member's name, if it was one.
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        pending: &mut Pending,
    ) -> Result<Option<PathBuf>, ExtractError> {
        let header = entry.header();
        let kind = header.entry_type();
        let size = entry.size();
        let header_name = header.path_bytes().into_owned();
        let header_path = bytes_path(&header_name);
        self.count_bytes(size, &header_path)?;

        match kind.as_byte() {
            b'L' | b'K' => {
                let max = self.limits().max_path_len as u64 + 1;
                if size > max {
                    return Err(ExtractError::LimitExceeded {
                        path: header_path,
                        what: "GNU long name length",
                        limit: max,
                    });
                }
                let mut data =
                    read_bounded(entry, size).map_err(|e| self.malformed(&header_path, e))?;
                while data.last() == Some(&0) {
                    data.pop();
                }
                let slot = if kind.as_byte() == b'L' {
                    &mut pending.long_name
                } else {
                    &mut pending.long_link
                };
                if slot.replace(data).is_some() {
                    return Err(self.malformed(&header_path, "two GNU long names for one entry"));
                }
                return Ok(None);
            }
            b'x' | b'g' => {
                if size > MAX_PAX_BYTES {
                    return Err(ExtractError::LimitExceeded {
                        path: header_path,
                        what: "PAX header size",
                        limit: MAX_PAX_BYTES,
                    });
                }
                let data =
                    read_bounded(entry, size).map_err(|e| self.malformed(&header_path, e))?;
                if kind.as_byte() == b'g' {
                    // Global records (e.g. git's comment) describe no entry; each is a
                    // member for the limits.
                    self.count_entry(&header_path)?;
                    return Ok(None);
                }
                let pax = parse_pax(&data).map_err(|e| self.malformed(&header_path, e))?;
                if pending.pax.replace(pax).is_some() {
                    return Err(self.malformed(&header_path, "two PAX headers for one entry"));
                }
                return Ok(None);
            }
            _ => {}
        }

        let pending = std::mem::take(pending);
        let mut pax = pending.pax.unwrap_or_default();
        let raw_name = pax.path.take().or(pending.long_name).unwrap_or(header_name);
        let path = bytes_path(&raw_name);
        self.count_entry(&path)?;
        check_name(&raw_name, self.limits(), &path)?;
        if let Some(pax_size) = pax.size
            && pax_size != size
        {
            return Err(ExtractError::Unsupported {
                path,
                kind: format!(
                    "a PAX size ({pax_size}) different from the header's ({size}), \
                     as for files over 8 GiB"
                ),
            });
        }
        if pax.sparse || kind.is_gnu_sparse() {
            return Err(ExtractError::Unsupported {
                path,
                kind: "sparse file".into(),
            });
        }
        let raw_link = pax
            .linkpath
            .take()
            .or(pending.long_link)
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));

        let components = normalise(&raw_name).map_err(|reason| escape(&path, reason))?;
        check_depth(&components, self.limits(), &path)?;
        // Old tar marks directories with a trailing slash only.
        let is_directory = kind.is_dir() || (kind.is_file() && raw_name.last() == Some(&b'/'));

        let Some((name, parent)) = components.split_last() else {
            if is_directory {
                // `./`: the target itself, whose metadata is the caller's.
                return Ok(Some(path));
            }
            return Err(escape(&path, "the name is empty"));
        };
        let name = *name;

        // Whiteouts: reported, never created; nothing is created beneath one either.
        if parent.iter().any(|c| c.starts_with(AUFS_META_PREFIX)) {
            // In aufs bookkeeping directories (`.wh..wh.plnk/`): skipped, as by Docker.
            return Ok(Some(path));
        }
        if parent.iter().any(|c| c.starts_with(WHITEOUT_PREFIX)) {
            return Err(self.malformed(&path, "an entry beneath a whiteout"));
        }
        if let Some(deleted) = name.strip_prefix(WHITEOUT_PREFIX) {
            self.retain(&path, raw_name.len())?;
            if name == OPAQUE_WHITEOUT {
                self.report.opaque_dirs.push(relative(parent));
                if self.options.overlay_whiteouts {
                    let dir = self.parent(parent, &path)?;
                    set_opaque(&dir).map_err(|e| io_error(&path, e))?;
                }
            } else if name.starts_with(AUFS_META_PREFIX) {
                // aufs bookkeeping: nothing to extract or report.
            } else if deleted.is_empty() || deleted == b"." || deleted == b".." {
                return Err(escape(&path, "the whiteout names no file"));
            } else {
                let mut whiteout = parent.to_vec();
                whiteout.push(deleted);
                if self.options.overlay_whiteouts {
                    self.overlay_whiteout(&whiteout, &path)?;
                }
                self.report.whiteouts.push(relative(&whiteout));
            }
            return Ok(Some(path));
        }

        let meta = self.meta(header, &pax, is_directory, &path)?;
        let key = join(&components);
        match kind.as_byte() {
            _ if is_directory => {
                let parent = self.parent(parent, &path)?;
                self.directory(&parent, name, &meta, &path)?;
                let id = self.path_id(&key);
                self.implicit_ids.remove(&id);
                // Times are best effort: past the memory bound, directories keep theirs.
                if self.retain(&path, key.len()).is_ok() {
                    self.dir_times.push((key, meta.mtime));
                }
                return Ok(Some(path));
            }
            b'0' | b'\0' | b'7' => {
                let parent = self.parent(parent, &path)?;
                self.file(entry, &parent, name, size, &meta, &path)?;
            }
            b'2' => {
                let Some(link) = raw_link.filter(|l| !l.is_empty()) else {
                    return Err(self.malformed(&path, "a symlink without a target"));
                };
                check_name(&link, self.limits(), &path)?;
                if link.contains(&0) {
                    return Err(escape(&path, "the link target contains a NUL byte"));
                }
                let parent = self.parent(parent, &path)?;
                self.symlink(&parent, name, &link, &meta, &path)?;
            }
            b'1' => {
                let Some(link) = raw_link else {
                    return Err(self.malformed(&path, "a hard link without a target"));
                };
                check_name(&link, self.limits(), &path)?;
                self.hardlink(&components, &link, &path)?;
            }
            b'3' | b'4' | b'6' => {
                let fifo = kind.as_byte() == b'6';
                let dev = if fifo {
                    0
                } else {
                    let number = |n: io::Result<Option<u32>>| match n {
                        Ok(Some(n)) => Ok(n),
                        Ok(None) => Err(self.malformed(&path, "no device numbers")),
                        Err(e) => Err(self.malformed(&path, e)),
                    };
                    let major = number(header.device_major())?;
                    let minor = number(header.device_minor())?;
                    if kind.as_byte() == b'3' && major == 0 && minor == 0 {
                        // Overlay's own whiteout, as in a tar of an upper directory.
                        self.retain(&path, raw_name.len())?;
                        if self.options.overlay_whiteouts {
                            self.overlay_whiteout(&components, &path)?;
                        }
                        self.report.whiteouts.push(relative(&components));
                        return Ok(Some(path));
                    }
                    if !self.options.allow_devices {
                        return Err(ExtractError::Unsupported {
                            path,
                            kind: device_kind(kind.as_byte()).into(),
                        });
                    }
                    makedev(major.into(), minor.into())
                };
                let parent = self.parent(parent, &path)?;
                self.node(&parent, name, kind.as_byte(), dev, &meta, &path)?;
            }
            other => {
                return Err(ExtractError::Unsupported {
                    path,
                    kind: type_name(other),
                });
            }
        }
        let id = self.path_id(&key);
        self.extracted.insert(id);
        Ok(Some(path))
    }

    /// Makes an overlayfs whiteout at `components` (not empty), replacing what is there.
    fn overlay_whiteout(&mut self, components: &[&[u8]], path: &Path) -> Result<(), ExtractError> {
        let Some((name, parent)) = components.split_last() else {
            return Err(escape(path, "the whiteout names the target itself"));
        };
        let dir = self.parent(parent, path)?;
        let removed_dir =
            make_whiteout(&dir, OsStr::from_bytes(name)).map_err(|e| io_error(path, e))?;
        if removed_dir {
            // The cached descriptor may be that directory or one beneath it.
            self.cache = None;
        }
        // A hard link may not point at what the whiteout replaced.
        let id = self.path_id(&join(components));
        self.extracted.remove(&id);
        Ok(())
    }

    fn count_entry(&mut self, path: &Path) -> Result<(), ExtractError> {
        if self.report.entries >= self.limits().max_entries {
            return Err(ExtractError::LimitExceeded {
                path: path.to_path_buf(),
                what: "number of entries",
                limit: self.limits().max_entries,
            });
        }
        self.report.entries += 1;
        Ok(())
    }

    fn meta(
        &self,
        header: &tar::Header,
        pax: &Pax,
        is_directory: bool,
        path: &Path,
    ) -> Result<Meta, ExtractError> {
        let mut mode = header.mode().map_err(|e| self.malformed(path, e))? & 0o7777;
        if !self.options.keep_setid {
            mode &= !(libc::S_ISUID | libc::S_ISGID);
        }
        if !is_directory && !self.options.keep_setid {
            mode &= !libc::S_ISVTX;
        }
        let id = |value: Option<u64>, header: io::Result<u64>, what: &str| {
            let value = match value {
                Some(v) => v,
                None => header.map_err(|e| self.malformed(path, e))?,
            };
            // u32::MAX is chown's "unchanged".
            u32::try_from(value)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| self.malformed(path, format!("{what} {value} out of range")))
        };
        let uid = id(pax.uid, header.uid(), "uid")?;
        let gid = id(pax.gid, header.gid(), "gid")?;
        let mtime = match pax.mtime {
            Some(t) => t,
            None => {
                let t = header.mtime().map_err(|e| self.malformed(path, e))?;
                i64::try_from(t).unwrap_or(i64::MAX)
            }
        };
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
        })
    }

    /// The directory that will hold an entry, created if missing.
    fn parent(&mut self, components: &[&[u8]], path: &Path) -> Result<Rc<OwnedFd>, ExtractError> {
        if components.is_empty() {
            return Ok(self.root.clone());
        }
        let key = join(components);
        if let Some((cached, fd)) = &self.cache
            && *cached == key
        {
            return Ok(fd.clone());
        }
        let mut created = Vec::new();
        let walked = open_beneath_created(&self.root, components, true, &mut created);
        for i in created {
            let dir = join(&components[..=i]);
            let id = self.path_id(&dir);
            if self.implicit_ids.insert(id) {
                self.retain(path, dir.len())?;
                self.implicit.push(dir);
            }
        }
        let fd = match walked {
            Ok(Beneath::Dir(fd)) => Rc::new(fd),
            Ok(Beneath::Symlink(i)) => {
                return Err(escape(
                    path,
                    format!("{:?} is a symlink", relative(&components[..=i])),
                ));
            }
            Ok(Beneath::NotDir(i)) => {
                return Err(io_error(
                    path,
                    io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{:?} is not a directory", relative(&components[..=i])),
                    ),
                ));
            }
            Ok(Beneath::Missing) => return Err(io_error(path, Errno::ENOENT)),
            Err(e) => return Err(io_error(path, e)),
        };
        self.cache = Some((key, fd.clone()));
        Ok(fd)
    }

    /// Gives `name` in `parent` the entry's owner, without following a symlink, when the
    /// options keep owners.
    fn chown_at(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        path: &Path,
    ) -> Result<(), ExtractError> {
        if !self.options.keep_owner {
            return Ok(());
        }
        fchownat(
            parent,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_error(path, e))
    }

    /// Makes room for an entry: removes a non-directory, or an empty directory unless the
    /// entry is one too. Returns whether a directory is left there.
    fn make_room(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        keep_dir: bool,
        path: &Path,
    ) -> Result<bool, ExtractError> {
        let st = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(io_error(path, e)),
        };
        if is_dir(st.st_mode) {
            if keep_dir {
                return Ok(true);
            }
            // Fails (ENOTEMPTY) unless the directory is empty.
            unlinkat(parent, name, UnlinkatFlags::RemoveDir).map_err(|e| io_error(path, e))?;
            // The cached descriptor may be that directory or one beneath it.
            self.cache = None;
        } else {
            unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(|e| io_error(path, e))?;
        }
        Ok(false)
    }

    fn owner_and_mode(&self, fd: &OwnedFd, meta: &Meta, path: &Path) -> Result<(), ExtractError> {
        if self.options.keep_owner {
            fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|e| io_error(path, e))?;
        }
        // After chown, which clears setuid and setgid.
        fchmod(fd, Mode::from_bits_truncate(meta.mode)).map_err(|e| io_error(path, e))
    }

    fn directory(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        meta: &Meta,
        path: &Path,
    ) -> Result<(), ExtractError> {
        let name = OsStr::from_bytes(name);
        if !self.make_room(parent, name, true, path)? {
            match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io_error(path, e)),
            }
        }
        let fd = open_dir(parent.as_fd(), name).map_err(|e| match e {
            Errno::ELOOP => escape(path, "the directory was replaced by a symlink"),
            e => io_error(path, e),
        })?;
        self.owner_and_mode(&fd, meta, path)
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &[u8],
        size: u64,
        meta: &Meta,
        path: &Path,
    ) -> Result<(), ExtractError> {
        let name = OsStr::from_bytes(name);
        self.make_room(parent, name, false, path)?;
        let fd = openat(
            parent,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| io_error(path, e))?;
        let mut file = File::from(fd);
        if self.buffer.is_empty() {
            self.buffer = vec![0; COPY_BUFFER];
        }
        let mut written: u64 = 0;
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.malformed(path, format!("cannot read the data: {e}"))),
            };
            written += n as u64;
            if written > size || written > self.limits().max_file_bytes {
                return Err(ExtractError::LimitExceeded {
                    path: path.to_path_buf(),
                    what: "file size",
                    limit: size.min(self.limits().max_file_bytes),
                });
            }
            let data = self.buffer.get(..n).unwrap_or_default();
            file.write_all(data).map_err(|e| io_error(path, e))?;
        }
        self.report.bytes += written;
        if written < size {
            return Err(self.malformed(
                path,
                format!("the archive ends inside the file ({written} of {size} bytes)"),
            ));
        }
        let fd = OwnedFd::from(file);
        self.owner_and_mode(&fd, meta, path)?;
        let time = TimeSpec::new(meta.mtime, 0);
        // Best effort: times the kernel refuses are not worth failing a restore.
        let _ = futimens(&fd, &time, &time);
        Ok(())
    }

    fn symlink(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        link: &[u8],
        meta: &Meta,
        path: &Path,
    ) -> Result<(), ExtractError> {
        let name = OsStr::from_bytes(name);
        self.make_room(parent, name, false, path)?;
        symlinkat(OsStr::from_bytes(link), parent, name).map_err(|e| io_error(path, e))?;
        self.chown_at(parent, name, meta, path)?;
        let time = TimeSpec::new(meta.mtime, 0);
        let _ = utimensat(parent, name, &time, &time, UtimensatFlags::NoFollowSymlink);
        Ok(())
    }

    fn hardlink(
        &mut self,
        components: &[&[u8]],
        link: &[u8],
        path: &Path,
    ) -> Result<(), ExtractError> {
        let refuse = |reason: &str| ExtractError::LinkEscape {
            path: path.to_path_buf(),
            target: bytes_path(link),
            reason: reason.into(),
        };
        let source = normalise(link).map_err(refuse)?;
        check_depth(&source, self.limits(), path)?;
        if !self.extracted.contains(&self.path_id(&join(&source))) {
            return Err(refuse("not an entry extracted before from this archive"));
        }
        if source == components {
            return Ok(());
        }
        let (Some((name, parent)), Some((source_name, source_parent))) =
            (components.split_last(), source.split_last())
        else {
            return Err(refuse("empty name"));
        };
        let parent = self.parent(parent, path)?;
        let name = OsStr::from_bytes(name);
        self.make_room(&parent, name, false, path)?;
        let source_dir = match open_beneath(&self.root, source_parent, false) {
            Ok(Beneath::Dir(fd)) => fd,
            Ok(Beneath::Symlink(_)) => return Err(refuse("the target's path has a symlink")),
            Ok(Beneath::Missing | Beneath::NotDir(_)) => {
                return Err(refuse("the target's directory is gone"));
            }
            Err(e) => return Err(io_error(path, e)),
        };
        // No AT_SYMLINK_FOLLOW: a symlink is linked itself, never what it points to.
        linkat(
            &source_dir,
            OsStr::from_bytes(source_name),
            &*parent,
            name,
            AtFlags::empty(),
        )
        .map_err(|e| io_error(path, e))
    }

    fn node(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        kind: u8,
        dev: libc::dev_t,
        meta: &Meta,
        path: &Path,
    ) -> Result<(), ExtractError> {
        let name = OsStr::from_bytes(name);
        self.make_room(parent, name, false, path)?;
        let initial = Mode::from_bits_truncate(0o600);
        let made = match kind {
            b'6' => mkfifoat(parent, name, initial),
            b'3' => mknodat(parent, name, SFlag::S_IFCHR, initial, dev),
            _ => mknodat(parent, name, SFlag::S_IFBLK, initial, dev),
        };
        made.map_err(|e| io_error(path, e))?;
        self.chown_at(parent, name, meta, path)?;
        fchmodat(
            parent,
            name,
            Mode::from_bits_truncate(meta.mode),
            FchmodatFlags::NoFollowSymlink,
        )
        .map_err(|e| io_error(path, e))?;
        let time = TimeSpec::new(meta.mtime, 0);
        let _ = utimensat(parent, name, &time, &time, UtimensatFlags::NoFollowSymlink);
        Ok(())
    }

    /// Sets the directories' times (the last entry for a directory wins). Best effort, like
    /// the other times; the walk still never follows a symlink.
    fn set_dir_times(&mut self) {
        let times = std::mem::take(&mut self.dir_times);
        for (key, mtime) in &times {
            let components: Vec<&[u8]> = key.split(|b| *b == b'/').collect();
            let Some((name, parent)) = components.split_last() else {
                continue;
            };
            if let Ok(Beneath::Dir(parent)) = open_beneath(&self.root, parent, false) {
                let time = TimeSpec::new(*mtime, 0);
                let _ = utimensat(
                    &parent,
                    OsStr::from_bytes(name),
                    &time,
                    &time,
                    UtimensatFlags::NoFollowSymlink,
                );
            }
        }
    }
}

fn relative(components: &[&[u8]]) -> PathBuf {
    if components.is_empty() {
        PathBuf::from(".")
    } else {
        bytes_path(&join(components))
    }
}

fn device_kind(kind: u8) -> &'static str {
    if kind == b'3' {
        "character device"
    } else {
        "block device"
    }
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

/// Replaces `name` in `parent` (a directory with its content) with an overlayfs whiteout:
/// a character device 0:0 of mode 0. Returns whether a directory was removed.
fn make_whiteout(parent: &OwnedFd, name: &OsStr) -> io::Result<bool> {
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
fn set_opaque(dir: &OwnedFd) -> io::Result<()> {
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
    let root = open(
        target,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(target, e))?;
    let mut made = Whiteouts::default();
    let mut implicit: Vec<Vec<u8>> = Vec::new();
    for raw in paths {
        let path = Path::new(raw);
        let components = normalise(raw.as_bytes()).map_err(|reason| escape(path, reason))?;
        check_deleted_name(&components, path)?;
        let Some((name, parent)) = components.split_last() else {
            return Err(escape(path, "the path is the target itself"));
        };
        let mut created = Vec::new();
        let walked = open_beneath_created(&root, parent, true, &mut created);
        implicit.extend(created.iter().map(|&i| join(&parent[..=i])));
        let dir = match walked.map_err(|e| io_error(path, e))? {
            Beneath::Dir(fd) => fd,
            Beneath::Symlink(i) => {
                return Err(escape(
                    path,
                    format!("{:?} is a symlink", relative(&components[..=i])),
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
    let open_root = |dir: &Path| {
        open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error(dir, e))
    };
    let root = open_root(target)?;
    let dir = match open_beneath(&root, &components, false).map_err(|e| io_error(rel, e))? {
        Beneath::Dir(fd) => fd,
        Beneath::Symlink(i) => {
            return Err(escape(
                rel,
                format!("{:?} is a symlink", relative(&components[..=i])),
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

/// Removes the paths of a checkpoint's `deleted.files` from `target`, beneath it and
/// without following symlinks: a path whose parent is a symlink is an error, a directory is
/// removed with its content (its symlinks removed, not followed), a missing path is
/// skipped. Returns the paths removed, relative to `target`.
pub fn apply_deletions(target: &Path, deleted: &[String]) -> Result<Vec<PathBuf>, ExtractError> {
    let root = open(
        target,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(target, e))?;
    let mut removed = Vec::new();
    for raw in deleted {
        let path = Path::new(raw);
        let components = normalise(raw.as_bytes()).map_err(|reason| escape(path, reason))?;
        let Some((name, parent)) = components.split_last() else {
            return Err(escape(path, "the path is the target itself"));
        };
        let dir = match open_beneath(&root, parent, false) {
            Ok(Beneath::Dir(fd)) => fd,
            Ok(Beneath::Missing | Beneath::NotDir(_)) => continue,
            Ok(Beneath::Symlink(i)) => {
                return Err(escape(
                    path,
                    format!("{:?} is a symlink", relative(&components[..=i])),
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
fn remove_tree(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
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
        reason: e.to_string(),
    })?;
    for path in &paths {
        let components =
            normalise(path.as_bytes()).map_err(|reason| escape(Path::new(path), reason))?;
        if components.is_empty() {
            return Err(escape(Path::new(path), "the path is the target itself"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::{EntryType, Header};

    const MTIME: u64 = 1_700_000_000;

    /// An archive written header by header, with names tar::Builder's checked setters refuse.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Self {
            Tar(tar::Builder::new(Vec::new()))
        }

        fn header(name: &[u8], kind: EntryType, size: u64, mode: u32) -> Header {
            let mut header = Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(size);
            header.set_mode(mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(MTIME);
            let field = &mut header.as_old_mut().name;
            let len = name.len().min(field.len());
            field[..len].copy_from_slice(&name[..len]);
            header
        }

        fn set_link(header: &mut Header, link: &[u8]) {
            let field = &mut header.as_old_mut().linkname;
            let len = link.len().min(field.len());
            field[..len].copy_from_slice(&link[..len]);
        }

        /// Appends `header` (checksummed here) with `data`, after GNU long name and long
        /// link entries when `name` or `link` do not fit.
        fn push(&mut self, mut header: Header, name: &[u8], link: Option<&[u8]>, data: &[u8]) {
            if name.len() > 100 {
                self.gnu_long(EntryType::GNULongName, name);
            }
            if let Some(link) = link {
                if link.len() > 100 {
                    self.gnu_long(EntryType::GNULongLink, link);
                }
                Self::set_link(&mut header, link);
            }
            header.set_cksum();
            self.0.append(&header, data).unwrap();
        }

        fn gnu_long(&mut self, kind: EntryType, value: &[u8]) {
            let mut data = value.to_vec();
            data.push(0);
            let mut header = Self::header(b"././@LongLink", kind, data.len() as u64, 0o644);
            header.set_cksum();
            self.0.append(&header, &data[..]).unwrap();
        }

        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            let mut data = Vec::new();
            for (key, value) in records {
                let body = [key.as_bytes(), b"=", value, b"\n"].concat();
                // The length counts its own digits.
                let mut len = body.len() + 2;
                while format!("{len} ").len() + body.len() != len {
                    len += 1;
                }
                data.extend_from_slice(format!("{len} ").as_bytes());
                data.extend_from_slice(&body);
            }
            let mut header =
                Self::header(b"PaxHeader", EntryType::XHeader, data.len() as u64, 0o644);
            header.set_cksum();
            self.0.append(&header, &data[..]).unwrap();
            self
        }

        fn file(&mut self, name: &[u8], data: &[u8], mode: u32) -> &mut Self {
            let header = Self::header(name, EntryType::Regular, data.len() as u64, mode);
            self.push(header, name, None, data);
            self
        }

        fn owned_file(&mut self, name: &[u8], data: &[u8], uid: u64, gid: u64) -> &mut Self {
            let mut header = Self::header(name, EntryType::Regular, data.len() as u64, 0o644);
            header.set_uid(uid);
            header.set_gid(gid);
            self.push(header, name, None, data);
            self
        }

        fn dir(&mut self, name: &[u8], mode: u32) -> &mut Self {
            let header = Self::header(name, EntryType::Directory, 0, mode);
            self.push(header, name, None, b"");
            self
        }

        fn symlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
            let header = Self::header(name, EntryType::Symlink, 0, 0o777);
            self.push(header, name, Some(target), b"");
            self
        }

        fn hardlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
            let header = Self::header(name, EntryType::Link, 0, 0o644);
            self.push(header, name, Some(target), b"");
            self
        }

        fn node(&mut self, name: &[u8], kind: EntryType, major: u32, minor: u32) -> &mut Self {
            let mut header = Self::header(name, kind, 0, 0o640);
            header.set_device_major(major).unwrap();
            header.set_device_minor(minor).unwrap();
            self.push(header, name, None, b"");
            self
        }

        /// A header claiming `size` bytes, followed by `data` (maybe fewer).
        fn claim(&mut self, name: &[u8], size: u64, data: &[u8]) -> &mut Self {
            let mut header = Self::header(name, EntryType::Regular, size, 0o644);
            header.set_cksum();
            self.0.get_mut().extend_from_slice(header.as_bytes());
            self.0.get_mut().extend_from_slice(data);
            self
        }

        fn bytes(&mut self) -> Vec<u8> {
            let mut data = self.0.get_ref().clone();
            data.extend_from_slice(&[0; 1024]);
            data
        }
    }

    /// A temporary directory holding `target` (extracted into) and `outside` (with one
    /// file, `secret`), which extraction must never change.
    struct Sandbox {
        dir: tempfile::TempDir,
        target: PathBuf,
        outside: PathBuf,
    }

    impl Sandbox {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("target");
            let outside = dir.path().join("outside");
            fs::create_dir(&target).unwrap();
            fs::create_dir(&outside).unwrap();
            fs::write(outside.join("secret"), b"secret").unwrap();
            Sandbox {
                dir,
                target,
                outside,
            }
        }

        fn extract(&self, archive: &[u8]) -> Result<Report, ExtractError> {
            self.extract_with(archive, &Options::default())
        }

        fn extract_with(&self, archive: &[u8], options: &Options) -> Result<Report, ExtractError> {
            extract(archive, &self.target, options)
        }

        /// Asserts nothing was written outside `target`.
        fn assert_contained(&self) {
            let mut names: Vec<_> = fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(names, ["outside", "target"]);
            let inside: Vec<_> = fs::read_dir(&self.outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(inside, ["secret"]);
            let secret = self.outside.join("secret");
            assert_eq!(fs::read(&secret).unwrap(), b"secret");
            let meta = fs::symlink_metadata(&secret).unwrap();
            assert_eq!(meta.nlink(), 1, "the secret was hard-linked");
            assert_eq!(meta.mode() & 0o7777, 0o644);
        }

        fn at(&self, path: &str) -> PathBuf {
            self.target.join(path)
        }

        fn outside_str(&self) -> Vec<u8> {
            self.outside.as_os_str().as_bytes().to_vec()
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn normal_archive_extracts_exactly() {
        let sandbox = Sandbox::new();
        let long = format!("deep/{}/file", "n".repeat(150));
        let archive = Tar::new()
            .dir(b"./", 0o755)
            .dir(b"etc/", 0o750)
            .file(b"etc/hosts", b"127.0.0.1 localhost\n", 0o640)
            .file(b"bin/tool", b"#!/bin/sh\n", 0o755)
            .symlink(b"etc/localtime", b"/usr/share/zoneinfo/UTC")
            .symlink(b"etc/rel", b"../bin/tool")
            .hardlink(b"bin/tool2", b"bin/tool")
            .node(b"run/fifo", EntryType::Fifo, 0, 0)
            .owned_file(b"home/user/.profile", b"x", 1234, 5678)
            .file(long.as_bytes(), b"long", 0o600)
            .pax(&[
                ("path", b"pax/\xffname"),
                ("uid", b"42"),
                ("mtime", b"1600000000.5"),
            ])
            .file(b"ignored-name", b"pax", 0o644)
            .file(b"a//b/./c", b"c", 0o644)
            .bytes();
        let report = sandbox.extract(&archive).unwrap();
        assert_eq!(report.entries, 12);
        assert_eq!(report.bytes, 20 + 10 + 1 + 4 + 3 + 1);
        assert!(report.whiteouts.is_empty() && report.opaque_dirs.is_empty());

        assert_eq!(mode(&sandbox.at("etc")), 0o750);
        assert_eq!(
            fs::read(sandbox.at("etc/hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        assert_eq!(mode(&sandbox.at("etc/hosts")), 0o640);
        assert_eq!(mode(&sandbox.at("bin/tool")), 0o755);
        assert_eq!(mode(&sandbox.at("bin")), 0o755, "implicit directory");
        assert_eq!(
            fs::read_link(sandbox.at("etc/localtime")).unwrap(),
            Path::new("/usr/share/zoneinfo/UTC")
        );
        assert_eq!(
            fs::read_link(sandbox.at("etc/rel")).unwrap(),
            Path::new("../bin/tool")
        );
        let tool = fs::metadata(sandbox.at("bin/tool")).unwrap();
        let tool2 = fs::metadata(sandbox.at("bin/tool2")).unwrap();
        assert_eq!((tool.ino(), tool.nlink()), (tool2.ino(), 2));
        assert!(
            fs::symlink_metadata(sandbox.at("run/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        let profile = fs::metadata(sandbox.at("home/user/.profile")).unwrap();
        assert_eq!((profile.uid(), profile.gid()), (1234, 5678));
        assert_eq!(tool.mtime(), MTIME as i64);
        assert_eq!(
            fs::metadata(sandbox.at("etc")).unwrap().mtime(),
            MTIME as i64
        );
        assert_eq!(fs::read(sandbox.at(&long)).unwrap(), b"long");
        let pax = sandbox.target.join(OsStr::from_bytes(b"pax/\xffname"));
        let pax = fs::metadata(pax).unwrap();
        assert_eq!((pax.uid(), pax.mtime()), (42, 1_600_000_000));
        assert!(!sandbox.at("ignored-name").exists());
        assert_eq!(fs::read(sandbox.at("a/b/c")).unwrap(), b"c");
        sandbox.assert_contained();
    }

    #[test]
    fn gzip_archive_extracts() {
        let sandbox = Sandbox::new();
        let archive = Tar::new()
            .dir(b"d", 0o755)
            .file(b"d/f", b"data", 0o644)
            .bytes();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&archive).unwrap();
        let gz = encoder.finish().unwrap();
        let report = sandbox.extract(&gz).unwrap();
        assert_eq!((report.entries, report.bytes), (2, 4));
        assert_eq!(fs::read(sandbox.at("d/f")).unwrap(), b"data");
        // A corrupt stream is an error.
        let mut corrupt = gz.clone();
        corrupt.truncate(gz.len() / 2);
        corrupt.extend_from_slice(&[0xff; 64]);
        assert!(Sandbox::new().extract(&corrupt).is_err());
    }

    #[test]
    fn dotdot_names_are_refused() {
        for name in [&b"../evil"[..], b"a/../../evil", b"a/..", b".."] {
            let sandbox = Sandbox::new();
            let archive = Tar::new().file(name, b"evil", 0o644).bytes();
            let err = sandbox.extract(&archive).unwrap_err();
            assert!(
                matches!(err, ExtractError::PathEscape { .. }),
                "{name:?}: {err}"
            );
            sandbox.assert_contained();
        }
    }

    #[test]
    fn absolute_names_are_stripped() {
        let sandbox = Sandbox::new();
        let evil = sandbox.outside.join("evil");
        let archive = Tar::new()
            .file(b"/etc/evil", b"evil", 0o644)
            .file(evil.as_os_str().as_bytes(), b"evil", 0o644)
            .bytes();
        sandbox.extract(&archive).unwrap();
        assert_eq!(fs::read(sandbox.at("etc/evil")).unwrap(), b"evil");
        let inside = sandbox.target.join(evil.strip_prefix("/").unwrap());
        assert_eq!(fs::read(inside).unwrap(), b"evil");
        sandbox.assert_contained();
    }

    #[test]
    fn nul_and_empty_names_are_refused() {
        let sandbox = Sandbox::new();
        let name = [b"a\0/".as_slice(), &[b'x'; 120]].concat();
        let archive = Tar::new().file(&name, b"x", 0o644).bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        let archive = Tar::new()
            .pax(&[("path", b"b\0c")])
            .file(b"x", b"x", 0o644)
            .bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        // (With a trailing slash, a file entry is an old-style directory: `./` is skipped.)
        for empty in [&b"."[..], b"/.", b"//./."] {
            let archive = Tar::new().file(empty, b"x", 0o644).bytes();
            let err = sandbox.extract(&archive).unwrap_err();
            assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        }
        assert_eq!(fs::read_dir(&sandbox.target).unwrap().count(), 0);
        sandbox.assert_contained();
    }

    #[test]
    fn symlinks_are_never_followed() {
        let cases: Vec<(&[u8], Vec<u8>)> = vec![
            (b"link/file", Sandbox::new().outside_str()),
            (b"link/file", b"..".to_vec()),
            (b"link/../../file", b"..".to_vec()),
            (b"link/x/file", b"../outside".to_vec()),
        ];
        for (name, link) in cases {
            let sandbox = Sandbox::new();
            let link = if link.starts_with(b"/") {
                sandbox.outside_str()
            } else {
                link
            };
            let archive = Tar::new()
                .symlink(b"link", &link)
                .file(name, b"pwned", 0o644)
                .bytes();
            let err = sandbox.extract(&archive).unwrap_err();
            assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
            assert_eq!(
                fs::read_link(sandbox.at("link")).unwrap(),
                Path::new(OsStr::from_bytes(&link))
            );
            sandbox.assert_contained();
        }
    }

    #[test]
    fn symlink_to_a_directory_made_later_is_not_followed() {
        let sandbox = Sandbox::new();
        let archive = Tar::new()
            .symlink(b"link", b"sub")
            .dir(b"sub", 0o755)
            .file(b"link/file", b"x", 0o644)
            .bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        assert!(!sandbox.at("sub/file").exists());
        // A directory entry through it neither.
        let archive = Tar::new().dir(b"link/d", 0o755).bytes();
        assert!(sandbox.extract(&archive).is_err());
        assert!(!sandbox.at("sub/d").exists());
        sandbox.assert_contained();
    }

    #[test]
    fn entries_replace_symlinks_instead_of_writing_through() {
        let sandbox = Sandbox::new();
        let secret = sandbox.outside.join("secret");
        std::os::unix::fs::symlink(&secret, sandbox.at("preexisting")).unwrap();
        let archive = Tar::new()
            .symlink(b"link", secret.as_os_str().as_bytes())
            .file(b"link", b"replaced", 0o644)
            .file(b"preexisting", b"replaced", 0o644)
            .symlink(b"dirlink", sandbox.outside.as_os_str().as_bytes())
            .dir(b"dirlink", 0o700)
            .bytes();
        sandbox.extract(&archive).unwrap();
        for name in ["link", "preexisting"] {
            let meta = fs::symlink_metadata(sandbox.at(name)).unwrap();
            assert!(meta.file_type().is_file());
            assert_eq!(fs::read(sandbox.at(name)).unwrap(), b"replaced");
        }
        assert!(
            fs::symlink_metadata(sandbox.at("dirlink"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(mode(&sandbox.outside), 0o755);
        sandbox.assert_contained();
    }

    #[test]
    fn hard_links_stay_inside() {
        let sandbox = Sandbox::new();
        let secret = sandbox.outside.join("secret");
        let passwd_links = fs::metadata("/etc/passwd").map(|m| m.nlink()).ok();
        let refused: Vec<Vec<u8>> = vec![
            b"../outside/secret".to_vec(),
            b"/etc/passwd".to_vec(),
            secret.as_os_str().as_bytes().to_vec(),
            b"a/../../outside/secret".to_vec(),
            b"never-extracted".to_vec(),
            b"dir/secret".to_vec(),
        ];
        for link in refused {
            let archive = Tar::new()
                .symlink(b"dir", sandbox.outside.as_os_str().as_bytes())
                .hardlink(b"h", &link)
                .bytes();
            let err = sandbox.extract(&archive).unwrap_err();
            assert!(
                matches!(err, ExtractError::LinkEscape { .. }),
                "{link:?}: {err}"
            );
            assert!(fs::symlink_metadata(sandbox.at("h")).is_err());
        }
        // Linking an extracted symlink links the symlink, not what it points to.
        let archive = Tar::new()
            .symlink(b"s", secret.as_os_str().as_bytes())
            .hardlink(b"h", b"s")
            .symlink(b"d", sandbox.outside.as_os_str().as_bytes())
            .hardlink(b"h2", b"d/secret")
            .bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::LinkEscape { .. }), "{err}");
        let s = fs::symlink_metadata(sandbox.at("s")).unwrap();
        let h = fs::symlink_metadata(sandbox.at("h")).unwrap();
        assert!(h.file_type().is_symlink());
        assert_eq!(s.ino(), h.ino());
        assert_eq!(
            fs::metadata("/etc/passwd").map(|m| m.nlink()).ok(),
            passwd_links
        );
        sandbox.assert_contained();
    }

    #[test]
    fn devices_need_the_option() {
        let sandbox = Sandbox::new();
        let archive = Tar::new().node(b"dev/null", EntryType::Char, 1, 3).bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::Unsupported { .. }), "{err}");
        let archive = Tar::new().node(b"dev/loop", EntryType::Block, 7, 0).bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::Unsupported { .. }), "{err}");
        assert!(!sandbox.at("dev/null").exists() && !sandbox.at("dev/loop").exists());

        let options = Options {
            allow_devices: true,
            ..Options::default()
        };
        let archive = Tar::new()
            .node(b"dev/null", EntryType::Char, 1, 3)
            .node(b"dev/loop", EntryType::Block, 7, 0)
            .bytes();
        sandbox.extract_with(&archive, &options).unwrap();
        let null = fs::symlink_metadata(sandbox.at("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!((null.rdev(), null.mode() & 0o7777), (makedev(1, 3), 0o640));
        let dev = fs::symlink_metadata(sandbox.at("dev/loop")).unwrap();
        assert!(dev.file_type().is_block_device());
        assert_eq!(dev.rdev(), makedev(7, 0));
        sandbox.assert_contained();
    }

    #[test]
    fn unknown_types_are_refused() {
        let sandbox = Sandbox::new();
        for kind in [b'S', b'V', b'Z'] {
            let archive = Tar::new().node(b"x", EntryType::new(kind), 0, 0).bytes();
            let err = sandbox.extract(&archive).unwrap_err();
            assert!(matches!(err, ExtractError::Unsupported { .. }), "{err}");
        }
        assert_eq!(fs::read_dir(&sandbox.target).unwrap().count(), 0);
    }

    #[test]
    fn setid_bits_are_dropped_unless_kept() {
        let archive = Tar::new()
            .file(b"suid", b"x", 0o4755)
            .file(b"sgid", b"x", 0o2755)
            .file(b"sticky", b"x", 0o1644)
            .dir(b"tmp", 0o1777)
            .dir(b"shared", 0o2775)
            .bytes();
        let sandbox = Sandbox::new();
        sandbox.extract(&archive).unwrap();
        assert_eq!(mode(&sandbox.at("suid")), 0o755);
        assert_eq!(mode(&sandbox.at("sgid")), 0o755);
        assert_eq!(mode(&sandbox.at("sticky")), 0o644);
        assert_eq!(mode(&sandbox.at("tmp")), 0o1777);
        assert_eq!(mode(&sandbox.at("shared")), 0o775);

        let sandbox = Sandbox::new();
        let options = Options {
            keep_setid: true,
            ..Options::default()
        };
        sandbox.extract_with(&archive, &options).unwrap();
        assert_eq!(mode(&sandbox.at("suid")), 0o4755);
        assert_eq!(mode(&sandbox.at("sgid")), 0o2755);
        assert_eq!(mode(&sandbox.at("shared")), 0o2775);
    }

    #[test]
    fn owners_are_kept_unless_told() {
        let archive = Tar::new()
            .owned_file(b"f", b"x", 1000, 2000)
            .symlink(b"s", b"f")
            .bytes();
        let sandbox = Sandbox::new();
        sandbox.extract(&archive).unwrap();
        let f = fs::metadata(sandbox.at("f")).unwrap();
        assert_eq!((f.uid(), f.gid()), (1000, 2000));
        let options = Options {
            keep_owner: false,
            ..Options::default()
        };
        let sandbox = Sandbox::new();
        sandbox.extract_with(&archive, &options).unwrap();
        let f = fs::metadata(sandbox.at("f")).unwrap();
        assert_eq!(f.uid(), nix::unistd::geteuid().as_raw());
    }

    #[test]
    fn existing_entries() {
        let sandbox = Sandbox::new();
        fs::create_dir_all(sandbox.at("full/sub")).unwrap();
        fs::create_dir(sandbox.at("empty")).unwrap();
        fs::create_dir(sandbox.at("dir")).unwrap();
        fs::write(sandbox.at("dir/keep"), b"keep").unwrap();
        fs::write(sandbox.at("file"), b"old").unwrap();
        let archive = Tar::new()
            .file(b"file", b"new", 0o600)
            .file(b"empty", b"was a dir", 0o644)
            .dir(b"dir", 0o711)
            .bytes();
        sandbox.extract(&archive).unwrap();
        assert_eq!(fs::read(sandbox.at("file")).unwrap(), b"new");
        assert_eq!(mode(&sandbox.at("file")), 0o600);
        assert_eq!(fs::read(sandbox.at("empty")).unwrap(), b"was a dir");
        assert_eq!(mode(&sandbox.at("dir")), 0o711);
        assert_eq!(fs::read(sandbox.at("dir/keep")).unwrap(), b"keep");
        let archive = Tar::new().file(b"full", b"x", 0o644).bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::Io { .. }), "{err}");
        assert!(sandbox.at("full/sub").is_dir());
        // A file where a parent directory should be.
        let archive = Tar::new().file(b"file/x", b"x", 0o644).bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::Io { .. }), "{err}");
    }

    #[test]
    fn size_limits_are_checked_before_writing() {
        let sandbox = Sandbox::new();
        // 17 GiB announced, a few bytes present: refused before anything is created.
        let archive = Tar::new().claim(b"giant", 17 << 30, &[0; 512]).bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(
            matches!(
                err,
                ExtractError::LimitExceeded {
                    what: "entry size",
                    ..
                }
            ),
            "{err}"
        );
        assert!(!sandbox.at("giant").exists());

        let small = Options {
            limits: Limits {
                max_file_bytes: 1000,
                max_total_bytes: 1500,
                ..Limits::default()
            },
            ..Options::default()
        };
        let archive = Tar::new().file(b"big", &[1; 1001], 0o644).bytes();
        let err = sandbox.extract_with(&archive, &small).unwrap_err();
        assert!(
            matches!(err, ExtractError::LimitExceeded { limit: 1000, .. }),
            "{err}"
        );
        assert!(!sandbox.at("big").exists());
        let archive = Tar::new()
            .file(b"one", &[1; 800], 0o644)
            .file(b"two", &[1; 800], 0o644)
            .bytes();
        let err = sandbox.extract_with(&archive, &small).unwrap_err();
        assert!(
            matches!(
                err,
                ExtractError::LimitExceeded {
                    what: "total size",
                    limit: 1500,
                    ..
                }
            ),
            "{err}"
        );
        assert!(sandbox.at("one").exists() && !sandbox.at("two").exists());
        sandbox.assert_contained();
    }

    #[test]
    fn entry_and_name_limits() {
        let sandbox = Sandbox::new();
        let options = Options {
            limits: Limits {
                max_entries: 3,
                max_path_len: 60,
                max_depth: 4,
                ..Limits::default()
            },
            ..Options::default()
        };
        let mut many = Tar::new();
        for i in 0..5 {
            many.file(format!("f{i}").as_bytes(), b"", 0o644);
        }
        let err = sandbox.extract_with(&many.bytes(), &options).unwrap_err();
        assert!(
            matches!(
                err,
                ExtractError::LimitExceeded {
                    what: "number of entries",
                    limit: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(sandbox.at("f2").exists() && !sandbox.at("f3").exists());

        let deep = Tar::new().file(b"a/b/c/d/e", b"", 0o644).bytes();
        let err = sandbox.extract_with(&deep, &options).unwrap_err();
        assert!(
            matches!(
                err,
                ExtractError::LimitExceeded {
                    what: "path depth",
                    ..
                }
            ),
            "{err}"
        );
        assert!(!sandbox.at("a").exists());

        let long = Tar::new().file(&[b'x'; 61], b"", 0o644).bytes();
        let err = sandbox.extract_with(&long, &options).unwrap_err();
        assert!(
            matches!(
                err,
                ExtractError::LimitExceeded {
                    what: "name length",
                    ..
                }
            ),
            "{err}"
        );
        // GNU long names and PAX headers are bounded before they are read.
        let mut huge_name = Tar::new();
        huge_name.gnu_long(EntryType::GNULongName, &vec![b'y'; 5000]);
        let huge_name = huge_name.file(b"z", b"", 0o644).bytes();
        let err = sandbox.extract(&huge_name).unwrap_err();
        assert!(matches!(err, ExtractError::LimitExceeded { .. }), "{err}");
        let huge_pax = Tar::new()
            .pax(&[("comment", &vec![b'c'; 2 << 20])])
            .file(b"z", b"", 0o644)
            .bytes();
        let err = sandbox.extract(&huge_pax).unwrap_err();
        assert!(matches!(err, ExtractError::LimitExceeded { .. }), "{err}");
        let link = Tar::new().symlink(b"s", &[b'l'; 200]).bytes();
        let err = sandbox.extract_with(&link, &options).unwrap_err();
        assert!(matches!(err, ExtractError::LimitExceeded { .. }), "{err}");
    }

    #[test]
    fn pax_size_that_disagrees_is_refused() {
        let sandbox = Sandbox::new();
        let archive = Tar::new()
            .pax(&[("size", b"10")])
            .file(b"f", b"", 0o644)
            .bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::Unsupported { .. }), "{err}");
        let archive = Tar::new()
            .pax(&[("size", b"x")])
            .file(b"f", b"", 0o644)
            .bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
        let archive = Tar::new().pax(&[("path", b"p")]).bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    }

    #[test]
    fn truncated_and_garbage_archives_are_errors() {
        let sandbox = Sandbox::new();
        let archive = Tar::new()
            .file(b"first", b"ok", 0o644)
            .file(b"second", &[7; 3000], 0o644)
            .bytes();
        let cut = &archive[..512 * 3 + 1000];
        match sandbox.extract(cut).unwrap_err() {
            ExtractError::Malformed {
                entry,
                path,
                reason,
            } => {
                assert_eq!((entry, path.as_path()), (2, Path::new("second")));
                assert!(reason.contains("1000 of 3000"), "{reason}");
            }
            err => panic!("{err}"),
        }
        // Cut inside a header.
        let err = Sandbox::new()
            .extract(&archive[..512 * 2 + 100])
            .unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
        // Garbage.
        let mut garbage = b"this is not a tar archive".to_vec();
        garbage.resize(2048, b'!');
        let err = Sandbox::new().extract(&garbage).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
        let err = Sandbox::new().extract(&garbage[..100]).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
        // A bad number in a header.
        let mut bad = Tar::new().file(b"f", b"x", 0o644).bytes();
        bad[100..108].copy_from_slice(b"99999999");
        let mut header = Header::new_old();
        header.as_mut_bytes().copy_from_slice(&bad[..512]);
        header.set_cksum();
        bad[..512].copy_from_slice(header.as_bytes());
        let err = Sandbox::new().extract(&bad).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
        // Empty input is an empty archive.
        assert_eq!(Sandbox::new().extract(b"").unwrap(), Report::default());
    }

    #[test]
    fn whiteouts_are_reported_not_created() {
        let sandbox = Sandbox::new();
        let archive = Tar::new()
            .file(b".wh.gone", b"", 0o644)
            .dir(b"etc", 0o755)
            .file(b"etc/.wh.motd", b"", 0o644)
            .file(b"var/.wh..wh..opq", b"", 0o644)
            .file(b".wh..wh..opq", b"", 0o644)
            .file(b".wh..wh.plnk/x", b"", 0o644)
            .file(b".wh..wh.plnk/.wh.y", b"", 0o644)
            .node(b"usr/overlay-whiteout", EntryType::Char, 0, 0)
            .bytes();
        let report = sandbox.extract(&archive).unwrap();
        assert_eq!(
            report.whiteouts,
            [
                PathBuf::from("gone"),
                PathBuf::from("etc/motd"),
                PathBuf::from("usr/overlay-whiteout")
            ]
        );
        assert_eq!(
            report.opaque_dirs,
            [PathBuf::from("var"), PathBuf::from(".")]
        );
        let mut names: Vec<_> = fs::read_dir(&sandbox.target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["etc"]);
        assert_eq!(fs::read_dir(sandbox.at("etc")).unwrap().count(), 0);
        for bad in [&b".wh."[..], b"a/.wh..", b"a/.wh..."] {
            let archive = Tar::new().file(bad, b"", 0o644).bytes();
            assert!(matches!(
                sandbox.extract(&archive).unwrap_err(),
                ExtractError::PathEscape { .. }
            ));
        }
        let archive = Tar::new().file(b"a/.wh.b/c", b"", 0o644).bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
        assert!(!sandbox.at("a").exists());
    }

    fn is_root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        eprintln!("!!! SKIPPED: this test needs root (mknod, trusted.* xattrs, chown) !!!");
        false
    }

    /// The value of the xattr `name` of `path` (not following a symlink), if set.
    fn xattr(path: &Path, name: &std::ffi::CStr) -> Option<Vec<u8>> {
        let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut value = vec![0u8; 256];
        // SAFETY: NUL-terminated strings and a live buffer of the length given.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        let n = usize::try_from(n).ok()?;
        value.truncate(n);
        Some(value)
    }

    fn is_overlay_whiteout(path: &Path) -> bool {
        let meta = fs::symlink_metadata(path).unwrap();
        meta.file_type().is_char_device() && meta.rdev() == 0
    }

    fn overlay_options() -> Options {
        Options {
            overlay_whiteouts: true,
            ..Options::default()
        }
    }

    #[test]
    fn overlay_whiteouts_are_created() {
        if !is_root() {
            return;
        }
        let sandbox = Sandbox::new();
        let archive = Tar::new()
            .file(b"x", b"replaced", 0o644)
            .dir(b"d", 0o755)
            .file(b"d/y", b"", 0o644)
            .file(b"d/sub/z", b"", 0o644)
            .file(b".wh.x", b"", 0o644)
            .file(b".wh.d", b"", 0o644)
            .file(b"lib/.wh.gone", b"", 0o644)
            .file(b"e/.wh..wh..opq", b"", 0o644)
            .file(b"e/kept", b"k", 0o644)
            .dir(b"e", 0o711)
            .file(b".wh..wh..opq", b"", 0o644)
            .node(b"c", EntryType::Char, 0, 0)
            .file(b".wh.back", b"", 0o644)
            .file(b"back", b"again", 0o644)
            .file(b".wh..wh.plnk/.wh.aufs", b"", 0o644)
            .bytes();
        let report = sandbox.extract_with(&archive, &overlay_options()).unwrap();
        assert_eq!(
            report.whiteouts,
            ["x", "d", "lib/gone", "c", "back"].map(PathBuf::from)
        );
        assert_eq!(report.opaque_dirs, ["e", "."].map(PathBuf::from));
        for whiteout in ["x", "d", "lib/gone", "c"] {
            assert!(is_overlay_whiteout(&sandbox.at(whiteout)), "{whiteout}");
            assert_eq!(mode(&sandbox.at(whiteout)), 0, "{whiteout}");
        }
        assert_eq!(fs::read(sandbox.at("back")).unwrap(), b"again");
        assert_eq!(fs::read(sandbox.at("e/kept")).unwrap(), b"k");
        assert_eq!(mode(&sandbox.at("e")), 0o711);
        let opaque = OVERLAY_OPAQUE_XATTR;
        assert_eq!(xattr(&sandbox.at("e"), opaque).as_deref(), Some(&b"y"[..]));
        assert_eq!(xattr(&sandbox.target, opaque).as_deref(), Some(&b"y"[..]));
        assert_eq!(xattr(&sandbox.at("lib"), opaque), None);
        assert!(!sandbox.at(".wh..wh.plnk").exists());
        assert_eq!(report.implicit_dirs, [PathBuf::from("lib")]);
        sandbox.assert_contained();

        // A hard link may not point at what a whiteout replaced.
        let sandbox = Sandbox::new();
        let archive = Tar::new()
            .file(b"f", b"", 0o644)
            .file(b".wh.f", b"", 0o644)
            .hardlink(b"h", b"f")
            .bytes();
        let err = sandbox
            .extract_with(&archive, &overlay_options())
            .unwrap_err();
        assert!(matches!(err, ExtractError::LinkEscape { .. }), "{err}");

        // A whiteout through a symlink is refused like any other entry.
        let outside = sandbox.outside_str();
        let archive = Tar::new()
            .symlink(b"out", &outside)
            .file(b"out/.wh.secret", b"", 0o644)
            .file(b"out/.wh..wh..opq", b"", 0o644)
            .bytes();
        let err = sandbox
            .extract_with(&archive, &overlay_options())
            .unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        let archive = Tar::new()
            .symlink(b"out2", &outside)
            .file(b"out2/.wh..wh..opq", b"", 0o644)
            .bytes();
        let err = sandbox
            .extract_with(&archive, &overlay_options())
            .unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        assert_eq!(xattr(&sandbox.outside, OVERLAY_OPAQUE_XATTR), None);
        sandbox.assert_contained();
    }

    #[test]
    fn implicit_dirs_are_reported() {
        let sandbox = Sandbox::new();
        let archive = Tar::new()
            .file(b"a/b/f", b"", 0o644)
            .file(b"c/d/e/f", b"", 0o644)
            .dir(b"a", 0o700)
            .dir(b"c/d", 0o750)
            .dir(b"x", 0o755)
            .file(b"x/y/f", b"", 0o644)
            .file(b"a/b/g", b"", 0o644)
            .bytes();
        let report = sandbox.extract(&archive).unwrap();
        assert_eq!(
            report.implicit_dirs,
            ["a/b", "c", "c/d/e", "x/y"].map(PathBuf::from)
        );
        assert_eq!(mode(&sandbox.at("a/b")), IMPLICIT_DIR_MODE);
        assert_eq!(mode(&sandbox.at("a")), 0o700);
        assert_eq!(mode(&sandbox.at("c/d")), 0o750);

        // Directories a whiteout removed are not reported.
        if is_root() {
            let sandbox = Sandbox::new();
            let archive = Tar::new()
                .file(b"p/q/f", b"", 0o644)
                .file(b"r/s/f", b"", 0o644)
                .file(b"p/.wh.q", b"", 0o644)
                .bytes();
            let report = sandbox.extract_with(&archive, &overlay_options()).unwrap();
            assert_eq!(report.implicit_dirs, ["p", "r", "r/s"].map(PathBuf::from));
        }
    }

    #[test]
    fn make_whiteouts_stays_inside() {
        if !is_root() {
            return;
        }
        let sandbox = Sandbox::new();
        fs::write(sandbox.at("f"), b"").unwrap();
        fs::create_dir_all(sandbox.at("tree/a/b")).unwrap();
        fs::write(sandbox.at("tree/a/b/c"), b"").unwrap();
        std::os::unix::fs::symlink(&sandbox.outside, sandbox.at("tree/a/out")).unwrap();
        std::os::unix::fs::symlink(&sandbox.outside, sandbox.at("sym")).unwrap();

        for bad in [
            "sym/secret",
            "../outside/secret",
            "/",
            "a/../../x",
            "sym/new/x",
        ] {
            let err = make_whiteouts(&sandbox.target, &[bad.to_string()]).unwrap_err();
            assert!(
                matches!(err, ExtractError::PathEscape { .. }),
                "{bad}: {err}"
            );
        }
        // Found by the whiteouts fuzz target: a whiteout for `.wh..` was made as a `.wh.`
        // entry.
        for bad in [".wh..", "tree/.wh.c", ".wh..wh..opq"] {
            let err = make_whiteouts(&sandbox.target, &[bad.to_string()]).unwrap_err();
            assert!(
                matches!(err, ExtractError::Malformed { .. }),
                "{bad}: {err}"
            );
        }
        sandbox.assert_contained();
        assert!(
            fs::symlink_metadata(sandbox.at("sym"))
                .unwrap()
                .is_symlink()
        );

        let paths = [
            "/f",
            "tree",
            "tree/a/b",
            "./new/deep/g",
            "sym",
            "gone/away/h",
            "gone",
            "solo",
        ]
        .map(String::from);
        let made = make_whiteouts(&sandbox.target, &paths).unwrap();
        // `gone` replaced the directory that held `gone/away/h` (found by the whiteouts
        // fuzz target: a whiteout reported that no longer was).
        assert_eq!(
            made.whiteouts,
            ["f", "tree", "new/deep/g", "sym", "gone", "solo"].map(PathBuf::from)
        );
        assert_eq!(made.implicit_dirs, ["new", "new/deep"].map(PathBuf::from));
        for whiteout in ["f", "tree", "new/deep/g", "sym", "gone", "solo"] {
            assert!(is_overlay_whiteout(&sandbox.at(whiteout)), "{whiteout}");
        }
        assert_eq!(mode(&sandbox.at("new/deep")), IMPLICIT_DIR_MODE);
        sandbox.assert_contained();
    }

    #[test]
    fn dir_attrs_come_from_the_first_lower_that_has_them() {
        if !is_root() {
            return;
        }
        let sandbox = Sandbox::new();
        let lowers: Vec<PathBuf> = (0..4)
            .map(|i| sandbox.dir.path().join(format!("lower{i}")))
            .collect();
        for lower in &lowers {
            fs::create_dir(lower).unwrap();
        }
        let set = |path: &Path, mode: u32, owner: u32| {
            fs::create_dir_all(path).unwrap();
            fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
            std::os::unix::fs::lchown(path, Some(owner), Some(owner + 1)).unwrap();
        };
        // lower0 lacks tmp; lower1 has it 1777; lower2 too, 0700.
        set(&lowers[1].join("tmp"), 0o1777, 5);
        set(&lowers[2].join("tmp"), 0o700, 6);
        set(&lowers[2].join("var/cache"), 0o2775, 7);
        // lower1 has a symlink where lower2 has var/cache's parent: it hides lower2.
        std::os::unix::fs::symlink("/elsewhere", lowers[1].join("var")).unwrap();
        set(&lowers[3].join("opt/x"), 0o750, 8);

        let archive = Tar::new()
            .file(b"tmp/f", b"", 0o644)
            .file(b"var/cache/f", b"", 0o644)
            .file(b"opt/x/f", b"", 0o644)
            .file(b"none/f", b"", 0o644)
            .bytes();
        let report = sandbox.extract(&archive).unwrap();
        let mut copied = Vec::new();
        for dir in &report.implicit_dirs {
            if copy_dir_attrs(&sandbox.target, dir, &lowers).unwrap() {
                copied.push(dir.clone());
            }
        }
        assert_eq!(copied, ["tmp", "opt", "opt/x"].map(PathBuf::from));
        let meta = fs::symlink_metadata(sandbox.at("tmp")).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o1777, 5, 6)
        );
        let meta = fs::symlink_metadata(sandbox.at("opt/x")).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o750, 8, 9)
        );
        assert_eq!(mode(&sandbox.at("var/cache")), IMPLICIT_DIR_MODE);
        assert_eq!(mode(&sandbox.at("none")), IMPLICIT_DIR_MODE);

        // Beneath the target, nothing is followed.
        std::os::unix::fs::symlink(&sandbox.outside, sandbox.at("link")).unwrap();
        let err = copy_dir_attrs(&sandbox.target, Path::new("link"), &lowers).unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        let err = copy_dir_attrs(&sandbox.target, Path::new("../outside"), &lowers).unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        assert!(!copy_dir_attrs(&sandbox.target, Path::new("missing"), &lowers).unwrap());
        assert_eq!(mode(&sandbox.outside), 0o755);
    }

    #[test]
    fn deletions_stay_inside() {
        let sandbox = Sandbox::new();
        fs::write(sandbox.at("gone"), b"").unwrap();
        fs::write(sandbox.at("keep"), b"").unwrap();
        fs::create_dir_all(sandbox.at("tree/a/b/c")).unwrap();
        fs::write(sandbox.at("tree/a/b/c/f"), b"").unwrap();
        fs::write(sandbox.at("tree/f"), b"").unwrap();
        std::os::unix::fs::symlink(&sandbox.outside, sandbox.at("tree/a/out")).unwrap();
        std::os::unix::fs::symlink(&sandbox.outside, sandbox.at("sym")).unwrap();
        std::os::unix::fs::symlink(&sandbox.outside, sandbox.at("sym2")).unwrap();

        let err = apply_deletions(&sandbox.target, &["sym/secret".into()]).unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        let err = apply_deletions(&sandbox.target, &["../outside/secret".into()]).unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        let err = apply_deletions(&sandbox.target, &["/".into()]).unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        sandbox.assert_contained();

        let deleted = [
            "/gone",
            "tree",
            "sym2",
            "missing",
            "missing/x",
            "keep/x",
            "./tree/a",
        ]
        .map(String::from);
        let removed = apply_deletions(&sandbox.target, &deleted).unwrap();
        assert_eq!(
            removed,
            [Path::new("gone"), Path::new("tree"), Path::new("sym2")]
        );
        let mut names: Vec<_> = fs::read_dir(&sandbox.target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["keep", "sym"]);
        sandbox.assert_contained();
    }

    #[test]
    fn deleted_files_are_parsed_with_limits() {
        let limits = Limits::default();
        assert_eq!(
            parse_deleted_files(br#"["/etc/motd", "tmp/x"]"#, &limits).unwrap(),
            ["/etc/motd", "tmp/x"]
        );
        assert!(parse_deleted_files(b"[]", &limits).unwrap().is_empty());
        for escaping in [
            &br#"["../x"]"#[..],
            br#"["a/../../x"]"#,
            br#"["/"]"#,
            br#"["a\u0000b"]"#,
        ] {
            let err = parse_deleted_files(escaping, &limits).unwrap_err();
            assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        }
        for malformed in [
            &b"{\"a\": 1}"[..],
            b"[1]",
            b"[",
            b"",
            b"null",
            b"[\"a\"] x",
            br#"[".wh.."]"#,
            br#"["etc/.wh.motd"]"#,
            br#"["a/.wh..wh..opq/b"]"#,
        ] {
            let err = parse_deleted_files(malformed, &limits).unwrap_err();
            assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
        }
        let small = Limits {
            max_entries: 2,
            max_path_len: 8,
            ..Limits::default()
        };
        let err = parse_deleted_files(br#"["a", "b", "c"]"#, &small).unwrap_err();
        assert!(
            matches!(err, ExtractError::LimitExceeded { limit: 2, .. }),
            "{err}"
        );
        let err = parse_deleted_files(br#"["123456789"]"#, &small).unwrap_err();
        assert!(
            matches!(err, ExtractError::LimitExceeded { limit: 8, .. }),
            "{err}"
        );
    }

    /// xorshift64*: deterministic pseudo-random numbers for the fuzz test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
        let mut data = base.to_vec();
        for _ in 0..1 + rng.below(4) {
            if data.len() < 512 {
                break;
            }
            let blocks = data.len() / 512;
            match rng.below(8) {
                // Flip bytes, mostly in headers.
                0..=2 => {
                    let block = rng.below(blocks);
                    let at = block * 512 + rng.below(512);
                    if let Some(byte) = data.get_mut(at) {
                        *byte = rng.next() as u8;
                    }
                    if rng.below(2) == 0 {
                        fix_checksum(&mut data, block * 512);
                    }
                }
                // An interesting value in a numeric field (mode, uid, size, mtime, type).
                3 => {
                    let block = rng.below(blocks) * 512;
                    let (field, len) =
                        [(100, 8), (108, 8), (124, 12), (136, 12), (156, 1)][rng.below(5)];
                    let values: [&[u8]; 7] = [
                        b"0",
                        b"7777777",
                        b"77777777777",
                        b"\x80\xff\xff",
                        b"-1",
                        b"",
                        b"1",
                    ];
                    let value = values[rng.below(values.len())];
                    if let Some(slot) = data.get_mut(block + field..block + field + len) {
                        slot.fill(0);
                        let n = value.len().min(len);
                        slot[..n].copy_from_slice(&value[..n]);
                    }
                    if rng.below(2) == 0 {
                        fix_checksum(&mut data, block);
                    }
                }
                // Drop or copy whole blocks (drops, repeats and reorders entries).
                4 => {
                    let at = rng.below(blocks) * 512;
                    data.drain(at..(at + 512).min(data.len()));
                }
                5 => {
                    let from = rng.below(blocks) * 512;
                    let to = rng.below(blocks) * 512;
                    let block = data[from..(from + 512).min(data.len())].to_vec();
                    data.splice(to..to, block);
                }
                6 => {
                    let at = rng.below(data.len());
                    data.truncate(at);
                }
                _ => {
                    let block = rng.below(blocks) * 512;
                    let at = block + rng.below(100);
                    let names: [&[u8]; 5] = [b"../x\0", b"/x\0", b"link/\0", b".wh.\0", b"a\0"];
                    let name = names[rng.below(names.len())];
                    if let Some(slot) = data.get_mut(at..at + name.len()) {
                        slot.copy_from_slice(name);
                    }
                    fix_checksum(&mut data, block);
                }
            }
        }
        data
    }

    fn fix_checksum(data: &mut [u8], block: usize) {
        if let Some(bytes) = data.get(block..block + 512) {
            let mut header = Header::new_old();
            header.as_mut_bytes().copy_from_slice(bytes);
            header.set_cksum();
            data[block..block + 512].copy_from_slice(header.as_bytes());
        }
    }

    #[test]
    fn fuzzed_archives_never_panic_nor_escape() {
        let sandbox = Sandbox::new();
        let outside = sandbox.outside_str();
        let secret = [outside.as_slice(), b"/secret"].concat();
        let benign = Tar::new()
            .dir(b"d", 0o755)
            .file(b"d/f", &[b'f'; 700], 0o4755)
            .symlink(b"d/s", b"f")
            .hardlink(b"d/h", b"d/f")
            .node(b"p", EntryType::Fifo, 0, 0)
            .file(&[b'l'; 130], b"long", 0o644)
            .pax(&[("path", b"pax/p"), ("uid", b"7")])
            .file(b"x", b"pax", 0o644)
            .file(b".wh.gone", b"", 0o644)
            .bytes();
        let hostile = [
            Tar::new()
                .symlink(b"link", &outside)
                .file(b"link/new", b"pwned", 0o644)
                .dir(b"link", 0o777)
                .bytes(),
            Tar::new()
                .symlink(b"up", b"..")
                .file(b"up/outside/new", b"pwned", 0o644)
                .bytes(),
            Tar::new()
                .symlink(b"abs", &secret)
                .hardlink(b"hl", b"abs")
                .file(b"abs", b"pwned", 0o4777)
                .node(b"abs", EntryType::Fifo, 0, 0)
                .bytes(),
            Tar::new()
                .file(b"f", b"x", 0o644)
                .hardlink(b"h1", b"../outside/secret")
                .hardlink(b"h2", b"f")
                .bytes(),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let started = std::time::Instant::now();
        let mut outcomes = [0usize; 2];
        for round in 0..3000 {
            let base = if round % 2 == 0 {
                &benign
            } else {
                &hostile[rng.below(hostile.len())]
            };
            let mut data = mutate(&mut rng, base);
            if round % 10 == 0 {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(&data).unwrap();
                data = encoder.finish().unwrap();
                if round % 20 == 0 {
                    let at = rng.below(data.len());
                    data[at] ^= 1 << rng.below(8);
                }
            }
            fs::remove_dir_all(&sandbox.target).unwrap();
            fs::create_dir(&sandbox.target).unwrap();
            let result = std::panic::catch_unwind(|| sandbox.extract(&data));
            match result {
                Ok(r) => outcomes[usize::from(r.is_err())] += 1,
                Err(_) => panic!("round {round} panicked"),
            }
            sandbox.assert_contained();
        }
        // Both outcomes happen: the mutations are neither all fatal nor all harmless.
        assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
        assert!(started.elapsed().as_secs() < 60);
    }
}
