//! The runner: one test of containerd's suite per invocation of its binary, in a pid and
//! mount namespace of its own with a timeout, and its `go test -v` output read into an
//! [`Outcome`] with a reason.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::rootfs::{self, Flavour};

use super::*;

// ---------------------------------------------------------------------------------------
// Outcomes and parsing `go test -v` output
// ---------------------------------------------------------------------------------------

/// What one test did for one runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
    /// The per-test timeout expired (the test hung).
    Timeout,
    /// The test binary ended without a result for the test (a panic, or TestMain failed).
    Error,
    /// Not run here (filtered out, or the runtime could not run at all).
    NotRun,
}

impl Outcome {
    /// The test ran and did not pass or skip.
    pub fn failed(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Timeout | Outcome::Error)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
            Outcome::Timeout => "TIMEOUT",
            Outcome::Error => "ERROR",
            Outcome::NotRun => "-",
        })
    }
}

/// One test's result for one runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestResult {
    pub test: String,
    pub runtime: String,
    pub outcome: Outcome,
    /// Why it failed or was skipped: the test's own messages, shortened.
    pub reason: String,
    pub seconds: f64,
    /// The full output (test output, then the test daemon's log), on the host.
    pub log: Option<PathBuf>,
}

/// The first `max` characters of `text` on one line.
pub(super) fn shorten(text: &str, max: usize) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        one
    } else {
        let cut: String = one.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// A message line a test printed (`t.Log`, `t.Error`, `t.Skip`, ...): go test -v indents
/// them below the test and starts them with `file.go:line:`.
fn message_line(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if trimmed.len() == line.len() {
        return None;
    }
    let (file, rest) = trimmed.split_once(".go:")?;
    // log_hook.go: the client library's own log lines, routed to the test's log.
    if file.contains(' ') || file.is_empty() || file == "log_hook" {
        return None;
    }
    let (num, msg) = rest.split_once(':')?;
    num.chars().all(|c| c.is_ascii_digit()).then(|| msg.trim())
}

/// The outcome of `test` from the `go test -v` output of a run of that test alone, and the
/// reason for anything but a pass.
pub fn parse_go_test(test: &str, stdout: &str, stderr: &str) -> (Outcome, String) {
    let result_line = |kind: &str| {
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("--- {kind}: {test} (")))
    };
    let messages = || -> Vec<String> {
        let lines = stdout
            .lines()
            .skip_while(|l| !l.starts_with(&format!("=== RUN   {test}")));
        messages_of(lines)
    };
    let failed_subtests = || -> Vec<String> {
        stdout
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("--- FAIL: "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| name.starts_with(&format!("{test}/")))
            .map(|name| name.trim_start_matches(&format!("{test}/")).to_string())
            .collect()
    };
    // With -test.count above 1, one failed run fails the test.
    if result_line("PASS") && !result_line("FAIL") {
        return (Outcome::Pass, String::new());
    }
    if result_line("SKIP") {
        let msgs = messages();
        return (Outcome::Skip, shorten(&msgs.join("; "), 200));
    }
    // Panics (a test's timeout among them) go to stderr, after the test's own output.
    let both = format!("{stdout}\n{stderr}");
    if both.contains("panic: test timed out after") {
        let running: Vec<&str> = both
            .lines()
            .skip_while(|l| !l.starts_with("panic: test timed out after"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(str::trim)
            .collect();
        let what = first_line_of(&both, "panic: test timed out after");
        return (
            Outcome::Timeout,
            shorten(&format!("{what} {}", running.join(" ")), 200),
        );
    }
    if result_line("FAIL") {
        let mut reason = String::new();
        let subs = failed_subtests();
        if !subs.is_empty() {
            reason.push_str(&format!("subtests {}: ", subs.join(", ")));
        }
        let msgs = messages();
        // Log lines (t.Log) come first; the failure is usually the last message.
        let shown: Vec<&String> = msgs.iter().rev().take(2).collect::<Vec<_>>();
        let shown: Vec<&str> = shown.into_iter().rev().map(String::as_str).collect();
        reason.push_str(&shown.join("; "));
        if let Some(panic) = both.lines().find(|l| l.starts_with("panic: ")) {
            reason.push_str(&format!(" [{}]", panic.trim()));
        }
        return (Outcome::Fail, shorten(&reason, 240));
    }
    // No result line: the binary died (a panic outside the test's goroutine ends the whole
    // binary), never ran the test, or failed in TestMain (which prints to stderr).
    let why = both
        .lines()
        .find(|l| l.starts_with("panic: ") || l.starts_with("fatal error: "))
        .map(str::to_string)
        .or_else(|| {
            if stdout.contains(&format!("=== RUN   {test}")) {
                None
            } else {
                Some("the test never started".to_string())
            }
        })
        .unwrap_or_else(|| "no result line".to_string());
    let last = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("revive-conformance:"))
        .unwrap_or("");
    (Outcome::Error, shorten(&format!("{why}: {last}"), 240))
}

/// The messages in `go test -v` lines: a message starts with `file.go:N:` and goes on over
/// the more deeply indented lines below it (testify's `require` prints its error there,
/// after an `Error:` label).
fn messages_of<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut blocks: Vec<(usize, Vec<String>)> = Vec::new();
    for line in lines {
        if let Some(msg) = message_line(line) {
            blocks.push((indent(line), vec![msg.to_string()]));
        } else if let Some((depth, block)) = blocks.last_mut() {
            let t = line.trim();
            if indent(line) > *depth && !t.starts_with("=== ") && !t.starts_with("--- ") {
                block.push(t.to_string());
            } else {
                *depth = usize::MAX;
            }
        }
    }
    blocks
        .into_iter()
        .map(|(_, block)| {
            let text = block.join(" ");
            // testify: "Error Trace: ... Error: <what> Test: <name> Messages: <msg>"
            match text.split_once("Error: ") {
                Some((_, rest)) if text.contains("Error Trace:") => {
                    let (err, tail) = rest.split_once(" Test: ").unwrap_or((rest, ""));
                    let msg = tail.split_once("Messages: ").map(|(_, m)| m.trim());
                    let err = err
                        .trim()
                        .trim_start_matches("Received unexpected error:")
                        .trim();
                    match msg {
                        Some(m) if !m.is_empty() => format!("{m}: {err}"),
                        _ => err.to_string(),
                    }
                }
                _ => text.trim().to_string(),
            }
        })
        .filter(|m| !m.is_empty())
        .collect()
}

fn first_line_of<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(prefix)).unwrap_or("")
}

// ---------------------------------------------------------------------------------------
// Running tests
// ---------------------------------------------------------------------------------------

/// How tests are run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Per-test timeout (the test binary's own `-test.timeout`; a harder limit follows).
    pub timeout: Duration,
    /// Where each test's full output is kept (`<dir>/<flavour>/<runtime>/<test>.log`).
    pub log_dir: Option<PathBuf>,
    /// Runs of each test (`-test.count`); a test fails if any run fails. More than one
    /// hunts flakes.
    pub count: u32,
    /// The suite's `TEST_SNAPSHOTTER`; containerd's default (overlayfs) when None. For
    /// [`REVIVE_SNAPSHOTTER`] each test gets a revive-snapshotter of its own.
    pub snapshotter: Option<String>,
    /// A runtime whose failed tests run once more, loudly: the reference the run compares
    /// against (the Go shim), whose own flakes under load (runc's `read init-p: connection
    /// reset by peer`) are not what the run measures. The first run's log is kept beside the
    /// second's as `<test>.first.log`, and its outcome named in the reason.
    pub retry: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: DEFAULT_TIMEOUT,
            log_dir: None,
            count: 1,
            snapshotter: None,
            retry: None,
        }
    }
}

/// revive-snapshotter's name in the node's containerd config.
pub const REVIVE_SNAPSHOTTER: &str = "revive";

/// Where (below the suite's directory in the node) the `containerd` of
/// [`CONTAINERD_WITH_REVIVE`] is installed.
const WRAPPER_DIR: &str = "revive-bin";

/// The suite starts containerd with a config file it writes itself, which knows nothing of
/// revive's proxy plugin: this `containerd`, first on the PATH of a test on revive, adds the
/// plugin to that file and runs the real one.
const CONTAINERD_WITH_REVIVE: &str = r#"#!/bin/sh
# Added by revive-conformance: registers revive-snapshotter in the suite's containerd config.
next=
for a in "$@"; do
  f=
  case "$a" in --config=*) f="${a#--config=}" ;; esac
  [ -n "$next" ] && f="$a"
  # Once: the suite restarts containerd on the same file.
  [ -n "$f" ] && ! grep -qs '^\[proxy_plugins.revive\]' "$f" &&
    printf '\n[proxy_plugins.revive]\n  type = "snapshot"\n  address = "/run/revive/snapshotter.sock"\n' >> "$f"
  next=
  [ "$a" = --config ] && next=1
done
exec /usr/bin/containerd "$@"
"#;

/// Installs [`CONTAINERD_WITH_REVIVE`] beside the suite in `node`.
pub fn install_snapshotter_wrapper(node: &Node) -> Result<()> {
    let dir = node.share_dir().join("conformance").join(WRAPPER_DIR);
    fs::create_dir_all(&dir)?;
    let path = dir.join("containerd");
    fs::write(&path, CONTAINERD_WITH_REVIVE)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The lines of a test's script that choose its snapshotter. Every test starts its own
/// containerd with a fresh root, so revive-snapshotter must start afresh too (its keys come
/// from that containerd's database): one of its own, on a tmpfs over /run/revive (hiding the
/// node's socket in the test's mount namespace) with its root on the test's /var/lib tmpfs,
/// killed with the test's pid namespace.
fn snapshotter_lines(snapshotter: Option<&str>) -> String {
    match snapshotter {
        None => String::new(),
        Some(REVIVE_SNAPSHOTTER) => format!(
            "mount -t tmpfs -o mode=0700 tmpfs /run/revive
mkdir -m 0700 /var/lib/revive-test-snapshotter
revive-snapshotter --root /var/lib/revive-test-snapshotter \\
  >>/var/log/revive/conformance-snapshotter.log 2>&1 &
for i in $(seq 100); do [ -S /run/revive/snapshotter.sock ] && break; sleep 0.1; done
export PATH={NODE_DIR}/{WRAPPER_DIR}:$PATH TEST_SNAPSHOTTER={REVIVE_SNAPSHOTTER}
"
        ),
        Some(other) => format!("export TEST_SNAPSHOTTER={other}\n"),
    }
}

/// The shell that runs one test in the node: a pid and mount namespace of its own (whatever
/// the test leaves running dies with it; `sh` as its pid 1 reaps orphaned shims while it
/// waits), `/var/lib` a tmpfs there with the node's entries bound back in (the test daemon's
/// overlay snapshots cannot live on the node's overlay root), then the test binary with
/// `TEST_RUNTIME` and a timeout.
pub fn test_script(
    test: &str,
    runtime: &str,
    timeout: Duration,
    count: u32,
    snapshotter: Option<&str>,
) -> String {
    let count = count.max(1);
    let secs = timeout.as_secs().max(1) * u64::from(count);
    let inner = format!(
        "set -e
mount --rbind /var/lib /mnt
mount -t tmpfs -o mode=0755 tmpfs /var/lib
for e in /mnt/* /mnt/.[!.]*; do
  [ -e \"$e\" ] || [ -L \"$e\" ] || continue
  n=${{e#/mnt/}}
  if [ -L \"$e\" ]; then cp -a \"$e\" \"/var/lib/$n\"
  elif [ -d \"$e\" ]; then mkdir \"/var/lib/$n\"; mount --rbind \"$e\" \"/var/lib/$n\"
  else touch \"/var/lib/$n\"; mount --bind \"$e\" \"/var/lib/$n\"; fi
done
{snapshotter}set +e
cd /tmp
TEST_RUNTIME={runtime} timeout -k 5 {hard} {NODE_DIR}/client.test -test.root -test.v \
  -test.count {count} -test.run '^{test}$' -test.timeout {secs}s
echo \"revive-conformance: test binary exit status $?\" >&2",
        hard = secs + 30,
        snapshotter = snapshotter_lines(snapshotter),
    );
    format!(
        "{CLEAN}
unshare --pid --fork --kill-child --mount --propagation private --mount-proc sh -c '{}'
rc=$?
{CLEAN}
exit $rc",
        inner.replace('\'', "'\\''")
    )
}

/// What a test run leaves in the node's shared directories (its own were in namespaces that
/// died with it): the test daemon's state, runc's state of the tests' namespace, and shim
/// sockets (the node's own containerd runs no containers meanwhile). A stale socket would
/// meet the same test for the next runtime: shim socket paths hash the container id.
const CLEAN: &str =
    "rm -rf /run/containerd-test /run/containerd/runc/testing; rm -f /run/containerd/s/*";

/// Runs one test for one runtime in `node` (the suite installed) and reads its outcome.
pub fn run_test(node: &Node, test: &str, runtime: &str, settings: &Settings) -> TestResult {
    let started = Instant::now();
    let script = test_script(
        test,
        runtime,
        settings.timeout,
        settings.count,
        settings.snapshotter.as_deref(),
    );
    let out = node.exec_timeout(
        &["sh", "-c", &script],
        settings.timeout * settings.count.max(1) + Duration::from_secs(90),
    );
    let seconds = started.elapsed().as_secs_f64();
    let (outcome, reason, stdout, stderr) = match out {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let (outcome, reason) = parse_go_test(test, &stdout, &stderr);
            (outcome, reason, stdout, stderr)
        }
        Err(err) => (
            Outcome::Timeout,
            format!("the harness gave up: {err:#}"),
            String::new(),
            String::new(),
        ),
    };
    let log = settings.log_dir.as_ref().and_then(|dir| {
        let dir = dir
            .join(node.flavour().name())
            .join(crate::bench::short_runtime(runtime));
        fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{test}.log"));
        let text = format!(
            "# {test} on {runtime} ({} node {}): {outcome} in {seconds:.1} s\n\
             # stdout (go test -v)\n{stdout}\n# stderr (the test daemon's log)\n{stderr}",
            node.flavour(),
            node.name()
        );
        fs::write(&path, text).ok()?;
        Some(path)
    });
    TestResult {
        test: test.to_string(),
        runtime: runtime.to_string(),
        outcome,
        reason,
        seconds,
        log,
    }
}

/// Which tests to run: every test, or the names listed (a trailing `*` matches a prefix).
pub fn select<'a>(tests: &'a [String], patterns: &[String]) -> Vec<&'a str> {
    tests
        .iter()
        .filter(|t| {
            patterns.is_empty()
                || patterns.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => t.starts_with(prefix),
                    None => *t == p,
                })
        })
        .map(String::as_str)
        .collect()
}

/// One flavour's run: every selected test for every runtime.
#[derive(Debug, Clone, Default)]
pub struct FlavourRun {
    pub flavour: String,
    pub versions: String,
    pub suite: Option<SuiteRecord>,
    pub runtimes: Vec<String>,
    /// Test -> one result per runtime, in `runtimes` order.
    pub results: BTreeMap<String, Vec<TestResult>>,
    /// Tests of the suite not selected for this run.
    pub not_selected: usize,
    pub registry_seconds: f64,
    /// Served images: (names, what they hold).
    pub images: Vec<(String, String)>,
    /// Wall time per runtime for all its tests.
    pub runtime_seconds: Vec<f64>,
    pub error: Option<String>,
    pub seconds: f64,
}

impl FlavourRun {
    /// The outcome of `test` for `runtime`.
    pub fn outcome(&self, test: &str, runtime: &str) -> Option<Outcome> {
        let i = self.runtimes.iter().position(|r| r == runtime)?;
        self.results.get(test)?.get(i).map(|r| r.outcome)
    }

    /// Pass/fail/skip/... counts for `runtime`.
    pub fn counts(&self, runtime: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for test in self.results.keys() {
            if let Some(o) = self.outcome(test, runtime) {
                *counts.entry(o.to_string()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Tests that pass for `reference` but not for `candidate`.
    /// Tests that pass with `reference` but not with `candidate`, except the skips a test
    /// makes itself for every runtime but the Go shim's ([`RUNTIME_SKIPS`]).
    pub fn regressions(&self, reference: &str, candidate: &str) -> Vec<String> {
        self.results
            .keys()
            .filter(|t| {
                self.outcome(t, reference) == Some(Outcome::Pass)
                    && self.outcome(t, candidate) != Some(Outcome::Pass)
                    && self
                        .result(t, candidate)
                        .is_none_or(|r| runtime_skip(t, r).is_none())
            })
            .cloned()
            .collect()
    }

    fn result(&self, test: &str, runtime: &str) -> Option<&TestResult> {
        let i = self.runtimes.iter().position(|r| r == runtime)?;
        self.results.get(test)?.get(i)
    }

    /// Tests whose outcomes differ between runtimes.
    pub fn differences(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|(_, rs)| rs.windows(2).any(|w| w[0].outcome != w[1].outcome))
            .map(|(t, _)| t.clone())
            .collect()
    }
}

/// Starts a node of `flavour`, builds (or takes from the cache) the suite, serves the
/// images, and runs the selected tests for every runtime (all tests of one runtime, then
/// the next).
pub fn run_flavour(
    flavour: Flavour,
    runtimes: &[String],
    patterns: &[String],
    settings: &Settings,
    progress: &mut dyn FnMut(&str),
) -> FlavourRun {
    let started = Instant::now();
    let mut run = FlavourRun {
        flavour: flavour.to_string(),
        runtimes: runtimes.to_vec(),
        ..Default::default()
    };
    let result = (|| -> Result<()> {
        progress(&format!("starting a {flavour} node"));
        let node = Node::start(flavour, "conformance")?;
        run.versions = rootfs::versions_line(&node.rootfs().completion.versions);
        progress(&format!("node {} is up: {}", node.name(), run.versions));
        let suite = ensure_suite(node.rootfs(), progress)?;
        install_suite(&node, &suite)?;
        if settings.snapshotter.as_deref() == Some(REVIVE_SNAPSHOTTER) {
            install_snapshotter_wrapper(&node)?;
        }
        let images = served_images(&node.rootfs().path)?;
        run.images = images
            .iter()
            .map(|i| (i.names.join(", "), i.what.to_string()))
            .collect();
        let registry = Registry::start(&node, &images)?;
        run.registry_seconds = registry.seconds;
        progress(&format!(
            "registry up with {} image names in {:.1} s",
            registry.pushed.len(),
            registry.seconds
        ));
        let tests = select(&suite.record.tests, patterns);
        run.not_selected = suite.record.tests.len() - tests.len();
        run.suite = Some(suite.record.clone());
        if tests.is_empty() {
            bail!("no test of the {flavour} suite matches {patterns:?}");
        }
        for (ri, runtime) in runtimes.iter().enumerate() {
            let rt_started = Instant::now();
            for (i, test) in tests.iter().enumerate() {
                let mut result = run_test(&node, test, runtime, settings);
                if result.outcome.failed() && settings.retry.as_ref() == Some(runtime) {
                    progress(&format!(
                        "*** [{flavour} {}] {test}: {} for the reference: {}; running it once more",
                        crate::bench::short_runtime(runtime),
                        result.outcome,
                        shorten(&result.reason, 100)
                    ));
                    result = run_again(&node, test, runtime, settings, result);
                }
                progress(&format!(
                    "[{flavour} {}/{} {}] {test}: {}{} ({:.1} s)",
                    i + 1,
                    tests.len(),
                    crate::bench::short_runtime(runtime),
                    result.outcome,
                    if result.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", shorten(&result.reason, 100))
                    },
                    result.seconds
                ));
                let entry = run.results.entry(test.to_string()).or_default();
                while entry.len() < ri {
                    entry.push(not_run(test, &runtimes[entry.len()]));
                }
                entry.push(result);
            }
            run.runtime_seconds.push(rt_started.elapsed().as_secs_f64());
        }
        let left = node.stop()?;
        if !left.is_empty() {
            progress(&format!("the node left things behind: {left:?}"));
        }
        Ok(())
    })();
    if let Err(err) = result {
        progress(&format!("{flavour}: {err:#}"));
        run.error = Some(format!("{err:#}"));
    }
    run.seconds = started.elapsed().as_secs_f64();
    run
}

/// A second run of `test` after `first` failed: its log moves aside to `<test>.first.log`,
/// and the second result's reason names the first outcome.
fn run_again(
    node: &Node,
    test: &str,
    runtime: &str,
    settings: &Settings,
    first: TestResult,
) -> TestResult {
    if let Some(log) = &first.log {
        let _ = fs::rename(log, log.with_extension("first.log"));
    }
    let mut second = run_test(node, test, runtime, settings);
    let before = format!(
        "a second run; the first: {}: {}",
        first.outcome,
        shorten(&first.reason, 200)
    );
    second.reason = if second.reason.is_empty() {
        before
    } else {
        format!("{} ({before})", second.reason)
    };
    second
}

fn not_run(test: &str, runtime: &str) -> TestResult {
    TestResult {
        test: test.to_string(),
        runtime: runtime.to_string(),
        outcome: Outcome::NotRun,
        reason: String::new(),
        seconds: 0.0,
        log: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "=== RUN   TestContainerStart\n--- PASS: TestContainerStart (0.31s)\nPASS\n";

    #[test]
    fn parses_pass_fail_skip() {
        assert_eq!(
            parse_go_test("TestContainerStart", PASS, "").0,
            Outcome::Pass
        );
        let skip = "=== RUN   TestUserNamespaces\n    container_linux_test.go:1180: User namespaces are unavailable\n--- SKIP: TestUserNamespaces (0.00s)\n";
        let (o, why) = parse_go_test("TestUserNamespaces", skip, "");
        assert_eq!(o, Outcome::Skip);
        assert_eq!(why, "User namespaces are unavailable");
        let fail = "=== RUN   TestCheckpointRestore\n    container_checkpoint_test.go:10: log line\n    container_checkpoint_test.go:120: process already finished: not found\n--- FAIL: TestCheckpointRestore (1.20s)\nFAIL\n";
        let (o, why) = parse_go_test("TestCheckpointRestore", fail, "");
        assert_eq!(o, Outcome::Fail);
        assert!(why.contains("process already finished"), "{why}");
    }

    #[test]
    fn one_failed_run_of_many_fails_the_test() {
        let runs = format!(
            "{PASS}=== RUN   TestContainerStart\n    x_test.go:9: lost\n--- FAIL: TestContainerStart (0.1s)\n{PASS}"
        );
        let (o, why) = parse_go_test("TestContainerStart", &runs, "");
        assert_eq!(o, Outcome::Fail);
        assert!(why.contains("lost"), "{why}");
    }

    #[test]
    fn testify_errors_are_read() {
        let out = "=== RUN   TestIssue10589\n    container_linux_test.go:1663: 1. Create a sleeping container\n    container_linux_test.go:1687: \n        \tError Trace:\t/x/container_linux_test.go:1687\n        \tError:      \tReceived unexpected error:\n        \t            \tfailed to create shim task: exit status 2\n        \tTest:       \tTestIssue10589\n        \tMessages:   \tcreate task\n--- FAIL: TestIssue10589 (0.05s)\n";
        let (o, why) = parse_go_test("TestIssue10589", out, "");
        assert_eq!(o, Outcome::Fail);
        assert_eq!(
            why,
            "1. Create a sleeping container; create task: failed to create shim task: exit status 2"
        );
    }

    #[test]
    fn failed_subtests_are_named() {
        let out = "=== RUN   TestContainerUser\n=== RUN   TestContainerUser/UserNameAndGroupName\n    container_linux_test.go:660: expected uid:gid to be \"33:33\", but received \"\"\n    --- FAIL: TestContainerUser/UserNameAndGroupName (0.5s)\n    --- PASS: TestContainerUser/UserIDAndGroupID (0.5s)\n--- FAIL: TestContainerUser (1.0s)\n";
        let (o, why) = parse_go_test("TestContainerUser", out, "");
        assert_eq!(o, Outcome::Fail);
        assert!(why.starts_with("subtests UserNameAndGroupName:"), "{why}");
    }

    #[test]
    fn timeouts_and_crashes() {
        let out = "=== RUN   TestBindLowPortNonOpt\npanic: test timed out after 2m0s\n\trunning tests:\n\t\tTestBindLowPortNonOpt (2m0s)\n\ngoroutine 1 [running]:\n";
        let (o, why) = parse_go_test("TestBindLowPortNonOpt", out, "");
        assert_eq!(o, Outcome::Timeout);
        assert!(why.contains("timed out after 2m0s"), "{why}");
        let (o, why) = parse_go_test(
            "TestX",
            "",
            "failed to pull seed image: not found\nrevive-conformance: test binary exit status 1\n",
        );
        assert_eq!(o, Outcome::Error);
        assert!(
            why.contains("never started") && why.contains("seed image"),
            "{why}"
        );
        let out = "=== RUN   TestX\npanic: runtime error: invalid memory address\n";
        assert_eq!(parse_go_test("TestX", out, "").0, Outcome::Error);
    }

    #[test]
    fn a_prefix_of_another_test_is_not_its_result() {
        let out = "=== RUN   TestContainerPTY\n--- PASS: TestContainerPTYX (0.1s)\n";
        assert_eq!(parse_go_test("TestContainerPTY", out, "").0, Outcome::Error);
    }

    #[test]
    fn selection_by_name_and_prefix() {
        let tests: Vec<String> = [
            "TestCheckpointRestore",
            "TestCheckpointRestorePTY",
            "TestContainerStart",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(select(&tests, &[]).len(), 3);
        assert_eq!(
            select(&tests, &["TestCheckpoint*".into()]),
            vec!["TestCheckpointRestore", "TestCheckpointRestorePTY"]
        );
        assert_eq!(
            select(&tests, &["TestCheckpointRestore".into()]),
            vec!["TestCheckpointRestore"]
        );
    }

    #[test]
    fn the_test_script_quotes_and_isolates() {
        let script = test_script(
            "TestContainerStart",
            RUNC_V2,
            Duration::from_secs(60),
            1,
            None,
        );
        assert!(!script.contains("TEST_SNAPSHOTTER"));
        let on_revive = test_script(
            "TestSnapshotterClient",
            REVIVE_V2,
            Duration::from_secs(60),
            1,
            Some(REVIVE_SNAPSHOTTER),
        );
        assert!(on_revive.contains("/share/conformance/revive-bin:$PATH TEST_SNAPSHOTTER=revive"));
        assert!(on_revive.contains("mount -t tmpfs -o mode=0700 tmpfs /run/revive"));
        assert!(script.contains("unshare --pid --fork --kill-child --mount"));
        assert!(script.contains("-test.run '\\''^TestContainerStart$'\\''"));
        assert!(script.contains("-test.timeout 60s"));
        assert!(script.contains("TEST_RUNTIME=io.containerd.runc.v2"));
    }
}
