//! The `revive` CLI in a node, on the lts flavour: containerd's own checkpoint
//! (`ctr container checkpoint --task --rw`, exported) is converted by `revive image convert`
//! into a checkpoint image, which `ctr run` on revive-snapshotter and the revive shim
//! restores.

use revive_integration::checkpoint_image;
use revive_integration::{Flavour, on_node};

fn convert_restores(flavour: Flavour) {
    let report = on_node(flavour, "cli", "revive image convert", |node, say| {
        checkpoint_image::cli_convert_restores(node, say)
    });
    eprintln!(
        "revive image inspect of the export:\n{}\nof the converted image:\n{}",
        report.inspect_native, report.inspect_converted
    );
    assert_eq!(report.restored.token, report.checkpointed.token);
}

/// `revive image build` of a zstd-compressed checkpoint archive (Podman's `--export`
/// default), imported and run on revive.
fn built_archive_restores(flavour: Flavour) {
    let (built, inspected, restored) =
        on_node(flavour, "cli-build", "revive image build", |node, say| {
            checkpoint_image::cli_build_restores(node, say)
        });
    eprintln!("{built}\n{inspected}\nrestored: {restored}");
}

revive_integration::e2e_main! {
    built_zstd_archive_restores_lts => built_archive_restores(Flavour::Lts),
    converted_containerd_checkpoint_restores_lts => convert_restores(Flavour::Lts),
}
