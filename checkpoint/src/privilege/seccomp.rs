//! Seccomp: whether the filter chain CRIU would give a restored thread is at least as
//! restrictive as the filter runc would compile from the new container's seccomp profile.
//!
//! The rule, for every input a system call can present (`struct seccomp_data`: number,
//! architecture, instruction pointer, arguments): where the profile's filter does not allow
//! the call (any action but SECCOMP_RET_ALLOW and SECCOMP_RET_LOG), the chain's answer is at
//! least as restrictive, in the kernel's order (KILL_PROCESS, KILL_THREAD, TRAP, ERRNO,
//! USER_NOTIF, TRACE, LOG, ALLOW). The chain's answer is the kernel's: the lowest action of
//! all its filters, compared as signed values, and an action the kernel does not know kills
//! the process. A chain the kernel would refuse to attach, one longer than it accepts, or one
//! too large to check within the [`Budget`] is refused.
//!
//! How: the chain runs symbolically ([`bpf`]) once for each architecture a restored process
//! can present on x86_64 and arm64 hosts (x86_64 with x32, i386, aarch64, arm), covering every
//! system call number and argument value at once; each path it can take (a set of inputs and
//! one answer) is compared with every answer the profile gives to any input of that set.
//! Where the profile's answer cannot be told exactly (rules with different actions whose
//! conditions overlap), every candidate counts, so the check may refuse more, never less.
//!
//! What the profile compiles to is what runc and libseccomp make of it: the architectures
//! listed and the host's own; a rule whose action is the default skipped; a rule naming a
//! system call the architecture lacks ignored there; the first rule without conditions for a
//! system call overriding every conditional one; a rule's conditions all required, except
//! that several on one argument make one rule each (runc); 32-bit ABIs (i386, x32, arm)
//! compare the low 32 bits of arguments only; on i386 a rule for a socket or IPC call also
//! matches `socketcall` or `ipc` with that call's number as first argument; other
//! architectures get SECCOMP_RET_KILL_THREAD, and so do x32 calls where only x86_64 is
//! listed; and runc's stub returns ENOSYS for system calls numbered above the highest the
//! profile names on an architecture, unless the default action allows, logs or traces.
//! System call numbers come from [`super::syscalls`]: a rule for a name it lacks is ignored,
//! so a chain that allows that call is refused.

mod bpf;

pub use bpf::ProgramError;

#[cfg(test)]
pub(super) use bpf::assemble;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use serde_json::Value;

use super::syscalls;
use crate::criu::ImageError;
use crate::criu::images::Checkpoint;
use bpf::{Atom, Budget, Exhausted, Insn, NR, Region};

const AUDIT_X86_64: u32 = 0xc000_003e;
const AUDIT_I386: u32 = 0x4000_0003;
const AUDIT_AARCH64: u32 = 0xc000_00b7;
const AUDIT_ARM: u32 = 0x4000_0028;
/// The architectures checked: every one a process can present to a kernel on x86_64 or
/// arm64.
const ARCHES: [u32; 4] = [AUDIT_X86_64, AUDIT_I386, AUDIT_AARCH64, AUDIT_ARM];
/// x32 system calls are AUDIT_ARCH_X86_64 calls with this bit set in their number.
const X32_BIT: u32 = 0x4000_0000;

/// SECCOMP_RET_* actions (the upper 16 bits of a filter's return value).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = bpf::RET_ALLOW;
const ACTION_FULL: u32 = 0xffff_0000;
const EPERM: u32 = 1;
/// SECCOMP_FILTER_FLAG_SPEC_ALLOW: the kernel leaves speculative store bypass unmitigated.
const FLAG_SPEC_ALLOW: u32 = 1 << 2;
/// The kernel's MAX_INSNS_PER_PATH: instructions of a chain, counting 4 more for each filter
/// below the newest.
const MAX_CHAIN_INSNS: usize = 32768;

/// Work one restore check may spend on seccomp, over every distinct chain: instructions run
/// symbolically, and paths followed (the real containerd default profile's chain takes a few
/// thousand of each per architecture).
const STEPS: u64 = 1 << 21;
const PATHS: u64 = 1 << 15;
/// Findings kept in full for one chain (the rest are only counted), and named in a refusal.
const KEPT: usize = 4096;
const NAMED: usize = 3;
/// Nodes of one search for arguments that satisfy a profile's conditions; past it, the
/// conditions are taken to be satisfiable.
const CONDITION_NODES: usize = 4096;

/// Actions, most restrictive first (the kernel's precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Class {
    KillProcess,
    KillThread,
    Trap,
    Errno,
    UserNotif,
    Trace,
    Log,
    Allow,
}

impl Class {
    fn of(ret: u32) -> Class {
        match ret & ACTION_FULL {
            RET_KILL_THREAD => Class::KillThread,
            RET_TRAP => Class::Trap,
            RET_ERRNO => Class::Errno,
            RET_USER_NOTIF => Class::UserNotif,
            RET_TRACE => Class::Trace,
            RET_LOG => Class::Log,
            RET_ALLOW => Class::Allow,
            // SECCOMP_RET_KILL_PROCESS, and what the kernel does with an unknown action.
            _ => Class::KillProcess,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::KillProcess => "SECCOMP_RET_KILL_PROCESS",
            Class::KillThread => "SECCOMP_RET_KILL_THREAD",
            Class::Trap => "SECCOMP_RET_TRAP",
            Class::Errno => "SECCOMP_RET_ERRNO",
            Class::UserNotif => "SECCOMP_RET_USER_NOTIF",
            Class::Trace => "SECCOMP_RET_TRACE",
            Class::Log => "SECCOMP_RET_LOG",
            Class::Allow => "SECCOMP_RET_ALLOW",
        }
    }

    fn allows(self) -> bool {
        matches!(self, Class::Allow | Class::Log)
    }
}

/// Whether a chain answering `chain` is weaker than a profile answering `profile`.
fn weaker(chain: Class, profile: Class) -> bool {
    !profile.allows() && chain > profile
}

/// The kernel's answer of two filters: the lower action, compared as signed values.
fn combine(a: u32, b: u32) -> u32 {
    if ((b & ACTION_FULL) as i32) < ((a & ACTION_FULL) as i32) {
        b
    } else {
        a
    }
}

/// An ABI: a system call table, and the argument size libseccomp compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Abi {
    X86_64,
    X32,
    I386,
    Aarch64,
    Arm,
}

impl Abi {
    /// The ABI of the host's own architecture, which libseccomp adds to every filter.
    pub fn native() -> Option<Abi> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Abi::X86_64),
            "aarch64" => Some(Abi::Aarch64),
            _ => None,
        }
    }

    fn from_scmp(name: &str) -> Option<Abi> {
        Some(match name {
            "SCMP_ARCH_X86_64" => Abi::X86_64,
            "SCMP_ARCH_X32" => Abi::X32,
            "SCMP_ARCH_X86" => Abi::I386,
            "SCMP_ARCH_AARCH64" => Abi::Aarch64,
            "SCMP_ARCH_ARM" => Abi::Arm,
            _ => return None,
        })
    }

    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Abi::X86_64 => syscalls::X86_64,
            Abi::X32 => syscalls::X32,
            Abi::I386 => syscalls::I386,
            Abi::Aarch64 => syscalls::AARCH64,
            Abi::Arm => syscalls::ARM,
        }
    }

    /// libseccomp compares only the low 32 bits of arguments on these.
    fn bits32(self) -> bool {
        matches!(self, Abi::X32 | Abi::I386 | Abi::Arm)
    }

    fn label(self) -> &'static str {
        match self {
            Abi::X86_64 => "x86_64",
            Abi::X32 => "x32",
            Abi::I386 => "i386",
            Abi::Aarch64 => "aarch64",
            Abi::Arm => "arm",
        }
    }
}

/// i386's multiplexed calls (libseccomp's `__PNR_*`): the call, and the number `socketcall`
/// (102) or `ipc` (117) takes as first argument for it.
const SOCKETCALL: u32 = 102;
const IPC: u32 = 117;
const MULTIPLEXED: &[(&str, u32, u32)] = &[
    ("socket", SOCKETCALL, 1),
    ("bind", SOCKETCALL, 2),
    ("connect", SOCKETCALL, 3),
    ("listen", SOCKETCALL, 4),
    ("accept", SOCKETCALL, 5),
    ("getsockname", SOCKETCALL, 6),
    ("getpeername", SOCKETCALL, 7),
    ("socketpair", SOCKETCALL, 8),
    ("send", SOCKETCALL, 9),
    ("recv", SOCKETCALL, 10),
    ("sendto", SOCKETCALL, 11),
    ("recvfrom", SOCKETCALL, 12),
    ("shutdown", SOCKETCALL, 13),
    ("setsockopt", SOCKETCALL, 14),
    ("getsockopt", SOCKETCALL, 15),
    ("sendmsg", SOCKETCALL, 16),
    ("recvmsg", SOCKETCALL, 17),
    ("accept4", SOCKETCALL, 18),
    ("recvmmsg", SOCKETCALL, 19),
    ("sendmmsg", SOCKETCALL, 20),
    ("semop", IPC, 1),
    ("semget", IPC, 2),
    ("semctl", IPC, 3),
    ("semtimedop", IPC, 4),
    ("msgsnd", IPC, 11),
    ("msgrcv", IPC, 12),
    ("msgget", IPC, 13),
    ("msgctl", IPC, 14),
    ("shmat", IPC, 21),
    ("shmdt", IPC, 22),
    ("shmget", IPC, 23),
    ("shmctl", IPC, 24),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & value) == (valueTwo & value)`, and its negation.
    MaskedEq,
    MaskedNe,
}

/// One argument condition of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cond {
    index: u8,
    op: Op,
    value: u64,
    value_two: u64,
}

type Conjunction = Vec<(usize, Atom)>;

impl Cond {
    fn negate(self) -> Cond {
        let op = match self.op {
            Op::Ne => Op::Eq,
            Op::Eq => Op::Ne,
            Op::Lt => Op::Ge,
            Op::Ge => Op::Lt,
            Op::Le => Op::Gt,
            Op::Gt => Op::Le,
            Op::MaskedEq => Op::MaskedNe,
            Op::MaskedNe => Op::MaskedEq,
        };
        Cond { op, ..self }
    }

    /// The condition as a disjunction of conjunctions of conditions on words, as libseccomp
    /// compiles it for an ABI with 32-bit (`bits32`) or 64-bit arguments.
    fn dnf(self, bits32: bool) -> Vec<Conjunction> {
        let (lo, hi) = bpf::arg_words(self.index);
        let (vl, vh) = (self.value as u32, (self.value >> 32) as u32);
        let datum = self.value_two & self.value;
        let (dl, dh) = (datum as u32, (datum >> 32) as u32);
        let masked =
            |w: usize, mask: u32, value: u32, eq: bool| (w, Atom::Masked { mask, value, eq });
        if bits32 {
            let atom = match self.op {
                Op::Eq => Atom::eq(vl),
                Op::Ne => Atom::ne(vl),
                Op::Gt => Atom::above(vl),
                Op::Ge => Atom::AtLeast(vl),
                Op::Lt => Atom::below(vl),
                Op::Le => Atom::AtMost(vl),
                Op::MaskedEq => return vec![vec![masked(lo, vl, dl, true)]],
                Op::MaskedNe => return vec![vec![masked(lo, vl, dl, false)]],
            };
            return vec![vec![(lo, atom)]];
        }
        match self.op {
            Op::Eq => vec![vec![(hi, Atom::eq(vh)), (lo, Atom::eq(vl))]],
            Op::Ne => vec![vec![(hi, Atom::ne(vh))], vec![(lo, Atom::ne(vl))]],
            Op::Gt => vec![
                vec![(hi, Atom::above(vh))],
                vec![(hi, Atom::eq(vh)), (lo, Atom::above(vl))],
            ],
            Op::Ge => vec![
                vec![(hi, Atom::above(vh))],
                vec![(hi, Atom::eq(vh)), (lo, Atom::AtLeast(vl))],
            ],
            Op::Lt => vec![
                vec![(hi, Atom::below(vh))],
                vec![(hi, Atom::eq(vh)), (lo, Atom::below(vl))],
            ],
            Op::Le => vec![
                vec![(hi, Atom::below(vh))],
                vec![(hi, Atom::eq(vh)), (lo, Atom::AtMost(vl))],
            ],
            Op::MaskedEq => vec![vec![masked(hi, vh, dh, true), masked(lo, vl, dl, true)]],
            Op::MaskedNe => vec![
                vec![masked(hi, vh, dh, false)],
                vec![masked(lo, vl, dl, false)],
            ],
        }
    }
}

/// What a profile says about one system call of one ABI.
#[derive(Debug, Clone, Default)]
struct Rules {
    /// The first rule without conditions: it overrides the others (libseccomp).
    unconditional: Option<u32>,
    /// Rules with conditions: the action, and conditions all required.
    conditional: Vec<(u32, Vec<Cond>)>,
}

impl Rules {
    /// The strictest answer these rules, or the default where none matches, may give.
    fn strictest(&self, default: u32) -> Class {
        match self.unconditional {
            Some(a) => Class::of(a),
            None => self
                .conditional
                .iter()
                .map(|(a, _)| Class::of(*a))
                .fold(Class::of(default), Class::min),
        }
    }
}

#[derive(Debug, Clone)]
struct AbiRules {
    abi: Abi,
    /// By system call number.
    rules: BTreeMap<u32, Rules>,
    /// The highest system call number the profile names here (runc's ENOSYS stub).
    last: Option<u32>,
    /// Every number of the ABI's table, sorted.
    numbers: Vec<u32>,
    /// The strictest answer the ABI's filter gives anything.
    strictest: Class,
}

impl AbiRules {
    fn name(&self, nr: u32) -> String {
        match self.abi.table().iter().find(|(_, n)| *n == nr) {
            Some((name, _)) => format!("{name} ({})", self.abi.label()),
            None => format!("system call {nr} ({})", self.abi.label()),
        }
    }
}

/// A seccomp profile (the OCI spec's `linux.seccomp`), as the filter runc compiles from it.
#[derive(Debug, Clone)]
pub struct Profile {
    default: u32,
    /// The ABIs of the filter: those listed, and the host's own.
    abis: Vec<AbiRules>,
    /// runc's ENOSYS stub is in front of the filter.
    stub: bool,
    /// Filters may be attached with SECCOMP_FILTER_FLAG_SPEC_ALLOW.
    spec_allow: bool,
}

/// Why a spec's seccomp profile cannot be read: runc would refuse the spec too, so fix the
/// profile (`linux.seccomp`) where the container is defined. `field` names the spec's field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// `linux.seccomp` is not a JSON object.
    #[error("linux.seccomp is not an object")]
    NotAnObject,
    /// A field that must be a string is something else.
    #[error("{field} is not a string")]
    NotAString { field: String },
    /// A field that must be a list is something else.
    #[error("{field} is not a list")]
    NotAList { field: String },
    /// A list of strings holds something else.
    #[error("{field} holds a non-string")]
    NonString { field: String },
    /// A field that must be a number is something else.
    #[error("{field} is not a number")]
    NotANumber { field: String },
    /// An action runc does not know.
    #[error("{field}: action {action:?} is not one runc knows")]
    Action { field: String, action: String },
    /// An architecture runc does not know.
    #[error("architecture {0:?} is not one runc knows")]
    Architecture(String),
    /// A rule (`linux.seccomp.syscalls[entry]`) without a list of names.
    #[error("linux.seccomp.syscalls[{entry}] has no list of names")]
    NoNames { entry: usize },
    /// A rule without an action.
    #[error("linux.seccomp.syscalls[{entry}] has no action")]
    NoAction { entry: usize },
    /// A rule's name that is not a string.
    #[error("linux.seccomp.syscalls[{entry}] holds a name that is not a string")]
    NameNotAString { entry: usize },
    /// An argument condition's `index`, `value` or `valueTwo` that is not a number.
    #[error("linux.seccomp.syscalls[{entry}]: an argument's {key} is not a number")]
    ArgumentNotANumber { entry: usize, key: &'static str },
    /// An argument condition on an argument past the sixth.
    #[error("linux.seccomp.syscalls[{entry}]: argument index {index}, of 6")]
    ArgumentIndex { entry: usize, index: u64 },
    /// An argument condition's operator runc does not know.
    #[error("linux.seccomp.syscalls[{entry}]: operator {op:?} is not one runc knows")]
    Operator { entry: usize, op: String },
}

/// How a thread's seccomp filter chain falls short of its container's profile; the text
/// completes "process 1 (sh) ...", and the refusal it is part of says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The comparison ran out of its budget: refused rather than trusted.
    #[error(
        "has seccomp filters too complex to compare with this container's seccomp profile \
         (too many paths through them, or too many distinct chains): the restore is refused \
         rather than trusted"
    )]
    TooComplex,
    /// The checkpoint's filters do not form a chain.
    #[error("has an unreadable seccomp filter chain: {0}")]
    UnreadableChain(ImageError),
    /// The spec's profile cannot be read, so nothing can be held to it.
    #[error("cannot be checked against this container's seccomp profile: {0}")]
    Profile(ProfileError),
    /// A filter the kernel would not have attached.
    #[error("has a seccomp filter the kernel would refuse: its program {0}")]
    Program(ProgramError),
    /// The chain is longer than the kernel accepts.
    #[error(
        "has seccomp filters of {total} instructions, more than the kernel accepts in one \
         chain ({MAX_CHAIN_INSNS})"
    )]
    ChainTooLong { total: usize },
    /// Every filter was attached without the speculative store bypass mitigation the
    /// profile asks for.
    #[error(
        "has seccomp filters attached with SECCOMP_FILTER_FLAG_SPEC_ALLOW (no speculative \
         store bypass mitigation), which this container's seccomp profile does not ask for"
    )]
    SpecAllow,
    /// The chain answers system calls more leniently than the profile: one phrase per kind
    /// of answer ("allows mount (x86_64), which this container's seccomp profile refuses").
    #[error("has a seccomp filter that {}", .0.join("; it also "))]
    Weaker(Vec<String>),
}

impl From<Exhausted> for Mismatch {
    fn from(_: Exhausted) -> Mismatch {
        Mismatch::TooComplex
    }
}

/// The value of the action `name` (with `errno` for the actions that return one); `None`
/// for an action runc does not know.
fn action(name: &str, errno: Option<u32>) -> Option<u32> {
    let data = errno.unwrap_or(EPERM) & 0xffff;
    Some(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => RET_TRAP,
        "SCMP_ACT_ERRNO" => RET_ERRNO | data,
        "SCMP_ACT_TRACE" => RET_TRACE | data,
        "SCMP_ACT_NOTIFY" => RET_USER_NOTIF,
        "SCMP_ACT_LOG" => RET_LOG,
        "SCMP_ACT_ALLOW" => RET_ALLOW,
        _ => return None,
    })
}

fn errno_of(v: &Value, field: &str) -> Result<Option<u32>, ProfileError> {
    match v {
        Value::Null => Ok(None),
        v => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ProfileError::NotANumber {
                field: field.to_string(),
            }),
    }
}

impl Profile {
    /// Reads a profile (`linux.seccomp`, not null) as runc compiles it on a host whose own
    /// ABI is `native`. `None`: runc installs no filter for it (no default action and no
    /// rules). An action, architecture or operator runc does not know is an error: runc
    /// would refuse the spec.
    pub fn parse(profile: &Value, native: Option<Abi>) -> Result<Option<Profile>, ProfileError> {
        let Some(obj) = profile.as_object() else {
            return Err(ProfileError::NotAnObject);
        };
        let default_name = match obj.get("defaultAction") {
            None | Some(Value::Null) => "",
            Some(v) => v.as_str().ok_or_else(|| ProfileError::NotAString {
                field: "linux.seccomp.defaultAction".into(),
            })?,
        };
        let entries = match obj.get("syscalls") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => {
                return Err(ProfileError::NotAList {
                    field: "linux.seccomp.syscalls".into(),
                });
            }
        };
        if default_name.is_empty() && entries.is_empty() {
            return Ok(None);
        }
        let default = action(
            default_name,
            errno_of(
                obj.get("defaultErrnoRet").unwrap_or(&Value::Null),
                "linux.seccomp.defaultErrnoRet",
            )?,
        )
        .ok_or_else(|| ProfileError::Action {
            field: "linux.seccomp.defaultAction".into(),
            action: default_name.to_string(),
        })?;
        let strings = |key: &str| -> Result<Option<Vec<&str>>, ProfileError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|s| {
                        s.as_str().ok_or_else(|| ProfileError::NonString {
                            field: format!("linux.seccomp.{key}"),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(ProfileError::NotAList {
                    field: format!("linux.seccomp.{key}"),
                }),
            }
        };
        let mut abis: BTreeSet<Abi> = native.into_iter().collect();
        for arch in strings("architectures")?.unwrap_or_default() {
            if !arch.starts_with("SCMP_ARCH_") {
                return Err(ProfileError::Architecture(arch.to_string()));
            }
            // Other architectures' filters never see a call on x86_64 or arm64.
            abis.extend(Abi::from_scmp(arch));
        }
        // runc asks for SECCOMP_FILTER_FLAG_SPEC_ALLOW where the profile names no flags.
        let spec_allow =
            strings("flags")?.is_none_or(|flags| flags.contains(&"SECCOMP_FILTER_FLAG_SPEC_ALLOW"));
        let stub = !matches!(Class::of(default), Class::Allow | Class::Log | Class::Trace);
        let mut compiled: Vec<AbiRules> = abis
            .iter()
            .map(|&abi| {
                let mut numbers: Vec<u32> = abi.table().iter().map(|(_, n)| *n).collect();
                numbers.sort_unstable();
                numbers.dedup();
                AbiRules {
                    abi,
                    rules: BTreeMap::new(),
                    last: None,
                    numbers,
                    strictest: Class::of(default),
                }
            })
            .collect();
        let lookup: Vec<HashMap<&str, u32>> = compiled
            .iter()
            .map(|a| a.abi.table().iter().copied().collect())
            .collect();
        for (i, entry) in entries.iter().enumerate() {
            let what = || format!("linux.seccomp.syscalls[{i}]");
            let names = entry["names"]
                .as_array()
                .ok_or(ProfileError::NoNames { entry: i })?;
            let name = entry["action"]
                .as_str()
                .ok_or(ProfileError::NoAction { entry: i })?;
            let errno = errno_of(&entry["errnoRet"], &format!("{}.errnoRet", what()))?;
            let act = action(name, errno).ok_or_else(|| ProfileError::Action {
                field: what(),
                action: name.to_string(),
            })?;
            let mut conds = Vec::new();
            for arg in entry["args"].as_array().into_iter().flatten() {
                let number = |key: &'static str| -> Result<u64, ProfileError> {
                    match &arg[key] {
                        Value::Null => Ok(0),
                        v => v
                            .as_u64()
                            .ok_or(ProfileError::ArgumentNotANumber { entry: i, key }),
                    }
                };
                let index = number("index")?;
                if index >= 6 {
                    return Err(ProfileError::ArgumentIndex { entry: i, index });
                }
                let op = match arg["op"].as_str().unwrap_or_default() {
                    "SCMP_CMP_NE" => Op::Ne,
                    "SCMP_CMP_LT" => Op::Lt,
                    "SCMP_CMP_LE" => Op::Le,
                    "SCMP_CMP_EQ" => Op::Eq,
                    "SCMP_CMP_GE" => Op::Ge,
                    "SCMP_CMP_GT" => Op::Gt,
                    "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
                    other => {
                        return Err(ProfileError::Operator {
                            entry: i,
                            op: other.to_string(),
                        });
                    }
                };
                conds.push(Cond {
                    index: index as u8,
                    op,
                    value: number("value")?,
                    value_two: number("valueTwo")?,
                });
            }
            // runc makes one rule of each condition when two share an argument.
            let shared = (0..6).any(|a| conds.iter().filter(|c| c.index == a).count() > 1);
            let rules: Vec<Vec<Cond>> = if shared {
                conds.iter().map(|c| vec![*c]).collect()
            } else {
                vec![conds]
            };
            for name in names {
                let name = name
                    .as_str()
                    .ok_or(ProfileError::NameNotAString { entry: i })?;
                for (at, abi) in compiled.iter_mut().enumerate() {
                    let nr = lookup[at].get(name).copied();
                    // runc's stub takes 0 for "no system call named".
                    if let Some(nr) = nr.filter(|n| *n > 0) {
                        abi.last = Some(abi.last.map_or(nr, |l| l.max(nr)));
                    }
                    // runc skips a rule whose action is the default one.
                    if act == default {
                        continue;
                    }
                    let multiplexed = MULTIPLEXED
                        .iter()
                        .find(|(n, _, _)| *n == name)
                        .filter(|_| abi.abi == Abi::I386);
                    for conds in &rules {
                        if let Some(&(_, call, number)) = multiplexed {
                            let mut muxed: Vec<Cond> =
                                conds.iter().filter(|c| c.index != 0).copied().collect();
                            muxed.push(Cond {
                                index: 0,
                                op: Op::Eq,
                                value: u64::from(number),
                                value_two: 0,
                            });
                            add(abi.rules.entry(call).or_default(), act, muxed);
                        }
                        if let Some(nr) = nr {
                            add(abi.rules.entry(nr).or_default(), act, conds.clone());
                        }
                    }
                }
            }
        }
        for abi in &mut compiled {
            for rules in abi.rules.values() {
                abi.strictest = abi.strictest.min(rules.strictest(default));
            }
            if stub && abi.last.is_some() {
                abi.strictest = abi.strictest.min(Class::Errno);
            }
        }
        Ok(Some(Profile {
            default,
            abis: compiled,
            stub,
            spec_allow,
        }))
    }

    fn abi(&self, abi: Abi) -> Option<&AbiRules> {
        self.abis.iter().find(|a| a.abi == abi)
    }

    /// Adds to `out` every answer the profile gives to some input of `region` (on audit
    /// architecture `arch`) that is stricter than `chain`.
    fn findings(
        &self,
        arch: u32,
        region: &Region,
        chain: Class,
        out: &mut Findings,
        budget: &mut Budget,
    ) -> Result<(), Exhausted> {
        spend(budget, 8 * region.weight())?;
        let range = |lo: u32, hi: u32| {
            region
                .with(NR, Atom::AtLeast(lo))
                .and_then(|r| r.with(NR, Atom::AtMost(hi)))
        };
        match arch {
            AUDIT_X86_64 => {
                if let Some(r) = range(0, X32_BIT - 1) {
                    self.section(Abi::X86_64, &r, chain, out, budget)?;
                }
                if let Some(r) = range(X32_BIT, u32::MAX) {
                    if self.abi(Abi::X32).is_some() {
                        self.section(Abi::X32, &r, chain, out, budget)?;
                    } else {
                        // libseccomp lets -1 through to the x86_64 rules, which have none
                        // for it; the rest of the x32 numbers are another ABI.
                        if self.abi(Abi::X86_64).is_some()
                            && r.with(NR, Atom::eq(u32::MAX)).is_some()
                        {
                            out.add(
                                chain,
                                Class::of(self.default),
                                key(Abi::X86_64, MINUS_ONE),
                                || "system call -1 (x86_64)".into(),
                            );
                        }
                        if r.with(NR, Atom::ne(u32::MAX)).is_some() {
                            out.add(chain, Class::KillThread, key(Abi::X32, OTHER_ABI), || {
                                "x32 system calls".into()
                            });
                        }
                    }
                }
                Ok(())
            }
            AUDIT_I386 => self.section(Abi::I386, region, chain, out, budget),
            AUDIT_AARCH64 => self.section(Abi::Aarch64, region, chain, out, budget),
            _ => self.section(Abi::Arm, region, chain, out, budget),
        }
    }

    fn section(
        &self,
        abi: Abi,
        region: &Region,
        chain: Class,
        out: &mut Findings,
        budget: &mut Budget,
    ) -> Result<(), Exhausted> {
        let Some(rules) = self.abi(abi) else {
            // Not an architecture of the filter: libseccomp's SECCOMP_RET_KILL_THREAD.
            out.add(chain, Class::KillThread, key(abi, OTHER_ABI), || {
                format!("{} system calls", abi.label())
            });
            return Ok(());
        };
        if !weaker(chain, rules.strictest) {
            return Ok(());
        }
        let mut region = region.clone();
        if self.stub
            && let Some(last) = rules.last
        {
            if let Some(above) = region.with(NR, Atom::above(last)) {
                numbers(rules, &above, chain, Class::Errno, &[], out, budget)?;
            }
            match region.with(NR, Atom::AtMost(last)) {
                Some(r) => region = r,
                None => return Ok(()),
            }
        }
        let nr = region.word(NR);
        let (lo, hi) = (nr.lo(), nr.hi());
        let bits32 = abi.bits32();
        for (&n, r) in rules.rules.range(lo..=hi) {
            spend(budget, 1)?;
            if !weaker(chain, r.strictest(self.default)) || !nr.contains(n) {
                continue;
            }
            let Some(at) = region.with(NR, Atom::eq(n)) else {
                continue;
            };
            let key = key(abi, u64::from(n));
            let some = || format!("{} with some arguments", rules.name(n));
            if let Some(a) = r.unconditional {
                if region.constrains_args() {
                    out.add(chain, Class::of(a), key, some);
                } else {
                    out.add(chain, Class::of(a), key, || rules.name(n));
                }
                continue;
            }
            for (a, conds) in &r.conditional {
                if weaker(chain, Class::of(*a)) {
                    let need: Vec<Vec<Conjunction>> = conds.iter().map(|c| c.dnf(bits32)).collect();
                    if satisfiable(&at, &need, budget)? {
                        out.add(chain, Class::of(*a), key, some);
                    }
                }
            }
            if weaker(chain, Class::of(self.default)) {
                // No rule matches: one condition of each rule fails.
                let none: Vec<Vec<Conjunction>> = r
                    .conditional
                    .iter()
                    .map(|(_, conds)| conds.iter().flat_map(|c| c.negate().dnf(bits32)).collect())
                    .collect();
                if satisfiable(&at, &none, budget)? {
                    out.add(chain, Class::of(self.default), key, some);
                }
            }
        }
        let ruled: Vec<u32> = rules.rules.range(lo..=hi).map(|(n, _)| *n).collect();
        numbers(
            rules,
            &region,
            chain,
            Class::of(self.default),
            &ruled,
            out,
            budget,
        )
    }
}

/// Orders findings: by ABI, then number; past the numbers, the other findings of an ABI.
fn key(abi: Abi, n: u64) -> u64 {
    ((abi as u64) << 34) | n
}
const UNNAMED: u64 = 1 << 32;
const MINUS_ONE: u64 = UNNAMED + 1;
const OTHER_ABI: u64 = UNNAMED + 2;

fn spend(budget: &mut Budget, steps: u64) -> Result<(), Exhausted> {
    budget.steps = budget.steps.checked_sub(steps).ok_or(Exhausted)?;
    Ok(())
}

/// Findings for every number of `region` but `except` (sorted) that the profile answers
/// `profile`: each one a table names, and the numbers none names.
fn numbers(
    rules: &AbiRules,
    region: &Region,
    chain: Class,
    profile: Class,
    except: &[u32],
    out: &mut Findings,
    budget: &mut Budget,
) -> Result<(), Exhausted> {
    if !weaker(chain, profile) {
        return Ok(());
    }
    let nr = region.word(NR);
    let args = region.constrains_args();
    // Paths that differ only in what they require of other words name the same calls.
    if !out
        .enumerated
        .insert((rules.abi, chain, profile, nr.clone(), args, except.to_vec()))
    {
        return Ok(());
    }
    let (lo, hi) = (nr.lo(), nr.hi());
    let some = if args { " with some arguments" } else { "" };
    let from = rules.numbers.partition_point(|n| *n < lo);
    for &n in rules.numbers[from..].iter().take_while(|n| **n <= hi) {
        spend(budget, 1)?;
        if except.binary_search(&n).is_err() && nr.contains(n) {
            out.add(chain, profile, key(rules.abi, u64::from(n)), || {
                format!("{}{some}", rules.name(n))
            });
        }
    }
    if let Some(n) = nr.first(lo, &rules.numbers) {
        out.add(chain, profile, key(rules.abi, UNNAMED), || {
            format!(
                "system call numbers no kernel header names, such as {n} ({})",
                rules.abi.label()
            )
        });
    }
    Ok(())
}

fn add(rules: &mut Rules, action: u32, conds: Vec<Cond>) {
    if conds.is_empty() {
        rules.unconditional.get_or_insert(action);
    } else {
        rules.conditional.push((action, conds));
    }
}

/// Whether some input of `region` satisfies every clause (each a disjunction of
/// conjunctions). Past [`CONDITION_NODES`] nodes of search the answer is yes.
fn satisfiable(
    region: &Region,
    clauses: &[Vec<Conjunction>],
    budget: &mut Budget,
) -> Result<bool, Exhausted> {
    fn go(
        region: &Region,
        clauses: &[Vec<Conjunction>],
        nodes: &mut usize,
        budget: &mut Budget,
    ) -> Result<bool, Exhausted> {
        let Some((first, rest)) = clauses.split_first() else {
            return Ok(true);
        };
        for conj in first {
            if *nodes == 0 {
                return Ok(true);
            }
            *nodes -= 1;
            spend(budget, 1)?;
            if let Some(r) = region.with_all(conj)
                && go(&r, rest, nodes, budget)?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
    let mut nodes = CONDITION_NODES;
    go(region, clauses, &mut nodes, budget)
}

/// Where a chain is weaker than the profile: (what the chain answers, what the profile
/// answers, order, what system calls).
#[derive(Default)]
struct Findings {
    kept: BTreeSet<(Class, Class, u64, String)>,
    seen: HashSet<(Class, Class, u64)>,
    /// The ranges of numbers already enumerated.
    enumerated: HashSet<(Abi, Class, Class, bpf::WordSet, bool, Vec<u32>)>,
}

impl Findings {
    /// Records that the chain answers `chain` where the profile answers `profile`, if that is
    /// weaker; `order` sorts findings (and tells them apart), `what` names the calls.
    fn add(&mut self, chain: Class, profile: Class, order: u64, what: impl FnOnce() -> String) {
        if !weaker(chain, profile) || !self.seen.insert((chain, profile, order)) {
            return;
        }
        if self.kept.len() < KEPT {
            self.kept.insert((chain, profile, order, what()));
        }
    }

    /// One phrase per kind of answer, for [`Mismatch::Weaker`]: "allows mount (x86_64), ...
    /// which this container's seccomp profile refuses". Empty when nothing was found.
    fn describe(&self) -> Vec<String> {
        /// Findings told in one phrase: what the chain and the profile answer, the calls
        /// named (order, name) and how many there are.
        struct Group<'f> {
            answers: (Class, Class),
            named: Vec<(u64, &'f str)>,
            count: usize,
        }
        // Calls the chain allows and the profile does not run are told together.
        let answers = |chain: Class, profile: Class| {
            if chain.allows() && profile <= Class::Errno {
                (Class::Allow, Class::Errno)
            } else {
                (chain, profile)
            }
        };
        let mut groups: Vec<Group<'_>> = Vec::new();
        for (chain, profile, order, what) in &self.kept {
            let a = answers(*chain, *profile);
            match groups.iter_mut().find(|g| g.answers == a) {
                Some(g) => g.named.push((*order, what)),
                None => groups.push(Group {
                    answers: a,
                    named: vec![(*order, what)],
                    count: 0,
                }),
            }
        }
        for g in &mut groups {
            g.named.sort_unstable();
            g.named.dedup_by_key(|(order, _)| *order);
            let orders: HashSet<u64> = self
                .seen
                .iter()
                .filter(|(c, p, _)| answers(*c, *p) == g.answers)
                .map(|(_, _, order)| *order)
                .collect();
            g.count = orders.len();
        }
        // Allowed calls first.
        groups.sort_by_key(|g| (std::cmp::Reverse(g.answers.0), g.answers.1));
        groups
            .iter()
            .map(|g| {
                let (chain, profile) = g.answers;
                let named: Vec<&str> = g.named.iter().take(NAMED).map(|(_, w)| *w).collect();
                let list = if g.count > named.len() {
                    format!("{} and {} more", named.join(", "), g.count - named.len())
                } else {
                    super::and_list(&named)
                };
                if chain.allows() {
                    let verb = match profile {
                        Class::UserNotif => "hands to its seccomp agent",
                        Class::Trace => "hands to a tracer",
                        _ => "refuses",
                    };
                    format!("allows {list}, which this container's seccomp profile {verb}")
                } else {
                    format!(
                        "answers {list} with {}, where this container's seccomp profile \
                         answers {}",
                        chain.name(),
                        profile.name()
                    )
                }
            })
            .collect()
    }
}

/// A chain of filters: each one's program and flags, newest first.
type Chain<'a> = Vec<(&'a [u8], u32)>;

/// Checks the seccomp filter chains of a checkpoint's threads against one profile; a chain
/// shared by many threads is compared once, a program shared by many chains decoded once.
pub struct Checker<'a> {
    profile: Result<Option<Profile>, ProfileError>,
    verdicts: HashMap<Chain<'a>, Result<(), Mismatch>>,
    programs: HashMap<&'a [u8], Result<Rc<[Insn]>, ProgramError>>,
    budget: Budget,
}

impl<'a> Checker<'a> {
    /// A checker for the spec's profile (`None`: the spec has none, and every chain passes),
    /// compiled for this host's architecture.
    pub fn new(profile: Option<&Value>) -> Checker<'a> {
        Checker::for_abi(profile, Abi::native())
    }

    fn for_abi(profile: Option<&Value>, native: Option<Abi>) -> Checker<'a> {
        Checker {
            profile: profile.map_or(Ok(None), |p| Profile::parse(p, native)),
            verdicts: HashMap::new(),
            programs: HashMap::new(),
            budget: Budget {
                steps: STEPS,
                paths: PATHS,
            },
        }
    }

    /// Whether the chain whose newest filter is `newest` (an index into the checkpoint's
    /// filters) is at least as restrictive as the profile; if not, what the thread holds.
    pub fn check(&mut self, checkpoint: &'a Checkpoint, newest: u32) -> Result<(), Mismatch> {
        if self.budget.steps == 0 || self.budget.paths == 0 {
            return Err(Mismatch::TooComplex);
        }
        let chain = checkpoint
            .filter_chain(newest)
            .map_err(Mismatch::UnreadableChain)?;
        spend(&mut self.budget, chain.len() as u64)?;
        let key: Chain<'a> = chain
            .iter()
            .map(|f| (f.program.as_slice(), f.flags))
            .collect();
        if let Some(verdict) = self.verdicts.get(&key) {
            return verdict.clone();
        }
        let verdict = self.evaluate(&key);
        self.verdicts.insert(key, verdict.clone());
        verdict
    }

    fn evaluate(&mut self, chain: &[(&'a [u8], u32)]) -> Result<(), Mismatch> {
        let profile = match &self.profile {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Mismatch::Profile(e.clone())),
        };
        let mut programs = Vec::with_capacity(chain.len());
        for &(program, _) in chain {
            let decoded = match self.programs.get(program) {
                Some(d) => d.clone(),
                None => {
                    spend(&mut self.budget, 1 + program.len() as u64 / 64)?;
                    let d = bpf::decode(program).map(Rc::from);
                    self.programs.insert(program, d.clone());
                    d
                }
            };
            programs.push(decoded.map_err(Mismatch::Program)?);
        }
        let total: usize = programs.iter().map(|p| p.len() + 4).sum::<usize>() - 4;
        if total > MAX_CHAIN_INSNS {
            return Err(Mismatch::ChainTooLong { total });
        }
        if !profile.spec_allow && chain.iter().all(|(_, flags)| flags & FLAG_SPEC_ALLOW != 0) {
            return Err(Mismatch::SpecAllow);
        }
        compare(profile, &programs, &mut self.budget)
    }
}

/// Compares a chain (decoded programs, any order) with a profile.
fn compare(
    profile: &Profile,
    programs: &[Rc<[Insn]>],
    budget: &mut Budget,
) -> Result<(), Mismatch> {
    let mut findings = Findings::default();
    for arch in ARCHES {
        let mut leaves = vec![bpf::Leaf {
            region: Region::default(),
            ret: RET_ALLOW,
        }];
        for program in programs {
            let mut next = Vec::new();
            for leaf in leaves {
                // Nothing is lower than SECCOMP_RET_KILL_PROCESS (an unknown action may be
                // lowered further, to SECCOMP_RET_KILL_THREAD).
                if leaf.ret & ACTION_FULL == RET_KILL_PROCESS {
                    next.push(leaf);
                    continue;
                }
                let mut out = Vec::new();
                bpf::run(program, arch, leaf.region, budget, &mut out)?;
                next.extend(out.into_iter().map(|l| bpf::Leaf {
                    region: l.region,
                    ret: combine(leaf.ret, l.ret),
                }));
            }
            leaves = next;
        }
        for leaf in &leaves {
            profile.findings(
                arch,
                &leaf.region,
                Class::of(leaf.ret),
                &mut findings,
                budget,
            )?;
        }
    }
    let phrases = findings.describe();
    if phrases.is_empty() {
        Ok(())
    } else {
        Err(Mismatch::Weaker(phrases))
    }
}

#[cfg(test)]
#[path = "seccomp/tests.rs"]
mod tests;
