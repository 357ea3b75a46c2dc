//! The `revive` CLI in a node, on both flavours: containerd's own checkpoint
//! (`ctr container checkpoint --task --rw`, exported) is converted by `revive image convert`
//! into a checkpoint image, which `ctr run` on revive-snapshotter and the revive shim
//! restores.

use revive_integration::checkpoint_image;
use revive_integration::{Flavour, Node, host};

fn convert_restores(flavour: Flavour) {
    if !host::root_or_skip(&format!("revive image convert ({flavour})")) {
        return;
    }
    let node = Node::start(flavour, "cli").expect("node starts");
    let report = checkpoint_image::cli_convert_restores(&node, &mut |step| eprintln!("  {step}"))
        .unwrap_or_else(|e| {
            panic!(
                "revive image convert on {flavour}: {e:#}\n{}",
                node.log_tails()
            )
        });
    eprintln!(
        "revive image inspect of the export:\n{}\nof the converted image:\n{}",
        report.inspect_native, report.inspect_converted
    );
    assert_eq!(report.restored.token, report.checkpointed.token);
    let left = node.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
}

#[test]
fn converted_containerd_checkpoint_restores_next() {
    convert_restores(Flavour::Next);
}

#[test]
fn converted_containerd_checkpoint_restores_stable() {
    convert_restores(Flavour::Stable);
}
