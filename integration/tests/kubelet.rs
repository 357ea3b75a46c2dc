//! A real kubelet and crictl (both built from their Go modules into the lts and latest
//! nodes) drive revive. The kubelet, standalone with static pods and revive as containerd's
//! default runtime, checkpoints a counter pod through its checkpoint API; `revive image
//! build` makes the archive a checkpoint image; the pod's manifest, given that image, brings
//! the counter back restored; three generations in a row. crictl does the CRI-O blog's
//! restore outside Kubernetes: `crictl checkpoint --export`, an image, and a new pod created
//! from it comes up restored.

use std::time::Instant;

use revive_integration::{Flavour, crictl, kubelet, on_node};

fn kubelet_restores(flavour: Flavour) {
    let started = Instant::now();
    let report = on_node(
        flavour,
        "kubelet",
        "a kubelet checkpoints and restores a static pod through revive",
        kubelet::kubelet_restores,
    );
    eprintln!("{report}");
    assert_eq!(report.generations.len() as u32, kubelet::GENERATIONS);
    let token = &report.generations[0].checkpointed.token;
    for g in &report.generations {
        assert_eq!(&g.restored.token, token, "generation {}", g.number);
        assert!(g.restored.count >= g.checkpointed.count);
    }
    eprintln!("kubelet on {flavour}: {:.1?} in all", started.elapsed());
}

fn crictl_restores(flavour: Flavour) {
    let started = Instant::now();
    let report = on_node(
        flavour,
        "crictl",
        "crictl checkpoints a container and restores it into a new pod through revive",
        crictl::crictl_restores,
    );
    eprintln!("{report}");
    assert_eq!(report.restored.token, report.checkpointed.token);
    assert!(report.restored.count >= report.checkpointed.count);
    eprintln!("crictl on {flavour}: {:.1?} in all", started.elapsed());
}

revive_integration::e2e_main! {
    crictl_checkpoints_and_restores_latest => crictl_restores(Flavour::Latest),
    crictl_checkpoints_and_restores_lts => crictl_restores(Flavour::Lts),
    kubelet_checkpoints_and_restores_latest => kubelet_restores(Flavour::Latest),
    kubelet_checkpoints_and_restores_lts => kubelet_restores(Flavour::Lts),
}
