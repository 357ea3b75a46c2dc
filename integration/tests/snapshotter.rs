//! Ordinary images on revive-snapshotter, on the lts flavour: containerd unpacks,
//! runs, checkpoints and restores on revive's snapshots, the snapshotter restarts under a
//! running container, and the shim's whole lifecycle table passes with revive-snapshotter as
//! the only snapshotter `ctr` uses.

use std::process::ExitCode;

use anyhow::ensure;
use revive_integration::harness::Suite;
use revive_integration::lifecycle;
use revive_integration::snapshotter::{self, SNAPSHOTTER};
use revive_integration::{Flavour, Node, NodeOptions};

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

fn main() -> ExitCode {
    let mut suite = Suite::new();
    suite.e2e("ordinary_image_on_revive_snapshotter_lts", || {
        ordinary_image(Flavour::Lts)
    });
    // Every row of the lifecycle table is a test of its own; the rows share one node.
    let table = lifecycle::shared_table(
        REVIVE,
        || Ok(node_on_revive(Flavour::Lts, "lifecycle-snapshotter")),
        |table| {
            // The rows really ran on revive's snapshots: the image's layers are there.
            ensure!(
                snapshotter::snapshots(table.node())?
                    .iter()
                    .any(|(_, kind)| kind == "Committed"),
                "the lifecycle image was not unpacked into revive-snapshotter"
            );
            Ok(())
        },
    );
    for row in lifecycle::ROWS {
        lifecycle::add_row(
            &mut suite,
            &table,
            "lifecycle_on_revive_snapshotter_lts",
            row,
        );
    }
    suite.run()
}
