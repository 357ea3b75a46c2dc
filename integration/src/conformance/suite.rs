//! The suite: containerd's `integration/client` test binary for exactly the node's
//! containerd version, built from its Go module or from Debian's sources, cached on the host.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::node::{Node, tail};
use crate::rootfs::{self, FileLock, Flavour, Rootfs, sha256_file};

use super::*;

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
    let record: SuiteRecord = rootfs::read_record(dir, key, |r: &SuiteRecord| &r.key)?;
    let path = dir.join("complete.json");
    rootfs::check_digests(dir, &path, SUITE_FILES.iter().copied(), &record.digests)?;
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
    // Built from the root's [`SuiteSource`] in `<cache>/builder-<flavour>`, which is never
    // kept: the binary is all runs need.
    let started = Instant::now();
    let containerd = containerd_version(root)?;
    let base = cache.join(format!("builder-{}", root.flavour));
    rootfs::remove_tree(&base)?;
    let built = match suite_source(root)? {
        SuiteSource::Debian => build_suite_debian(root, &containerd, &base, progress)?,
        SuiteSource::Module {
            module,
            version,
            peers,
        } => build_suite_from_module(&base, &module, &version, &peers, progress)?,
    };
    let record = store_suite(root, &key, &dir, &containerd, started, built)?;
    rootfs::remove_tree(&base)?;
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
    base: &Path,
    module: &str,
    version: &str,
    peers: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Built> {
    let go = crate::peers::go_version()?;
    let (src, out, gocache) = (base.join("src"), base.join("out"), base.join("gocache"));
    for d in [&out, &gocache] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    fs::set_permissions(base, fs::Permissions::from_mode(0o700))?;
    let log_path = base.join("build.log");
    progress(&format!(
        "building containerd's integration/client tests from {module}@{version} with {go} \
         (2-3 minutes on 2 cores; log: {})",
        log_path.display()
    ));
    let built = build_module_suite(module, version, peers, base, &log_path);
    // The source copy and the build cache (gigabytes) are never kept; a failed build's log is.
    for tree in [&src, &gocache] {
        rootfs::remove_tree(tree)?;
    }
    built?;
    Ok(Built {
        out,
        source: format!("{module}@{version} (its Go module)"),
        go,
        log: fs::read_to_string(&log_path).unwrap_or_default(),
    })
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
    containerd: &str,
    base: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Built> {
    // containerd 2.x's Go import path carries the major version.
    let import = if containerd.starts_with("1.") {
        "github.com/containerd/containerd"
    } else {
        "github.com/containerd/containerd/v2"
    };
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
        base,
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
        let files = source_files(&showsrc, containerd).with_context(|| {
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
        base,
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
    Ok(Built {
        out: upper.join("root/out"),
        source,
        go,
        log,
    })
}

/// A finished build: its files in `out` (which also holds `tests.txt`, the test binary's
/// `-test.list`), where they came from, the toolchain and the build's log.
struct Built {
    out: PathBuf,
    source: String,
    go: String,
    log: String,
}

/// Copies a build's [`SUITE_FILES`] into the cache entry `dir`, with their digests and the
/// build log; `complete.json` is written last, and the entry appears whole (renamed into
/// place).
fn store_suite(
    root: &Rootfs,
    key: &str,
    dir: &Path,
    containerd: &str,
    started: Instant,
    built: Built,
) -> Result<SuiteRecord> {
    let out = &built.out;
    let tests: Vec<String> = fs::read_to_string(out.join("tests.txt"))?
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Test"))
        .map(str::to_string)
        .collect();
    if tests.is_empty() {
        bail!("the built suite lists no tests:\n{}", tail(&built.log, 40));
    }
    let partial = dir.with_extension("partial");
    if partial.exists() {
        fs::remove_dir_all(&partial)?;
    }
    fs::create_dir_all(&partial)?;
    for file in SUITE_FILES {
        fs::copy(out.join(file), partial.join(file))?;
    }
    let digests = rootfs::digest_files(&partial, SUITE_FILES)?;
    fs::write(partial.join("build.log"), &built.log)?;
    let record = SuiteRecord {
        key: key.to_string(),
        flavour: root.flavour,
        containerd: containerd.to_string(),
        source: built.source,
        go: built.go,
        tests,
        digests,
        build_seconds: started.elapsed().as_secs_f64(),
    };
    rootfs::write_completion(&partial, &record)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
