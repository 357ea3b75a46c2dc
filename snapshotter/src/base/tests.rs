use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use revive_checkpoint::testing::{Tar, names};
use serde_json::json;
use tar::EntryType;

use super::*;
use crate::containerd::fake::{FakeContainerd, Style, compress};
use crate::containerd::{chain_ids, host_arch, media_types, sha256_digest};

const NS: &str = "k8s.io";

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("!!! SKIPPED: this test needs root (mknod, chown, trusted.* xattrs, mount) !!!");
    false
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut value = vec![0u8; 64];
    // SAFETY: NUL-terminated strings and a live buffer of the length given.
    let n = unsafe {
        nix::libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    value.truncate(usize::try_from(n).ok()?);
    Some(value)
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// A fake containerd, a client of it, and an empty store of base layers in a fresh
/// directory (kept while the returned `TempDir` lives).
async fn start() -> (FakeContainerd, Client, tempfile::TempDir, Bases) {
    let fake = FakeContainerd::start().await;
    let client = fake.client();
    let root = tempfile::tempdir().unwrap();
    let bases = Bases::open(root.path()).unwrap();
    (fake, client, root, bases)
}

/// The two layers of the main test image.
fn two_layers() -> Vec<Vec<u8>> {
    let bottom = Tar::new()
        .dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644)
        .owned_file("etc/owned", b"", 1000, 1000)
        .dir("tmp", 0o1777)
        .dir("var", 0o755)
        .dir("var/cache", 0o755)
        .file("var/cache/a", b"a", 0o644)
        .dir("bin", 0o755)
        .file("bin/su", b"#!/bin/sh\n", 0o4755)
        .node("dev/null", EntryType::Char, 1, 3)
        .bytes();
    let top = Tar::new()
        .file("etc/.wh.passwd", b"", 0o644)
        .dir("var/cache", 0o755)
        .file("var/cache/.wh..wh..opq", b"", 0o644)
        .file("var/cache/b", b"b", 0o644)
        .file("tmp/x/f", b"f", 0o644)
        .bytes();
    vec![bottom, top]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_layer_image_unpacks_into_overlay_layers() {
    if !is_root() {
        return;
    }
    let (fake, client, root, bases) = start().await;
    let layers = two_layers();
    let pushed = fake.push_image(NS, "docker.io/revive/base:1", &layers, Style::default());
    let chain = chain_ids(&pushed.diff_ids);
    assert_eq!(mode(bases.dir()), PRIVATE_DIR_MODE);

    let dirs = bases
        .ensure(&client, NS, &ImageRef::Name("revive/base:1".into()))
        .await
        .unwrap();
    let top = bases.layer_dir(&chain[1]).unwrap();
    let bottom = bases.layer_dir(&chain[0]).unwrap();
    assert_eq!(dirs, [top.clone(), bottom.clone()]);
    assert_eq!(top, bases.dir().join(&chain[1][7..]).join("fs"));
    assert_eq!(names(bases.dir()), {
        let mut hex = vec![chain[0][7..].to_string(), chain[1][7..].to_string()];
        hex.sort();
        hex
    });
    for dir in &dirs {
        assert_eq!(mode(dir), LAYER_FS_MODE);
        assert_eq!(mode(dir.parent().unwrap()), PRIVATE_DIR_MODE);
        assert_eq!(fs::metadata(dir).unwrap().uid(), 0);
    }

    // The bottom layer, as the archive says: owners, setuid, devices.
    assert_eq!(mode(&bottom.join("bin/su")), 0o4755);
    assert_eq!(mode(&bottom.join("tmp")), 0o1777);
    assert_eq!(fs::metadata(bottom.join("etc/owned")).unwrap().uid(), 1000);
    let null = fs::symlink_metadata(bottom.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    // The top layer: overlayfs whiteouts, an opaque directory, and implicit directories
    // with the attributes of the layer below (tmp) or the defaults (tmp/x).
    let whiteout = fs::symlink_metadata(top.join("etc/passwd")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    assert_eq!(
        xattr(&top.join("var/cache"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(mode(&top.join("tmp")), 0o1777);
    assert_eq!(mode(&top.join("tmp/x")), 0o755);
    assert_eq!(mode(&top.join("etc")), 0o755);

    // Mounted, the layers give the image's file system.
    let merged = root.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let lowerdir = format!("lowerdir={}:{}", top.display(), bottom.display());
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(lowerdir.as_str()),
    )
    .unwrap();
    let seen = (
        merged.join("etc/passwd").exists(),
        names(&merged.join("var/cache")),
        mode(&merged.join("tmp")),
        fs::read(merged.join("tmp/x/f")).ok(),
        mode(&merged.join("bin/su")),
    );
    nix::mount::umount(&merged).unwrap();
    assert_eq!(
        seen,
        (
            false,
            vec!["b".to_string()],
            0o1777,
            Some(b"f".to_vec()),
            0o4755
        )
    );

    // Again: nothing is read twice.
    let again = bases
        .ensure(&client, NS, &ImageRef::Id(pushed.config_digest.clone()))
        .await
        .unwrap();
    assert_eq!(again, dirs);
    for digest in &pushed.layer_digests {
        assert_eq!(fake.reads(digest), 1);
    }
    assert_eq!(bases.list().unwrap(), {
        let mut c = chain.clone();
        c.sort();
        c
    });

    // Removal keeps what is in use (either spelling).
    let in_use: HashSet<String> = [chain[1].clone()].into();
    assert_eq!(bases.remove_unused(&in_use).unwrap(), [chain[0].clone()]);
    let in_use: HashSet<String> = [chain[1][7..].to_string()].into();
    assert!(bases.remove_unused(&in_use).unwrap().is_empty());
    assert_eq!(bases.list().unwrap(), [chain[1].clone()]);
    assert!(!bottom.exists() && top.exists());
    assert_eq!(names(bases.dir()), [chain[1][7..].to_string()]);
    // And the layer comes back when needed.
    let dirs = bases
        .ensure(&client, NS, &ImageRef::Name("revive/base:1".into()))
        .await
        .unwrap();
    assert!(dirs[1].join("bin/su").exists());
    assert_eq!(fake.reads(&pushed.layer_digests[0]), 2);
    assert_eq!(fake.reads(&pushed.layer_digests[1]), 1);
}

#[tokio::test]
async fn zstd_uncompressed_and_docker_layers_unpack() {
    if !is_root() {
        return;
    }
    let (fake, client, _root, bases) = start().await;
    let styles = [
        ("zstd:1", false, "zstd"),
        ("plain:1", false, ""),
        ("docker:1", true, "gzip"),
        ("docker-plain:1", true, ""),
    ];
    for (name, docker, compression) in styles {
        let layer = Tar::new()
            .file(format!("{name}.txt"), name.as_bytes(), 0o644)
            .bytes();
        fake.push_image(
            NS,
            name,
            &[layer],
            Style {
                docker,
                index: !docker,
                compression,
            },
        );
        let dirs = bases
            .ensure(&client, NS, &ImageRef::Name(name.into()))
            .await
            .unwrap();
        assert_eq!(dirs.len(), 1);
        assert_eq!(
            fs::read(dirs[0].join(format!("{name}.txt"))).unwrap(),
            name.as_bytes()
        );
    }
}

/// Stores a one-layer image whose config gives `diff_id` for the blob `blob`.
fn push_raw(fake: &FakeContainerd, name: &str, blob: &[u8], media_type: &str, diff_id: &str) {
    let digest = fake.add_blob(blob);
    let config = fake.add_json(
        media_types::OCI_CONFIG,
        &json!({"os": "linux", "architecture": host_arch(),
                "rootfs": {"type": "layers", "diff_ids": [diff_id]}}),
    );
    let manifest = fake.add_json(
        media_types::OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "config": {"mediaType": media_types::OCI_CONFIG, "digest": config.digest,
                       "size": config.size},
            "layers": [{"mediaType": media_type, "digest": digest, "size": blob.len()}],
        }),
    );
    fake.add_image(NS, name, manifest);
}

/// Ensures the image called `name`, which must fail, and returns the error.
async fn ensure_fails(bases: &Bases, client: &Client, name: &str) -> BaseError {
    bases
        .ensure(client, NS, &ImageRef::Name(name.into()))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn bad_layers_leave_nothing() {
    if !is_root() {
        return;
    }
    let (fake, client, root, bases) = start().await;
    let gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    let layer = Tar::new().file("f", b"content", 0o644).bytes();

    // The uncompressed content is not what the config says.
    let other = Tar::new().file("f", b"tampered", 0o644).bytes();
    push_raw(
        &fake,
        "mismatch:1",
        &compress(&other, "gzip"),
        gzip,
        &sha256_digest(&layer),
    );
    let err = ensure_fails(&bases, &client, "mismatch:1").await;
    let text = err.to_string();
    assert!(matches!(err, BaseError::Layer { index: 1, .. }), "{text}");
    assert!(
        text.contains(&format!(
            "its uncompressed content has the digest {}, but the image's config says {}",
            sha256_digest(&other),
            sha256_digest(&layer)
        )),
        "{text}"
    );
    assert!(names(bases.dir()).is_empty());

    // Not gzip, not a tar, a media type we do not know.
    let cases: [(&str, Vec<u8>, &str, &str); 3] = [
        ("notgzip:1", layer.clone(), gzip, "cannot unpack"),
        (
            "nottar:1",
            compress(&[7u8; 5000], "gzip"),
            gzip,
            "cannot unpack",
        ),
        (
            "lz4:1",
            layer.clone(),
            "application/vnd.oci.image.layer.v1.tar+lz4",
            "unsupported layer media type",
        ),
    ];
    for (name, blob, media_type, want) in cases {
        push_raw(&fake, name, &blob, media_type, &sha256_digest(&layer));
        let err = ensure_fails(&bases, &client, name).await;
        assert!(err.to_string().contains(want), "{name}: {err}");
        assert!(names(bases.dir()).is_empty(), "{name}");
    }

    // A layer that tries to write outside its directory.
    let outside = root.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let hostile = Tar::new()
        .symlink("escape", outside.to_str().unwrap())
        .file("escape/pwned", b"x", 0o644)
        .bytes();
    push_raw(
        &fake,
        "hostile:1",
        &compress(&hostile, "gzip"),
        gzip,
        &sha256_digest(&hostile),
    );
    let err = ensure_fails(&bases, &client, "hostile:1").await;
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(names(&outside).is_empty());
    assert!(names(bases.dir()).is_empty());
}

#[tokio::test]
async fn a_missing_layer_blob_says_what_to_do() {
    let (fake, client, _root, bases) = start().await;
    let pushed = fake.push_image(
        NS,
        "docker.io/revive/gone:1",
        &two_layers(),
        Style::default(),
    );
    fake.remove_blob(&pushed.layer_digests[1]);
    let err = ensure_fails(&bases, &client, "revive/gone:1").await;
    assert!(
        matches!(
            err,
            BaseError::Containerd(ContainerdError::BlobNotFound { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "layer 2 of image docker.io/revive/gone:1 {} is not in containerd's content \
             store (namespace k8s.io): pull the image again, then create the container again",
            pushed.layer_digests[1]
        )),
        "{err}"
    );
    // The first layer was unpacked (it is complete and may serve another image); nothing
    // else is there.
    let chain = chain_ids(&pushed.diff_ids);
    assert_eq!(bases.list().unwrap(), [chain[0].clone()]);
    assert!(
        names(bases.dir())
            .iter()
            .all(|n| !n.starts_with(TEMP_PREFIX))
    );

    let err = ensure_fails(&bases, &client, "revive/none:1").await;
    assert_eq!(
        err.to_string(),
        "the checkpoint's base image revive/none:1 is not in containerd (namespace k8s.io): \
         import or pull it, then create the container again"
    );
}

/// Ensures `image` on each of `stores` at once, one task each; all must succeed with the
/// same layer directories, which are returned (one list per task).
async fn ensure_all(
    stores: Vec<Arc<Bases>>,
    client: &Client,
    image: &ImageRef,
) -> Vec<Vec<PathBuf>> {
    let tasks: Vec<_> = stores
        .into_iter()
        .map(|bases| {
            let (client, image) = (client.clone(), image.clone());
            tokio::spawn(async move { bases.ensure(&client, NS, &image).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ensures_share_the_layers() {
    if !is_root() {
        return;
    }
    let (fake, client, root, bases) = start().await;
    let bases = Arc::new(bases);
    // Layers big enough for the unpacks to overlap.
    let mut bottom = Tar::new();
    for i in 0..200 {
        bottom.file(format!("d{}/f{i}", i % 10), &vec![b'x'; 10_000 + i], 0o644);
    }
    let layers = vec![bottom.bytes(), two_layers().remove(1)];
    let pushed = fake.push_image(NS, "docker.io/revive/busy:1", &layers, Style::default());
    let image = ImageRef::Name("revive/busy:1".into());

    ensure_all(vec![bases.clone(); 6], &client, &image).await;
    // One process unpacks each layer once.
    for digest in &pushed.layer_digests {
        assert_eq!(fake.reads(digest), 1);
    }

    // Two owners of one root (as two processes would be) race on the renames: both
    // succeed, one copy is discarded, nothing is left over.
    let pushed = fake.push_image(
        NS,
        "docker.io/revive/race:1",
        &[
            layers[0].clone(),
            Tar::new().file("race", b"r", 0o644).bytes(),
        ],
        Style {
            compression: "zstd",
            ..Style::default()
        },
    );
    let other = Arc::new(Bases::open(root.path()).unwrap());
    let image = ImageRef::Name("revive/race:1".into());
    let results = ensure_all(
        vec![bases.clone(), other.clone(), bases.clone(), other],
        &client,
        &image,
    )
    .await;
    assert_eq!(fs::read(results[0][0].join("race")).unwrap(), b"r");
    assert_eq!(
        names(&results[0][1]),
        (0..10).map(|i| format!("d{i}")).collect::<Vec<_>>()
    );
    assert!(
        names(bases.dir())
            .iter()
            .all(|n| !n.starts_with(TEMP_PREFIX))
    );
    let chain = chain_ids(&pushed.diff_ids);
    assert!(bases.list().unwrap().contains(&chain[1]));
}

#[test]
fn open_removes_leftovers_and_layer_dirs_need_a_chain_id() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(BASES_DIR);
    fs::create_dir_all(dir.join("new-abc/fs/x")).unwrap();
    fs::create_dir_all(dir.join("new-rm-def")).unwrap();
    let hex = "a".repeat(64);
    fs::create_dir_all(dir.join(&hex).join("fs")).unwrap();
    fs::create_dir(dir.join("unrelated")).unwrap();
    let bases = Bases::open(root.path()).unwrap();
    assert_eq!(names(&dir), [hex.clone(), "unrelated".to_string()]);
    assert_eq!(bases.list().unwrap(), [format!("sha256:{hex}")]);
    assert_eq!(bases.layer_dir(&hex).unwrap(), dir.join(&hex).join("fs"));
    assert_eq!(
        bases.layer_dir(&format!("sha256:{hex}")),
        bases.layer_dir(&hex)
    );
    for bad in ["", "sha256:", "../../etc", &"A".repeat(64), &"a".repeat(63)] {
        assert_eq!(bases.layer_dir(bad), None, "{bad}");
    }
    // Not ours: left alone by removal.
    assert_eq!(
        bases.remove_unused(&HashSet::new()).unwrap(),
        [format!("sha256:{hex}")]
    );
    assert_eq!(names(&dir), ["unrelated"]);
}
