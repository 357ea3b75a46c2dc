//! Podman's own checkpoints restored by revive: a counter run by Debian's Podman in the
//! node is checkpointed by Podman itself, as a checkpoint image (`podman container
//! checkpoint --create-image`) and as `--export` archives (plain, gzip, zstd), and each comes
//! up restored under containerd with `ctr run` on revive: the same process, its `/dev/shm`
//! content, and fresh stand-ins for the files Podman generated (`/etc/hosts`,
//! `/etc/hostname`, `/etc/resolv.conf`, `/run/.containerenv`).
//!
//! Podman runs as on a host without systemd: cgroupfs, a file events log, runc, and its
//! storage on a tmpfs of its own (overlayfs cannot use the node's overlay root as its upper
//! layer). The container has a network namespace of its own with no network (`--network
//! none`), as `ctr run` gives one, and no more privilege than `ctr run` gives (a restore
//! never brings back more): no_new_privs, `ctr run`'s open-files limit and oom_score_adj.

use anyhow::{Context, Result, ensure};

use crate::checkpoint_image::{run_image, said};
use crate::ctr::remove;
use crate::image::{BUSYBOX, Image};
use crate::node::Node;
use crate::scenario::Attempt;
use crate::scenario::{
    COUNTER_SCRIPT, Counter, check_written_at_start, exec_in, parse_counter, wait_count,
    wait_for_count,
};
use crate::snapshotter::SNAPSHOTTER;

/// Podman with the node's settings (see the module's documentation).
const PODMAN: &[&str] = &[
    "podman",
    "--cgroup-manager",
    "cgroupfs",
    "--events-backend",
    "file",
    "--runtime",
    "runc",
    "--storage-driver",
    "overlay",
];

/// The compressions `podman container checkpoint --export` writes.
pub const COMPRESSIONS: [&str; 3] = ["none", "gzip", "zstd"];

/// What [`podman_restores`] saw.
#[derive(Debug)]
pub struct Report {
    /// The counter under Podman before its checkpoints.
    pub checkpointed: Counter,
    /// What `revive image inspect` said of Podman's checkpoint image.
    pub inspected: String,
    /// Per source (`image`, `export-<compression>`): the restored counter.
    pub restored: Vec<(String, Counter)>,
}

pub(crate) fn podman(node: &Node, args: &[&str]) -> Result<String> {
    let mut command = PODMAN.to_vec();
    command.extend_from_slice(args);
    node.run(&command)
}

/// The counter `id` under Podman.
fn podman_counter(node: &Node, id: &str) -> Result<Counter> {
    parse_counter(&podman(node, &["exec", id, "cat", "/state"])?)
}

/// Runs the counter as Podman container `id` with `placement` (its network, pod, ...),
/// no_new_privs, `ctr run`'s open-files limit and `oom_score_adj`, and returns its counter
/// once it counts.
fn run_counter(node: &Node, id: &str, placement: &[&str], oom_score_adj: &str) -> Result<Counter> {
    let mut args = vec!["run", "-d", "--name", id];
    args.extend_from_slice(placement);
    args.extend_from_slice(&[
        "--security-opt",
        "no-new-privileges",
        "--ulimit",
        "nofile=1024:1024",
        "--oom-score-adj",
        oom_score_adj,
        BUSYBOX,
        "sh",
        "-c",
        COUNTER_SCRIPT,
    ]);
    podman(node, &args)?;
    wait_count(|| podman_counter(node, id), 3, id)
}

/// `podman container checkpoint <args> <id>`. A failure carries the error lines and the end
/// of CRIU's log (Podman keeps it as `dump.log` in the container's static directory); one
/// CRIU calls transient (a process in uninterruptible sleep while it froze the container,
/// under load) is tried again, at most three times in all, saying so with `***`.
fn checkpoint(node: &Node, id: &str, args: &[&str]) -> Result<()> {
    let args = [&["container", "checkpoint"], args, &[id]].concat();
    crate::scenario::with_retries(&format!("podman {}", args.join(" ")), || {
        let err = match podman(node, &args) {
            Ok(_) => return Attempt::Done(Ok(())),
            Err(err) => err,
        };
        let log = podman(node, &["inspect", "--format", "{{.StaticDir}}", id])
            .and_then(|dir| node.run(&["cat", &format!("{}/dump.log", dir.trim())]))
            .unwrap_or_default();
        if revive_checkpoint::criulog::transient(&log) {
            return Attempt::Retry(err, "CRIU met a process in uninterruptible sleep");
        }
        let errors = revive_checkpoint::criulog::errors(&log, 5).join("; ");
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Attempt::Done(Err(err.context(format!(
            "CRIU's errors: {errors}\nthe end of CRIU's log:\n{}",
            tail.join("\n")
        ))))
    })
}

/// `podman container checkpoint --leave-running --export <file> --compress <compression>`
/// of container `id`.
pub(crate) fn export(node: &Node, id: &str, file: &str, compression: &str) -> Result<()> {
    checkpoint(
        node,
        id,
        &[
            "--leave-running",
            "--export",
            file,
            "--compress",
            compression,
        ],
    )
}

/// Podman's storage on a tmpfs, and the harness's busybox in it under [`BUSYBOX`].
pub(crate) fn prepare(node: &Node) -> Result<()> {
    node.run(&[
        "sh",
        "-c",
        "mkdir -p /var/lib/containers && mount -t tmpfs -o mode=0700 podman /var/lib/containers",
    ])?;
    node.import_busybox()?;
    let busybox = Image::busybox(&node.rootfs().path)?;
    let loaded = podman(
        node,
        &[
            "load",
            "-q",
            "-i",
            &format!("/share/{}.tar", busybox.file_stem()),
        ],
    )?;
    let loaded = loaded
        .lines()
        .find_map(|l| {
            l.split_once(": ")
                .map(|(_, image)| image.trim().to_string())
        })
        .with_context(|| format!("podman load said no image: {loaded}"))?;
    if loaded != BUSYBOX {
        podman(node, &["tag", &loaded, BUSYBOX])?;
    }
    Ok(())
}

/// A counter run by Podman, checkpointed by Podman into an image and three archives, each
/// restored with `ctr run` on revive-snapshotter and the revive shim (see the module's
/// documentation).
pub fn podman_restores(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Report> {
    prepare(node)?;
    let id = "podman-counter";
    // No more privilege than `ctr run` gives the container it is restored into.
    let before = run_counter(node, id, &["--network", "none"], "1")?;
    // What only a process's /dev/shm holds, saved by Podman beside the checkpoint.
    podman(
        node,
        &["exec", id, "sh", "-c", "cp /written-at-start /dev/shm/kept"],
    )?;
    let hostname = podman(node, &["exec", id, "hostname"])?.trim().to_string();
    narrate(&format!("{id} under Podman: {before}, hostname {hostname}"));
    let reference = "revive.test/podman/counter:1";
    checkpoint(node, id, &["--leave-running", "--create-image", reference])?;
    for compression in COMPRESSIONS {
        export(
            node,
            id,
            &format!("/share/podman-{compression}.tar"),
            compression,
        )?;
    }
    podman(
        node,
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            "/share/podman-image.tar",
            reference,
        ],
    )?;
    podman(node, &["rm", "-f", id])?;
    narrate("Podman checkpointed it into an image and archives (none, gzip, zstd)");
    let inspected = node.run(&["revive", "image", "inspect", "/share/podman-image.tar"])?;
    ensure!(
        inspected.contains("format podman")
            && inspected.lines().any(|l| l.contains("/etc/hosts")
                && l.contains("/dev/shm")
                && l.contains("revive makes"))
            && !inspected.contains("problem"),
        "revive image inspect of Podman's checkpoint image:\n{inspected}"
    );
    let mut restored = Vec::new();
    let new = "from-podman-image";
    restored.push((
        "image".to_string(),
        restore(
            node,
            "/share/podman-image.tar",
            reference,
            new,
            &before,
            &hostname,
        )
        .inspect_err(|_| keep_for_analysis(node, &["/share/podman-image.tar"]))?,
    ));
    narrate(&format!("{new}: {}", restored[0].1));
    for compression in COMPRESSIONS {
        let built = format!("/share/podman-{compression}-image.tar");
        let reference = format!("revive.test/podman/export-{compression}:1");
        node.run(&[
            "revive",
            "image",
            "build",
            "--format",
            "podman",
            &format!("/share/podman-{compression}.tar"),
            &reference,
            "-o",
            &built,
        ])?;
        let new = format!("from-podman-{compression}");
        let counter =
            restore(node, &built, &reference, &new, &before, &hostname).inspect_err(|_| {
                keep_for_analysis(node, &[&built, &format!("/share/podman-{compression}.tar")])
            })?;
        narrate(&format!("{new}: {counter}"));
        restored.push((format!("export-{compression}"), counter));
    }
    Ok(Report {
        checkpointed: before,
        inspected,
        restored,
    })
}

/// Copies the node's `files` (Podman's archives and revive's images of them) into its logs
/// directory, kept on the host after a failed test.
fn keep_for_analysis(node: &Node, files: &[&str]) {
    for file in files {
        let name = file.rsplit('/').next().unwrap_or(file);
        let kept = node.logs_dir().join(name);
        match std::fs::copy(node.host_path(file), &kept) {
            Ok(_) => eprintln!("kept {file} as {}", kept.display()),
            Err(e) => eprintln!("could not keep {file}: {e}"),
        }
    }
}

/// Imports `file` into revive-snapshotter and `ctr run`s `reference` as `new`: it must come
/// up restored from Podman's checkpoint of the counter that showed `before`, with its
/// `/dev/shm` content, its hostname, and stand-ins for Podman's files. Then it is removed.
fn restore(
    node: &Node,
    file: &str,
    reference: &str,
    new: &str,
    before: &Counter,
    hostname: &str,
) -> Result<Counter> {
    node.ctr(&["images", "import", "--snapshotter", SNAPSHOTTER, file])?;
    run_image(node, reference, new)
        .map_err(|e| anyhow::anyhow!("ctr run {reference}: {}", said(&format!("{e:#}"))))?;
    let restored = wait_for_count(node, new, before.count + 3)?;
    ensure!(
        restored.token == before.token,
        "{new} started afresh instead of being restored: {before} -> {restored}"
    );
    check_written_at_start(node, new, &restored)?;
    let read = |path: &str| exec_in(node, new, "read", &["cat", path]);
    ensure!(
        read("/dev/shm/kept")?.trim() == before.token,
        "{new}'s /dev/shm lost what Podman saved of it"
    );
    ensure!(
        read("/etc/hostname")?.trim() == hostname,
        "{new}'s /etc/hostname is not Podman's hostname {hostname}"
    );
    let hosts = read("/etc/hosts")?;
    ensure!(
        hosts.contains("localhost") && hosts.contains(hostname),
        "{new}'s /etc/hosts:\n{hosts}"
    );
    read("/run/.containerenv")?;
    remove(node, new)?;
    Ok(restored)
}

/// A container of a Podman pod with the namespaces a host-network Kubernetes pod's container
/// has (the host's network and UTS namespaces, the ipc namespace of the pod's infra
/// container, a pid namespace of its own), checkpointed by Podman into an image: a pod on
/// RuntimeClass handler `revive` whose container uses that image (or one `revive image
/// build` makes of Podman's `--export` archive) comes up restored, counting on with the
/// checkpoint's token. Podman's pod infra runs the busybox image's `sleep` (the
/// node root has no catatonit for Podman's own pause image).
pub fn podman_pod_restores(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Counter> {
    prepare(node)?;
    let base = Image::busybox(&node.rootfs().path)?;
    let mut client = crate::cri::prepare(node, &base)?;
    let infra = "localhost/revive-infra:1";
    podman(node, &["create", "--name", "infra-source", BUSYBOX, "true"])?;
    podman(
        node,
        &[
            "commit",
            "-q",
            "--change",
            r#"CMD ["sleep", "2147483647"]"#,
            "infra-source",
            infra,
        ],
    )?;
    podman(
        node,
        &[
            "pod",
            "create",
            "--name",
            "pod",
            "--network",
            "host",
            "--share",
            "ipc",
            "--infra-image",
            infra,
        ],
    )?;
    let id = "podman-in-pod";
    let placement = ["--pod", "pod", "--uts", "host", "--network", "host"];
    // No more privilege than a pod's container gets.
    let before = run_counter(node, id, &placement, "1000")?;
    let exported = "/share/podman-pod.tar";
    export(node, id, exported, "zstd")?;
    let image = "revive.test/podman/in-pod:1";
    checkpoint(node, id, &["--create-image", image])?;
    let image_file = "/share/podman-pod-image.tar";
    podman(
        node,
        &["save", "--format", "oci-archive", "-o", image_file, image],
    )?;
    podman(node, &["pod", "rm", "-f", "pod"])?;
    narrate(&format!(
        "{id} in a Podman pod checkpointed at {before}, into an image and an archive"
    ));
    let built = "revive.test/podman/in-pod-export:1";
    let built_file = "/share/podman-pod-export-image.tar";
    node.run(&[
        "revive", "image", "build", "--format", "podman", exported, built, "-o", built_file,
    ])?;
    let mut restored = None;
    for (reference, file) in [(image, image_file), (built, built_file)] {
        let counter = restore_in_pod(node, &mut client, file, reference, &before)?;
        narrate(&format!("a pod from {reference}: {counter}"));
        restored = Some(counter);
    }
    restored.context("no pod restored")
}

/// Imports Podman's checkpoint image `file` into CRI's namespace on revive-snapshotter;
/// a pod whose container uses `reference` must come up restored from the counter that
/// showed `before`. Then the pod is removed.
fn restore_in_pod(
    node: &Node,
    client: &mut crate::cri::Cri,
    file: &str,
    reference: &str,
    before: &Counter,
) -> Result<Counter> {
    let namespace = crate::cri::NAMESPACE;
    node.ctr(&[
        "-n",
        namespace,
        "images",
        "import",
        "--snapshotter",
        SNAPSHOTTER,
        file,
    ])?;
    client.wait_for_image(reference)?;
    let pod = crate::checkpoint_image::restore_pod(&format!(
        "from-{}",
        reference.replace([':', '/', '.'], "-")
    ));
    let ctr = crate::cri::container("counter", reference, &["/bin/sh"]);
    let attempt = crate::checkpoint_image::create_in_pod(node, client, &pod, &ctr)?;
    client
        .start_container(&attempt.id)
        .with_context(|| format!("restoring {reference} in a pod"))?;
    let id = attempt.id.clone();
    let restored = wait_count(
        || parse_counter(&client.exec_sync(&id, &["cat", "/state"], 30)?.stdout),
        before.count + 3,
        &id,
    )?;
    ensure!(
        restored.token == before.token,
        "the pod's container from {reference} started afresh instead of being restored: \
         {before} -> {restored}"
    );
    crate::checkpoint_image::remove_pod(client, &attempt)?;
    Ok(restored)
}
