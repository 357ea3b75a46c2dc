//! Ordinary images on revive-snapshotter, on the lts flavour: containerd unpacks,
//! runs, checkpoints and restores on revive's snapshots, the snapshotter restarts under a
//! running container, and the shim's whole lifecycle table passes with revive-snapshotter as
//! the only snapshotter `ctr` uses.

use std::time::Instant;

use revive_integration::lifecycle::{self, RowResult};
use revive_integration::snapshotter::{self, SNAPSHOTTER};
use revive_integration::{Flavour, Node, NodeOptions, host};

const REVIVE: &str = "io.containerd.revive.v2";

/// A node whose `ctr` uses revive-snapshotter unless told otherwise.
fn node_on_revive(flavour: Flavour, label: &str) -> Node {
    Node::start_with(
        flavour,
        NodeOptions {
            label: label.into(),
            default_snapshotter: Some(SNAPSHOTTER.into()),
            ..Default::default()
        },
    )
    .expect("node starts")
}

fn ordinary_image(flavour: Flavour) {
    if !host::root_or_skip(&format!("ordinary image on revive-snapshotter ({flavour})")) {
        return;
    }
    let node = node_on_revive(flavour, "snapshotter");
    let report = snapshotter::ordinary_image(&node, REVIVE, &mut |step| eprintln!("  {step}"))
        .unwrap_or_else(|e| {
            panic!(
                "revive-snapshotter on {flavour}: {e:#}\n{}",
                node.log_tails()
            )
        });
    assert!(report.layers > 0);
    assert_eq!(report.after_restart.token, report.before_restart.token);
    assert_eq!(report.restored.token, report.before_restart.token);
    let left = node.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
}

#[test]
fn ordinary_image_on_revive_snapshotter_lts() {
    ordinary_image(Flavour::Lts);
}

fn lifecycle_table(flavour: Flavour) {
    if !host::root_or_skip(&format!("lifecycle on revive-snapshotter ({flavour})")) {
        return;
    }
    let started = Instant::now();
    let node = node_on_revive(flavour, "lifecycle-snapshotter");
    let results: Vec<RowResult> =
        lifecycle::run_table(&node, REVIVE, None).expect("the table runs");
    eprintln!(
        "{} ({flavour} flavour on revive-snapshotter, {:.1?} in all)",
        lifecycle::format_table(REVIVE, &results),
        started.elapsed()
    );
    let failed = lifecycle::failed_rows(&results);
    assert!(
        failed.is_empty(),
        "{REVIVE} on revive-snapshotter, {flavour}: rows failed: {}",
        failed.join(", ")
    );
    // The rows really ran on revive's snapshots: the image's layers are there.
    assert!(
        snapshotter::snapshots(&node)
            .expect("revive's snapshots")
            .iter()
            .any(|(_, kind)| kind == "Committed"),
        "the lifecycle image was not unpacked into revive-snapshotter"
    );
    let left = node.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
}

#[test]
fn lifecycle_on_revive_snapshotter_lts() {
    lifecycle_table(Flavour::Lts);
}
