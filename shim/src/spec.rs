//! The bundle's OCI spec (`config.json`) as containerd wrote it, read and rewritten as JSON
//! so that fields revive does not know survive a rewrite untouched.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The spec's file in a bundle.
pub const CONFIG_FILE: &str = "config.json";

pub fn read_spec(bundle: &Path) -> Result<serde_json::Value> {
    let config = bundle.join(CONFIG_FILE);
    let text =
        std::fs::read(&config).map_err(Error::io(format!("reading {}", config.display())))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::InvalidArgument(format!("invalid {}: {e}", config.display())))
}

/// Replaces the bundle's spec atomically (a new file renamed over the old).
pub fn write_spec(bundle: &Path, spec: &serde_json::Value) -> Result<()> {
    let config = bundle.join(CONFIG_FILE);
    let tmp = bundle.join(".config.json.revive");
    let data = serde_json::to_vec(spec).expect("a JSON value serializes");
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, &config))
        .map_err(Error::io(format!("rewriting {}", config.display())))
}

/// Whether the spec gives the container a namespace of `kind` of its own (an entry without a
/// path; one with a path is joined).
pub fn has_own_namespace(spec: &serde_json::Value, kind: &str) -> bool {
    spec["linux"]["namespaces"].as_array().is_some_and(|nss| {
        nss.iter()
            .any(|ns| ns["type"] == kind && ns["path"].as_str().unwrap_or("").is_empty())
    })
}

/// Where containerd's CRI (2.1.9 and later) assembles a CheckpointContainer archive for
/// container `id`: `<cri root>/containers/<id>/ctrd-checkpoint`. CRI archives CRIU's
/// `dump.log` and `stats-dump` from there, but names it as the work path only to runtimes of
/// type `io.containerd.runc.v2`; every other runtime gets no options at all. The CRI root is
/// found through the container's `/etc/hosts`, which CRI bind-mounts from
/// `<cri root>/sandboxes/<sandbox id>/hosts`. None for a container CRI did not create.
pub fn cri_checkpoint_dir(spec: &serde_json::Value, id: &str) -> Option<PathBuf> {
    let annotations = &spec["annotations"];
    if annotations["io.kubernetes.cri.container-type"] != "container" {
        return None;
    }
    let sandbox = annotations["io.kubernetes.cri.sandbox-id"].as_str()?;
    let plain = |name: &str| !name.is_empty() && name != "." && name != ".." && !name.contains('/');
    if !plain(sandbox) || !plain(id) {
        return None;
    }
    let suffix = format!("/sandboxes/{sandbox}/hosts");
    let root = spec["mounts"].as_array()?.iter().find_map(|m| {
        if m["destination"] != "/etc/hosts" {
            return None;
        }
        m["source"].as_str()?.strip_suffix(&suffix)
    })?;
    let root = Path::new(root);
    if !root.is_absolute()
        || root
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return None;
    }
    Some(root.join("containers").join(id).join("ctrd-checkpoint"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cri_spec(kind: &str, hosts: &str) -> serde_json::Value {
        json!({
            "annotations": {
                "io.kubernetes.cri.container-type": kind,
                "io.kubernetes.cri.sandbox-id": "5b1e",
            },
            "mounts": [
                {"destination": "/etc/hostname", "source": "/x/sandboxes/5b1e/hostname"},
                {"destination": "/etc/hosts", "source": hosts},
            ],
        })
    }

    #[test]
    fn cri_checkpoint_dir_follows_the_sandbox_hosts_file() {
        let root = "/var/lib/containerd/io.containerd.grpc.v1.cri";
        let spec = cri_spec("container", &format!("{root}/sandboxes/5b1e/hosts"));
        assert_eq!(
            cri_checkpoint_dir(&spec, "c0ffee"),
            Some(PathBuf::from(format!(
                "{root}/containers/c0ffee/ctrd-checkpoint"
            )))
        );
    }

    #[test]
    fn cri_checkpoint_dir_only_for_cri_containers_with_sane_paths() {
        let hosts = "/var/lib/c/io.containerd.grpc.v1.cri/sandboxes/5b1e/hosts";
        // A sandbox (pause) container, a ctr container, another sandbox's file, a relative
        // or climbing root, an id that is a path.
        assert_eq!(cri_checkpoint_dir(&cri_spec("sandbox", hosts), "c"), None);
        assert_eq!(cri_checkpoint_dir(&json!({"mounts": []}), "c"), None);
        let other = cri_spec("container", "/r/sandboxes/other/hosts");
        assert_eq!(cri_checkpoint_dir(&other, "c"), None);
        let relative = cri_spec("container", "r/sandboxes/5b1e/hosts");
        assert_eq!(cri_checkpoint_dir(&relative, "c"), None);
        let climbing = cri_spec("container", "/r/../etc/sandboxes/5b1e/hosts");
        assert_eq!(cri_checkpoint_dir(&climbing, "c"), None);
        assert_eq!(
            cri_checkpoint_dir(&cri_spec("container", hosts), "../c"),
            None
        );
        assert_eq!(
            cri_checkpoint_dir(&cri_spec("container", hosts), ".."),
            None
        );
    }
}
