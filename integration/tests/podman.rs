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

revive_integration::e2e_main! {
    podman_checkpoints_restore_with_ctr_run_latest => podman_checkpoints_restore(Flavour::Latest),
    podman_checkpoints_restore_with_ctr_run_lts => podman_checkpoints_restore(Flavour::Lts),
}
