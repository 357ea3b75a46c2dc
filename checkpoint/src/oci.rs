//! OCI and Docker image documents: indexes (and Docker manifest lists), manifests and
//! configs, parsed into typed structures and checked before anything in them is used.
//! revive-snapshotter reads them from containerd to find a checkpoint's base image; the
//! `revive` CLI reads them from image archives and writes its own.
//!
//! What containerd returns is trusted no more than a checkpoint: every digest must be
//! `sha256:` and 64 hex digits (chain IDs name directories), layer counts are bounded, and
//! media types must be ones the snapshotter can unpack.
//!
//! Hand-written rather than `oci_spec::image` (0.10), which requires what these readers must
//! do without (an index's `schemaVersion`, a config's `os` and `architecture`) and accepts
//! digests of any algorithm, where revive takes only sha256, whose hex digits name files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most layers an image may have (Docker stops at 127; overlayfs' mount options would
/// overflow a page long before this).
pub const MAX_LAYERS: usize = 500;

/// OCI and Docker media types of the documents resolved.
pub mod media_types {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// The name containerd gives an image in `index.json` (`ctr images export`/`import`).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// OCI's reference name: in `index.json` the tag; on a containerd checkpoint's index, the
/// base image's full name.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Whether `media_type` is an index's (OCI) or a manifest list's (Docker).
pub fn is_index(media_type: &str) -> bool {
    media_type == media_types::OCI_INDEX || media_type == media_types::DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is an image manifest's (OCI or Docker schema 2).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == media_types::OCI_MANIFEST || media_type == media_types::DOCKER_MANIFEST
}

/// Why an image document (index, manifest, config or descriptor) is refused. Untrusted
/// strings in it are cut to 80 bytes. An image that fails here cannot be a checkpoint's
/// base image: pull it again from a registry that serves OCI or Docker schema 2 images.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The document is not the JSON its media type says.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A layer whose media type is not a tar, gzip or zstd layer.
    #[error("unsupported layer media type {0:?}")]
    LayerMediaType(String),
    /// A digest that is not `sha256:` and 64 lowercase hex digits.
    #[error("unsupported digest {0:?} (only sha256 is)")]
    Digest(String),
    /// An index whose own `mediaType` names something else.
    #[error("an index whose mediaType is {0:?}")]
    IndexMediaType(String),
    /// A manifest whose own `mediaType` names something else.
    #[error("a manifest whose mediaType is {0:?}")]
    ManifestMediaType(String),
    /// A manifest with more layers than [`MAX_LAYERS`].
    #[error("{0} layers, over the limit of {MAX_LAYERS}")]
    TooManyLayers(usize),
    /// A Docker schema 1 manifest.
    #[error(
        "Docker schema 1 manifests are not supported (pull the image again from a registry \
         that serves schema 2 or OCI)"
    )]
    Schema1,
    /// A document whose media type is neither an index's nor a manifest's.
    #[error("unsupported media type {0:?}")]
    MediaType(String),
    /// A config whose `rootfs.type` is not `layers`.
    #[error("rootfs type {0:?} (not \"layers\")")]
    RootfsType(String),
    /// A config with more diff IDs than [`MAX_LAYERS`].
    #[error("{0} diff_ids, over the limit of {MAX_LAYERS}")]
    TooManyDiffIds(usize),
    /// A diff ID that is not a sha256 digest.
    #[error("unsupported diff_id {0:?} (only sha256 is)")]
    DiffId(String),
    /// A manifest and a config that disagree on the number of layers.
    #[error("the manifest has {layers} layers but the config {diff_ids} diff_ids")]
    LayerCount { layers: usize, diff_ids: usize },
}

/// An index has no manifest for the platform asked for. `available` lists the platforms it
/// has (at most 32 entries looked at): use an image built for this machine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no manifest for {os}/{arch} (the index has: {})", self.available_list())]
pub struct NoPlatform {
    pub os: String,
    pub arch: String,
    /// `os/architecture[/variant]` of the index's entries, or "no platform".
    pub available: Vec<String>,
}

impl NoPlatform {
    /// [`NoPlatform::available`] as a phrase: "linux/amd64, linux/arm64/v8", or "no
    /// manifests".
    pub fn available_list(&self) -> String {
        if self.available.is_empty() {
            "no manifests".into()
        } else {
            self.available.join(", ")
        }
    }
}

/// One layer of a base image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The blob's media type (from the manifest).
    pub media_type: String,
    /// The blob's (compressed) digest, `sha256:<hex>`.
    pub digest: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// The digest of the uncompressed tar, `sha256:<hex>` (from the config).
    pub diff_id: String,
    /// The chain ID of this layer and those below it, `sha256:<hex>`.
    pub chain_id: String,
}

impl Layer {
    /// How the blob is compressed, from its media type.
    pub fn compression(&self) -> Result<Compression, DocumentError> {
        Compression::of_media_type(&self.media_type)
    }

    /// The chain ID's hex digits (a directory name).
    pub fn chain_id_hex(&self) -> &str {
        self.chain_id
            .strip_prefix("sha256:")
            .unwrap_or(&self.chain_id)
    }
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression whose magic number `head` (a blob's first bytes) starts with: gzip's
    /// `1f 8b`, zstd's `28 b5 2f fd`, else none.
    pub fn of_magic(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The compression of a layer media type: OCI's `...layer.v1.tar[+gzip|+zstd]` (and the
    /// non-distributable variants), Docker's `...rootfs.diff.tar[.gzip]` (and foreign).
    pub fn of_media_type(media_type: &str) -> Result<Compression, DocumentError> {
        const LAYER_PREFIXES: &[&str] = &[
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.foreign.diff.tar",
        ];
        for prefix in LAYER_PREFIXES {
            if let Some(rest) = media_type.strip_prefix(prefix) {
                return match rest {
                    "" => Ok(Compression::None),
                    "+gzip" | ".gzip" => Ok(Compression::Gzip),
                    "+zstd" | ".zstd" => Ok(Compression::Zstd),
                    _ => Err(DocumentError::LayerMediaType(media_type.to_string())),
                };
            }
        }
        Err(DocumentError::LayerMediaType(media_type.to_string()))
    }
}

/// Whether `digest` is `sha256:` followed by 64 lowercase hex digits.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The `sha256:<hex>` digest of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Chain IDs of layers with the diff IDs `diff_ids` (bottom first), as containerd and the
/// OCI image spec define them: chainID(1) = diffID(1), chainID(n) = sha256 of
/// "chainID(n-1) diffID(n)", written `sha256:<hex>`.
pub fn chain_ids<S: AsRef<str>>(diff_ids: &[S]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.as_ref().to_string(),
            Some(parent) => sha256_digest(format!("{parent} {}", diff_id.as_ref()).as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// The architecture name OCI uses for this machine (`GOARCH`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The fully qualified form of a short image name, as Docker and containerd's CRI
/// normalise them: `busybox` -> `docker.io/library/busybox:latest`,
/// `revive/busybox:1` -> `docker.io/revive/busybox:1`, `quay.io/x/y` -> `quay.io/x/y:latest`.
/// None when `name` is already in that form (or is not a name).
pub fn normalise_name(name: &str) -> Option<String> {
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let (repo, suffix) = match name.find('@') {
        Some(at) => (&name[..at], &name[at..]),
        None => (name, ""),
    };
    let (domain, path) = match repo.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest.to_string())
        }
        _ => ("docker.io", repo.to_string()),
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let last = path.rsplit('/').next().unwrap_or_default();
    let tag = if suffix.is_empty() && !last.contains(':') {
        ":latest"
    } else {
        ""
    };
    let normalised = format!("{domain}/{path}{tag}{suffix}");
    (normalised != name).then_some(normalised)
}

/// A content descriptor. [`Descriptor::check`] checks its digest before it names anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The name an image archive gives the image this descriptor lists: its image name or
    /// reference annotation, else its digest.
    pub fn image_name(&self) -> String {
        self.annotations
            .get(ANNOTATION_IMAGE_NAME)
            .or(self.annotations.get(ANNOTATION_REF_NAME))
            .cloned()
            .unwrap_or_else(|| self.digest.clone())
    }

    pub fn check(&self) -> Result<(), DocumentError> {
        if !is_sha256_digest(&self.digest) {
            return Err(DocumentError::Digest(truncated(&self.digest)));
        }
        Ok(())
    }
}

/// An OCI platform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An index or Docker manifest list (also an image archive's `index.json`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The parts of an image config used here.
#[derive(Debug, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub architecture: Option<String>,
    pub rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub diff_ids: Vec<String>,
}

/// What a target or index entry is.
#[derive(Debug)]
pub enum Document {
    Index(Index),
    Manifest(Manifest),
}

/// An untrusted string, cut for an error message.
pub fn truncated(s: &str) -> String {
    let mut end = s.len().min(80);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

/// Parses a manifest or an index of media type `media_type` (or, if the descriptor has
/// none, of the type the document says or its fields show).
pub fn parse_document(media_type: &str, data: &[u8]) -> Result<Document, DocumentError> {
    use media_types::*;
    let parse_index = || -> Result<Document, DocumentError> {
        let index: Index = serde_json::from_slice(data)?;
        if let Some(kind) = &index.media_type
            && !is_index(kind)
        {
            return Err(DocumentError::IndexMediaType(truncated(kind)));
        }
        for manifest in &index.manifests {
            manifest.check()?;
        }
        Ok(Document::Index(index))
    };
    let parse_manifest = || -> Result<Document, DocumentError> {
        let manifest: Manifest = serde_json::from_slice(data)?;
        if let Some(kind) = &manifest.media_type
            && !is_manifest(kind)
        {
            return Err(DocumentError::ManifestMediaType(truncated(kind)));
        }
        manifest.config.check()?;
        if manifest.layers.len() > MAX_LAYERS {
            return Err(DocumentError::TooManyLayers(manifest.layers.len()));
        }
        for layer in &manifest.layers {
            layer.check()?;
        }
        Ok(Document::Manifest(manifest))
    };
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => parse_index(),
        OCI_MANIFEST | DOCKER_MANIFEST => parse_manifest(),
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(DocumentError::Schema1),
        "" => {
            // Sniff: what the document says, else whether it lists manifests or layers.
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Probe {
                #[serde(default)]
                media_type: Option<String>,
                #[serde(default)]
                manifests: Option<serde::de::IgnoredAny>,
            }
            let probe: Probe = serde_json::from_slice(data)?;
            match probe.media_type.as_deref() {
                Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => parse_index(),
                Some(OCI_MANIFEST | DOCKER_MANIFEST) => parse_manifest(),
                Some(other) => Err(DocumentError::MediaType(truncated(other))),
                None if probe.manifests.is_some() => parse_index(),
                None => parse_manifest(),
            }
        }
        other => Err(DocumentError::MediaType(truncated(other))),
    }
}

/// Parses an image config, checking its diff IDs.
pub fn parse_config(data: &[u8]) -> Result<Config, DocumentError> {
    let config: Config = serde_json::from_slice(data)?;
    if let Some(kind) = &config.rootfs.kind
        && kind != "layers"
    {
        return Err(DocumentError::RootfsType(truncated(kind)));
    }
    if config.rootfs.diff_ids.len() > MAX_LAYERS {
        return Err(DocumentError::TooManyDiffIds(config.rootfs.diff_ids.len()));
    }
    for diff_id in &config.rootfs.diff_ids {
        if !is_sha256_digest(diff_id) {
            return Err(DocumentError::DiffId(truncated(diff_id)));
        }
    }
    Ok(config)
}

/// The manifest of `index` for `os`/`arch`: an exact match (preferring no variant or, on
/// arm64, v8), else the only manifest that names no platform. The error lists the
/// platforms there are.
pub fn choose_manifest(index: &Index, os: &str, arch: &str) -> Result<Descriptor, NoPlatform> {
    use media_types::*;
    let is_document = |d: &&Descriptor| {
        matches!(
            d.media_type.as_str(),
            OCI_INDEX | OCI_MANIFEST | DOCKER_MANIFEST_LIST | DOCKER_MANIFEST | ""
        )
    };
    let matching: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(is_document)
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
        .collect();
    let preferred = matching.iter().find(|d| {
        let variant = d.platform.as_ref().and_then(|p| p.variant.as_deref());
        matches!(variant, None | Some("")) || (arch == "arm64" && variant == Some("v8"))
    });
    if let Some(chosen) = preferred.or(matching.first()) {
        return Ok((*chosen).clone());
    }
    let unnamed: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(is_document)
        .filter(|d| d.platform.is_none())
        .collect();
    if let [only] = unnamed.as_slice() {
        return Ok((*only).clone());
    }
    let mut available: Vec<String> = index
        .manifests
        .iter()
        .take(32)
        .map(|d| match &d.platform {
            Some(p) => truncated(&format!(
                "{}/{}{}",
                p.os,
                p.architecture,
                p.variant
                    .as_deref()
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default()
            )),
            None => "no platform".into(),
        })
        .collect();
    available.dedup();
    Err(NoPlatform {
        os: os.to_string(),
        arch: arch.to_string(),
        available,
    })
}

/// The layers of `manifest` with their diff IDs from `config` and their chain IDs.
pub fn layers_of(manifest: &Manifest, config: &Config) -> Result<Vec<Layer>, DocumentError> {
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(DocumentError::LayerCount {
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let chain = chain_ids(diff_ids);
    manifest
        .layers
        .iter()
        .zip(diff_ids.iter().zip(chain))
        .map(|(layer, (diff_id, chain_id))| {
            Compression::of_media_type(&layer.media_type)?;
            Ok(Layer {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
                size: layer.size,
                diff_id: diff_id.clone(),
                chain_id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
