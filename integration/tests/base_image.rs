//! revive-snapshotter's client of containerd's images and content services and its base
//! image unpacker, against a real containerd (every flavour): an image imported with
//! `ctr images import` resolves by name and by id, its chain ID is the one containerd's
//! own snapshotter uses, and its layer unpacks into the snapshotter's `bases/`.

use std::os::unix::fs::MetadataExt;

use revive_integration::image::BUSYBOX;
use revive_integration::{Flavour, Node};
use revive_snapshotter::base::Bases;
use revive_snapshotter::containerd::{Client, ImageRef};

fn base_image(flavour: Flavour) {
    let node = Node::start(flavour, "base-image").expect("node starts");
    node.import_busybox().expect("busybox imports");
    let socket = format!(
        "/proc/{}/root/run/containerd/containerd.sock",
        node.init_pid()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let root = tempfile::tempdir().unwrap();
    let result = runtime.block_on(async {
        let client = Client::new(&socket);
        let image = client
            .image_layers("default", &ImageRef::Name("revive/busybox".into()))
            .await?;
        let by_id = client
            .image_layers("default", &ImageRef::Id(image.config_digest.clone()))
            .await?;
        let missing = client
            .image_layers("k8s.io", &ImageRef::Name(BUSYBOX.into()))
            .await
            .unwrap_err();
        let bases = Bases::open(root.path()).unwrap();
        let dirs = bases.ensure_image(&client, "default", &image).await?;
        Ok::<_, Box<dyn std::error::Error>>((image, by_id, missing, dirs))
    });
    let (image, by_id, missing, dirs) =
        result.unwrap_or_else(|e| panic!("{flavour}: {e}\n{}", node.log_tails()));
    assert_eq!(image.name, BUSYBOX);
    assert_eq!(by_id, image);
    assert!(!image.layers.is_empty());
    assert!(
        missing
            .to_string()
            .contains("is not in containerd (namespace k8s.io)"),
        "{missing}"
    );
    // containerd's own snapshotter keys the image's top layer by the same chain ID.
    let snapshots = node.ctr(&["snapshots", "ls"]).expect("ctr snapshots ls");
    let top = image.layers.last().unwrap();
    assert!(
        snapshots.contains(&top.chain_id),
        "{} not in\n{snapshots}",
        top.chain_id
    );
    let busybox = dirs[0].join("bin/busybox");
    let meta = std::fs::symlink_metadata(&busybox).expect("bin/busybox unpacked");
    assert!(meta.is_file() && meta.mode() & 0o111 != 0);
    let left = node.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
}

revive_integration::e2e_main! {
    base_image_from_containerd_lts => base_image(Flavour::Lts),
    base_image_from_containerd_stable => base_image(Flavour::Stable),
}
