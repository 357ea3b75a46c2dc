//! containerd's own `integration/client` tests, a representative subset: every
//! checkpoint test plus tests of each part of the task API, run in a node with the suite
//! built for the node's containerd: from containerd's Go module on lts, from Debian's sources
//! on stable (see `revive_integration::conformance`).
//!
//! `conformance_lts` and `conformance_stable` run the subset for the Go shim
//! (`io.containerd.runc.v2`) and revive side by side. They assert that the tests known to pass
//! with the Go shim here still do (which proves the machinery: suite build, registry, images,
//! runner, parser), and that every test that passes with the Go shim passes with revive.
//!
//! `output_under_load` repeats the tests whose short-lived process must hand all its output
//! to the client while every core is busy: that is where a shim that publishes an exit
//! before the output loses it (measured: 46 of 300 runs of TestTaskResize, before the fix).
//!
//! `make conformance` runs the whole suite; `CONFORMANCE_TESTS=TestCheckpoint*,TestContainerStart`
//! narrows these tests to some names (a trailing `*` matches a prefix).

use std::time::{Duration, Instant};

use revive_integration::Flavour;
use revive_integration::conformance::{self, FlavourRun, Outcome, REVIVE_V2, RUNC_V2, Settings};

/// containerd's checkpoint tests (both suites have these six).
const CHECKPOINT_TESTS: &[&str] = &[
    "TestCheckpointRestorePTY",
    "TestCheckpointRestore",
    "TestCheckpointRestoreNewContainer",
    "TestCheckpointLeaveRunning",
    "TestCheckpointRestoreWithImagePath",
    "TestCheckpointOnPauseStatus",
];

/// With the checkpoint tests, the subset: tests of create/start, output, exec, pids, stdin,
/// kill, wait, delete, attach, terminals, users, update, metrics, a containerd restart with
/// running shims, pulls of the served images, the shim's cgroup, and two failpoint tests
/// (runc killed behind the shim's back, an init killed before Create returns). Each passes
/// with the Go shim on every flavour here (measured); the test fails when one does not.
const OTHER_TESTS: &[&str] = &[
    "TestImagePull",
    "TestImagePullSomePlatforms",
    "TestContainerStart",
    "TestContainerOutput",
    "TestContainerExec",
    "TestContainerPids",
    "TestContainerCloseIO",
    "TestContainerKill",
    "TestContainerKillAll",
    "TestWaitStoppedTask",
    "TestDeleteRunningContainer",
    "TestTaskForceDelete",
    "TestContainerAttach",
    "TestContainerPTY",
    "TestTaskResize",
    "TestContainerUser",
    "TestContainerUserID",
    "TestTaskUpdate",
    "TestContainerMetrics",
    "TestContainerNoBinaryExists",
    "TestDaemonRestart",
    "TestDaemonReconnectsToShimIOPipesOnRestart",
    "TestShimSockLength",
    "TestShimInCgroup",
    "TestKillContainerDeletedByRunc",
    "TestIssue9103",
];

/// Every test of the subset, by name.
fn known_good() -> impl Iterator<Item = &'static str> {
    CHECKPOINT_TESTS.iter().chain(OTHER_TESTS).copied()
}

fn patterns() -> Vec<String> {
    match std::env::var("CONFORMANCE_TESTS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => known_good().map(str::to_string).collect(),
    }
}

fn run(flavour: Flavour, runtimes: &[&str], snapshotter: Option<&str>) -> FlavourRun {
    let runtimes: Vec<String> = runtimes.iter().map(|s| s.to_string()).collect();
    let logs = match snapshotter {
        Some(name) => format!("conformance-on-{name}"),
        None => "conformance".into(),
    };
    let settings = Settings {
        timeout: Duration::from_secs(120),
        log_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(logs)),
        count: 1,
        snapshotter: snapshotter.map(str::to_string),
        retry: Some(RUNC_V2.to_string()),
    };
    let started = Instant::now();
    let mut progress = |line: &str| eprintln!("==> {line}");
    let run = conformance::run_flavour(flavour, &runtimes, &patterns(), &settings, &mut progress);
    eprintln!(
        "\n{}\n{}\n({:.0} s; every test's output below {})",
        conformance::summary(&run),
        conformance::render_flavour(&run),
        started.elapsed().as_secs_f64(),
        settings.log_dir.as_ref().unwrap().display()
    );
    assert!(
        run.error.is_none(),
        "the {flavour} conformance run did not complete: {}",
        run.error.as_deref().unwrap_or_default()
    );
    assert!(!run.results.is_empty(), "no test ran");
    run
}

/// The subset on `flavour` for both shims: the tests known to pass with the Go shim still do
/// (the machinery works), and every test that passes with the Go shim passes with revive.
fn subset(flavour: Flavour) {
    let run = run(flavour, &[RUNC_V2, REVIVE_V2], None);
    if std::env::var_os("CONFORMANCE_TESTS").is_none() {
        let missing: Vec<&str> = known_good()
            .filter(|t| !run.results.contains_key(*t))
            .collect();
        assert!(
            missing.is_empty(),
            "the {flavour} suite has no {missing:?} (renamed upstream?)"
        );
    }
    let describe = |t: &str, i: usize| {
        let r = &run.results[t][i];
        format!("{t}: {} {}", r.outcome, r.reason)
    };
    let broken: Vec<String> = known_good()
        .filter(|t| run.results.contains_key(*t))
        .filter(|t| run.outcome(t, RUNC_V2) != Some(Outcome::Pass))
        .map(|t| describe(t, 0))
        .collect();
    assert!(
        broken.is_empty(),
        "tests known to pass with the Go shim on {flavour} did not:\n  {}",
        broken.join("\n  ")
    );
    let regressions: Vec<String> = run
        .regressions(RUNC_V2, REVIVE_V2)
        .iter()
        .map(|t| describe(t, 1))
        .collect();
    assert!(
        regressions.is_empty(),
        "on {flavour}, {} test(s) pass with the Go shim but not with revive:\n  {}",
        regressions.len(),
        regressions.join("\n  ")
    );
}

/// Short-lived processes whose output the test checks: through a terminal and through pipes.
const OUTPUT_TESTS: &[&str] = &["TestTaskResize", "TestContainerOutput"];

/// Runs of each output test under load.
const RUNS_UNDER_LOAD: u32 = 100;

/// Keeps every core busy until dropped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start() -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The output tests, each run RUNS_UNDER_LOAD times for revive with every core busy: every
/// run gets all of its process's output.
fn output_under_load() {
    let settings = Settings {
        timeout: Duration::from_secs(60),
        log_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("output-under-load")),
        count: RUNS_UNDER_LOAD,
        ..Default::default()
    };
    let tests: Vec<String> = OUTPUT_TESTS.iter().map(|t| t.to_string()).collect();
    let mut progress = |line: &str| eprintln!("==> {line}");
    let _load = Load::start();
    let run = conformance::run_flavour(
        Flavour::Lts,
        &[REVIVE_V2.to_string()],
        &tests,
        &settings,
        &mut progress,
    );
    assert!(
        run.error.is_none(),
        "the run did not complete: {}",
        run.error.as_deref().unwrap_or_default()
    );
    for test in OUTPUT_TESTS {
        let result = &run.results[*test][0];
        assert_eq!(
            result.outcome,
            Outcome::Pass,
            "{test}, {RUNS_UNDER_LOAD} runs under load: {} (log: {:?})",
            result.reason,
            result.log
        );
    }
}

/// The subset for revive with revive-snapshotter as the suite's snapshotter
/// (`TEST_SNAPSHOTTER=revive`, a fresh revive-snapshotter per test): each test passes, as it
/// does for the Go shim on containerd's overlayfs.
fn on_revive_snapshotter(flavour: Flavour) {
    let run = run(flavour, &[REVIVE_V2], Some(conformance::REVIVE_SNAPSHOTTER));
    let failed: Vec<String> = known_good()
        .filter(|t| run.results.contains_key(*t))
        .filter(|t| run.outcome(t, REVIVE_V2) != Some(Outcome::Pass))
        .map(|t| {
            let r = &run.results[t][0];
            format!("{t}: {} {}", r.outcome, r.reason)
        })
        .collect();
    assert!(
        failed.is_empty(),
        "on {flavour}, with revive-snapshotter, {} test(s) did not pass:\n  {}",
        failed.len(),
        failed.join("\n  ")
    );
}

revive_integration::e2e_main! {
    conformance_lts => subset(Flavour::Lts),
    conformance_on_revive_snapshotter_lts => on_revive_snapshotter(Flavour::Lts),
    conformance_on_revive_snapshotter_stable => on_revive_snapshotter(Flavour::Stable),
    conformance_stable => subset(Flavour::Stable),
    output_under_load,
}
