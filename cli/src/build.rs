//! `revive image build`: a checkpoint archive (kubelet, CRI-O, Podman, checkpointctl; tar or
//! gzip) becomes a checkpoint image whose single layer holds exactly the archive's entries.
//!
//! The archive is read once: while it streams into the layer, it is also extracted with
//! revive-checkpoint's safe extractor into a private temporary directory beside the output,
//! where it is validated with the rules revive-snapshotter applies before it restores: the
//! layout, config.dump, spec.dump, the CRIU images, deleted.files, and the rootfs diff
//! (extracted again, the snapshotter's way). Nothing is written unless all of that passes.

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use revive_checkpoint::archive::{self, ContainerConfig};
use revive_checkpoint::extract;
use revive_checkpoint::oci::Compression;
use serde::Serialize;

use crate::decompress::decompressed;
use crate::format::Format;
use crate::write::{self, LayerWriter, Written};

/// Bytes accepted after the archive's end-of-archive marker (tar pads to its record size).
const MAX_TRAILING_BYTES: u64 = 1 << 20;

/// What a validated checkpoint layout holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub container: String,
    pub base_image: Option<String>,
    pub runtime: String,
    pub criu_images: u64,
    pub criu_bytes: u64,
    pub rootfs_diff_bytes: Option<u64>,
    pub deleted_files: usize,
    /// What the checkpoint's processes hold, where its CRIU images decode.
    pub privilege: Option<revive_checkpoint::privilege::Summary>,
}

/// What [`build`] made.
#[derive(Debug)]
pub struct Built {
    pub written: Written,
    pub summary: Summary,
}

/// Copies what it reads into a layer, keeping the first bytes to tell a nested compression.
struct Tee<'a, R> {
    inner: R,
    layer: &'a mut LayerWriter,
    head: Vec<u8>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.layer.write_all(&buf[..n])?;
        if self.head.len() < 4 {
            let more = (4 - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..more]);
        }
        Ok(n)
    }
}

/// The options a checkpoint archive is extracted with to be checked: never a device, never
/// a setuid bit, owners not kept (no privilege needed), whiteouts only reported.
fn check_options() -> extract::Options {
    extract::Options {
        allow_devices: false,
        keep_setid: false,
        keep_owner: false,
        overlay_whiteouts: false,
        ..extract::Options::default()
    }
}

/// A private (0700) working directory beside `out`, removed when dropped.
pub fn work_dir(out: &Path) -> Result<tempfile::TempDir> {
    let dir = write::parent_dir(out);
    tempfile::Builder::new()
        .prefix(".revive-work-")
        .tempdir_in(&dir)
        .with_context(|| format!("creating a working directory in {}", dir.display()))
}

/// Checks the checkpoint layout extracted in `root` as revive does before restoring it,
/// using `scratch` (an empty private directory) to extract the rootfs diff into.
pub fn validate_layout(root: &Path, scratch: &Path) -> Result<Summary> {
    ensure!(
        archive::is_checkpoint(root),
        "not a checkpoint archive: it has no {} and {} at its root (an archive written by \
         kubelet, CRI-O, Podman or checkpointctl has both)",
        archive::CONFIG_DUMP,
        archive::SPEC_DUMP
    );
    let config = archive::read_config(root)?;
    archive::read_spec(root)?;
    let images = archive::validate(root)?;
    let deleted = archive::read_deleted(root)?;
    let (mut criu_images, mut criu_bytes) = (0u64, 0u64);
    for entry in fs::read_dir(&images)? {
        criu_images += 1;
        criu_bytes += entry?.metadata()?.len();
    }
    let privilege = revive_checkpoint::criu::images::read_dir(&images).ok();
    let rootfs_diff_bytes = match archive::open_rootfs_diff(root)? {
        Some(diff) => {
            let size = diff.metadata()?.len();
            check_rootfs_diff(diff, scratch)?;
            Some(size)
        }
        None => None,
    };
    Ok(summary_of(
        &config,
        criu_images,
        criu_bytes,
        rootfs_diff_bytes,
        deleted.len(),
        privilege.as_ref(),
    ))
}

pub fn summary_of(
    config: &ContainerConfig,
    criu_images: u64,
    criu_bytes: u64,
    rootfs_diff_bytes: Option<u64>,
    deleted_files: usize,
    checkpoint: Option<&revive_checkpoint::criu::images::Checkpoint>,
) -> Summary {
    Summary {
        privilege: checkpoint.map(revive_checkpoint::privilege::Summary::of),
        container: config.name.clone(),
        base_image: config.base_image_refs().into_iter().next(),
        runtime: config.runtime.clone(),
        criu_images,
        criu_bytes,
        rootfs_diff_bytes,
        deleted_files,
    }
}

/// Extracts a rootfs diff (tar or gzip) into the empty directory `scratch` as the
/// snapshotter would (no devices), to refuse one it would refuse.
pub fn check_rootfs_diff(diff: impl Read, scratch: &Path) -> Result<extract::Report> {
    let options = extract::Options {
        keep_setid: true,
        ..check_options()
    };
    fs::create_dir_all(scratch)?;
    let report = extract::extract(BufReader::new(diff), scratch, &options)
        .map_err(|e| anyhow::anyhow!("{}: refused: {e}", archive::ROOTFS_DIFF))?;
    fs::remove_dir_all(scratch)?;
    Ok(report)
}

/// Builds checkpoint image `reference` from the checkpoint archive `input` into `out`.
pub fn build(input: &Path, reference: &str, out: &Path, format: Format) -> Result<Built> {
    write::check_ref(reference)?;
    let file = fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    ensure!(
        !file.metadata()?.is_dir(),
        "{} is a directory; revive image build takes a checkpoint archive (a tar file)",
        input.display()
    );
    let work = work_dir(out)?;
    let root: PathBuf = work.path().join("archive");
    fs::create_dir(&root)?;
    let mut layer = LayerWriter::new(work.path())?;

    let (stream, _) = decompressed(BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("reading {}", input.display()))?;
    let mut tee = Tee {
        inner: stream,
        layer: &mut layer,
        head: Vec::new(),
    };
    let extracted = extract::extract(&mut tee, &root, &check_options());
    if Compression::of_magic(&tee.head) != Compression::None {
        bail!(
            "{} is compressed twice; decompress it once first",
            input.display()
        );
    }
    extracted.map_err(|e| anyhow::anyhow!("{}: refused: {e}", input.display()))?;
    let trailing = io::copy(
        &mut (&mut tee).take(MAX_TRAILING_BYTES + 1),
        &mut io::sink(),
    )
    .with_context(|| format!("reading {}", input.display()))?;
    ensure!(
        trailing <= MAX_TRAILING_BYTES,
        "{}: more than {MAX_TRAILING_BYTES} bytes of data after the end of the archive",
        input.display()
    );
    let summary = validate_layout(&root, &work.path().join("diff"))
        .with_context(|| format!("{} cannot be restored", input.display()))?;
    let config = archive::read_config(&root)?;
    let layer = layer.finish()?;
    let written = write::write_image(
        out,
        reference,
        layer,
        format,
        &format.annotations(&config),
        "revive image build",
    )?;
    Ok(Built { written, summary })
}
