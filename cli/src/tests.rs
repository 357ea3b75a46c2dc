//! The commands on synthetic archives: a checkpoint archive as kubelet writes one, and an
//! export of containerd's own checkpoint, built here; hostile variants of both.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use revive_checkpoint::oci::{self, Descriptor, sha256_digest};
use revive_checkpoint::testing::names;
use serde_json::json;

use crate::convert::{self, ConvertOptions};
use crate::format::Format;
use crate::inspect::{self, ImageReport};
use crate::layout::OciArchive;

const BASE: &str = "docker.io/revive/busybox:latest";

/// A tar built member by member.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }
    fn dir(mut self, name: &str) -> Tar {
        let mut h = Tar::header(tar::EntryType::Directory, 0o755, 0);
        self.0.append_data(&mut h, name, std::io::empty()).unwrap();
        self
    }
    fn file(mut self, name: &str, data: &[u8]) -> Tar {
        let mut h = Tar::header(tar::EntryType::Regular, 0o600, data.len() as u64);
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }
    /// A member whose name is written raw into the header (no checks by the tar crate).
    fn raw_file(mut self, name: &[u8], data: &[u8]) -> Tar {
        let mut h = Tar::header(tar::EntryType::Regular, 0o600, data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    /// A GNU long name member of `size` bytes (for the next member).
    fn long_name(mut self, size: usize) -> Tar {
        let mut h = Tar::header(tar::EntryType::GNULongName, 0o644, size as u64);
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_cksum();
        self.0.append(&h, vec![b'a'; size].as_slice()).unwrap();
        self
    }
    fn symlink(mut self, name: &str, target: &str) -> Tar {
        let mut h = Tar::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, name, target).unwrap();
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

const SPEC: &[u8] = br#"{"ociVersion":"1.2.0","process":{"args":["sh","-c","count"]},"root":{"path":"rootfs"},"linux":{"cgroupsPath":"/default/counter"},"mounts":[]}"#;

fn config_dump() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "4be9", "name": "counter", "rootfsImage": "busybox",
        "rootfsImageRef": "sha256:ab", "rootfsImageName": BASE,
        "runtime": "io.containerd.runc.v2", "restored": false,
    }))
    .unwrap()
}

fn rootfs_diff() -> Vec<u8> {
    gzip(
        &Tar::new()
            .file("written-at-start", b"token\n")
            .file("etc/.wh.motd", b"")
            .bytes(),
    )
}

/// Real CRIU images of a plain container (the checkpoint crate's fixtures), but for memory.
fn real_criu_images() -> Vec<(String, Vec<u8>)> {
    fixture_images("plain")
}

/// The CRIU images of one of the checkpoint crate's fixtures.
fn fixture_images(case: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../checkpoint/tests/fixtures/criu")
        .join(case);
    let mut images: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".img"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    images.sort();
    images
}

/// The size of [`real_criu_images`].
fn criu_images_bytes() -> u64 {
    real_criu_images().iter().map(|(_, d)| d.len() as u64).sum()
}

/// A checkpoint archive as kubelet writes one, its members in `extra` first.
fn archive_with(extra: impl FnOnce(Tar) -> Tar) -> Vec<u8> {
    let mut tar = extra(Tar::new()).dir("checkpoint");
    for (name, data) in real_criu_images() {
        tar = tar.file(&format!("checkpoint/{name}"), &data);
    }
    tar.file("checkpoint/pages-1.img", &[7u8; 8192])
        .file("config.dump", &config_dump())
        .file("spec.dump", SPEC)
        .file("rootfs-diff.tar", &rootfs_diff())
        .file("deleted.files", br#"["/etc/motd"]"#)
        .file("dump.log", b"log")
        .bytes()
}

fn archive() -> Vec<u8> {
    archive_with(|t| t)
}

/// The names of the members of a tar (plain or gzip).
fn members(data: &[u8]) -> Vec<String> {
    let plain = if data.starts_with(&[0x1f, 0x8b]) {
        gunzip(data)
    } else {
        data.to_vec()
    };
    let mut tar = tar::Archive::new(plain.as_slice());
    tar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

fn member(data: &[u8], name: &str) -> Vec<u8> {
    let plain = gunzip(data);
    let mut tar = tar::Archive::new(plain.as_slice());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            let mut out = Vec::new();
            entry.read_to_end(&mut out).unwrap();
            return out;
        }
    }
    panic!("no {name} in the layer");
}

/// What a built image archive holds: its top descriptor, the index blob's annotations (if
/// any), the manifest, the config, and the layer blob.
struct Parsed {
    top: Descriptor,
    index_annotations: Option<BTreeMap<String, String>>,
    manifest: oci::Manifest,
    config: serde_json::Value,
    layer: Vec<u8>,
}

fn parse(path: &Path) -> Parsed {
    let archive = OciArchive::open(path).unwrap();
    let index = archive.index().unwrap();
    assert_eq!(index.manifests.len(), 1);
    let top = index.manifests[0].clone();
    let (manifest_desc, index_annotations) = if oci::is_index(&top.media_type) {
        let index = archive.index_blob(&top).unwrap();
        assert_eq!(index.manifests.len(), 1);
        (index.manifests[0].clone(), Some(index.annotations))
    } else {
        (top.clone(), None)
    };
    let manifest = archive.manifest(&manifest_desc).unwrap();
    let config = archive.json(&manifest.config).unwrap();
    assert_eq!(manifest.layers.len(), 1);
    let layer = archive.blob_bytes(&manifest.layers[0], 1 << 30).unwrap();
    Parsed {
        top,
        index_annotations,
        manifest,
        config,
        layer,
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn build_makes_a_criu_image_holding_exactly_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("checkpoint.tar");
    let tar = archive();
    fs::write(&input, &tar).unwrap();
    let out = dir.path().join("out.tar");
    let built = crate::build::build(&input, "revive.test/ck:1", &out, Format::Criu).unwrap();
    assert_eq!(mode(&out), 0o600);
    assert_eq!(names(dir.path()), ["checkpoint.tar", "out.tar"]);
    assert_eq!(built.summary.container, "counter");
    assert_eq!(built.summary.base_image.as_deref(), Some(BASE));
    assert_eq!(
        built.summary.criu_images,
        real_criu_images().len() as u64 + 1
    );
    assert_eq!(built.summary.deleted_files, 1);

    let image = parse(&out);
    assert_eq!(
        image.top.annotations["io.containerd.image.name"],
        "revive.test/ck:1"
    );
    assert_eq!(
        image.top.annotations["org.opencontainers.image.ref.name"],
        "1"
    );
    let annotations = image.index_annotations.expect("criu images have an index");
    assert_eq!(annotations["org.criu.checkpoint.container.name"], "counter");
    assert_eq!(annotations["org.criu.checkpoint.rootfsImageName"], BASE);
    assert_eq!(
        annotations["org.criu.checkpoint.rootfsImageID"],
        "sha256:ab"
    );
    assert!(image.manifest.annotations.is_empty());
    assert_eq!(image.config["os"], "linux");
    assert_eq!(image.config["architecture"], oci::host_arch());
    assert!(image.config["config"].get("Cmd").is_none());
    // The layer is the archive, byte for byte, compressed.
    let layer = gunzip(&image.layer);
    assert!(layer == tar, "the layer differs from the archive");
    assert_eq!(image.config["rootfs"]["diff_ids"][0], sha256_digest(&tar));
    assert_eq!(
        image.manifest.layers[0].media_type,
        oci::media_types::OCI_LAYER_GZIP
    );

    let report = inspect::inspect(&out).unwrap();
    let ImageReport::Checkpoint {
        format,
        annotated_on,
        recognised_by_content,
        container,
        base_image,
        criu_images,
        criu_bytes,
        rootfs_diff_bytes,
        problems,
        ..
    } = &report.images[0]
    else {
        panic!("not recognised: {report:?}");
    };
    assert_eq!(*format, Some(Format::Criu));
    assert_eq!(annotated_on.as_deref(), Some("index"));
    assert!(recognised_by_content);
    assert_eq!(container.as_deref(), Some("counter"));
    assert_eq!(base_image.as_deref(), Some(BASE));
    assert_eq!(
        (*criu_images, *criu_bytes),
        (
            real_criu_images().len() as u64 + 1,
            criu_images_bytes() + 8192
        )
    );
    assert_eq!(*rootfs_diff_bytes, Some(rootfs_diff().len() as u64));
    assert!(problems.is_empty(), "{problems:?}");
    let text = inspect::render(&report);
    assert!(text.contains("format criu"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["images"][0]["kind"], "checkpoint");
    assert_eq!(json["images"][0]["format"], "criu");
}

#[test]
fn build_puts_cri_o_and_podman_annotations_on_the_manifest_and_takes_gzip_and_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive();
    // Podman's `--export` writes zstd unless told otherwise.
    let zstd = zstd::stream::encode_all(&tar[..], 3).unwrap();
    for (format, key, compressed) in [
        (
            Format::CriO,
            "io.kubernetes.cri-o.annotations.checkpoint.name",
            gzip(&tar),
        ),
        (
            Format::Podman,
            "io.podman.annotations.checkpoint.name",
            zstd,
        ),
    ] {
        let input = dir.path().join("checkpoint.tar.compressed");
        fs::write(&input, compressed).unwrap();
        let out = dir.path().join(format!("{}.tar", format.name()));
        crate::build::build(&input, "revive.test/ck:2", &out, format).unwrap();
        let image = parse(&out);
        assert!(image.index_annotations.is_none());
        assert_eq!(image.manifest.annotations[key], "counter");
        assert!(gunzip(&image.layer) == tar);
        let report = inspect::inspect(&out).unwrap();
        assert!(
            matches!(&report.images[0], ImageReport::Checkpoint { format: f, annotated_on: Some(on), .. } if *f == Some(format) && on == "manifest"),
            "{report:?}"
        );
    }
}

fn build_err(tar: Vec<u8>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("checkpoint.tar");
    fs::write(&input, tar).unwrap();
    let out = dir.path().join("out.tar");
    let err = crate::build::build(&input, "revive.test/ck:1", &out, Format::Criu).unwrap_err();
    assert_eq!(
        names(dir.path()),
        ["checkpoint.tar"],
        "a refused archive left files"
    );
    format!("{err:#}")
}

#[test]
fn build_refuses_hostile_and_incomplete_archives() {
    let err = build_err(archive_with(|t| t.raw_file(b"../escaped", b"x")));
    assert!(err.contains("escape"), "{err}");
    // A symlink, then a member through it.
    let err = build_err(
        Tar::new()
            .symlink("checkpoint", "/etc")
            .file("checkpoint/inventory.img", b"i")
            .bytes(),
    );
    assert!(err.contains("escape"), "{err}");
    // A symlink among CRIU's images (CRIU, as root, would read the host's file).
    let err = build_err(
        Tar::new()
            .dir("checkpoint")
            .file("checkpoint/inventory.img", b"i")
            .file("checkpoint/pstree.img", b"p")
            .symlink("checkpoint/pages-1.img", "/etc/shadow")
            .file("config.dump", &config_dump())
            .file("spec.dump", SPEC)
            .bytes(),
    );
    assert!(err.contains("pages-1.img is a symlink"), "{err}");
    // Only the two dump files, each case breaking one thing.
    let cases: [(&[u8], &[u8], &str); 3] = [
        (b"{\"name\": 3", SPEC, "config.dump"),
        (&config_dump(), SPEC, "no CRIU images"),
        (&config_dump(), b"[]", "not an OCI runtime spec"),
    ];
    for (config, spec, want) in cases {
        let err = build_err(
            Tar::new()
                .file("config.dump", config)
                .file("spec.dump", spec)
                .bytes(),
        );
        assert!(err.contains(want), "{err}");
    }
    let err = build_err(Tar::new().file("hello", b"world").bytes());
    assert!(err.contains("not a checkpoint archive"), "{err}");
    let err = build_err(b"this is not a tar archive at all, just text".repeat(20));
    assert!(
        err.contains("refused") || err.contains("checkpoint"),
        "{err}"
    );
    // A rootfs diff the snapshotter would refuse.
    let hostile_diff = gzip(&Tar::new().raw_file(b"../../etc/cron.d/x", b"pwn").bytes());
    let tar = Tar::new()
        .dir("checkpoint")
        .file("checkpoint/inventory.img", b"i")
        .file("checkpoint/pstree.img", b"p")
        .file("config.dump", &config_dump())
        .file("spec.dump", SPEC)
        .file("rootfs-diff.tar", &hostile_diff)
        .bytes();
    let err = build_err(tar);
    assert!(err.contains("rootfs-diff.tar"), "{err}");
    // Compressed twice.
    let err = build_err(gzip(&gzip(&archive())));
    assert!(err.contains("compressed twice"), "{err}");
    let err = build_err(gzip(&zstd::stream::encode_all(&archive()[..], 1).unwrap()));
    assert!(err.contains("compressed twice"), "{err}");
}

/// containerd's `Any` holding the spec, encoded by hand (field 1: type URL, 2: value).
fn spec_any(type_url: &str, value: &[u8]) -> Vec<u8> {
    fn field(tag: u8, data: &[u8], out: &mut Vec<u8>) {
        out.push(tag << 3 | 2);
        let mut len = data.len();
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(data);
    }
    let mut out = Vec::new();
    field(1, type_url.as_bytes(), &mut out);
    field(2, value, &mut out);
    out
}

fn desc(media_type: &str, data: &[u8], platform: bool) -> serde_json::Value {
    let mut d = json!({"mediaType": media_type, "digest": sha256_digest(data), "size": data.len()});
    if platform {
        d["platform"] = json!({"architecture": oci::host_arch(), "os": "linux"});
    }
    d
}

/// An export (`ctr images export`) of containerd's checkpoint, as containerd writes one:
/// the index's entries (media type, data) given, and `mangle` applied to the blobs.
fn native_export(entries: &[(&str, Vec<u8>)], mangle: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = entries.iter().map(|(m, d)| desc(m, d, true)).collect();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": manifests,
        "annotations": {
            "io.containerd.checkpoint.runtime": "io.containerd.runc.v2",
            "io.containerd.checkpoint.snapshotter": "overlayfs",
            "org.opencontainers.image.ref.name": BASE,
        },
    }))
    .unwrap();
    let mut top = desc(oci::media_types::OCI_INDEX, &index, false);
    top["annotations"] = json!({
        "io.containerd.image.name": "native/ck:1",
        "org.opencontainers.image.ref.name": "1",
    });
    let index_json = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top]})).unwrap();
    let mut tar = Tar::new()
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file("index.json", &index_json)
        .dir("blobs")
        .dir("blobs/sha256");
    let mut blobs: Vec<Vec<u8>> = entries.iter().map(|(_, d)| d.clone()).collect();
    blobs.push(index);
    for blob in blobs {
        let name = format!("blobs/sha256/{}", &sha256_digest(&blob)[7..]);
        let mut data = blob;
        mangle(&mut data);
        tar = tar.file(&name, &data);
    }
    tar.bytes()
}

fn criu_tar() -> Vec<u8> {
    let mut tar = Tar::new();
    for (name, data) in real_criu_images() {
        tar = tar.file(&name, &data);
    }
    tar.file("pages-1.img", &[9u8; 4096]).bytes()
}

fn native_entries(criu: Option<Vec<u8>>) -> Vec<(&'static str, Vec<u8>)> {
    let spec = spec_any(
        "types.containerd.io/opencontainers/runtime-spec/1/Spec",
        SPEC,
    );
    let mut entries = vec![(oci::media_types::OCI_LAYER_GZIP, rootfs_diff())];
    if let Some(criu) = criu {
        entries.push((convert::MEDIA_CRIU_TAR, criu));
    }
    entries.push((convert::MEDIA_CONFIG_PROTO, spec));
    entries.push((convert::MEDIA_OPTIONS_PROTO, b"\x08\x01".to_vec()));
    entries
}

fn write_native(dir: &Path, data: &[u8]) -> PathBuf {
    let path = dir.join("native.tar");
    fs::write(&path, data).unwrap();
    path
}

#[test]
fn convert_turns_a_containerd_checkpoint_into_a_checkpoint_image() {
    let dir = tempfile::tempdir().unwrap();
    let native = write_native(
        dir.path(),
        &native_export(&native_entries(Some(criu_tar())), |_| {}),
    );
    let report = inspect::inspect(&native).unwrap();
    let ImageReport::ContainerdCheckpoint {
        name,
        base_image,
        convertible,
        how,
        rw_diff_bytes,
        ..
    } = &report.images[0]
    else {
        panic!("not recognised as containerd's: {report:?}");
    };
    assert_eq!(name, "native/ck:1");
    assert_eq!(base_image.as_deref(), Some(BASE));
    assert!(convertible);
    assert!(how.contains("revive image convert"), "{how}");
    assert_eq!(*rw_diff_bytes, Some(rootfs_diff().len() as u64));

    let out = dir.path().join("out.tar");
    let converted =
        convert_default(&native, "revive.test/converted:1", &out, Format::Podman).unwrap();
    assert!(converted.warnings.is_empty());
    // Its CRIU images were decoded on the way: a plain uid 0 container.
    let held = converted.summary.privilege.as_ref().expect("decoded");
    assert_eq!((held.uids.as_slice(), held.privileged), (&[0][..], false));
    assert_eq!(mode(&out), 0o600);
    assert_eq!(names(dir.path()), ["native.tar", "out.tar"]);
    let image = parse(&out);
    assert_eq!(
        image.manifest.annotations["io.podman.annotations.checkpoint.name"],
        "counter"
    );
    let mut expected = vec!["checkpoint/".to_string()];
    expected.extend(
        real_criu_images()
            .into_iter()
            .map(|(name, _)| format!("checkpoint/{name}")),
    );
    expected.extend(
        [
            "checkpoint/pages-1.img",
            "config.dump",
            "spec.dump",
            "rootfs-diff.tar",
        ]
        .map(String::from),
    );
    assert_eq!(members(&image.layer), expected);
    assert_eq!(member(&image.layer, "spec.dump"), SPEC);
    assert_eq!(member(&image.layer, "rootfs-diff.tar"), rootfs_diff());
    assert_eq!(member(&image.layer, "checkpoint/pages-1.img"), [9u8; 4096]);
    let config: serde_json::Value =
        serde_json::from_slice(&member(&image.layer, "config.dump")).unwrap();
    assert_eq!(config["rootfsImageName"], BASE);
    assert_eq!(config["name"], "counter");
    assert_eq!(config["runtime"], "io.containerd.runc.v2");

    // The converted image is a complete checkpoint image: revive image build accepts its
    // layer as an archive.
    let again = dir.path().join("layer.tar");
    fs::write(&again, gunzip(&image.layer)).unwrap();
    let rebuilt = dir.path().join("rebuilt.tar");
    let built =
        crate::build::build(&again, "revive.test/rebuilt:1", &rebuilt, Format::Criu).unwrap();
    assert_eq!(built.summary.base_image.as_deref(), Some(BASE));
    assert_eq!(
        built.summary.criu_images,
        real_criu_images().len() as u64 + 1
    );
    let report = inspect::inspect(&out).unwrap();
    assert!(
        matches!(&report.images[0], ImageReport::Checkpoint { problems, recognised_by_content: true, .. } if problems.is_empty()),
        "{report:?}"
    );

    // Converting a checkpoint image again is refused, with the reason.
    let err = format!(
        "{:#}",
        convert_default(&out, "x:1", &dir.path().join("x.tar"), Format::Criu).unwrap_err()
    );
    assert!(err.contains("already a checkpoint image"), "{err}");
}

/// [`convert::convert`] with the default options.
fn convert_default(
    input: &Path,
    reference: &str,
    out: &Path,
    format: Format,
) -> anyhow::Result<convert::Converted> {
    convert::convert(input, reference, out, format, &ConvertOptions::default())
}

fn convert_err(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let native = write_native(dir.path(), data);
    let out = dir.path().join("out.tar");
    let err = convert_default(&native, "revive.test/c:1", &out, Format::Criu).unwrap_err();
    assert_eq!(
        names(dir.path()),
        ["native.tar"],
        "a refused conversion left files"
    );
    format!("{err:#}")
}

#[test]
fn convert_refuses_incomplete_and_hostile_checkpoints() {
    let err = convert_err(&native_export(&native_entries(None), |_| {}));
    assert!(err.contains("--task"), "{err}");
    let err = convert_err(&native_export(
        &native_entries(Some(Tar::new().file("inventory.img", b"i").bytes())),
        |_| {},
    ));
    assert!(err.contains("pstree.img"), "{err}");
    for hostile in [
        Tar::new().raw_file(b"../inventory.img", b"i").bytes(),
        Tar::new()
            .file("inventory.img", b"i")
            .symlink("pstree.img", "/etc/shadow")
            .bytes(),
        Tar::new()
            .file("inventory.img", b"i")
            .file("sub/pstree.img", b"p")
            .bytes(),
    ] {
        let err = convert_err(&native_export(&native_entries(Some(hostile)), |_| {}));
        assert!(
            err.contains("escape") || err.contains("regular file") || err.contains("flat"),
            "{err}"
        );
    }
    // Metadata (a GNU long name) too large to be read whole, in CRIU's tar and in the export.
    let huge = Tar::new()
        .long_name(2 << 20)
        .file("inventory.img", b"i")
        .bytes();
    let err = convert_err(&native_export(&native_entries(Some(huge)), |_| {}));
    assert!(err.contains("metadata"), "{err}");
    let mut export = Tar::new().long_name(2 << 20).file("x", b"").bytes();
    export.extend(native_export(&native_entries(Some(criu_tar())), |_| {}));
    let err = convert_err(&export);
    assert!(err.contains("metadata"), "{err}");
    // A blob that is not what its descriptor says.
    let err = convert_err(&native_export(&native_entries(Some(criu_tar())), |blob| {
        if blob.len() > 100 {
            let at = blob.len() / 2;
            blob[at] ^= 1;
        }
    }));
    assert!(err.contains("corrupt") || err.contains("digest"), "{err}");
    // A spec that is not one.
    let mut entries = native_entries(Some(criu_tar()));
    entries[2].1 = spec_any(
        "types.containerd.io/opencontainers/runtime-spec/1/Spec",
        b"{",
    );
    let err = convert_err(&native_export(&entries, |_| {}));
    assert!(err.contains("spec.dump"), "{err}");
    entries[2].1 = b"\xff\xff\xff".to_vec();
    let err = convert_err(&native_export(&entries, |_| {}));
    assert!(err.contains("protobuf"), "{err}");
    // Not an image archive at all, and an ordinary image.
    let err = convert_err(b"garbage");
    assert!(err.contains("index.json") || err.contains("tar"), "{err}");
    let err = convert_err(&Tar::new().file("index.json", b"{\"manifests\": 5}").bytes());
    assert!(err.contains("index.json"), "{err}");
}

#[test]
fn inspect_says_what_ordinary_and_broken_images_are() {
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint archive made an image by a layer of its own, but missing its CRIU images,
    // annotated: reported with the problem.
    let input = dir.path().join("checkpoint.tar");
    fs::write(&input, archive()).unwrap();
    let out = dir.path().join("out.tar");
    crate::build::build(&input, "revive.test/ck:1", &out, Format::CriO).unwrap();
    let report = inspect::render(&inspect::inspect(&out).unwrap());
    assert!(report.contains("restorable"), "{report}");
    // What its processes hold, and what a container must grant.
    for expected in [
        "uids          0",
        "CAP_SETUID",
        "set on every thread",
        "needs",
    ] {
        assert!(report.contains(expected), "{expected:?} not in {report}");
    }
    assert!(!report.contains("privileged"), "{report}");
    // A privileged container's checkpoint says so.
    let mut tar = Tar::new().dir("checkpoint");
    for (name, data) in fixture_images("privileged") {
        tar = tar.file(&format!("checkpoint/{name}"), &data);
    }
    let tar = tar
        .file("config.dump", &config_dump())
        .file("spec.dump", SPEC)
        .bytes();
    fs::write(&input, tar).unwrap();
    let built = crate::build::build(&input, "revive.test/priv:1", &out, Format::CriO).unwrap();
    assert!(built.summary.privilege.as_ref().unwrap().privileged);
    let report = inspect::render(&inspect::inspect(&out).unwrap());
    for expected in [
        "privileged    yes",
        "CAP_SYS_ADMIN",
        "sysfs at /sys read-write",
        "a privileged container (ctr run --privileged",
    ] {
        assert!(report.contains(expected), "{expected:?} not in {report}");
    }

    // CRIU images that do not decode (hostile or damaged): named as what stops the restore.
    let tar = Tar::new()
        .dir("checkpoint")
        .file("checkpoint/inventory.img", b"inventory")
        .file("checkpoint/pstree.img", b"pstree")
        .file("config.dump", &config_dump())
        .file("spec.dump", SPEC)
        .bytes();
    fs::write(&input, tar).unwrap();
    let built = crate::build::build(&input, "revive.test/bad:1", &out, Format::CriO).unwrap();
    assert!(built.summary.privilege.is_none());
    let report = inspect::render(&inspect::inspect(&out).unwrap());
    assert!(
        report.contains("cannot be checked, so revive refuses to restore it"),
        "{report}"
    );

    let missing = Path::new("/nonexistent/revive-test.tar");
    assert!(inspect::inspect(missing).is_err());
    let garbage = dir.path().join("garbage.tar");
    fs::write(&garbage, b"\x1f\x8b garbage").unwrap();
    let err = format!("{:#}", inspect::inspect(&garbage).unwrap_err());
    assert!(err.contains("gzip"), "{err}");
}

#[test]
fn inspect_says_what_a_restore_needs_and_who_provides_it() {
    let userdata = "/run/containers/storage/overlay-containers/c0ffee/userdata";
    let podman = json!({
        "process": {"terminal": false},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/etc/hosts", "type": "bind", "source": format!("{userdata}/hosts")},
            {"destination": "/run/.containerenv", "type": "bind",
             "source": format!("{userdata}/.containerenv")},
            {"destination": "/data", "type": "bind", "source": "/srv/data"},
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]},
    });
    let needs = inspect::restore_needs(&podman);
    assert_eq!(needs.len(), 2, "{needs:?}");
    assert!(
        needs[0].starts_with("fresh /etc/hosts, /run/.containerenv")
            && needs[0].contains("revive makes"),
        "{needs:?}"
    );
    assert!(
        needs[1].starts_with("a mount at /data (a bind mount of /srv/data on the old host)"),
        "{needs:?}"
    );
    let pod = json!({
        "process": {"terminal": true},
        "linux": {"namespaces": [{"type": "ipc", "path": "/proc/7/ns/ipc"}]},
    });
    let needs = inspect::restore_needs(&pod);
    assert!(
        needs[0].starts_with("a pod: it joined its pod's ipc namespace"),
        "{needs:?}"
    );
    assert!(needs[1].starts_with("a terminal"), "{needs:?}");
    assert!(inspect::restore_needs(&json!({"process": {}})).is_empty());
    let broken = inspect::restore_needs(&json!({"mounts": 3}));
    assert!(broken[0].contains("refuses"), "{broken:?}");
}

/// The holder's checkpoint (the checkpoint crate's `holder` fixture: a process holding a
/// secret in memory, and its child) as a checkpoint archive.
fn holder_archive() -> Vec<u8> {
    holder_archive_with(|_, data| data)
}

/// [`holder_archive`] with each file's content passed through `change` (by name).
fn holder_archive_with(change: impl Fn(&str, Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../checkpoint/tests/fixtures/criu/holder");
    let mut tar = Tar::new().dir("checkpoint");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let data = change(&name, fs::read(dir.join(&name)).unwrap());
        tar = match name.as_str() {
            "config.dump" | "spec.dump" | "stats-dump" => tar.file(&name, &data),
            _ => tar.file(&format!("checkpoint/{name}"), &data),
        };
    }
    tar.bytes()
}

const HOLDER_SECRET: &[u8] = b"revive-secret-fd37c237d46fc8cfb9effb2b";

fn grep_lines(path: &Path, pattern: &[u8], pid: Option<u32>) -> Vec<String> {
    let pattern = revive_checkpoint::criu::search::Pattern::literal(pattern).unwrap();
    let grep = crate::forensics::Grep {
        pattern: &pattern,
        pid,
        context: 2,
        max: 100,
    };
    let mut out = Vec::new();
    crate::forensics::memgrep(path, &grep, false, &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn inspect_and_memgrep_read_an_archive_plain_compressed_or_as_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("holder.tar");
    fs::write(&plain, holder_archive()).unwrap();
    let gz = dir.path().join("holder.tar.gz");
    fs::write(&gz, gzip(&holder_archive())).unwrap();
    let image = dir.path().join("image.tar");
    crate::build::build(&plain, "revive.test/holder:1", &image, Format::Criu).unwrap();
    for (path, origin) in [(&plain, "none"), (&gz, "gzip"), (&image, "image")] {
        let report = crate::forensics::inspect(path).unwrap();
        let json = serde_json::to_value(&report).unwrap();
        let from = &json["origin"];
        assert!(
            from["compression"] == origin || from["kind"] == origin,
            "{from}"
        );
        assert_eq!(json["processes"][0]["cmdline"], json!(["/holder"]));
        assert_eq!(json["problems"], json!([]));
        let text = crate::forensics::render(&report);
        assert!(
            text.contains("fd 3         REG /tmp/holder.log (at 24)"),
            "{text}"
        );
        let lines = grep_lines(path, HOLDER_SECRET, None);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("1 holder ") && lines[0].contains(" [heap] "));
        assert!(lines[1].contains(" [stack] "), "{lines:?}");
        assert!(lines[0].ends_with("\\x00\\x00[revive-secret-fd37c237d46fc8cfb9effb2b]\\x00\\x00"));
        assert!(grep_lines(path, HOLDER_SECRET, Some(11)).is_empty());
    }
    // Nothing is left beside the inputs: decompressed content went to unnamed files.
    assert_eq!(
        names(dir.path()),
        ["holder.tar", "holder.tar.gz", "image.tar"]
    );
}

#[test]
fn a_mapping_is_dumped_to_a_new_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("holder.tar");
    fs::write(&plain, holder_archive()).unwrap();
    let line = grep_lines(&plain, HOLDER_SECRET, Some(1)).pop().unwrap();
    let address = line.split(' ').nth(2).unwrap().trim_start_matches("0x");
    let address = u64::from_str_radix(address, 16).unwrap();
    let out = dir.path().join("stack.bin");
    let mapping = crate::forensics::dump_mapping(&plain, 1, address, &out).unwrap();
    assert_eq!(mode(&out), 0o600);
    let data = fs::read(&out).unwrap();
    assert_eq!(data.len() as u64, mapping.end - mapping.start);
    let at = (address - mapping.start) as usize;
    assert_eq!(&data[at..at + HOLDER_SECRET.len()], HOLDER_SECRET);
    let again = crate::forensics::dump_mapping(&plain, 1, address, &out).unwrap_err();
    assert!(format!("{again:#}").contains("must not exist"), "{again:#}");
    let nowhere = crate::forensics::dump_mapping(&plain, 1, 0x1000, &dir.path().join("x"));
    assert!(format!("{:#}", nowhere.unwrap_err()).contains("no mapping at 0x1000"));
    // A core of the holder: a new private file; none for a process that is not there.
    let core = dir.path().join("holder.core");
    let (process, written) = crate::forensics::core(&plain, None, &core).unwrap();
    assert_eq!(process.comm, "holder");
    assert_eq!(mode(&core), 0o600);
    assert_eq!(fs::metadata(&core).unwrap().len(), written.bytes);
    let err = crate::forensics::core(&plain, Some(99), &dir.path().join("y")).unwrap_err();
    assert!(format!("{err:#}").contains("no process 99"), "{err:#}");
    assert!(!dir.path().join("y").exists());
}

#[test]
fn what_is_no_checkpoint_is_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.tar");
    fs::write(&other, Tar::new().file("etc/motd", b"hi").bytes()).unwrap();
    let err = format!("{:#}", crate::forensics::inspect(&other).unwrap_err());
    assert!(err.contains("neither a checkpoint archive"), "{err}");
    let native = write_native(
        dir.path(),
        &native_export(&native_entries(Some(criu_tar())), |_| {}),
    );
    let report = crate::forensics::inspect(&native).unwrap();
    assert_eq!(
        serde_json::to_value(&report.origin).unwrap()["kind"],
        "containerd"
    );
    let without = dir.path().join("without.tar");
    fs::write(&without, native_export(&native_entries(None), |_| {})).unwrap();
    let err = format!("{:#}", crate::forensics::inspect(&without).unwrap_err());
    assert!(err.contains("no CRIU images"), "{err}");
}

#[test]
fn hostile_checkpoints_are_read_as_far_as_they_are_sound_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The holder's pages file cut short: its pagemap points past the end.
    let cut = dir.path().join("cut.tar");
    fs::write(
        &cut,
        holder_archive_with(|name, data| {
            if name == "pages-1.img" {
                data[..4096].to_vec()
            } else {
                data
            }
        }),
    )
    .unwrap();
    let report = crate::forensics::inspect(&cut).unwrap();
    let problems = report.inspection.problems.join("; ");
    assert!(
        problems.contains("process 1: memory") && problems.contains("past the end"),
        "{problems}"
    );
    assert_eq!(report.inspection.processes[0].cmdline, None);
    let pattern = revive_checkpoint::criu::search::Pattern::literal(HOLDER_SECRET).unwrap();
    let grep = crate::forensics::Grep {
        pattern: &pattern,
        pid: None,
        context: 0,
        max: 10,
    };
    let err = crate::forensics::memgrep(&cut, &grep, false, &mut Vec::new()).unwrap_err();
    assert!(format!("{err:#}").contains("past the end"), "{err:#}");
    let core = dir.path().join("cut.core");
    assert!(crate::forensics::core(&cut, Some(1), &core).is_err());
    // A member escaping the archive names no image, and garbage is no process tree.
    let escaping = dir.path().join("escaping.tar");
    fs::write(
        &escaping,
        Tar::new()
            .raw_file(b"../checkpoint/pstree.img", b"x")
            .file("spec.dump", SPEC)
            .file("checkpoint/pstree.img", b"garbage")
            .bytes(),
    )
    .unwrap();
    assert!(crate::forensics::inspect(&escaping).is_err());
    assert_eq!(names(dir.path()), ["cut.tar", "escaping.tar"]);
}
