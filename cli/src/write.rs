//! Writing checkpoint images as OCI image archives (`ctr images import` takes them): one
//! gzip layer, an image config without a command, annotations where the chosen
//! [`Format`] puts them.
//!
//! Everything is written into files created 0600 (a checkpoint holds every memory page of
//! the container): the layer into a temporary file beside the output, the archive into a
//! temporary file renamed over the output only once complete, so a failure leaves no
//! partial output.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use revive_checkpoint::gzip::GzipWriter;
use revive_checkpoint::oci::media_types::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST};
use revive_checkpoint::oci::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, host_arch, sha256_digest,
};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::format::Format;

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A layer being written: the uncompressed tar goes in, gzip goes to a temporary file, and
/// both digests are kept. Incompressible chunks (most CRIU page images) are stored, not
/// compressed, so that containerd unpacks them fast (`revive_checkpoint::gzip`).
pub struct LayerWriter {
    gz: Hashing<GzipWriter<Hashing<BufWriter<File>>>>,
    file: tempfile::NamedTempFile,
}

/// A finished layer: its compressed file and digests.
pub struct Layer {
    pub file: tempfile::NamedTempFile,
    /// Digest of the uncompressed tar (the image config's diff id).
    pub diff_id: String,
    /// Digest and size of the gzip blob.
    pub digest: String,
    pub size: u64,
}

impl LayerWriter {
    /// A layer whose temporary file lives in `dir`.
    pub fn new(dir: &Path) -> Result<LayerWriter> {
        let file = tempfile::Builder::new()
            .prefix(".revive-layer-")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let out = BufWriter::with_capacity(1 << 20, file.reopen()?);
        Ok(LayerWriter {
            gz: Hashing {
                inner: GzipWriter::new(Hashing {
                    inner: out,
                    hasher: Sha256::new(),
                    written: 0,
                })?,
                hasher: Sha256::new(),
                written: 0,
            },
            file,
        })
    }

    pub fn finish(self) -> Result<Layer> {
        let diff_id = format!("sha256:{}", hex::encode(self.gz.hasher.finalize()));
        let mut compressed = self.gz.inner.finish()?;
        compressed.flush()?;
        compressed
            .inner
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        Ok(Layer {
            file: self.file,
            diff_id,
            digest: format!("sha256:{}", hex::encode(compressed.hasher.finalize())),
            size: compressed.written,
        })
    }
}

impl Write for LayerWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.gz.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.gz.flush()
    }
}

/// Checks an image reference well enough to name an image in containerd: not empty, no
/// whitespace or control characters, bounded.
pub fn check_ref(reference: &str) -> Result<()> {
    ensure!(!reference.is_empty(), "the image reference is empty");
    ensure!(
        reference.len() <= 512
            && reference
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\'),
        "{reference:?} is not an image reference (like registry.example/name:tag)"
    );
    Ok(())
}

/// The tag of a reference (`latest` when it has none).
fn tag_of(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag,
        _ => "latest",
    }
}

/// What [`write_image`] wrote.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    /// Digest of the image's top descriptor in `index.json`.
    pub digest: String,
    pub layer_size: u64,
}

/// Writes the OCI image archive `out`: image `reference` with the single `layer`, annotated
/// with `annotations` in the place `format` puts them.
pub fn write_image(
    out: &Path,
    reference: &str,
    layer: Layer,
    format: Format,
    annotations: &BTreeMap<String, String>,
    history: &str,
) -> Result<Written> {
    let config = json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created_by": history, "comment": "checkpoint image: restored, not started"}],
    });
    let config = serde_json::to_vec(&config)?;
    let config_desc = json!({
        "mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len(),
    });
    let layer_desc = json!({
        "mediaType": OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.size,
    });
    let on_index = format.on_index();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
    });
    if !on_index && !annotations.is_empty() {
        manifest["annotations"] = json!(annotations);
    }
    let manifest = serde_json::to_vec(&manifest)?;
    let mut manifest_desc = json!({
        "mediaType": OCI_MANIFEST, "digest": sha256_digest(&manifest), "size": manifest.len(),
    });
    let mut blobs: Vec<Vec<u8>> = vec![config, manifest];
    let mut top = if on_index {
        manifest_desc["platform"] = json!({"architecture": host_arch(), "os": "linux"});
        let mut index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [manifest_desc],
        });
        if !annotations.is_empty() {
            index["annotations"] = json!(annotations);
        }
        let index = serde_json::to_vec(&index)?;
        let desc = json!({
            "mediaType": OCI_INDEX, "digest": sha256_digest(&index), "size": index.len(),
        });
        blobs.push(index);
        desc
    } else {
        manifest_desc
    };
    top["annotations"] = json!({
        (ANNOTATION_IMAGE_NAME): reference,
        (ANNOTATION_REF_NAME): tag_of(reference),
    });
    let digest = top["digest"].as_str().unwrap_or_default().to_string();
    let index_json = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [top],
    }))?;

    let dir = parent_dir(out);
    let tmp = tempfile::Builder::new()
        .prefix(".revive-image-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp.reopen()?));
    let mut add = |name: &str, size: u64, data: &mut dyn io::Read| -> io::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_size(size);
        tar.append_data(&mut header, name, data)
    };
    add(
        "oci-layout",
        30,
        &mut &br#"{"imageLayoutVersion":"1.0.0"}"#[..],
    )?;
    add(
        "index.json",
        index_json.len() as u64,
        &mut index_json.as_slice(),
    )?;
    for blob in &blobs {
        let name = blob_name(&sha256_digest(blob));
        add(&name, blob.len() as u64, &mut blob.as_slice())?;
    }
    let mut layer_file = layer.file.reopen()?;
    layer_file.seek(SeekFrom::Start(0))?;
    ensure!(
        layer_file.metadata()?.len() == layer.size,
        "the layer's temporary file changed size while it was written"
    );
    add(
        &blob_name(&layer.digest),
        layer.size,
        &mut ExactReader::new(layer_file, layer.size),
    )?;
    let out_file = tar.into_inner()?;
    out_file
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    drop(layer.file);
    tmp.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(Written {
        path: out.to_path_buf(),
        digest,
        layer_size: layer.size,
    })
}

fn blob_name(digest: &str) -> String {
    format!(
        "blobs/sha256/{}",
        digest.strip_prefix("sha256:").unwrap_or(digest)
    )
}

/// The directory an output file goes in (`.` for a bare name).
pub fn parent_dir(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A reader that yields exactly `size` bytes or fails: a tar member's data must match its
/// header, so a source that ends early is an error, not a corrupt archive.
pub struct ExactReader<R> {
    inner: io::Take<R>,
    left: u64,
}

impl<R: io::Read> ExactReader<R> {
    pub fn new(inner: R, size: u64) -> ExactReader<R> {
        ExactReader {
            inner: inner.take(size),
            left: size,
        }
    }
}

impl<R: io::Read> io::Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left -= n as u64;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the data ended {} bytes early", self.left),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_refs() {
        assert_eq!(tag_of("native/ck:1"), "1");
        assert_eq!(tag_of("localhost:5000/ck"), "latest");
        assert_eq!(tag_of("ck"), "latest");
        assert_eq!(tag_of("r/ck@sha256:00"), "latest");
        assert!(check_ref("registry.example/ck:1").is_ok());
        for bad in ["", "a b", "a\nb", "x\"y"] {
            assert!(check_ref(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn short_sources_are_errors() {
        let mut out = Vec::new();
        let err = io::copy(&mut ExactReader::new(&b"abc"[..], 5), &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut out = Vec::new();
        io::copy(&mut ExactReader::new(&b"abcdef"[..], 5), &mut out).unwrap();
        assert_eq!(out, b"abcde");
    }
}
