//! Crafted checkpoint images: one real checkpoint of a counter (made with stock
//! tools: the Go shim, runc, CRIU), whose CRIU images are then edited by hand, one change
//! each, the way an attacker would edit a checkpoint of their own. `ctr run` of each edited
//! image on revive must be refused at task Create, naming that one change, and leave
//! nothing; the unedited copy restores, so each refusal is its edit's.
//!
//! The edits go through revive's own decoder types (`revive_checkpoint::criu::proto`) and
//! framing ([`images::records`], [`images::write`]): a record is decoded, one field changed,
//! and the image written again.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use prost::Message;
use revive_checkpoint::criu::images::{self, CORE_MAGIC, MNTS_MAGIC, MS_RDONLY, PSTREE_MAGIC};
use revive_checkpoint::criu::proto::{self, CoreEntry, CredsEntry, Fstype, MntEntry};
use revive_checkpoint::privilege::caps;

use crate::checkpoint_image::{self, Format, FormatImage, GO_SHIM, tar_dir};
use crate::image::BUSYBOX;
use crate::node::Node;
use crate::scenario::{
    COUNTER_SCRIPT, Counter, exec_sh, remove_container, run_shell, wait_for_count,
};

/// What every refusal starts with (the shim's error, `privilege::Refusal`).
pub const REFUSED: &str = "restore refused: the checkpoint would bring back more privilege than \
                           this container's spec grants:";

/// The child the workload's shell keeps beside its counter: the only process of the tree by
/// this name, so that it is found in the images by its `comm`.
const CHILD: &str = "tail";

/// Finds the workload's processes in the node: its shell's command line and its child's.
const WORKLOAD_PATTERN: &str = "written-at-start|tail -f /dev/null";

/// CRIU's magic of `apparmor.img` (`criu/include/magic.h`).
const APPARMOR_MAGIC: u32 = 0x5942_3047;
/// RLIMIT_NOFILE, the index of its entry in a task core's rlimits.
const RLIMIT_NOFILE: usize = 7;
/// The hard RLIMIT_NOFILE containerd's default spec (ctr's) sets.
const SPEC_NOFILE: u64 = 1024;
/// What the crafted hard RLIMIT_NOFILE is raised to.
const RAISED_NOFILE: u64 = 1 << 20;
/// SCHED_FIFO, and the real-time priority the crafted leader gets.
const SCHED_FIFO: u32 = 1;
const RT_PRIORITY: u32 = 50;
/// The uid and gid of the container the uid case is run in (`ctr run --user`).
const USER: u32 = 1000;

/// The counter, with a child that lives as long as it.
fn workload() -> String {
    format!("{CHILD} -f /dev/null & {COUNTER_SCRIPT}")
}

/// One process of the checkpoint: its pid (in the container) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub comm: String,
}

impl fmt::Display for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As the refusal names a process's main thread.
        write!(f, "process {} ({})", self.pid, self.comm)
    }
}

/// The process tree of the checkpoint, from its `pstree.img` and cores.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The container's first process (the counter's shell).
    pub leader: Proc,
    /// The shell's child [`CHILD`].
    pub child: Proc,
    /// Every thread of every process.
    pub threads: Vec<u32>,
}

impl Tree {
    fn read(dir: &Path) -> Result<Tree> {
        let entries: Vec<proto::PstreeEntry> = decode_all(&dir.join("pstree.img"), PSTREE_MAGIC)?;
        let mut leader = None;
        let mut children = Vec::new();
        let mut threads = Vec::new();
        for entry in &entries {
            let [core]: [CoreEntry; 1] = decode_all(&core_image(dir, entry.pid), CORE_MAGIC)?
                .try_into()
                .map_err(|cores: Vec<CoreEntry>| {
                    anyhow::anyhow!("core-{}.img holds {} records", entry.pid, cores.len())
                })?;
            let comm = core
                .tc
                .with_context(|| format!("core-{}.img has no task core", entry.pid))?
                .comm;
            let proc = Proc {
                pid: entry.pid,
                comm,
            };
            if entry.ppid == 0 {
                leader = Some(proc);
            } else if proc.comm == CHILD {
                children.push(proc);
            }
            if entry.threads.is_empty() {
                threads.push(entry.pid);
            }
            threads.extend(&entry.threads);
        }
        let leader = leader.context("pstree.img has no root process")?;
        let [child] = <[Proc; 1]>::try_from(children)
            .map_err(|c| anyhow::anyhow!("the checkpoint has {} {CHILD} processes", c.len()))?;
        Ok(Tree {
            leader,
            child,
            threads,
        })
    }

    /// A thread id no process or thread of the checkpoint has.
    pub fn spare_tid(&self) -> u32 {
        self.threads.iter().max().copied().unwrap_or(0) + 1
    }
}

fn core_image(dir: &Path, tid: u32) -> std::path::PathBuf {
    dir.join(format!("core-{tid}.img"))
}

/// The records of image file `path`, whose magic must be `magic`, decoded.
fn decode_all<M: Message + Default>(path: &Path, magic: u32) -> Result<Vec<M>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.display().to_string();
    images::records(&data, magic, &name)?
        .into_iter()
        .map(|r| M::decode(r).with_context(|| format!("decoding a record of {name}")))
        .collect()
}

/// Decodes image file `path`, lets `edit` change its records, and writes it again.
fn edit_image<M: Message + Default>(
    path: &Path,
    magic: u32,
    edit: impl FnOnce(&mut Vec<M>) -> Result<()>,
) -> Result<()> {
    let mut records = decode_all(path, magic)?;
    edit(&mut records)?;
    std::fs::write(path, images::write(magic, &records))
        .with_context(|| format!("writing {}", path.display()))
}

/// [`edit_image`] of thread `tid`'s core.
fn edit_core(dir: &Path, tid: u32, edit: impl FnOnce(&mut CoreEntry) -> Result<()>) -> Result<()> {
    edit_image(
        &core_image(dir, tid),
        CORE_MAGIC,
        |cores: &mut Vec<CoreEntry>| match cores.as_mut_slice() {
            [core] => edit(core),
            other => bail!("core-{tid}.img holds {} records", other.len()),
        },
    )
}

/// The credentials in a thread's core.
fn creds(core: &mut CoreEntry) -> Result<&mut CredsEntry> {
    core.thread_core
        .as_mut()
        .and_then(|t| t.creds.as_mut())
        .context("a core without credentials")
}

/// [`edit_image`] of the container's mount namespace's `mountpoints-*.img` (a container
/// has one).
fn edit_mounts(dir: &Path, edit: impl FnOnce(&mut Vec<MntEntry>) -> Result<()>) -> Result<()> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("mountpoints-") && name.ends_with(".img") {
            found.push(name);
        }
    }
    let [name] = <[String; 1]>::try_from(found)
        .map_err(|f| anyhow::anyhow!("expected one mount namespace's image, found {f:?}"))?;
    edit_image(&dir.join(name), MNTS_MAGIC, edit)
}

/// The mount of type `fstype` at `at` (in the container).
fn mount_at(mounts: &[MntEntry], fstype: Fstype, at: &str) -> Result<usize> {
    mounts
        .iter()
        .position(|m| m.fstype == fstype as u32 && images::clean_path(&m.mountpoint) == at)
        .with_context(|| {
            format!(
                "no {} mount at {at} in the checkpoint",
                fstype.as_str_name()
            )
        })
}

/// CAP_SYS_ADMIN added to a thread's effective and permitted sets.
fn add_sys_admin(core: &mut CoreEntry) -> Result<()> {
    let creds = creds(core)?;
    add_capability(&mut creds.cap_eff, "CAP_SYS_ADMIN");
    add_capability(&mut creds.cap_prm, "CAP_SYS_ADMIN");
    Ok(())
}

/// Capability `name` added to a set of capability words.
fn add_capability(words: &mut Vec<u32>, name: &str) {
    let bit = caps::from_names([name]).trailing_zeros() as usize;
    if words.len() <= bit / 32 {
        words.resize(bit / 32 + 1, 0);
    }
    words[bit / 32] |= 1 << (bit % 32);
}

/// One hand edit of the checkpoint's CRIU images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// CAP_SYS_ADMIN in the effective and permitted sets of the child's thread only.
    ChildCapability,
    /// A second thread added to the (single-threaded: busybox has no threaded program)
    /// child, a copy of its main thread's core holding CAP_SYS_ADMIN in its effective and
    /// permitted sets; the main thread unchanged.
    ChildThreadCapability,
    /// Every thread as uid and gid 1000 with no capability (the bounding set kept), but
    /// the child as uid 0; run with `--user 1000:1000`.
    ChildUid,
    /// A binfmt_misc mount at /proc/sys/fs/binfmt_misc.
    BinfmtMisc,
    /// /sys read-write (the spec's is read-only).
    WritableSysfs,
    /// An `apparmor.img` (framed, no record).
    Apparmor,
    /// The leader's hard RLIMIT_NOFILE raised above the spec's.
    HardRlimit,
    /// The leader's oom_score_adj at -1000.
    OomScoreAdj,
    /// The leader's thread on SCHED_FIFO.
    RealtimeScheduling,
}

impl Edit {
    pub const ALL: [Edit; 9] = [
        Edit::ChildCapability,
        Edit::ChildThreadCapability,
        Edit::ChildUid,
        Edit::BinfmtMisc,
        Edit::WritableSysfs,
        Edit::Apparmor,
        Edit::HardRlimit,
        Edit::OomScoreAdj,
        Edit::RealtimeScheduling,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Edit::ChildCapability => "child-capability",
            Edit::ChildThreadCapability => "child-thread-capability",
            Edit::ChildUid => "child-uid",
            Edit::BinfmtMisc => "binfmt-misc",
            Edit::WritableSysfs => "writable-sysfs",
            Edit::Apparmor => "apparmor",
            Edit::HardRlimit => "hard-rlimit",
            Edit::OomScoreAdj => "oom-score-adj",
            Edit::RealtimeScheduling => "realtime-scheduling",
        }
    }

    /// The `ctr run` flags of the container the edited image is run in.
    pub fn flags(self) -> &'static [&'static str] {
        match self {
            Edit::ChildUid => &["--user", "1000:1000"],
            _ => &[],
        }
    }

    /// What the refusal's one violation line must say, all of it.
    pub fn expect(self, tree: &Tree) -> Vec<String> {
        let (leader, child) = (&tree.leader, &tree.child);
        match self {
            Edit::ChildCapability => vec![format!(
                "{child} holds CAP_SYS_ADMIN in its permitted and effective capability sets"
            )],
            Edit::ChildThreadCapability => vec![format!(
                "thread {} of {child} holds CAP_SYS_ADMIN in its permitted and effective \
                 capability sets",
                tree.spare_tid()
            )],
            Edit::ChildUid => vec![
                format!("{child} runs as uid 0"),
                format!("this container runs as uid {USER} without CAP_SETUID"),
            ],
            Edit::BinfmtMisc => vec![
                "the binfmt_misc mount at /proc/sys/fs/binfmt_misc is a host-wide filesystem"
                    .into(),
            ],
            Edit::WritableSysfs => vec![
                "the sysfs mount at /sys is not read-only, and this container mounts /sys \
                 read-only"
                    .into(),
            ],
            Edit::Apparmor => vec!["the image file apparmor.img holds AppArmor policy".into()],
            Edit::HardRlimit => vec![format!(
                "{leader} has a hard RLIMIT_NOFILE of {RAISED_NOFILE}, above this container's \
                 {SPEC_NOFILE}"
            )],
            Edit::OomScoreAdj => vec![format!("{leader} has oom_score_adj -1000, below")],
            Edit::RealtimeScheduling => vec![format!(
                "{leader} runs with real-time scheduling (policy {SCHED_FIFO}, priority \
                 {RT_PRIORITY}), which needs CAP_SYS_NICE"
            )],
        }
    }

    /// Makes the edit in the CRIU image directory `dir`.
    pub fn apply(self, dir: &Path, tree: &Tree) -> Result<()> {
        let leader = tree.leader.pid;
        match self {
            Edit::ChildCapability => edit_core(dir, tree.child.pid, add_sys_admin),
            Edit::ChildThreadCapability => {
                let (child, tid) = (tree.child.pid, tree.spare_tid());
                let main = core_image(dir, child);
                std::fs::copy(&main, core_image(dir, tid))
                    .with_context(|| format!("copying {}", main.display()))?;
                edit_core(dir, tid, |core| {
                    // A thread's core has no task core; the process's is its main thread's.
                    core.tc = None;
                    add_sys_admin(core)
                })?;
                edit_image(
                    &dir.join("pstree.img"),
                    PSTREE_MAGIC,
                    |tree: &mut Vec<proto::PstreeEntry>| {
                        let entry = tree
                            .iter_mut()
                            .find(|e| e.pid == child)
                            .context("the child is not in pstree.img")?;
                        ensure!(
                            entry.threads.is_empty() || entry.threads == [child],
                            "the child has threads already: {:?}",
                            entry.threads
                        );
                        entry.threads = vec![child, tid];
                        Ok(())
                    },
                )
            }
            Edit::ChildUid => {
                for &tid in &tree.threads {
                    let uid = if tid == tree.child.pid { 0 } else { USER };
                    edit_core(dir, tid, |core| {
                        let c = creds(core)?;
                        (c.uid, c.euid, c.suid, c.fsuid) = (uid, uid, uid, uid);
                        (c.gid, c.egid, c.sgid, c.fsgid) = (USER, USER, USER, USER);
                        c.groups.clear();
                        for set in [
                            &mut c.cap_inh,
                            &mut c.cap_prm,
                            &mut c.cap_eff,
                            &mut c.cap_amb,
                        ] {
                            set.iter_mut().for_each(|w| *w = 0);
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            }
            Edit::BinfmtMisc => edit_mounts(dir, |mounts| {
                let proc = mounts[mount_at(mounts, Fstype::Proc, "/proc")?].clone();
                let fresh = mounts.iter().map(|m| m.mnt_id).max().unwrap_or(0) + 1;
                mounts.push(MntEntry {
                    fstype: Fstype::BinfmtMisc as u32,
                    mnt_id: fresh,
                    root_dev: proc.root_dev,
                    parent_mnt_id: proc.mnt_id,
                    flags: proc.flags,
                    root: "/".into(),
                    mountpoint: format!(
                        "{}/sys/fs/binfmt_misc",
                        proc.mountpoint.trim_end_matches('/')
                    ),
                    source: "binfmt_misc".into(),
                    options: String::new(),
                    sb_flags: proc.sb_flags,
                    ..MntEntry::default()
                });
                Ok(())
            }),
            Edit::WritableSysfs => edit_mounts(dir, |mounts| {
                let at = mount_at(mounts, Fstype::Sysfs, "/sys")?;
                let sys = &mut mounts[at];
                ensure!(
                    (sys.flags | sys.sb_flags.unwrap_or(0)) & MS_RDONLY != 0,
                    "the checkpoint's /sys is read-write already: {sys:?}"
                );
                sys.flags &= !MS_RDONLY;
                sys.sb_flags = sys.sb_flags.map(|f| f & !MS_RDONLY);
                Ok(())
            }),
            Edit::Apparmor => std::fs::write(
                dir.join("apparmor.img"),
                images::write::<proto::InventoryEntry>(APPARMOR_MAGIC, &[]),
            )
            .context("writing apparmor.img"),
            Edit::HardRlimit => edit_core(dir, leader, |core| {
                let limit = core
                    .tc
                    .as_mut()
                    .and_then(|tc| tc.rlimits.as_mut())
                    .and_then(|r| r.rlimits.get_mut(RLIMIT_NOFILE))
                    .context("the leader's core has no RLIMIT_NOFILE")?;
                ensure!(
                    limit.max == SPEC_NOFILE,
                    "the checkpointed hard RLIMIT_NOFILE is {}, not the spec's {SPEC_NOFILE}",
                    limit.max
                );
                limit.max = RAISED_NOFILE;
                Ok(())
            }),
            Edit::OomScoreAdj => edit_core(dir, leader, |core| {
                core.tc.as_mut().context("no task core")?.oom_score_adj = Some(-1000);
                Ok(())
            }),
            Edit::RealtimeScheduling => edit_core(dir, leader, |core| {
                let thread = core.thread_core.as_mut().context("no thread core")?;
                thread.sched_policy = Some(SCHED_FIFO);
                thread.sched_prio = Some(RT_PRIORITY);
                Ok(())
            }),
        }
    }
}

/// What `ctr run` of one crafted image did.
#[derive(Debug, Clone)]
pub struct Case {
    pub edit: Edit,
    /// What ctr said (its stderr) when refused; what showed it running otherwise.
    pub said: String,
    /// Why this is not the refusal the edit must get; None when it is.
    pub failure: Option<String>,
}

/// What [`crafted_images_are_refused`] saw.
#[derive(Debug)]
pub struct Report {
    pub tree: Tree,
    pub checkpointed: Counter,
    /// The unedited copy, restored.
    pub restored: Counter,
    pub cases: Vec<Case>,
    /// What ctr said of the copy whose saved `/dev/shm` climbs out (see
    /// [`hostile_saved_shm`]).
    pub hostile_shm: String,
}

/// Where [`hostile_saved_shm`]'s entry would land if it got out: the node's `/tmp`.
const ESCAPED_SHM: &str = "/tmp/escaped-devshm";

/// Makes the archive directory `archive` a Podman-like checkpoint with a hostile saved
/// `/dev/shm`: `spec.dump` binds `/dev/shm` from an engine's container directory, and
/// `devshm-checkpoint.tar` holds an entry climbing out of its target to [`ESCAPED_SHM`].
fn hostile_saved_shm(archive: &Path) -> Result<()> {
    let spec_path = archive.join(revive_checkpoint::archive::SPEC_DUMP);
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&spec_path)?)?;
    let mounts = spec["mounts"]
        .as_array_mut()
        .context("spec.dump has no mounts")?;
    mounts.retain(|m| m["destination"] != "/dev/shm");
    mounts.push(serde_json::json!({
        "destination": "/dev/shm",
        "type": "bind",
        "source": "/var/lib/containers/storage/overlay-containers/c0ffee/userdata/shm",
        "options": ["bind", "rprivate", "nosuid", "noexec", "nodev"],
    }));
    std::fs::write(&spec_path, serde_json::to_vec(&spec)?)?;
    let climbing = format!("../../../../../../..{ESCAPED_SHM}");
    let tar = checkpoint_image::raw_tar(&[checkpoint_image::RawEntry::File(&climbing, b"x")]);
    std::fs::write(archive.join(revive_checkpoint::archive::DEVSHM_TAR), tar)?;
    Ok(())
}

/// Why refusal `said` of `edit` is not the one it must be: the refusal, with exactly one
/// violation line, holding every word of [`Edit::expect`].
fn judge(edit: Edit, tree: &Tree, said: &str) -> Option<String> {
    if !said.contains(REFUSED) {
        return Some(format!("not refused by the privilege check: {said}"));
    }
    let lines: Vec<&str> = said
        .lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .collect();
    let [line] = lines.as_slice() else {
        return Some(format!(
            "{} violations named where the edit made one: {said}",
            lines.len()
        ));
    };
    let missing: Vec<String> = edit
        .expect(tree)
        .into_iter()
        .filter(|w| !line.contains(w.as_str()))
        .collect();
    (!missing.is_empty()).then(|| format!("the violation does not say {missing:?}: {line}"))
}

/// A copy of the archive directory `archive` whose CRIU images `edit` changed, made into
/// the CRI-O checkpoint image `revive.test/crafted/<name>:1` and imported; the copy is
/// removed. Returns the image's name.
fn crafted_image(
    node: &Node,
    archive: &Path,
    name: &str,
    edit: impl FnOnce(&Path) -> Result<()>,
) -> Result<String> {
    let copy = node.share_dir().join(format!("crafted-{name}"));
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(archive)
        .arg(&copy)
        .status()?;
    ensure!(
        status.success(),
        "cp -a {} failed: {status}",
        archive.display()
    );
    edit(&copy.join("checkpoint")).with_context(|| format!("crafting {name}"))?;
    let reference = format!("revive.test/crafted/{name}:1");
    let layer = tar_dir(&copy)?;
    std::fs::remove_dir_all(&copy)?;
    node.import_image(&Format::CriO.image(&reference, layer, "crafted", BUSYBOX)?)?;
    Ok(reference)
}

/// The node's mount table.
fn mount_lines(node: &Node) -> Result<BTreeSet<String>> {
    let table = node.run(&["cat", "/proc/mounts"])?;
    Ok(table.lines().map(str::to_string).collect())
}

/// The refused container `id` left nothing: no task, rootfs mount, snapshot or record
/// ([`checkpoint_image::check_refusal_left_nothing`]), no mount the node lacked `before`,
/// no process of the workload.
fn check_left_nothing(node: &Node, id: &str, before: &BTreeSet<String>) -> Result<()> {
    checkpoint_image::check_refusal_left_nothing(node, id)?;
    let after = mount_lines(node)?;
    let new: Vec<&String> = after.difference(before).collect();
    ensure!(new.is_empty(), "the refused {id} left mounts: {new:#?}");
    let pids = crate::cri::pgrep(node, WORKLOAD_PATTERN)?;
    ensure!(pids.is_empty(), "the refused {id} left processes: {pids:?}");
    Ok(())
}

/// The crafted images: a counter whose shell keeps a child
/// ([`CHILD`]) runs on the Go shim with a plain `ctr run` (uid 0, containerd's default
/// capabilities, read-only /sys, hard RLIMIT_NOFILE 1024) and is checkpointed once as an
/// engine exports it. The unedited copy of the archive must restore on revive (the counter
/// continues with its token, the child with its pid). Each [`Edit`] of a copy, run with `ctr
/// run` on revive-snapshotter and the revive shim (no privilege flag; `--user 1000:1000` for
/// [`Edit::ChildUid`]), must be refused naming that edit alone, and leave no task, mount,
/// snapshot, record or process. Every case is tried; the report says which failed. Then a
/// copy with a hostile saved `/dev/shm` ([`hostile_saved_shm`]) must be refused saying so,
/// leaving nothing and writing nothing outside.
pub fn crafted_images_are_refused(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Report> {
    node.import_busybox()?;
    let id = "crafted";
    run_shell(node, GO_SHIM, id, &workload())?;
    wait_for_count(node, id, 3)?;
    let (archive, checkpointed) = checkpoint_image::archive_of(node, id)?;
    let tree = Tree::read(&archive.join("checkpoint"))?;
    narrate(&format!(
        "{id} on the Go shim checkpointed at {checkpointed}: leader {}, child {}, threads {:?}",
        tree.leader, tree.child, tree.threads
    ));

    let unedited = crafted_image(node, &archive, "unedited", |_| Ok(()))?;
    let control = "crafted-unedited";
    checkpoint_image::run_image(node, &unedited, control)?;
    let restored = wait_for_count(node, control, checkpointed.count + 3)?;
    ensure!(
        restored.token == checkpointed.token,
        "the unedited copy started afresh: {checkpointed} -> {restored}"
    );
    let ps = exec_sh(node, control, "ps -o pid,comm")?;
    let child = format!("{} {}", tree.child.pid, tree.child.comm);
    ensure!(
        ps.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == child),
        "the unedited copy's child is not pid {child}:\n{ps}"
    );
    remove_container(node, control)?;
    narrate(&format!("the unedited copy restores: {restored}, {child}"));

    let mounts = mount_lines(node)?;
    let mut cases = Vec::new();
    for edit in Edit::ALL {
        let image = crafted_image(node, &archive, edit.name(), |dir| edit.apply(dir, &tree))?;
        let id = format!("crafted-{}", edit.name());
        let case = match checkpoint_image::run_image_with(node, &image, &id, edit.flags()) {
            Ok(_) => {
                let shows = wait_for_count(node, &id, checkpointed.count)
                    .map_or_else(|e| format!("{e:#}"), |c| c.to_string());
                remove_container(node, &id)?;
                Case {
                    edit,
                    failure: Some(format!("must be refused, but ran: {shows}")),
                    said: shows,
                }
            }
            Err(e) => {
                check_left_nothing(node, &id, &mounts)?;
                let said = checkpoint_image::said(&format!("{e:#}"));
                Case {
                    edit,
                    failure: judge(edit, &tree, &said),
                    said,
                }
            }
        };
        narrate(&format!(
            "{} (ctr run{}): {}{}",
            edit.name(),
            edit.flags()
                .iter()
                .map(|f| format!(" {f}"))
                .collect::<String>(),
            case.said,
            case.failure
                .as_deref()
                .map_or(String::new(), |f| format!("\n*** FAILED: {f}"))
        ));
        cases.push(case);
    }
    // The stand-in for an engine's /dev/shm is filled from the image at Start, after the
    // privilege check: a hostile saved /dev/shm is refused there, before CRIU runs, leaving no
    // tmpfs, task or file outside.
    let image = crafted_image(node, &archive, "hostile-saved-shm", |dir| {
        hostile_saved_shm(dir.parent().context("the images' directory has a parent")?)
    })?;
    let id = "crafted-hostile-saved-shm";
    let hostile_shm = match checkpoint_image::run_image(node, &image, id) {
        Ok(out) => bail!("a hostile saved /dev/shm was restored: {out}"),
        Err(e) => checkpoint_image::said(&format!("{e:#}")),
    };
    ensure!(
        hostile_shm.contains("saved /dev/shm") && hostile_shm.contains("`..`"),
        "a hostile saved /dev/shm was refused without saying why: {hostile_shm}"
    );
    check_left_nothing(node, id, &mounts)?;
    ensure!(
        node.run(&["test", "-e", ESCAPED_SHM]).is_err(),
        "the hostile saved /dev/shm wrote {ESCAPED_SHM}"
    );
    narrate(&format!("hostile-saved-shm (ctr run): {hostile_shm}"));
    Ok(Report {
        tree,
        checkpointed,
        restored,
        cases,
        hostile_shm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        Tree {
            leader: Proc {
                pid: 1,
                comm: "sh".into(),
            },
            child: Proc {
                pid: 2,
                comm: CHILD.into(),
            },
            threads: vec![1, 2],
        }
    }

    #[test]
    fn a_refusal_must_name_its_edit_alone() {
        let said = |lines: &[&str]| {
            format!(
                "ctr: failed to create shim task: c: {REFUSED}\n{}\nwhat to do: less",
                lines
                    .iter()
                    .map(|l| format!("  - {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        };
        let apparmor = "the image file apparmor.img holds AppArmor policy for CRIU to load";
        assert_eq!(judge(Edit::Apparmor, &tree(), &said(&[apparmor])), None);
        let two = said(&[apparmor, "process 1 (sh) runs as uid 0"]);
        assert!(
            judge(Edit::Apparmor, &tree(), &two)
                .unwrap()
                .contains("2 violations")
        );
        let other = said(&[
            "process 1 (sh) holds CAP_SYS_ADMIN in its permitted and effective \
                            capability sets",
        ]);
        assert!(
            judge(Edit::ChildCapability, &tree(), &other)
                .unwrap()
                .contains("process 2 (tail)")
        );
        assert!(judge(Edit::Apparmor, &tree(), "ctr: no such image").is_some());
    }

    #[test]
    fn a_capability_lands_in_its_word() {
        let mut words = vec![0, 0];
        add_capability(&mut words, "CAP_SYS_ADMIN");
        assert_eq!(words, [1 << 21, 0]);
        let mut short = Vec::new();
        add_capability(&mut short, "CAP_BPF");
        assert_eq!(short, [0, 1 << (39 - 32)]);
    }

    #[test]
    fn edits_decode_and_reencode() {
        let dir = tempfile::tempdir().unwrap();
        let core = CoreEntry {
            tc: Some(proto::TaskCoreEntry {
                comm: "sh".into(),
                ..Default::default()
            }),
            thread_core: Some(proto::ThreadCoreEntry {
                creds: Some(CredsEntry {
                    cap_eff: vec![0, 0],
                    cap_prm: vec![0, 0],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        std::fs::write(
            core_image(dir.path(), 1),
            images::write(CORE_MAGIC, &[core]),
        )
        .unwrap();
        Edit::RealtimeScheduling.apply(dir.path(), &tree()).unwrap();
        let [edited]: [CoreEntry; 1] = decode_all(&core_image(dir.path(), 1), CORE_MAGIC)
            .unwrap()
            .try_into()
            .unwrap();
        let thread = edited.thread_core.unwrap();
        assert_eq!(
            (thread.sched_policy, thread.sched_prio),
            (Some(1), Some(50))
        );
        assert_eq!(edited.tc.unwrap().comm, "sh");
    }
}
