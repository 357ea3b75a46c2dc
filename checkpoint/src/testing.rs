//! Test support (feature `testing`, and this crate's own tests): a tar archive written
//! header by header, with the names and headers a hostile archive may carry, and a sorted
//! listing of a directory.

use std::path::Path;

use tar::{EntryType, Header};

/// The modification time of every entry [`Tar`] writes.
pub const MTIME: u64 = 1_700_000_000;

/// An archive written header by header, with names tar::Builder's checked setters refuse.
pub struct Tar(tar::Builder<Vec<u8>>);

impl Default for Tar {
    fn default() -> Self {
        Tar::new()
    }
}

impl Tar {
    pub fn new() -> Self {
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

    /// A GNU long name or long link entry holding `value`.
    pub fn gnu_long(&mut self, kind: EntryType, value: &[u8]) {
        let mut data = value.to_vec();
        data.push(0);
        let mut header = Self::header(b"././@LongLink", kind, data.len() as u64, 0o644);
        header.set_cksum();
        self.0.append(&header, &data[..]).unwrap();
    }

    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
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
        let mut header = Self::header(b"PaxHeader", EntryType::XHeader, data.len() as u64, 0o644);
        header.set_cksum();
        self.0.append(&header, &data[..]).unwrap();
        self
    }

    pub fn file(&mut self, name: impl AsRef<[u8]>, data: &[u8], mode: u32) -> &mut Self {
        let name = name.as_ref();
        let header = Self::header(name, EntryType::Regular, data.len() as u64, mode);
        self.push(header, name, None, data);
        self
    }

    pub fn owned_file(
        &mut self,
        name: impl AsRef<[u8]>,
        data: &[u8],
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let name = name.as_ref();
        let mut header = Self::header(name, EntryType::Regular, data.len() as u64, 0o644);
        header.set_uid(uid);
        header.set_gid(gid);
        self.push(header, name, None, data);
        self
    }

    pub fn dir(&mut self, name: impl AsRef<[u8]>, mode: u32) -> &mut Self {
        let name = name.as_ref();
        let header = Self::header(name, EntryType::Directory, 0, mode);
        self.push(header, name, None, b"");
        self
    }

    pub fn symlink(&mut self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        let (name, target) = (name.as_ref(), target.as_ref());
        let header = Self::header(name, EntryType::Symlink, 0, 0o777);
        self.push(header, name, Some(target), b"");
        self
    }

    pub fn hardlink(&mut self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        let (name, target) = (name.as_ref(), target.as_ref());
        let header = Self::header(name, EntryType::Link, 0, 0o644);
        self.push(header, name, Some(target), b"");
        self
    }

    pub fn node(
        &mut self,
        name: impl AsRef<[u8]>,
        kind: EntryType,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let name = name.as_ref();
        let mut header = Self::header(name, kind, 0, 0o640);
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
        self.push(header, name, None, b"");
        self
    }

    /// A header claiming `size` bytes, followed by `data` (maybe fewer).
    pub fn claim(&mut self, name: impl AsRef<[u8]>, size: u64, data: &[u8]) -> &mut Self {
        let name = name.as_ref();
        let mut header = Self::header(name, EntryType::Regular, size, 0o644);
        header.set_cksum();
        self.0.get_mut().extend_from_slice(header.as_bytes());
        self.0.get_mut().extend_from_slice(data);
        self
    }

    pub fn bytes(&mut self) -> Vec<u8> {
        let mut data = self.0.get_ref().clone();
        data.extend_from_slice(&[0; 1024]);
        data
    }
}

/// The names of the entries of `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
