//! The mount tree CRIU would rebuild, against the spec's mounts, read-only and masked paths.
//!
//! Rules (each a [`Violation`] naming the mount point):
//! - never a filesystem that reaches beyond the container ([`HOST_WIDE`]), unless the runtime
//!   supplies the mount again (external: a bind mount of the spec, whose source the runtime
//!   gives and whose recorded filesystem CRIU does not use);
//! - a mount the runtime does not supply again (not external) only of a type the spec itself
//!   mounts; the root is the container's own;
//! - proc and sysfs only where the spec mounts them, or under them (runc's read-only and
//!   masked paths are binds of their subtrees);
//! - the read-only, nosuid, nodev and noexec options of a spec's mount kept by every mount at
//!   its destination, and a read-only root kept;
//! - cgroup filesystems read-only unless the spec mounts one read-write;
//! - every read-only path of the spec read-only, every masked path masked (a mount of
//!   /dev/null, a read-only tmpfs, or a mount the runtime supplies), where the path exists.

use super::{Host, Policy, Violation};
use crate::criu::images::{Checkpoint, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, Mount};

/// Filesystems that are the host's, whichever namespace mounts them.
pub(super) const HOST_WIDE: &[&str] = &[
    "binfmt_misc",
    "devtmpfs",
    "securityfs",
    "debugfs",
    "tracefs",
    "fusectl",
    "pstore",
    "autofs",
    "unknown",
];

/// Spec mount options and the flag each one requires.
const KEPT: &[(&str, u32, &str)] = &[
    ("ro", MS_RDONLY, "read-only"),
    ("nosuid", MS_NOSUID, "nosuid"),
    ("nodev", MS_NODEV, "nodev"),
    ("noexec", MS_NOEXEC, "noexec"),
];

fn under(path: &str, dir: &str) -> bool {
    path == dir || dir == "/" || path.starts_with(&format!("{dir}/"))
}

fn violation(m: &Mount, what: String) -> Violation {
    Violation {
        holder: format!("the {} mount at {}", m.fstype, m.mountpoint),
        what,
    }
}

/// The mount that decides what `path` is: the last one (mounted over the others) of the
/// deepest mount points above it.
fn governing<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if under(path, &m.mountpoint)
            && best.is_none_or(|b| m.mountpoint.len() >= b.mountpoint.len())
        {
            best = Some(m);
        }
    }
    best
}

fn masks(m: &Mount) -> bool {
    m.external || m.root.ends_with("/null") || (m.fstype == "tmpfs" && m.read_only())
}

pub(super) fn check(
    checkpoint: &Checkpoint,
    policy: &Policy,
    host: &Host<'_>,
    out: &mut Vec<Violation>,
) {
    let mounts = &checkpoint.mounts;
    let spec_types: Vec<&str> = policy.mounts.iter().map(|m| m.kind.as_str()).collect();
    let cgroup_rw = policy
        .mounts
        .iter()
        .any(|m| m.kind.starts_with("cgroup") && !m.options.iter().any(|o| o == "ro"));
    for m in mounts {
        // An external mount is a bind the runtime gives again from the spec: what CRIU
        // recorded of its filesystem is not used.
        if !m.external && HOST_WIDE.contains(&m.fstype.as_str()) {
            out.push(violation(
                m,
                "is a host-wide filesystem, which no container is given".into(),
            ));
            continue;
        }
        // The runtime gives external mounts' sources again, but CRIU applies the image's
        // flags: a cgroup bind (runc's on cgroup v1) must stay read-only.
        if m.fstype.starts_with("cgroup") && !cgroup_rw && !m.read_only() {
            out.push(violation(
                m,
                "is read-write, and this container's cgroup mounts are read-only".into(),
            ));
        }
        if m.mountpoint == "/" || m.external {
            continue;
        }
        // With a cgroup namespace on cgroup v2, the runtime mounts the unified hierarchy
        // (cgroup2) for the spec's `cgroup` mount.
        let kind = if m.fstype == "cgroup2" && !spec_types.contains(&"cgroup2") {
            "cgroup"
        } else {
            m.fstype.as_str()
        };
        if !spec_types.contains(&kind) {
            out.push(violation(
                m,
                format!(
                    "(of {}) is of a type this container's spec never mounts",
                    m.source
                ),
            ));
            continue;
        }
        if matches!(kind, "proc" | "sysfs" | "cgroup")
            && !policy
                .mounts
                .iter()
                .any(|s| s.kind == kind && under(&m.mountpoint, &s.destination))
        {
            out.push(violation(
                m,
                format!("is outside every {kind} mount of this container's spec"),
            ));
        }
    }
    for s in &policy.mounts {
        for m in mounts.iter().filter(|m| m.mountpoint == s.destination) {
            for (option, flag, name) in KEPT {
                // On cgroup v1 runc mounts a tmpfs at a cgroup mount's destination and the
                // hierarchies, read-only, below it: the rule above holds those.
                if *flag == MS_RDONLY && s.kind.starts_with("cgroup") && m.fstype == "tmpfs" {
                    continue;
                }
                if s.options.iter().any(|o| o == option) && (m.flags | m.sb_flags) & flag == 0 {
                    out.push(violation(
                        m,
                        format!(
                            "is not {name}, and this container mounts {} {name}",
                            s.destination
                        ),
                    ));
                }
            }
        }
    }
    if policy.root_readonly
        && let Some(root) = mounts.iter().rev().find(|m| m.mountpoint == "/")
        && !root.read_only()
    {
        out.push(violation(
            root,
            "is read-write, and this container's root is read-only".into(),
        ));
    }
    for path in &policy.readonly_paths {
        let path = crate::criu::images::clean_path(path);
        match governing(mounts, &path) {
            Some(m) if m.read_only() => {}
            Some(m) if m.mountpoint != path && !(host.path_exists)(&path) => {}
            Some(m) => out.push(violation(
                m,
                format!("leaves {path} read-write, and this container makes it read-only"),
            )),
            None => {}
        }
    }
    for path in &policy.masked_paths {
        let path = crate::criu::images::clean_path(path);
        match governing(mounts, &path) {
            Some(m) if m.mountpoint == path && masks(m) => {}
            Some(m) if m.mountpoint != path && !(host.path_exists)(&path) => {}
            Some(m) => out.push(violation(
                m,
                format!("leaves {path} unmasked, and this container masks it"),
            )),
            None => {}
        }
    }
}
