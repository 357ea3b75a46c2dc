use std::io::ErrorKind;

use tokio::sync::Notify;

use super::*;
use crate::checkpoint::{Base, BaseFuture};

/// Base images for one test: every ref names one image whose single layer is `layer`.
/// `base` says it was called through `found` and returns only once `proceed` is notified;
/// `remove_unused` removes the layer unless it is in use.
#[derive(Debug)]
struct PausedBases {
    layer: PathBuf,
    found: Notify,
    proceed: Notify,
}

impl BaseSource for PausedBases {
    fn base<'a>(&'a self, _namespace: &'a str, refs: &'a [String]) -> BaseFuture<'a> {
        Box::pin(async move {
            self.found.notify_one();
            self.proceed.notified().await;
            Ok(Base {
                image: refs[0].clone(),
                lowers: vec![self.layer.clone()],
            })
        })
    }

    fn remove_unused(&self, in_use: &[PathBuf]) -> Result<Vec<String>> {
        if in_use.contains(&self.layer) {
            return Ok(Vec::new());
        }
        match fs::remove_dir_all(&self.layer) {
            Ok(()) => Ok(vec![self.layer.display().to_string()]),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(SnapshotError::io("failed to remove", &self.layer, e)),
        }
    }
}

/// Writes a checkpoint archive naming `base` into `dir`: CRIU images, metadata, and a
/// rootfs diff adding `/token`, owned by whoever runs the test (so no root is needed).
fn write_archive(dir: &Path, base: &str) {
    fs::create_dir(dir.join("checkpoint")).unwrap();
    for img in ["inventory.img", "pstree.img", "pages-1.img"] {
        fs::write(dir.join("checkpoint").join(img), b"criu").unwrap();
    }
    fs::write(
        dir.join("config.dump"),
        format!(r#"{{"id":"c1","name":"c1","rootfsImageName":"{base}"}}"#),
    )
    .unwrap();
    fs::write(
        dir.join("spec.dump"),
        br#"{"process":{"args":["sh"]},"linux":{},"mounts":[]}"#,
    )
    .unwrap();
    fs::write(dir.join("deleted.files"), b"[]").unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_uid(u64::from(nix::unistd::getuid().as_raw()));
    header.set_gid(u64::from(nix::unistd::getgid().as_raw()));
    header.set_mtime(0);
    header.set_size(3);
    tar.append_data(&mut header, "token", &b"t-1"[..]).unwrap();
    fs::write(dir.join("rootfs-diff.tar"), tar.into_inner().unwrap()).unwrap();
}

/// Cleanup while a Prepare has found its checkpoint's base but not yet recorded the
/// rebuild on it: Cleanup waits for the rebuild, so the base it stands on stays.
#[tokio::test]
async fn cleanup_keeps_a_base_found_but_not_yet_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let layer = dir.path().join("base-layer");
    fs::create_dir(&layer).unwrap();
    fs::write(layer.join("from-base"), b"b").unwrap();
    let bases = Arc::new(PausedBases {
        layer: layer.clone(),
        found: Notify::new(),
        proceed: Notify::new(),
    });
    let waits = Arc::new(Notify::new());
    let mut snapshotter = CheckpointSnapshotter::new(
        OverlaySnapshotter::open(&root).unwrap(),
        Some(Arc::clone(&bases) as Arc<dyn BaseSource>),
    );
    snapshotter.cleanup_waits = Some(Arc::clone(&waits));

    // The checkpoint image's layer, unpacked as containerd does.
    let key = "default/1/extract".to_string();
    let mounts = snapshotter
        .prepare(key.clone(), None, Labels::new())
        .await
        .unwrap();
    write_archive(Path::new(&mounts[0].source), "docker.io/revive/base:1");
    let checkpoint = "default/2/sha256:ck".to_string();
    snapshotter
        .commit(checkpoint.clone(), key, None, Labels::new())
        .await
        .unwrap();

    // A container on it, held between finding its base and rebuilding on it.
    let preparing = tokio::spawn({
        let snapshotter = snapshotter.clone();
        async move {
            snapshotter
                .prepare("default/3/ctr".into(), Some(checkpoint), Labels::new())
                .await
        }
    });
    bases.found.notified().await;

    // Cleanup either runs to its end now, or waits for the rebuild in flight.
    let mut cleanup = tokio::spawn({
        let snapshotter = snapshotter.clone();
        async move { snapshotter.cleanup().await }
    });
    let cleaned_early = tokio::select! {
        done = &mut cleanup => {
            done.unwrap().unwrap();
            true
        }
        () = waits.notified() => false,
    };
    bases.proceed.notify_one();
    let prepared = preparing.await.unwrap();
    if !cleaned_early {
        cleanup.await.unwrap().unwrap();
    }

    assert!(
        layer.join("from-base").is_file() && !cleaned_early,
        "Cleanup removed the base a Prepare had found but not yet rebuilt on (the Prepare: \
         {prepared:?})"
    );
    let mounts = prepared.unwrap();
    let lowerdir = mounts[0]
        .options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap();
    assert_eq!(lowerdir.rsplit(':').next(), Some(&*layer.to_string_lossy()));
}
