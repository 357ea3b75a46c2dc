//! Checkpoint images, on every flavour: a counter checkpointed by stock containerd
//! becomes a checkpoint image in each annotation format, and `ctr run` of it on
//! revive-snapshotter and the revive shim, with no command, comes up restored.

use revive_integration::checkpoint_image;
use revive_integration::{Flavour, Node, on_node};

fn ctr_run_restores(flavour: Flavour) {
    let report = on_node(
        flavour,
        "ckimage",
        "ctr run of checkpoint images",
        |node, say| checkpoint_image::ctr_run_restores(node, say),
    );
    assert_eq!(report.restored.len(), checkpoint_image::Format::ALL.len());
}

/// A pod's container is checkpointed through CRI (containerd 2.x; the kubelet's checkpoint
/// API), and the archive becomes checkpoint images: a pod using one comes up restored on the
/// same node and, migrated, on a containerd 1.7 node, which has no checkpoint API of its own.
/// The restored pod is checkpointed and restored again, three generations deep. `ctr run` of
/// such an image is refused with the reason.
fn pod_restores(flavour: Flavour, migrate_to_stable: bool) {
    use checkpoint_image::Format;
    use revive_integration::cri;
    let node = Node::start(flavour, "ckpod").expect("node starts");
    let say = &mut |step: &str| eprintln!("  {step}");
    let report = cri::cri_scenario(&node, "revive").expect("CRI scenario");
    let cri::CheckpointOutcome::Archive { archive, .. } = &report.checkpoint else {
        panic!(
            "containerd 2.x wrote no checkpoint archive: {}",
            report.checkpoint
        );
    };
    // The base image goes wherever the checkpoint goes: CRIU checks the files it maps.
    let base = revive_integration::image::Image::busybox(&node.rootfs().path).expect("busybox");
    let formats = checkpoint_image::cri_formats(&node);
    checkpoint_image::cri_restores(&node, &base, archive, &report.token, formats, say)
        .unwrap_or_else(|e| {
            panic!(
                "pods from checkpoint images on {flavour}: {e:#}\n{}",
                node.log_tails()
            )
        });
    let images = checkpoint_image::cri_generations(&node, &base, archive, &report.token, 3, say)
        .unwrap_or_else(|e| {
            panic!(
                "generations of pod checkpoints on {flavour}: {e:#}\n{}",
                node.log_tails()
            )
        });
    assert_eq!(images.len(), 3);
    let refused = checkpoint_image::ctr_run_of_pod_checkpoint_is_refused(&node, archive)
        .unwrap_or_else(|e| panic!("ctr run of a pod's checkpoint: {e:#}\n{}", node.log_tails()));
    eprintln!("ctr run of a pod's checkpoint: {refused}");
    let left = node.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
    if !migrate_to_stable {
        return;
    }
    let stable = Node::start(Flavour::Stable, "ckpod").expect("node starts");
    checkpoint_image::cri_restores(&stable, &base, archive, &report.token, &Format::ALL, say)
        .unwrap_or_else(|e| {
            panic!(
                "pods from checkpoint images on stable: {e:#}\n{}",
                stable.log_tails()
            )
        });
    let left = stable.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
}

fn hostile_images(flavour: Flavour) {
    let refusals = on_node(
        flavour,
        "hostile",
        "hostile checkpoint images",
        |node, _| checkpoint_image::hostile_images_are_refused(node),
    );
    for (case, err) in &refusals {
        eprintln!("  {case}: {err}");
    }
}

/// One checkpoint image, ten pods restored from it on one node: each counting on from the
/// checkpoint in a cgroup of its own, the image's root filesystem rebuilt once.
fn many_copies(flavour: Flavour) {
    let report = on_node(
        flavour,
        "copies",
        "pods from one checkpoint image",
        |node, say| revive_integration::copies::many_copies(node, say),
    );
    assert_eq!(report.copies.len(), revive_integration::copies::COPIES);
}

revive_integration::e2e_main! {
    ctr_run_restores_checkpoint_images_latest => ctr_run_restores(Flavour::Latest),
    ctr_run_restores_checkpoint_images_lts => ctr_run_restores(Flavour::Lts),
    ctr_run_restores_checkpoint_images_stable => ctr_run_restores(Flavour::Stable),
    hostile_checkpoint_images_are_refused_lts => hostile_images(Flavour::Lts),
    ten_pods_restore_from_one_checkpoint_image_latest => many_copies(Flavour::Latest),
    ten_pods_restore_from_one_checkpoint_image_lts => many_copies(Flavour::Lts),
    pod_restores_from_a_kubernetes_checkpoint_latest => pod_restores(Flavour::Latest, false),
    pod_restores_from_a_kubernetes_checkpoint_lts => pod_restores(Flavour::Lts, true),
}
