//! `revive image inspect`: what an OCI image archive holds, as far as checkpoints go.
//!
//! For each image: whether it is a checkpoint image (by its annotations, in which format
//! and where, and by its layer's content), the container's name, the base image, CRIU's
//! images and the rootfs diff; or, for one of containerd's own checkpoints, what it holds
//! and how to convert it. Layers are read as streams (never unpacked), bounded, and every
//! blob is checked against its digest.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use revive_checkpoint::archive;
use revive_checkpoint::criu::images;
use revive_checkpoint::needs::{self, Need};
use revive_checkpoint::oci::{self, Compression, Descriptor, host_arch};
use revive_checkpoint::privilege::Summary;
use serde::Serialize;

use crate::convert::Native;
use crate::decompress::decompressed;
use crate::format::Format;

use crate::layout::{self, OciArchive};

/// Most members read from one layer.
const MAX_LAYER_MEMBERS: u64 = 2_000_000;
/// Most bytes of CRIU images kept to decode what the checkpoint's processes hold (cores,
/// mounts, seccomp filters: kilobytes per process).
const MAX_DECODED_BYTES: u64 = 64 << 20;

/// What a layer holds that matters to a checkpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LayerContent {
    pub has_config_dump: bool,
    pub has_spec_dump: bool,
    pub criu_images: u64,
    pub criu_bytes: u64,
    pub required_images: bool,
    pub rootfs_diff_bytes: Option<u64>,
    pub has_deleted_files: bool,
    /// config.dump, if it parsed.
    #[serde(skip)]
    pub config: Option<archive::ContainerConfig>,
    pub config_error: Option<String>,
    /// spec.dump, if it parsed.
    #[serde(skip)]
    pub spec: Option<serde_json::Value>,
    pub spec_error: Option<String>,
    /// The CRIU images that decide what the restored processes hold, by name.
    #[serde(skip)]
    pub criu_files: BTreeMap<String, Vec<u8>>,
    #[serde(skip)]
    pub criu_files_bytes: u64,
}

impl LayerContent {
    /// Whether the layer is a checkpoint archive's layout (as the snapshotter tells one).
    pub fn is_checkpoint(&self) -> bool {
        self.has_config_dump && self.has_spec_dump
    }
}

/// One image of the archive.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ImageReport {
    /// A checkpoint image (by annotation, by content, or both).
    Checkpoint {
        name: String,
        /// The annotation format, and whether on the index or the manifest.
        format: Option<Format>,
        annotated_on: Option<String>,
        recognised_by_content: bool,
        container: Option<String>,
        base_image: Option<String>,
        runtime: Option<String>,
        /// The image config's platform (CRIU restores on the architecture it dumped on).
        platform: Option<String>,
        criu_images: u64,
        criu_bytes: u64,
        rootfs_diff_bytes: Option<u64>,
        deleted_files: bool,
        /// What the checkpoint's processes hold and what a container must grant.
        privilege: Option<Box<Summary>>,
        /// What a restore needs from the new container, and who provides it.
        needs: Vec<String>,
        problems: Vec<String>,
    },
    /// containerd's own checkpoint (`ctr container checkpoint`).
    ContainerdCheckpoint {
        name: String,
        base_image: Option<String>,
        runtime: Option<String>,
        snapshotter: Option<String>,
        criu_tar_bytes: Option<u64>,
        rw_diff_bytes: Option<u64>,
        image_included: bool,
        convertible: bool,
        how: String,
    },
    /// Any other image.
    Image { name: String, layers: usize },
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub archive: String,
    pub images: Vec<ImageReport>,
}

/// The manifest of `top` (itself, or the host's entry of its index) and the annotations of
/// the index on the way.
fn resolve(
    archive: &OciArchive,
    top: &Descriptor,
) -> Result<Option<(Descriptor, BTreeMap<String, String>)>> {
    if oci::is_manifest(&top.media_type) {
        return Ok(Some((top.clone(), BTreeMap::new())));
    }
    if !oci::is_index(&top.media_type) {
        return Ok(None);
    }
    let index = archive.index_blob(top)?;
    let manifests: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| oci::is_manifest(&d.media_type) && archive.has_blob(d))
        .collect();
    let host = manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
        })
        .or(manifests.first());
    Ok(host.map(|d| ((*d).clone(), index.annotations.clone())))
}

/// Reads a layer (tar or gzip) as a stream, noting what a checkpoint archive has.
pub fn scan_layer(archive: &OciArchive, desc: &Descriptor) -> Result<LayerContent> {
    let (stream, compression) = decompressed(BufReader::new(archive.blob(desc)?))?;
    ensure!(
        compression != Compression::None || desc.media_type.ends_with("tar"),
        "layer {} has media type {}, which revive cannot read",
        desc.digest,
        desc.media_type
    );
    let mut tar = tar::Archive::new(stream);
    let mut content = LayerContent::default();
    let mut seen_required = 0;
    let mut n = 0u64;
    let entries = tar.entries()?;
    layout::for_each_member(entries, |raw, entry| {
        n += 1;
        ensure!(
            n <= MAX_LAYER_MEMBERS,
            "more than {MAX_LAYER_MEMBERS} members"
        );
        let name = String::from_utf8_lossy(raw);
        let parts: Vec<&str> = name
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        let regular = entry.header().entry_type().is_file();
        match parts.as_slice() {
            [archive::CONFIG_DUMP] if regular => {
                content.has_config_dump = true;
                let parsed = read_bounded(entry, archive::CONFIG_DUMP, archive::MAX_CONFIG_BYTES)?
                    .and_then(|data| archive::parse_config(&data).map_err(|e| e.to_string()));
                match parsed {
                    Ok(config) => content.config = Some(config),
                    Err(e) => content.config_error = Some(e),
                }
            }
            [archive::SPEC_DUMP] if regular => {
                content.has_spec_dump = true;
                let parsed = read_bounded(entry, archive::SPEC_DUMP, archive::MAX_SPEC_BYTES)?
                    .and_then(|data| {
                        serde_json::from_slice(&data).map_err(|e| format!("spec.dump: {e}"))
                    });
                match parsed {
                    Ok(spec) => content.spec = Some(spec),
                    Err(e) => content.spec_error = Some(e),
                }
            }
            [archive::ROOTFS_DIFF] if regular => content.rootfs_diff_bytes = Some(entry.size()),
            [archive::DELETED_FILES] if regular => content.has_deleted_files = true,
            [archive::CHECKPOINT_DIR, image] if regular => {
                content.criu_images += 1;
                content.criu_bytes = content.criu_bytes.saturating_add(entry.size());
                if archive::REQUIRED_IMAGES.contains(image) {
                    seen_required += 1;
                }
                if images::is_read(image) {
                    content.criu_files_bytes =
                        content.criu_files_bytes.saturating_add(entry.size());
                    ensure!(
                        content.criu_files_bytes <= MAX_DECODED_BYTES,
                        "its CRIU process and mount images exceed {}",
                        human(MAX_DECODED_BYTES)
                    );
                    let mut data = Vec::new();
                    entry.take(MAX_DECODED_BYTES).read_to_end(&mut data)?;
                    content.criu_files.insert((*image).to_string(), data);
                }
            }
            _ => {}
        }
        Ok(())
    })
    .with_context(|| format!("layer {}", desc.digest))?;
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink())
        .with_context(|| format!("reading layer {}", desc.digest))?;
    content.required_images = seen_required == archive::REQUIRED_IMAGES.len();
    Ok(content)
}

/// The data of layer member `name` (`entry`), or why it is not read: larger than `max`.
fn read_bounded(
    entry: &mut tar::Entry<'_, impl Read>,
    name: &str,
    max: u64,
) -> io::Result<std::result::Result<Vec<u8>, String>> {
    let size = entry.size();
    if size > max {
        return Ok(Err(format!("{name} is {size} bytes")));
    }
    let mut data = Vec::new();
    entry.take(size).read_to_end(&mut data)?;
    Ok(Ok(data))
}

/// The size of CRIU's tar, if it is in the archive.
fn blob_size(archive: &OciArchive, desc: &Option<Descriptor>) -> Option<u64> {
    desc.as_ref()
        .filter(|d| archive.has_blob(d))
        .map(|d| d.size)
}

fn native_report(archive: &OciArchive, name: String, native: Native, file: &Path) -> ImageReport {
    let convertible = native.criu.is_some() && native.spec.is_some();
    let how = if native.criu.is_none() {
        "cannot be converted: it holds no CRIU images (checkpointed without --task); \
         checkpoint the container with `ctr container checkpoint --task --rw ID REF`"
            .to_string()
    } else {
        format!(
            "no client can create a container from it; convert it: `revive image convert {} \
             NEW-REF -o OUT.tar`, then `ctr images import OUT.tar`",
            file.display()
        )
    };
    ImageReport::ContainerdCheckpoint {
        name,
        base_image: native.base_image.clone(),
        runtime: native.runtime.clone(),
        snapshotter: native.snapshotter.clone(),
        criu_tar_bytes: blob_size(archive, &native.criu),
        rw_diff_bytes: blob_size(archive, &native.rw),
        image_included: native.image_included,
        convertible,
        how,
    }
}

/// Inspects one top-level image.
fn inspect_image(archive: &OciArchive, top: &Descriptor, file: &Path) -> Result<ImageReport> {
    let name = top.image_name();
    if oci::is_index(&top.media_type)
        && let Some(native) = Native::of(&archive.index_blob(top)?)
    {
        return Ok(native_report(archive, name, native, file));
    }
    let Some((manifest_desc, index_annotations)) = resolve(archive, top)? else {
        return Ok(ImageReport::Image { name, layers: 0 });
    };
    let manifest = archive.manifest(&manifest_desc)?;
    let by_annotation = Format::detect(&index_annotations)
        .map(|(f, n)| (f, n, "index"))
        .or_else(|| Format::detect(&manifest.annotations).map(|(f, n)| (f, n, "manifest")));
    let content = match manifest.layers.as_slice() {
        [layer] => Some(scan_layer(archive, layer)?),
        _ => None,
    };
    let by_content = content.as_ref().is_some_and(LayerContent::is_checkpoint);
    if by_annotation.is_none() && !by_content {
        return Ok(ImageReport::Image {
            name,
            layers: manifest.layers.len(),
        });
    }
    let content = content.unwrap_or_default();
    let mut problems = Vec::new();
    if manifest.layers.len() != 1 {
        problems.push(format!(
            "it has {} layers; a checkpoint image has exactly one",
            manifest.layers.len()
        ));
    } else if !by_content {
        problems.push(
            "its layer is not a checkpoint archive (no config.dump and spec.dump at its root)"
                .into(),
        );
    } else if !content.required_images {
        problems.push(format!(
            "its CRIU images are incomplete (checkpoint/ lacks {})",
            archive::REQUIRED_IMAGES.join(" or ")
        ));
    }
    for e in [&content.config_error, &content.spec_error]
        .into_iter()
        .flatten()
    {
        problems.push(e.clone());
    }
    let needs = content.spec.as_ref().map(restore_needs).unwrap_or_default();
    let privilege = if content.required_images {
        match images::read(&content.criu_files) {
            Ok(checkpoint) => Some(Box::new(Summary::of(&checkpoint))),
            Err(e) => {
                problems.push(format!(
                    "its CRIU images cannot be checked, so revive refuses to restore it: {e}"
                ));
                None
            }
        }
    } else {
        None
    };
    let annotations = if index_annotations.is_empty() {
        &manifest.annotations
    } else {
        &index_annotations
    };
    let annotation = |suffix: &str| {
        by_annotation
            .as_ref()
            .and_then(|(f, _, _)| annotations.get(&format!("{}{suffix}", f.prefix())).cloned())
    };
    let image_config: serde_json::Value = archive.json(&manifest.config)?;
    let platform = image_config["architecture"]
        .as_str()
        .map(|arch| format!("{}/{arch}", image_config["os"].as_str().unwrap_or("?")));
    let config = content.config.clone();
    Ok(ImageReport::Checkpoint {
        name,
        format: by_annotation.as_ref().map(|(f, _, _)| *f),
        annotated_on: by_annotation.as_ref().map(|(_, _, on)| on.to_string()),
        recognised_by_content: by_content,
        container: config
            .as_ref()
            .map(|c| c.name.clone())
            .filter(|n| !n.is_empty())
            .or(by_annotation.as_ref().and_then(|(_, n, _)| n.clone())),
        base_image: config
            .as_ref()
            .and_then(|c| c.base_image_refs().into_iter().next())
            .or_else(|| annotation("rootfsImageName")),
        runtime: config
            .as_ref()
            .map(|c| c.runtime.clone())
            .filter(|r| !r.is_empty())
            .or_else(|| annotation("runtime.name")),
        platform,
        criu_images: content.criu_images,
        criu_bytes: content.criu_bytes,
        rootfs_diff_bytes: content.rootfs_diff_bytes,
        deleted_files: content.has_deleted_files,
        privilege,
        needs,
        problems,
    })
}

/// What a restore of a checkpoint whose `spec.dump` is `spec` needs from the new container,
/// each said with who provides it.
pub fn restore_needs(spec: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(mounts) = needs::mount_needs(spec) else {
        return vec!["its spec.dump's mounts cannot be read: revive refuses to restore it".into()];
    };
    let stand_ins: Vec<&str> = mounts
        .iter()
        .filter(|m| matches!(m.need, Need::StandIn(_)))
        .map(|m| m.destination.as_str())
        .collect();
    if !stand_ins.is_empty() {
        out.push(format!(
            "fresh {} (the engine's files on the old host): revive makes them where the \
             container has none",
            stand_ins.join(", ")
        ));
    }
    for m in &mounts {
        let what = match &m.need {
            Need::Bind { source } => format!("a bind mount of {source} on the old host"),
            Need::Other { fstype, source } => format!("{fstype} from {source}"),
            Need::Kernel(_) | Need::StandIn(_) => continue,
        };
        out.push(format!(
            "a mount at {} ({what}): give the container one (ctr run --mount; in a pod, a \
             volume)",
            m.destination
        ));
    }
    let joined: Vec<String> = needs::namespace_kinds(spec)
        .into_iter()
        .filter_map(|(kind, joined)| joined.then_some(kind))
        .collect();
    if !joined.is_empty() {
        out.push(format!(
            "a pod: it joined its pod's {} namespace(s); restore it as a pod's container on \
             runtime revive",
            joined.join(", ")
        ));
    }
    if spec["process"]["terminal"].as_bool() == Some(true) {
        out.push("a terminal (ctr run -t; in a pod, tty: true)".into());
    }
    out
}

/// Inspects the image archive `file`.
pub fn inspect(file: &Path) -> Result<Report> {
    let archive = OciArchive::open(file)?;
    let index = archive.index()?;
    if index.manifests.is_empty() {
        bail!(
            "{} holds no image (its index.json is empty)",
            file.display()
        );
    }
    let images = index
        .manifests
        .iter()
        .map(|top| inspect_image(&archive, top, file))
        .collect::<Result<Vec<_>>>()?;
    Ok(Report {
        archive: file.display().to_string(),
        images,
    })
}

/// The checkpoint format of the first checkpoint image in `archive`, for messages.
pub fn checkpoint_format_of(archive: &OciArchive) -> Result<Option<String>> {
    for top in archive.index()?.manifests {
        if let Ok(ImageReport::Checkpoint { format, .. }) =
            inspect_image(archive, &top, archive.path())
        {
            return Ok(Some(match format {
                Some(f) => format!("format {}", f.name()),
                None => "recognised by its layer".into(),
            }));
        }
    }
    Ok(None)
}

/// Bytes for people.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn or_none(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(not recorded)")
}

fn render_privilege(p: &Summary, line: &mut dyn FnMut(&str, &str)) {
    let list = |items: &[String]| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    let ids = |ids: &[u32]| {
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        list(&ids)
    };
    line(
        "processes",
        &format!("{} ({} threads)", p.processes, p.threads),
    );
    line("uids", &ids(&p.uids));
    line("gids", &ids(&p.gids));
    line("capabilities", &list(&p.capabilities));
    line(
        "no_new_privs",
        &if p.without_no_new_privs == 0 {
            "set on every thread".to_string()
        } else {
            format!(
                "not set on {} of {} threads",
                p.without_no_new_privs, p.threads
            )
        },
    );
    line(
        "seccomp",
        &if p.without_seccomp == 0 {
            "a filter on every thread".to_string()
        } else {
            format!("none on {} of {} threads", p.without_seccomp, p.threads)
        },
    );
    if !p.mounts.is_empty() {
        line("mounts", &list(&p.mounts));
    }
    if p.user_namespace {
        line(
            "user ns",
            "yes (restored only with the same uid and gid maps)",
        );
    }
    for image in &p.host_images {
        line(
            "problem",
            &format!("{image}: a restore refuses host-wide images"),
        );
    }
    if p.privileged {
        line("privileged", "yes: a checkpoint of a privileged container");
    }
    line("needs", &list(&p.needs));
}

/// The report as text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| out.push_str(&format!("  {label:<14}{value}\n"));
    for image in &report.images {
        match image {
            ImageReport::Checkpoint {
                name,
                format,
                annotated_on,
                recognised_by_content,
                container,
                base_image,
                runtime,
                platform,
                criu_images,
                criu_bytes,
                rootfs_diff_bytes,
                deleted_files,
                privilege,
                needs,
                problems,
            } => {
                line("image", name);
                let kind = match (format, recognised_by_content) {
                    (Some(f), true) => format!(
                        "checkpoint image, format {} ({}* on the {})",
                        f.name(),
                        f.prefix(),
                        annotated_on.as_deref().unwrap_or("?")
                    ),
                    (Some(f), false) => format!(
                        "annotated as a checkpoint image (format {}), but see the problems",
                        f.name()
                    ),
                    (None, _) => {
                        "checkpoint image, not annotated (recognised by its layer's content)".into()
                    }
                };
                line("kind", &kind);
                line("container", or_none(container));
                line("base image", or_none(base_image));
                line("runtime", or_none(runtime));
                line("platform", or_none(platform));
                line(
                    "CRIU images",
                    &format!("{criu_images} files, {}", human(*criu_bytes)),
                );
                line(
                    "rootfs diff",
                    &rootfs_diff_bytes.map_or("none".into(), human),
                );
                line(
                    "deleted files",
                    if *deleted_files { "listed" } else { "none" },
                );
                if let Some(p) = privilege {
                    render_privilege(p, &mut line);
                }
                for need in needs {
                    line("needs", need);
                }
                if problems.is_empty() {
                    line(
                        "restorable",
                        "yes (by revive: ctr run or a pod on runtime revive, with what it needs)",
                    );
                } else {
                    for p in problems {
                        line("problem", p);
                    }
                }
            }
            ImageReport::ContainerdCheckpoint {
                name,
                base_image,
                runtime,
                snapshotter,
                criu_tar_bytes,
                rw_diff_bytes,
                image_included,
                how,
                ..
            } => {
                line("image", name);
                line(
                    "kind",
                    "containerd checkpoint (ctr container checkpoint), not a checkpoint image",
                );
                line("base image", or_none(base_image));
                line(
                    "runtime",
                    &format!(
                        "{} (snapshotter {})",
                        or_none(runtime),
                        or_none(snapshotter)
                    ),
                );
                line(
                    "CRIU images",
                    &criu_tar_bytes.map_or("none (checkpointed without --task)".into(), |b| {
                        format!("{} (one tar)", human(b))
                    }),
                );
                line(
                    "rootfs diff",
                    &rw_diff_bytes.map_or("none (checkpointed without --rw)".into(), human),
                );
                if *image_included {
                    line("base included", "yes (--image)");
                }
                line("next", how);
            }
            ImageReport::Image { name, layers } => {
                line("image", name);
                line(
                    "kind",
                    &format!("not a checkpoint image ({layers} layer(s))"),
                );
            }
        }
    }
    out
}
