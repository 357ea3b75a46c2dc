//! The node works: the stock runc shim checkpoints and restores a real process with real
//! containerd, runc and CRIU, and the process keeps its memory. Runs on both flavours.

use std::time::Instant;

use revive_integration::{Flavour, Node, host, rootfs, scenario};

fn smoke(flavour: Flavour) {
    if !host::root_or_skip(&format!("smoke_{flavour}")) {
        return;
    }
    let started = Instant::now();
    let node = Node::start(flavour, "smoke").expect("node starts");
    eprintln!(
        "node {} up in {:.1?} ({})",
        node.name(),
        started.elapsed(),
        rootfs::versions_line(&node.rootfs().completion.versions)
    );
    // CRIU itself agrees the node can checkpoint.
    let check = node
        .run(&["criu", "check"])
        .expect("criu check passes in the node");
    assert!(check.contains("Looks good"), "criu check: {check}");
    let report = scenario::checkpoint_restore_counter(
        &node,
        "io.containerd.runc.v2",
        "smoke",
        &mut |step| eprintln!("  {step}"),
    )
    .expect("checkpoint/restore smoke scenario");
    eprintln!("{report}");
    assert_eq!(report.restored.token, report.before.token);
    assert!(report.restored.count > report.checkpointed.count);
    let left = node.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
}

#[test]
fn smoke_stable() {
    smoke(Flavour::Stable);
}

#[test]
fn smoke_next() {
    smoke(Flavour::Next);
}
