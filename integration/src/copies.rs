//! Quick start of many copies: one checkpoint image, [`COPIES`] pods restored from it on one
//! node. A counter in a pod on RuntimeClass handler `revive` is checkpointed through CRI
//! (the kubelet's checkpoint API), its archive becomes a checkpoint image, and a pod per copy
//! creates a container from it: each comes up restored, counting on from the checkpoint
//! with the checkpoint's token, in a cgroup of its own, its state its own from there on
//! (its own rw layer), while revive-snapshotter rebuilds the image's root filesystem once.

use anyhow::{Context, Result, ensure};

use crate::checkpoint_image::{Format, FormatImage, create_in_pod, remove_pod, restore_pod};
use crate::cri::{self, Cri};
use crate::image::{BUSYBOX, Image};
use crate::node::Node;
use crate::scenario::{COUNTER_SCRIPT, Counter, parse_counter, wait_count};

/// How many pods are restored from the one image.
pub const COPIES: usize = 10;

/// What [`many_copies`] saw.
#[derive(Debug)]
pub struct Report {
    /// The original's counter right after its checkpoint.
    pub checkpointed: Counter,
    /// Per copy: its counter once it counted on, and its cgroup.
    pub copies: Vec<(Counter, String)>,
}

/// The counter of CRI container `id`.
fn counter(client: &mut Cri, id: &str) -> Result<Counter> {
    parse_counter(&client.exec_sync(id, &["cat", "/state"], 30)?.stdout)
}

/// See the module's documentation.
pub fn many_copies(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Report> {
    let base = Image::busybox(&node.rootfs().path)?;
    let mut client = cri::prepare(node, &base)?;
    let original = restore_pod("copies-original");
    let ctr = cri::container("counter", BUSYBOX, &["/bin/sh", "-c", COUNTER_SCRIPT]);
    let attempt = create_in_pod(node, &mut client, &original, &ctr)?;
    client.start_container(&attempt.id)?;
    wait_count(|| counter(&mut client, &attempt.id), 3, &attempt.id)?;
    let location = "/var/lib/revive/copies-checkpoint.tar";
    client.checkpoint_container(&attempt.id, location, 60)?;
    let checkpointed = counter(&mut client, &attempt.id)?;
    remove_pod(&mut client, &attempt)?;
    node.run(&["mv", location, "/share/copies-checkpoint.tar"])?;
    let archive = std::fs::read(node.share_dir().join("copies-checkpoint.tar"))?;
    narrate(&format!(
        "counter checkpointed through CRI at {checkpointed}, {} bytes",
        archive.len()
    ));
    let name = "revive.test/copies/counter:1";
    let image = Format::CriO.image(name, archive, "counter", BUSYBOX)?;
    cri::import_image(node, &image)?;
    client.wait_for_image(name)?;
    let mut attempts = Vec::new();
    for i in 0..COPIES {
        let pod = restore_pod(&format!("copy-{i}"));
        let ctr = cri::container("counter", name, &["/bin/sh"]);
        let attempt = create_in_pod(node, &mut client, &pod, &ctr)?;
        client
            .start_container(&attempt.id)
            .with_context(|| format!("restoring copy {i}"))?;
        attempts.push(attempt);
    }
    narrate(&format!("{COPIES} pods created from {name} and started"));
    let mut copies = Vec::new();
    for (i, attempt) in attempts.iter().enumerate() {
        let id = &attempt.id;
        let now = wait_count(|| counter(&mut client, id), checkpointed.count + 3, id)?;
        ensure!(
            now.token == checkpointed.token,
            "copy {i} started afresh instead of being restored: {checkpointed} -> {now}"
        );
        let cgroup = client
            .exec_sync(id, &["cat", "/proc/self/cgroup"], 30)?
            .stdout
            .trim()
            .to_string();
        copies.push((now, cgroup));
    }
    let mut cgroups: Vec<&str> = copies.iter().map(|(_, c)| c.as_str()).collect();
    cgroups.sort();
    cgroups.dedup();
    ensure!(
        cgroups.len() == COPIES,
        "the copies share cgroups: {:?}",
        copies.iter().map(|(_, c)| c).collect::<Vec<_>>()
    );
    // Each copy's state is its own from there on: one copy's writes are not another's.
    client.exec_sync(&attempts[0].id, &["sh", "-c", "echo mine > /own"], 30)?;
    let other = client.exec_sync(&attempts[1].id, &["cat", "/own"], 30)?;
    ensure!(other.exit_code != 0, "copy 1 sees copy 0's file: {other:?}");
    let log = std::fs::read_to_string(node.logs_dir().join("snapshotter.log"))?;
    let rebuilds = log
        .lines()
        .filter(|l| l.contains("root filesystem rebuilt"))
        .count();
    ensure!(
        rebuilds == 1,
        "revive-snapshotter rebuilt the image's root filesystem {rebuilds} times for \
         {COPIES} pods, not once"
    );
    narrate(&format!(
        "{COPIES} copies counting on from {checkpointed}, each in its own cgroup; the root \
         filesystem rebuilt once"
    ));
    for attempt in &attempts {
        remove_pod(&mut client, attempt)?;
    }
    let tasks = node.ctr(&["-n", cri::NAMESPACE, "tasks", "ls", "-q"])?;
    ensure!(tasks.trim().is_empty(), "containerd tasks left: {tasks}");
    Ok(Report {
        checkpointed,
        copies,
    })
}
