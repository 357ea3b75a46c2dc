//! Forensic analysis of checkpoints without restoring them: `revive inspect`,
//! `revive memgrep`, `revive diff` and `revive core` (read by gdb) on CRI checkpoint
//! archives, a checkpoint image built from it, and a
//! Podman archive of a program that holds a secret in memory only, beside checkpointctl 1.3
//! (Debian sid's) on the same files.

use revive_integration::forensics::{self, Seen};
use revive_integration::scenario::Counter;
use revive_integration::{Flavour, on_node};

fn check(what: &str, seen: &Seen) {
    assert_eq!(
        seen.missing,
        Vec::<String>::new(),
        "{what}: what checkpointctl shows that revive inspect does not"
    );
    let pids: Vec<u64> = seen.secret_at.iter().map(|(pid, _)| *pid).collect();
    let labels: Vec<&str> = seen.secret_at.iter().map(|(_, l)| l.as_str()).collect();
    assert!(
        labels.contains(&"[heap]") && labels.contains(&"[stack]"),
        "{what}: the secret was not found on both the heap and the stack: {:?}",
        seen.secret_at
    );
    assert!(
        pids.windows(2).all(|w| w[0] == w[1]),
        "{what}: the secret was found in more than the holder: {:?}",
        seen.secret_at
    );
    assert_eq!(seen.cmdline, serde_json::json!(["/holder"]), "{what}");
    let env = format!("{}={}", forensics::HOLDER_ENV.0, forensics::HOLDER_ENV.1);
    assert!(
        seen.environment
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v.as_str() == Some(env.as_str()))),
        "{what}: {env} is not in {}",
        seen.environment
    );
}

fn inspect_and_memgrep(flavour: Flavour) {
    let report = on_node(flavour, "forensics", "forensic analysis", |node, say| {
        forensics::forensics_scenario(node, say)
    });
    eprintln!("{}", report.human);
    check("the CRI archive", &report.cri);
    check("the checkpoint image", &report.image);
    check("Podman's archive", &report.podman);
    assert_eq!(
        report.absent_exit, 1,
        "memgrep of a string not held exits 1"
    );
    assert_eq!(report.dump_mode, "600 root");
    assert!(
        report.dump_has_secret,
        "the stack written by --dump lacks the secret"
    );
    for frame in ["in nap (", "in tick ()", "in hold (", "in main ()"] {
        assert!(
            report.gdb.contains(frame),
            "gdb's backtrace of revive core's output lacks {frame}:\n{}",
            report.gdb
        );
    }
    assert!(
        report
            .gdb
            .contains("\"revive holder: a secret held in memory only\""),
        "gdb did not read the global banner:\n{}",
        report.gdb
    );
    assert!(
        report.gdb.contains(&format!("\"{}\"", report.secret)),
        "gdb did not read the heap's secret:\n{}",
        report.gdb
    );
    let diff = &report.diff;
    assert_eq!(
        report.diff_exit, 1,
        "revive diff of two different checkpoints exits 1"
    );
    assert_eq!(
        diff["opened"],
        serde_json::json!(["1: 7 REG /etc/hostname"]),
        "{diff}"
    );
    assert_eq!(diff["closed"], serde_json::json!([]), "{diff}");
    assert_eq!(diff["started"], serde_json::json!([]), "{diff}");
    assert_eq!(diff["gone"], serde_json::json!([]), "{diff}");
    let memory = diff["memory"].as_array().cloned().unwrap_or_default();
    assert_eq!(memory.len(), 2, "the holder and its child compared: {diff}");
    for m in &memory {
        assert!(m["compared"].as_u64().is_some_and(|n| n > 0), "{m}");
    }
    assert!(
        memory
            .iter()
            .any(|m| m["pid"] == 1 && m["changed"].as_u64().is_some_and(|n| n > 0)),
        "the holder's ticking counter changed no page: {diff}"
    );
    for shown in [
        "REVIVE_ROLE=holder",
        "/tmp/holder.log (at 24)",
        "127.0.0.1:7070",
    ] {
        assert!(
            report.human.contains(shown),
            "revive inspect does not show {shown}"
        );
    }
}

/// What a sandboxed restore must be: PAUSED, its counter where the checkpoint left it,
/// no interface but a loopback that is down, its root read-only.
fn check_sandbox(
    status: &str,
    checkpointed: &Counter,
    paused: &(Counter, Counter),
    links: &str,
    root: &str,
) {
    assert_eq!(status, "PAUSED");
    assert_eq!(
        &paused.0, checkpointed,
        "the sandbox ran before it was paused"
    );
    assert_eq!(&paused.1, checkpointed, "the paused sandbox counted on");
    let lines: Vec<&str> = links.lines().collect();
    assert_eq!(lines.len(), 1, "more than a loopback: {links}");
    assert!(
        lines[0].contains(": lo:") && lines[0].contains("state DOWN"),
        "the loopback is not down: {links}"
    );
    assert!(
        root.split(',').any(|o| o == "ro"),
        "the root is not read-only: {root}"
    );
}

/// A checkpoint image `ctr run` with `--annotation revive.io/sandbox=true` comes up paused
/// before its code runs, with no interface but a loopback that is down and a read-only
/// root; resumed, its processes run.
fn sandboxed_restore(flavour: Flavour) {
    let s = on_node(flavour, "sandbox", "sandboxed restore", |node, say| {
        revive_integration::checkpoint_image::sandbox_restores(node, say)
    });
    check_sandbox(
        &s.status,
        &s.checkpointed,
        &s.paused,
        &s.links,
        &s.root_options,
    );
    assert_eq!(s.resumed.0, "RUNNING", "not running once resumed");
}

/// The same through CRI: a pod's container, checkpointed by crictl, restored with
/// `revive.io/sandbox: "true"` into a pod with a CNI network: paused, in a network
/// namespace of its own (the pod's has eth0), its root read-only.
fn sandboxed_restore_in_a_pod(flavour: Flavour) {
    let s = on_node(
        flavour,
        "sandboxpod",
        "sandboxed restore in a pod",
        |node, say| revive_integration::crictl::sandbox_in_a_pod(node, say),
    );
    check_sandbox(
        &s.status,
        &s.checkpointed,
        &s.paused,
        &s.links,
        &s.root_options,
    );
    assert!(
        s.pod_links.contains("eth0"),
        "the pod's own network has no eth0, so the test proves nothing: {}",
        s.pod_links
    );
}

revive_integration::e2e_main! {
    sandboxed_restore_in_a_pod_lts => sandboxed_restore_in_a_pod(Flavour::Lts),
    sandboxed_restore_with_ctr_lts => sandboxed_restore(Flavour::Lts),
    revive_inspect_and_memgrep_match_checkpointctl_lts => inspect_and_memgrep(Flavour::Lts),
}
