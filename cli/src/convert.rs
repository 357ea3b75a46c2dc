//! containerd's own checkpoint images (`ctr container checkpoint --task --rw ID REF`, then
//! `ctr images export`), and `revive image convert`, which turns one into a checkpoint image.
//!
//! containerd's checkpoint is an OCI index whose entries are not manifests (so no client
//! can create a container from it): CRIU's images as one tar, the container's spec in a
//! protobuf `Any`, the rw layer's diff, the checkpoint and runtime options; its annotations
//! name the runtime, the snapshotter and the base image. (containerd's task service writes
//! the spec entry as `typeurl.MarshalProto(container.Spec)`: an `Any` whose value is the
//! spec's JSON, type `types.containerd.io/opencontainers/runtime-spec/1/Spec`.)
//!
//! The conversion streams: CRIU's images go into the new layer's `checkpoint/` one by one
//! (regular files of a flat directory only, as CRIU writes them), the spec becomes
//! `spec.dump`, the rw diff `rootfs-diff.tar` (after a trial extraction the snapshotter's
//! way), and `config.dump` names the base image. Every blob is checked against its digest.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use revive_checkpoint::archive::{self, ContainerConfig};
use revive_checkpoint::criu::images;
use revive_checkpoint::oci::media_types::{OCI_LAYER_GZIP, OCI_LAYER_TAR};
use revive_checkpoint::oci::{self, ANNOTATION_REF_NAME, Descriptor, Index};

use crate::build::{Summary, check_rootfs_diff, summary_of, work_dir};
use crate::decompress::decompressed;
use crate::format::Format;

use crate::layout::{self, OciArchive};
use crate::write::{self, ExactReader, LayerWriter, Written};

/// CRIU's images, as one tar.
pub const MEDIA_CRIU_TAR: &str = "application/vnd.containerd.container.criu.checkpoint.criu.tar";
/// The container's spec, a protobuf `Any`.
pub const MEDIA_CONFIG_PROTO: &str =
    "application/vnd.containerd.container.checkpoint.config.v1+proto";
/// The checkpoint's options.
pub const MEDIA_OPTIONS_PROTO: &str =
    "application/vnd.containerd.container.checkpoint.options.v1+proto";
/// The container's runtime options.
pub const MEDIA_RUNTIME_OPTIONS: &str =
    "application/vnd.containerd.container.checkpoint.runtime.options+proto";
/// The index annotations naming the runtime and the snapshotter.
pub const ANNOTATION_RUNTIME: &str = "io.containerd.checkpoint.runtime";
pub const ANNOTATION_SNAPSHOTTER: &str = "io.containerd.checkpoint.snapshotter";
/// The type of the spec in the `Any` (its prefix varies with the registering client).
const SPEC_TYPE_SUFFIX: &str = "opencontainers/runtime-spec/1/Spec";
/// Most bytes accepted from CRIU's tar, and from the rw diff.
const MAX_CRIU_BYTES: u64 = 64 << 30;

/// google.protobuf.Any, as containerd stores the spec.
#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// The entries of a containerd checkpoint index.
#[derive(Debug, Clone, Default)]
pub struct Native {
    pub criu: Option<Descriptor>,
    pub spec: Option<Descriptor>,
    pub rw: Option<Descriptor>,
    /// The base image itself (`ctr c checkpoint --image`).
    pub image_included: bool,
    pub runtime: Option<String>,
    pub snapshotter: Option<String>,
    pub base_image: Option<String>,
}

impl Native {
    /// The checkpoint `index` describes, if it is one of containerd's: it has the runtime
    /// annotation or one of containerd's checkpoint media types.
    pub fn of(index: &Index) -> Option<Native> {
        let mut native = Native {
            runtime: index.annotations.get(ANNOTATION_RUNTIME).cloned(),
            snapshotter: index.annotations.get(ANNOTATION_SNAPSHOTTER).cloned(),
            base_image: index
                .annotations
                .get(ANNOTATION_REF_NAME)
                .filter(|r| !r.trim().is_empty())
                .cloned(),
            ..Native::default()
        };
        let mut containerd = native.runtime.is_some();
        for desc in &index.manifests {
            let slot = match desc.media_type.as_str() {
                MEDIA_CRIU_TAR => &mut native.criu,
                MEDIA_CONFIG_PROTO => &mut native.spec,
                OCI_LAYER_GZIP | OCI_LAYER_TAR | oci::media_types::DOCKER_LAYER_GZIP => {
                    &mut native.rw
                }
                MEDIA_OPTIONS_PROTO | MEDIA_RUNTIME_OPTIONS => {
                    containerd = true;
                    continue;
                }
                m if oci::is_manifest(m) || oci::is_index(m) => {
                    native.image_included = true;
                    continue;
                }
                _ => continue,
            };
            containerd = true;
            if slot.is_none() {
                *slot = Some(desc.clone());
            }
        }
        containerd.then_some(native)
    }
}

/// The first containerd checkpoint among the images of `archive`, with its name.
pub fn find_native(archive: &OciArchive) -> Result<Option<(String, Native)>> {
    for top in archive.index()?.manifests {
        if !oci::is_index(&top.media_type) {
            continue;
        }
        let index = archive.index_blob(&top)?;
        if let Some(native) = Native::of(&index) {
            let name = top
                .annotations
                .get(oci::ANNOTATION_IMAGE_NAME)
                .cloned()
                .unwrap_or_else(|| top.digest.clone());
            return Ok(Some((name, native)));
        }
    }
    Ok(None)
}

/// Reads the spec from containerd's `Any`: its JSON, checked as revive checks spec.dump.
pub fn read_spec(archive: &OciArchive, desc: &Descriptor) -> Result<Vec<u8>> {
    let data = archive.blob_bytes(desc, archive::MAX_SPEC_BYTES + 1024)?;
    let any = <Any as prost::Message>::decode(data.as_slice())
        .context("the checkpoint's container spec is not a protobuf Any")?;
    ensure!(
        any.type_url.ends_with(SPEC_TYPE_SUFFIX),
        "the checkpoint's container spec has type {:?}, not an OCI runtime spec",
        any.type_url
    );
    archive::parse_spec(&any.value)?;
    Ok(any.value)
}

/// The container's name from its spec: the last part of containerd's cgroups path
/// (`/<namespace>/<id>`, or `slice:prefix:id` with systemd).
fn name_from_spec(spec: &serde_json::Value) -> Option<String> {
    let path = spec["linux"]["cgroupsPath"].as_str()?;
    let last = path.rsplit([':', '/']).next()?;
    (!last.is_empty()
        && last.len() <= 253
        && last
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    .then(|| last.to_string())
}

/// Options of [`convert`].
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// The base image, instead of the one the checkpoint names.
    pub base_image: Option<String>,
    /// The container's name, instead of the one derived from its spec.
    pub name: Option<String>,
}

/// What [`convert`] made.
#[derive(Debug)]
pub struct Converted {
    pub source: String,
    pub written: Written,
    pub summary: Summary,
    pub warnings: Vec<String>,
}

fn header(mode: u32, size: u64, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header
}

/// Copies the regular files of CRIU's tar (`criu`, a reader of the verified blob) into
/// `checkpoint/` of `layer`; returns their count and bytes, and the files the CRIU image
/// decoder reads.
fn copy_criu_images<W: io::Write>(
    criu: impl Read,
    layer: &mut tar::Builder<W>,
) -> Result<(u64, u64, BTreeMap<String, Vec<u8>>)> {
    let (stream, _) = decompressed(BufReader::new(criu))?;
    let mut tar = tar::Archive::new(stream);
    let mut seen = HashSet::new();
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut decoded = BTreeMap::new();
    let entries = tar.entries().context("CRIU's tar is not a tar archive")?;
    layout::for_each_member(entries, |raw, entry| {
        let shown = String::from_utf8_lossy(raw).into_owned();
        ensure!(raw.len() <= 4096, "CRIU's tar: a name is too long");
        let parts: Vec<&[u8]> = raw
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty() && *p != b".")
            .collect();
        ensure!(
            !parts.contains(&&b".."[..]) && !raw.contains(&0),
            "CRIU's tar: {shown:?} would escape checkpoint/"
        );
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            ensure!(
                parts.is_empty(),
                "CRIU's tar holds a directory {shown:?}; CRIU's image directory is flat"
            );
            return Ok(());
        }
        ensure!(
            kind.is_file() || kind == tar::EntryType::Continuous,
            "CRIU's tar: {shown:?} is not a regular file ({kind:?}); CRIU's images are regular \
             files only"
        );
        ensure!(
            parts.len() == 1,
            "CRIU's tar holds {shown:?}, in a subdirectory; CRIU's image directory is flat"
        );
        let name = std::str::from_utf8(parts[0])
            .with_context(|| format!("CRIU's tar: {shown:?} is not a UTF-8 name"))?
            .to_string();
        ensure!(seen.insert(name.clone()), "CRIU's tar holds {name} twice");
        count += 1;
        ensure!(
            count as usize <= archive::MAX_IMAGE_FILES,
            "CRIU's tar holds more than {} files",
            archive::MAX_IMAGE_FILES
        );
        let size = entry.size();
        bytes = bytes.saturating_add(size);
        ensure!(
            bytes <= MAX_CRIU_BYTES,
            "CRIU's images exceed {MAX_CRIU_BYTES} bytes"
        );
        let mut h = header(0o600, size, tar::EntryType::Regular);
        let path = format!("{}/{name}", archive::CHECKPOINT_DIR);
        let mut data = ExactReader::new(entry, size);
        if images::is_read(&name) {
            // Small (process and mount state, never memory): kept for the decoder.
            let mut kept = Vec::new();
            data.read_to_end(&mut kept)
                .with_context(|| format!("reading CRIU image {name}"))?;
            layer
                .append_data(&mut h, path, kept.as_slice())
                .with_context(|| format!("copying CRIU image {name}"))?;
            decoded.insert(name, kept);
        } else {
            layer
                .append_data(&mut h, path, data)
                .with_context(|| format!("copying CRIU image {name}"))?;
        }
        Ok(())
    })
    .context("CRIU's tar")?;
    // Read to the end, so that the blob's digest is checked.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).context("reading CRIU's tar")?;
    for required in archive::REQUIRED_IMAGES {
        ensure!(
            seen.contains(*required),
            "CRIU's tar has no {required}: the CRIU images are incomplete"
        );
    }
    Ok((count, bytes, decoded))
}

/// Converts the containerd checkpoint in the image archive `input` into checkpoint image
/// `reference` in `out`.
pub fn convert(
    input: &Path,
    reference: &str,
    out: &Path,
    format: Format,
    options: &ConvertOptions,
) -> Result<Converted> {
    write::check_ref(reference)?;
    let archive = OciArchive::open(input)?;
    let Some((source, native)) = find_native(&archive)? else {
        if let Some(kind) = crate::inspect::checkpoint_format_of(&archive)? {
            bail!(
                "{} is already a checkpoint image ({kind}); import it with `ctr images import`",
                input.display()
            );
        }
        bail!(
            "{} holds no containerd checkpoint (made with `ctr container checkpoint --task --rw \
             ID REF` and exported with `ctr images export --local --skip-manifest-json FILE REF`)",
            input.display()
        );
    };
    let Some(criu) = &native.criu else {
        bail!(
            "{source} in {} holds no CRIU images: the container was checkpointed without its \
             task. Checkpoint it again with `ctr container checkpoint --task --rw ID REF`",
            input.display()
        );
    };
    let spec_desc = native.spec.as_ref().with_context(|| {
        format!("{source} holds CRIU images but no container spec ({MEDIA_CONFIG_PROTO})")
    })?;
    let mut warnings = Vec::new();
    if native.rw.is_none() {
        warnings.push(format!(
            "{source} was checkpointed without --rw: the container's file changes are not in \
             it, so the restored container sees its image's files only"
        ));
    }
    let spec = read_spec(&archive, spec_desc)?;
    let spec_value: serde_json::Value = serde_json::from_slice(&spec)?;
    let base = options
        .base_image
        .clone()
        .or(native.base_image.clone())
        .with_context(|| {
            format!("{source} does not name its base image; give it with --base-image")
        })?;
    write::check_ref(&base).context("the base image")?;
    let name = options
        .name
        .clone()
        .or_else(|| name_from_spec(&spec_value))
        .unwrap_or_else(|| "checkpoint".to_string());
    let config = ContainerConfig {
        id: name.clone(),
        name: name.clone(),
        rootfs_image: base.clone(),
        rootfs_image_name: base.clone(),
        runtime: native.runtime.clone().unwrap_or_default(),
        ..ContainerConfig::default()
    };
    let config_dump = serde_json::to_vec(&serde_json::json!({
        "id": config.id,
        "name": config.name,
        "rootfsImage": config.rootfs_image,
        "rootfsImageName": config.rootfs_image_name,
        "rootfsImageRef": "",
        "runtime": config.runtime,
        "restored": false,
    }))?;
    archive::parse_config(&config_dump)?;

    let work = work_dir(out)?;
    let mut rw_size = None;
    if let Some(rw) = &native.rw {
        ensure!(
            rw.size <= MAX_CRIU_BYTES,
            "the rw layer's diff is {} bytes, more than {MAX_CRIU_BYTES}",
            rw.size
        );
        let mut reader = archive.blob(rw)?;
        check_rootfs_diff(&mut reader, &work.path().join("diff"))
            .with_context(|| format!("the rw layer of {source}"))?;
        io::copy(&mut reader, &mut io::sink()).context("reading the rw layer")?;
        rw_size = Some(rw.size);
    }

    let mut tar = tar::Builder::new(LayerWriter::new(work.path())?);
    let mut dir = header(0o700, 0, tar::EntryType::Directory);
    tar.append_data(
        &mut dir,
        format!("{}/", archive::CHECKPOINT_DIR),
        io::empty(),
    )?;
    let (image_count, image_bytes, decoded) = copy_criu_images(archive.blob(criu)?, &mut tar)
        .with_context(|| format!("CRIU's images in {source}"))?;
    for (name, data) in [
        (archive::CONFIG_DUMP, &config_dump),
        (archive::SPEC_DUMP, &spec),
    ] {
        let mut h = header(0o600, data.len() as u64, tar::EntryType::Regular);
        tar.append_data(&mut h, name, data.as_slice())?;
    }
    if let Some(rw) = &native.rw {
        let mut h = header(0o600, rw.size, tar::EntryType::Regular);
        tar.append_data(
            &mut h,
            archive::ROOTFS_DIFF,
            ExactReader::new(archive.blob(rw)?, rw.size),
        )
        .context("copying the rw layer")?;
    }
    let layer = tar.into_inner()?.finish()?;
    let annotations: BTreeMap<String, String> = format.annotations(&config);
    let written = write::write_image(
        out,
        reference,
        layer,
        format,
        &annotations,
        "revive image convert",
    )?;
    Ok(Converted {
        source,
        written,
        summary: summary_of(
            &config,
            image_count,
            image_bytes,
            rw_size,
            0,
            images::read(&decoded).ok().as_ref(),
        ),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_cgroup_paths() {
        let spec = |p: &str| serde_json::json!({"linux": {"cgroupsPath": p}});
        assert_eq!(name_from_spec(&spec("/default/c1")).as_deref(), Some("c1"));
        assert_eq!(
            name_from_spec(&spec("system.slice:cri:abc")).as_deref(),
            Some("abc")
        );
        assert_eq!(name_from_spec(&spec("/x/bad name")), None);
        assert_eq!(name_from_spec(&serde_json::json!({})), None);
    }
}
