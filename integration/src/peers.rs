//! Upstream programs built from their released Go modules: the test peers revive is proven
//! against (containerd, runc, crictl, the kubelet) where Debian packages none of the versions
//! users run.
//!
//! Each build is a cache entry `<cache>/peers/<name>-<version>-<key>/` holding `bin/` and
//! `complete.json`, written last, with the SHA-256 of every binary; an entry without it, or
//! whose binaries no longer match, is removed and rebuilt, never used. Go's module and build
//! caches live in `<cache>/peers/go`, so emptying the cache directory empties them too.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rootfs::{self, FileLock};

/// Bumped whenever the build commands below change in a way a [`Peer`] does not show.
const RECIPE_VERSION: u32 = 1;

/// Held by a Go build, and by whoever removes Go's build cache.
const GO_BUILD_LOCK: &str = "go-build.lock";

/// The oldest Go that builds every peer (containerd 2.3.7 declares go 1.26.8).
pub const MIN_GO: &str = "1.26.8";

/// One upstream program (or a few from one module), at one released version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The cache entry's name, e.g. `containerd`.
    pub name: String,
    /// The Go module, e.g. `github.com/containerd/containerd/v2`.
    pub module: String,
    /// The released version, e.g. `v2.3.7`.
    pub version: String,
    /// Packages to build, relative to the module (`cmd/ctr`), or "" for its root.
    pub packages: Vec<String>,
    /// Where a node gets the binaries, relative to its root (`usr/bin`), in place of the
    /// root's packaged ones.
    pub dir: String,
    /// Build with cgo (statically linked), e.g. runc for libseccomp.
    pub cgo: bool,
    pub tags: Vec<String>,
    pub ldflags: String,
    /// The module cannot be installed directly because its go.mod replaces modules with
    /// local paths (`k8s.io/kubernetes` and its staging modules): build it from a wrapper
    /// module that pins each replaced module to this version instead (`v0.37.2`).
    pub staging_version: Option<String>,
    /// Build a test binary of one of revive's own Go modules against the module instead of
    /// the module's programs (absent from the keys of the peers that are programs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<GoTest>,
}

/// A Go test binary (`go test -c`) built from a module of revive's own, `integration/go/<dir>`,
/// whose go.mod requires the peer's module at the peer's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoTest {
    /// The module's directory under `integration/go`.
    pub dir: String,
    /// SHA-256 of its sources, so an edited driver is rebuilt.
    pub digest: String,
}

/// The sources of revive's Go test modules, by directory under `integration/go`:
/// (file name, text). Compiled in, so the cache key follows every edit.
const GO_TEST_SOURCES: &[(&str, &[(&str, &str)])] = &[(
    "snapshotter-suite",
    &[(
        "suite_test.go",
        include_str!("../go/snapshotter-suite/suite_test.go"),
    )],
)];

fn go_test_sources(dir: &str) -> &'static [(&'static str, &'static str)] {
    GO_TEST_SOURCES
        .iter()
        .find(|(d, _)| *d == dir)
        .map_or(&[], |(_, files)| files)
}

impl Peer {
    /// containerd, ctr and the Go shim at `version` (`v2.3.7`), built as containerd's own
    /// release does (static, without the btrfs, devmapper and zfs snapshotters).
    pub fn containerd(version: &str) -> Peer {
        Peer {
            name: "containerd".into(),
            dir: "usr/bin".into(),
            module: "github.com/containerd/containerd/v2".into(),
            version: version.into(),
            packages: ["cmd/containerd", "cmd/ctr", "cmd/containerd-shim-runc-v2"]
                .map(String::from)
                .to_vec(),
            cgo: false,
            tags: ["no_btrfs", "no_devmapper", "no_zfs"]
                .map(String::from)
                .to_vec(),
            ldflags: format!(
                "-X github.com/containerd/containerd/v2/version.Version={version} \
                 -X github.com/containerd/containerd/v2/version.Revision=go-module"
            ),
            staging_version: None,
            test: None,
        }
    }

    /// runc at `version`, with seccomp, linked statically as runc's release binaries are.
    pub fn runc(version: &str) -> Peer {
        Peer {
            name: "runc".into(),
            dir: "usr/sbin".into(),
            module: "github.com/opencontainers/runc".into(),
            version: version.into(),
            packages: vec![String::new()],
            cgo: true,
            tags: ["seccomp", "netgo", "osusergo"].map(String::from).to_vec(),
            ldflags: format!(
                "-X main.version={} -extldflags -static",
                version.trim_start_matches('v')
            ),
            staging_version: None,
            test: None,
        }
    }

    /// crictl at `version`.
    pub fn crictl(version: &str) -> Peer {
        Peer {
            name: "crictl".into(),
            dir: "usr/local/bin".into(),
            module: "sigs.k8s.io/cri-tools".into(),
            version: version.into(),
            packages: vec!["cmd/crictl".into()],
            cgo: false,
            tags: Vec::new(),
            ldflags: format!("-X sigs.k8s.io/cri-tools/pkg/version.Version={version}"),
            staging_version: None,
            test: None,
        }
    }

    /// The kubelet at `version` (`v1.37.2`).
    pub fn kubelet(version: &str) -> Peer {
        Peer::kubernetes("kubelet", version)
    }

    /// kube-apiserver at `version` (`v1.37.2`), for the harness's clusters.
    pub fn kube_apiserver(version: &str) -> Peer {
        Peer::kubernetes("kube-apiserver", version)
    }

    /// The program `cmd/<name>` of Kubernetes at `version`, with the version it reports.
    fn kubernetes(name: &str, version: &str) -> Peer {
        let staging = version.replacen("v1.", "v0.", 1);
        Peer {
            name: name.into(),
            dir: "usr/local/bin".into(),
            module: "k8s.io/kubernetes".into(),
            version: version.into(),
            packages: vec![format!("cmd/{name}")],
            cgo: false,
            tags: Vec::new(),
            ldflags: format!(
                "-X k8s.io/component-base/version.gitVersion={version} \
                 -X k8s.io/component-base/version.gitMajor=1 \
                 -X k8s.io/component-base/version.gitMinor={}",
                version.split('.').nth(1).unwrap_or_default()
            ),
            staging_version: Some(staging),
            test: None,
        }
    }

    /// The driver that runs containerd's snapshotter test suite (`core/snapshots/testsuite`)
    /// against revive-snapshotter through containerd's snapshot proxy, built against
    /// containerd `version` (`v2.3.7`); `integration/go/snapshotter-suite`.
    pub fn snapshotter_suite(version: &str) -> Peer {
        let dir = "snapshotter-suite";
        let mut hasher = Sha256::new();
        for (name, text) in go_test_sources(dir) {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([0]);
        }
        Peer {
            name: dir.into(),
            dir: String::new(),
            module: "github.com/containerd/containerd/v2".into(),
            version: version.into(),
            packages: Vec::new(),
            cgo: false,
            tags: Vec::new(),
            ldflags: String::new(),
            staging_version: None,
            test: Some(GoTest {
                dir: dir.into(),
                digest: hex::encode(hasher.finalize()),
            }),
        }
    }

    /// The names of the binaries the build leaves in `bin/`.
    pub fn binaries(&self) -> Vec<String> {
        if self.test.is_some() {
            return vec![format!("{}.test", self.name)];
        }
        self.packages
            .iter()
            .map(|p| {
                let path = if p.is_empty() { &self.module } else { p };
                path.rsplit('/').next().unwrap_or(path).to_string()
            })
            .collect()
    }

    /// The cache key: a digest of everything the build depends on.
    pub fn key(&self) -> String {
        let text =
            serde_json::to_string(&(RECIPE_VERSION, self)).expect("a peer always serializes");
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }

    fn import_paths(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|p| {
                if p.is_empty() {
                    self.module.clone()
                } else {
                    format!("{}/{p}", self.module)
                }
            })
            .collect()
    }
}

/// What `complete.json` records about a finished build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Completion {
    pub key: String,
    pub peer: Peer,
    /// `go version` of the toolchain that built it.
    pub go: String,
    /// Binary name -> SHA-256 hex.
    pub digests: BTreeMap<String, String>,
}

/// A verified build: its binaries are in `bin`.
#[derive(Debug, Clone)]
pub struct Built {
    pub bin: PathBuf,
    pub completion: Completion,
}

impl Built {
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
}

/// Where peers are cached: `peers/` in the node cache (`$REVIVE_CACHE_DIR`).
pub fn cache_dir() -> PathBuf {
    rootfs::cache_dir().join("peers")
}

/// Returns a verified build of `peer`, building it first if the cache has none. Concurrent
/// callers wait for one build.
pub fn ensure(peer: &Peer) -> Result<Built> {
    ensure_in(&cache_dir(), peer)
}

/// [`ensure`] with the cache in `cache`.
pub fn ensure_in(cache: &Path, peer: &Peer) -> Result<Built> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    fs::set_permissions(cache, fs::Permissions::from_mode(0o700))?;
    let prefix = format!("{}-{}-", peer.name, peer.version);
    let _lock = FileLock::acquire(&cache.join(format!("{}-{}.lock", peer.name, peer.version)))?;
    let key = peer.key();
    let entry = cache.join(format!("{prefix}{key}"));
    if entry.exists() {
        match verify_entry(&entry, &key) {
            Ok(completion) => {
                return Ok(Built {
                    bin: entry.join("bin"),
                    completion,
                });
            }
            Err(err) => eprintln!(
                "revive: cached {} {} is unusable ({err:#}); rebuilding it",
                peer.name, peer.version
            ),
        }
    }
    for dirent in fs::read_dir(cache)?.flatten() {
        let name = dirent.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && dirent.path().is_dir() {
            rootfs::remove_tree(&dirent.path())?;
        }
    }
    let partial = cache.join(format!("{prefix}{key}.partial"));
    // One Go build at a time: they share Go's caches, which [`drop_build_cache`] removes.
    let _go = FileLock::acquire(&cache.join(GO_BUILD_LOCK))?;
    build(cache, peer, &key, &partial)?;
    fs::rename(&partial, &entry)?;
    let completion = verify_entry(&entry, &key)?;
    Ok(Built {
        bin: entry.join("bin"),
        completion,
    })
}

/// Removes Go's build cache (gigabytes) once a flavour's peers are all built; the module
/// downloads stay, so a new version rebuilds without downloading what it shares.
pub fn drop_build_cache(cache: &Path) {
    let build = cache.join("go/build");
    if build.exists() {
        let _lock = match FileLock::try_acquire(&cache.join(GO_BUILD_LOCK)) {
            Ok(Some(lock)) => lock,
            _ => return,
        };
        if let Err(e) = fs::remove_dir_all(&build) {
            eprintln!(
                "revive: could not remove Go's build cache {}: {e}",
                build.display()
            );
        }
    }
}

/// Checks a cache entry: its record exists, matches `key`, and every binary matches its
/// recorded digest.
pub fn verify_entry(entry: &Path, key: &str) -> Result<Completion> {
    let completion: Completion = rootfs::read_record(entry, key, |c: &Completion| &c.key)?;
    let record = entry.join("complete.json");
    if completion.digests.len() != completion.peer.binaries().len() {
        bail!("{} does not record every binary", record.display());
    }
    let recorded = completion.digests.keys().map(String::as_str);
    rootfs::check_digests(&entry.join("bin"), &record, recorded, &completion.digests)?;
    Ok(completion)
}

/// The host's `go version` line, or what to install.
pub fn go_version() -> Result<String> {
    let out = Command::new("go").arg("version").output().context(
        "the Go toolchain (`go`) is not installed: test peers (containerd, runc, crictl, the \
         kubelet) are built from their Go modules; install Go >= 1.26.8 and retry",
    )?;
    if !out.status.success() {
        bail!(
            "`go version` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn go(cache: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(dir)
        .env("GOMODCACHE", cache.join("go/mod"))
        .env("GOCACHE", cache.join("go/build"))
        .env("GOPATH", cache.join("go/path"))
        .env("GOFLAGS", "-buildvcs=false -mod=mod")
        // A module asking for a newer Go fails with what to install, never fetches one.
        .env("GOTOOLCHAIN", "local")
        .env_remove("GOBIN")
        .env_remove("GOOS")
        .env_remove("GOARCH");
    cmd
}

fn build(cache: &Path, peer: &Peer, key: &str, dir: &Path) -> Result<()> {
    rootfs::remove_tree(dir)?;
    let bin = dir.join("bin");
    let work = dir.join("work");
    fs::create_dir_all(&bin)?;
    fs::create_dir_all(&work)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let log = dir.join("build.log");
    let go_version = go_version()?;
    eprintln!(
        "revive: building {} {} from its Go module with {go_version}; this happens once per \
         version (minutes on 2 cores), log: {}",
        peer.name,
        peer.version,
        log.display()
    );
    if let Some(test) = &peer.test {
        build_test(cache, peer, test, &work, &bin, &log)?;
        return finish(dir, peer, key, go_version, &bin, &work);
    }
    let module_dir = match &peer.staging_version {
        None => None,
        Some(staging) => Some(wrapper_module(cache, peer, staging, &work, &log)?),
    };
    let mut cmd = go(cache, module_dir.as_deref().unwrap_or(&work));
    cmd.env("CGO_ENABLED", if peer.cgo { "1" } else { "0" });
    let tags = peer.tags.join(" ");
    let paths = peer.import_paths();
    if module_dir.is_some() {
        cmd.args(["build", "-trimpath", "-o"]).arg(&bin);
        cmd.args(["-tags", &tags, "-ldflags", &peer.ldflags]);
        cmd.args(&paths);
    } else {
        cmd.env("GOBIN", &bin);
        cmd.args([
            "install",
            "-trimpath",
            "-tags",
            &tags,
            "-ldflags",
            &peer.ldflags,
        ]);
        cmd.args(paths.iter().map(|p| format!("{p}@{}", peer.version)));
    }
    rootfs::run_logged(
        &mut cmd,
        &log,
        &format!("building {} {}", peer.name, peer.version),
    )?;
    finish(dir, peer, key, go_version, &bin, &work)
}

/// Records a finished build in `dir`: the digests of its binaries in `complete.json`.
fn finish(
    dir: &Path,
    peer: &Peer,
    key: &str,
    go_version: String,
    bin: &Path,
    work: &Path,
) -> Result<()> {
    let mut digests = BTreeMap::new();
    for name in peer.binaries() {
        let path = bin.join(&name);
        if !path.is_file() {
            bail!("building {} left no {name} in {}", peer.name, bin.display());
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        digests.insert(name, rootfs::sha256_file(&path)?);
    }
    rootfs::remove_tree(work)?;
    let completion = Completion {
        key: key.to_string(),
        peer: peer.clone(),
        go: go_version,
        digests,
    };
    rootfs::write_completion(dir, &completion)?;
    Ok(())
}

/// Builds the test binary of `test` into `bin`: its sources in `work` with a go.mod that
/// requires `peer.module` at `peer.version` (`go mod tidy` fills in the rest from that
/// version's own requirements), then `go test -c`.
fn build_test(
    cache: &Path,
    peer: &Peer,
    test: &GoTest,
    work: &Path,
    bin: &Path,
    log: &Path,
) -> Result<()> {
    let sources = go_test_sources(&test.dir);
    if sources.is_empty() {
        bail!(
            "no Go test module integration/go/{} is compiled in",
            test.dir
        );
    }
    for (name, text) in sources {
        fs::write(work.join(name), text)?;
    }
    fs::write(
        work.join("go.mod"),
        format!(
            "module revive.test/{}\n\ngo {MIN_GO}\n\nrequire {} {}\n",
            test.dir, peer.module, peer.version
        ),
    )?;
    let what = format!(
        "building {} against {} {}",
        peer.name, peer.module, peer.version
    );
    rootfs::run_logged(go(cache, work).args(["mod", "tidy"]), log, &what)?;
    let mut cmd = go(cache, work);
    cmd.env("CGO_ENABLED", if peer.cgo { "1" } else { "0" });
    cmd.args(["test", "-c", "-trimpath", "-o"])
        .arg(bin.join(format!("{}.test", peer.name)));
    cmd.args([
        "-tags",
        &peer.tags.join(" "),
        "-ldflags",
        &peer.ldflags,
        ".",
    ]);
    rootfs::run_logged(&mut cmd, log, &what)
}

/// A module requiring `peer.module` whose go.mod pins every module the peer's own go.mod
/// replaces with a local path (`./staging/...`) to `staging`, so `go build` can resolve it.
fn wrapper_module(
    cache: &Path,
    peer: &Peer,
    staging: &str,
    work: &Path,
    log: &Path,
) -> Result<PathBuf> {
    let out = go(cache, work)
        .args(["mod", "download", "-json"])
        .arg(format!("{}@{}", peer.module, peer.version))
        .output()
        .context("running go mod download")?;
    if !out.status.success() {
        bail!(
            "go mod download {}@{} failed: {}{}",
            peer.module,
            peer.version,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Download {
        go_mod: PathBuf,
    }
    let download: Download =
        serde_json::from_slice(&out.stdout).context("reading go mod download's answer")?;
    let upstream = fs::read_to_string(&download.go_mod)
        .with_context(|| format!("reading {}", download.go_mod.display()))?;
    let replaced = local_replacements(&upstream);
    if replaced.is_empty() {
        bail!(
            "{}@{}'s go.mod replaces no module with a local path: build it with go install",
            peer.module,
            peer.version
        );
    }
    let mut text = format!(
        "module revive.test/build-{}\n\ngo {}\n\nrequire {} {}\n\n",
        peer.name, MIN_GO, peer.module, peer.version
    );
    for module in &replaced {
        text.push_str(&format!("replace {module} => {module} {staging}\n"));
    }
    fs::write(work.join("go.mod"), text)?;
    fs::write(
        log,
        format!(
            "wrapper go.mod pins {} modules to {staging}\n",
            replaced.len()
        ),
    )?;
    Ok(work.to_path_buf())
}

/// The modules a go.mod replaces with local paths (`k8s.io/api => ./staging/src/k8s.io/api`).
pub fn local_replacements(go_mod: &str) -> Vec<String> {
    let mut in_block = false;
    let mut out = Vec::new();
    for line in go_mod.lines() {
        let line = line.trim();
        let body = if in_block {
            if line == ")" {
                in_block = false;
                continue;
            }
            line
        } else if line == "replace (" {
            in_block = true;
            continue;
        } else if let Some(rest) = line.strip_prefix("replace ") {
            rest
        } else {
            continue;
        };
        let Some((from, to)) = body.split_once("=>") else {
            continue;
        };
        let to = to.trim();
        if (to.starts_with("./") || to.starts_with("../"))
            && let Some(module) = from.split_whitespace().next()
        {
            out.push(module.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_local_replacements_only() {
        let go_mod = "module k8s.io/kubernetes\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\
                      \tgithub.com/x/y v1.0.0 => github.com/x/y v1.0.1\n)\n\
                      replace k8s.io/kubelet => ./staging/src/k8s.io/kubelet\n";
        assert_eq!(
            local_replacements(go_mod),
            vec!["k8s.io/api".to_string(), "k8s.io/kubelet".to_string()]
        );
    }

    #[test]
    fn binaries_are_named_after_their_packages() {
        assert_eq!(
            Peer::containerd("v2.3.7").binaries(),
            ["containerd", "ctr", "containerd-shim-runc-v2"]
        );
        assert_eq!(Peer::runc("v1.5.3").binaries(), ["runc"]);
        assert_eq!(
            Peer::kubelet("v1.37.2").staging_version.as_deref(),
            Some("v0.37.2")
        );
    }

    fn fake_entry(dir: &Path, peer: &Peer) {
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::write(dir.join("bin/runc"), b"runc bytes").unwrap();
        let completion = Completion {
            key: peer.key(),
            peer: peer.clone(),
            go: "go version go1.26.8 linux/amd64".into(),
            digests: [(
                "runc".to_string(),
                rootfs::sha256_file(&dir.join("bin/runc")).unwrap(),
            )]
            .into(),
        };
        fs::write(
            dir.join("complete.json"),
            serde_json::to_vec(&completion).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn a_corrupt_or_unfinished_build_is_never_used() {
        let peer = Peer::runc("v1.5.3");
        let dir = tempfile::tempdir().unwrap();
        fake_entry(dir.path(), &peer);
        verify_entry(dir.path(), &peer.key()).unwrap();
        assert!(verify_entry(dir.path(), &Peer::runc("v1.5.2").key()).is_err());
        fs::write(dir.path().join("bin/runc"), b"truncated").unwrap();
        let err = verify_entry(dir.path(), &peer.key())
            .unwrap_err()
            .to_string();
        assert!(err.contains("corrupt"), "{err}");
        fs::remove_file(dir.path().join("complete.json")).unwrap();
        let err = verify_entry(dir.path(), &peer.key())
            .unwrap_err()
            .to_string();
        assert!(err.contains("never finished"), "{err}");
    }

    #[test]
    fn a_go_test_is_keyed_by_its_sources_and_programs_are_not_rekeyed() {
        let suite = Peer::snapshotter_suite("v2.3.7");
        assert_eq!(suite.binaries(), ["snapshotter-suite.test"]);
        assert_ne!(suite.key(), Peer::snapshotter_suite("v2.4.2").key());
        let mut edited = suite.clone();
        if let Some(test) = &mut edited.test {
            test.digest = "0".repeat(64);
        }
        assert_ne!(edited.key(), suite.key());
        // Programs serialize as before the field existed, so their cached builds stay valid.
        let containerd = serde_json::to_string(&Peer::containerd("v2.3.7")).unwrap();
        assert!(!containerd.contains("\"test\""), "{containerd}");
    }

    #[test]
    fn keys_change_with_the_version() {
        assert_ne!(Peer::runc("v1.5.3").key(), Peer::runc("v1.5.2").key());
    }
}
