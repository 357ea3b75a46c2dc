//! Where CRIU would put the restored processes in the cgroup hierarchy.
//!
//! The runtime gives CRIU the new container's cgroup as the new root of every cgroup under
//! the root process's (CRIU rewrites those paths; `--cgroup-root`); a path outside it would stay as the image
//! says, a cgroup of the host's, outside every limit of the container's (its devices
//! allow-list among them). So every cgroup of every set, and every directory CRIU would
//! create and configure, must lie in or below the root process's cgroup of its controller,
//! with no `..` or `.` in its path, and an in-bounds cgroup namespace prefix.

use super::Violation;
use crate::criu::images::{CgroupMember, Checkpoint};

fn plain(path: &str) -> bool {
    !path.split('/').any(|c| c == ".." || c == ".")
}

fn below(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    path == root || root.is_empty() || path.starts_with(&format!("{root}/"))
}

fn violation(what: String) -> Violation {
    Violation {
        holder: "the checkpoint's cgroup.img".into(),
        what,
    }
}

pub(super) fn check(checkpoint: &Checkpoint, out: &mut Vec<Violation>) {
    if checkpoint.cgroup_sets.is_empty() && checkpoint.cgroup_dirs.is_empty() {
        return;
    }
    // The root process's set is the container's cgroup, which the runtime maps to the new
    // container's.
    let root_set = checkpoint
        .processes
        .first()
        .and_then(|p| p.threads.first())
        .and_then(|t| t.cg_set);
    let Some(root) = root_set.and_then(|id| checkpoint.cgroup_sets.iter().find(|s| s.id == id))
    else {
        out.push(violation(
            "names no cgroup set for the root process, so where the processes would go \
             cannot be checked"
                .into(),
        ));
        return;
    };
    let root_of = |controller: &str| {
        root.members
            .iter()
            .find(|m| m.controller == controller)
            .map(|m| m.path.as_str())
    };
    for set in &checkpoint.cgroup_sets {
        for CgroupMember {
            controller,
            path,
            cgns_prefix,
        } in &set.members
        {
            let shown = if controller.is_empty() {
                "the unified hierarchy"
            } else {
                controller.as_str()
            };
            if !path.starts_with('/') || !plain(path) {
                out.push(violation(format!(
                    "places processes in {shown} cgroup {path:?}, which is not a plain \
                     absolute path"
                )));
            } else if cgns_prefix.is_some_and(|p| p as usize > path.len()) {
                out.push(violation(format!(
                    "gives {shown} cgroup {path:?} a namespace prefix longer than its path"
                )));
            } else if !root_of(controller).is_some_and(|r| below(path, r)) {
                out.push(violation(format!(
                    "places processes in {shown} cgroup {path}, outside the container's \
                     cgroup{}",
                    root_of(controller)
                        .map(|r| format!(" {r}"))
                        .unwrap_or_default()
                )));
            }
        }
    }
    for (controllers, dir) in &checkpoint.cgroup_dirs {
        let inside = controllers
            .split(',')
            .all(|c| root_of(c).is_some_and(|r| below(dir, r)));
        if !plain(dir) || !inside {
            out.push(violation(format!(
                "would create and configure the {controllers} cgroup {dir}, outside the \
                 container's cgroup"
            )));
        }
    }
}
