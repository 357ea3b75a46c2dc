//! containerd's CRI driven as the kubelet would (RunPodSandbox with host networking,
//! CreateContainer, StartContainer, ExecSync, ContainerStats, StopContainer,
//! RemovePodSandbox), with a locally built sandbox image, on every flavour. Handler `runc`
//! (the Go shim) proves the harness; handler `revive` runs the same scenario once the shim
//! runs containers.

use std::time::Instant;

use revive_integration::{Flavour, Node, cri, rootfs};

fn cri_on(flavour: Flavour, handler: &str) {
    let test = format!("cri_{handler}_{flavour}");
    let started = Instant::now();
    let node = Node::start(flavour, &test).expect("node starts");
    eprintln!(
        "node {} up in {:.1?} ({})",
        node.name(),
        started.elapsed(),
        rootfs::versions_line(&node.rootfs().completion.versions)
    );
    let report = cri::cri_scenario(&node, handler).expect("CRI scenario");
    eprintln!("{report}");
    assert_eq!(report.handler, handler);
    assert_eq!(report.exec.exit_code, 7);
    assert!(report.stats.memory_working_set_bytes.unwrap_or(0) > 0);
    let left = node.stop().expect("node stops");
    assert!(left.is_empty(), "node left behind: {left:?}");
    eprintln!("{test} took {:.1?}", started.elapsed());
}

revive_integration::e2e_main! {
    cri_revive_latest => cri_on(Flavour::Latest, "revive"),
    cri_revive_lts => cri_on(Flavour::Lts, "revive"),
    cri_revive_stable => cri_on(Flavour::Stable, "revive"),
    cri_runc_lts => cri_on(Flavour::Lts, "runc"),
    cri_runc_stable => cri_on(Flavour::Stable, "runc"),
}
