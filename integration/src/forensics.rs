//! Forensic analysis of a checkpoint without restoring it: a pod running the holder program
//! ([`HOLDER_C`]) is checkpointed through CRI (`crictl checkpoint --export`), and the archive
//! is read by `revive inspect` and `revive memgrep` beside checkpointctl (Debian sid's, in
//! the node).

use std::io::Write as _;
use std::ops::ControlFlow;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::crictl::{self, crictl};
use crate::ctr::poll;
use crate::image::{Image, busybox_builder};
use crate::node::Node;
use crate::{cri, rootfs};

/// The holder: reads a secret from /secret, unlinks it and keeps it on its heap and stack
/// only, with a child, a file, sockets and a loop to find in a checkpoint of it.
pub const HOLDER_C: &str = include_str!("forensics/holder.c");
/// The holder's image: busybox and `/holder`, statically linked.
pub const HOLDER_IMAGE: &str = "revive.test/holder:1";
/// The environment variable the holder's container is given, for `inspect` to show.
pub const HOLDER_ENV: (&str, &str) = ("REVIVE_ROLE", "holder");
/// Where the holder's checkpoint archives are written in the node.
pub const ARCHIVE_DIR: &str = "/var/lib/checkpoints";

/// The holder compiled on this host (`cc -static -O0 -g`), cached by its source's digest in
/// the node cache's `programs/`.
pub fn holder_binary() -> Result<PathBuf> {
    let digest = hex::encode(Sha256::digest(HOLDER_C.as_bytes()));
    let dir = rootfs::cache_dir().join("programs");
    let binary = dir.join(format!("holder-{}", &digest[..16]));
    if binary.is_file() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let source = dir.join(format!("holder-{}.c", &digest[..16]));
    std::fs::write(&source, HOLDER_C)?;
    let partial = binary.with_extension("partial");
    let out = Command::new("cc")
        .args(["-static", "-O0", "-g", "-Wall", "-o"])
        .arg(&partial)
        .arg(&source)
        .output()
        .context("running cc (install gcc and libc6-dev: make host-deps)")?;
    ensure!(
        out.status.success(),
        "cc -static {} failed: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    std::fs::rename(&partial, &binary)?;
    Ok(binary)
}

/// The holder's image, built from the node's busybox.
pub fn holder_image(rootfs: &Path) -> Result<Image> {
    busybox_builder(rootfs, HOLDER_IMAGE)?
        .host_file("/holder", &holder_binary()?, 0o755)?
        .cmd(&["/holder"])
        .build()
}

/// A holder pod, running, and the secret it holds.
#[derive(Debug)]
pub struct Holder {
    pub pod: String,
    pub id: String,
    pub secret: String,
}

/// Runs the holder in a pod on handler revive through CRI and hands it a fresh secret;
/// returns once it holds it (the file gone, `/holding` there).
pub fn start_holder(node: &Node) -> Result<Holder> {
    start_holder_on(node, crictl::HANDLER)
}

/// [`start_holder`] on RuntimeClass handler `runtime`.
pub fn start_holder_on(node: &Node, runtime: &str) -> Result<Holder> {
    crictl::require(node)?;
    crictl::configure(node)?;
    crictl::import_base_images(node)?;
    cri::import_image(node, &holder_image(&node.rootfs().path)?)?;
    crictl::wait_for_image(node, HOLDER_IMAGE)?;
    let config = json!({
        "metadata": {"name": "holder", "attempt": 0},
        "image": {"image": HOLDER_IMAGE},
        "command": ["/holder"],
        "envs": [{"key": HOLDER_ENV.0, "value": HOLDER_ENV.1}],
        "log_path": "holder.log",
        "labels": {
            "io.kubernetes.container.name": "holder",
            "io.kubernetes.pod.name": "holder",
            "io.kubernetes.pod.namespace": "default",
        },
        "linux": {
            "security_context": {
                "namespace_options": {"network": 2, "pid": 1, "ipc": 0}
            }
        }
    });
    let (pod, id) = crictl::run_pod_on(
        node,
        runtime,
        "holder",
        "7a3e51c0-0000-4000-8000-0000000000f1",
        &config,
    )?;
    let secret = hand_secret(&|script| crictl(node, &["exec", "--sync", &id, "sh", "-c", script]))
        .with_context(|| format!("the holder {id}"))?;
    Ok(Holder { pod, id, secret })
}

/// Hands the holder a fresh secret through `sh`, which runs a script in its container, and
/// waits until it holds it: the file gone, `/holding` there. Returns the secret.
fn hand_secret(sh: &dyn Fn(&str) -> Result<String>) -> Result<String> {
    let secret = format!("revive-secret-{}", hex::encode(rand_bytes()?));
    sh(&format!("printf %s {secret} > /secret"))?;
    poll(Duration::from_secs(30), Duration::from_millis(100), || {
        Ok(match sh("test -e /holding && ! test -e /secret") {
            Ok(_) => ControlFlow::Break(()),
            Err(_) => ControlFlow::Continue("it did not take its secret".into()),
        })
    })?;
    Ok(secret)
}

/// `crictl checkpoint --export` of the holder into [`ARCHIVE_DIR`]/`name`.tar; returns the
/// archive's path in the node.
pub fn checkpoint(node: &Node, holder: &Holder, name: &str) -> Result<String> {
    node.run(&["mkdir", "-p", ARCHIVE_DIR])?;
    let path = format!("{ARCHIVE_DIR}/{name}.tar");
    crictl(
        node,
        &["checkpoint", &format!("--export={path}"), &holder.id],
    )?;
    Ok(path)
}

fn rand_bytes() -> Result<[u8; 12]> {
    let mut bytes = [0u8; 12];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)
        .context("reading /dev/urandom")?;
    Ok(bytes)
}

/// What checkpointctl shows of a checkpoint that `revive inspect` does not show, or shows
/// otherwise: `checkpointctl` is one element of `checkpointctl inspect --all --format json`,
/// `revive` the output of `revive inspect --json`, for the same archive. Empty when revive
/// shows everything checkpointctl does.
///
/// Where checkpointctl 1.3 is known to be wrong, the comparison checks what it got right:
/// it reads a pagemap entry's page count from the field CRIU 4.2 no longer fills, so the
/// command lines it shows are spaces (as many as the arguments' bytes) and it shows no
/// environment; for a socket it names the file `INETSK.<file id>`, an id internal to the
/// images; its times have no fraction of a second; its buffer sizes are in units of 1024
/// written `KB`.
pub fn parity(checkpointctl: &Value, revive: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    let mut expect = |what: String, ok: bool| {
        if !ok {
            missing.push(what);
        }
    };
    let c = &revive["container"];
    for (theirs, ours) in [
        ("container_name", "name"),
        ("image", "image"),
        ("id", "id"),
        ("runtime", "runtime"),
        ("engine", "engine"),
    ] {
        expect(
            format!(
                "{theirs} {}: revive says {}",
                checkpointctl[theirs], c[ours]
            ),
            checkpointctl[theirs] == c[ours],
        );
    }
    for (theirs, ours) in [("created", "created"), ("checkpointed", "checkpointed")] {
        let (t, o) = (
            seconds(checkpointctl[theirs].as_str()),
            seconds(c[ours].as_str()),
        );
        expect(
            format!(
                "{theirs} {}: revive says {}",
                checkpointctl[theirs], c[ours]
            ),
            checkpointctl[theirs].is_null() || (t.is_some() && t == o),
        );
    }
    let sizes = &checkpointctl["checkpoint_size"];
    for (theirs, ours) in [
        ("total_size", "checkpoint"),
        ("memory_pages_size", "memory_pages"),
        ("root_fs_diff_size", "root_fs_diff"),
    ] {
        expect(
            format!(
                "{theirs} {}: revive says {}",
                sizes[theirs], revive["sizes"][ours]
            ),
            sizes[theirs].is_null() || sizes[theirs] == revive["sizes"][ours],
        );
    }
    if let Some(stats) = checkpointctl["statistics"].as_object() {
        for (key, value) in stats {
            expect(
                format!(
                    "statistics {key} {value}: revive says {}",
                    revive["statistics"][key]
                ),
                *value == revive["statistics"][key],
            );
        }
    }
    let processes: Vec<&Value> = revive["processes"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let process = |pid: &Value| processes.iter().find(|p| p["pid"] == *pid).copied();
    let mut tree = vec![(&checkpointctl["process_tree"], Value::from(0))];
    while let Some((node, parent)) = tree.pop() {
        let pid = &node["pid"];
        let Some(p) = process(pid) else {
            expect(format!("process {pid} ({})", node["command"]), false);
            continue;
        };
        expect(
            format!(
                "process {pid}: command {} (revive: {})",
                node["command"], p["comm"]
            ),
            node["command"] == p["comm"],
        );
        expect(
            format!("process {pid}: parent {parent} (revive: {})", p["ppid"]),
            p["ppid"] == parent,
        );
        if let Some(cmdline) = node["cmdline"].as_str() {
            let args: Vec<&str> = p["cmdline"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let joined = format!("{} ", args.join(" "));
            let blank = cmdline.trim().is_empty() && cmdline.len() == joined.len();
            expect(
                format!("process {pid}: command line {cmdline:?} (revive: {joined:?})"),
                cmdline == joined || blank,
            );
        }
        if let Some(env) = node["environment_variables"].as_object() {
            for (key, value) in env {
                let var = format!("{key}={}", value.as_str().unwrap_or(""));
                let has = p["environment"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|v| v.as_str() == Some(var.as_str())));
                expect(format!("process {pid}: environment {var}"), has);
            }
        }
        for child in node["children"].as_array().into_iter().flatten() {
            tree.push((child, pid.clone()));
        }
    }
    for entry in checkpointctl["file_descriptors"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let pid = &entry["pid"];
        let p = process(pid);
        for f in entry["open_files"].as_array().into_iter().flatten() {
            let kind = f["type"].as_str().unwrap_or("");
            let fd = f["fd"].as_str().unwrap_or("");
            let fd = fd.strip_prefix(kind).unwrap_or(fd).trim();
            let path = f["path"].as_str().unwrap_or("");
            let ours = p.and_then(|p| {
                p["files"]
                    .as_array()?
                    .iter()
                    .find(|o| o["fd"].as_str() == Some(fd))
            });
            let socket = p.and_then(|p| {
                p["sockets"]
                    .as_array()?
                    .iter()
                    .find(|s| s["fd"].as_u64().is_some_and(|n| fd.parse() == Ok(n)))
            });
            let same = match (kind, ours) {
                (_, None) => false,
                ("UNIXSK", Some(_)) => socket.is_some_and(|s| {
                    path.starts_with(&format!(
                        "unix[{} ({}) ",
                        s["inode"],
                        s["peer"].as_u64().unwrap_or(0)
                    )) && path
                        .trim_end_matches(']')
                        .trim_end_matches('\0')
                        .ends_with(s["source"].as_str().unwrap_or(""))
                }),
                ("REG" | "PIPE" | "", Some(o)) => o["path"].as_str() == Some(path),
                (_, Some(o)) => o["kind"].as_str() == Some(kind),
            };
            expect(
                format!("process {pid}: open file [{kind} {fd}] {path}"),
                same,
            );
        }
    }
    for entry in checkpointctl["sockets"].as_array().into_iter().flatten() {
        let pid = &entry["pid"];
        let ours: Vec<&Value> = process(pid)
            .and_then(|p| p["sockets"].as_array())
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        for s in entry["open_sockets"].as_array().into_iter().flatten() {
            let d = &s["data"];
            let found = ours.iter().any(|o| {
                if d["type"] == "UNIX" {
                    return o["family"] == "UNIX"
                        && d["address"].as_str().map(|a| a.trim_end_matches('\0'))
                            == o["source"].as_str();
                }
                let field = |k: &str, v: &Value| d[k].is_null() || d[k] == *v;
                o["protocol"] == d["type"]
                    && field("state", &o["state"])
                    && field("src", &o["source"])
                    && field("src_port", &o["source_port"])
                    && field("dst", &o["destination"])
                    && field("dst_port", &o["destination_port"])
                    && field("send_buf", &Value::from(kb(&o["send_buffer"])))
                    && field("recv_buf", &Value::from(kb(&o["receive_buffer"])))
            });
            expect(format!("process {pid}: socket {s}"), found);
        }
    }
    let mounts: Vec<&Value> = revive["mounts"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for m in checkpointctl["mounts"].as_array().into_iter().flatten() {
        let found = mounts.iter().any(|o| {
            o["destination"] == m["destination"]
                && o["type"] == m["type"]
                && o["source"] == m["source"]
        });
        expect(format!("mount {m}"), found);
    }
    missing
}

/// An RFC 3339 time to the second (checkpointctl drops the fraction).
fn seconds(time: Option<&str>) -> Option<String> {
    let time = time?;
    let cut = time.find('.').unwrap_or(time.len().min(19));
    Some(time.get(..cut)?.to_string())
}

/// checkpointctl's buffer sizes: under 1024 as `N B`, else in units of 1024 as `%.1f KB`.
fn kb(bytes: &Value) -> String {
    let n = bytes.as_f64().unwrap_or(0.0);
    const UNITS: [&str; 6] = ["KB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1024.0 {
        return format!("{n} B");
    }
    let mut value = n / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/forensics/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn revive_shows_what_checkpointctl_shows() {
        let theirs = fixture("checkpointctl.json");
        let ours = fixture("revive.json");
        assert_eq!(parity(&theirs[0], &ours), Vec::<String>::new());
    }

    #[test]
    fn what_revive_leaves_out_is_listed() {
        let theirs = fixture("checkpointctl.json");
        let mut ours = fixture("revive.json");
        ours["processes"][0]["files"]
            .as_array_mut()
            .unwrap()
            .remove(3);
        ours["processes"][0]["sockets"]
            .as_array_mut()
            .unwrap()
            .remove(0);
        ours["processes"][1]["comm"] = "other".into();
        ours["mounts"].as_array_mut().unwrap().pop();
        ours["sizes"]["memory_pages"] = 1.into();
        ours["statistics"]["frozen_time"] = 1.into();
        let missing = parity(&theirs[0], &ours);
        let has = |s: &str| missing.iter().any(|m| m.contains(s));
        assert!(has("open file [REG 3] /tmp/holder.log"), "{missing:#?}");
        assert!(has("socket {\"data\":{\"dst\":\"0.0.0.0\""), "{missing:#?}");
        assert!(has("command \"busybox\""), "{missing:#?}");
        assert!(has("mount {"), "{missing:#?}");
        assert!(has("memory_pages_size"), "{missing:#?}");
        assert!(has("statistics frozen_time"), "{missing:#?}");
        assert_eq!(missing.len(), 6, "{missing:#?}");
    }

    #[test]
    fn legacy_pagemaps_hold_the_same_runs_in_the_old_field() {
        use revive_checkpoint::criu::memory::Memory;
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../checkpoint/tests/fixtures/criu/holder");
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.tar");
        let mut tar = tar::Builder::new(std::fs::File::create(&input).unwrap());
        tar.append_dir_all("checkpoint", &fixture).unwrap();
        tar.into_inner().unwrap();
        let output = dir.path().join("out.tar");
        legacy_pagemaps(&input, &output).unwrap();
        let unpacked = dir.path().join("unpacked");
        tar::Archive::new(std::fs::File::open(&output).unwrap())
            .unpack(&unpacked)
            .unwrap();
        let images = revive_checkpoint::criu::images::Dir(&fixture);
        let legacy_dir = unpacked.join("checkpoint");
        let legacy = revive_checkpoint::criu::images::Dir(&legacy_dir);
        let (old, new) = (
            Memory::read(&images, 1).unwrap().unwrap(),
            Memory::read(&legacy, 1).unwrap().unwrap(),
        );
        assert_eq!(old.runs, new.runs);
        let raw = std::fs::read(legacy_dir.join("pagemap-1.img")).unwrap();
        let original = std::fs::read(fixture.join("pagemap-1.img")).unwrap();
        assert_ne!(raw, original, "the 64-bit counts were moved");
        assert_eq!(
            std::fs::read(legacy_dir.join("pages-1.img")).unwrap(),
            std::fs::read(fixture.join("pages-1.img")).unwrap()
        );
    }

    #[test]
    fn checkpointctl_units_and_times_are_read_as_it_writes_them() {
        assert_eq!(kb(&Value::from(16384)), "16.0 KB");
        assert_eq!(kb(&Value::from(212992)), "208.0 KB");
        assert_eq!(kb(&Value::from(512)), "512 B");
        assert_eq!(
            seconds(Some("2026-12-07T14:44:54.636067528Z")),
            seconds(Some("2026-12-07T14:44:54Z"))
        );
    }
}

/// Runs `revive args...` in the node: (exit code, stdout, stderr).
fn revive(node: &Node, args: &[&str]) -> Result<(i32, String, String)> {
    let mut full = vec!["revive"];
    full.extend_from_slice(args);
    let out = node.exec_timeout(&full, Duration::from_secs(120))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `revive inspect --json` of `archive` in the node.
pub fn revive_inspect(node: &Node, archive: &str) -> Result<Value> {
    let (code, out, err) = revive(node, &["inspect", "--json", archive])?;
    ensure!(
        code == 0,
        "revive inspect --json {archive} exited {code}: {err}"
    );
    serde_json::from_str(&out).with_context(|| format!("revive inspect --json printed {out:?}"))
}

/// checkpointctl's command that shows everything it can, as JSON.
pub const CHECKPOINTCTL_INSPECT: [&str; 5] =
    ["checkpointctl", "inspect", "--all", "--format", "json"];

/// [`CHECKPOINTCTL_INSPECT`] of `archive` in the node: its one element.
pub fn checkpointctl_inspect(node: &Node, archive: &str) -> Result<Value> {
    let out = node.run(&[&CHECKPOINTCTL_INSPECT[..], &[archive]].concat())?;
    let mut all: Value = serde_json::from_str(&out)
        .with_context(|| format!("checkpointctl inspect printed {out:?}"))?;
    Ok(all[0].take())
}

/// The matches `revive memgrep --json archive pattern` found (exit 1, none, is not an
/// error).
pub fn memgrep(node: &Node, archive: &str, pattern: &str) -> Result<Vec<Value>> {
    let (code, out, err) = revive(node, &["memgrep", "--json", "-C", "8", archive, pattern])?;
    ensure!(
        code == 0 || (code == 1 && out.is_empty()),
        "revive memgrep {archive} {pattern} exited {code}: {err}"
    );
    out.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("memgrep printed {l:?}")))
        .collect()
}

/// Where the matches of the secret lie: (pid, mapping label) of each.
pub fn places(hits: &[Value]) -> Vec<(u64, String)> {
    hits.iter()
        .map(|h| {
            (
                h["pid"].as_u64().unwrap_or(0),
                h["mapping_label"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// What [`forensics_scenario`] saw of one checkpoint.
#[derive(Debug)]
pub struct Seen {
    /// What checkpointctl shows that revive does not (see [`parity`]).
    pub missing: Vec<String>,
    /// Where `revive memgrep` found the secret.
    pub secret_at: Vec<(u64, String)>,
    /// The holder's command line and environment, as `revive inspect` read them.
    pub cmdline: Value,
    pub environment: Value,
}

/// `revive inspect` and `revive memgrep` of `archive`, against checkpointctl's view of
/// `reference` (the same file, or the archive an image was built from: checkpointctl reads
/// archives only).
fn examine(
    node: &Node,
    archive: &str,
    reference: &str,
    secret: &str,
    narrate: &mut dyn FnMut(&str),
) -> Result<Seen> {
    let ours = revive_inspect(node, archive)?;
    let theirs = checkpointctl_inspect(node, reference)?;
    let missing = parity(&theirs, &ours);
    let holder = ours["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["comm"] == "holder"))
        .cloned()
        .with_context(|| format!("revive inspect shows no holder process: {ours}"))?;
    let secret_at = places(&memgrep(node, archive, secret)?);
    narrate(&format!(
        "{archive}: checkpointctl's facts revive lacks: {missing:?}; the secret at {secret_at:?}"
    ));
    Ok(Seen {
        missing,
        secret_at,
        cmdline: holder["cmdline"].clone(),
        environment: holder["environment"].clone(),
    })
}

/// What [`forensics_scenario`] saw.
#[derive(Debug)]
pub struct Report {
    pub secret: String,
    /// The CRI archive, the checkpoint image built from it, and Podman's zstd archive.
    pub cri: Seen,
    pub image: Seen,
    pub podman: Seen,
    /// `revive memgrep` of a string the holder never held: its exit code.
    pub absent_exit: i32,
    /// The holder's stack mapping written by `memgrep --dump`: its mode, and whether it
    /// holds the secret.
    pub dump_mode: String,
    pub dump_has_secret: bool,
    /// The human `revive inspect`.
    pub human: String,
    /// `revive diff --json` of the first checkpoint and a later one, taken once the holder
    /// had opened /etc/hostname, and its exit code.
    pub diff: Value,
    pub diff_exit: i32,
    /// What gdb printed of `revive core`'s output: the backtrace, the global `banner` and
    /// the heap's copy of the secret.
    pub gdb: String,
}

/// gdb's backtrace, `banner` and `heap_secret` of a core of the holder, on this host.
pub fn gdb_on(core: &Path) -> Result<String> {
    let out = Command::new("gdb")
        .args([
            "-batch",
            "-nx",
            "-ex",
            "bt",
            "-ex",
            "print banner",
            "-ex",
            "print heap_secret",
        ])
        .arg(holder_binary()?)
        .arg(core)
        .output()
        .context("running gdb (install it: make host-deps)")?;
    ensure!(
        out.status.success(),
        "gdb failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The holder in a pod (CRI) and under Podman, each checkpointed with the secret in its
/// memory only, analysed by `revive inspect` and `revive memgrep` beside checkpointctl 1.3:
/// the CRI archive, a checkpoint image built from it, and Podman's zstd archive.
pub fn forensics_scenario(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Report> {
    let holder = start_holder(node)?;
    narrate(&format!("holder {} holds its secret", holder.id));
    let archive = checkpoint(node, &holder, "holder")?;
    let cri = examine(node, &archive, &archive, &holder.secret, narrate)?;
    let human = revive(node, &["inspect", &archive])?.1;
    let (absent_exit, _, _) = revive(node, &["memgrep", &archive, "never-held-by-the-holder"])?;

    // The stack mapping the secret is in, written out.
    let hits = memgrep(node, &archive, &holder.secret)?;
    let stack = hits
        .iter()
        .find(|h| h["mapping_label"] == "[stack]")
        .with_context(|| format!("no match of the secret on the stack: {hits:?}"))?;
    let dump = "/var/lib/checkpoints/holder-stack.bin";
    let (code, _, err) = revive(
        node,
        &[
            "memgrep",
            &archive,
            "--pid",
            &stack["pid"].to_string(),
            "--dump",
            &format!("{:x}", stack["address"].as_u64().unwrap_or(0)),
            "-o",
            dump,
        ],
    )?;
    ensure!(code == 0, "revive memgrep --dump exited {code}: {err}");
    let dump_mode = node.run(&["stat", "-c", "%a %U", dump])?.trim().to_string();
    let dump_has_secret = node
        .run(&["grep", "-c", "-a", &holder.secret, dump])
        .is_ok();

    // A core of the holder, read by gdb with the holder's binary.
    let (code, _, err) = revive(
        node,
        &["core", &archive, "--pid", "1", "-o", "/share/holder.core"],
    )?;
    ensure!(code == 0, "revive core exited {code}: {err}");
    let gdb = gdb_on(&node.share_dir().join("holder.core"))?;
    narrate(&format!("gdb on revive core's output:\n{gdb}"));

    // A second checkpoint once the holder has opened /etc/hostname.
    crictl(node, &["exec", "--sync", &holder.id, "touch", "/opened"])?;
    poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let fds = crictl(
            node,
            &["exec", "--sync", &holder.id, "ls", "-l", "/proc/1/fd"],
        )?;
        Ok(if fds.contains("/etc/hostname") {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(format!("the holder did not open /etc/hostname: {fds}"))
        })
    })?;
    let later = checkpoint(node, &holder, "holder-2")?;
    let (diff_exit, diff, err) = revive(node, &["diff", "--json", &archive, &later])?;
    ensure!(diff_exit <= 1, "revive diff exited {diff_exit}: {err}");
    let diff: Value =
        serde_json::from_str(&diff).with_context(|| format!("revive diff printed {diff:?}"))?;
    narrate(&format!("revive diff (exit {diff_exit}): {diff}"));

    let image_archive = "/var/lib/checkpoints/holder-image.tar";
    node.run(&[
        "revive",
        "image",
        "build",
        &archive,
        "revive.test/checkpoint/holder:1",
        "-o",
        image_archive,
    ])?;
    let image = examine(node, image_archive, &archive, &holder.secret, narrate)
        .context("the checkpoint image built from the archive")?;

    crictl(node, &["rmp", "--force", &holder.pod])?;
    let podman = podman_holder(node, narrate)?;
    Ok(Report {
        gdb,
        diff_exit,
        diff,
        secret: holder.secret,
        cri,
        image,
        podman,
        absent_exit,
        dump_mode,
        dump_has_secret,
        human,
    })
}

/// The holder under Podman (no network), checkpointed with `--export --compress zstd`.
fn podman_holder(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Seen> {
    use crate::podman::{export, podman, prepare};
    prepare(node)?;
    let image = holder_image(&node.rootfs().path)?;
    let file = format!("podman-{}.tar", image.file_stem());
    image.write_archive(&node.share_dir().join(&file))?;
    let loaded = podman(node, &["load", "-q", "-i", &format!("/share/{file}")])?;
    let name = loaded
        .lines()
        .find_map(|l| l.split_once(": ").map(|(_, n)| n.trim().to_string()))
        .with_context(|| format!("podman load said no image: {loaded}"))?;
    let env = format!("{}={}", HOLDER_ENV.0, HOLDER_ENV.1);
    podman(
        node,
        &[
            "run",
            "-d",
            "--name",
            "holder",
            "--network",
            "none",
            "-e",
            &env,
            &name,
        ],
    )?;
    let secret = hand_secret(&|script| podman(node, &["exec", "holder", "sh", "-c", script]))
        .context("the holder under Podman")?;
    node.run(&["mkdir", "-p", ARCHIVE_DIR])?;
    let archive = format!("{ARCHIVE_DIR}/podman-holder.tar.zst");
    export(node, "holder", &archive, "zstd")?;
    let seen = examine(node, &archive, &archive, &secret, narrate)?;
    podman(node, &["rm", "--force", "holder"])?;
    Ok(seen)
}

/// Copies the checkpoint archive `input` to `output` with every pagemap in the layout CRIU
/// wrote before 4.2: each run's page count in the 32-bit field and not in the 64-bit one.
/// Both layouts mean the same to CRIU and to revive; checkpointctl 1.3 reads only the old
/// one, so the benchmarks measure it on such a copy, where it reads every page.
pub fn legacy_pagemaps(input: &Path, output: &Path) -> Result<()> {
    use prost::Message;
    use revive_checkpoint::criu::images::records;
    use revive_checkpoint::criu::memory::PAGEMAP_MAGIC;
    use revive_checkpoint::criu::proto::{PagemapEntry, PagemapHead};
    use std::io::Read;
    let mut archive = tar::Archive::new(std::fs::File::open(input)?);
    let mut out = tar::Builder::new(std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(output)
            .with_context(|| format!("creating {}", output.display()))?,
    ));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let mut header = entry.header().clone();
        let name = entry.path()?.to_string_lossy().into_owned();
        let is_pagemap = name
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("pagemap-"));
        if !is_pagemap {
            out.append(&header, &mut entry)?;
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        let parts = records(&data, PAGEMAP_MAGIC, &name)?;
        let (head, entries) = parts.split_first().context("a pagemap without a head")?;
        let magics = if data.starts_with(&revive_checkpoint::criu::COMMON_MAGIC.to_le_bytes()) {
            8
        } else {
            4
        };
        let mut rewritten = data[..magics].to_vec();
        let mut push = |bytes: Vec<u8>| {
            rewritten.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            rewritten.extend_from_slice(&bytes);
        };
        push(PagemapHead::decode(*head)?.encode_to_vec());
        for record in entries {
            let mut e = PagemapEntry::decode(*record)?;
            if let Some(pages) = e.nr_pages.take() {
                e.compat_nr_pages = u32::try_from(pages).context("a run of 2^32 pages")?;
            }
            push(e.encode_to_vec());
        }
        header.set_size(rewritten.len() as u64);
        header.set_cksum();
        out.append(&header, rewritten.as_slice())?;
    }
    out.into_inner()?.flush()?;
    Ok(())
}
