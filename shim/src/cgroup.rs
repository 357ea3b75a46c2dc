//! Where a restored container's processes go, and a freezer left half-way.
//!
//! containerd restores a checkpoint with the checkpoint's own spec (`ctr c restore`,
//! `WithRestoreSpec`), so a copy restored beside its still-running original is told to use
//! the original's cgroup. runc 1.1 then restores into it, and removing either container
//! kills both (containerd issue 9691, CRI-O issue 6894); runc >= 1.2 refuses ("container's
//! cgroup is not empty"). Before a restore the shim gives the new container a cgroup of its
//! own when the one its spec names already exists: a sibling named after the new container,
//! as containerd would have named it.

use std::path::PathBuf;

use log::info;

use crate::error::{Error, Result};
use crate::freezer::Freezer;
use crate::stats::cgroup_mounts;

/// If the spec names a cgroup that already exists (in any hierarchy), changes it to a
/// sibling named `id`. Returns the (old, new) paths when it did.
pub fn relocate_restore(
    spec: &mut serde_json::Value,
    id: &str,
) -> Result<Option<(String, String)>> {
    let mounts: Vec<PathBuf> = {
        let mut points: Vec<PathBuf> = cgroup_mounts()?.into_values().collect();
        points.sort();
        points.dedup();
        points
    };
    relocate_in(spec, id, &mounts)
}

fn relocate_in(
    spec: &mut serde_json::Value,
    id: &str,
    mounts: &[PathBuf],
) -> Result<Option<(String, String)>> {
    let Some(path) = spec["linux"]["cgroupsPath"].as_str().map(str::to_string) else {
        return Ok(None);
    };
    let Some(new) = sibling(&path, id) else {
        return Ok(None);
    };
    let exists = |p: &str| {
        mounts
            .iter()
            .any(|m| m.join(p.trim_start_matches('/')).is_dir())
    };
    if !exists(&path) {
        return Ok(None);
    }
    if exists(&new) {
        return Err(Error::FailedPrecondition(format!(
            "cannot restore {id}: the checkpoint's cgroup {path} is in use, and so is {new}"
        )));
    }
    spec["linux"]["cgroupsPath"] = serde_json::Value::String(new.clone());
    info!("restoring {id} into cgroup {new}: the checkpoint's cgroup {path} already exists");
    Ok(Some((path, new)))
}

/// `path` with its last component replaced by `id`, for cgroupfs paths (`/default/a` ->
/// `/default/b`); None when it already ends in `id`, or for systemd's `slice:prefix:name`
/// form, whose unit systemd names and refuses to reuse itself.
fn sibling(path: &str, id: &str) -> Option<String> {
    if path.is_empty() || path.contains(':') {
        return None;
    }
    let (parent, last) = path.trim_end_matches('/').rsplit_once('/')?;
    if last == id {
        return None;
    }
    Some(format!("{parent}/{id}"))
}

/// After a pause the runtime gave up on ("unable to freeze"), makes sure the container's
/// cgroup freezer is not left in FREEZING: some runc versions thaw it back before they
/// give up, others do not. Best effort; true when it had to thaw.
pub fn thaw_if_freezing(pid: u32) -> bool {
    Freezer::of(pid).is_some_and(|freezer| freezer.thaw_if_freezing())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_keep_the_parent() {
        assert_eq!(sibling("/default/a", "b").as_deref(), Some("/default/b"));
        assert_eq!(
            sibling("/kubepods/besteffort/pod1/c1", "c2").as_deref(),
            Some("/kubepods/besteffort/pod1/c2")
        );
        assert_eq!(sibling("/default/b", "b"), None);
        assert_eq!(sibling("system.slice:cri-containerd:a", "b"), None);
        assert_eq!(sibling("", "b"), None);
    }

    fn spec(cgroups_path: &str) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.1.0",
            "linux": {"cgroupsPath": cgroups_path, "namespaces": [{"type": "pid"}]},
            "annotations": {"keep": "me"}
        })
    }

    fn cgroups_path(spec: &serde_json::Value) -> String {
        assert_eq!(spec["annotations"]["keep"], "me");
        spec["linux"]["cgroupsPath"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_restore_into_an_existing_cgroup_moves_to_a_sibling() {
        let hierarchy = tempfile::tempdir().unwrap();
        let mounts = vec![hierarchy.path().to_path_buf()];
        let mut b = spec("/default/a");
        // The original's cgroup does not exist: nothing to do.
        assert_eq!(relocate_in(&mut b, "b", &mounts).unwrap(), None);
        assert_eq!(cgroups_path(&b), "/default/a");
        // It exists: the copy gets its own.
        std::fs::create_dir_all(hierarchy.path().join("default/a")).unwrap();
        assert_eq!(
            relocate_in(&mut b, "b", &mounts).unwrap(),
            Some(("/default/a".into(), "/default/b".into()))
        );
        assert_eq!(cgroups_path(&b), "/default/b");
        // Both exist: refused, clearly.
        let mut c = spec("/default/a");
        std::fs::create_dir_all(hierarchy.path().join("default/c")).unwrap();
        let err = relocate_in(&mut c, "c", &mounts).unwrap_err().to_string();
        assert!(err.contains("/default/a is in use"), "{err}");
    }
}
