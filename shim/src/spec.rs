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

/// Whether `path` is the shim's own namespace of OCI kind `kind` (the host's: the shim runs
/// in containerd's namespaces): the same device and inode as `/proc/self/ns/<name>`.
pub fn is_host_namespace(kind: &str, path: &str) -> bool {
    let name = match kind {
        "network" => "net",
        "mount" => "mnt",
        "pid" | "ipc" | "uts" | "user" | "cgroup" | "time" => kind,
        _ => return false,
    };
    let id = |p: &str| {
        std::fs::metadata(p).ok().map(|m| {
            (
                std::os::unix::fs::MetadataExt::dev(&m),
                std::os::unix::fs::MetadataExt::ino(&m),
            )
        })
    };
    matches!((id(path), id(&format!("/proc/self/ns/{name}"))), (Some(a), Some(b)) if a == b)
}

/// Where containerd's CRI (2.1.9 and later) assembles a CheckpointContainer archive for
/// container `id`: `<cri root>/containers/<id>/ctrd-checkpoint`. CRI archives CRIU's
/// `dump.log` and `stats-dump` from there, but names it as the work path only to runtimes of
/// type `io.containerd.runc.v2`; every other runtime gets no options at all. The CRI root is
/// found through the files CRI bind-mounts from its sandbox directory
/// `<cri root>/sandboxes/<sandbox id>/`: `/etc/hosts`, `/etc/hostname` and
/// `/etc/resolv.conf`. Any of them may be the kubelet's own instead (it always mounts its
/// `etc-hosts` at `/etc/hosts`), so the first that is CRI's decides. None for a container
/// CRI did not create.
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
    let root = spec["mounts"].as_array()?.iter().find_map(|m| {
        let file = match m["destination"].as_str()? {
            "/etc/hosts" => "hosts",
            "/etc/hostname" => "hostname",
            "/etc/resolv.conf" => "resolv.conf",
            _ => return None,
        };
        let root = m["source"]
            .as_str()?
            .strip_suffix(&format!("/sandboxes/{sandbox}/{file}"))?;
        let root = Path::new(root);
        let sane = root.is_absolute()
            && !root
                .components()
                .any(|c| c == std::path::Component::ParentDir);
        sane.then_some(root)
    })?;
    Some(root.join("containers").join(id).join("ctrd-checkpoint"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_host_s_namespaces_are_told_by_device_and_inode() {
        assert!(is_host_namespace("network", "/proc/self/ns/net"));
        assert!(is_host_namespace("uts", "/proc/self/ns/uts"));
        assert!(!is_host_namespace("network", "/proc/self/ns/uts"));
        assert!(!is_host_namespace("network", "/nonexistent"));
        assert!(!is_host_namespace("bogus", "/proc/self/ns/net"));
    }
    use super::*;
    use serde_json::json;

    fn cri_spec(kind: &str, mounts: &[(&str, &str)]) -> serde_json::Value {
        let mounts: Vec<_> = mounts
            .iter()
            .map(|(dest, src)| json!({"destination": dest, "source": src}))
            .collect();
        json!({
            "annotations": {
                "io.kubernetes.cri.container-type": kind,
                "io.kubernetes.cri.sandbox-id": "5b1e",
            },
            "mounts": mounts,
        })
    }

    const ROOT: &str = "/var/lib/containerd/io.containerd.grpc.v1.cri";

    fn work_dir(id: &str) -> Option<PathBuf> {
        Some(PathBuf::from(format!(
            "{ROOT}/containers/{id}/ctrd-checkpoint"
        )))
    }

    #[test]
    fn cri_checkpoint_dir_follows_the_sandbox_hosts_file() {
        let hosts = format!("{ROOT}/sandboxes/5b1e/hosts");
        let spec = cri_spec("container", &[("/etc/hosts", &hosts)]);
        assert_eq!(cri_checkpoint_dir(&spec, "c0ffee"), work_dir("c0ffee"));
    }

    #[test]
    fn cri_checkpoint_dir_under_a_kubelet_that_mounts_its_own_hosts_file() {
        let kubelet = "/var/lib/kubelet/pods/0c1d/etc-hosts";
        let hostname = format!("{ROOT}/sandboxes/5b1e/hostname");
        let resolv = format!("{ROOT}/sandboxes/5b1e/resolv.conf");
        let spec = cri_spec(
            "container",
            &[
                ("/etc/hosts", kubelet),
                ("/etc/hostname", &hostname),
                ("/etc/resolv.conf", &resolv),
            ],
        );
        assert_eq!(cri_checkpoint_dir(&spec, "c0ffee"), work_dir("c0ffee"));
        let spec = cri_spec(
            "container",
            &[("/etc/hosts", kubelet), ("/etc/resolv.conf", &resolv)],
        );
        assert_eq!(cri_checkpoint_dir(&spec, "c0ffee"), work_dir("c0ffee"));
        // A sandbox file mounted at another file's place is not CRI's layout.
        let spec = cri_spec("container", &[("/etc/hosts", &hostname)]);
        assert_eq!(cri_checkpoint_dir(&spec, "c0ffee"), None);
    }

    #[test]
    fn cri_checkpoint_dir_only_for_cri_containers_with_sane_paths() {
        let hosts = "/var/lib/c/io.containerd.grpc.v1.cri/sandboxes/5b1e/hosts";
        let with_hosts = |kind: &str, hosts: &str| cri_spec(kind, &[("/etc/hosts", hosts)]);
        // A sandbox (pause) container, a ctr container, another sandbox's file, a relative
        // or climbing root, an id that is a path.
        assert_eq!(cri_checkpoint_dir(&with_hosts("sandbox", hosts), "c"), None);
        assert_eq!(cri_checkpoint_dir(&json!({"mounts": []}), "c"), None);
        let other = with_hosts("container", "/r/sandboxes/other/hosts");
        assert_eq!(cri_checkpoint_dir(&other, "c"), None);
        let relative = with_hosts("container", "r/sandboxes/5b1e/hosts");
        assert_eq!(cri_checkpoint_dir(&relative, "c"), None);
        let climbing = with_hosts("container", "/r/../etc/sandboxes/5b1e/hosts");
        assert_eq!(cri_checkpoint_dir(&climbing, "c"), None);
        assert_eq!(
            cri_checkpoint_dir(&with_hosts("container", hosts), "../c"),
            None
        );
        assert_eq!(
            cri_checkpoint_dir(&with_hosts("container", hosts), ".."),
            None
        );
    }
}
