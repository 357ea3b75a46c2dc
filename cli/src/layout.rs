//! Reading OCI image archives (an OCI image layout in a tar: `oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`), as `ctr images export` writes them, without unpacking them.
//!
//! The archive is hostile: it is scanned once for its regular files (names normalised, no
//! duplicates, counts and name lengths bounded), and every blob is read through a reader that
//! checks its size and its SHA-256 digest, so a blob is used only if it is what its
//! descriptor says. JSON documents are read whole only below [`MAX_JSON_BYTES`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use revive_checkpoint::oci::{Descriptor, Index, Manifest};
use sha2::{Digest as _, Sha256};

/// Largest JSON document (index, manifest, image config) or small blob read whole.
pub const MAX_JSON_BYTES: u64 = 4 << 20;
/// Most members accepted in an image archive.
const MAX_MEMBERS: usize = 1_000_000;
/// Most descriptors accepted in one index or manifest.
pub const MAX_DESCRIPTORS: usize = 10_000;

/// The hex part of a `sha256:<64 lowercase hex>` digest; anything else is an error (a digest
/// names a file, so it must not be able to name any other).
pub fn sha256_hex(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("unsupported digest {digest:?} (only sha256 is)"))?;
    ensure!(
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "malformed digest {digest:?}"
    );
    Ok(hex)
}

/// Where a regular file of a tar is.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    pub offset: u64,
    pub size: u64,
}

/// A tar file's regular files, scanned once: names normalised, no duplicates, counts and
/// name lengths bounded, every member inside the file. Members are read in place.
#[derive(Debug)]
pub struct TarIndex {
    path: PathBuf,
    file: File,
    members: HashMap<String, Member>,
}

/// A member name made relative: leading `/` and `./` dropped, `.` components dropped; `..`
/// refused (such a member is ignored: nothing here could name it).
fn normalise(raw: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(raw).ok()?;
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

impl TarIndex {
    /// Scans the tar `file` (read from `path`) for its regular files.
    pub fn scan(file: File, path: &Path) -> Result<TarIndex> {
        let meta = file.metadata()?;
        ensure!(
            meta.is_file(),
            "{} is not a regular file (an archive is read from a file)",
            path.display()
        );
        let mut members = HashMap::new();
        let mut probe = file.try_clone()?;
        probe.seek(SeekFrom::Start(0))?;
        let mut archive = tar::Archive::new(probe);
        let entries = archive
            .entries_with_seek()
            .with_context(|| format!("{}: not a tar archive", path.display()))?;
        let mut n = 0usize;
        for_each_member(entries, |raw, entry| {
            n += 1;
            ensure!(n <= MAX_MEMBERS, "more than {MAX_MEMBERS} members");
            let kind = entry.header().entry_type();
            if !(kind.is_file() || kind == tar::EntryType::Continuous) {
                return Ok(());
            }
            ensure!(raw.len() <= 4096, "a member name is too long");
            let Some(name) = normalise(raw) else {
                return Ok(());
            };
            let member = Member {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            ensure!(
                member
                    .offset
                    .checked_add(member.size)
                    .is_some_and(|end| end <= meta.len()),
                "member {name} extends beyond the end of the file: the archive is \
                 truncated (containerd 2.x's `ctr images export` can exit before it has \
                 written the whole file; export again with `--local`)"
            );
            if members.insert(name.clone(), member).is_some() {
                bail!("member {name} appears twice; refusing an ambiguous archive");
            }
            Ok(())
        })
        .with_context(|| format!("{}", path.display()))?;
        Ok(TarIndex {
            path: path.to_path_buf(),
            file,
            members,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn member(&self, name: &str) -> Option<Member> {
        self.members.get(name).copied()
    }

    /// The names of every regular file.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// A member as a reader, and its size.
    pub fn open_member(&self, name: &str) -> Result<(io::Take<File>, u64)> {
        let member = self
            .members
            .get(name)
            .with_context(|| format!("{}: {name} is missing", self.path.display()))?;
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(member.offset))?;
        Ok((file.take(member.size), member.size))
    }

    /// Fills `buf` from `offset` of member `name`; reading past the member's end is an error.
    pub fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let member = self.members.get(name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} is not in the archive"),
            )
        })?;
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > member.size)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name} is {} bytes, read past its end", member.size),
            ));
        }
        self.file.read_exact_at(buf, member.offset + offset)
    }

    /// A member read whole, at most `max` bytes (a larger one is an error).
    pub fn read_member(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        if !self.members.contains_key(name) {
            return Ok(None);
        }
        let (reader, size) = self.open_member(name)?;
        ensure!(
            size <= max,
            "{}: {name} is {size} bytes, more than the {max} accepted",
            self.path.display()
        );
        read_all(reader, size).map(Some)
    }
}

/// An OCI image archive, scanned.
#[derive(Debug)]
pub struct OciArchive {
    tar: TarIndex,
}

impl OciArchive {
    /// Scans the tar at `path` for its regular files.
    pub fn open(path: &Path) -> Result<OciArchive> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        {
            let mut magic = [0u8; 2];
            let got = (&file).read(&mut magic)?;
            ensure!(
                !(got == 2 && magic == [0x1f, 0x8b]),
                "{} is gzip-compressed; an OCI image archive (`ctr images export`) is a plain \
                 tar: decompress it first",
                path.display()
            );
        }
        OciArchive::of(TarIndex::scan(file, path)?)
    }

    /// The OCI image archive a scanned tar is; an error if it has no `index.json`.
    pub fn of(tar: TarIndex) -> Result<OciArchive> {
        ensure!(
            tar.members.contains_key("index.json"),
            "{} is not an OCI image archive: it has no index.json (make one with `ctr images \
             export FILE REF`)",
            tar.path.display()
        );
        Ok(OciArchive { tar })
    }

    pub fn path(&self) -> &Path {
        &self.tar.path
    }

    fn open_member(&self, name: &str) -> Result<(io::Take<File>, u64)> {
        self.tar.open_member(name)
    }

    /// `index.json`.
    pub fn index(&self) -> Result<Index> {
        let (reader, size) = self.open_member("index.json")?;
        ensure!(
            size <= MAX_JSON_BYTES,
            "{}: index.json is {size} bytes, more than the {MAX_JSON_BYTES} accepted",
            self.tar.path.display()
        );
        let data = read_all(reader, size)?;
        let index: Index = serde_json::from_slice(&data).with_context(|| {
            format!(
                "{}: index.json is not an OCI index",
                self.tar.path.display()
            )
        })?;
        ensure!(
            index.manifests.len() <= MAX_DESCRIPTORS,
            "{}: index.json lists too many images",
            self.tar.path.display()
        );
        Ok(index)
    }

    /// Whether the archive holds the blob of `desc`.
    pub fn has_blob(&self, desc: &Descriptor) -> bool {
        sha256_hex(&desc.digest).is_ok_and(|hex| {
            self.tar
                .members
                .contains_key(&format!("blobs/sha256/{hex}"))
        })
    }

    /// A reader of the blob `desc` names, which fails unless the blob is exactly
    /// `desc.size` bytes with digest `desc.digest`.
    pub fn blob(&self, desc: &Descriptor) -> Result<Verified<io::Take<File>>> {
        let hex = sha256_hex(&desc.digest)?;
        let (reader, size) = self
            .open_member(&format!("blobs/sha256/{hex}"))
            .with_context(|| format!("blob {} ({})", desc.digest, desc.media_type))?;
        ensure!(
            size == desc.size,
            "blob {} is {size} bytes, its descriptor says {}",
            desc.digest,
            desc.size
        );
        Ok(Verified::new(reader, desc))
    }

    /// The blob `desc` names, read whole (at most `max` bytes) and verified.
    pub fn blob_bytes(&self, desc: &Descriptor, max: u64) -> Result<Vec<u8>> {
        ensure!(
            desc.size <= max,
            "blob {} ({}) is {} bytes, more than the {max} accepted",
            desc.digest,
            desc.media_type,
            desc.size
        );
        let reader = self.blob(desc)?;
        read_all(reader, desc.size)
            .with_context(|| format!("reading blob {} ({})", desc.digest, desc.media_type))
    }

    /// The JSON blob `desc` names, parsed.
    pub fn json<T: serde::de::DeserializeOwned>(&self, desc: &Descriptor) -> Result<T> {
        let data = self.blob_bytes(desc, MAX_JSON_BYTES)?;
        serde_json::from_slice(&data)
            .with_context(|| format!("blob {} is not a valid {}", desc.digest, desc.media_type))
    }

    /// The index `desc` names, bounded.
    pub fn index_blob(&self, desc: &Descriptor) -> Result<Index> {
        let index: Index = self.json(desc)?;
        ensure!(
            index.manifests.len() <= MAX_DESCRIPTORS,
            "index {} lists too many descriptors",
            desc.digest
        );
        Ok(index)
    }

    /// The manifest `desc` names, bounded.
    pub fn manifest(&self, desc: &Descriptor) -> Result<Manifest> {
        let manifest: Manifest = self.json(desc)?;
        ensure!(
            manifest.layers.len() <= MAX_DESCRIPTORS,
            "manifest {} lists too many layers",
            desc.digest
        );
        Ok(manifest)
    }
}

fn read_all(reader: impl Read, size: u64) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 20));
    reader.take(size + 1).read_to_end(&mut data)?;
    Ok(data)
}

/// Reads a blob and checks, when it ends, that it had its descriptor's size and digest; a
/// mismatch is an error from the read that reaches the end.
pub struct Verified<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    size: u64,
    digest: String,
    checked: bool,
}

impl<R: Read> Verified<R> {
    pub fn new(inner: R, desc: &Descriptor) -> Verified<R> {
        Verified {
            inner,
            hasher: Sha256::new(),
            read: 0,
            size: desc.size,
            digest: desc.digest.clone(),
            checked: false,
        }
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        // Checked as soon as the blob's size is reached (a reader bounded to that size never
        // asks for more), and at its end.
        if (self.read >= self.size || (n == 0 && !buf.is_empty())) && !self.checked {
            self.checked = true;
            let got = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
            if self.read != self.size || got != self.digest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} is corrupt: {} bytes with digest {got}",
                        self.digest, self.read
                    ),
                ));
            }
        }
        Ok(n)
    }
}

/// Largest GNU long name or PAX header read (the tar crate would read them whole, of any
/// size, so members are walked raw and metadata bounded here).
const MAX_TAR_META_BYTES: u64 = 1 << 20;

/// Walks the members of a tar with bounded metadata: GNU long names and PAX headers are read
/// here (at most [`MAX_TAR_META_BYTES`]), and `visit` gets each member with its full name.
/// A PAX size that differs from the header's (members over 8 GiB) is refused.
pub fn for_each_member<'a, R: Read + 'a>(
    entries: tar::Entries<'a, R>,
    mut visit: impl FnMut(&[u8], &mut tar::Entry<'a, R>) -> Result<()>,
) -> Result<()> {
    let (mut long_name, mut pax_path, mut pax_size) = (None, None, None);
    for (n, entry) in entries.raw(true).enumerate() {
        let mut entry = entry.with_context(|| format!("malformed tar (member {})", n + 1))?;
        let kind = entry.header().entry_type().as_byte();
        let size = entry.size();
        if matches!(kind, b'L' | b'K' | b'x' | b'g') {
            ensure!(
                size <= MAX_TAR_META_BYTES,
                "a tar metadata member is {size} bytes, more than the {MAX_TAR_META_BYTES} \
                 accepted"
            );
            let mut data = Vec::new();
            (&mut entry).take(size).read_to_end(&mut data)?;
            match kind {
                b'L' => {
                    while data.last() == Some(&0) {
                        data.pop();
                    }
                    long_name = Some(data);
                }
                b'x' => {
                    let pax = revive_checkpoint::extract::parse_pax(&data)
                        .map_err(|e| anyhow::anyhow!("malformed PAX header: {e}"))?;
                    (pax_path, pax_size) = (pax.path, pax.size);
                }
                _ => {}
            }
            continue;
        }
        let name = pax_path
            .take()
            .or(long_name.take())
            .unwrap_or_else(|| entry.header().path_bytes().into_owned());
        if let Some(pax) = pax_size.take() {
            ensure!(
                pax == size,
                "a member's PAX size differs from its header's (members over 8 GiB are not \
                 supported)"
            );
        }
        visit(&name, &mut entry)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_name_nothing_else() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(sha256_hex(&good).is_ok());
        for bad in [
            "sha256:../../etc/passwd",
            "sha512:abc",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}/x", "a".repeat(62)),
        ] {
            assert!(sha256_hex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(
            normalise(b"./blobs//sha256/x").as_deref(),
            Some("blobs/sha256/x")
        );
        assert_eq!(normalise(b"/index.json").as_deref(), Some("index.json"));
        assert_eq!(normalise(b"../index.json"), None);
        assert_eq!(normalise(b"./"), None);
    }
}
