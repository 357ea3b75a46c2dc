//! Checkpoint and restore of a real process with real containerd, runc and CRIU, on both
//! flavours, through the Go shim (which proves the node) and through revive: the restored
//! process keeps its memory.

use std::time::Instant;

use revive_integration::{Flavour, Node, rootfs, scenario};

fn smoke(flavour: Flavour, runtime: &str) {
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
    let report = scenario::checkpoint_restore_counter(&node, runtime, "smoke", &mut |step| {
        eprintln!("  {step}")
    })
    .expect("checkpoint/restore smoke scenario");
    eprintln!("{report}");
    assert_eq!(report.runtime, runtime);
    assert_eq!(report.restored.token, report.before.token);
    assert!(report.restored.count > report.checkpointed.count);
    // `ctr task checkpoint` without options: into containerd's content store.
    let image = scenario::default_task_checkpoint(&node, runtime, "smoke-default", &mut |step| {
        eprintln!("  {step}")
    })
    .expect("default ctr task checkpoint");
    assert!(image.starts_with("containerd.io/checkpoint/smoke-default:"));
    let left = node.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
}

const RUNC: &str = "io.containerd.runc.v2";
const REVIVE: &str = "io.containerd.revive.v2";

revive_integration::e2e_main! {
    smoke_revive_latest => smoke(Flavour::Latest, REVIVE),
    smoke_revive_lts => smoke(Flavour::Lts, REVIVE),
    smoke_revive_stable => smoke(Flavour::Stable, REVIVE),
    smoke_runc_lts => smoke(Flavour::Lts, RUNC),
    smoke_runc_stable => smoke(Flavour::Stable, RUNC),
}
