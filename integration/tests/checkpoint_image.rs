//! Checkpoint images (issue 6), on both flavours: a counter checkpointed by stock containerd
//! becomes a checkpoint image in each annotation format, and `ctr run` of it on
//! revive-snapshotter and the revive shim, with no command, comes up restored.

use revive_integration::checkpoint_image;
use revive_integration::{Flavour, Node, host};

fn ctr_run_restores(flavour: Flavour) {
    if !host::root_or_skip(&format!("ctr run of checkpoint images ({flavour})")) {
        return;
    }
    let node = Node::start(flavour, "ckimage").expect("node starts");
    let report = checkpoint_image::ctr_run_restores(&node, &mut |step| eprintln!("  {step}"))
        .unwrap_or_else(|e| {
            panic!(
                "checkpoint images on {flavour}: {e:#}\n{}",
                node.log_tails()
            )
        });
    assert_eq!(report.restored.len(), checkpoint_image::Format::ALL.len());
    let left = node.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
}

#[test]
fn ctr_run_restores_checkpoint_images_next() {
    ctr_run_restores(Flavour::Next);
}

#[test]
fn ctr_run_restores_checkpoint_images_stable() {
    ctr_run_restores(Flavour::Stable);
}
