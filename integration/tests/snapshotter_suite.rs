//! containerd's own snapshotter test suite (`core/snapshots/testsuite` of the containerd
//! release lts nodes run) against revive-snapshotter, through containerd's snapshot proxy:
//! the Go driver `integration/go/snapshotter-suite`, built once per containerd version and
//! cached like the other Go peers, starts one revive-snapshotter process per case on the
//! case's fresh root and stops it afterwards. Runs on the host, as root (the suite mounts
//! overlays), in a mount namespace of its own so that no mount outlives it.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};

use revive_integration::harness::Suite;
use revive_integration::node::bin_dir;
use revive_integration::peers::{self, Peer};
use revive_integration::rootfs;

/// The cases of containerd v2.3's suite; fewer would mean some were silently not run.
const SUITE_CASES: usize = 21;

/// The suite's cases as `go test -v` reports them: (outcome, name).
fn outcomes(output: &str) -> Vec<(&str, &str)> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("--- ")?;
            let (outcome, rest) = rest.split_once(": ")?;
            let name = rest.split_whitespace().next()?;
            Some((outcome, name))
        })
        .collect()
}

fn containerd_snapshotter_suite_passes_on_revive_snapshotter() {
    let snapshotter = bin_dir()
        .expect("the project's binaries")
        .join("revive-snapshotter");
    assert!(
        snapshotter.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        snapshotter.display()
    );
    let driver = peers::ensure(&Peer::snapshotter_suite(rootfs::CONTAINERD_LTS))
        .expect("the snapshotter suite's driver builds");
    let driver = driver.binary(&driver.completion.peer.binaries()[0]);
    // Each case's root, socket and mount points live here; the socket path must stay
    // short (108 bytes).
    let tmp = tempfile::Builder::new()
        .prefix("revive-suite-")
        .tempdir_in("/tmp")
        .unwrap();
    let mut cmd = Command::new(&driver);
    cmd.args(["-test.v", "-test.count=1", "-test.timeout=20m"])
        .env("TMPDIR", tmp.path())
        .env("REVIVE_SNAPSHOTTER", &snapshotter)
        .current_dir(tmp.path())
        .stdin(Stdio::null());
    // SAFETY: runs between fork and exec; unshare and mount are async-signal-safe system
    // calls on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            revive_integration::init::make_mounts_private()?;
            Ok(())
        });
    }
    let out = cmd.output().expect("the suite's driver runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let outcomes = outcomes(&output);
    if !out.status.success() || outcomes.iter().any(|(outcome, _)| *outcome != "PASS") {
        eprintln!("{output}");
    }
    for (outcome, name) in &outcomes {
        eprintln!("  {outcome} {name}");
    }
    let cases: Vec<&str> = outcomes
        .iter()
        .filter(|(_, name)| name.contains('/'))
        .map(|(_, name)| *name)
        .collect();
    let not_passed: Vec<String> = outcomes
        .iter()
        .filter(|(outcome, _)| *outcome != "PASS")
        .map(|(outcome, name)| format!("{name} ({outcome})"))
        .collect();
    assert!(
        out.status.success() && not_passed.is_empty(),
        "containerd {}'s snapshotter suite on revive-snapshotter: {} ({}); not passed: {}",
        rootfs::CONTAINERD_LTS,
        out.status,
        driver.display(),
        not_passed.join(", ")
    );
    assert!(
        outcomes.contains(&("PASS", "TestReviveSnapshotter")) && cases.len() >= SUITE_CASES,
        "the suite ran {} cases, not all of them: {cases:?}",
        cases.len()
    );
    eprintln!(
        "containerd {}'s snapshotter suite: all {} cases passed on revive-snapshotter",
        rootfs::CONTAINERD_LTS,
        cases.len()
    );
}

fn go_test_outcomes_are_read_from_verbose_output() {
    let output = "=== RUN   T\n--- PASS: T (0.00s)\n    --- FAIL: T/Rename (0.17s)\n    \
                  --- SKIP: T/Chown (0.00s)\nPASS\n";
    assert_eq!(
        outcomes(output),
        [("PASS", "T"), ("FAIL", "T/Rename"), ("SKIP", "T/Chown")]
    );
}

fn main() -> ExitCode {
    let mut suite = Suite::new();
    suite
        .e2e(
            "containerd_snapshotter_suite_passes_on_revive_snapshotter",
            containerd_snapshotter_suite_passes_on_revive_snapshotter,
        )
        .test(
            "go_test_outcomes_are_read_from_verbose_output",
            go_test_outcomes_are_read_from_verbose_output,
        );
    suite.run()
}
