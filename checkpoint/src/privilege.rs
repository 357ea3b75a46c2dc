//! The restore check: nothing a restore brings back may hold more privilege than the new
//! container's spec would give a freshly started process.
//!
//! CRIU restores credentials, capabilities, securebits, no_new_privs, seccomp filters,
//! scheduling, rlimits, oom_score_adj, loginuid and the mount tree from its image files, and
//! `runc restore` applies none of the spec's `process` or `linux.seccomp` to the restored
//! processes. So the policy is the spec containerd or CRI wrote for the new container, as it
//! was before revive changed anything (what admission control saw), and [`check`] compares
//! every thread of every process of the checkpoint ([`Checkpoint`]) with it.
//!
//! What a freshly started process can hold ([`Policy::reachable`]): runc sets the spec's
//! capability sets, then executes the process. For uid 0 the kernel then gives the process
//! the bounding set as permitted and effective (the spec's permitted set under
//! no_new_privs, which caps what an execve may gain at what the process held). For any other
//! uid the execve leaves only the ambient set. Without no_new_privs, a process that may become
//! uid 0 (uid 0, or CAP_SETUID reachable) reaches the whole bounding set by executing a
//! program. A process holding a capability it could not reach that way is refused. The
//! privilege a set-user-ID or file-capability program could grant a non-root process is not
//! counted: the check refuses such a checkpoint rather than trust files of the image.
//!
//! Where the spec has a seccomp profile, every thread's filter chain must be at least as
//! restrictive as the filter runc compiles from it, for every system call and argument
//! (`seccomp`); where it has none, any filter passes (a filter only takes privilege away).

pub mod caps;
mod cgroups;
mod mounts;
mod seccomp;

pub use seccomp::{ProfileError, ProgramError};
mod syscalls;

use std::fmt;

use serde_json::Value;

use crate::criu::images::{Checkpoint, Process, Thread, UserNs};

/// Securebits that grant privilege: keep capabilities across a change of uid without
/// CAP_SETPCAP's consent (SECBIT_NO_SETUID_FIXUP). The others only take privilege away;
/// SECBIT_KEEP_CAPS matters only to a process that may change its uid anyway.
const SECBIT_NO_SETUID_FIXUP: u32 = 1 << 2;

/// Real-time scheduling policies: SCHED_FIFO, SCHED_RR, SCHED_DEADLINE.
const REALTIME: &[u32] = &[1, 2, 6];

/// RLIMIT_* names in the kernel's generic numbering (x86, arm, riscv...).
const RLIMITS: &[&str] = &[
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// What the new container's spec grants a process started in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub bounding: u64,
    pub permitted: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub ambient: u64,
    pub no_new_privs: bool,
    /// The spec's seccomp profile (`linux.seccomp`), where runc would install a filter for it.
    pub seccomp: Option<Value>,
    /// Hard limits the spec sets, by RLIMIT number.
    pub rlimits: Vec<(usize, u64)>,
    pub oom_score_adj: Option<i32>,
    pub mounts: Vec<SpecMount>,
    pub readonly_paths: Vec<String>,
    pub masked_paths: Vec<String>,
    pub root_readonly: bool,
    /// The spec's user namespace maps, if it asks for a user namespace of its own.
    pub user_namespace: Option<UserNs>,
}

/// A mount of the spec: where, what type (`bind` for bind mounts) and its options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecMount {
    pub destination: String,
    pub kind: String,
    pub options: Vec<String>,
}

/// What the process the container would start inherits from the shim where the spec says
/// nothing, and what the check cannot see in the images.
pub struct Host<'a> {
    /// The shim's own hard limits, by RLIMIT number (`None` where unknown).
    pub rlimits: Vec<Option<u64>>,
    pub oom_score_adj: i32,
    /// The shim's loginuid (`u32::MAX` when unset).
    pub loginuid: u32,
    /// Whether a path exists in a fresh container: runc skips read-only and masked paths
    /// that do not, so the check asks before it insists on one.
    pub path_exists: &'a dyn Fn(&str) -> bool,
}

impl Host<'_> {
    /// The shim's own limits, oom_score_adj and loginuid; `path_exists` answers for
    /// `/proc` and `/sys` paths from the host's (one kernel), and says yes for the rest.
    pub fn of_this_process() -> Host<'static> {
        let mut rlimits = Vec::with_capacity(RLIMITS.len());
        for resource in 0..RLIMITS.len() {
            let mut limit = nix::libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes one rlimit into the struct it is given.
            let ok = unsafe { nix::libc::getrlimit(resource as _, &mut limit) } == 0;
            rlimits.push(ok.then_some(limit.rlim_max));
        }
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Host {
            rlimits,
            oom_score_adj: read("/proc/self/oom_score_adj")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            loginuid: read("/proc/self/loginuid")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(u32::MAX),
            path_exists: &|path: &str| {
                if path.starts_with("/proc/") || path.starts_with("/sys/") {
                    std::path::Path::new(path).exists()
                } else {
                    true
                }
            },
        }
    }
}

/// One way a checkpoint exceeds its container's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What holds it: "process 1 (sh)", "thread 12 of process 7 (redis)", "the mount at /sys".
    pub holder: String,
    /// What the checkpoint has and what the spec allows.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.holder, self.what)
    }
}

/// Every violation found, and what the operator can do about them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refusal {
    pub violations: Vec<Violation>,
}

/// Violations listed in a refusal before "and N more".
const LISTED: usize = 12;

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "restore refused: the checkpoint would bring back more privilege than this \
             container's spec grants:"
        )?;
        for v in self.violations.iter().take(LISTED) {
            write!(f, "\n  - {v}")?;
        }
        if self.violations.len() > LISTED {
            write!(f, "\n  - and {} more", self.violations.len() - LISTED)?;
        }
        write!(
            f,
            "\nwhat to do: create the container with at least the privilege the checkpoint's \
             processes hold (the user, capabilities, privileged mode, seccomp profile or \
             mounts named above; `revive image inspect` lists them), or restore a checkpoint \
             of a container that ran with no more privilege than this one"
        )
    }
}

/// Why a container's OCI runtime spec cannot be read for the restore check: a spec the
/// check cannot read is not one it can enforce, so the restore is refused; fix the field
/// named where the container is defined (runc reads these fields the same way).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A field that must be a number (a uid, a gid) is something else.
    #[error("the spec's {field} is not a number")]
    NotANumber { field: String },
    /// A list of strings (capabilities, mount options, paths) holds something else.
    #[error("the spec's {field} holds a non-string")]
    NonString { field: String },
    /// A field that must be a list is something else.
    #[error("the spec's {field} is not a list")]
    NotAList { field: String },
    /// An entry of `process.rlimits` without a `type`.
    #[error("the spec has an rlimit without a type")]
    RlimitWithoutType,
    /// An entry of `process.rlimits` without a `hard` limit.
    #[error("the spec's {kind} has no hard limit")]
    RlimitWithoutHard { kind: String },
    /// An entry of `mounts` without a `destination`.
    #[error("the spec has a mount without a destination")]
    MountWithoutDestination,
    /// `linux.seccomp` cannot be read.
    #[error("the spec's seccomp profile cannot be read: {0}")]
    Seccomp(#[from] ProfileError),
}

impl Policy {
    /// Reads the policy from an OCI runtime spec (as JSON). A field of the wrong type is an
    /// error: a spec the check cannot read is not one it can enforce.
    pub fn from_spec(spec: &Value) -> Result<Policy, SpecError> {
        let process = &spec["process"];
        let user = &process["user"];
        let u32_of = |v: &Value, what: &str| -> Result<u32, SpecError> {
            match v {
                Value::Null => Ok(0),
                v => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| SpecError::NotANumber {
                        field: what.to_string(),
                    }),
            }
        };
        let strings = |v: &Value, what: &str| -> Result<Vec<String>, SpecError> {
            match v {
                Value::Null => Ok(Vec::new()),
                Value::Array(a) => a
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| SpecError::NonString {
                                field: what.to_string(),
                            })
                    })
                    .collect(),
                _ => Err(SpecError::NotAList {
                    field: what.to_string(),
                }),
            }
        };
        let caps = &process["capabilities"];
        let set = |name: &str| -> Result<u64, SpecError> {
            let list = strings(&caps[name], &format!("process.capabilities.{name}"))?;
            Ok(caps::from_names(list.iter().map(String::as_str)))
        };
        let mut additional_gids = Vec::new();
        for g in user["additionalGids"].as_array().into_iter().flatten() {
            additional_gids.push(u32_of(g, "process.user.additionalGids")?);
        }
        let mut rlimits = Vec::new();
        for r in process["rlimits"].as_array().into_iter().flatten() {
            let Some(kind) = r["type"].as_str() else {
                return Err(SpecError::RlimitWithoutType);
            };
            if let Some(n) = RLIMITS.iter().position(|k| k.eq_ignore_ascii_case(kind)) {
                let hard = r["hard"]
                    .as_u64()
                    .ok_or_else(|| SpecError::RlimitWithoutHard {
                        kind: kind.to_string(),
                    })?;
                rlimits.push((n, hard));
            }
        }
        let linux = &spec["linux"];
        let mut mounts = Vec::new();
        for m in spec["mounts"].as_array().into_iter().flatten() {
            let destination = m["destination"]
                .as_str()
                .ok_or(SpecError::MountWithoutDestination)?;
            let options = strings(&m["options"], "mount options")?;
            let bind = options.iter().any(|o| o == "bind" || o == "rbind");
            let kind = match m["type"].as_str() {
                _ if bind => "bind".to_string(),
                Some(t) => t.to_string(),
                None => "none".to_string(),
            };
            mounts.push(SpecMount {
                destination: crate::criu::images::clean_path(destination),
                kind,
                options,
            });
        }
        let user_namespace = linux["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|ns| ns["type"] == "user")
            .then(|| {
                let map = |v: &Value| -> Vec<(u32, u32, u32)> {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .map(|m| {
                            let n = |k: &str| m[k].as_u64().unwrap_or(0) as u32;
                            (n("containerID"), n("hostID"), n("size"))
                        })
                        .collect()
                };
                UserNs {
                    uid_map: map(&linux["uidMappings"]),
                    gid_map: map(&linux["gidMappings"]),
                }
            });
        let seccomp = match linux.get("seccomp") {
            None | Some(Value::Null) => None,
            Some(profile) => {
                seccomp::Profile::parse(profile, seccomp::Abi::native())?.map(|_| profile.clone())
            }
        };
        Ok(Policy {
            uid: u32_of(&user["uid"], "process.user.uid")?,
            gid: u32_of(&user["gid"], "process.user.gid")?,
            additional_gids,
            bounding: set("bounding")?,
            permitted: set("permitted")?,
            effective: set("effective")?,
            inheritable: set("inheritable")?,
            ambient: set("ambient")?,
            no_new_privs: process["noNewPrivileges"].as_bool().unwrap_or(false),
            seccomp,
            rlimits,
            oom_score_adj: process["oomScoreAdj"].as_i64().map(|n| n as i32),
            mounts,
            readonly_paths: strings(&linux["readonlyPaths"], "linux.readonlyPaths")?,
            masked_paths: strings(&linux["maskedPaths"], "linux.maskedPaths")?,
            root_readonly: spec["root"]["readonly"].as_bool().unwrap_or(false),
            user_namespace,
        })
    }

    /// The capabilities a process started with this spec holds, or can reach: see the
    /// module's documentation.
    pub fn reachable(&self) -> u64 {
        let base = if self.uid == 0 {
            // The kernel gives root the bounding set at execve; no_new_privs caps it at
            // what runc left permitted.
            if self.no_new_privs {
                self.permitted & self.bounding
            } else {
                self.bounding
            }
        } else {
            self.ambient & self.permitted & self.bounding
        };
        if !self.no_new_privs && caps::has(base, caps::SETUID) {
            // It may make itself uid 0, then execute a program.
            base | self.bounding
        } else {
            base
        }
    }
}

/// Checks every thread of every process and every mount of `checkpoint` against `policy`.
pub fn check(checkpoint: &Checkpoint, policy: &Policy, host: &Host<'_>) -> Result<(), Refusal> {
    let mut out = Vec::new();
    let mut seccomp = seccomp::Checker::new(policy.seccomp.as_ref());
    for process in &checkpoint.processes {
        if process.zombie {
            continue;
        }
        check_process(checkpoint, process, policy, host, &mut seccomp, &mut out);
    }
    mounts::check(checkpoint, policy, host, &mut out);
    cgroups::check(checkpoint, &mut out);
    for image in &checkpoint.host_images {
        let what = if image == "apparmor.img" {
            "holds AppArmor policy for CRIU to load into the host's kernel; a container \
             restore never needs it"
        } else {
            "holds binfmt_misc interpreters, which are host-wide; a container restore never \
             needs them"
        };
        out.push(Violation {
            holder: format!("the image file {image}"),
            what: what.into(),
        });
    }
    if !checkpoint.user_namespaces.is_empty() {
        let ok = policy
            .user_namespace
            .as_ref()
            .is_some_and(|spec| checkpoint.user_namespaces.iter().all(|ns| ns == spec));
        if !ok {
            out.push(Violation {
                holder: "the checkpoint".into(),
                what: format!(
                    "has a user namespace with uid maps {:?}, and this container {}",
                    checkpoint.user_namespaces[0].uid_map,
                    match &policy.user_namespace {
                        Some(spec) => format!("maps {:?}", spec.uid_map),
                        None => "has no user namespace".into(),
                    }
                ),
            });
        }
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(Refusal {
            violations: merge(out),
        })
    }
}

/// Violations with the same text, merged into one that names every holder.
fn merge(violations: Vec<Violation>) -> Vec<Violation> {
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    for v in violations {
        match merged.iter_mut().find(|(what, _)| *what == v.what) {
            Some((_, holders)) => holders.push(v.holder),
            None => merged.push((v.what, vec![v.holder])),
        }
    }
    merged
        .into_iter()
        .map(|(what, holders)| {
            let holder = if holders.len() > 3 {
                format!("{} and {} more", holders[..3].join(", "), holders.len() - 3)
            } else {
                and_list(&holders)
            };
            Violation { holder, what }
        })
        .collect()
}

/// "a", "a and b", "a, b and c".
fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", init.join(", "), last.as_ref())
        }
    }
}

fn holder(process: &Process, thread: &Thread) -> String {
    if thread.tid == process.pid {
        format!("process {} ({})", process.pid, process.comm)
    } else {
        format!(
            "thread {} of process {} ({})",
            thread.tid, process.pid, process.comm
        )
    }
}

fn check_process<'a>(
    checkpoint: &'a Checkpoint,
    process: &Process,
    policy: &Policy,
    host: &Host<'_>,
    seccomp: &mut seccomp::Checker<'a>,
    out: &mut Vec<Violation>,
) {
    let reachable = policy.reachable();
    for thread in &process.threads {
        let who = holder(process, thread);
        let mut flag = |what: String| {
            out.push(Violation {
                holder: who.clone(),
                what,
            })
        };
        let c = &thread.creds;
        if !caps::has(reachable, caps::SETUID) {
            let uids = [c.uid, c.euid, c.suid, c.fsuid];
            if uids.iter().any(|u| *u != policy.uid) {
                flag(format!(
                    "runs as uid {} (effective {}, saved {}, filesystem {}), and this \
                     container runs as uid {} without CAP_SETUID",
                    c.uid, c.euid, c.suid, c.fsuid, policy.uid
                ));
            }
        }
        if !caps::has(reachable, caps::SETGID) {
            let allowed = |g: &u32| *g == policy.gid || policy.additional_gids.contains(g);
            let gids = [c.gid, c.egid, c.sgid, c.fsgid];
            if !gids.iter().all(allowed) || !c.groups.iter().all(allowed) {
                flag(format!(
                    "runs with gid {} (effective {}, saved {}, filesystem {}) and groups {:?}, \
                     and this container allows gid {} and groups {:?} without CAP_SETGID",
                    c.gid, c.egid, c.sgid, c.fsgid, c.groups, policy.gid, policy.additional_gids
                ));
            }
        }
        let inheritable_max = policy.inheritable
            | reachable
            | if caps::has(reachable, caps::SETPCAP) {
                policy.bounding
            } else {
                0
            };
        // Sets holding the same capabilities beyond the spec's are named together.
        let mut extras: Vec<(u64, Vec<&str>)> = Vec::new();
        for (name, held, allowed) in [
            ("bounding", c.caps.bounding, policy.bounding),
            ("permitted", c.caps.permitted, reachable),
            ("effective", c.caps.effective, reachable),
            ("inheritable", c.caps.inheritable, inheritable_max),
            ("ambient", c.caps.ambient, reachable),
        ] {
            let extra = held & !allowed;
            if extra == 0 {
                continue;
            }
            match extras.iter_mut().find(|(e, _)| *e == extra) {
                Some((_, sets)) => sets.push(name),
                None => extras.push((extra, vec![name])),
            }
        }
        for (extra, sets) in extras {
            flag(format!(
                "holds {} in its {} capability {}, which this container does not grant",
                caps::names(extra),
                and_list(&sets),
                if sets.len() == 1 { "set" } else { "sets" },
            ));
        }
        if c.secbits & SECBIT_NO_SETUID_FIXUP != 0 && !caps::has(reachable, caps::SETPCAP) {
            flag(format!(
                "has securebits {:#x} (SECBIT_NO_SETUID_FIXUP), which need CAP_SETPCAP",
                c.secbits
            ));
        }
        if policy.no_new_privs && !c.no_new_privs {
            flag(
                "runs without no_new_privs, and this container sets noNewPrivileges \
                 (allowPrivilegeEscalation: false)"
                    .into(),
            );
        }
        if policy.seccomp.is_some() {
            match thread.seccomp.mode {
                0 => flag(
                    "runs without a seccomp filter, and this container has a seccomp profile"
                        .into(),
                ),
                2 => match thread.seccomp.filter {
                    None => flag(
                        "is in seccomp filter mode with no filter named, and this container \
                         has a seccomp profile"
                            .into(),
                    ),
                    Some(newest) => {
                        if let Err(mismatch) = seccomp.check(checkpoint, newest) {
                            flag(mismatch.to_string());
                        }
                    }
                },
                // Strict mode allows only read, write, exit and sigreturn: less than any
                // profile.
                _ => {}
            }
        }
        let nice = caps::has(reachable, caps::SYS_NICE);
        if REALTIME.contains(&thread.sched_policy) && !nice {
            flag(format!(
                "runs with real-time scheduling (policy {}, priority {}), which needs \
                 CAP_SYS_NICE",
                thread.sched_policy, thread.sched_prio
            ));
        }
        if thread.sched_nice < 0 && !nice {
            flag(format!(
                "runs at nice {}, which needs CAP_SYS_NICE",
                thread.sched_nice
            ));
        }
    }
    let who = format!("process {} ({})", process.pid, process.comm);
    let resource = caps::has(reachable, caps::SYS_RESOURCE);
    if !resource {
        for (n, limit) in process.rlimits.iter().enumerate().take(RLIMITS.len()) {
            let allowed = policy
                .rlimits
                .iter()
                .find(|(r, _)| *r == n)
                .map(|(_, hard)| *hard)
                .or_else(|| host.rlimits.get(n).copied().flatten());
            if let Some(allowed) = allowed
                && limit.hard > allowed
            {
                out.push(Violation {
                    holder: who.clone(),
                    what: format!(
                        "has a hard {} of {}, above this container's {} (raising it needs \
                         CAP_SYS_RESOURCE)",
                        RLIMITS[n],
                        limit_text(limit.hard),
                        limit_text(allowed)
                    ),
                });
            }
        }
        let floor = policy.oom_score_adj.unwrap_or(host.oom_score_adj);
        if let Some(adj) = process.oom_score_adj
            && adj < floor
        {
            out.push(Violation {
                holder: who.clone(),
                what: format!(
                    "has oom_score_adj {adj}, below this container's {floor} (lowering it \
                     needs CAP_SYS_RESOURCE)"
                ),
            });
        }
    }
    if let Some(loginuid) = process.loginuid
        && loginuid != host.loginuid
        && !caps::has(reachable, caps::AUDIT_CONTROL)
    {
        out.push(Violation {
            holder: who,
            what: format!(
                "has loginuid {loginuid}, and this container's processes have {} (changing \
                 it needs CAP_AUDIT_CONTROL)",
                host.loginuid
            ),
        });
    }
}

fn limit_text(limit: u64) -> String {
    if limit == u64::MAX {
        "unlimited".into()
    } else {
        limit.to_string()
    }
}

/// What a checkpoint's processes hold, and what a container must grant to restore it: what
/// `revive image inspect` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub processes: usize,
    pub threads: usize,
    /// Every uid (real, effective, saved, filesystem) and gid any thread runs with.
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    /// Capabilities any thread holds in its permitted or effective set, by name.
    pub capabilities: Vec<String>,
    /// Capabilities of the widest bounding set.
    pub bounding: Vec<String>,
    /// Threads without no_new_privs.
    pub without_no_new_privs: usize,
    /// Threads without a seccomp filter (mode 0).
    pub without_seccomp: usize,
    /// Mounts a restricted container has read-only or not at all ("sysfs at /sys read-write").
    pub mounts: Vec<String>,
    /// Image files a restore refuses (apparmor.img, binfmt_misc).
    pub host_images: Vec<String>,
    pub user_namespace: bool,
    /// Whether restoring it needs a privileged container.
    pub privileged: bool,
    /// What a container must grant to restore it.
    pub needs: Vec<String>,
}

impl Summary {
    pub fn of(checkpoint: &Checkpoint) -> Summary {
        let mut s = Summary {
            processes: checkpoint.processes.len(),
            ..Summary::default()
        };
        let (mut held, mut bounding) = (0u64, 0u64);
        for p in checkpoint.processes.iter().filter(|p| !p.zombie) {
            for t in &p.threads {
                let c = &t.creds;
                s.threads += 1;
                s.uids.extend([c.uid, c.euid, c.suid, c.fsuid]);
                s.gids.extend([c.gid, c.egid, c.sgid, c.fsgid]);
                s.gids.extend(c.groups.iter().copied());
                held |= c.caps.permitted | c.caps.effective | c.caps.ambient;
                bounding |= c.caps.bounding;
                s.without_no_new_privs += usize::from(!c.no_new_privs);
                s.without_seccomp += usize::from(t.seccomp.mode == 0);
            }
        }
        for list in [&mut s.uids, &mut s.gids] {
            list.sort_unstable();
            list.dedup();
        }
        let names = |set: u64| -> Vec<String> {
            (0..64)
                .filter(|b| caps::has(set, *b))
                .map(|b| caps::names(1 << b))
                .collect()
        };
        s.capabilities = names(held);
        s.bounding = names(bounding);
        for m in &checkpoint.mounts {
            let rw = !m.read_only();
            let risky = match m.fstype.as_str() {
                "sysfs" | "cgroup" | "cgroup2" => rw,
                "proc" => rw && m.root != "/",
                other => mounts::HOST_WIDE.contains(&other),
            };
            if risky {
                s.mounts.push(format!(
                    "{} at {} {}",
                    m.fstype,
                    m.mountpoint,
                    if rw { "read-write" } else { "read-only" }
                ));
            }
        }
        s.host_images = checkpoint.host_images.clone();
        s.user_namespace = !checkpoint.user_namespaces.is_empty();
        s.privileged = caps::has(held, 21) || s.mounts.iter().any(|m| m.contains("read-write"));
        if s.uids.contains(&0) {
            s.needs.push("uid 0 (runAsUser 0), or CAP_SETUID".into());
        } else if !s.uids.is_empty() {
            s.needs.push(format!("uid {:?}", s.uids));
        }
        let default = default_capabilities();
        if held & !default != 0 {
            s.needs.push(format!(
                "capabilities beyond containerd's defaults: {}",
                caps::names(held & !default)
            ));
        }
        if s.without_no_new_privs > 0 {
            s.needs
                .push("no noNewPrivileges (allowPrivilegeEscalation not false)".into());
        }
        if s.without_seccomp > 0 {
            s.needs
                .push("no seccomp profile (seccomp Unconfined)".into());
        }
        if s.privileged {
            s.needs
                .push("a privileged container (ctr run --privileged; privileged: true)".into());
        }
        s
    }
}

/// containerd's default capabilities, what `ctr run` and a pod get unless told otherwise.
fn default_capabilities() -> u64 {
    caps::from_names(caps::CONTAINERD_DEFAULTS.iter().copied())
}

#[cfg(test)]
mod tests;
