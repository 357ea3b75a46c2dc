//! containerd's own client integration tests (`integration/client`) run against a shim, in a
//! node, side by side for several runtimes (`make conformance`).
//!
//! Four pieces:
//!
//! - **the suite** ([`ensure_suite`]): the test binary, built from the sources of exactly the
//!   node's containerd version, one of two ways ([`SuiteSource`]):
//!   - a flavour whose containerd is a peer built from its Go module ([`crate::peers`]; lts
//!     and latest) gets the suite from that module at the peer's version: its source, taken
//!     from the peers' Go module cache (where the peer's build left it with its
//!     dependencies, so nothing is downloaded twice), is copied somewhere writable and built
//!     on the host with the host's Go toolchain, as containerd's Makefile builds its
//!     integration tests (`go test -c ./integration/client`, cgo on, no build tags; without
//!     the `-race` its CI adds on amd64, like the Debian-built suites);
//!   - a flavour with Debian's containerd (stable) gets it from Debian's sources, built with
//!     Debian's Go toolchain in GOPATH mode (`GO111MODULE=off`) against Debian's Go packages
//!     under `/usr/share/gocode`, as Debian builds containerd. It is built in a *builder*: an
//!     overlay over the node's own root filesystem (so the same Debian release) into which
//!     apt installs golang-go and `golang-github-containerd-containerd-dev` pinned to the
//!     node's containerd version; those packages stay out of the node roots (about 3 GB, and
//!     debootstrap cannot resolve them). containerd 2.x's package ships
//!     `integration/client`; 1.7's leaves `integration/` out, so for 1.7 Debian's
//!     `containerd` source package of the node's exact version is fetched and patched as
//!     Debian builds it.
//!
//!   The binary (plus `runc-fp`, the failpoint wrapper around runc that two tests run as
//!   their runtime binary, and the test list) is cached on the host per flavour and
//!   containerd version, with digests checked on every use and `complete.json` written last;
//!   the builder is removed.
//! - **the registry** ([`Registry::start`]): the tests pull `ghcr.io/containerd/busybox:1.36`
//!   and friends by name. Debian's docker-registry serves them on 127.0.0.1:443 in the node
//!   with a certificate from a throw-away test CA (openssl) that the node trusts
//!   (update-ca-certificates); `/etc/hosts` points the registry names at 127.0.0.1, and the
//!   images, built here ([`served_images`]), are pushed under the expected names with skopeo.
//! - **the runner** ([`run_test`]): one test per invocation of the test binary, with a timeout
//!   each, in a pid and mount namespace of its own so that whatever a test leaves behind
//!   (its containerd, shims, containers, mounts) dies with it. The binary starts its own
//!   containerd (`/var/lib/containerd-test`, as upstream CI does), which must not sit on the
//!   node's overlay root (overlayfs cannot be an upper layer), so `/var/lib` is a tmpfs in that
//!   namespace with the node's own entries bound back in.
//! - **the report** ([`render_markdown`]): test by test, one column per runtime, with the
//!   reason for every failure and skip, and the differences listed first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::image::{Layer, busybox_applets};
use crate::node::{Node, tail};
use crate::rootfs::{self, FileLock, Flavour, Rootfs, sha256_file};

pub use crate::bench::{REVIVE_V2, RUNC_V2};

/// Bumped whenever the way the suite is built changes, so cached builds are redone.
const BUILD_VERSION: u32 = 1;

/// Bumped whenever the way the suite is built from containerd's Go module changes
/// ([`build_suite_from_module`]), so those cached builds are redone.
const MODULE_BUILD_VERSION: u32 = 1;

/// Where the suite is built and kept inside a node (below the node's /share).
const NODE_DIR: &str = "/share/conformance";

/// Per-test timeout unless told otherwise. The slowest passing tests take about 45 s
/// (TestContainerExecLargeOutputWithTTY, TestRestartMonitor); the rest a second or so.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where built suites and fetched sources are cached: `$REVIVE_CONFORMANCE_CACHE`, else
/// `conformance` beside the node root cache (`/var/cache/revive/conformance`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("REVIVE_CONFORMANCE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| rootfs::cache_dir().with_file_name("conformance"))
}

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
fn shorten(text: &str, max: usize) -> String {
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
// The suite: built in a node, cached on the host
// ---------------------------------------------------------------------------------------

/// What a cached suite build records (`complete.json`, written last).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SuiteRecord {
    pub key: String,
    pub flavour: Flavour,
    /// The node's containerd version the tests were built for (its Debian package version,
    /// or its Go module version without the `v`).
    pub containerd: String,
    /// Where the test sources came from, with version.
    pub source: String,
    /// `go version` of the toolchain that built them.
    pub go: String,
    /// Every `Test*` function of the binary (`-test.list`).
    pub tests: Vec<String>,
    /// File name -> SHA-256 hex of the cached files.
    pub digests: BTreeMap<String, String>,
    pub build_seconds: f64,
}

/// A built suite in the host cache.
#[derive(Debug, Clone)]
pub struct Suite {
    pub dir: PathBuf,
    pub record: SuiteRecord,
}

/// Files of a suite build.
const SUITE_FILES: &[&str] = &["client.test", "runc-fp"];

fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where a node root's suite is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuiteSource {
    /// Debian's sources for the root's packaged containerd (built in a builder over the root).
    Debian,
    /// The Go module the root's containerd peer was built from, at exactly its version,
    /// built on the host with the peers' module cache.
    Module {
        /// `github.com/containerd/containerd/v2`.
        module: String,
        /// `v2.3.7`.
        version: String,
        /// The peers' cache (`<rootfs cache>/peers`), whose `go/mod` is Go's module cache.
        peers: PathBuf,
    },
}

/// Where `root`'s suite comes from: the containerd module its containerd peer was built
/// from when it has one, else Debian's sources.
pub fn suite_source(root: &Rootfs) -> Result<SuiteSource> {
    let Some(built) = root
        .peers
        .iter()
        .find(|b| b.completion.peer.name == "containerd")
    else {
        return Ok(SuiteSource::Debian);
    };
    // A peer's binaries are in `<peers>/<name>-<version>-<key>/bin`.
    let peers = built
        .bin
        .parent()
        .and_then(Path::parent)
        .with_context(|| {
            format!(
                "{} is not a peer build's bin directory",
                built.bin.display()
            )
        })?
        .to_path_buf();
    Ok(SuiteSource::Module {
        module: built.completion.peer.module.clone(),
        version: built.completion.peer.version.clone(),
        peers,
    })
}

/// The cache entry for a node root's suite, and its key: the suite is built for the root's
/// containerd version (the test sources are taken at exactly that version), from Debian's
/// sources or from containerd's Go module ([`SuiteSource`]).
pub fn suite_entry(root: &Rootfs) -> Result<(PathBuf, String)> {
    let containerd = containerd_version(root)?;
    let mut text = format!("{BUILD_VERSION} {} {containerd}", root.flavour);
    if let SuiteSource::Module {
        module, version, ..
    } = suite_source(root)?
    {
        text.push_str(&format!(
            " {module}@{version} module-build {MODULE_BUILD_VERSION}"
        ));
    }
    let key = hex::encode(&Sha256::digest(text.as_bytes())[..8]);
    let dir = cache_dir().join(format!("{}-{}-{key}", root.flavour, sanitize(&containerd)));
    Ok((dir, key))
}

fn containerd_version(root: &Rootfs) -> Result<String> {
    root.completion
        .versions
        .get("containerd")
        .cloned()
        .with_context(|| format!("the {} node root has no containerd", root.flavour))
}

/// Checks a cached suite: record present with `key`, files matching their digests.
pub fn verify_suite(dir: &Path, key: &str) -> Result<SuiteRecord> {
    let path = dir.join("complete.json");
    let text = fs::read_to_string(&path)
        .with_context(|| format!("{} is missing: no finished build", path.display()))?;
    let record: SuiteRecord = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a suite record", path.display()))?;
    if record.key != key {
        bail!("{} has key {}, expected {key}", path.display(), record.key);
    }
    for file in SUITE_FILES {
        let want = record
            .digests
            .get(*file)
            .with_context(|| format!("{} records no digest for {file}", path.display()))?;
        let got = sha256_file(&dir.join(file))?;
        if &got != want {
            bail!(
                "{}/{file} is corrupt: sha256 {got}, recorded {want}",
                dir.display()
            );
        }
    }
    if record.tests.is_empty() {
        bail!("{} lists no tests", path.display());
    }
    Ok(record)
}

/// Returns the suite for a node root from the cache, building it first when the cache has
/// none for the root's containerd version. Concurrent callers wait for one build.
pub fn ensure_suite(root: &Rootfs, progress: &mut dyn FnMut(&str)) -> Result<Suite> {
    let cache = cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o700))?;
    let _lock = FileLock::acquire(&cache.join(format!("{}.lock", root.flavour)))?;
    let (dir, key) = suite_entry(root)?;
    if dir.exists() {
        match verify_suite(&dir, &key) {
            Ok(record) => return Ok(Suite { dir, record }),
            Err(err) => {
                progress(&format!(
                    "cached suite unusable ({err:#}); building it again"
                ));
                fs::remove_dir_all(&dir)?;
            }
        }
    }
    let record = build_suite(root, &key, &dir, progress)?;
    progress(&format!(
        "suite built in {:.0} s: {} tests ({}; {})",
        record.build_seconds,
        record.tests.len(),
        record.source,
        record.go
    ));
    Ok(Suite { dir, record })
}

/// Packages the builder installs on top of the node root.
const BUILD_PACKAGES: &[&str] = &[
    "golang-go",
    "golang-github-stretchr-testify-dev",
    "golang-github-google-go-cmp-dev",
    "patch",
    "xz-utils",
];

/// Runs `script` with `/bin/sh` chrooted into the builder: an overlay whose lower layer is
/// the node root (never written) and whose upper layer is `base/upper`, in a private mount
/// and pid namespace (nothing mounted outlives it; killing it kills everything it started),
/// with the host's network, so apt can reach the mirror.
fn in_builder(root: &Path, base: &Path, script: &str, timeout: Duration) -> Result<String> {
    for sub in ["upper", "work", "merged"] {
        fs::create_dir_all(base.join(sub))?;
    }
    let mounts = format!(
        "set -e; m={b}/merged
mount -t overlay overlay -o lowerdir={root},upperdir={b}/upper,workdir={b}/work $m
mount -t proc proc $m/proc
mount -t tmpfs -o mode=1777 tmpfs $m/tmp
cat /etc/resolv.conf > $m/etc/resolv.conf.revive-builder
rm -f $m/etc/resolv.conf; mv $m/etc/resolv.conf.revive-builder $m/etc/resolv.conf
exec chroot $m /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C \
  DEBIAN_FRONTEND=noninteractive /bin/sh -c \"$1\"",
        b = base.display(),
        root = root.display()
    );
    let out = crate::node::run_with_timeout(
        Command::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "sh",
                "-c",
                &mounts,
                "sh",
                script,
            ])
            .stdin(Stdio::null())
            .env_remove("CONTAINER"),
        timeout,
    )?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("the builder failed ({}):\n{}", out.status, tail(&text, 40));
    }
    Ok(text)
}

/// Builds the suite for `root` from its [`SuiteSource`] and stores it in `dir`.
fn build_suite(
    root: &Rootfs,
    key: &str,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<SuiteRecord> {
    match suite_source(root)? {
        SuiteSource::Debian => build_suite_debian(root, key, dir, progress),
        SuiteSource::Module {
            module,
            version,
            peers,
        } => build_suite_from_module(root, key, dir, &module, &version, &peers, progress),
    }
}

/// A `go` command for a module build: Go's module cache is the peers' (`<peers>/go/mod`, where
/// the containerd peer's build left the module and its dependencies, so nothing is fetched
/// twice), its build cache is `gocache` (removed with the builder), and only the host's
/// toolchain is used.
fn go_command(peers: &Path, gocache: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(dir)
        .env("GOMODCACHE", peers.join("go/mod"))
        .env("GOPATH", peers.join("go/path"))
        .env("GOCACHE", gocache)
        .env("GOFLAGS", "-mod=mod -buildvcs=false")
        .env("GOTOOLCHAIN", "local")
        .env_remove("GOBIN")
        .env_remove("GOOS")
        .env_remove("GOARCH")
        .env_remove("GOWORK");
    cmd
}

/// Builds the suite for a root whose containerd is a peer built from Go module `module` at
/// `version`, from exactly that module version's source, on the host, with the host's Go
/// toolchain (as [`crate::peers`] builds the peers).
///
/// The module's source in Go's module cache is read-only, so it is copied to a builder
/// directory first. The test binary is built as containerd's Makefile builds its
/// `integration` target (`go test` in `integration/client`: no build tags, cgo as Go's
/// default, which is on; without the Makefile's `-race`, which slows every test several
/// times over), and `runc-fp` as its `bin/runc-fp` target. The binaries are
/// dynamically linked against the host's glibc, which the nodes' Debian sid root (a newer
/// glibc) satisfies.
fn build_suite_from_module(
    root: &Rootfs,
    key: &str,
    dir: &Path,
    module: &str,
    version: &str,
    peers: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<SuiteRecord> {
    let started = Instant::now();
    let containerd = containerd_version(root)?;
    let go = crate::peers::go_version()?;
    let base = cache_dir().join(format!("builder-{}", root.flavour));
    rootfs::remove_tree(&base)?;
    let (src, out, gocache) = (base.join("src"), base.join("out"), base.join("gocache"));
    for d in [&out, &gocache] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    fs::set_permissions(&base, fs::Permissions::from_mode(0o700))?;
    let log_path = base.join("build.log");
    progress(&format!(
        "building containerd's integration/client tests from {module}@{version} with {go} \
         (2-3 minutes on 2 cores; log: {})",
        log_path.display()
    ));
    let built = build_module_suite(module, version, peers, &base, &log_path);
    // The source copy and the build cache (gigabytes) are never kept; a failed build's log is.
    for tree in [&src, &gocache] {
        rootfs::remove_tree(tree)?;
    }
    built?;
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    let record = store_suite(
        root,
        key,
        dir,
        &out,
        Stored {
            containerd,
            source: format!("{module}@{version} (its Go module)"),
            go,
            log,
            started,
        },
    )?;
    rootfs::remove_tree(&base)?;
    Ok(record)
}

/// The steps of [`build_suite_from_module`] in `base`: the module's source copied to
/// `base/src`, built with the build cache `base/gocache`, the suite's files and its test list
/// (`tests.txt`) left in `base/out`, every command and its output in `log_path`.
fn build_module_suite(
    module: &str,
    version: &str,
    peers: &Path,
    base: &Path,
    log_path: &Path,
) -> Result<()> {
    let (src, out, gocache) = (base.join("src"), base.join("out"), base.join("gocache"));
    // Where the module's source is: in the module cache already when the peer was built
    // there; `go mod download` fetches it otherwise.
    let answer = go_command(peers, &gocache, base)
        .args(["mod", "download", "-json", &format!("{module}@{version}")])
        .output()
        .with_context(|| format!("running go mod download {module}@{version}"))?;
    if !answer.status.success() {
        bail!(
            "go mod download {module}@{version} failed (check the host's network and \
             GOPROXY): {}{}",
            String::from_utf8_lossy(&answer.stdout),
            String::from_utf8_lossy(&answer.stderr)
        );
    }
    #[derive(Deserialize)]
    struct Download {
        #[serde(rename = "Dir")]
        dir: PathBuf,
    }
    let download: Download =
        serde_json::from_slice(&answer.stdout).context("reading go mod download's answer")?;
    logged(
        Command::new("cp").arg("-r").arg(&download.dir).arg(&src),
        log_path,
        &format!("copying {} to {}", download.dir.display(), src.display()),
    )?;
    logged(
        Command::new("chmod").args(["-R", "u+w"]).arg(&src),
        log_path,
        "making the source copy writable",
    )?;
    let client_test = out.join("client.test");
    logged(
        go_command(peers, &gocache, &src)
            .env("CGO_ENABLED", "1")
            .args(["test", "-c", "-o"])
            .arg(&client_test)
            .arg("./integration/client"),
        log_path,
        &format!(
            "building {module}@{version}'s integration/client tests with the host's Go \
             (GOTOOLCHAIN=local: install at least the Go its go.mod requires)"
        ),
    )?;
    logged(
        go_command(peers, &gocache, &src)
            .env("CGO_ENABLED", "1")
            .args(["build", "-o"])
            .arg(out.join("runc-fp"))
            .arg("./integration/failpoint/cmd/runc-fp"),
        log_path,
        &format!("building {module}@{version}'s runc-fp"),
    )?;
    // -test.short: TestMain then runs the tests' list without starting a containerd.
    let list = Command::new(&client_test)
        .args(["-test.short", "-test.list", "^Test"])
        .current_dir(&out)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", client_test.display()))?;
    if !list.status.success() {
        bail!(
            "{} -test.list failed ({}): {}",
            client_test.display(),
            list.status,
            String::from_utf8_lossy(&list.stderr)
        );
    }
    fs::write(out.join("tests.txt"), &list.stdout)?;
    Ok(())
}

/// Runs `cmd` with its output appended to `log`, after the command itself (its directory
/// and environment included).
fn logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    let mut file = fs::OpenOptions::new().create(true).append(true).open(log)?;
    writeln!(file, "$ {cmd:?}")?;
    rootfs::run_logged(cmd, log, what)
}

/// Builds the suite for a root with Debian's containerd in a builder over the root and
/// stores it in `dir`.
///
/// Debian's Go packages are not in the node roots (they add about 3 GB and debootstrap
/// cannot resolve them); the builder installs them with apt on top of the root, pinning
/// `golang-github-containerd-containerd-dev` to the root's containerd version. containerd
/// 2.x's package ships `integration/client`; 1.7's leaves `integration/` out, so for 1.7 the
/// `containerd` source package of that version is fetched (its tarballs checked against the
/// archive's signed SHA-256) and patched as Debian builds it.
fn build_suite_debian(
    root: &Rootfs,
    key: &str,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<SuiteRecord> {
    let started = Instant::now();
    let containerd = containerd_version(root)?;
    // containerd 2.x's Go import path carries the major version.
    let import = if containerd.starts_with("1.") {
        "github.com/containerd/containerd"
    } else {
        "github.com/containerd/containerd/v2"
    };
    let base = cache_dir().join(format!("builder-{}", root.flavour));
    rootfs::remove_tree(&base)?;
    let upper = base.join("upper");
    let mut log = String::new();
    let apt = "apt-get -o Acquire::Check-Valid-Until=false";
    progress(&format!(
        "installing Debian's Go toolchain and containerd's Go sources {containerd} in a \
         builder over the {} node root (about 2 minutes)",
        root.flavour
    ));
    log.push_str(&in_builder(
        &root.path,
        &base,
        &format!(
            "set -e; {apt} update -qq; \
             {apt} install -y -qq --no-install-recommends {} \
               golang-github-containerd-containerd-dev={containerd} >/dev/null; \
             mkdir -p /root/out; go version > /root/out/go-version; \
             if [ -d /usr/share/gocode/src/{import}/integration/client ]; then exit 0; fi; \
             sed -n 's/^deb /deb-src /p' /etc/apt/sources.list \
               > /etc/apt/sources.list.d/revive-src.list; \
             {apt} update -qq; apt-cache showsrc containerd > /root/out/showsrc; \
             mkdir -p /root/src; cd /root/src; \
             {apt} source --download-only -qq containerd={containerd} || true",
            BUILD_PACKAGES.join(" ")
        ),
        Duration::from_secs(1800),
    )?);
    let (prepare, gopath, source) = if upper.join("root/out/showsrc").exists() {
        // The .dsc may be missing from a mirror (it is here); apt still fetches the
        // tarballs, which are all the build needs; their digests are the verdict.
        let showsrc = fs::read_to_string(upper.join("root/out/showsrc"))?;
        let files = source_files(&showsrc, &containerd).with_context(|| {
            format!("the mirror has no containerd source package {containerd} (any more)")
        })?;
        for (name, sha) in &files {
            let got = sha256_file(&upper.join("root/src").join(name))
                .with_context(|| format!("fetching {name} failed"))?;
            if &got != sha {
                bail!("{name}: sha256 {got}, the archive says {sha}");
            }
        }
        let orig = files
            .iter()
            .find(|(n, _)| n.contains(".orig.tar."))
            .context("the source package has no .orig tarball")?;
        let debian = files
            .iter()
            .find(|(n, _)| n.contains(".debian.tar."))
            .context("the source package has no .debian tarball")?;
        (
            format!(
                "gp=/root/gopath; src=$gp/src/{import}; mkdir -p $src; \
                 tar -xf /root/src/{} -C $src --strip-components=1; \
                 tar -xf /root/src/{} -C $src; cd $src; \
                 for p in $(grep -v '^#' debian/patches/series); do \
                   patch -p1 -s < debian/patches/$p; done",
                orig.0, debian.0
            ),
            "/root/gopath:/usr/share/gocode",
            format!("Debian's containerd source package {containerd}"),
        )
    } else {
        (
            format!("src=/usr/share/gocode/src/{import}"),
            "/usr/share/gocode",
            format!("golang-github-containerd-containerd-dev {containerd}"),
        )
    };
    progress(&format!(
        "building containerd's integration/client tests from {source} (about a minute)"
    ));
    log.push_str(&in_builder(
        &root.path,
        &base,
        &format!(
            "set -e; {prepare}; cd $src; \
             export GO111MODULE=off GOPATH={gopath} GOCACHE=/tmp/gocache GOFLAGS= \
               GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0; \
             go test -c -o /root/out/client.test ./integration/client; \
             go build -o /root/out/runc-fp ./integration/failpoint/cmd/runc-fp; \
             /root/out/client.test -test.short -test.list '^Test' > /root/out/tests.txt"
        ),
        Duration::from_secs(1800),
    )?);
    let go = fs::read_to_string(upper.join("root/out/go-version"))?
        .trim()
        .to_string();
    let record = store_suite(
        root,
        key,
        dir,
        &upper.join("root/out"),
        Stored {
            containerd,
            source,
            go,
            log,
            started,
        },
    )?;
    // The builder (about 3 GB of Go sources) is not kept: the binary is all runs need.
    rootfs::remove_tree(&base)?;
    Ok(record)
}

/// What a finished build records besides its files.
struct Stored {
    containerd: String,
    source: String,
    go: String,
    log: String,
    started: Instant,
}

/// Copies a build's [`SUITE_FILES`] from `out` (which also holds `tests.txt`, the test
/// binary's `-test.list`) into the cache entry `dir`, with their digests and the build log;
/// `complete.json` is written last, and the entry appears whole (renamed into place).
fn store_suite(
    root: &Rootfs,
    key: &str,
    dir: &Path,
    out: &Path,
    stored: Stored,
) -> Result<SuiteRecord> {
    let tests: Vec<String> = fs::read_to_string(out.join("tests.txt"))?
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Test"))
        .map(str::to_string)
        .collect();
    if tests.is_empty() {
        bail!("the built suite lists no tests:\n{}", tail(&stored.log, 40));
    }
    let partial = dir.with_extension("partial");
    if partial.exists() {
        fs::remove_dir_all(&partial)?;
    }
    fs::create_dir_all(&partial)?;
    let mut digests = BTreeMap::new();
    for file in SUITE_FILES {
        fs::copy(out.join(file), partial.join(file))?;
        digests.insert(file.to_string(), sha256_file(&partial.join(file))?);
    }
    fs::write(partial.join("build.log"), &stored.log)?;
    let record = SuiteRecord {
        key: key.to_string(),
        flavour: root.flavour,
        containerd: stored.containerd,
        source: stored.source,
        go: stored.go,
        tests,
        digests,
        build_seconds: stored.started.elapsed().as_secs_f64(),
    };
    let tmp = partial.join("complete.json.tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(serde_json::to_string_pretty(&record)?.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, partial.join("complete.json"))?;
    fs::rename(&partial, dir)?;
    Ok(record)
}

/// The tarballs (name, SHA-256) of source `version` in `apt-cache showsrc` output.
pub fn source_files(showsrc: &str, version: &str) -> Option<Vec<(String, String)>> {
    for stanza in showsrc.split("\n\n") {
        let is_version = stanza
            .lines()
            .any(|l| l.strip_prefix("Version:").map(str::trim) == Some(version));
        if !is_version {
            continue;
        }
        let files: Vec<(String, String)> = stanza
            .lines()
            .skip_while(|l| !l.starts_with("Checksums-Sha256:"))
            .skip(1)
            .take_while(|l| l.starts_with(' '))
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                match cols.as_slice() {
                    [sha, _size, name] if name.contains(".tar.") => {
                        Some((name.to_string(), sha.to_string()))
                    }
                    _ => None,
                }
            })
            .collect();
        if !files.is_empty() {
            return Some(files);
        }
    }
    None
}

/// Puts the suite into the node: the test binary in /share/conformance, runc-fp in PATH.
pub fn install_suite(node: &Node, suite: &Suite) -> Result<()> {
    let share = node.share_dir().join("conformance");
    fs::create_dir_all(&share)?;
    for file in SUITE_FILES {
        fs::copy(suite.dir.join(file), share.join(file))
            .with_context(|| format!("copying {file} into the node"))?;
    }
    node.run(&[
        "install",
        "-m",
        "0755",
        &format!("{NODE_DIR}/runc-fp"),
        "/usr/local/bin/runc-fp",
    ])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Images, built here as OCI layouts
// ---------------------------------------------------------------------------------------

/// A platform of a multi-platform image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: &'static str,
    pub architecture: &'static str,
    pub variant: Option<&'static str>,
    pub os_version: Option<&'static str>,
}

impl Platform {
    pub const fn linux(architecture: &'static str, variant: Option<&'static str>) -> Platform {
        Platform {
            os: "linux",
            architecture,
            variant,
            os_version: None,
        }
    }

    /// The platform of this machine (the one images are run on).
    pub fn host() -> Platform {
        match std::env::consts::ARCH {
            "aarch64" => Platform::linux("arm64", Some("v8")),
            _ => Platform::linux("amd64", None),
        }
    }

    fn json(&self) -> Value {
        let mut p = json!({"os": self.os, "architecture": self.architecture});
        if let Some(v) = self.variant {
            p["variant"] = json!(v);
        }
        if let Some(v) = self.os_version {
            p["os.version"] = json!(v);
        }
        p
    }

    fn describe(&self) -> String {
        let mut s = format!("{}/{}", self.os, self.architecture);
        if let Some(v) = self.variant {
            s.push_str(&format!("/{v}"));
        }
        s
    }
}

/// One platform's image: layers (bottom first) and the `config` section of its config.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub platform: Platform,
    pub layers: Vec<Layer>,
    pub config: Value,
}

/// An image the registry serves, under one or more names.
#[derive(Debug, Clone)]
pub struct ServedImage {
    pub names: Vec<&'static str>,
    /// What it holds, for the report.
    pub what: &'static str,
    pub platforms: Vec<PlatformImage>,
}

/// Where the served images knowingly differ from upstream's, and why.
pub const IMAGE_NOTES: &str = "
Where they differ from upstream's images on purpose (the tests are unchanged):

- `sleep` is coreutils' (with its glibc), not busybox's: Debian's busybox-static `sleep`
  returns at once, status 0, when CRIU checkpoints it (measured: `sleep 100` ends right after
  `ctr task checkpoint`, leave-running or restored), which fails every `sleep`-based
  checkpoint test for any shim. coreutils' sleeps on.
- `nc` is a two-line shell wrapper (`trap 'exit 143' TERM`, then busybox `nc` in the
  background): Debian's busybox has the small `nc`, which sets no signal handler, so as a
  container's pid 1 it ignores SIGTERM and TestBindLowPortNonOpt hangs; upstream's exits
  with 143. The real `nc` still binds the port with the container's capabilities.
";

/// An image name a suite uses that is not served: the tests that pull it, and why.
#[derive(Debug, Clone, Copy)]
pub struct NotServed {
    pub image: &'static str,
    pub tests: &'static [&'static str],
    pub why: &'static str,
}

/// Image names the suites use that are not served.
pub const NOT_SERVED: &[NotServed] = &[
    NotServed {
        image: "gcr.io/google_containers/pause:3.0@sha256:0d093c96…",
        tests: &["TestImagePullSchema1"],
        why: "1.7 only: a Docker schema 1 manifest pinned by digest; its signed bytes cannot be \
              rebuilt locally",
    },
    NotServed {
        image: "gcr.io/google-containers/busybox@sha256:d8d3bc2c…",
        tests: &["TestImagePullSchema1WithEmptyLayers"],
        why: "1.7 only: a Docker schema 1 manifest pinned by digest, cannot be rebuilt",
    },
    NotServed {
        image: "ghcr.io/containerd/busybox@sha256:7b3ccabf…",
        tests: &["TestExportAllCases"],
        why: "2.3 and later: upstream's busybox index pinned by digest (the subtest \
              export_image_setting_ocispec.AnnotationRefName); its bytes cannot be rebuilt \
              locally",
    },
    NotServed {
        image: "registry.k8s.io/pause-amd64:3.2, cplatpublic.azurecr.io/…",
        tests: &[],
        why: "used by Windows-only tests",
    },
];

/// A skip a test decides on itself when `TEST_RUNTIME` is not the Go shim's: true for revive
/// by construction, so not a regression; the report lists it.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeSkip {
    pub test: &'static str,
    /// What the test prints when it skips.
    pub says: &'static str,
    pub why: &'static str,
}

/// The skips of [`RuntimeSkip`] known in the suites.
pub const RUNTIME_SKIPS: &[RuntimeSkip] = &[RuntimeSkip {
    test: "TestIssue10589",
    says: "test requires io.containerd.runc.v2",
    why: "containerd 1.7's copy of the test skips itself for every TEST_RUNTIME other than \
          io.containerd.runc.v2 (container_linux_test.go); 2.x's has no such check, and revive \
          passes it there",
}];

/// The [`RuntimeSkip`] a result is, if any.
pub fn runtime_skip(test: &str, result: &TestResult) -> Option<&'static RuntimeSkip> {
    if result.outcome != Outcome::Skip {
        return None;
    }
    RUNTIME_SKIPS
        .iter()
        .find(|s| s.test == test && result.reason.contains(s.says))
}

/// Why `test` cannot pass here, when it pulls an image that is not served.
pub fn not_served(test: &str) -> Option<&'static NotServed> {
    NOT_SERVED.iter().find(|n| n.tests.contains(&test))
}

/// The hosts the tests pull from; `/etc/hosts` points them at the node's registry.
pub const REGISTRY_HOSTS: &[&str] = &[
    "ghcr.io",
    "registry.k8s.io",
    "gcr.io",
    "mcr.microsoft.com",
    "docker.io",
    "registry-1.docker.io",
    "cplatpublic.azurecr.io",
];

/// /etc/passwd and /etc/group of the official busybox image (what the user tests expect:
/// www-data is 33:33, uid 3 is sys with gid 3).
const BUSYBOX_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
bin:x:2:2:bin:/bin:/bin/false\n\
sys:x:3:3:sys:/dev:/bin/false\n\
sync:x:4:100:sync:/bin:/bin/sync\n\
mail:x:8:8:mail:/var/spool/mail:/bin/false\n\
www-data:x:33:33:www-data:/var/www:/bin/false\n\
operator:x:37:37:Operator:/var:/bin/false\n\
nobody:x:65534:65534:nobody:/home:/bin/false\n";

const BUSYBOX_GROUP: &str = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\n\
disk:x:6:\nlp:x:7:\nmail:x:8:\nkmem:x:9:\nwheel:x:10:root\ncdrom:x:11:\ndialout:x:18:\n\
floppy:x:19:\nvideo:x:28:\naudio:x:29:\ntape:x:32:\nwww-data:x:33:\noperator:x:37:\n\
utmp:x:43:\nstaff:x:50:\nlock:x:54:\nusers:x:100:\nnogroup:x:65534:\n";

/// Users of an Ubuntu base image, which volume-ownership is built on (backup is 34).
const UBUNTU_PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
bin:x:2:2:bin:/bin:/usr/sbin/nologin\n\
sys:x:3:3:sys:/dev:/usr/sbin/nologin\n\
sync:x:4:65534:sync:/bin:/bin/sync\n\
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin\n\
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
backup:x:34:34:backup:/var/backups:/usr/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

const UBUNTU_GROUP: &str = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\n\
tty:x:5:\nmail:x:8:\nwww-data:x:33:\nbackup:x:34:\nstaff:x:50:\nusers:x:100:\n\
nogroup:x:65534:\n";

/// busybox from a node root's busybox-static with a link per applet, the usual
/// directories, and the given users.
pub fn busybox_layer(rootfs: &Path, passwd: &str, group: &str) -> Result<Layer> {
    let (data, all) = busybox_applets(rootfs)?;
    let mut layer = Layer::new().file("bin/busybox", data, 0o755);
    let mut dirs = BTreeSet::from(["bin".to_string()]);
    // Applet name -> its path (`nc` is usr/bin/nc, `sleep` bin/sleep).
    let mut applets = BTreeMap::new();
    for applet in &all {
        if let Some((dir, name)) = applet.rsplit_once('/') {
            dirs.insert(dir.to_string());
            applets.insert(name.to_string(), applet.to_string());
        }
        layer = layer.symlink(applet, "/bin/busybox");
    }
    let path_of = |name: &str| {
        applets
            .get(name)
            .cloned()
            .unwrap_or_else(|| format!("bin/{name}"))
    };
    for dir in [
        "etc",
        "proc",
        "sys",
        "dev",
        "var",
        "var/spool",
        "var/www",
        "home",
        "usr",
    ] {
        dirs.insert(dir.to_string());
    }
    for dir in dirs {
        layer = layer.dir(&dir, 0o755);
    }
    with_coreutils_sleep(
        rootfs,
        &path_of("sleep"),
        layer
            // Debian's busybox builds the small `nc`, which sets no signal handlers, so as a
            // container's pid 1 it ignores SIGTERM (the kernel drops it); the official
            // image's `nc` exits with 143 on it, which a test waits for. Same exit status,
            // and the real nc still does the binding (with the container's capabilities).
            .file(
                &path_of("nc"),
                "#!/bin/sh\ntrap 'exit 143' TERM\n/bin/busybox nc \"$@\" &\nwait $!\n",
                0o755,
            )
            .dir("tmp", 0o1777)
            .dir("root", 0o700)
            .file("etc/passwd", passwd, 0o644)
            .file("etc/group", group, 0o644),
    )
}

/// Replaces busybox's `sleep` with coreutils' (and the glibc it needs, from the same root).
///
/// Debian's busybox-static `sleep` returns at once, with status 0, when CRIU checkpoints it
/// (measured here: `sleep 100` ends right after `ctr task checkpoint`, leave-running or
/// restored alike), so every checkpoint test that runs `sleep N` would fail for any shim.
/// coreutils' `sleep` sleeps on across a checkpoint. Only on x86_64, where the paths below
/// are known; elsewhere busybox's stays.
fn with_coreutils_sleep(rootfs: &Path, path: &str, layer: Layer) -> Result<Layer> {
    if std::env::consts::ARCH != "x86_64" {
        return Ok(layer);
    }
    let read = |rel: &str| {
        fs::read(rootfs.join(rel)).with_context(|| format!("reading {rel} of the node root"))
    };
    Ok(layer
        .file(path, read("usr/bin/sleep")?, 0o755)
        .dir("lib", 0o755)
        .dir("lib/x86_64-linux-gnu", 0o755)
        .file(
            "lib/x86_64-linux-gnu/libc.so.6",
            read("usr/lib/x86_64-linux-gnu/libc.so.6")?,
            0o755,
        )
        .dir("lib64", 0o755)
        .file(
            "lib64/ld-linux-x86-64.so.2",
            read("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")?,
            0o755,
        ))
}

/// A tiny layer standing in for another platform's content (never run here).
fn placeholder(platform: &Platform, image: &str) -> PlatformImage {
    PlatformImage {
        platform: platform.clone(),
        layers: vec![Layer::new().file(
            "PLATFORM",
            format!(
                "{image} for {}: a placeholder built by revive's conformance harness\n",
                platform.describe()
            ),
            0o644,
        )],
        config: json!({"Cmd": ["/PLATFORM"]}),
    }
}

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The foreign platforms multi-platform images carry besides this machine's.
fn foreign_platforms() -> Vec<Platform> {
    let host = Platform::host();
    [
        Platform::linux("amd64", None),
        Platform::linux("arm64", Some("v8")),
        Platform::linux("arm", Some("v7")),
        Platform::linux("ppc64le", None),
        Platform::linux("s390x", None),
        Platform::linux("386", None),
    ]
    .into_iter()
    .filter(|p| p.architecture != host.architecture)
    .collect()
}

/// Every image the suites pull, built from `rootfs` (a node root, for busybox).
pub fn served_images(rootfs: &Path) -> Result<Vec<ServedImage>> {
    let busybox = busybox_layer(rootfs, BUSYBOX_PASSWD, BUSYBOX_GROUP)?;
    let sh = json!({"Env": [PATH_ENV], "Cmd": ["sh"]});
    let multi = |image: &str, native: PlatformImage| -> Vec<PlatformImage> {
        let mut all = vec![native];
        all.extend(foreign_platforms().iter().map(|p| placeholder(p, image)));
        all
    };
    let host = Platform::host();
    let busybox_image = PlatformImage {
        platform: host.clone(),
        layers: vec![busybox.clone()],
        config: sh.clone(),
    };
    let pause = PlatformImage {
        platform: host.clone(),
        // A layer of its own (a test pulls it without unpacking and expects no snapshot:
        // a layer shared with the seed image would already be unpacked).
        layers: vec![busybox.clone().file("pause", "pause\n", 0o644)],
        config: json!({"Env": [PATH_ENV], "Entrypoint": ["/bin/sleep", "2147483647"]}),
    };
    let copy_up = PlatformImage {
        platform: host.clone(),
        layers: vec![
            busybox.clone(),
            Layer::new()
                .dir("test_dir", 0o755)
                .file("test_dir/test_file", "test_content\n", 0o644),
        ],
        config: json!({"Env": [PATH_ENV], "Cmd": ["sh"], "Volumes": {"/test_dir": {}}}),
    };
    let ownership = PlatformImage {
        platform: host.clone(),
        layers: vec![
            busybox_layer(rootfs, UBUNTU_PASSWD, UBUNTU_GROUP)?
                // What the set-uid test looks for (never executed).
                .file(
                    "usr/bin/passwd",
                    "#!/bin/sh\necho 'passwd: a placeholder'\n",
                    0o4755,
                )
                // The tests run `bash -c ...`; busybox has no bash applet.
                .file("bin/bash", "#!/bin/sh\nexec /bin/sh \"$@\"\n", 0o755)
                // runc mounts a tmpfs there; a read-only rootfs must have it.
                .dir("run", 0o755),
            Layer::new().dir_owned("test_dir", 0o755, 65534, 65534),
        ],
        config: json!({"Env": [PATH_ENV], "Cmd": ["bash"], "Volumes": {"/test_dir": {}}}),
    };
    let alpine = PlatformImage {
        platform: host.clone(),
        layers: vec![busybox.clone().dir("run", 0o755)],
        config: json!({"Env": [PATH_ENV], "Cmd": ["/bin/sh"]}),
    };
    // What 2.4's TestIssue13030 builds for itself (2.3's pulls it): files and a directory
    // that later layers delete again with whiteouts.
    let whiteout = PlatformImage {
        platform: host.clone(),
        layers: vec![
            busybox.clone(),
            Layer::new().file("file-to-delete", "", 0o644),
            Layer::new().file(".wh.file-to-delete", "", 0o644),
            Layer::new()
                .dir("dir-to-delete", 0o755)
                .file("dir-to-delete/foo", "", 0o644),
            Layer::new().file(".wh.dir-to-delete", "", 0o644),
        ],
        config: sh.clone(),
    };
    let nanoserver = Platform {
        os: "windows",
        architecture: "amd64",
        variant: None,
        os_version: Some("10.0.17763.1"),
    };
    Ok(vec![
        ServedImage {
            names: vec!["ghcr.io/containerd/busybox:1.36"],
            what: "busybox-static (`sleep` and `nc` see below) with the official image's \
                   users; an index of 6 platforms, the foreign ones placeholders",
            platforms: multi("busybox", busybox_image.clone()),
        },
        ServedImage {
            names: vec![
                "registry.k8s.io/pause:3.10.2",
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io/pause:3.8",
                "registry.k8s.io/pause:3.6",
            ],
            what: "busybox sleeping forever; 6 platforms",
            platforms: multi("pause", pause),
        },
        ServedImage {
            names: vec!["registry.k8s.io/e2e-test-images/busybox:1.29-2"],
            what: "busybox; 6 platforms (the test fetches amd64, arm64/v8 and s390x)",
            platforms: multi("e2e busybox", busybox_image),
        },
        ServedImage {
            names: vec![
                "ghcr.io/containerd/volume-copy-up:2.2",
                "ghcr.io/containerd/volume-copy-up:2.1",
            ],
            what: "busybox plus a second layer with /test_dir/test_file, VOLUME /test_dir \
                   (as upstream's Dockerfile)",
            platforms: multi("volume-copy-up", copy_up),
        },
        ServedImage {
            names: vec!["ghcr.io/containerd/volume-ownership:2.1"],
            what: "busybox with Ubuntu's users (backup is 34), a set-uid /usr/bin/passwd, \
                   `bash`, /run, /test_dir owned by nobody:nogroup, VOLUME /test_dir",
            platforms: multi("volume-ownership", ownership),
        },
        ServedImage {
            names: vec!["ghcr.io/containerd/alpine:3.14.0"],
            what: "busybox standing in for alpine (1.7's user-namespace tests run `sh`)",
            platforms: multi("alpine", alpine),
        },
        ServedImage {
            names: vec!["ghcr.io/containerd/whiteout-test:1.0"],
            what: "busybox plus four layers: /file-to-delete, its whiteout, \
                   /dir-to-delete/foo, the directory's whiteout (as 2.4's TestIssue13030 \
                   builds it)",
            platforms: multi("whiteout-test", whiteout),
        },
        ServedImage {
            names: vec![
                "ghcr.io/containerd/windows/nanoserver:1809",
                "mcr.microsoft.com/windows/nanoserver:1809",
            ],
            what: "a windows/amd64 placeholder only (the test expects a Linux pull to fail)",
            platforms: vec![placeholder(&nanoserver, "nanoserver")],
        },
    ])
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// JSON with sorted keys (serde_json's maps are sorted), so equal images get equal digests.
fn canonical(value: &Value) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

/// Writes `image` as an OCI image layout directory holding one image index tagged `tag`
/// (for `skopeo copy --all oci:<dir>:<tag> docker://...`). Returns the index digest.
pub fn write_layout(dir: &Path, tag: &str, image: &ServedImage) -> Result<String> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let put = |data: &[u8]| -> Result<(String, usize)> {
        let digest = digest_of(data);
        let path = blobs.join(digest.trim_start_matches("sha256:"));
        if !path.exists() {
            fs::write(&path, data)?;
        }
        Ok((digest, data.len()))
    };
    let mut manifests = Vec::new();
    for p in &image.platforms {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in &p.layers {
            let tar = layer.tar()?;
            diff_ids.push(digest_of(&tar));
            let (digest, size) = put(&gzip(&tar)?)?;
            layers.push(json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest, "size": size,
            }));
        }
        let mut config = p.platform.json();
        config["config"] = p.config.clone();
        config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        let (config_digest, config_size) = put(&canonical(&config)?)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest, "size": config_size,
            },
            "layers": layers,
        });
        let (digest, size) = put(&canonical(&manifest)?)?;
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size, "platform": p.platform.json(),
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let (digest, size) = put(&canonical(&index)?)?;
    let layout_index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(dir.join("index.json"), canonical(&layout_index)?)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(digest)
}

// ---------------------------------------------------------------------------------------
// The registry in the node
// ---------------------------------------------------------------------------------------

/// The node's registry: docker-registry on 127.0.0.1:443, TLS from a test CA the node
/// trusts, the registry names in /etc/hosts, the suites' images pushed.
#[derive(Debug)]
pub struct Registry {
    /// Image name -> index digest.
    pub pushed: BTreeMap<String, String>,
    pub seconds: f64,
}

const REGISTRY_DIR: &str = "/etc/revive-registry";

impl Registry {
    pub fn start(node: &Node, images: &[ServedImage]) -> Result<Registry> {
        let started = Instant::now();
        let hosts = REGISTRY_HOSTS.join(" ");
        let san: Vec<String> = REGISTRY_HOSTS
            .iter()
            .map(|h| format!("DNS:{h}"))
            .chain(["DNS:localhost".to_string(), "IP:127.0.0.1".to_string()])
            .collect();
        let setup = format!(
            "set -e; d={REGISTRY_DIR}; mkdir -p $d /var/lib/revive-registry; cd $d
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj '/CN=revive conformance test CA' -keyout ca.key -out ca.crt \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj '/CN=revive conformance registry' -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName={san}\\nbasicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\nextendedKeyUsage=serverAuth\\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
  -extfile server.ext -out server.crt 2>/dev/null
cp ca.crt /usr/local/share/ca-certificates/revive-conformance-ca.crt
update-ca-certificates >/dev/null 2>&1
echo '127.0.0.1 {hosts}' >> /etc/hosts
cat > config.yml <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/revive-registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:443
  tls:
    certificate: $d/server.crt
    key: $d/server.key
EOF",
            san = san.join(",")
        );
        node.sh(&setup)
            .context("setting up the registry's CA and configuration")?;
        node.spawn_daemon(
            "registry",
            &format!("docker-registry serve {REGISTRY_DIR}/config.yml"),
        )?;
        let probe = "openssl s_client -connect 127.0.0.1:443 -servername ghcr.io \
                     -verify_return_error -verify_hostname ghcr.io \
                     -CAfile /etc/ssl/certs/ca-certificates.crt </dev/null >/dev/null 2>&1";
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = node.exec_timeout(&["sh", "-c", probe], Duration::from_secs(10))?;
            if out.status.success() {
                break;
            }
            if Instant::now() > deadline {
                let log =
                    fs::read_to_string(node.logs_dir().join("registry.log")).unwrap_or_default();
                bail!(
                    "the registry did not answer with a trusted certificate within 30 s:\n{}",
                    tail(&log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let layouts = node.share_dir().join("conformance/images");
        fs::create_dir_all(&layouts)?;
        let mut pushed = BTreeMap::new();
        for (i, image) in images.iter().enumerate() {
            let dir = layouts.join(format!("image-{i}"));
            let digest = write_layout(&dir, "image", image)?;
            for name in &image.names {
                let out = node.exec_timeout(
                    &[
                        "skopeo",
                        "copy",
                        "--quiet",
                        "--all",
                        "--preserve-digests",
                        &format!("oci:{NODE_DIR}/images/image-{i}:image"),
                        &format!("docker://{name}"),
                    ],
                    Duration::from_secs(120),
                )?;
                if !out.status.success() {
                    bail!(
                        "pushing {name} failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                pushed.insert(name.to_string(), digest.clone());
            }
        }
        Ok(Registry {
            pushed,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: DEFAULT_TIMEOUT,
            log_dir: None,
            count: 1,
            snapshotter: None,
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
                let result = run_test(&node, test, runtime, settings);
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

// ---------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------

/// A whole conformance run.
#[derive(Debug, Clone)]
pub struct Report {
    pub date: String,
    pub revive: String,
    pub command: String,
    pub timeout: Duration,
    pub flavours: Vec<FlavourRun>,
    pub seconds: f64,
}

fn short(runtime: &str) -> String {
    runtime
        .strip_prefix("io.containerd.")
        .unwrap_or(runtime)
        .to_string()
}

fn cell(result: Option<&TestResult>) -> String {
    match result {
        Some(r) if r.outcome == Outcome::Pass => "pass".into(),
        Some(r) => r.outcome.to_string(),
        None => "-".into(),
    }
}

/// The report as markdown.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::from("# containerd `integration/client` conformance\n\n");
    out.push_str(&format!(
        "{}; revive {}; {} per test; {:.0} s in all.\n\nReproduce: `{}`\n\n",
        report.date,
        report.revive,
        humantime(report.timeout),
        report.seconds,
        report.command
    ));
    out.push_str(
        "Each test runs alone (`-test.run '^Name$'`) against its own containerd (as upstream \
         CI does), with `TEST_RUNTIME` set to the runtime of the column, CRIU available and no \
         `-no-criu`, in a fresh pid and mount namespace of the node. Images come from a \
         registry in the node (see Images below). Full output of every test: the log \
         directory named at the end.\n\n",
    );
    for run in &report.flavours {
        out.push_str(&render_flavour(run));
    }
    out.push_str(
        "## Images\n\nServed by docker-registry on 127.0.0.1:443 in the node (TLS from a \
                   test CA the node trusts; `/etc/hosts` maps ",
    );
    out.push_str(&REGISTRY_HOSTS.join(", "));
    out.push_str(" to 127.0.0.1), built locally, pushed with skopeo:\n\n");
    let rows: Vec<Vec<String>> = report
        .flavours
        .iter()
        .find(|f| !f.images.is_empty())
        .map(|f| {
            f.images
                .iter()
                .map(|(n, w)| vec![n.clone(), w.clone()])
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&crate::bench::markdown_table(
        &["name".into(), "content".into()],
        &rows,
    ));
    out.push_str(IMAGE_NOTES);
    out.push_str("\nNot served:\n\n");
    let rows: Vec<Vec<String>> = NOT_SERVED
        .iter()
        .map(|n| vec![n.image.to_string(), n.tests.join(", "), n.why.to_string()])
        .collect();
    out.push_str(&crate::bench::markdown_table(
        &["name".into(), "tests".into(), "why".into()],
        &rows,
    ));
    out
}

fn humantime(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// A few lines for the terminal: counts per runtime, and the tests whose outcomes differ.
pub fn summary(run: &FlavourRun) -> String {
    let mut out = format!("{} node:", run.flavour);
    if let Some(err) = &run.error {
        out.push_str(&format!(" did not complete: {}", shorten(err, 200)));
    }
    for r in &run.runtimes {
        let counts: Vec<String> = run
            .counts(r)
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        out.push_str(&format!("\n  {}: {}", short(r), counts.join(", ")));
    }
    for t in run.differences() {
        let cells: Vec<String> = run
            .runtimes
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    short(r),
                    run.outcome(&t, r)
                        .map(|o| o.to_string())
                        .unwrap_or_default()
                )
            })
            .collect();
        out.push_str(&format!("\n  differs: {t} ({})", cells.join(", ")));
    }
    out
}

/// One flavour's section: counts, differences, the full table.
pub fn render_flavour(run: &FlavourRun) -> String {
    let mut out = format!("## {} node\n\n", run.flavour);
    if !run.versions.is_empty() {
        out.push_str(&format!("{}.", run.versions));
    }
    if let Some(suite) = &run.suite {
        out.push_str(&format!(
            " Tests from {}, built with {} ({} tests",
            suite.source,
            suite.go,
            suite.tests.len()
        ));
        if run.not_selected > 0 {
            out.push_str(&format!(
                ", {} of them not selected for this run",
                run.not_selected
            ));
        }
        out.push_str(").");
    }
    if run.registry_seconds > 0.0 {
        out.push_str(&format!(
            " Registry up with the images in {:.0} s.",
            run.registry_seconds
        ));
    }
    out.push_str("\n\n");
    if let Some(err) = &run.error {
        out.push_str(&format!(
            "**The run did not complete:** {}\n\n",
            shorten(err, 400)
        ));
    }
    if run.results.is_empty() {
        return out;
    }
    // Counts.
    let kinds = ["pass", "FAIL", "skip", "TIMEOUT", "ERROR"];
    let mut header = vec![String::new()];
    header.extend(run.runtimes.iter().map(|r| format!("`{}`", short(r))));
    let mut rows = Vec::new();
    for kind in kinds {
        let mut row = vec![kind.to_string()];
        for r in &run.runtimes {
            row.push(run.counts(r).get(kind).copied().unwrap_or(0).to_string());
        }
        rows.push(row);
    }
    let mut row = vec!["wall time".to_string()];
    row.extend(run.runtime_seconds.iter().map(|s| format!("{s:.0} s")));
    rows.push(row);
    out.push_str(&crate::bench::markdown_table(&header, &rows));
    out.push('\n');
    // Differences.
    let diffs = run.differences();
    if run.runtimes.len() > 1 {
        if diffs.is_empty() {
            out.push_str("No differences between the runtimes.\n\n");
        } else {
            out.push_str(&format!("Differences ({}):\n\n", diffs.len()));
            out.push_str(&result_table(run, &diffs));
            out.push('\n');
        }
    }
    // Skips the tests make themselves for runtimes other than the Go shim's.
    let own_skips: Vec<String> = run
        .results
        .iter()
        .filter_map(|(t, rs)| rs.iter().find_map(|r| runtime_skip(t, r)))
        .map(|s| format!("- {}: {}\n", s.test, s.why))
        .collect();
    if !own_skips.is_empty() {
        out.push_str("Skipped by the test itself for runtimes other than the Go shim's:\n\n");
        out.push_str(&own_skips.concat());
        out.push('\n');
    }
    // Everything.
    out.push_str("<details><summary>Every test</summary>\n\n");
    let all: Vec<String> = run.results.keys().cloned().collect();
    out.push_str(&result_table(run, &all));
    out.push_str("\n</details>\n\n");
    out
}

fn result_table(run: &FlavourRun, tests: &[String]) -> String {
    let mut header = vec!["test".to_string()];
    header.extend(run.runtimes.iter().map(|r| format!("`{}`", short(r))));
    header.push("reason (failures and skips)".into());
    let rows: Vec<Vec<String>> = tests
        .iter()
        .map(|t| {
            let results = run.results.get(t);
            let mut row = vec![t.clone()];
            for i in 0..run.runtimes.len() {
                row.push(cell(results.and_then(|rs| rs.get(i))));
            }
            // One reason per distinct message, labelled by runtime when they differ.
            let mut reasons: Vec<(String, String)> = Vec::new();
            for r in results.into_iter().flatten() {
                if r.reason.is_empty() {
                    continue;
                }
                match reasons.iter_mut().find(|(_, why)| *why == r.reason) {
                    Some((who, _)) => {
                        who.push_str(&format!(", {}", short(&r.runtime)));
                    }
                    None => reasons.push((short(&r.runtime), r.reason.clone())),
                }
            }
            let text = if reasons.len() == 1 {
                shorten(&reasons[0].1, 200)
            } else {
                reasons
                    .iter()
                    .map(|(who, why)| format!("{who}: {}", shorten(why, 140)))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            match not_served(t) {
                Some(n) => row.push(format!("image not served ({}): {text}", n.image)),
                None => row.push(text),
            }
            row
        })
        .collect();
    crate::bench::markdown_table(&header, &rows)
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
    fn regressions_spare_only_the_tests_own_runtime_skips() {
        let result = |test: &str, runtime: &str, outcome: Outcome, reason: &str| TestResult {
            test: test.into(),
            runtime: runtime.into(),
            outcome,
            reason: reason.into(),
            seconds: 0.0,
            log: None,
        };
        let mut run = FlavourRun {
            runtimes: vec![RUNC_V2.into(), REVIVE_V2.into()],
            ..Default::default()
        };
        for (test, outcome, reason) in [
            (
                "TestIssue10589",
                Outcome::Skip,
                "test requires io.containerd.runc.v2",
            ),
            (
                "TestOther",
                Outcome::Skip,
                "test requires io.containerd.runc.v2",
            ),
            ("TestFails", Outcome::Fail, "boom"),
            ("TestFine", Outcome::Pass, ""),
        ] {
            run.results.insert(
                test.into(),
                vec![
                    result(test, RUNC_V2, Outcome::Pass, ""),
                    result(test, REVIVE_V2, outcome, reason),
                ],
            );
        }
        assert_eq!(
            run.regressions(RUNC_V2, REVIVE_V2),
            ["TestFails", "TestOther"]
        );
        assert!(render_flavour(&run).contains("Skipped by the test itself"));
    }

    #[test]
    fn module_peers_choose_the_suite_source() {
        let mut root = Rootfs {
            flavour: Flavour::Stable,
            path: PathBuf::from("/nonexistent"),
            completion: rootfs::Completion {
                key: "k".into(),
                recipe: Flavour::Stable.recipe(),
                mirror: "m".into(),
                versions: BTreeMap::from([("containerd".into(), "1.7.24~ds1-6+deb13u1".into())]),
                digests: BTreeMap::new(),
            },
            peers: Vec::new(),
        };
        assert_eq!(suite_source(&root).unwrap(), SuiteSource::Debian);
        let (stable_dir, _) = suite_entry(&root).unwrap();
        assert!(
            stable_dir
                .to_string_lossy()
                .contains("stable-1.7.24_ds1-6_deb13u1-")
        );
        let peer = crate::peers::Peer::containerd("v2.3.7");
        root.flavour = Flavour::Lts;
        root.completion
            .versions
            .insert("containerd".into(), "2.3.7".into());
        root.peers.push(crate::peers::Built {
            bin: PathBuf::from("/cache/peers/containerd-v2.3.7-abc/bin"),
            completion: crate::peers::Completion {
                key: peer.key(),
                peer: peer.clone(),
                go: "go version go1.26.8 linux/amd64".into(),
                digests: BTreeMap::new(),
            },
        });
        assert_eq!(
            suite_source(&root).unwrap(),
            SuiteSource::Module {
                module: "github.com/containerd/containerd/v2".into(),
                version: "v2.3.7".into(),
                peers: PathBuf::from("/cache/peers"),
            }
        );
        let (dir, key) = suite_entry(&root).unwrap();
        assert!(
            dir.ends_with(format!("lts-2.3.7-{key}")),
            "{}",
            dir.display()
        );
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
    fn source_files_of_one_version() {
        let showsrc = "Package: containerd\nVersion: 1.7.24~ds1-6+deb13u1\nChecksums-Sha256:\n aaa 5072 containerd_1.7.24~ds1-6+deb13u1.dsc\n bbb 1799264 containerd_1.7.24~ds1.orig.tar.xz\n ccc 36856 containerd_1.7.24~ds1-6+deb13u1.debian.tar.xz\nHomepage: https://containerd.io/\n\nPackage: containerd\nVersion: 1.7.20-1\nChecksums-Sha256:\n ddd 1 containerd_1.7.20.orig.tar.gz\n";
        let files = source_files(showsrc, "1.7.24~ds1-6+deb13u1").unwrap();
        assert_eq!(
            files,
            vec![
                (
                    "containerd_1.7.24~ds1.orig.tar.xz".to_string(),
                    "bbb".to_string()
                ),
                (
                    "containerd_1.7.24~ds1-6+deb13u1.debian.tar.xz".to_string(),
                    "ccc".to_string()
                ),
            ]
        );
        assert!(source_files(showsrc, "9.9").is_none());
    }

    #[test]
    fn layouts_are_reproducible_indexes() {
        let image = ServedImage {
            names: vec!["ghcr.io/x/y:1"],
            what: "test",
            platforms: vec![
                PlatformImage {
                    platform: Platform::host(),
                    layers: vec![
                        Layer::new().dir_owned("d", 0o755, 65534, 65534),
                        Layer::new().file("f", "x", 0o4755),
                    ],
                    config: json!({"Cmd": ["sh"]}),
                },
                placeholder(&Platform::linux("s390x", None), "y"),
            ],
        };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let da = write_layout(a.path(), "t", &image).unwrap();
        let db = write_layout(b.path(), "t", &image).unwrap();
        assert_eq!(da, db, "two builds of one image differ");
        let blob = |d: &str| {
            fs::read(
                a.path()
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .unwrap()
        };
        let index: Value = serde_json::from_slice(&blob(&da)).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 2);
        assert_eq!(manifests[1]["platform"]["architecture"], "s390x");
        let manifest: Value =
            serde_json::from_slice(&blob(manifests[0]["digest"].as_str().unwrap())).unwrap();
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
        let config: Value =
            serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        // Owners and modes survive into the layer.
        let layer = flate2::read::GzDecoder::new(std::io::Cursor::new(blob(
            manifest["layers"][0]["digest"].as_str().unwrap(),
        )));
        let mut archive = tar::Archive::new(layer);
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.header().uid().unwrap(), 65534);
        let top: Value =
            serde_json::from_slice(&fs::read(a.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(
            top["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "t"
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
