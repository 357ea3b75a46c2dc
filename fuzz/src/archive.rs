//! Tar archives built from the fuzzer's bytes: every member is a valid-looking header (so
//! the fuzzer gets past the checksum to the extractor's own logic) with the names, links,
//! types, sizes and metadata entries a hostile archive would use: `..`, absolute paths,
//! symlinks to the canary followed by writes through them, hard links out, devices,
//! whiteouts, huge sizes, GNU long names and PAX records, gzip or not.
//!
//! Most members are ordinary (a name, a type, data) and some carry the header's other
//! fields and metadata entries, so that archives of several members that all get through
//! are common; a symlink followed by a write beneath it is one step ([`Step`]), since the
//! fuzzer takes minutes to put the two together by itself.

use std::io::Write;
use std::path::Path;

use arbitrary::Arbitrary;
use revive_checkpoint::extract::{Limits, Options};
use tar::{EntryType, Header};

use crate::sandbox::Sandbox;

/// An archive and how to extract it. (Where the input runs out, `arbitrary` gives zeros:
/// the first variant of each enum, false, empty. So the first variants are the ordinary
/// cases, and a short input makes a well-formed archive.)
#[derive(Arbitrary, Debug)]
pub struct Input {
    pub options: Opts,
    /// Extract a second time into the same target (entries meet what the first made).
    pub twice: bool,
    /// Largest read the extractor gets from the reader (0: as much as it asks for).
    pub chunk: u8,
    pub archive: Archive,
}

#[derive(Arbitrary, Debug)]
pub struct Opts {
    pub allow_devices: bool,
    pub overlay_whiteouts: bool,
    pub keep_setid: bool,
    pub keep_owner: bool,
    pub limits: Option<SmallLimits>,
}

/// Limits small enough for the fuzzer to reach each of them.
#[derive(Arbitrary, Debug)]
pub struct SmallLimits {
    pub entries: u8,
    pub total_bytes: u16,
    pub file_bytes: u16,
    pub path_len: u8,
    pub depth: u8,
}

impl Opts {
    pub fn options(&self) -> Options {
        let mut limits = Limits {
            // The defaults, but files small enough to write quickly.
            max_file_bytes: 1 << 20,
            max_total_bytes: 4 << 20,
            ..Limits::default()
        };
        if let Some(small) = &self.limits {
            limits = Limits {
                max_entries: small.entries.into(),
                max_total_bytes: small.total_bytes.into(),
                max_file_bytes: small.file_bytes.into(),
                max_path_len: small.path_len.into(),
                max_depth: small.depth.into(),
            };
        }
        Options {
            limits,
            allow_devices: self.allow_devices,
            overlay_whiteouts: self.overlay_whiteouts,
            keep_setid: self.keep_setid,
            keep_owner: self.keep_owner,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct Archive {
    pub compression: Compression,
    pub ending: Ending,
    pub members: Vec<Step>,
}

/// One member, or the members of an attack the fuzzer would take long to put together.
#[derive(Arbitrary, Debug)]
pub enum Step {
    Member(Member),
    /// A symlink named `name` to `to`, then `then` beneath it (its name after `name/`).
    ThroughSymlink {
        name: Name,
        to: Link,
        then: Member,
    },
}

#[derive(Arbitrary, Debug)]
pub enum Ending {
    /// Two zero blocks, as tar writes.
    Zeros,
    Nothing,
    Garbage(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
pub enum Compression {
    None,
    Gzip,
    /// Two gzip members, split at the given fraction (/256) of the archive.
    GzipTwoMembers(u8),
    /// Gzip cut after the given fraction (/256) of its bytes.
    GzipTruncated(u8),
}

/// A member: a name, a type and data, and, in some, the header's other fields and
/// metadata entries (without them: a GNU header, mode 0644 or 0755, owned by root, with
/// GNU long names where needed).
#[derive(Arbitrary, Debug)]
pub struct Member {
    pub name: Name,
    pub kind: Kind,
    pub data: Data,
    pub header: Option<Box<Fields>>,
}

/// The rest of a member's header, and metadata entries before it.
#[derive(Arbitrary, Debug)]
pub struct Fields {
    pub naming: Naming,
    pub format: Format,
    pub mode: u16,
    pub uid: Id,
    pub gid: Id,
    pub mtime: u64,
    pub size: Size,
    pub pax: Vec<PaxRecord>,
    /// Breaks the header's checksum when 0xff (so a few archives end there).
    pub checksum: u8,
}

/// Where the member's name (and link) is written.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Naming {
    /// A GNU long name (and long link) entry before the header, when they are longer than
    /// its 100-byte fields.
    GnuLong,
    /// The header's 100-byte fields, cut there.
    Field,
    /// The ustar prefix and name fields.
    Prefix,
    /// PAX `path` (and `linkpath`) records.
    Pax,
    /// Both GNU long names and PAX records (PAX wins).
    Both,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Format {
    Gnu,
    Ustar,
    Old,
}

#[derive(Arbitrary, Debug)]
pub enum Kind {
    File,
    /// Old tar's regular file, type `\0`.
    OldFile,
    Contiguous,
    Dir,
    Symlink(Link),
    Hardlink(Link),
    Char(Dev),
    Block(Dev),
    Fifo,
    GnuSparse,
    Other(u8),
}

/// Where a link points.
#[derive(Arbitrary, Debug)]
pub enum Link {
    /// The canary directory beside the target, by its absolute path.
    Canary,
    Name(Name),
    /// The canary's file, by its absolute path.
    Secret,
    /// The target's parent, by its absolute path.
    Outer,
    /// `..` repeated (at most twice: beyond, it leaves the sandbox).
    Up(u8),
    /// `../canary` and `../canary/secret` relative to the target, with `n` more `../`.
    RelativeCanary(u8),
    RelativeSecret(u8),
    Empty,
    Raw(Vec<u8>),
}

/// Device numbers. When devices are allowed, only 1:3, 1:5 and 1:7 are written (as
/// character devices: null, zero and full; as block devices: RAM disks) besides overlay's
/// 0:0 whiteout: a fuzzing machine should not get nodes of its disks, even in a scratch
/// directory.
#[derive(Arbitrary, Debug)]
pub enum Dev {
    Null,
    Zero,
    Whiteout,
    Numbers(u32, u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Id {
    Root,
    Nobody,
    /// chown's "unchanged", which the extractor refuses.
    Max,
    Small(u16),
    /// Too large for a u32: in a PAX record.
    Huge(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Size {
    /// The data's length.
    Exact,
    /// Another length than the data's (the rest of the archive is read as data, or the
    /// data as headers).
    Claim(u32),
    /// Far more than any limit, in base-256.
    Huge,
}

#[derive(Arbitrary, Debug)]
pub enum Data {
    Bytes(Vec<u8>),
    /// `len` copies of `byte` (files larger than the fuzzer's input).
    Fill(u8, u16),
}

#[derive(Arbitrary, Debug)]
pub struct PaxRecord {
    pub key: PaxKey,
    pub value: PaxValue,
    /// A wrong length prefix.
    pub bad_length: bool,
}

#[derive(Arbitrary, Debug)]
pub enum PaxKey {
    Path,
    Linkpath,
    Size,
    Uid,
    Gid,
    Mtime,
    Sparse,
    Comment,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
pub enum PaxValue {
    Number(u64),
    Negative(u64),
    Fraction(u32, u32),
    Name(Name),
    Empty,
    Raw(Vec<u8>),
}

/// A path: components that an attacker would pick.
#[derive(Arbitrary, Debug)]
pub struct Name {
    pub absolute: bool,
    pub parts: Vec<Part>,
    pub trailing_slash: bool,
}

#[derive(Arbitrary, Debug)]
pub enum Part {
    Word(Word),
    Dot,
    DotDot,
    Empty,
    /// A component of this many `x` (at most 5000): name length limits.
    Long(u16),
    /// This many `d/` (at most 300): depth limits.
    Deep(u16),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Word {
    Link,
    Secret,
    A,
    B,
    D,
    F,
    Canary,
    Target,
    Whiteout,
    Opaque,
    AufsLink,
    WhiteoutPrefix,
    WhiteoutDot,
}

impl Word {
    fn bytes(self) -> &'static [u8] {
        match self {
            Word::Link => b"link",
            Word::Secret => b"secret",
            Word::A => b"a",
            Word::B => b"b",
            Word::D => b"d",
            Word::F => b"f",
            Word::Canary => b"canary",
            Word::Target => b"target",
            Word::Whiteout => b".wh.a",
            Word::Opaque => b".wh..wh..opq",
            Word::AufsLink => b".wh..wh.plnk",
            Word::WhiteoutPrefix => b".wh.",
            Word::WhiteoutDot => b".wh..",
        }
    }
}

impl Name {
    /// The names as the strings of a `deleted.files` list (lossy UTF-8, as JSON holds them).
    pub fn paths(names: &[Name]) -> Vec<String> {
        names
            .iter()
            .map(|n| String::from_utf8_lossy(&n.bytes()).into_owned())
            .collect()
    }

    pub fn bytes(&self) -> Vec<u8> {
        if !self.absolute && self.parts.is_empty() && !self.trailing_slash {
            // Where the input ran out; empty names come from `Part::Empty`.
            return b"f".to_vec();
        }
        let mut out = Vec::new();
        if self.absolute {
            out.push(b'/');
        }
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            match part {
                Part::Word(w) => out.extend_from_slice(w.bytes()),
                Part::Dot => out.push(b'.'),
                Part::DotDot => out.extend_from_slice(b".."),
                Part::Empty => {}
                Part::Long(n) => out.extend(std::iter::repeat_n(b'x', usize::from(*n).min(5000))),
                Part::Deep(n) => {
                    for j in 0..usize::from(*n).min(300) {
                        if j > 0 {
                            out.push(b'/');
                        }
                        out.push(b'd');
                    }
                }
                Part::Raw(raw) => out.extend_from_slice(raw),
            }
        }
        if self.trailing_slash {
            out.push(b'/');
        }
        out
    }
}

fn abs(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

impl Link {
    fn bytes(&self, sandbox: &Sandbox) -> Vec<u8> {
        let ups = |n: u8| b"../".repeat(usize::from(n % 2));
        match self {
            Link::Name(name) => name.bytes(),
            Link::Canary => abs(sandbox.canary()),
            Link::Secret => abs(&sandbox.secret()),
            Link::Outer => abs(sandbox.outer()),
            Link::Up(n) => {
                let mut up = b"..".to_vec();
                if n % 2 == 1 {
                    up.extend_from_slice(b"/..");
                }
                up
            }
            Link::RelativeCanary(n) => [ups(*n), b"../canary".to_vec()].concat(),
            Link::RelativeSecret(n) => [ups(*n), b"../canary/secret".to_vec()].concat(),
            Link::Empty => Vec::new(),
            Link::Raw(raw) => raw.clone(),
        }
    }
}

impl Id {
    fn header_value(self) -> u64 {
        match self {
            Id::Root => 0,
            Id::Nobody => 65534,
            Id::Max => u32::MAX.into(),
            Id::Small(n) => n.into(),
            Id::Huge(_) => 0,
        }
    }
}

/// A PAX extended header's data from `(key, value, bad length)` records.
fn pax_data(records: &[(Vec<u8>, Vec<u8>, bool)]) -> Vec<u8> {
    let mut data = Vec::new();
    for (key, value, bad) in records {
        let body = [key.as_slice(), b"=", value, b"\n"].concat();
        // The length counts its own digits and the space.
        let mut len = body.len() + 2;
        while format!("{len} ").len() + body.len() != len {
            len += 1;
        }
        if *bad {
            len += 1;
        }
        data.extend_from_slice(format!("{len} ").as_bytes());
        data.extend_from_slice(&body);
    }
    data
}

fn push_block_padded(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    let rest = data.len() % 512;
    if rest != 0 {
        out.extend(std::iter::repeat_n(0u8, 512 - rest));
    }
}

fn copy_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// A metadata member (GNU long name or PAX header) carrying `data`.
fn meta_member(out: &mut Vec<u8>, kind: EntryType, data: &[u8]) {
    let mut header = Header::new_gnu();
    copy_field(&mut header.as_old_mut().name, b"././@LongLink");
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(data.len() as u64);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    push_block_padded(out, data);
}

/// An ordinary symlink member, with GNU long names where needed.
fn symlink(out: &mut Vec<u8>, name: &[u8], target: &[u8]) {
    for (kind, value) in [
        (EntryType::GNULongName, name),
        (EntryType::GNULongLink, target),
    ] {
        if value.len() > 100 {
            meta_member(out, kind, &[value, b"\0"].concat());
        }
    }
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Symlink);
    header.set_mode(0o777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header.set_size(0);
    copy_field(&mut header.as_old_mut().name, name);
    copy_field(&mut header.as_old_mut().linkname, target);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
}

impl Member {
    /// Appends the member, its name after `prefix`.
    fn write(&self, out: &mut Vec<u8>, prefix: &[u8], sandbox: &Sandbox, allow_devices: bool) {
        let name = [prefix, &self.name.bytes()].concat();
        let link = match &self.kind {
            Kind::Symlink(l) | Kind::Hardlink(l) => Some(l.bytes(sandbox)),
            _ => None,
        };
        let data = match &self.data {
            Data::Bytes(b) => b.clone(),
            Data::Fill(byte, len) => vec![*byte; usize::from(*len)],
        };
        let ordinary = Fields {
            naming: Naming::GnuLong,
            format: Format::Gnu,
            mode: if matches!(self.kind, Kind::Dir) {
                0o755
            } else {
                0o644
            },
            uid: Id::Root,
            gid: Id::Root,
            mtime: 1_700_000_000,
            size: Size::Exact,
            pax: Vec::new(),
            checksum: 0,
        };
        let fields = self.header.as_deref().unwrap_or(&ordinary);

        let mut pax: Vec<(Vec<u8>, Vec<u8>, bool)> = Vec::new();
        if matches!(fields.naming, Naming::Pax | Naming::Both) {
            pax.push((b"path".to_vec(), name.clone(), false));
            if let Some(link) = &link {
                pax.push((b"linkpath".to_vec(), link.clone(), false));
            }
        }
        for (id, key) in [(fields.uid, &b"uid"[..]), (fields.gid, &b"gid"[..])] {
            if let Id::Huge(n) = id {
                pax.push((key.to_vec(), n.to_string().into_bytes(), false));
            }
        }
        for record in &fields.pax {
            let key = match &record.key {
                PaxKey::Path => b"path".to_vec(),
                PaxKey::Linkpath => b"linkpath".to_vec(),
                PaxKey::Size => b"size".to_vec(),
                PaxKey::Uid => b"uid".to_vec(),
                PaxKey::Gid => b"gid".to_vec(),
                PaxKey::Mtime => b"mtime".to_vec(),
                PaxKey::Sparse => b"GNU.sparse.major".to_vec(),
                PaxKey::Comment => b"comment".to_vec(),
                PaxKey::Raw(k) => k.clone(),
            };
            let value = match &record.value {
                PaxValue::Number(n) => n.to_string().into_bytes(),
                PaxValue::Negative(n) => format!("-{n}").into_bytes(),
                PaxValue::Fraction(a, b) => format!("{a}.{b}").into_bytes(),
                PaxValue::Name(n) => n.bytes(),
                PaxValue::Empty => Vec::new(),
                PaxValue::Raw(r) => r.clone(),
            };
            pax.push((key, value, record.bad_length));
        }
        if !pax.is_empty() {
            meta_member(out, EntryType::XHeader, &pax_data(&pax));
        }
        if matches!(fields.naming, Naming::GnuLong | Naming::Both) {
            if name.len() > 100 {
                meta_member(
                    out,
                    EntryType::GNULongName,
                    &[name.as_slice(), b"\0"].concat(),
                );
            }
            if let Some(link) = link.as_ref().filter(|l| l.len() > 100) {
                meta_member(
                    out,
                    EntryType::GNULongLink,
                    &[link.as_slice(), b"\0"].concat(),
                );
            }
        }

        let mut header = match fields.format {
            Format::Gnu => Header::new_gnu(),
            Format::Ustar => Header::new_ustar(),
            Format::Old => Header::new_old(),
        };
        let kind = match &self.kind {
            Kind::File => EntryType::Regular,
            Kind::OldFile => EntryType::new(b'\0'),
            Kind::Contiguous => EntryType::Continuous,
            Kind::Dir => EntryType::Directory,
            Kind::Symlink(_) => EntryType::Symlink,
            Kind::Hardlink(_) => EntryType::Link,
            Kind::Char(_) => EntryType::Char,
            Kind::Block(_) => EntryType::Block,
            Kind::Fifo => EntryType::Fifo,
            Kind::GnuSparse => EntryType::GNUSparse,
            Kind::Other(b) => EntryType::new(*b),
        };
        header.set_entry_type(kind);
        header.set_mode(u32::from(fields.mode) & 0o7777);
        header.set_uid(fields.uid.header_value());
        header.set_gid(fields.gid.header_value());
        header.set_mtime(fields.mtime);
        header.set_size(match fields.size {
            Size::Exact => data.len() as u64,
            Size::Claim(n) => n.into(),
            Size::Huge => 1 << 60,
        });
        if let Kind::Char(dev) | Kind::Block(dev) = &self.kind {
            let (major, minor) = match dev {
                Dev::Null => (1, 3),
                Dev::Zero => (1, 5),
                Dev::Whiteout => (0, 0),
                Dev::Numbers(..) if allow_devices => (1, 7),
                Dev::Numbers(major, minor) => (*major, *minor),
            };
            // Old headers have no device fields: the extractor must say so.
            let _ = header.set_device_major(major);
            let _ = header.set_device_minor(minor);
        }
        match (fields.naming, fields.format) {
            (Naming::Prefix, Format::Ustar) if name.len() > 100 => {
                let split = name.len() - 100;
                let ustar = header.as_ustar_mut().expect("a ustar header");
                copy_field(&mut ustar.prefix, &name[..split]);
                copy_field(&mut ustar.name, &name[split..]);
            }
            _ => copy_field(&mut header.as_old_mut().name, &name),
        }
        if let Some(link) = &link {
            copy_field(&mut header.as_old_mut().linkname, link);
        }
        header.set_cksum();
        if fields.checksum == 0xff {
            header.as_old_mut().cksum[0] ^= 1;
        }
        out.extend_from_slice(header.as_bytes());
        push_block_padded(out, &data);
    }
}

impl Archive {
    /// The archive's bytes; links to the sandbox's own directories use its paths.
    pub fn bytes(&self, sandbox: &Sandbox, allow_devices: bool) -> Vec<u8> {
        let mut tar = Vec::new();
        for step in &self.members {
            match step {
                Step::Member(member) => member.write(&mut tar, b"", sandbox, allow_devices),
                Step::ThroughSymlink { name, to, then } => {
                    let name = name.bytes();
                    symlink(&mut tar, &name, &to.bytes(sandbox));
                    let prefix = [name, b"/".to_vec()].concat();
                    then.write(&mut tar, &prefix, sandbox, allow_devices);
                }
            }
        }
        match &self.ending {
            Ending::Zeros => tar.extend_from_slice(&[0; 1024]),
            Ending::Nothing => {}
            Ending::Garbage(g) => tar.extend_from_slice(g),
        }
        let gzip = |data: &[u8]| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(data).expect("gzip in memory");
            encoder.finish().expect("gzip in memory")
        };
        let at = |fraction: u8, len: usize| len * usize::from(fraction) / 256;
        match self.compression {
            Compression::None => tar,
            Compression::Gzip => gzip(&tar),
            Compression::GzipTwoMembers(f) => {
                let (a, b) = tar.split_at(at(f, tar.len()));
                [gzip(a), gzip(b)].concat()
            }
            Compression::GzipTruncated(f) => {
                let mut z = gzip(&tar);
                z.truncate(at(f, z.len()));
                z
            }
        }
    }
}
