//! Test images built locally (no registry is reachable): OCI image archives that
//! `ctr images import` takes, written deterministically from files we choose.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use revive_checkpoint::gzip::GzipWriter;
use sha2::{Digest as _, Sha256};

/// PATH in test images.
pub const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The name tests use for the busybox image.
pub const BUSYBOX: &str = "docker.io/revive/busybox:latest";

#[derive(Debug, Clone)]
enum Entry {
    Dir {
        path: String,
        mode: u32,
        owner: (u64, u64),
    },
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
        owner: (u64, u64),
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

/// One image layer: directories, files and symlinks with modes (and owners), written as a
/// reproducible tar.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    entries: Vec<Entry>,
}

fn rel(path: &str) -> String {
    path.trim_start_matches('/').to_string()
}

impl Layer {
    pub fn new() -> Layer {
        Layer::default()
    }
    pub fn dir(self, path: &str, mode: u32) -> Layer {
        self.dir_owned(path, mode, 0, 0)
    }
    pub fn dir_owned(mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Layer {
        self.entries.push(Entry::Dir {
            path: rel(path),
            mode,
            owner: (uid, gid),
        });
        self
    }
    pub fn file(mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Layer {
        self.entries.push(Entry::File {
            path: rel(path),
            data: data.into(),
            mode,
            owner: (0, 0),
        });
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Layer {
        self.entries.push(Entry::Symlink {
            path: rel(path),
            target: target.into(),
        });
        self
    }

    /// A path added more than once, if any.
    pub fn duplicate(&self) -> Option<&str> {
        let mut seen = BTreeSet::new();
        self.entries
            .iter()
            .map(Entry::path)
            .find(|path| !seen.insert(*path))
    }

    /// The layer as an uncompressed tar: sorted, mtime 0, so builds are reproducible. An
    /// entry added again replaces the earlier one (as a later `COPY` would).
    pub fn tar(&self) -> Result<Vec<u8>> {
        let entries: BTreeMap<&str, &Entry> = self.entries.iter().map(|e| (e.path(), e)).collect();
        let mut tar = tar::Builder::new(Vec::new());
        for entry in entries.into_values() {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match entry {
                Entry::Dir { path, mode, owner } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_uid(owner.0);
                    header.set_gid(owner.1);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                }
                Entry::File {
                    path,
                    data,
                    mode,
                    owner,
                } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_uid(owner.0);
                    header.set_gid(owner.1);
                    header.set_size(data.len() as u64);
                    tar.append_data(&mut header, path, data.as_slice())?;
                }
                Entry::Symlink { path, target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)?;
                }
            }
        }
        Ok(tar.into_inner()?)
    }
}

/// Builds a single-layer image.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    name: String,
    layer: Layer,
    /// A ready-made layer tar used instead of `layer`.
    raw_layer: Option<Vec<u8>>,
    /// Annotations of the index and of the manifest.
    index_annotations: BTreeMap<String, String>,
    manifest_annotations: BTreeMap<String, String>,
    cmd: Vec<String>,
    entrypoint: Vec<String>,
    env: Vec<String>,
    workdir: Option<String>,
    /// The platform's architecture; another than this machine's makes the image an index
    /// naming it, as a multi-platform image is.
    arch: Arch,
}

impl ImageBuilder {
    pub fn new(name: &str) -> ImageBuilder {
        ImageBuilder {
            name: name.into(),
            layer: Layer::new(),
            raw_layer: None,
            index_annotations: BTreeMap::new(),
            manifest_annotations: BTreeMap::new(),
            cmd: Vec::new(),
            entrypoint: Vec::new(),
            env: vec![IMAGE_PATH.into()],
            workdir: None,
            arch: host_arch(),
        }
    }

    /// An image for `arch`: its config says so, and it is an index naming that platform.
    pub fn architecture(mut self, arch: Arch) -> Self {
        self.arch = arch;
        self
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.layer = self.layer.dir(path, mode);
        self
    }

    pub fn file(mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.layer = self.layer.file(path, data, mode);
        self
    }

    /// Adds a file read from the host.
    pub fn host_file(self, path: &str, host: &Path, mode: u32) -> Result<Self> {
        let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        Ok(self.file(path, data, mode))
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.layer = self.layer.symlink(path, target);
        self
    }

    /// Uses `tar` (uncompressed) as the layer, as `buildah add <archive.tar> /` makes a
    /// layer of an archive: how checkpoint images are built from checkpoint archives.
    pub fn raw_layer(mut self, tar: Vec<u8>) -> Self {
        self.raw_layer = Some(tar);
        self
    }

    /// Annotates the image index (`on_index`) or the manifest.
    pub fn annotation(mut self, on_index: bool, key: &str, value: &str) -> Self {
        let map = if on_index {
            &mut self.index_annotations
        } else {
            &mut self.manifest_annotations
        };
        map.insert(key.into(), value.into());
        self
    }

    pub fn cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = cmd.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn entrypoint(mut self, entrypoint: &[&str]) -> Self {
        self.entrypoint = entrypoint.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn env(mut self, var: &str) -> Self {
        self.env.push(var.into());
        self
    }

    pub fn workdir(mut self, dir: &str) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// The layer as an uncompressed tar, entries sorted, owned by root, mtime 0; a path
    /// added twice is a mistake in the test.
    fn layer_tar(&self) -> Result<Vec<u8>> {
        if let Some(tar) = &self.raw_layer {
            return Ok(tar.clone());
        }
        if let Some(path) = self.layer.duplicate() {
            bail!("image {}: {path} is added twice", self.name);
        }
        self.layer.tar()
    }

    pub fn build(self) -> Result<Image> {
        let layer = self.layer_tar()?;
        let diff_id = sha256_digest(&layer)?;
        // As `revive image build` writes its layers: incompressible chunks stored.
        let mut gz = GzipWriter::new(Vec::new())?;
        gz.write_all(&layer)?;
        let stored_bytes = gz.stored_bytes();
        let layer_gz = gz.finish()?;

        let mut config = ConfigBuilder::default().env(self.env.clone());
        if !self.cmd.is_empty() {
            config = config.cmd(self.cmd.clone());
        }
        if !self.entrypoint.is_empty() {
            config = config.entrypoint(self.entrypoint.clone());
        }
        if let Some(dir) = &self.workdir {
            config = config.working_dir(dir.clone());
        }
        let image_config = ImageConfigurationBuilder::default()
            .architecture(self.arch.clone())
            .os(Os::Linux)
            .config(config.build()?)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id.to_string()])
                    .build()?,
            )
            .build()?;
        let config_json = canonical_json(&image_config)?;

        let mut blobs: Vec<(Digest, Vec<u8>)> = Vec::new();
        let layer_desc = descriptor(MediaType::ImageLayerGzip, &layer_gz)?;
        let config_desc = descriptor(MediaType::ImageConfig, &config_json)?;
        let mut manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc.clone())
            .layers(vec![layer_desc.clone()])
            .build()?;
        if !self.manifest_annotations.is_empty() {
            manifest.set_annotations(Some(
                self.manifest_annotations.clone().into_iter().collect(),
            ));
        }
        let manifest_json = canonical_json(&manifest)?;
        let mut manifest_desc = descriptor(MediaType::ImageManifest, &manifest_json)?;
        let tag = self
            .name
            .rsplit_once(':')
            .map(|(_, t)| t)
            .unwrap_or("latest");
        let names: std::collections::HashMap<String, String> = [
            ("io.containerd.image.name".to_string(), self.name.clone()),
            (
                "org.opencontainers.image.ref.name".to_string(),
                tag.to_string(),
            ),
        ]
        .into();
        blobs.push((layer_desc.digest().clone(), layer_gz));
        blobs.push((config_desc.digest().clone(), config_json));
        blobs.push((manifest_desc.digest().clone(), manifest_json));
        // The image is its manifest, or with index annotations an index (a blob of its own,
        // annotated, holding the manifest) as multi-platform images are.
        let top = if self.index_annotations.is_empty() && self.arch == host_arch() {
            manifest_desc
        } else {
            manifest_desc.set_platform(Some(
                oci_spec::image::PlatformBuilder::default()
                    .architecture(self.arch.clone())
                    .os(Os::Linux)
                    .build()?,
            ));
            let mut image_index = ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(vec![manifest_desc])
                .build()?;
            if !self.index_annotations.is_empty() {
                image_index
                    .set_annotations(Some(self.index_annotations.clone().into_iter().collect()));
            }
            let index_blob = canonical_json(&image_index)?;
            let desc = descriptor(MediaType::ImageIndex, &index_blob)?;
            blobs.push((desc.digest().clone(), index_blob));
            desc
        };
        let mut top = top;
        top.set_annotations(Some(names));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![top])
            .build()?;
        let index_json = canonical_json(&index)?;

        let mut archive = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| -> Result<()> {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_mtime(0);
            archive.append_data(&mut header, path, data)?;
            Ok(())
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json", &index_json)?;
        for (digest, data) in &blobs {
            add(&format!("blobs/sha256/{}", digest.digest()), data)?;
        }
        Ok(Image {
            name: self.name,
            archive: archive.into_inner()?,
            stored_bytes,
        })
    }
}

/// JSON with sorted object keys (serde_json's Value keeps maps sorted), so that equal
/// images get equal digests whatever order a HashMap iterates in.
fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::to_value(value)?)?)
}

fn sha256_digest(data: &[u8]) -> Result<Digest> {
    Ok(Digest::from_str(&format!(
        "sha256:{}",
        hex::encode(Sha256::digest(data))
    ))?)
}

fn descriptor(media_type: MediaType, data: &[u8]) -> Result<Descriptor> {
    Ok(DescriptorBuilder::default()
        .media_type(media_type)
        .digest(sha256_digest(data)?)
        .size(data.len() as u64)
        .build()?)
}

fn host_arch() -> Arch {
    match std::env::consts::ARCH {
        "x86_64" => Arch::Amd64,
        "aarch64" => Arch::ARM64,
        other => Arch::Other(other.to_string()),
    }
}

/// An image archive (OCI layout in a tar) ready for `ctr images import`.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    archive: Vec<u8>,
    /// How many bytes of the layer's tar its gzip holds in stored blocks: its incompressible
    /// MiB chunks (`revive_checkpoint::gzip`), not counting the last, partial one.
    pub stored_bytes: u64,
}

impl Image {
    /// A file name derived from the image name.
    pub fn file_stem(&self) -> String {
        self.name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    pub fn write_archive(&self, path: &Path) -> Result<PathBuf> {
        fs::write(path, &self.archive).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.to_path_buf())
    }

    pub fn archive(&self) -> &[u8] {
        &self.archive
    }

    /// A busybox image from a node root's busybox-static: /bin/busybox with a link for
    /// every applet, a root user, and the usual empty directories.
    pub fn busybox(rootfs: &Path) -> Result<Image> {
        busybox_builder(rootfs, BUSYBOX)?.cmd(&["sh"]).build()
    }
}

/// A node root's busybox-static binary and the paths of its applets (`bin/sh`,
/// `usr/bin/nc`, ...; not `bin/busybox` itself), for images that link them to it.
pub fn busybox_applets(rootfs: &Path) -> Result<(Vec<u8>, Vec<String>)> {
    let busybox = rootfs.join("bin/busybox");
    let out = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .with_context(|| format!("running {} --list-full", busybox.display()))?;
    if !out.status.success() {
        bail!(
            "{} --list-full failed: {}",
            busybox.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let data = fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let applets = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "bin/busybox")
        .map(str::to_string)
        .collect();
    Ok((data, applets))
}

/// A builder preloaded with busybox, for images that add their own files and command.
pub fn busybox_builder(rootfs: &Path, name: &str) -> Result<ImageBuilder> {
    let (data, applets) = busybox_applets(rootfs)?;
    let mut builder = ImageBuilder::new(name).file("/bin/busybox", data, 0o755);
    let mut dirs = BTreeSet::from(["bin".to_string()]);
    for applet in &applets {
        if let Some((dir, _)) = applet.rsplit_once('/') {
            dirs.insert(dir.to_string());
        }
        builder = builder.symlink(applet, "/bin/busybox");
    }
    for dir in ["etc", "proc", "sys", "dev", "var", "home", "usr"] {
        dirs.insert(dir.to_string());
    }
    for dir in dirs {
        builder = builder.dir(&dir, 0o755);
    }
    Ok(builder
        .dir("tmp", 0o1777)
        .dir("root", 0o700)
        .file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        )
        .file("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_is_a_valid_oci_layout() {
        let image = ImageBuilder::new("docker.io/revive/test:v1")
            .dir("etc", 0o755)
            .file("etc/hello", "hi\n", 0o644)
            .symlink("bin/hello", "/etc/hello")
            .cmd(&["cat", "/etc/hello"])
            .build()
            .unwrap();
        let mut archive = tar::Archive::new(image.archive());
        let mut files = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            files.insert(path, data);
        }
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let manifest_desc = &index["manifests"][0];
        assert_eq!(
            manifest_desc["annotations"]["io.containerd.image.name"],
            "docker.io/revive/test:v1"
        );
        assert_eq!(
            manifest_desc["annotations"]["org.opencontainers.image.ref.name"],
            "v1"
        );
        // Every blob's name is the digest of its content.
        for (path, data) in &files {
            if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                assert_eq!(hex, hex::encode(Sha256::digest(data)), "{path}");
            }
        }
        let digest = manifest_desc["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&files[&format!("blobs/sha256/{digest}")]).unwrap();
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&files[&format!("blobs/sha256/{config_digest}")]).unwrap();
        assert_eq!(
            config["config"]["Cmd"],
            serde_json::json!(["cat", "/etc/hello"])
        );
        assert_eq!(config["os"], "linux");
    }

    #[test]
    fn builds_are_reproducible_and_duplicates_rejected() {
        let build = || {
            ImageBuilder::new("x:1")
                .file("a", "1", 0o644)
                .build()
                .unwrap()
        };
        assert!(
            build().archive() == build().archive(),
            "two builds of one image differ"
        );
        assert!(
            ImageBuilder::new("x:1")
                .file("a", "1", 0o644)
                .file("/a", "2", 0o644)
                .build()
                .is_err()
        );
    }
}
