//! The extractor: reads an archive's headers one by one and writes each member beneath the
//! target with `*at` calls on descriptors opened beneath it.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::libc;
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, makedev,
    mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat,
};

use super::beneath::{
    Beneath, check_depth, check_name, is_dir, join, normalise, open_beneath, open_beneath_created,
    open_dir, open_root, relative,
};
use super::header::{MAX_PAX_BYTES, Pax, Pending, parse_pax, read_bounded};
use super::overlay::{make_whiteout, set_opaque};
use super::{
    AUFS_META_PREFIX, EntryKind, EscapeReason, ExtractError, Limits, LinkReason, Malformation,
    OPAQUE_WHITEOUT, Options, Report, WHITEOUT_PREFIX, bytes_path, escape, io_error,
};

/// Size of the buffer file contents are copied through.
const COPY_BUFFER: usize = 64 * 1024;
/// Bytes of paths kept in memory during an extraction (whiteouts and opaque directories
/// reported, directories whose times are set at the end): names compress well, so a small
/// gzip could otherwise make a large report.
const MAX_RETAINED_BYTES: usize = 128 << 20;

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
                    reason: Malformation::Unreadable(e),
                });
            }
        }
    }
    let stream = io::Cursor::new(magic).take(got as u64).chain(reader);
    let root = open_root(target)?;
    let mut extractor = Extractor::new(root, options);
    if magic == [0x1f, 0x8b] {
        extractor.run(flate2::read::MultiGzDecoder::new(stream))?;
    } else {
        extractor.run(stream)?;
    }
    Ok(extractor.report)
}

/// Metadata of an entry, already checked and with the mode filtered.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
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
        ExtractError::check_limit(
            retained as u64,
            MAX_RETAINED_BYTES as u64,
            "bytes of whiteout paths",
            path,
        )?;
        self.retained = retained;
        Ok(())
    }

    fn limits(&self) -> &Limits {
        &self.options.limits
    }

    fn malformed(&self, path: &Path, reason: impl Into<Malformation>) -> ExtractError {
        ExtractError::Malformed {
            entry: self.report.entries,
            path: path.to_path_buf(),
            reason: reason.into(),
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
                    Malformation::FirstHeader(e)
                } else {
                    Malformation::Header {
                        after: last.clone(),
                        source: e,
                    }
                },
            })?;
            last = bytes_path(&entry.header().path_bytes());
            if let Some(path) = self.entry(&mut entry, &mut pending)? {
                last = path;
            }
        }
        if !pending.is_empty() {
            return Err(self.malformed(&last, Malformation::TrailingMetadata));
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
        ExtractError::check_limit(size, limits.max_file_bytes, "entry size", path)?;
        let total = self.total.saturating_add(size);
        ExtractError::check_limit(total, limits.max_total_bytes, "total size", path)?;
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
                ExtractError::check_limit(size, max, "GNU long name length", &header_path)?;
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
                    return Err(self.malformed(&header_path, Malformation::TwoLongNames));
                }
                return Ok(None);
            }
            b'x' | b'g' => {
                ExtractError::check_limit(size, MAX_PAX_BYTES, "PAX header size", &header_path)?;
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
                    return Err(self.malformed(&header_path, Malformation::TwoPaxHeaders));
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
                kind: EntryKind::PaxSize {
                    pax: pax_size,
                    header: size,
                },
            });
        }
        if pax.sparse || kind.is_gnu_sparse() {
            return Err(ExtractError::Unsupported {
                path,
                kind: EntryKind::Sparse,
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
            return Err(escape(&path, EscapeReason::Empty));
        };
        let name = *name;

        // Whiteouts: reported, never created; nothing is created beneath one either.
        if parent.iter().any(|c| c.starts_with(AUFS_META_PREFIX)) {
            // In aufs bookkeeping directories (`.wh..wh.plnk/`): skipped, as by Docker.
            return Ok(Some(path));
        }
        if parent.iter().any(|c| c.starts_with(WHITEOUT_PREFIX)) {
            return Err(self.malformed(&path, Malformation::BeneathWhiteout));
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
                return Err(escape(&path, EscapeReason::WhiteoutNamesNothing));
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
                    return Err(self.malformed(&path, Malformation::SymlinkWithoutTarget));
                };
                check_name(&link, self.limits(), &path)?;
                if link.contains(&0) {
                    return Err(escape(&path, EscapeReason::NulInLink));
                }
                let parent = self.parent(parent, &path)?;
                self.symlink(&parent, name, &link, &meta, &path)?;
            }
            b'1' => {
                let Some(link) = raw_link else {
                    return Err(self.malformed(&path, Malformation::HardLinkWithoutTarget));
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
                        Ok(None) => Err(self.malformed(&path, Malformation::NoDeviceNumbers)),
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
                            kind: if kind.as_byte() == b'3' {
                                EntryKind::CharDevice
                            } else {
                                EntryKind::BlockDevice
                            },
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
                    kind: EntryKind::Other(other),
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
            return Err(escape(path, EscapeReason::WhiteoutIsTarget));
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
        let id = |value: Option<u64>, header: io::Result<u64>, what: &'static str| {
            let value = match value {
                Some(v) => v,
                None => header.map_err(|e| self.malformed(path, e))?,
            };
            // u32::MAX is chown's "unchanged".
            u32::try_from(value)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| self.malformed(path, Malformation::IdOutOfRange { what, value }))
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
                    EscapeReason::Symlink(relative(&components[..=i])),
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
            Errno::ELOOP => escape(path, EscapeReason::ReplacedBySymlink),
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
                Err(e) => return Err(self.malformed(path, Malformation::Data(e))),
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
            return Err(self.malformed(path, Malformation::Truncated { written, size }));
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
        let refuse = |reason: LinkReason| ExtractError::LinkEscape {
            path: path.to_path_buf(),
            target: bytes_path(link),
            reason,
        };
        let source = normalise(link).map_err(|e| refuse(e.into()))?;
        check_depth(&source, self.limits(), path)?;
        if !self.extracted.contains(&self.path_id(&join(&source))) {
            return Err(refuse(LinkReason::NotExtracted));
        }
        if source == components {
            return Ok(());
        }
        let (Some((name, parent)), Some((source_name, source_parent))) =
            (components.split_last(), source.split_last())
        else {
            return Err(refuse(LinkReason::Empty));
        };
        let parent = self.parent(parent, path)?;
        let name = OsStr::from_bytes(name);
        self.make_room(&parent, name, false, path)?;
        let source_dir = match open_beneath(&self.root, source_parent, false) {
            Ok(Beneath::Dir(fd)) => fd,
            Ok(Beneath::Symlink(_)) => return Err(refuse(LinkReason::SymlinkOnPath)),
            Ok(Beneath::Missing | Beneath::NotDir(_)) => {
                return Err(refuse(LinkReason::DirectoryGone));
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
