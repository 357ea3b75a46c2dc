//! The lifecycle scenario table on every flavour, for the Go shim
//! `io.containerd.runc.v2`: the reference a drop-in shim must match row by row.
//!
//! `LIFECYCLE_ROWS=tty,oom cargo test -p revive-integration --test lifecycle` runs some rows.

use std::time::Instant;

use revive_integration::lifecycle::{self, RowResult};
use revive_integration::{Flavour, Node, host, rootfs};

const RUNC: &str = "io.containerd.runc.v2";

fn table(flavour: Flavour, runtime: &str) {
    let test = format!("lifecycle ({runtime}, {flavour})");
    if !host::root_or_skip(&test) {
        return;
    }
    let started = Instant::now();
    let node = Node::start(flavour, "lifecycle").expect("node starts");
    eprintln!(
        "node {} up in {:.1?} ({})",
        node.name(),
        started.elapsed(),
        rootfs::versions_line(&node.rootfs().completion.versions)
    );
    let filter = std::env::var("LIFECYCLE_ROWS").ok();
    let results: Vec<RowResult> =
        lifecycle::run_table(&node, runtime, filter.as_deref()).expect("the table runs");
    eprintln!(
        "{} ({flavour} flavour, {:.1?} in all)",
        lifecycle::format_table(runtime, &results),
        started.elapsed()
    );
    let failed = lifecycle::failed_rows(&results);
    // Panicking while the node is alive prints its logs (containerd's carries the shims').
    assert!(
        failed.is_empty(),
        "{runtime} on {flavour}: rows failed: {}",
        failed.join(", ")
    );
    assert!(
        !results.is_empty(),
        "no row selected by LIFECYCLE_ROWS={filter:?}"
    );
    let left = node.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
}

#[test]
fn lifecycle_runc_stable() {
    table(Flavour::Stable, RUNC);
}

#[test]
fn lifecycle_runc_lts() {
    table(Flavour::Lts, RUNC);
}

const REVIVE: &str = "io.containerd.revive.v2";

#[test]
fn lifecycle_revive_stable() {
    table(Flavour::Stable, REVIVE);
}

#[test]
fn lifecycle_revive_lts() {
    table(Flavour::Lts, REVIVE);
}

#[test]
fn lifecycle_revive_latest() {
    table(Flavour::Latest, REVIVE);
}

/// Events a shim publishes after containerd restarted still reach containerd: the Go shim
/// reconnects, and so must revive (CRI learns that a container stopped only from its
/// `/tasks/exit`).
fn events_after_restart(runtime: &str) {
    let what = format!("events after a containerd restart ({runtime})");
    let line = revive_integration::on_node(Flavour::Lts, "events", &what, |node, _| {
        revive_integration::scenario::events_after_containerd_restart(
            node,
            runtime,
            "after-restart",
            std::time::Duration::from_secs(30),
        )
    });
    if let Some(line) = line {
        eprintln!("{runtime}: {line}");
    }
}

#[test]
fn events_reach_a_restarted_containerd_runc() {
    events_after_restart(RUNC);
}

#[test]
fn events_reach_a_restarted_containerd_revive() {
    events_after_restart(REVIVE);
}
