//! Capability names and sets.

/// Linux capability names by number (`include/uapi/linux/capability.h`).
pub const NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd's default capabilities (`oci.defaultUnixCaps`): what `ctr run` and a pod's
/// container get unless told otherwise.
pub const CONTAINERD_DEFAULTS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

pub const SETGID: u32 = 6;
pub const SETUID: u32 = 7;
pub const SETPCAP: u32 = 8;
pub const SYS_NICE: u32 = 23;
pub const SYS_RESOURCE: u32 = 24;
pub const AUDIT_CONTROL: u32 = 30;

/// Whether `set` holds capability `cap`.
pub fn has(set: u64, cap: u32) -> bool {
    set & (1 << cap) != 0
}

/// The set a spec's list of capability names grants. Names this table does not know grant
/// nothing (runc skips capabilities the kernel does not know).
pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names.into_iter().fold(0, |set, name| {
        match NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            Some(bit) => set | (1 << bit),
            None => set,
        }
    })
}

/// The names in a set, in capability order ("CAP_SYS_ADMIN, CAP_NET_ADMIN").
pub fn names(set: u64) -> String {
    let names: Vec<String> = (0..64)
        .filter(|bit| has(set, *bit))
        .map(|bit| match NAMES.get(bit as usize) {
            Some(n) => (*n).to_string(),
            None => format!("capability {bit}"),
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bits_agree() {
        assert_eq!(NAMES.len(), 41);
        assert_eq!(NAMES[SETUID as usize], "CAP_SETUID");
        assert_eq!(NAMES[21], "CAP_SYS_ADMIN");
        assert_eq!(NAMES[SYS_NICE as usize], "CAP_SYS_NICE");
        assert_eq!(NAMES[SYS_RESOURCE as usize], "CAP_SYS_RESOURCE");
        assert_eq!(NAMES[AUDIT_CONTROL as usize], "CAP_AUDIT_CONTROL");
        let set = from_names(["CAP_SYS_ADMIN", "cap_kill", "CAP_NOT_A_THING"]);
        assert_eq!(set, (1 << 21) | (1 << 5));
        assert_eq!(names(set), "CAP_KILL, CAP_SYS_ADMIN");
        assert_eq!(names(0), "none");
        assert_eq!(names(1 << 50), "capability 50");
    }
}
