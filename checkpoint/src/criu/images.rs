//! What a checkpoint's CRIU images make of the restored processes: the part of each image
//! that decides privilege (credentials, capabilities, no_new_privs, seccomp, scheduling,
//! rlimits, oom_score_adj, loginuid, the mount tree, user namespaces), decoded into plain
//! values for the restore check ([`crate::privilege`]) and `revive image inspect`.
//!
//! Invariants: every file is read with a size bound and without following symlinks; every
//! count is bounded; a record CRIU would act on but this decoder cannot read (an unknown
//! magic, a missing core or credentials, a capability word past the second, the legacy
//! `creds-*.img` layout) is an error, never skipped.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use serde::Serialize;

use super::proto;
use super::{COMMON_MAGIC, ImageError, SERVICE_MAGIC};

/// Per-image magics (CRIU's `criu/include/magic.h`).
pub const INVENTORY_MAGIC: u32 = 0x5831_3116;
pub const PSTREE_MAGIC: u32 = 0x5027_3030;
pub const CORE_MAGIC: u32 = 0x5505_3847;
pub const MNTS_MAGIC: u32 = 0x5556_3928;
pub const USERNS_MAGIC: u32 = 0x5547_4906;
pub const SECCOMP_MAGIC: u32 = 0x6441_3049;
pub const CGROUP_MAGIC: u32 = 0x5938_3330;
pub const FS_MAGIC: u32 = 0x5140_3912;
pub const FILES_MAGIC: u32 = 0x5630_3138;

/// Largest image file read: a core image with every register set and signal is tens of KiB,
/// and seccomp.img holds at most a few thousand filters of at most 32 KiB (BPF_MAXINSNS).
const MAX_IMAGE_BYTES: u64 = 64 << 20;
/// Largest single record (a seccomp filter chain entry, a core with an xsave area).
const MAX_RECORD: usize = 4 << 20;
/// Most records in one image, processes in a tree, and threads of one process.
const MAX_RECORDS: usize = 1 << 16;
/// CRIU's `TASK_DEAD` (compel's task states): a zombie, restored only to be reaped.
const TASK_DEAD: u32 = 2;

/// The capability sets of one thread, as bit masks (bit N is capability N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CapSets {
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
}

/// A thread's credentials, as CRIU restores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Creds {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
    pub caps: CapSets,
    pub secbits: u32,
    pub no_new_privs: bool,
    /// The LSM label CRIU would set (unless the runtime passes one of its own).
    pub lsm_profile: Option<String>,
}

/// A thread's seccomp state: the mode (0 none, 1 strict, 2 filter) and, in filter mode, the
/// index of its newest filter in [`Checkpoint::seccomp_filters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Seccomp {
    pub mode: u32,
    pub filter: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Thread {
    pub tid: u32,
    pub creds: Creds,
    pub seccomp: Seccomp,
    /// SCHED_* policy (0 is SCHED_OTHER), its static priority, and the nice value.
    pub sched_policy: u32,
    pub sched_prio: u32,
    pub sched_nice: i32,
    /// The cgroup set CRIU moves the thread into (none: it stays where CRIU is).
    pub cg_set: Option<u32>,
}

/// A resource limit: soft and hard (`u64::MAX` is unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// Restored as a zombie: it never runs.
    pub zombie: bool,
    pub threads: Vec<Thread>,
    /// Indexed by RLIMIT_* number.
    pub rlimits: Vec<Rlimit>,
    pub oom_score_adj: Option<i32>,
    pub loginuid: Option<u32>,
}

/// One mount of a restored mount namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub id: u32,
    pub parent: u32,
    /// Where it is mounted, from the namespace's root ("/proc").
    pub mountpoint: String,
    /// The filesystem type: CRIU's name for it ("proc", "sysfs", "binfmt_misc"...), or the
    /// kernel's for the types CRIU knows only by name.
    pub fstype: String,
    /// The part of the filesystem mounted ("/" for a whole filesystem, else a bind).
    pub root: String,
    pub source: String,
    /// MS_* flags of the mount and of its superblock.
    pub flags: u32,
    pub sb_flags: u32,
    /// Given again by the runtime at restore (a bind mount of the container's spec).
    pub external: bool,
}

pub const MS_RDONLY: u32 = 1;
pub const MS_NOSUID: u32 = 2;
pub const MS_NODEV: u32 = 4;
pub const MS_NOEXEC: u32 = 8;

impl Mount {
    pub fn read_only(&self) -> bool {
        (self.flags | self.sb_flags) & MS_RDONLY != 0
    }
}

/// A user namespace's id maps: (first id inside, first id outside, count).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserNs {
    pub uid_map: Vec<(u32, u32, u32)>,
    pub gid_map: Vec<(u32, u32, u32)>,
}

/// One seccomp filter: a classic BPF program and the index of the filter installed before
/// it, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SeccompFilter {
    #[serde(skip)]
    pub program: Vec<u8>,
    pub prev: Option<u32>,
    pub flags: u32,
}

/// A set of cgroups processes are restored into.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CgroupSet {
    pub id: u32,
    pub members: Vec<CgroupMember>,
}

/// One controller's cgroup of a set: the path from the controller's root, and how much of
/// it is the cgroup namespace's root (an offset CRIU indexes the path with).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CgroupMember {
    pub controller: String,
    pub path: String,
    pub cgns_prefix: Option<u32>,
}

/// Most cgroup directories (with their children) read from cgroup.img.
const MAX_CGROUP_DIRS: usize = 1 << 14;

/// Everything a restore would set from a checkpoint's CRIU images that decides privilege.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub processes: Vec<Process>,
    pub mounts: Vec<Mount>,
    pub seccomp_filters: Vec<SeccompFilter>,
    pub user_namespaces: Vec<UserNs>,
    /// The cgroup sets CRIU places processes in.
    pub cgroup_sets: Vec<CgroupSet>,
    /// The cgroup directories CRIU would create and configure: (controllers, path below the
    /// controller's root).
    pub cgroup_dirs: Vec<(String, String)>,
    /// Image files CRIU would act on that a container restore never needs: AppArmor
    /// policy it would load into the host's kernel (`apparmor.img`), host-wide binfmt_misc
    /// interpreters (`binfmt-misc-*.img`).
    pub host_images: Vec<String>,
}

impl Checkpoint {
    /// The filters of a chain, newest first, from the index a thread names.
    pub fn filter_chain(&self, newest: u32) -> Result<Vec<&SeccompFilter>, ImageError> {
        let mut chain = Vec::new();
        let mut at = Some(newest);
        while let Some(i) = at {
            let filter = self.seccomp_filters.get(i as usize).ok_or_else(|| {
                ImageError::Decode(format!(
                    "seccomp.img: filter {i} is named but the image holds {}",
                    self.seccomp_filters.len()
                ))
            })?;
            chain.push(filter);
            if chain.len() > self.seccomp_filters.len() {
                return Err(ImageError::Decode(
                    "seccomp.img: the filters' prev links form a loop".into(),
                ));
            }
            at = filter.prev;
        }
        Ok(chain)
    }
}

/// Where image files come from: a directory, or (tests, fuzzing, archives read in memory)
/// a map of names to contents.
pub trait Source {
    /// The names of every file.
    fn names(&self) -> Result<Vec<String>, ImageError>;
    /// A file's contents, `None` if there is no such file.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, ImageError>;
    /// The size of a file, `None` if there is no such file. Memory page files are read
    /// through this and [`Source::read_at`], never whole.
    fn size(&self, name: &str) -> Result<Option<u64>, ImageError>;
    /// Fills `buf` from `offset` of a file; a file too short for it is an error.
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), ImageError>;
}

/// A directory of CRIU images.
pub struct Dir<'a>(pub &'a Path);

impl Source for Dir<'_> {
    fn names(&self) -> Result<Vec<String>, ImageError> {
        let io = |e: std::io::Error| ImageError::Io(format!("{}: {e}", self.0.display()));
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.0).map_err(io)? {
            let entry = entry.map_err(io)?;
            if let Some(n) = entry.file_name().to_str() {
                names.push(n.to_string());
            }
            if names.len() > MAX_RECORDS * 4 {
                return Err(ImageError::Decode("too many image files".into()));
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, ImageError> {
        read_file(self.0, name)
    }

    fn size(&self, name: &str) -> Result<Option<u64>, ImageError> {
        Ok(match open_file(self.0, name)? {
            Some(file) => Some(
                file.metadata()
                    .map_err(|e| ImageError::Io(format!("{name}: {e}")))?
                    .len(),
            ),
            None => None,
        })
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), ImageError> {
        use std::os::unix::fs::FileExt;
        let file = open_file(self.0, name)?.ok_or_else(|| ImageError::Missing(name.into()))?;
        file.read_exact_at(buf, offset)
            .map_err(|e| ImageError::Io(format!("{name} at {offset}: {e}")))
    }
}

impl Source for BTreeMap<String, Vec<u8>> {
    fn names(&self) -> Result<Vec<String>, ImageError> {
        Ok(self.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, ImageError> {
        Ok(self.get(name).cloned())
    }

    fn size(&self, name: &str) -> Result<Option<u64>, ImageError> {
        Ok(self.get(name).map(|d| d.len() as u64))
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), ImageError> {
        let data = self
            .get(name)
            .ok_or_else(|| ImageError::Missing(name.into()))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let part = start
            .checked_add(buf.len())
            .and_then(|end| data.get(start..end))
            .ok_or(ImageError::Truncated("page data"))?;
        buf.copy_from_slice(part);
        Ok(())
    }
}

/// Whether [`read`] reads (or refuses by its name) the image file `name`: a reader of an
/// archive keeps these and skips the rest (memory pages above all).
pub fn is_read(name: &str) -> bool {
    let img = |prefix: &str| name.starts_with(prefix) && name.ends_with(".img");
    matches!(
        name,
        "inventory.img" | "pstree.img" | "seccomp.img" | "apparmor.img" | "cgroup.img"
    ) || ["core-", "mountpoints-", "userns-", "creds-"]
        .iter()
        .any(|p| img(p))
        || name.starts_with("binfmt-misc")
}

/// The mode of the root directory of the checkpoint's first process, as CRIU recorded it
/// and checks it at restore ("File . has bad mode"): an engine may give a container's `/`
/// another mode than the layers of the container it is restored into do. `None` where the
/// images do not record it.
pub fn root_mode(source: &dyn Source) -> Result<Option<u32>, ImageError> {
    let Some(tree) = source.read("pstree.img")? else {
        return Ok(None);
    };
    let tree: Vec<proto::PstreeEntry> = all(&tree, PSTREE_MAGIC, "pstree.img")?;
    let Some(init) = tree.first() else {
        return Ok(None);
    };
    let fs_image = format!("fs-{}.img", init.pid);
    let (Some(fs), Some(files)) = (source.read(&fs_image)?, source.read("files.img")?) else {
        return Ok(None);
    };
    let fs: proto::FsEntry = one(&fs, FS_MAGIC, &fs_image)?;
    let files: Vec<proto::FileEntry> = all(&files, FILES_MAGIC, "files.img")?;
    Ok(files
        .iter()
        .find(|f| f.id == fs.root_id)
        .and_then(|f| f.reg.as_ref())
        .and_then(|reg| reg.mode))
}

/// Decodes the privilege-deciding state of every process in the CRIU image directory `dir`.
pub fn read_dir(dir: &Path) -> Result<Checkpoint, ImageError> {
    read(&Dir(dir))
}

/// [`read_dir`] over any [`Source`] of image files.
pub fn read(source: &dyn Source) -> Result<Checkpoint, ImageError> {
    let required = |name: &str| {
        source
            .read(name)?
            .ok_or_else(|| ImageError::Missing(name.to_string()))
    };
    let inventory: proto::InventoryEntry = one(
        &required("inventory.img")?,
        INVENTORY_MAGIC,
        "inventory.img",
    )?;
    // Image version 2 is every CRIU since 1.x; anything else is a layout this decoder does
    // not know.
    if inventory.img_version != 2 {
        return Err(ImageError::Decode(format!(
            "inventory.img: image version {} is not CRIU's version 2",
            inventory.img_version
        )));
    }
    let tree: Vec<proto::PstreeEntry> = all(&required("pstree.img")?, PSTREE_MAGIC, "pstree.img")?;
    if tree.is_empty() {
        return Err(ImageError::Decode("pstree.img: no process".into()));
    }
    let mut processes = Vec::with_capacity(tree.len());
    let mut threads_seen = 0usize;
    for entry in &tree {
        threads_seen += entry.threads.len().max(1);
        if threads_seen > MAX_RECORDS {
            return Err(ImageError::Decode(format!(
                "pstree.img: more than {MAX_RECORDS} threads"
            )));
        }
        processes.push(process(entry, source)?);
    }
    let mut mounts = Vec::new();
    let mut user_namespaces = Vec::new();
    let mut host_images = Vec::new();
    let mut seccomp_filters = Vec::new();
    let (mut cgroup_sets, mut cgroup_dirs) = (Vec::new(), Vec::new());
    for name in source.names()? {
        if name.starts_with("mountpoints-") && name.ends_with(".img") {
            let entries: Vec<proto::MntEntry> = all(&required(&name)?, MNTS_MAGIC, &name)?;
            mounts.extend(entries.into_iter().map(mount));
            if mounts.len() > MAX_RECORDS {
                return Err(ImageError::Decode(format!(
                    "more than {MAX_RECORDS} mounts"
                )));
            }
        } else if name.starts_with("userns-") && name.ends_with(".img") {
            let entry: proto::UsernsEntry = one(&required(&name)?, USERNS_MAGIC, &name)?;
            let map = |m: &[proto::UidGidExtent]| {
                m.iter()
                    .map(|e| (e.first, e.lower_first, e.count))
                    .collect()
            };
            user_namespaces.push(UserNs {
                uid_map: map(&entry.uid_map),
                gid_map: map(&entry.gid_map),
            });
        } else if name == "seccomp.img" {
            let entry: proto::SeccompEntry = one(&required(&name)?, SECCOMP_MAGIC, &name)?;
            seccomp_filters = entry
                .seccomp_filters
                .into_iter()
                .map(|f| SeccompFilter {
                    program: f.filter,
                    prev: f.prev,
                    flags: f.flags.unwrap_or(0),
                })
                .collect();
        } else if name == "cgroup.img" {
            let entry: proto::CgroupEntry = one(&required(&name)?, CGROUP_MAGIC, &name)?;
            cgroup_sets = entry
                .sets
                .into_iter()
                .map(|set| CgroupSet {
                    id: set.id,
                    members: set
                        .ctls
                        .into_iter()
                        .map(|m| CgroupMember {
                            controller: m.name,
                            path: m.path,
                            cgns_prefix: m.cgns_prefix,
                        })
                        .collect(),
                })
                .collect();
            for controller in &entry.controllers {
                let names = controller.cnames.join(",");
                for dir in &controller.dirs {
                    cgroup_directories(&names, "", dir, &mut cgroup_dirs)?;
                }
            }
        } else if name == "apparmor.img" || name.starts_with("binfmt-misc") {
            host_images.push(name);
        } else if name.starts_with("creds-") {
            return Err(ImageError::Decode(format!(
                "{name}: credentials in CRIU's legacy layout (before CRIU 1.3) are not read; \
                 checkpoint the container again with a current CRIU"
            )));
        }
    }
    Ok(Checkpoint {
        processes,
        mounts,
        seccomp_filters,
        user_namespaces,
        cgroup_sets,
        cgroup_dirs,
        host_images,
    })
}

/// Every directory of a cgroup tree, with its path from the controller's root.
fn cgroup_directories(
    controllers: &str,
    parent: &str,
    dir: &proto::CgroupDirEntry,
    out: &mut Vec<(String, String)>,
) -> Result<(), ImageError> {
    let path = format!("{parent}/{}", dir.dir_name);
    out.push((controllers.to_string(), path.clone()));
    if out.len() > MAX_CGROUP_DIRS {
        return Err(ImageError::Decode(format!(
            "cgroup.img: more than {MAX_CGROUP_DIRS} cgroup directories"
        )));
    }
    for child in &dir.children {
        cgroup_directories(controllers, &path, child, out)?;
    }
    Ok(())
}

/// The core image of thread `tid` (`core-<tid>.img`), with its name.
pub(crate) fn read_core(
    source: &dyn Source,
    tid: u32,
) -> Result<(String, proto::CoreEntry), ImageError> {
    let name = format!("core-{tid}.img");
    let data = source
        .read(&name)?
        .ok_or_else(|| ImageError::Missing(name.clone()))?;
    let core = one(&data, CORE_MAGIC, &name)?;
    Ok((name, core))
}

fn process(entry: &proto::PstreeEntry, source: &dyn Source) -> Result<Process, ImageError> {
    let pid = entry.pid;
    let mut leader = Some(read_core(source, pid)?);
    if let Some((_, proto::CoreEntry { tc: Some(tc), .. })) = &leader
        && tc.task_state == TASK_DEAD
    {
        // CRIU dumps a zombie as its task core alone (no thread core), and its pstree entry's
        // thread ids are whatever that slot held (never set for a task that is not seized):
        // CRIU's restore reads no thread of a zombie, and neither does this.
        return Ok(Process {
            pid,
            ppid: entry.ppid,
            comm: tc.comm.clone(),
            zombie: true,
            ..Process::default()
        });
    }
    // A process's first thread is itself; old images list no threads for single-threaded
    // processes.
    let tids: Vec<u32> = if entry.threads.is_empty() {
        vec![pid]
    } else {
        entry.threads.clone()
    };
    let mut out = Process {
        pid,
        ppid: entry.ppid,
        ..Process::default()
    };
    // The per-task cgroup set of old images applies to every thread.
    let mut task_cg_set = None;
    for tid in tids {
        let (name, core) = match leader.take_if(|_| tid == pid) {
            Some(read) => read,
            None => read_core(source, tid)?,
        };
        let mut thread_core = core
            .thread_core
            .ok_or_else(|| ImageError::Decode(format!("{name}: no thread core")))?;
        if tid == pid {
            let tc = core
                .tc
                .ok_or_else(|| ImageError::Decode(format!("{name}: no task core")))?;
            // CRIU moves the per-task seccomp fields of old images onto the leader.
            if let Some(mode) = tc.old_seccomp_mode {
                thread_core.seccomp_mode = Some(mode);
            }
            if let Some(filter) = tc.old_seccomp_filter {
                thread_core.seccomp_filter = Some(filter);
            }
            task_cg_set = tc.cg_set;
            out.comm = tc.comm.clone();
            out.oom_score_adj = tc.oom_score_adj;
            out.loginuid = tc.loginuid;
            out.rlimits = tc
                .rlimits
                .map(|r| {
                    r.rlimits
                        .iter()
                        .map(|l| Rlimit {
                            soft: l.cur,
                            hard: l.max,
                        })
                        .collect()
                })
                .unwrap_or_default();
        }
        let creds = thread_core.creds.as_ref().ok_or_else(|| {
            ImageError::Decode(format!("{name}: no credentials for thread {tid}"))
        })?;
        out.threads.push(Thread {
            tid,
            creds: decode_creds(creds, &name)?,
            seccomp: Seccomp {
                mode: thread_core.seccomp_mode.unwrap_or(0).max(0) as u32,
                filter: thread_core.seccomp_filter,
            },
            sched_policy: thread_core.sched_policy.unwrap_or(0),
            sched_prio: thread_core.sched_prio.unwrap_or(0),
            sched_nice: thread_core.sched_nice.unwrap_or(0),
            cg_set: thread_core.cg_set.or(task_cg_set),
        });
    }
    Ok(out)
}

fn decode_creds(c: &proto::CredsEntry, image: &str) -> Result<Creds, ImageError> {
    let set = |words: &[u32], what: &str| -> Result<u64, ImageError> {
        if words.iter().skip(2).any(|w| *w != 0) {
            return Err(ImageError::Decode(format!(
                "{image}: the {what} capability set names capabilities past 63, which no \
                 kernel has"
            )));
        }
        let word = |i: usize| u64::from(words.get(i).copied().unwrap_or(0));
        Ok(word(0) | (word(1) << 32))
    };
    if c.groups.len() > MAX_RECORDS {
        return Err(ImageError::Decode(format!("{image}: too many groups")));
    }
    Ok(Creds {
        uid: c.uid,
        euid: c.euid,
        suid: c.suid,
        fsuid: c.fsuid,
        gid: c.gid,
        egid: c.egid,
        sgid: c.sgid,
        fsgid: c.fsgid,
        groups: c.groups.clone(),
        caps: CapSets {
            inheritable: set(&c.cap_inh, "inheritable")?,
            permitted: set(&c.cap_prm, "permitted")?,
            effective: set(&c.cap_eff, "effective")?,
            bounding: set(&c.cap_bnd, "bounding")?,
            ambient: set(&c.cap_amb, "ambient")?,
        },
        secbits: c.secbits,
        no_new_privs: c.no_new_privs.unwrap_or(0) != 0,
        lsm_profile: c.lsm_profile.clone().filter(|p| !p.is_empty()),
    })
}

/// CRIU's name of a filesystem type (its `fstype` enum, `criu/filesystems.c`).
fn fstype_name(fstype: u32, fsname: Option<&str>) -> String {
    let name = match fstype {
        1 => "proc",
        2 => "sysfs",
        3 => "devtmpfs",
        4 => "binfmt_misc",
        5 => "tmpfs",
        6 => "devpts",
        7 => "simfs",
        8 => "pstore",
        9 => "securityfs",
        10 => "fusectl",
        11 => "debugfs",
        12 => "cgroup",
        13 => "aufs",
        14 => "mqueue",
        15 => "fuse",
        17 => "overlay",
        18 => "autofs",
        19 => "tracefs",
        23 => "cgroup2",
        // AUTO and UNSUPPORTED carry the kernel's name, if any.
        _ => return fsname.unwrap_or("unknown").to_string(),
    };
    name.to_string()
}

fn mount(m: proto::MntEntry) -> Mount {
    Mount {
        id: m.mnt_id,
        parent: m.parent_mnt_id,
        mountpoint: clean_path(&m.mountpoint),
        fstype: fstype_name(m.fstype, m.fsname.as_deref()),
        root: m.root,
        source: m.source,
        flags: m.flags,
        sb_flags: m.sb_flags.unwrap_or(0),
        external: m.ext_mount.unwrap_or(false) || m.ext_key.is_some(),
    }
}

/// An absolute path without `.`, empty components or trailing slashes ("./proc/" -> "/proc").
pub fn clean_path(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Opens `dir/name`, a regular file, without following a symlink; `None` if it is not there.
fn open_file(dir: &Path, name: &str) -> Result<Option<std::fs::File>, ImageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| ImageError::Io(format!("{}: {e}", dir.join(name).display()));
    if name.contains('/') {
        return Err(ImageError::Decode(format!("{name}: not a file name")));
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(dir.join(name))
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if !file.metadata().map_err(io)?.is_file() {
        return Err(ImageError::Decode(format!("{name}: not a regular file")));
    }
    Ok(Some(file))
}

/// Reads `dir/name` without following a symlink, at most [`MAX_IMAGE_BYTES`].
fn read_file(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, ImageError> {
    use std::io::Read;
    let io = |e: std::io::Error| ImageError::Io(format!("{}: {e}", dir.join(name).display()));
    let Some(file) = open_file(dir, name)? else {
        return Ok(None);
    };
    let mut data = Vec::new();
    file.take(MAX_IMAGE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    if data.len() as u64 > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge(data.len()));
    }
    Ok(Some(data))
}

/// The records of an image file whose magic must be `magic`.
pub fn records<'a>(data: &'a [u8], magic: u32, image: &str) -> Result<Vec<&'a [u8]>, ImageError> {
    records_up_to(data, magic, image, MAX_RECORDS)
}

/// [`records`], at most `max` of them.
pub(crate) fn records_up_to<'a>(
    data: &'a [u8],
    magic: u32,
    image: &str,
    max: usize,
) -> Result<Vec<&'a [u8]>, ImageError> {
    let word = |at: usize| -> Option<u32> {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut at = 0;
    let mut found = word(at).ok_or(ImageError::Truncated("magic"))?;
    if found == COMMON_MAGIC || found == SERVICE_MAGIC {
        at += 4;
        found = word(at).ok_or(ImageError::Truncated("magic"))?;
    }
    if found != magic {
        return Err(ImageError::Magic {
            found,
            expected: magic,
        });
    }
    at += 4;
    let mut out = Vec::new();
    while at < data.len() {
        let len = word(at).ok_or(ImageError::Truncated("record length"))? as usize;
        at += 4;
        if len > MAX_RECORD {
            return Err(ImageError::TooLarge(len));
        }
        let record = data
            .get(at..at + len)
            .ok_or(ImageError::Truncated("record"))?;
        at += len;
        out.push(record);
        if out.len() > max {
            return Err(ImageError::Decode(format!(
                "{image}: more than {max} records"
            )));
        }
    }
    Ok(out)
}

pub(crate) fn decode<M: Message + Default>(record: &[u8], image: &str) -> Result<M, ImageError> {
    M::decode(record).map_err(|e| ImageError::Decode(format!("{image}: {e}")))
}

/// The single record of an image that holds exactly one.
pub(crate) fn one<M: Message + Default>(
    data: &[u8],
    magic: u32,
    image: &str,
) -> Result<M, ImageError> {
    match records(data, magic, image)?.as_slice() {
        [record] => decode(record, image),
        other => Err(ImageError::Decode(format!(
            "{image}: {} records where CRIU writes one",
            other.len()
        ))),
    }
}

pub(crate) fn all<M: Message + Default>(
    data: &[u8],
    magic: u32,
    image: &str,
) -> Result<Vec<M>, ImageError> {
    records(data, magic, image)?
        .into_iter()
        .map(|r| decode(r, image))
        .collect()
}

/// Writes an image file: magics, then each record with its length. The inverse of
/// [`records`]; tests and crafted test images use it.
pub fn write<M: Message>(magic: u32, messages: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&COMMON_MAGIC.to_le_bytes());
    out.extend_from_slice(&magic.to_le_bytes());
    for m in messages {
        let bytes = m.encode_to_vec();
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

#[cfg(test)]
#[path = "images/tests.rs"]
pub(crate) mod tests;
