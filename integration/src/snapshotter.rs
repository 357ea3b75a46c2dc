//! Ordinary images on revive-snapshotter: containerd unpacks an image into revive's
//! snapshots, runs containers whose root filesystems are revive's overlay mounts, checkpoints
//! and restores them (the rw layer diffed and re-applied through revive's mounts), and the
//! snapshotter restarts under a running container without losing anything.

use anyhow::{Context, Result, ensure};

use crate::ctr;
use crate::image::BUSYBOX;
use crate::node::Node;
use crate::scenario::{
    Counter, check_written_at_start, checkpoint_and_restore, read_counter, remove_container,
    start_counter, wait_for_count,
};

/// The proxy snapshotter's name in containerd's config (`config/`).
pub const SNAPSHOTTER: &str = "revive";

/// Where revive-snapshotter keeps its snapshot directories inside a node (its default root).
pub const SNAPSHOTS_DIR: &str = "/var/lib/revive/snapshotter/snapshots/";

/// What [`ordinary_image`] saw.
#[derive(Debug)]
pub struct Report {
    /// Committed snapshots (image layers) revive held after the import.
    pub layers: usize,
    pub before_restart: Counter,
    pub after_restart: Counter,
    pub restored: Counter,
}

/// `ctr snapshots ls` of revive: (key, kind) pairs.
pub fn snapshots(node: &Node) -> Result<Vec<(String, String)>> {
    let listing = node.ctr(&["snapshots", "--snapshotter", SNAPSHOTTER, "ls"])?;
    Ok(listing
        .lines()
        .skip(1)
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            Some((words.first()?.to_string(), words.last()?.to_string()))
        })
        .collect())
}

/// The node's mount of container `id`'s root filesystem, if it is one of revive's overlays.
fn revive_rootfs_mount(node: &Node, id: &str) -> Result<String> {
    let mounts = node.run(&["cat", "/proc/mounts"])?;
    let target = format!("/{id}/rootfs ");
    mounts
        .lines()
        .find(|l| l.contains(&target))
        .filter(|l| l.starts_with("overlay ") && l.contains(&format!("upperdir={SNAPSHOTS_DIR}")))
        .map(str::to_string)
        .with_context(|| {
            format!("the rootfs of {id} is not an overlay of revive's snapshots:\n{mounts}")
        })
}

/// The scenario, in a node whose `ctr` defaults to revive-snapshotter
/// (`NodeOptions::default_snapshotter`), for containers on `runtime`:
/// 1. the busybox image is imported (unpacked into revive: committed layers);
/// 2. `ctr run --rm` of it prints what it was told;
/// 3. a counter runs on revive's overlay (its rootfs mount shows revive's directories);
/// 4. revive-snapshotter restarts under it: the counter goes on, its snapshot is still listed
///    as active;
/// 5. `ctr c checkpoint --task --rw`, removal, `ctr c restore --live --rw`: the counter
///    continues with its memory, on a revive overlay again, with the file it wrote into its rw
///    layer before the checkpoint;
/// 6. removing the container removes its snapshot.
pub fn ordinary_image(node: &Node, runtime: &str, narrate: &mut dyn FnMut(&str)) -> Result<Report> {
    node.import_busybox()?;
    let layers = snapshots(node)?
        .iter()
        .filter(|(_, kind)| kind == "Committed")
        .count();
    ensure!(layers > 0, "the import unpacked no layer into revive");
    narrate(&format!("imported: {layers} committed layer(s) in revive"));

    let echoed = node.ctr(&ctr::run_args(
        &["--rm"],
        runtime,
        BUSYBOX,
        "snap-echo",
        &["echo", "from a revive snapshot"],
    ))?;
    ensure!(
        echoed.trim() == "from a revive snapshot",
        "ctr run --rm printed {echoed:?}"
    );

    let id = "snap-counter";
    let before_restart = start_counter(node, runtime, id)?;
    narrate(&format!(
        "counter on {}",
        revive_rootfs_mount(node, id)?
            .split(',')
            .find(|o| o.starts_with("upperdir="))
            .unwrap_or("revive's overlay")
    ));

    node.restart_snapshotter()?;
    let after_restart = wait_for_count(node, id, before_restart.count + 3)?;
    ensure!(
        after_restart.token == before_restart.token,
        "the counter restarted across the snapshotter's restart"
    );
    ensure!(
        snapshots(node)?
            .iter()
            .any(|(key, kind)| key == id && kind == "Active"),
        "after its restart revive no longer lists {id} as active"
    );
    narrate(&format!(
        "revive-snapshotter restarted; still running: {after_restart}"
    ));

    let image = format!("revive.test/checkpoint/{id}:1");
    let checkpointed = checkpoint_and_restore(node, runtime, id, &image, read_counter)?;
    let restored = wait_for_count(node, id, checkpointed.count + 3)?;
    ensure!(
        restored.token == checkpointed.token,
        "the restored counter started afresh: {checkpointed} -> {restored}"
    );
    revive_rootfs_mount(node, id)?;
    check_written_at_start(node, id, &restored)?;
    narrate(&format!(
        "checkpointed at {checkpointed}, restored on revive: {restored}, rw layer kept"
    ));
    remove_container(node, id)?;
    ensure!(
        !snapshots(node)?.iter().any(|(key, _)| key == id),
        "removing {id} left its snapshot in revive"
    );
    Ok(Report {
        layers,
        before_restart,
        after_restart,
        restored,
    })
}
