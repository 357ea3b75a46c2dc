//! A container created from a checkpoint image is restored, not started, so the spec
//! containerd wrote for it (from the checkpoint image's config, or from a pod's container
//! config) must describe the container CRIU will recreate: the checkpoint's `spec.dump`.
//!
//! What [`reconcile`] does with the new spec, given the checkpoint's:
//! - `process`: the new container's. It is the policy the restore was checked against
//!   ([`crate::privilege`]) and what later checkpoints record. The two must agree on whether
//!   there is a terminal. Where the new spec has no command or working directory (a
//!   checkpoint image has none of its own), the checkpoint's fill them in, as `runc restore`
//!   requires both; the process CRIU restores is the checkpoint's whatever they say.
//! - namespaces: the same kinds, each either the container's own in both or joined in both
//!   (a joined one is external to CRIU and must be given again); anything else is an error.
//! - mounts: every mount point of the checkpoint must exist again, each as
//!   [`revive_checkpoint::needs`] tells. Kernel filesystems (proc, sysfs, tmpfs, devpts,
//!   mqueue, cgroup) the new spec lacks are added from the checkpoint. The files an engine
//!   generated for the old container (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`,
//!   `/run/.containerenv`, `/dev/termination-log`) the new spec lacks get stand-ins, files
//!   the shim makes beside the bundle ([`crate::standins`]); a `/dev/shm` that was an
//!   engine's bind mount becomes a bind mount of a tmpfs of the new container's `/dev/shm`
//!   size. Any other bind mount it lacks is an error naming it (its source lived on the old
//!   host), and so is a bind mount the new spec has as another kind (CRIU restores a bind
//!   mount only onto a bind mount). A filesystem only the new spec mounts (`ctr run`'s
//!   `/run` tmpfs) is left out: CRIU restores the checkpoint's mount tree, not the spec's.
//! - masked and read-only paths: the union: the checkpoint's may add to the new container's,
//!   never remove from them (each masked path is a mount CRIU must find a mapping for).
//! - everything else (cgroup path and resources, root, hostname, annotations, devices,
//!   sysctls): the new container's.

use std::path::Path;

use revive_checkpoint::needs::{self, Need, StandIn, clean, namespace_kinds};
use serde_json::{Value, json};

/// What reconciling changed: notes for the log, and the stand-ins the new spec now mounts.
#[derive(Debug, Default, PartialEq)]
pub struct Reconciled {
    pub notes: Vec<String>,
    pub stand_ins: Vec<Planned>,
}

/// A stand-in to make before the restore, in the directory the spec's mounts name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub stand_in: StandIn,
    /// The mount in the spec that binds it.
    pub mount: Value,
    /// For [`StandIn::Shm`]: the tmpfs options (`mode=`, `size=`, ...) of the new
    /// container's own `/dev/shm`, or containerd's defaults where it has none.
    pub tmpfs: Vec<String>,
}

/// containerd's `/dev/shm` tmpfs options, for a spec that has none.
const DEFAULT_SHM: &[&str] = &["mode=1777", "size=65536k"];

/// Reconciles the new container's `spec` with the checkpoint's `dumped` spec in place (see
/// the module's documentation); stand-ins are mounted from `stand_ins`. Returns what it
/// changed; an error says what differs and what to do.
pub fn reconcile(spec: &mut Value, dumped: &Value, stand_ins: &Path) -> Result<Reconciled, String> {
    shape(spec, "the container's spec")?;
    shape(dumped, "the checkpoint's spec.dump")?;
    let mut notes = Vec::new();
    notes.extend(process(spec, dumped)?);
    namespaces(spec, dumped)?;
    let (mount_notes, planned) = mounts(spec, dumped, stand_ins)?;
    notes.extend(mount_notes);
    union_of_paths(spec, dumped, "maskedPaths");
    union_of_paths(spec, dumped, "readonlyPaths");
    Ok(Reconciled {
        notes,
        stand_ins: planned,
    })
}

/// `spec` with the mounts of `planned` stand-ins in place of what it had at their
/// destinations: the spec a restore is checked against, since the shim itself supplies
/// them (fresh files and an empty tmpfs of the spec's own size).
pub fn with_stand_ins(spec: &Value, planned: &[Planned]) -> Value {
    let mut spec = spec.clone();
    for p in planned {
        put_mount(&mut spec, p.mount.clone());
    }
    spec
}

/// Puts `mount` into `spec`'s mounts in place of any at its destination, else last.
fn put_mount(spec: &mut Value, mount: Value) {
    let destination = mount["destination"].as_str().map(clean);
    if !spec["mounts"].is_array() {
        spec["mounts"] = json!([]);
    }
    let list = spec["mounts"].as_array_mut().expect("made an array above");
    match list
        .iter()
        .position(|m| m["destination"].as_str().map(clean) == destination)
    {
        Some(i) => list[i] = mount,
        None => list.push(mount),
    }
}

/// Checks the fields reconciling reads and writes have the types the OCI spec gives them, so
/// that no malformed spec can make it index a string or a number.
fn shape(spec: &Value, what: &str) -> Result<(), String> {
    let wrong = |field: &str, kind: &str| Err(format!("{what}: `{field}` is not {kind}"));
    if !spec.is_object() {
        return wrong("(the spec)", "an object");
    }
    for field in ["process", "linux"] {
        if !spec.get(field).is_none_or(Value::is_object) {
            return wrong(field, "an object");
        }
    }
    if !spec.get("mounts").is_none_or(Value::is_array) {
        return wrong("mounts", "an array");
    }
    let linux = &spec["linux"];
    for field in ["namespaces", "maskedPaths", "readonlyPaths"] {
        if !linux.get(field).is_none_or(Value::is_array) {
            return wrong(&format!("linux.{field}"), "an array");
        }
    }
    Ok(())
}

fn process(spec: &mut Value, dumped: &Value) -> Result<Vec<String>, String> {
    let Some(dumped_process) = dumped.get("process").filter(|p| p.is_object()) else {
        return Err("the checkpoint's spec.dump has no process".into());
    };
    let had = dumped_process["terminal"].as_bool().unwrap_or(false);
    let has = spec["process"]["terminal"].as_bool().unwrap_or(false);
    if had != has {
        return Err(if had {
            "the checkpointed container had a terminal and this one has none: create it with \
             a terminal (ctr run -t; in a pod, tty: true)"
                .into()
        } else {
            "the checkpointed container had no terminal and this one has one: create it \
             without a terminal (no ctr run -t; in a pod, tty: false)"
                .into()
        });
    }
    let mut notes = Vec::new();
    if !spec["process"].is_object() {
        spec["process"] = json!({});
    }
    for (field, empty) in [("args", json!([])), ("cwd", json!(""))] {
        let value = &spec["process"][field];
        if (value.is_null() || *value == empty)
            && let Some(from) = dumped_process.get(field)
        {
            spec["process"][field] = from.clone();
            notes.push(format!("process {field} from the checkpoint"));
        }
    }
    Ok(notes)
}

/// Takes out of `spec` each namespace it joins by a path that `is_host` says is the host's
/// own namespace of that kind, where the checkpointed container shared the host's (had no
/// entry of that kind): joining the host's namespace is sharing it. A host-network pod's
/// container joins its sandbox's network namespace, the host's, while another engine's
/// host-network container records none. Returns the kinds taken out.
pub fn share_joined_host_namespaces(
    spec: &mut Value,
    dumped: &Value,
    is_host: &dyn Fn(&str, &str) -> bool,
) -> Vec<String> {
    let had = namespace_kinds(dumped);
    let mut taken = Vec::new();
    if let Some(list) = spec["linux"]["namespaces"].as_array_mut() {
        list.retain(|ns| {
            let (Some(kind), Some(path)) = (ns["type"].as_str(), ns["path"].as_str()) else {
                return true;
            };
            let host =
                !path.is_empty() && !had.iter().any(|(k, _)| k == kind) && is_host(kind, path);
            if host {
                taken.push(kind.to_string());
            }
            !host
        });
    }
    taken
}

fn namespaces(spec: &Value, dumped: &Value) -> Result<(), String> {
    let had = namespace_kinds(dumped);
    let has = namespace_kinds(spec);
    for (kind, joined) in &had {
        match has.iter().find(|(k, _)| k == kind) {
            None => {
                return Err(format!(
                    "the checkpointed container had a {kind} namespace {}, and this one shares \
                     the host's: create it with a {kind} namespace{}",
                    if *joined { "it joined" } else { "of its own" },
                    if *joined { " joined, in a pod" } else { "" }
                ));
            }
            Some((_, now)) if now != joined => {
                return Err(if *joined {
                    format!(
                        "the checkpointed container joined an existing {kind} namespace (a \
                         pod's), and this one has its own: restore it into a pod (CRI), where \
                         the {kind} namespace is joined again"
                    )
                } else {
                    format!(
                        "the checkpointed container had a {kind} namespace of its own, and \
                         this one joins an existing one (a pod's): restore it as a container \
                         of its own (ctr run), or checkpoint it from a pod"
                    )
                });
            }
            Some(_) => {}
        }
    }
    if let Some((kind, _)) = has.iter().find(|(k, _)| !had.iter().any(|(h, _)| h == k)) {
        return Err(format!(
            "the checkpointed container shared the host's {kind} namespace, and this one has \
             one: create it the same way (for the network: ctr run --net-host, or a pod with \
             hostNetwork)"
        ));
    }
    Ok(())
}

fn mounts(
    spec: &mut Value,
    dumped: &Value,
    stand_ins: &Path,
) -> Result<(Vec<String>, Vec<Planned>), String> {
    let (mut notes, mut planned) = (Vec::new(), Vec::new());
    let needs = needs::mount_needs(dumped)?;
    let kept: Vec<String> = needs.iter().map(|n| n.destination.clone()).collect();
    let dumped_mounts = dumped["mounts"].as_array().cloned().unwrap_or_default();
    for (m, needs::MountNeed { destination, need }) in dumped_mounts.iter().zip(needs) {
        let present = spec["mounts"].as_array().and_then(|list| {
            list.iter()
                .find(|n| n["destination"].as_str().map(clean).as_ref() == Some(&destination))
                .cloned()
        });
        match (present, need) {
            (Some(present), Need::StandIn(StandIn::Shm)) if !needs::is_bind(&present) => {
                let tmpfs = tmpfs_options(&present);
                let mount = stand_in_mount(StandIn::Shm, m, stand_ins);
                notes.push(format!(
                    "{destination}: a tmpfs of its own ({}), bound as the checkpointed \
                     container's was",
                    tmpfs.join(",")
                ));
                planned.push(Planned {
                    stand_in: StandIn::Shm,
                    mount,
                    tmpfs,
                });
            }
            (Some(present), need) if need.was_bind() && !needs::is_bind(&present) => {
                return Err(format!(
                    "the checkpointed container had a bind mount at {destination}, and this \
                     one has a {} mount there: CRIU restores a bind mount only onto a bind \
                     mount; give it a bind mount at {destination} (ctr run --mount \
                     type=bind,...; in a pod, a volume)",
                    present["type"].as_str().unwrap_or("non-bind")
                ));
            }
            (Some(_), _) => {}
            (None, Need::Kernel(kind)) => {
                notes.push(format!("{kind} at {destination} from the checkpoint"));
                put_mount(spec, m.clone());
            }
            (None, Need::StandIn(stand_in)) => {
                let tmpfs = if stand_in == StandIn::Shm {
                    DEFAULT_SHM.iter().map(|o| o.to_string()).collect()
                } else {
                    Vec::new()
                };
                notes.push(format!("a stand-in for {destination}"));
                planned.push(Planned {
                    stand_in,
                    mount: stand_in_mount(stand_in, m, stand_ins),
                    tmpfs,
                });
            }
            (None, need) => {
                let (source, what) = match &need {
                    Need::Bind { source } => (source.as_str(), "a bind mount"),
                    Need::Other { fstype, source } => (source.as_str(), fstype.as_str()),
                    Need::Kernel(_) | Need::StandIn(_) => unreachable!("matched above"),
                };
                return Err(format!(
                    "the checkpointed container had {} mounted at {destination} ({what}), and \
                     this one has nothing there: give it a mount at {destination} (ctr run \
                     --mount; in a pod, a volume)",
                    if source.is_empty() { "?" } else { source },
                ));
            }
        }
    }
    for p in &planned {
        put_mount(spec, p.mount.clone());
    }
    // CRIU rebuilds the checkpoint's mount tree and no other: a filesystem only the new spec
    // mounts would not exist in the restored container, and runc, taking it for one, would
    // not make the checkpoint's mount points beneath it (it leaves those on a tmpfs to CRIU).
    if let Some(list) = spec["mounts"].as_array_mut() {
        list.retain(|m| {
            let destination = m["destination"].as_str().map(clean).unwrap_or_default();
            let kept = needs::is_bind(m) || kept.contains(&destination);
            if !kept {
                notes.push(format!(
                    "{destination}: not mounted, as in the checkpointed container"
                ));
            }
            kept
        });
    }
    Ok((notes, planned))
}

/// The bind mount of `stand_in` from `dir` at the destination of `dumped` (the checkpointed
/// container's own spelling of it, which CRIU looks for).
fn stand_in_mount(stand_in: StandIn, dumped: &Value, dir: &Path) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    if stand_in == StandIn::Shm {
        options.extend(["nosuid", "noexec", "nodev"]);
    }
    json!({
        "destination": dumped["destination"],
        "type": "bind",
        "source": dir.join(stand_in.file_name()),
        "options": options,
    })
}

/// The tmpfs options of `mount` (`mode=`, `size=`, ...), or containerd's `/dev/shm` ones.
fn tmpfs_options(mount: &Value) -> Vec<String> {
    let options: Vec<String> = mount["options"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|o| o.contains('='))
        .map(str::to_string)
        .collect();
    if options.is_empty() {
        DEFAULT_SHM.iter().map(|o| o.to_string()).collect()
    } else {
        options
    }
}

/// `linux.<field>` of the spec, with the checkpoint's entries it lacks added.
fn union_of_paths(spec: &mut Value, dumped: &Value, field: &str) {
    let mut paths: Vec<Value> = spec["linux"][field].as_array().cloned().unwrap_or_default();
    for p in dumped["linux"][field].as_array().into_iter().flatten() {
        if !paths.contains(p) {
            paths.push(p.clone());
        }
    }
    if !paths.is_empty() {
        spec["linux"][field] = Value::Array(paths);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAND_INS: &str = "/run/containerd/io.containerd.runtime.v2.task/default/new/stand-ins";

    /// [`reconcile`]'s notes, stand-ins made in [`STAND_INS`].
    fn reconciled(spec: &mut Value, dumped: &Value) -> Result<Vec<String>, String> {
        reconcile(spec, dumped, Path::new(STAND_INS)).map(|r| r.notes)
    }

    fn ctr_spec(args: &[&str]) -> Value {
        json!({
            "process": {"terminal": false, "args": args, "cwd": "/", "env": ["PATH=/bin"]},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}],
                "maskedPaths": ["/proc/kcore"],
                "readonlyPaths": ["/proc/sys"],
                "cgroupsPath": "/default/new",
            },
        })
    }

    #[test]
    fn the_process_stays_and_only_a_missing_command_comes_from_the_checkpoint() {
        let mut dumped = ctr_spec(&["sh", "-c", "counter"]);
        dumped["process"]["user"] = json!({"uid": 0});
        dumped["process"]["capabilities"] = json!({"bounding": ["CAP_SYS_ADMIN"]});
        dumped["linux"]["readonlyPaths"] = json!(["/proc/bus"]);
        dumped["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"}));
        dumped["linux"]["maskedPaths"] = json!(["/proc/kcore", "/proc/keys"]);
        dumped["linux"]["cgroupsPath"] = json!("/default/old");
        let mut spec = ctr_spec(&[]);
        spec["process"]["user"] = json!({"uid": 1000});
        reconciled(&mut spec, &dumped).unwrap();
        assert_eq!(spec["process"]["args"], json!(["sh", "-c", "counter"]));
        assert_eq!(spec["process"]["user"], json!({"uid": 1000}));
        assert!(spec["process"].get("capabilities").is_none());
        assert_eq!(
            spec["linux"]["readonlyPaths"],
            json!(["/proc/sys", "/proc/bus"])
        );
        // A command of the new container's own stays.
        let mut spec = ctr_spec(&["top"]);
        reconciled(&mut spec, &dumped).unwrap();
        assert_eq!(spec["process"]["args"], json!(["top"]));
        let mut spec = ctr_spec(&[]);
        let notes = reconciled(&mut spec, &dumped).unwrap();
        assert_eq!(spec["linux"]["cgroupsPath"], "/default/new");
        assert_eq!(
            spec["linux"]["maskedPaths"],
            json!(["/proc/kcore", "/proc/keys"])
        );
        assert_eq!(spec["mounts"].as_array().unwrap().len(), 3);
        assert!(notes.iter().any(|n| n.contains("/dev/mqueue")), "{notes:?}");
    }

    #[test]
    fn a_missing_bind_mount_is_named() {
        let mut dumped = ctr_spec(&["sh"]);
        dumped["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/etc/hosts", "type": "bind",
            "source": "/var/lib/containerd/sandboxes/x/hosts", "options": ["rbind"],
        }));
        let err = reconciled(&mut ctr_spec(&[]), &dumped).unwrap_err();
        assert!(
            err.contains("at /etc/hosts") && err.contains("bind"),
            "{err}"
        );
    }

    #[test]
    fn a_joined_host_namespace_is_shared_where_the_checkpoint_shared_it() {
        let mut host_network = ctr_spec(&["sh"]);
        host_network["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
        let mut pod = ctr_spec(&[]);
        pod["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": "/proc/7/ns/net"}]);
        let is_host = |kind: &str, path: &str| kind == "network" && path == "/proc/7/ns/net";
        // Not the host's: kept, and refused as before.
        let mut other = pod.clone();
        assert!(share_joined_host_namespaces(&mut other, &host_network, &|_, _| false).is_empty());
        assert!(reconciled(&mut other, &host_network).is_err());
        // The host's: shared, and reconciled.
        let mut spec = pod.clone();
        let taken = share_joined_host_namespaces(&mut spec, &host_network, &is_host);
        assert_eq!(taken, ["network"]);
        assert_eq!(spec["linux"]["namespaces"].as_array().unwrap().len(), 2);
        reconciled(&mut spec, &host_network).unwrap();
        // Where the checkpoint joined one too, it stays joined.
        let mut spec = pod.clone();
        assert!(share_joined_host_namespaces(&mut spec, &pod, &is_host).is_empty());
    }

    #[test]
    fn namespaces_must_match() {
        let mut joined = ctr_spec(&["sh"]);
        joined["linux"]["namespaces"][1] = json!({"type": "network", "path": "/proc/7/ns/net"});
        let err = reconciled(&mut ctr_spec(&[]), &joined).unwrap_err();
        assert!(err.contains("into a pod"), "{err}");
        let err = reconciled(&mut joined.clone(), &ctr_spec(&["sh"])).unwrap_err();
        assert!(err.contains("of its own"), "{err}");
        let mut host = ctr_spec(&["sh"]);
        host["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
        let err = reconciled(&mut ctr_spec(&[]), &host).unwrap_err();
        assert!(err.contains("--net-host"), "{err}");
        let err = reconciled(&mut host.clone(), &ctr_spec(&["sh"])).unwrap_err();
        assert!(
            err.contains("network namespace of its own, and this one shares the host"),
            "{err}"
        );
        assert!(reconciled(&mut joined.clone(), &joined).is_ok());
    }

    #[test]
    fn terminals_must_match() {
        let mut tty = ctr_spec(&["sh"]);
        tty["process"]["terminal"] = json!(true);
        let err = reconciled(&mut ctr_spec(&[]), &tty).unwrap_err();
        assert!(err.contains("ctr run -t"), "{err}");
        let mut spec = tty.clone();
        spec["process"]["consoleSize"] = json!({"height": 5, "width": 7});
        reconciled(&mut spec, &tty).unwrap();
        assert_eq!(spec["process"]["consoleSize"]["width"], 7);
    }

    #[test]
    fn a_spec_dump_without_process_is_an_error() {
        assert!(reconciled(&mut ctr_spec(&[]), &json!({"linux": {}})).is_err());
    }

    #[test]
    fn malformed_specs_are_errors_not_panics() {
        for bad in [
            json!([]),
            json!({"process": "sh"}),
            json!({"process": {}, "linux": 3}),
            json!({"process": {}, "mounts": {}}),
            json!({"process": {}, "linux": {"maskedPaths": "x"}}),
        ] {
            assert!(
                reconciled(&mut bad.clone(), &ctr_spec(&["sh"])).is_err(),
                "{bad}"
            );
            assert!(reconciled(&mut ctr_spec(&[]), &bad).is_err(), "{bad}");
        }
    }

    /// A Podman container's spec.dump: its engine files bound from its userdata directory.
    fn podman_dump() -> Value {
        let userdata = "/run/containers/storage/overlay-containers/c0ffee/userdata";
        let mut dumped = ctr_spec(&["sh"]);
        let mounts = dumped["mounts"].as_array_mut().unwrap();
        for (destination, file) in [
            ("/etc/hosts", "hosts"),
            ("/etc/hostname", "hostname"),
            ("/etc/resolv.conf", "resolv.conf"),
            ("/run/.containerenv", ".containerenv"),
        ] {
            mounts.push(json!({"destination": destination, "type": "bind",
                "source": format!("{userdata}/{file}"), "options": ["bind", "rprivate"]}));
        }
        mounts.push(json!({"destination": "/dev/shm", "type": "bind",
            "source": "/var/lib/containers/storage/overlay-containers/c0ffee/userdata/shm",
            "options": ["bind", "rprivate", "nosuid", "noexec", "nodev"]}));
        dumped
    }

    #[test]
    fn engine_files_get_stand_ins_and_dev_shm_a_tmpfs_of_the_new_size() {
        let mut spec = ctr_spec(&[]);
        spec["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/dev/shm",
            "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=32768k"]}));
        let policy = spec.clone();
        let done = reconcile(&mut spec, &podman_dump(), Path::new(STAND_INS)).unwrap();
        let planned: Vec<StandIn> = done.stand_ins.iter().map(|p| p.stand_in).collect();
        assert_eq!(
            planned,
            [
                StandIn::Hosts,
                StandIn::Hostname,
                StandIn::ResolvConf,
                StandIn::ContainerEnv,
                StandIn::Shm
            ]
        );
        let shm = &done.stand_ins[4];
        assert_eq!(shm.tmpfs, ["mode=1777", "size=32768k"]);
        let mounts = spec["mounts"].as_array().unwrap();
        let at = |d: &str| {
            mounts
                .iter()
                .filter(|m| m["destination"] == d)
                .collect::<Vec<_>>()
        };
        assert_eq!(at("/dev/shm").len(), 1, "replaced, not added");
        assert_eq!(at("/dev/shm")[0]["type"], "bind");
        assert_eq!(at("/dev/shm")[0]["source"], format!("{STAND_INS}/shm"));
        assert_eq!(at("/etc/hosts")[0]["source"], format!("{STAND_INS}/hosts"));
        assert_eq!(
            at("/run/.containerenv")[0]["source"],
            format!("{STAND_INS}/containerenv")
        );
        // The spec a restore is checked against has the same stand-ins, nothing else added.
        let checked = with_stand_ins(&policy, &done.stand_ins);
        assert_eq!(checked["mounts"].as_array().unwrap().len(), mounts.len());
        assert_eq!(checked["mounts"], spec["mounts"]);
        // A filesystem the checkpointed container did not have is left out.
        let mut with_run = ctr_spec(&[]);
        with_run["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/run",
            "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]}));
        let done = reconcile(&mut with_run, &podman_dump(), Path::new(STAND_INS)).unwrap();
        let mounts = with_run["mounts"].as_array().unwrap();
        assert!(
            !mounts.iter().any(|m| m["destination"] == "/run"),
            "{mounts:?}"
        );
        assert!(
            mounts
                .iter()
                .any(|m| m["destination"] == "/run/.containerenv")
        );
        assert!(
            done.notes
                .iter()
                .any(|n| n.starts_with("/run: not mounted"))
        );
        // Without a /dev/shm of its own, containerd's size.
        let mut bare = ctr_spec(&[]);
        let done = reconcile(&mut bare, &podman_dump(), Path::new(STAND_INS)).unwrap();
        assert_eq!(done.stand_ins[4].tmpfs, ["mode=1777", "size=65536k"]);
    }

    #[test]
    fn what_the_new_container_brings_is_kept_and_user_data_is_refused() {
        // A pod's kubelet and CRI bring /etc/hosts and friends: no stand-in.
        let mut pod = ctr_spec(&[]);
        for destination in [
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/dev/shm",
        ] {
            pod["mounts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"destination": destination,
                "type": "bind", "source": format!("/var/lib/x{destination}"),
                "options": ["rbind"]}));
        }
        let done = reconcile(&mut pod, &podman_dump(), Path::new(STAND_INS)).unwrap();
        let planned: Vec<StandIn> = done.stand_ins.iter().map(|p| p.stand_in).collect();
        assert_eq!(planned, [StandIn::ContainerEnv]);
        // The user's own file at an engine file's place is the user's data.
        let mut dumped = podman_dump();
        dumped["mounts"][2]["source"] = json!("/srv/hosts");
        let err = reconciled(&mut ctr_spec(&[]), &dumped).unwrap_err();
        assert!(
            err.contains("/srv/hosts mounted at /etc/hosts (a bind mount)"),
            "{err}"
        );
        // A bind mount that the new container has as another kind cannot be restored.
        let mut dumped = ctr_spec(&["sh"]);
        dumped["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/data",
            "type": "bind", "source": "/srv/data", "options": ["rbind"]}));
        let mut spec = ctr_spec(&[]);
        spec["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/data",
            "type": "tmpfs", "source": "tmpfs"}));
        let err = reconciled(&mut spec, &dumped).unwrap_err();
        assert!(
            err.contains("bind mount at /data, and this one has a tmpfs mount there"),
            "{err}"
        );
    }
}
