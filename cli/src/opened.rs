//! A checkpoint to analyse, whatever it came as: a checkpoint archive (a plain tar, gzip or
//! zstd, as the kubelet, CRI-O, Podman and checkpointctl write them), an OCI image archive
//! holding a checkpoint image, or containerd's own checkpoint (`ctr c checkpoint`, exported).
//!
//! A plain tar is read in place. Anything compressed or nested is first written out,
//! decompressed and with its digest checked, to an unnamed temporary file (`O_TMPFILE` in
//! `$TMPDIR`, mode 0600), which the kernel removes when revive exits, however it exits: a
//! checkpoint holds every memory page of its processes, secrets included.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use revive_checkpoint::archive;
use revive_checkpoint::criu::ImageError;
use revive_checkpoint::criu::images::Source;
use revive_checkpoint::oci::{self, Compression, Descriptor};
use serde::Serialize;

use crate::convert::{Native, find_native};
use crate::decompress::decompressed;
use crate::layout::{OciArchive, TarIndex};

/// Largest CRIU image (other than memory pages) read whole.
const MAX_IMAGE_BYTES: u64 = 64 << 20;

/// What the checkpoint came as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Origin {
    /// A checkpoint archive.
    Archive { compression: String },
    /// A checkpoint image in an OCI image archive.
    Image { name: String },
    /// containerd's own checkpoint in an OCI image archive.
    Containerd { name: String },
}

/// A checkpoint opened for reading.
pub struct Opened {
    tar: TarIndex,
    /// Where CRIU's images are in `tar`: `checkpoint/` in an archive, the top of
    /// containerd's CRIU tar.
    prefix: &'static str,
    pub origin: Origin,
    /// Files that are not in `tar` (containerd's checkpoint keeps its spec apart).
    beside: BTreeMap<String, Vec<u8>>,
}

fn compression_name(c: Compression) -> String {
    match c {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    }
    .into()
}

/// Copies `reader` to an unnamed private temporary file and scans it as a tar.
fn spill(reader: &mut dyn Read, what: &Path) -> Result<TarIndex> {
    let mut file = tempfile::tempfile().context(
        "creating a temporary file in $TMPDIR (point TMPDIR at a directory with room for the \
         decompressed checkpoint)",
    )?;
    io::copy(reader, &mut file).with_context(|| format!("decompressing {}", what.display()))?;
    TarIndex::scan(file, what)
}

impl Opened {
    pub fn open(path: &Path) -> Result<Opened> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let (mut stream, compression) = decompressed(BufReader::new(file))?;
        let tar = if compression == Compression::None {
            drop(stream);
            TarIndex::scan(File::open(path)?, path)?
        } else {
            spill(&mut stream, path)?
        };
        if tar.member(archive::SPEC_DUMP).is_some() || tar.names().any(is_criu_member) {
            return Ok(Opened {
                tar,
                prefix: "checkpoint/",
                origin: Origin::Archive {
                    compression: compression_name(compression),
                },
                beside: BTreeMap::new(),
            });
        }
        if tar.member("index.json").is_some() {
            return Opened::from_image(OciArchive::of(tar)?, path);
        }
        bail!(
            "{} is neither a checkpoint archive (it has no spec.dump and no checkpoint/ \
             directory) nor an OCI image archive (no index.json)",
            path.display()
        )
    }

    fn from_image(oci: OciArchive, path: &Path) -> Result<Opened> {
        if let Some((name, native)) = find_native(&oci)? {
            return Opened::from_containerd(&oci, name, native, path);
        }
        for top in oci.index()?.manifests {
            let name = top.image_name();
            let Some(layer) = single_layer(&oci, &top)? else {
                continue;
            };
            let (mut stream, _) = decompressed(BufReader::new(oci.blob(&layer)?))?;
            let tar = spill(&mut stream, path)?;
            if tar.member(archive::SPEC_DUMP).is_some() {
                return Ok(Opened {
                    tar,
                    prefix: "checkpoint/",
                    origin: Origin::Image { name },
                    beside: BTreeMap::new(),
                });
            }
        }
        bail!(
            "{} holds no checkpoint image (no image whose one layer is a checkpoint archive) \
             and no containerd checkpoint",
            path.display()
        )
    }

    fn from_containerd(
        oci: &OciArchive,
        name: String,
        native: Native,
        path: &Path,
    ) -> Result<Opened> {
        let criu = native.criu.as_ref().with_context(|| {
            format!("containerd checkpoint {name} has no CRIU images (it was taken without a task)")
        })?;
        let mut beside = BTreeMap::new();
        if let Some(spec) = &native.spec {
            beside.insert(
                archive::SPEC_DUMP.to_string(),
                crate::convert::read_spec(oci, spec)?,
            );
        }
        let (mut stream, _) = decompressed(BufReader::new(oci.blob(criu)?))?;
        Ok(Opened {
            tar: spill(&mut stream, path)?,
            prefix: "",
            origin: Origin::Containerd { name },
            beside,
        })
    }

    /// A file of the checkpoint beside CRIU's images (`config.dump`, `spec.dump`,
    /// `stats-dump`...), at most `max` bytes.
    pub fn file(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        if let Some(data) = self.beside.get(name) {
            return Ok(Some(data.clone()));
        }
        if self.prefix.is_empty() {
            return Ok(None);
        }
        self.tar.read_member(name, max)
    }

    /// The size of a file beside CRIU's images.
    pub fn file_size(&self, name: &str) -> Option<u64> {
        if self.prefix.is_empty() {
            return None;
        }
        self.tar.member(name).map(|m| m.size)
    }

    /// CRIU's image files and their sizes.
    pub fn images(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .tar
            .names()
            .filter_map(|n| self.image_name(n))
            .filter_map(|n| {
                self.tar
                    .member(&self.member(n))
                    .map(|m| (n.to_string(), m.size))
            })
            .collect();
        out.sort();
        out
    }

    fn image_name<'a>(&self, member: &'a str) -> Option<&'a str> {
        member
            .strip_prefix(self.prefix)
            .filter(|n| !n.is_empty() && !n.contains('/'))
    }

    fn member(&self, image: &str) -> String {
        format!("{}{image}", self.prefix)
    }
}

fn is_criu_member(name: &str) -> bool {
    name == "checkpoint/pstree.img" || name == "checkpoint/inventory.img"
}

/// The one layer of the image `top` names (for this host's platform, in an index), if it
/// has exactly one.
fn single_layer(oci: &OciArchive, top: &Descriptor) -> Result<Option<Descriptor>> {
    let manifest = if oci::is_manifest(&top.media_type) {
        top.clone()
    } else if oci::is_index(&top.media_type) {
        let index = oci.index_blob(top)?;
        let host = index
            .manifests
            .iter()
            .filter(|d| oci::is_manifest(&d.media_type) && oci.has_blob(d))
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_none_or(|p| p.os == "linux" && p.architecture == oci::host_arch())
            })
            .cloned();
        match host {
            Some(d) => d,
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    Ok(match oci.manifest(&manifest)?.layers.as_slice() {
        [layer] => Some(layer.clone()),
        _ => None,
    })
}

fn image_error(e: impl std::fmt::Display) -> ImageError {
    ImageError::Io(e.to_string())
}

impl Source for Opened {
    fn names(&self) -> Result<Vec<String>, ImageError> {
        Ok(self.images().into_iter().map(|(n, _)| n).collect())
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, ImageError> {
        self.tar
            .read_member(&self.member(name), MAX_IMAGE_BYTES)
            .map_err(|e| image_error(format!("{e:#}")))
    }

    fn size(&self, name: &str) -> Result<Option<u64>, ImageError> {
        Ok(self.tar.member(&self.member(name)).map(|m| m.size))
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), ImageError> {
        self.tar
            .read_at(&self.member(name), offset, buf)
            .map_err(image_error)
    }
}
