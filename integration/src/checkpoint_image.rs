//! Checkpoint images: a container created from one, on revive-snapshotter and the
//! revive shim, is restored instead of started, whoever creates it.
//!
//! The archive-in-layer formats all hold a checkpoint archive (the layout kubelet, CRI-O,
//! Podman and checkpointctl write) as the image's single layer and differ in the annotations
//! that name it a checkpoint: [`Format`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use crate::ctr::remove;
use crate::image::{BUSYBOX, Image, ImageBuilder};
use crate::node::Node;
use crate::scenario::{
    COUNTER_SCRIPT, Counter, check_written_at_start, read_counter, run_shell, start_counter,
    wait_for_count,
};
use crate::snapshotter::SNAPSHOTTER;

/// The Go shim, which makes the checkpoints restored here: made by stock containerd and
/// runc, restored by revive.
pub const GO_SHIM: &str = "io.containerd.runc.v2";
/// revive's shim.
pub const REVIVE: &str = "io.containerd.revive.v2";

/// How a checkpoint image says what it is: the `revive` CLI's formats, whose annotation
/// namespaces the snapshotter recognises.
pub use revive_cli::format::Format;

/// A checkpoint image of one [`Format`], as the tool that writes that format annotates it.
pub trait FormatImage {
    /// A checkpoint image of this format named `name` whose layer is `archive` (a tar of
    /// the archive's layout), of container `container` of image `base`.
    fn image(self, name: &str, archive: Vec<u8>, container: &str, base: &str) -> Result<Image>;
}

impl FormatImage for Format {
    fn image(self, name: &str, archive: Vec<u8>, container: &str, base: &str) -> Result<Image> {
        let (on_index, prefix) = (self.on_index(), self.prefix());
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
    let at = read_counter(node, id)?;
    Ok((archive_dir_of(node, id)?, at))
}

/// Writes an archive's `spec.dump` (the spec of `ctr containers info`'s output `info`) and
/// `config.dump` (container `id` of [`BUSYBOX`] on the Go shim, not restored) into `dir`.
pub fn write_dumps(dir: &Path, id: &str, info: &str) -> Result<()> {
    let info: serde_json::Value = serde_json::from_str(info).context("ctr containers info")?;
    std::fs::write(dir.join("spec.dump"), serde_json::to_vec(&info["Spec"])?)?;
    let config = serde_json::json!({
        "id": id,
        "name": id,
        "rootfsImage": BUSYBOX,
        "rootfsImageName": BUSYBOX,
        "runtime": GO_SHIM,
        "restored": false,
    });
    std::fs::write(dir.join("config.dump"), serde_json::to_vec(&config)?)?;
    Ok(())
}

/// [`archive_of`] for any running container `id` on the Go shim and overlayfs (the
/// benchmark's workload keeps no counter): the archive's host directory.
pub fn archive_dir_of(node: &Node, id: &str) -> Result<std::path::PathBuf> {
    let dir = format!("/share/{id}-archive");
    node.run(&["mkdir", "-p", &format!("{dir}/checkpoint")])?;
    crate::scenario::ctr_checkpoint(
        node,
        GO_SHIM,
        &[
            "task",
            "checkpoint",
            "--exit",
            "--image-path",
            &format!("{dir}/checkpoint"),
            id,
        ],
    )?;
    let info = node.ctr(&["containers", "info", id])?;
    let host = node.share_dir().join(format!("{id}-archive"));
    write_dumps(&host, id, &info)?;
    let upper = upperdir(node, id)?;
    node.run(&[
        "tar",
        "-C",
        &upper,
        "-cf",
        &format!("{dir}/rootfs-diff.tar"),
        ".",
    ])?;
    remove(node, id)?;
    Ok(host)
}

/// `ctr run -d --snapshotter revive --runtime revive <image> <id>`, with no command: the
/// container must come up restored.
pub fn run_image(node: &Node, image: &str, id: &str) -> Result<String> {
    run_image_with(node, image, id, &[])
}

/// [`run_image`] with more `ctr run` flags (`--privileged`, `--user 1000:1000`, ...).
pub fn run_image_with(node: &Node, image: &str, id: &str, flags: &[&str]) -> Result<String> {
    let mut args = vec![
        "run",
        "-d",
        "--snapshotter",
        SNAPSHOTTER,
        "--runtime",
        REVIVE,
    ];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[image, id]);
    node.ctr(&args)
}

/// What a failed `ctr` said: its stderr (the last part of [`Node::run`]'s error, all its
/// lines), or the whole error.
pub fn said(err: &str) -> String {
    err.split_once("\nstderr: ")
        .map_or(err, |(_, stderr)| stderr)
        .to_string()
}

/// After `ctr run` of a checkpoint image as container `id` was refused: no task is left and
/// its rootfs is not mounted; then its record (which ctr keeps) is removed, and no snapshot
/// of it is left.
pub fn check_refusal_left_nothing(node: &Node, id: &str) -> Result<()> {
    let tasks = node.ctr(&["tasks", "ls", "-q"])?;
    ensure!(
        tasks.trim().is_empty(),
        "the refused {id} left a task: {tasks}"
    );
    let mounts = node.run(&["cat", "/proc/mounts"])?;
    ensure!(
        !mounts.contains(&format!("/{id}/rootfs")),
        "the refused {id} left its rootfs mounted:\n{mounts}"
    );
    let _ = node.ctr(&["containers", "rm", id]);
    let snapshots = crate::snapshotter::snapshots(node)?;
    ensure!(
        !snapshots.iter().any(|(key, _)| key == id),
        "the refused {id} left its snapshot: {snapshots:?}"
    );
    Ok(())
}

/// What [`ctr_run_restores`] saw.
#[derive(Debug)]
pub struct Report {
    pub checkpointed: Counter,
    /// Per format: the restored counter.
    pub restored: Vec<(Format, Counter)>,
}

/// Beside the counter, `dd` holds this many MiB of random bytes in its buffer (blocked
/// writing into a pipe nobody reads), so that the checkpoint image's layer has chunks that
/// its gzip stores rather than compresses.
const RANDOM_MIB: u64 = 4;

/// A counter checkpointed by stock containerd becomes a checkpoint image in every
/// [`Format`]; `ctr run` of each (revive-snapshotter, revive shim, no command) comes up
/// restored: the same token, counting on from the checkpoint, its rw-layer file there, and
/// none of the archive's files in its root.
pub fn ctr_run_restores(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Report> {
    node.import_busybox()?;
    let id = "original";
    let script = format!(
        "dd if=/dev/urandom bs={RANDOM_MIB}M count=1 iflag=fullblock 2>/dev/null | \
         sleep 100000 & {COUNTER_SCRIPT}"
    );
    run_shell(node, GO_SHIM, id, &script)?;
    let before = wait_for_count(node, id, 3)?;
    narrate(&format!("counter {id} on the Go shim: {before}"));
    let (archive_dir, _) = archive_of(node, id)?;
    let archive = tar_dir(&archive_dir)?;
    let checkpointed = before.clone();
    let mut restored = Vec::new();
    for format in Format::ALL {
        let name = format!("revive.test/checkpoint-image/{}:1", format.name());
        let image = format.image(&name, archive.clone(), id, BUSYBOX)?;
        ensure!(
            image.stored_bytes >= (RANDOM_MIB - 1) << 20,
            "the layer of {name} stored only {} bytes, though it holds {RANDOM_MIB} MiB of \
             random memory",
            image.stored_bytes
        );
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
        remove(node, &new)?;
        restored.push((format, counter));
    }
    // A restored container outlives a restart of the snapshotter, and is itself
    // checkpointed and restored (its rw layer diffed against the checkpoint's rootfs).
    let name = format!("revive.test/checkpoint-image/{}:1", Format::CriO.name());
    let again = "restored-again";
    run_image(node, &name, again)?;
    let running = wait_for_count(node, again, before.count + 3)?;
    let mounts = |id: &str| {
        node.ctr(&[
            "snapshots",
            "--snapshotter",
            SNAPSHOTTER,
            "mounts",
            "/x",
            id,
        ])
    };
    let before_restart = mounts(again)?;
    node.restart_snapshotter()?;
    let after = wait_for_count(node, again, running.count + 3)?;
    ensure!(
        after.token == before.token && mounts(again)? == before_restart,
        "across the snapshotter's restart: {running} -> {after}, mounts {before_restart} -> {}",
        mounts(again)?
    );
    narrate(&format!(
        "revive-snapshotter restarted under {again}: {after}"
    ));
    let image = "revive.test/checkpoint/restored-again:1";
    node.ctr(&["container", "checkpoint", "--task", "--rw", again, image])?;
    let at = read_counter(node, again)?;
    remove(node, again)?;
    node.ctr(&["container", "restore", "--live", "--rw", again, image])?;
    let last = wait_for_count(node, again, at.count + 3)?;
    ensure!(
        last.token == before.token,
        "the restored container, checkpointed and restored again, started afresh: {last}"
    );
    check_written_at_start(node, again, &last)?;
    narrate(&format!("{again} checkpointed and restored again: {last}"));
    remove(node, again)?;
    Ok(Report {
        checkpointed,
        restored,
    })
}

/// The pod a checkpoint is restored into under CRI: the CRI scenario's pod shape (host
/// network, its own pid namespace, the pod's ipc namespace), a pod of its own.
pub fn restore_pod(name: &str) -> crate::cri::api::PodSandboxConfig {
    crate::cri::host_network_pod(name, "5e0d1c2b-0000-4000-8000-00000000000b")
}

/// A Kubernetes checkpoint archive (`archive`, of the CRI scenario's workload, which holds
/// `token`, from image `base`: imported here, as a migration brings its image along) becomes a checkpoint image in each of `formats`; a pod on RuntimeClass handler
/// `revive` (revive shim, revive-snapshotter) creating a container from it comes up with the
/// workload restored: its token, its processes answering, without anyone calling restore.
/// The pod must set a command (a checkpoint image has none); the workload checkpointed is
/// what runs. Then the pod is removed and nothing is left.
pub fn cri_restores(
    node: &Node,
    base: &Image,
    archive: &[u8],
    token: &str,
    formats: &[Format],
    narrate: &mut dyn FnMut(&str),
) -> Result<()> {
    use crate::cri;
    let mut client = cri::prepare(node, base)?;
    for format in formats {
        let name = format!("revive.test/cri-checkpoint/{}:1", format.name());
        let image = format.image(&name, archive.to_vec(), "workload", BUSYBOX)?;
        cri::import_image(node, &image)?;
        client.wait_for_image(&name)?;
        let pod = restore_pod(&format!("restore-{}", format.name()));
        let ctr = cri::container("workload", &name, &["/bin/sh"]);
        let attempt = create_in_pod(node, &mut client, &pod, &ctr)?;
        if let Err(e) = client.start_container(&attempt.id) {
            let log = node
                .sh("for f in $(find /run/containerd -name criu-restore.log); do tail -40 $f; done")
                .unwrap_or_default();
            return Err(e.context(format!("CRIU's restore log:\n{log}")));
        }
        check_restored_workload(&mut client, &attempt.id, token)?;
        narrate(&format!(
            "pod from {name} ({}): restored, token {token}",
            format.name()
        ));
        remove_pod(&mut client, &attempt)?;
    }
    let tasks = node.ctr(&["-n", cri::NAMESPACE, "tasks", "ls", "-q"])?;
    ensure!(tasks.trim().is_empty(), "containerd tasks left: {tasks}");
    Ok(())
}

/// The formats a pod can be restored from through `node`'s CRI. containerd 2.1 to 2.3 claim
/// images annotated `org.criu.checkpoint.container.name` for their own restore in
/// CreateContainer (2.3 refuses them unless `enable_experimental_restore_via_create` is set)
/// before any runtime sees them; 2.4 removed that, and 1.7 never had it.
pub fn cri_formats(node: &Node) -> &'static [Format] {
    let version = node.version("containerd").unwrap_or("");
    let claimed = ["2.1.", "2.2.", "2.3."]
        .iter()
        .any(|minor| version.starts_with(minor));
    if claimed {
        &[Format::CriO, Format::Podman]
    } else {
        &Format::ALL
    }
}

/// Generations of checkpoints, as a pod moved again and again makes them: the Kubernetes
/// checkpoint `archive` (of the CRI workload holding `token`, from image `base`) becomes a
/// checkpoint image a pod comes up restored from; that restored container is checkpointed
/// through CRI, and its archive (whose `config.dump` names the previous checkpoint image as
/// the container's image) becomes the next image; `generations` times. Returns each
/// generation's image.
pub fn cri_generations(
    node: &Node,
    base: &Image,
    archive: &[u8],
    token: &str,
    generations: usize,
    narrate: &mut dyn FnMut(&str),
) -> Result<Vec<String>> {
    use crate::cri;
    let mut client = cri::prepare(node, base)?;
    let mut archive = archive.to_vec();
    let mut images = Vec::new();
    for generation in 1..=generations {
        let name = format!("revive.test/cri-checkpoint/generation-{generation}:1");
        let previous = images.last().map_or(BUSYBOX, String::as_str);
        let image = Format::CriO.image(&name, archive, "workload", previous)?;
        cri::import_image(node, &image)?;
        client.wait_for_image(&name)?;
        let pod = restore_pod(&format!("generation-{generation}"));
        let ctr = cri::container("workload", &name, &["/bin/sh"]);
        let attempt = create_in_pod(node, &mut client, &pod, &ctr)?;
        client
            .start_container(&attempt.id)
            .with_context(|| format!("restoring generation {generation} from {name}"))?;
        check_restored_workload(&mut client, &attempt.id, token)?;
        narrate(&format!(
            "generation {generation}: a pod from {name} came up restored"
        ));
        images.push(name);
        let outcome = cri::checkpoint_container(node, &mut client, &attempt.id, token)
            .with_context(|| format!("checkpointing restored generation {generation}"))?;
        let cri::CheckpointOutcome::Archive { archive: next, .. } = outcome else {
            anyhow::bail!("containerd wrote no checkpoint archive of generation {generation}");
        };
        archive = next;
        remove_pod(&mut client, &attempt)?;
    }
    Ok(images)
}

/// A pod on RuntimeClass handler `revive` and its container, created from a checkpoint image
/// and not yet started (StartContainer creates the task, and so restores).
pub struct PodAttempt {
    pub pod_id: String,
    pub id: String,
}

/// RunPodSandbox of `pod` on handler `revive`, then CreateContainer of `ctr` in it.
pub fn create_in_pod(
    node: &Node,
    client: &mut crate::cri::Cri,
    pod: &crate::cri::api::PodSandboxConfig,
    ctr: &crate::cri::api::ContainerConfig,
) -> Result<PodAttempt> {
    node.run(&["mkdir", "-p", &pod.log_directory])?;
    let pod_id = client.run_pod_sandbox(pod, "revive")?;
    let id = client.create_container(&pod_id, ctr, pod)?;
    Ok(PodAttempt { pod_id, id })
}

/// The pod's container `id` is the checkpointed CRI workload, restored: running, holding
/// `token` in [`crate::cri::TOKEN_FILE`], its process there.
pub fn check_restored_workload(client: &mut crate::cri::Cri, id: &str, token: &str) -> Result<()> {
    use crate::cri;
    client.wait_for_state(id, cri::api::ContainerState::ContainerRunning)?;
    let seen = client.exec_sync(id, &["cat", cri::TOKEN_FILE], 30)?;
    ensure!(
        seen.exit_code == 0 && seen.stdout.trim() == token,
        "the pod's container {id} is not the checkpointed workload: {} {seen:?}, expected \
         {token}",
        cri::TOKEN_FILE
    );
    let ps = client.exec_sync(id, &["ps", "-o", "args"], 30)?;
    ensure!(
        ps.stdout.contains(cri::WORKLOAD_MARKER),
        "the checkpointed workload is not running in the restored container:\n{}",
        ps.stdout
    );
    Ok(())
}

/// Stops and removes the attempt's container (StopContainer is a no-op for one that is not
/// running), then its pod.
pub fn remove_pod(client: &mut crate::cri::Cri, attempt: &PodAttempt) -> Result<()> {
    client.stop_container(&attempt.id, 10)?;
    client.remove_container(&attempt.id)?;
    client.stop_pod_sandbox(&attempt.pod_id)?;
    client.remove_pod_sandbox(&attempt.pod_id)
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
    check_refusal_left_nothing(node, id)?;
    Ok(said(&err))
}

/// One entry of a hand-made tar: names are written as given (`..` and all), which a tar
/// library would refuse to write.
pub enum RawEntry<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    /// A file whose header claims `size` bytes, followed by none.
    Claimed(&'a str, u64),
}

/// A tar of `entries`, names and link targets verbatim, root-owned.
pub fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, kind, data, size): (&str, tar::EntryType, &[u8], u64) = match entry {
            RawEntry::File(name, data) => (name, tar::EntryType::Regular, data, data.len() as u64),
            RawEntry::Dir(name) => (name, tar::EntryType::Directory, b"", 0),
            RawEntry::Symlink(name, _) => (name, tar::EntryType::Symlink, b"", 0),
            RawEntry::Claimed(name, size) => (name, tar::EntryType::Regular, b"", *size),
        };
        {
            let gnu = header.as_gnu_mut().expect("a GNU header");
            gnu.name = [0; 100];
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let RawEntry::Symlink(_, target) = entry {
                gnu.linkname = [0; 100];
                gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
            }
        }
        header.set_entry_type(kind);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(size);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    if !entries.iter().any(|e| matches!(e, RawEntry::Claimed(..))) {
        out.extend_from_slice(&[0; 1024]);
    }
    out
}

/// A checkpoint archive's layout as a tar: CRIU image files (content irrelevant here: every
/// case fails before CRIU runs), config.dump naming `base`, a minimal spec.dump, and
/// `rootfs_diff` as rootfs-diff.tar; `twist` edits the entries first.
fn hostile_archive(
    base: &str,
    rootfs_diff: &[u8],
    twist: impl FnOnce(&mut Vec<(String, Vec<u8>, Option<String>)>),
) -> Vec<u8> {
    let config = format!(r#"{{"id":"h","name":"h","rootfsImageName":"{base}"}}"#);
    let spec = br#"{"process":{"args":["sh"],"cwd":"/"},"linux":{"namespaces":[]},"mounts":[]}"#;
    // (name, data, symlink target)
    let mut entries: Vec<(String, Vec<u8>, Option<String>)> = vec![
        ("checkpoint/inventory.img".into(), b"x".to_vec(), None),
        ("checkpoint/pstree.img".into(), b"x".to_vec(), None),
        ("checkpoint/pages-1.img".into(), b"x".to_vec(), None),
        ("config.dump".into(), config.into_bytes(), None),
        ("spec.dump".into(), spec.to_vec(), None),
        ("rootfs-diff.tar".into(), rootfs_diff.to_vec(), None),
    ];
    twist(&mut entries);
    let mut raw: Vec<RawEntry<'_>> = vec![RawEntry::Dir("checkpoint/")];
    for (name, data, link) in &entries {
        raw.push(match link {
            Some(target) => RawEntry::Symlink(name, target),
            None => RawEntry::File(name, data),
        });
    }
    raw_tar(&raw)
}

/// What a hostile checkpoint image must get: an error containing `expect`.
pub struct HostileCase {
    pub name: &'static str,
    pub layer: Vec<u8>,
    pub expect: &'static str,
}

/// The hostile checkpoint images (each one's layer), and the words their refusal must hold.
pub fn hostile_cases() -> Vec<HostileCase> {
    let ok_diff = raw_tar(&[RawEntry::File("token", b"t")]);
    let case = |name, layer, expect| HostileCase {
        name,
        layer,
        expect,
    };
    let mut truncated = raw_tar(&[RawEntry::File("big", &[7u8; 8192])]);
    truncated.truncate(3000);
    vec![
        case(
            "traversal",
            hostile_archive(
                BUSYBOX,
                &raw_tar(&[RawEntry::File(
                    "../../../../../../tmp/escaped-traversal",
                    b"x",
                )]),
                |_| {},
            ),
            "`..`",
        ),
        case(
            "symlink-escape",
            hostile_archive(
                BUSYBOX,
                &raw_tar(&[
                    RawEntry::Symlink("etc", "/etc"),
                    RawEntry::File("etc/escaped-symlink", b"x"),
                ]),
                |_| {},
            ),
            "symlink",
        ),
        case(
            "image-symlink",
            hostile_archive(BUSYBOX, &ok_diff, |e| {
                e.retain(|(n, _, _)| n != "checkpoint/pages-1.img");
                e.push((
                    "checkpoint/pages-1.img".into(),
                    Vec::new(),
                    Some("/etc/shadow".into()),
                ));
            }),
            "pages-1.img is a symlink",
        ),
        case(
            "giant-file",
            hostile_archive(
                BUSYBOX,
                &raw_tar(&[RawEntry::Claimed("big", 1 << 40)]),
                |_| {},
            ),
            "limit",
        ),
        case(
            "truncated-diff",
            hostile_archive(BUSYBOX, &truncated, |_| {}),
            "rootfs-diff.tar",
        ),
        case(
            "bad-config-json",
            hostile_archive(BUSYBOX, &ok_diff, |e| {
                e.retain(|(n, _, _)| n != "config.dump");
                e.push(("config.dump".into(), b"{\"name\": ".to_vec(), None));
            }),
            "config.dump",
        ),
        case(
            "bad-spec-json",
            hostile_archive(BUSYBOX, &ok_diff, |e| {
                e.retain(|(n, _, _)| n != "spec.dump");
                e.push(("spec.dump".into(), b"[1, 2".to_vec(), None));
            }),
            "spec.dump",
        ),
        case(
            "missing-criu-images",
            hostile_archive(BUSYBOX, &ok_diff, |e| {
                e.retain(|(n, _, _)| !n.starts_with("checkpoint/"));
            }),
            "CRIU images",
        ),
        case(
            "missing-base-image",
            hostile_archive("docker.io/revive/absent:1", &ok_diff, |_| {}),
            "docker.io/revive/absent:1",
        ),
        // A base that is itself a checkpoint image is rebuilt like the image's own layer:
        // one naming itself never ends, and a hostile one is refused as it would be on top.
        case(
            "base-cycle",
            hostile_archive("revive.test/hostile/base-cycle:1", &ok_diff, |_| {}),
            "generations",
        ),
        case(
            "hostile-base",
            hostile_archive("revive.test/hostile/traversal:1", &ok_diff, |_| {}),
            "`..`",
        ),
    ]
}

/// Every [`hostile_cases`] image, run with `ctr run` on revive: refused with its reason,
/// no task, no rootfs mount, no snapshot or container left once the record is removed,
/// nothing written outside the snapshotter's root. Returns each case's error.
pub fn hostile_images_are_refused(node: &Node) -> Result<Vec<(String, String)>> {
    node.import_busybox()?;
    let mut refusals = Vec::new();
    for case in hostile_cases() {
        let name = format!("revive.test/hostile/{}:1", case.name);
        let image = Format::CriO.image(&name, case.layer, "h", BUSYBOX)?;
        node.import_image(&image)?;
        let id = format!("hostile-{}", case.name);
        let err = match run_image(node, &name, &id) {
            Ok(out) => anyhow::bail!("hostile image {} was run: {out}", case.name),
            Err(e) => format!("{e:#}"),
        };
        ensure!(
            err.contains(case.expect),
            "hostile image {}: the error does not say {:?}: {err}",
            case.name,
            case.expect
        );
        check_refusal_left_nothing(node, &id)?;
        refusals.push((case.name.to_string(), said(&err)));
    }
    let escaped = node.sh("ls -d /tmp/escaped-* /etc/escaped-* 2>/dev/null; true")?;
    ensure!(
        escaped.trim().is_empty(),
        "hostile images wrote outside the snapshotter's root: {escaped}"
    );
    Ok(refusals)
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
    let before = start_counter(node, GO_SHIM, id)?;
    narrate(&format!("counter {id} on the Go shim: {before}"));
    crate::scenario::checkpoint_container(node, GO_SHIM, id, native)?;
    let checkpointed = read_counter(node, id)?;
    remove(node, id)?;
    narrate(&format!(
        "ctr container checkpoint --task --rw {id} {native}; container removed"
    ));
    // containerd 2.x's ctr fails to write the Docker manifest.json of a checkpoint ("unable
    // to create manifests file"): its entries are not manifests. `--local` because 2.x's ctr
    // otherwise exports through the transfer service and can exit before its goroutine has
    // copied the whole stream into the file (1.7 exports locally by default).
    node.ctr(&[
        "images",
        "export",
        "--local",
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
    let (inspect_converted, restored) = run_cli_image(
        node,
        "/share/converted.tar",
        "criu",
        converted,
        "converted",
        &before,
        narrate,
    )?;
    Ok(ConvertReport {
        checkpointed,
        restored,
        inspect_native,
        inspect_converted,
    })
}

/// A counter checkpointed the way an engine exports it ([`archive_of`]), compressed with
/// zstd as Podman's `--export` does by default, is made into a checkpoint image by
/// `revive image build --format podman` in the node; `ctr run` of the imported image on
/// revive-snapshotter and the revive shim must come up restored. Returns what `revive image
/// build` and `revive image inspect` printed.
pub fn cli_build_restores(
    node: &Node,
    narrate: &mut dyn FnMut(&str),
) -> Result<(String, String, Counter)> {
    node.import_busybox()?;
    let id = "exported";
    let reference = "revive.test/cli/built:1";
    let before = start_counter(node, GO_SHIM, id)?;
    let (dir, checkpointed) = archive_of(node, id)?;
    let tar = tar_dir(&dir)?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    let zstd = zstd::stream::encode_all(&tar[..], 3).context("zstd")?;
    std::fs::write(node.share_dir().join("exported.tar.zst"), &zstd)?;
    narrate(&format!(
        "{id} checkpointed at {checkpointed} into a checkpoint archive, {} bytes as zstd",
        zstd.len()
    ));
    let built = node.run(&[
        "revive",
        "image",
        "build",
        "--format",
        "podman",
        "/share/exported.tar.zst",
        reference,
        "-o",
        "/share/built.tar",
    ])?;
    narrate(built.trim());
    let (inspected, restored) = run_cli_image(
        node,
        "/share/built.tar",
        "podman",
        reference,
        "built",
        &before,
        narrate,
    )?;
    Ok((built, inspected, restored))
}

/// An image archive the CLI wrote (`file` in the node) is root-only, inspected as a
/// checkpoint image of `format` on busybox, imported into revive-snapshotter, and `ctr run`
/// as container `new` on
/// revive: it must come up restored from a checkpoint of the counter that showed `before`.
/// Returns what `revive image inspect` printed and the restored counter.
fn run_cli_image(
    node: &Node,
    file: &str,
    format: &str,
    reference: &str,
    new: &str,
    before: &Counter,
    narrate: &mut dyn FnMut(&str),
) -> Result<(String, Counter)> {
    let mode = node.run(&["stat", "-c", "%a", file])?;
    ensure!(
        mode.trim() == "600",
        "{file} is mode {}, not 600",
        mode.trim()
    );
    let inspected = node.run(&["revive", "image", "inspect", file])?;
    ensure!(
        inspected.contains(&format!("format {format}")) && inspected.contains(BUSYBOX),
        "revive image inspect {file}:\n{inspected}"
    );
    // Unpacked into revive-snapshotter at import, as docs/checkpoint-images.md advises, rather than into
    // overlayfs, where no checkpoint image is of use (ctr_run_restores imports the default
    // way).
    node.ctr(&["images", "import", "--snapshotter", SNAPSHOTTER, file])?;
    let snapshots = node.ctr(&["snapshots", "--snapshotter", SNAPSHOTTER, "ls"])?;
    ensure!(
        snapshots.lines().any(|l| l.contains("Committed")),
        "importing {file} with --snapshotter {SNAPSHOTTER} unpacked nothing there:\n{snapshots}"
    );
    narrate(&format!("ctr run {reference} {new}"));
    run_image(node, reference, new)?;
    // The checkpoint was taken after `before`.
    let restored = wait_for_count(node, new, before.count + 3)?;
    ensure!(
        restored.token == before.token,
        "{new} started afresh instead of being restored: {before} -> {restored}"
    );
    check_written_at_start(node, new, &restored)?;
    narrate(&format!("{new} is restored: {restored}"));
    remove(node, new)?;
    Ok((inspected, restored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn said_is_all_of_stderr() {
        let err = "in node n: `ctr run x` failed (exit status: 1):\nstdout: \nstderr: ctr: \
                   refused:\n  - uid 0\nwhat to do: less";
        assert_eq!(said(err), "ctr: refused:\n  - uid 0\nwhat to do: less");
        assert_eq!(said("no output"), "no output");
    }
}

/// Process `pid`'s view of the world, as the node sees it: `ip -o link` in its network
/// namespace, and the options of its root mount.
pub fn isolation_of(node: &Node, pid: &str) -> Result<(String, String)> {
    let links = node.run(&["nsenter", "-t", pid, "-n", "ip", "-o", "link"])?;
    let mountinfo = node.run(&["cat", &format!("/proc/{pid}/mountinfo")])?;
    let root_options = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .and_then(|l| l.split_whitespace().nth(5))
        .unwrap_or("")
        .to_string();
    Ok((links, root_options))
}

/// What [`sandbox_restores`] saw.
#[derive(Debug)]
pub struct Sandbox {
    /// The counter at the checkpoint, and read twice, 2 s apart, from the paused restore's
    /// root filesystem.
    pub checkpointed: Counter,
    pub paused: (Counter, Counter),
    /// `ctr task ls`'s status of the restore.
    pub status: String,
    /// `ip -o link` in its network namespace, and the options of its root mount.
    pub links: String,
    pub root_options: String,
    /// `ctr task ls`'s status once resumed, and the states of its processes then.
    pub resumed: (String, String),
}

/// A counter's checkpoint image `ctr run` with the annotation `revive.io/sandbox=true`:
/// it must come up PAUSED, its counter where the checkpoint left it, in a network
/// namespace holding only a loopback that is down, its root read-only; resumed, its
/// processes run (none stopped).
pub fn sandbox_restores(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Sandbox> {
    node.import_busybox()?;
    let id = "to-analyse";
    run_shell(node, GO_SHIM, id, COUNTER_SCRIPT)?;
    wait_for_count(node, id, 3)?;
    let (dir, _) = archive_of(node, id)?;
    // The counter's file as the checkpoint's rw layer holds it.
    let diff = format!("/share/{id}-archive/rootfs-diff.tar");
    let checkpointed =
        crate::scenario::parse_counter(&node.run(&["tar", "-xOf", &diff, "./state"])?)?;
    let name = "revive.test/sandbox/counter:1";
    let image = Format::Criu.image(name, tar_dir(&dir)?, id, BUSYBOX)?;
    node.import_image(&image)?;
    let new = "sandboxed";
    run_image_with(node, name, new, &["--annotation", "revive.io/sandbox=true"])?;
    let status = crate::ctr::status(node, new)?.to_string();
    let state = crate::scenario::rootfs_file(new, "state");
    let read =
        || -> Result<Counter> { crate::scenario::parse_counter(&node.run(&["cat", &state])?) };
    let first = read()?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let second = read()?;
    let pid = crate::ctr::task(node, new)?.pid.to_string();
    let (links, root_options) = isolation_of(node, &pid)?;
    narrate(&format!(
        "{new}: {status}; counter {first} then {second}; links {links:?}; root {root_options}"
    ));
    // Resumed, its processes run again (not stopped, SIGCONT taken); with a read-only
    // root the counter cannot write its file any more, so it is their states that say so.
    node.ctr(&["task", "resume", new])?;
    let status_resumed = crate::ctr::status(node, new)?.to_string();
    let states = crate::ctr::poll(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(100),
        || {
            let pids: Vec<String> = node
                .ctr(&["task", "ps", new])?
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect();
            ensure!(!pids.is_empty(), "ctr task ps {new} lists no process");
            let script = format!(
                "for p in {}; do cut -d' ' -f3 /proc/$p/stat; done",
                pids.join(" ")
            );
            let tasks = node.run(&["sh", "-c", &script])?;
            Ok(if tasks.lines().all(|s| s.trim() != "T") {
                std::ops::ControlFlow::Break(tasks)
            } else {
                std::ops::ControlFlow::Continue(format!("stopped after resume: {tasks}"))
            })
        },
    )?;
    narrate(&format!(
        "resumed: {status_resumed}, process states {:?}",
        states.split_whitespace().collect::<Vec<_>>()
    ));
    remove(node, new)?;
    let _ = node.ctr(&["images", "rm", name]);
    Ok(Sandbox {
        checkpointed,
        paused: (first, second),
        status,
        links,
        root_options,
        resumed: (status_resumed, states),
    })
}
