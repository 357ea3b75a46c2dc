//! What a restore needs from the container it restores into, mount point by mount point,
//! read from the checkpoint's `spec.dump`: CRIU recreates every mount the checkpointed
//! container had, and each must find something to stand on. Shared by the shim, which
//! reconciles the new container's spec with it, and by `revive image inspect`, which says
//! what a restore of an image will need.
//!
//! Each mount of the checkpointed container is one of:
//! - a kernel filesystem (proc, sysfs, tmpfs, devpts, mqueue, cgroup), which can be mounted
//!   again anywhere;
//! - a file an engine generates for every container, or its `/dev/shm`: a bind mount at
//!   one of [`StandIn`]'s destinations from the engine's own per-container or per-pod
//!   directory (containers/storage's `<driver>-containers/<id>/userdata/` for Podman and
//!   CRI-O, containerd CRI's sandbox directories, the kubelet's pod directory). None of it
//!   is the user's data, so a restore may give it a fresh stand-in;
//! - any other bind mount, which brought the user's data from the old host: the new
//!   container must bring a mount there itself;
//! - any other filesystem, which the new container must bring too.
//!
//! The sources in `spec.dump` are untrusted: they only decide between a stand-in (a fresh,
//! harmless file or an empty size-limited tmpfs) and a refusal, never what is mounted.

use serde_json::Value;

/// Mount types the kernel provides: they can be mounted again wherever they were.
pub const KERNEL_FS: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2",
];

/// An engine-generated file or directory a restore replaces with a fresh one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StandIn {
    /// `/etc/hosts`: localhost and the container's hostname.
    Hosts,
    /// `/etc/hostname`: the container's hostname.
    Hostname,
    /// `/etc/resolv.conf`: the host's resolver configuration.
    ResolvConf,
    /// `/run/.containerenv`, Podman's marker that a process runs in a container: empty.
    ContainerEnv,
    /// `/dev/termination-log`, where Kubernetes reads a container's last words: empty.
    TerminationLog,
    /// `/dev/shm`: a tmpfs of the size the new container's spec gives it, holding what the
    /// checkpoint saved of it (Podman's `devshm-checkpoint.tar`).
    Shm,
}

impl StandIn {
    pub const ALL: [StandIn; 6] = [
        StandIn::Hosts,
        StandIn::Hostname,
        StandIn::ResolvConf,
        StandIn::ContainerEnv,
        StandIn::TerminationLog,
        StandIn::Shm,
    ];

    /// Where it is mounted in the container.
    pub fn destination(self) -> &'static str {
        match self {
            StandIn::Hosts => "/etc/hosts",
            StandIn::Hostname => "/etc/hostname",
            StandIn::ResolvConf => "/etc/resolv.conf",
            StandIn::ContainerEnv => "/run/.containerenv",
            StandIn::TerminationLog => "/dev/termination-log",
            StandIn::Shm => "/dev/shm",
        }
    }

    /// Its file name among a container's stand-ins.
    pub fn file_name(self) -> &'static str {
        match self {
            StandIn::Hosts => "hosts",
            StandIn::Hostname => "hostname",
            StandIn::ResolvConf => "resolv.conf",
            StandIn::ContainerEnv => "containerenv",
            StandIn::TerminationLog => "termination-log",
            StandIn::Shm => "shm",
        }
    }

    /// Whether it is a directory (a file otherwise): CRIU binds it onto a mount point of
    /// the same kind.
    pub fn is_dir(self) -> bool {
        self == StandIn::Shm
    }

    /// The stand-in mounted at `destination` (a clean path), if any.
    pub fn at(destination: &str) -> Option<StandIn> {
        // `/var/run` is a link to `/run` in every image that has both.
        let destination = destination
            .strip_prefix("/var")
            .filter(|d| d.starts_with("/run/"))
            .unwrap_or(destination);
        StandIn::ALL
            .into_iter()
            .find(|s| s.destination() == destination)
    }
}

/// What one mount of the checkpointed container needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// A kernel filesystem of this type.
    Kernel(String),
    /// An engine-generated file or directory.
    StandIn(StandIn),
    /// A bind mount of the user's data from `source` on the old host.
    Bind { source: String },
    /// Another filesystem (type `fstype`, from `source`).
    Other { fstype: String, source: String },
}

impl Need {
    /// Whether CRIU recorded the mount as a bind mount (runc makes every bind mount an
    /// external mount, which a restore must map to a bind mount again).
    pub fn was_bind(&self) -> bool {
        matches!(self, Need::StandIn(_) | Need::Bind { .. })
    }
}

/// One mount of the checkpointed container and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountNeed {
    /// The mount point, without trailing or repeated slashes.
    pub destination: String,
    pub need: Need,
}

/// What each mount of `spec.dump` needs, in its order. An error names a malformed mount.
pub fn mount_needs(dumped: &Value) -> Result<Vec<MountNeed>, String> {
    let Some(mounts) = dumped.get("mounts") else {
        return Ok(Vec::new());
    };
    let Some(mounts) = mounts.as_array() else {
        return Err("the checkpoint's spec.dump: `mounts` is not an array".into());
    };
    mounts
        .iter()
        .map(|m| {
            let Some(destination) = m.get("destination").and_then(Value::as_str) else {
                return Err("the checkpoint's spec.dump has a mount without a destination".into());
            };
            let destination = clean(destination);
            let need = classify(&destination, m);
            Ok(MountNeed { destination, need })
        })
        .collect()
}

/// Whether `mount` (an OCI mount) is a bind mount.
pub fn is_bind(mount: &Value) -> bool {
    mount.get("type").and_then(Value::as_str) == Some("bind")
        || mount
            .get("options")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

fn classify(destination: &str, mount: &Value) -> Need {
    let text = |field: &str| {
        mount
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (fstype, source) = (text("type"), text("source"));
    if is_bind(mount) {
        match StandIn::at(destination) {
            Some(stand_in) if engine_made(&source) => Need::StandIn(stand_in),
            _ => Need::Bind { source },
        }
    } else if KERNEL_FS.contains(&fstype.as_str()) {
        Need::Kernel(fstype)
    } else {
        Need::Other { fstype, source }
    }
}

/// Whether `source` lies in a directory an engine keeps for one container or pod.
fn engine_made(source: &str) -> bool {
    let source = clean(source);
    let parts: Vec<&str> = source.split('/').filter(|p| !p.is_empty()).collect();
    let after = |name: &str| parts.iter().position(|p| *p == name);
    // containers/storage (Podman, CRI-O): <root or run root>/<driver>-containers/<id>/
    // userdata/<file>, shm included.
    let storage = parts.iter().enumerate().any(|(i, p)| {
        p.ends_with("-containers") && parts.get(i + 2) == Some(&"userdata") && parts.len() > i + 3
    });
    // containerd CRI: <root or state>/io.containerd.grpc.v1.cri/sandboxes/<id>/<file>.
    let cri = after("io.containerd.grpc.v1.cri")
        .is_some_and(|i| parts.get(i + 1) == Some(&"sandboxes") && parts.len() > i + 3);
    // The kubelet: <root>/pods/<uid>/etc-hosts and <root>/pods/<uid>/containers/<name>/<id>
    // (the termination log); its volumes are the user's.
    let kubelet = after("pods").is_some_and(|i| {
        matches!(
            (parts.get(i + 2), parts.len()),
            (Some(&"etc-hosts"), n) if n == i + 3
        ) || matches!(
            (parts.get(i + 2), parts.len()),
            (Some(&"containers"), n) if n == i + 5
        )
    });
    storage || cri || kubelet
}

/// The namespaces of an OCI spec, sorted: (kind, whether joined by a path rather than the
/// container's own). A kind the spec does not name is the host's.
pub fn namespace_kinds(spec: &Value) -> Vec<(String, bool)> {
    let mut kinds: Vec<(String, bool)> = spec["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ns| {
            let kind = ns["type"].as_str()?;
            let joined = !ns["path"].as_str().unwrap_or("").is_empty();
            Some((kind.to_string(), joined))
        })
        .collect();
    kinds.sort();
    kinds
}

/// A path without trailing or repeated slashes.
pub fn clean(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn need(mount: Value) -> Need {
        let dumped = json!({ "mounts": [mount] });
        mount_needs(&dumped).unwrap().remove(0).need
    }

    fn bind(destination: &str, source: &str) -> Value {
        json!({"destination": destination, "type": "bind", "source": source,
               "options": ["rbind", "rprivate"]})
    }

    #[test]
    fn engine_files_get_stand_ins_and_user_binds_do_not() {
        let storage = "/run/containers/storage/overlay-containers/0123abc/userdata";
        let shm = "/var/lib/containers/storage/overlay-containers/0123abc/userdata/shm";
        let vfs = "/var/lib/containers/storage/vfs-containers/0123abc/userdata/hosts";
        let cri = "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/9f";
        let cri_shm = "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/9f/shm";
        let kubelet = "/var/lib/kubelet/pods/4c1d";
        use StandIn::*;
        // Bind mounts: (destination, source, the stand-in or None for the user's data).
        let binds: &[(&str, String, Option<StandIn>)] = &[
            ("/etc/hosts", format!("{storage}/hosts"), Some(Hosts)),
            (
                "/etc/hostname/",
                format!("{storage}/hostname"),
                Some(Hostname),
            ),
            (
                "/etc/resolv.conf",
                format!("{storage}/resolv.conf"),
                Some(ResolvConf),
            ),
            (
                "/run/.containerenv",
                format!("{storage}/.containerenv"),
                Some(ContainerEnv),
            ),
            (
                "/var/run/.containerenv",
                format!("{storage}/.containerenv"),
                Some(ContainerEnv),
            ),
            ("/dev/shm", shm.into(), Some(Shm)),
            ("/etc/hosts", vfs.into(), Some(Hosts)),
            ("/etc/hosts", format!("{cri}/hosts"), Some(Hosts)),
            ("/dev/shm", cri_shm.into(), Some(Shm)),
            ("/etc/hosts", format!("{kubelet}/etc-hosts"), Some(Hosts)),
            (
                "/dev/termination-log",
                format!("{kubelet}/containers/c/5e6f"),
                Some(TerminationLog),
            ),
            // The user's own files at those places, and the user's data anywhere.
            ("/etc/hosts", "/srv/my-hosts".into(), None),
            ("/etc/hosts", format!("{kubelet}/volumes/x/etc-hosts"), None),
            ("/data", format!("{storage}/hosts"), None),
            (
                "/etc/hosts",
                "/run/containers/storage/overlay-containers/userdata".into(),
                None,
            ),
        ];
        for (destination, source, stand_in) in binds {
            let want = match stand_in {
                Some(s) => Need::StandIn(*s),
                None => Need::Bind {
                    source: source.clone(),
                },
            };
            assert_eq!(
                need(bind(destination, source)),
                want,
                "{destination} {source}"
            );
        }
        let untyped = json!({"destination": "/etc/hosts", "source": "/x", "options": ["bind"]});
        assert_eq!(
            need(untyped),
            Need::Bind {
                source: "/x".into()
            }
        );
        let tmpfs = json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm"});
        assert_eq!(need(tmpfs), Need::Kernel("tmpfs".into()));
        let nfs = json!({"destination": "/mnt", "type": "nfs", "source": "srv:/x"});
        let other = Need::Other {
            fstype: "nfs".into(),
            source: "srv:/x".into(),
        };
        assert_eq!(need(nfs), other);
    }

    #[test]
    fn destinations_are_clean_and_malformed_mounts_are_errors() {
        let dumped = json!({"mounts": [{"destination": "//dev//shm/", "type": "tmpfs"}]});
        assert_eq!(mount_needs(&dumped).unwrap()[0].destination, "/dev/shm");
        assert!(mount_needs(&json!({})).unwrap().is_empty());
        assert!(mount_needs(&json!({"mounts": {}})).is_err());
        assert!(mount_needs(&json!({"mounts": [{"type": "tmpfs"}]})).is_err());
        assert!(mount_needs(&json!({"mounts": [{"destination": 3}]})).is_err());
    }

    #[test]
    fn stand_ins_are_found_by_destination() {
        for s in StandIn::ALL {
            assert_eq!(StandIn::at(s.destination()), Some(s));
        }
        assert_eq!(
            StandIn::at("/var/run/.containerenv"),
            Some(StandIn::ContainerEnv)
        );
        assert_eq!(StandIn::at("/var/etc/hosts"), None);
        assert_eq!(StandIn::at("/etc/passwd"), None);
    }
}
