//! Checkpoint images (issue 6): a container created from one, on revive-snapshotter and the
//! revive shim, is restored instead of started, whoever creates it.
//!
//! The archive-in-layer formats all hold a checkpoint archive (the layout kubelet, CRI-O,
//! Podman and checkpointctl write) as the image's single layer and differ in the annotations
//! that name it a checkpoint: [`Format`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use crate::image::{BUSYBOX, Image, ImageBuilder};
use crate::node::Node;
use crate::scenario::{
    COUNTER_SCRIPT, Counter, check_written_at_start, read_counter, remove_container, wait_for_count,
};
use crate::snapshotter::SNAPSHOTTER;

/// The Go shim, which makes the checkpoints restored here: made by stock containerd and
/// runc, restored by revive.
pub const GO_SHIM: &str = "io.containerd.runc.v2";
/// revive's shim.
pub const REVIVE: &str = "io.containerd.revive.v2";

/// How a checkpoint image says what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// checkpointctl and containerd 2.1-2.3: `org.criu.checkpoint.*`, on the index.
    Criu,
    /// CRI-O (kubelet checkpoints built with buildah): `io.kubernetes.cri-o.annotations.
    /// checkpoint.*`, on the manifest.
    CriO,
    /// Podman (`podman container checkpoint --create-image`):
    /// `io.podman.annotations.checkpoint.*`, on the manifest.
    Podman,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Criu, Format::CriO, Format::Podman];

    pub fn name(self) -> &'static str {
        match self {
            Format::Criu => "criu",
            Format::CriO => "cri-o",
            Format::Podman => "podman",
        }
    }

    /// Where the annotations go (true: the index) and their prefix.
    fn annotations(self) -> (bool, &'static str) {
        match self {
            Format::Criu => (true, "org.criu.checkpoint."),
            Format::CriO => (false, "io.kubernetes.cri-o.annotations.checkpoint."),
            Format::Podman => (false, "io.podman.annotations.checkpoint."),
        }
    }

    /// A checkpoint image of this format named `name` whose layer is `archive` (a tar of
    /// the archive's layout), of container `container` of image `base`.
    pub fn image(self, name: &str, archive: Vec<u8>, container: &str, base: &str) -> Result<Image> {
        let (on_index, prefix) = self.annotations();
        let mut builder = ImageBuilder::new(name).raw_layer(archive);
        let fields: BTreeMap<&str, &str> = match self {
            Format::Criu => [
                ("container.name", container),
                ("rootfsImageName", base),
                ("engine", "containerd"),
            ]
            .into(),
            Format::CriO => [("name", container), ("rootfsImageName", base)].into(),
            Format::Podman => [
                ("name", container),
                ("runtime.name", "runc"),
                ("rootfsImageName", base),
            ]
            .into(),
        };
        for (key, value) in fields {
            builder = builder.annotation(on_index, &format!("{prefix}{key}"), value);
        }
        builder.build()
    }
}

/// The tar of the directory `dir` (its content at the archive's root), as a checkpoint
/// archive is made: entries in name order, owners and modes kept.
pub fn tar_dir(dir: &Path) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", dir)
        .with_context(|| format!("archiving {}", dir.display()))?;
    Ok(tar.into_inner()?)
}

/// The overlay upper directory of container `id`'s rootfs on containerd's overlayfs
/// snapshotter (`ctr snapshots mounts`).
fn upperdir(node: &Node, id: &str) -> Result<String> {
    let mounts = node.ctr(&["snapshots", "mounts", "/unused", id])?;
    mounts
        .split([',', ' '])
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(str::to_string)
        .with_context(|| format!("no upperdir in the mounts of {id}: {mounts}"))
}

/// Makes a checkpoint archive of counter container `id` (on the Go shim, overlayfs) the way
/// an engine does, in `/share/<id>-archive` of the node (`<share dir>/<id>-archive` on the
/// host): `ctr task checkpoint --exit --image-path` for CRIU's images, the container's spec
/// as `spec.dump`, its rw layer as `rootfs-diff.tar`, a `config.dump` naming its image. The
/// container is removed. Returns the host directory and the counter at the checkpoint.
pub fn archive_of(node: &Node, id: &str) -> Result<(std::path::PathBuf, Counter)> {
    let dir = format!("/share/{id}-archive");
    node.run(&["mkdir", "-p", &format!("{dir}/checkpoint")])?;
    let at = read_counter(node, id)?;
    node.ctr(&[
        "task",
        "checkpoint",
        "--exit",
        "--image-path",
        &format!("{dir}/checkpoint"),
        id,
    ])?;
    let info: serde_json::Value = serde_json::from_str(&node.ctr(&["containers", "info", id])?)
        .context("ctr containers info")?;
    let host = node.share_dir().join(format!("{id}-archive"));
    std::fs::write(host.join("spec.dump"), serde_json::to_vec(&info["Spec"])?)?;
    let config = serde_json::json!({
        "id": id,
        "name": id,
        "rootfsImage": BUSYBOX,
        "rootfsImageName": BUSYBOX,
        "runtime": GO_SHIM,
        "restored": false,
    });
    std::fs::write(host.join("config.dump"), serde_json::to_vec(&config)?)?;
    let upper = upperdir(node, id)?;
    node.run(&[
        "tar",
        "-C",
        &upper,
        "-cf",
        &format!("{dir}/rootfs-diff.tar"),
        ".",
    ])?;
    remove_container(node, id)?;
    Ok((host, at))
}

/// `ctr run -d --snapshotter revive --runtime revive <image> <id>`, with no command: the
/// container must come up restored.
pub fn run_image(node: &Node, image: &str, id: &str) -> Result<String> {
    node.ctr(&[
        "run",
        "-d",
        "--snapshotter",
        SNAPSHOTTER,
        "--runtime",
        REVIVE,
        image,
        id,
    ])
}

/// What [`ctr_run_restores`] saw.
#[derive(Debug)]
pub struct Report {
    pub checkpointed: Counter,
    /// Per format: the restored counter.
    pub restored: Vec<(Format, Counter)>,
}

/// A counter checkpointed by stock containerd becomes a checkpoint image in every
/// [`Format`]; `ctr run` of each (revive-snapshotter, revive shim, no command) comes up
/// restored: the same token, counting on from the checkpoint, its rw-layer file there, and
/// none of the archive's files in its root.
pub fn ctr_run_restores(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Report> {
    node.import_busybox()?;
    let id = "original";
    node.ctr(&[
        "run",
        "-d",
        "--runtime",
        GO_SHIM,
        BUSYBOX,
        id,
        "sh",
        "-c",
        COUNTER_SCRIPT,
    ])?;
    let before = wait_for_count(node, id, 3)?;
    narrate(&format!("counter {id} on the Go shim: {before}"));
    let (archive_dir, _) = archive_of(node, id)?;
    let archive = tar_dir(&archive_dir)?;
    let checkpointed = before.clone();
    let mut restored = Vec::new();
    for format in Format::ALL {
        let name = format!("revive.test/checkpoint-image/{}:1", format.name());
        let image = format.image(&name, archive.clone(), id, BUSYBOX)?;
        node.import_image(&image)?;
        let new = format!("restored-{}", format.name());
        narrate(&format!("ctr run {name} {new} (format {})", format.name()));
        run_image(node, &name, &new)?;
        let counter = wait_for_count(node, &new, before.count + 3)?;
        ensure!(
            counter.token == before.token,
            "{new} started afresh instead of being restored: {before} -> {counter}"
        );
        check_written_at_start(node, &new, &counter)?;
        let leaked = node.ctr(&[
            "task",
            "exec",
            "--exec-id",
            &format!("ls-{new}"),
            &new,
            "ls",
            "-a",
            "/",
        ])?;
        ensure!(
            !leaked.lines().any(
                |l| ["checkpoint", "spec.dump", "config.dump", "rootfs-diff.tar"]
                    .contains(&l.trim())
            ),
            "the archive's files are visible in {new}'s root:\n{leaked}"
        );
        narrate(&format!("{new} is restored: {counter}"));
        remove_container(node, &new)?;
        restored.push((format, counter));
    }
    Ok(Report {
        checkpointed,
        restored,
    })
}

/// The pod a checkpoint is restored into under CRI: the CRI scenario's pod shape (host
/// network, its own pid namespace, the pod's ipc namespace), a pod of its own.
fn restore_pod(name: &str) -> crate::cri::api::PodSandboxConfig {
    crate::cri::host_network_pod(name, "5e0d1c2b-0000-4000-8000-00000000000b")
}

/// A Kubernetes checkpoint archive (`archive`, of the CRI scenario's workload, which holds
/// `token`) becomes a checkpoint image in each of `formats`; a pod on RuntimeClass handler
/// `revive` (revive shim, revive-snapshotter) creating a container from it comes up with the
/// workload restored: its token, its processes answering, without anyone calling restore.
/// The pod must set a command (a checkpoint image has none); the workload checkpointed is
/// what runs. Then the pod is removed and nothing is left.
pub fn cri_restores(
    node: &Node,
    archive: &[u8],
    token: &str,
    formats: &[Format],
    narrate: &mut dyn FnMut(&str),
) -> Result<()> {
    use crate::cri::{self, Cri};
    let config = cri::cri_config(node)?;
    cri::import_image(node, &cri::pause_image(node, &config.sandbox_image)?)?;
    cri::import_image(node, &Image::busybox(&node.rootfs().path)?)?;
    let mut client = Cri::connect(node)?;
    client.wait_for_image(&config.sandbox_image)?;
    client.wait_for_image(BUSYBOX)?;
    for format in formats {
        let name = format!("revive.test/cri-checkpoint/{}:1", format.name());
        let image = format.image(&name, archive.to_vec(), "workload", BUSYBOX)?;
        cri::import_image(node, &image)?;
        client.wait_for_image(&name)?;
        let pod = restore_pod(&format!("restore-{}", format.name()));
        node.run(&["mkdir", "-p", &pod.log_directory])?;
        let pod_id = client.run_pod_sandbox(&pod, "revive")?;
        let ctr = cri::container("workload", &name, &["/bin/sh"]);
        let id = client.create_container(&pod_id, &ctr, &pod)?;
        client.start_container(&id)?;
        client.wait_for_state(&id, cri::api::ContainerState::ContainerRunning)?;
        let seen = client.exec_sync(&id, &["cat", "/token"], 30)?;
        ensure!(
            seen.exit_code == 0 && seen.stdout.trim() == token,
            "the pod's container from {name} is not the checkpointed workload: /token {seen:?}, \
             expected {token}"
        );
        let ps = client.exec_sync(&id, &["ps", "-o", "args"], 30)?;
        ensure!(
            ps.stdout.contains(cri::WORKLOAD_MARKER),
            "the checkpointed workload is not running in the restored container:\n{}",
            ps.stdout
        );
        narrate(&format!(
            "pod from {name} ({}): restored, token {token}",
            format.name()
        ));
        client.stop_container(&id, 10)?;
        client.remove_container(&id)?;
        client.stop_pod_sandbox(&pod_id)?;
        client.remove_pod_sandbox(&pod_id)?;
    }
    let tasks = node.ctr(&["-n", cri::NAMESPACE, "tasks", "ls", "-q"])?;
    ensure!(tasks.trim().is_empty(), "containerd tasks left: {tasks}");
    Ok(())
}

/// `ctr run` of a checkpoint image made from a pod's container cannot restore it (it joined
/// the pod's namespaces, had CRI's bind mounts): it must fail naming why, leaving no task
/// and no mount, and the container record must remove cleanly.
pub fn ctr_run_of_pod_checkpoint_is_refused(node: &Node, archive: &[u8]) -> Result<String> {
    node.import_busybox()?;
    let name = "revive.test/cri-checkpoint/for-ctr:1";
    let image = Format::CriO.image(name, archive.to_vec(), "workload", BUSYBOX)?;
    node.import_image(&image)?;
    let id = "from-pod";
    let err = match run_image(node, name, id) {
        Ok(out) => anyhow::bail!("ctr run of a pod's checkpoint succeeded: {out}"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("pod") || err.contains("mounted at"),
        "ctr run of a pod's checkpoint failed without saying why: {err}"
    );
    let tasks = node.ctr(&["tasks", "ls", "-q"])?;
    ensure!(
        tasks.trim().is_empty(),
        "a refused restore left a task: {tasks}"
    );
    let mounts = node.run(&["cat", "/proc/mounts"])?;
    ensure!(
        !mounts.contains(&format!("/{id}/rootfs")),
        "a refused restore left its rootfs mounted:\n{mounts}"
    );
    let _ = node.ctr(&["containers", "rm", id]);
    Ok(err)
}

/// What [`cli_convert_restores`] saw.
#[derive(Debug)]
pub struct ConvertReport {
    pub checkpointed: Counter,
    pub restored: Counter,
    /// `revive image inspect` of the export and of the converted image.
    pub inspect_native: String,
    pub inspect_converted: String,
}

/// containerd's own checkpoint, converted by the `revive` CLI, restores: a counter on the Go
/// shim is checkpointed with `ctr container checkpoint --task --rw` (an image no client can
/// create a container from) and removed; the checkpoint is exported with `ctr images
/// export`, converted with `revive image convert`, imported, and `ctr run` of the result
/// (revive-snapshotter, revive shim, no command) comes up restored: the same token, counting
/// on, its rw-layer file there.
pub fn cli_convert_restores(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<ConvertReport> {
    node.import_busybox()?;
    let id = "native";
    let native = "revive.test/native/ck:1";
    let converted = "revive.test/cli/converted:1";
    node.ctr(&[
        "run",
        "-d",
        "--runtime",
        GO_SHIM,
        BUSYBOX,
        id,
        "sh",
        "-c",
        COUNTER_SCRIPT,
    ])?;
    let before = wait_for_count(node, id, 3)?;
    narrate(&format!("counter {id} on the Go shim: {before}"));
    node.ctr(&["container", "checkpoint", "--task", "--rw", id, native])?;
    let checkpointed = read_counter(node, id)?;
    remove_container(node, id)?;
    narrate(&format!(
        "ctr container checkpoint --task --rw {id} {native}; container removed"
    ));
    // containerd 2.x's ctr fails to write the Docker manifest.json of a checkpoint ("unable
    // to create manifests file"): its entries are not manifests.
    node.ctr(&[
        "images",
        "export",
        "--skip-manifest-json",
        "/share/native.tar",
        native,
    ])?;
    let inspect_native = node.run(&["revive", "image", "inspect", "/share/native.tar"])?;
    narrate(&format!(
        "revive image inspect /share/native.tar:\n{inspect_native}"
    ));
    ensure!(
        inspect_native.contains("containerd checkpoint")
            && inspect_native.contains("revive image convert"),
        "revive image inspect does not say the export is containerd's checkpoint:\n\
         {inspect_native}"
    );
    let out = node.run(&[
        "revive",
        "image",
        "convert",
        "/share/native.tar",
        converted,
        "-o",
        "/share/converted.tar",
    ])?;
    narrate(out.trim());
    let mode = node.run(&["stat", "-c", "%a", "/share/converted.tar"])?;
    ensure!(
        mode.trim() == "600",
        "the converted image is mode {}, not 600",
        mode.trim()
    );
    let inspect_converted = node.run(&["revive", "image", "inspect", "/share/converted.tar"])?;
    ensure!(
        inspect_converted.contains("format criu") && inspect_converted.contains(BUSYBOX),
        "revive image inspect of the converted image:\n{inspect_converted}"
    );
    node.ctr(&["images", "import", "/share/converted.tar"])?;
    let new = "converted";
    narrate(&format!("ctr run {converted} {new}"));
    run_image(node, converted, new)?;
    // The checkpoint was taken between `before` and `checkpointed`.
    let restored = wait_for_count(node, new, before.count + 3)?;
    ensure!(
        restored.token == before.token,
        "{new} started afresh instead of being restored: {before} -> {restored}"
    );
    check_written_at_start(node, new, &restored)?;
    narrate(&format!("{new} is restored: {restored}"));
    remove_container(node, new)?;
    Ok(ConvertReport {
        checkpointed,
        restored,
        inspect_native,
        inspect_converted,
    })
}
