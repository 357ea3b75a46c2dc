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
//! - mounts: every mount point of the checkpoint must exist again. Kernel filesystems (proc,
//!   sysfs, tmpfs, devpts, mqueue, cgroup) the new spec lacks are added from the checkpoint;
//!   a bind mount it lacks is an error naming it (its source lived on the old host).
//! - masked and read-only paths: the union: the checkpoint's may add to the new container's,
//!   never remove from them (each masked path is a mount CRIU must find a mapping for).
//! - everything else (cgroup path and resources, root, hostname, annotations, devices,
//!   sysctls): the new container's.

use serde_json::{Value, json};

/// Mount types the kernel provides: the shim can mount them again wherever they were.
const KERNEL_FS: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2",
];

/// Reconciles the new container's `spec` with the checkpoint's `dumped` spec in place (see
/// the module's documentation). Returns what it changed, for the log; an error says what
/// differs and what to do.
pub fn reconcile(spec: &mut Value, dumped: &Value) -> Result<Vec<String>, String> {
    shape(spec, "the container's spec")?;
    shape(dumped, "the checkpoint's spec.dump")?;
    let mut notes = Vec::new();
    notes.extend(process(spec, dumped)?);
    namespaces(spec, dumped)?;
    notes.extend(mounts(spec, dumped)?);
    union_of_paths(spec, dumped, "maskedPaths");
    union_of_paths(spec, dumped, "readonlyPaths");
    Ok(notes)
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

/// (kind, joined?) of each namespace in `spec`.
fn namespace_kinds(spec: &Value) -> Vec<(String, bool)> {
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

fn mounts(spec: &mut Value, dumped: &Value) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let have: Vec<String> = spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["destination"].as_str().map(clean))
        .collect();
    let mut added = Vec::new();
    for m in dumped["mounts"].as_array().into_iter().flatten() {
        let Some(destination) = m["destination"].as_str() else {
            return Err("the checkpoint's spec.dump has a mount without a destination".into());
        };
        if have.contains(&clean(destination)) {
            continue;
        }
        let kind = m["type"].as_str().unwrap_or("");
        let options = m["options"].as_array().into_iter().flatten();
        let bind = kind == "bind" || options.clone().any(|o| o == "bind" || o == "rbind");
        if bind || !KERNEL_FS.contains(&kind) {
            return Err(format!(
                "the checkpointed container had {} mounted at {destination} ({}), and this one \
                 has nothing there: give it a mount at {destination} (ctr run --mount; in a \
                 pod, a volume)",
                m["source"].as_str().unwrap_or("?"),
                if bind { "a bind mount" } else { kind },
            ));
        }
        notes.push(format!("{kind} at {destination} from the checkpoint"));
        added.push(m.clone());
    }
    if !added.is_empty() {
        match spec["mounts"].as_array_mut() {
            Some(list) => list.extend(added),
            None => spec["mounts"] = json!(added),
        }
    }
    Ok(notes)
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

/// A mount destination without trailing or repeated slashes.
fn clean(destination: &str) -> String {
    let parts: Vec<&str> = destination.split('/').filter(|p| !p.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        reconcile(&mut spec, &dumped).unwrap();
        assert_eq!(spec["process"]["args"], json!(["sh", "-c", "counter"]));
        assert_eq!(spec["process"]["user"], json!({"uid": 1000}));
        assert!(spec["process"].get("capabilities").is_none());
        assert_eq!(
            spec["linux"]["readonlyPaths"],
            json!(["/proc/sys", "/proc/bus"])
        );
        // A command of the new container's own stays.
        let mut spec = ctr_spec(&["top"]);
        reconcile(&mut spec, &dumped).unwrap();
        assert_eq!(spec["process"]["args"], json!(["top"]));
        let mut spec = ctr_spec(&[]);
        let notes = reconcile(&mut spec, &dumped).unwrap();
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
        let err = reconcile(&mut ctr_spec(&[]), &dumped).unwrap_err();
        assert!(
            err.contains("at /etc/hosts") && err.contains("bind"),
            "{err}"
        );
    }

    #[test]
    fn namespaces_must_match() {
        let mut joined = ctr_spec(&["sh"]);
        joined["linux"]["namespaces"][1] = json!({"type": "network", "path": "/proc/7/ns/net"});
        let err = reconcile(&mut ctr_spec(&[]), &joined).unwrap_err();
        assert!(err.contains("into a pod"), "{err}");
        let err = reconcile(&mut joined.clone(), &ctr_spec(&["sh"])).unwrap_err();
        assert!(err.contains("of its own"), "{err}");
        let mut host = ctr_spec(&["sh"]);
        host["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
        let err = reconcile(&mut ctr_spec(&[]), &host).unwrap_err();
        assert!(err.contains("--net-host"), "{err}");
        let err = reconcile(&mut host.clone(), &ctr_spec(&["sh"])).unwrap_err();
        assert!(
            err.contains("network namespace of its own, and this one shares the host"),
            "{err}"
        );
        assert!(reconcile(&mut joined.clone(), &joined).is_ok());
    }

    #[test]
    fn terminals_must_match() {
        let mut tty = ctr_spec(&["sh"]);
        tty["process"]["terminal"] = json!(true);
        let err = reconcile(&mut ctr_spec(&[]), &tty).unwrap_err();
        assert!(err.contains("ctr run -t"), "{err}");
        let mut spec = tty.clone();
        spec["process"]["consoleSize"] = json!({"height": 5, "width": 7});
        reconcile(&mut spec, &tty).unwrap();
        assert_eq!(spec["process"]["consoleSize"]["width"], 7);
    }

    #[test]
    fn a_spec_dump_without_process_is_an_error() {
        assert!(reconcile(&mut ctr_spec(&[]), &json!({"linux": {}})).is_err());
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
                reconcile(&mut bad.clone(), &ctr_spec(&["sh"])).is_err(),
                "{bad}"
            );
            assert!(reconcile(&mut ctr_spec(&[]), &bad).is_err(), "{bad}");
        }
    }
}
