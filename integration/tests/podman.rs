//! Podman's own checkpoints, on the flavours whose node root has Podman (Debian sid's): a
//! counter run and checkpointed by Podman, as a checkpoint image and as `--export` archives
//! (plain, gzip, zstd), comes up restored with `ctr run` on revive, `/dev/shm` and all.

use revive_integration::podman;
use revive_integration::{Flavour, on_node};

fn podman_checkpoints_restore(flavour: Flavour) {
    let report = on_node(
        flavour,
        "podman",
        "Podman's checkpoints under containerd",
        |node, say| podman::podman_restores(node, say),
    );
    eprintln!("{}", report.inspected);
    assert_eq!(report.restored.len(), 1 + podman::COMPRESSIONS.len());
    for (source, counter) in &report.restored {
        assert_eq!(counter.token, report.checkpointed.token, "{source}");
    }
}

/// A container of a Podman pod, checkpointed by Podman, restored as a Kubernetes pod's
/// container through CRI.
fn podman_pod_checkpoint_restores_in_a_pod(flavour: Flavour) {
    let restored = on_node(
        flavour,
        "podpod",
        "Podman's pod checkpoint in a pod",
        |node, say| podman::podman_pod_restores(node, say),
    );
    eprintln!("restored in a pod: {restored}");
}

revive_integration::e2e_main! {
    podman_pod_checkpoint_restores_in_a_pod_latest => podman_pod_checkpoint_restores_in_a_pod(Flavour::Latest),
    podman_pod_checkpoint_restores_in_a_pod_lts => podman_pod_checkpoint_restores_in_a_pod(Flavour::Lts),
    podman_checkpoints_restore_with_ctr_run_latest => podman_checkpoints_restore(Flavour::Latest),
    podman_checkpoints_restore_with_ctr_run_lts => podman_checkpoints_restore(Flavour::Lts),
}
