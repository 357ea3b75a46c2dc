//! Debian root filesystems for nodes: built once with debootstrap, cached, verified on use.
//!
//! A cache entry is `<cache>/<flavour>-<key>/` holding `rootfs/` and `complete.json`. The key
//! hashes everything the build depends on (suite, package lists, build recipe version), so a
//! changed package list builds a new root. `complete.json` is written last, after the build
//! succeeded, and records SHA-256 digests of the files nodes depend on; an entry without it, or
//! whose files no longer match, is removed and rebuilt, never used.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::mounts;
use crate::peers::{self, Built, Peer};

/// Bumped whenever the build recipe below changes in a way the package lists do not show.
const RECIPE_VERSION: u32 = 1;

/// Packages every node gets.
const COMMON_PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "crun",
    "criu",
    "busybox-static",
    "iptables",
    "iproute2",
    "procps",
    "ca-certificates",
    // containerd's integration/client tests count a daemon's pipes with it (make conformance).
    "lsof",
];

/// Files whose digests are recorded at build time and checked on every use.
const VERIFIED_FILES: &[&str] = &[
    "usr/bin/containerd",
    "usr/bin/ctr",
    "usr/bin/containerd-shim-runc-v2",
    "usr/sbin/runc",
    "usr/sbin/criu",
    "bin/busybox",
    "var/lib/dpkg/status",
];

/// Packages whose versions a node reports (docs/support.md, test output).
pub const REPORTED_PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "criu",
    "crun",
    "busybox-static",
    "crictl",
    "kubelet",
];

/// The containerd releases nodes run (docs/support.md).
pub const CONTAINERD_LTS: &str = "v2.3.7";
pub const CONTAINERD_LATEST: &str = "v2.4.2";
/// The runc the 2.x flavours run: the newest release of the newest supported runc minor.
pub const RUNC: &str = "v1.5.3";
pub const CRICTL: &str = "v1.37.0";
/// The Kubernetes release of the kubelet and of the clusters' kube-apiserver.
pub const KUBERNETES: &str = "v1.37.2";

/// The kinds of node end-to-end tests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// Debian trixie: what Debian stable users run, containerd 1.7 and runc 1.1 (with CRIU
    /// taken from sid).
    Stable,
    /// containerd 2.3, the long-term support release, built from its Go module, on a sid
    /// root (CRIU 4.2, crun, podman and friends), with runc, crictl and the kubelet.
    Lts,
    /// containerd 2.4, the newest release, otherwise as [`Flavour::Lts`].
    Latest,
}

impl Flavour {
    pub const ALL: [Flavour; 3] = [Flavour::Stable, Flavour::Lts, Flavour::Latest];

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Stable => "stable",
            Flavour::Lts => "lts",
            Flavour::Latest => "latest",
        }
    }

    /// The Debian root the flavour's nodes run on; flavours that differ only in the
    /// programs built from Go modules share one.
    pub fn base(self) -> Base {
        match self {
            Flavour::Stable => Base::Trixie,
            Flavour::Lts | Flavour::Latest => Base::Sid,
        }
    }

    pub fn recipe(self) -> Recipe {
        self.base().recipe()
    }

    /// The programs built from Go modules that replace the root's packaged ones.
    pub fn peers(self) -> Vec<Peer> {
        let containerd = match self {
            Flavour::Stable => return Vec::new(),
            Flavour::Lts => CONTAINERD_LTS,
            Flavour::Latest => CONTAINERD_LATEST,
        };
        vec![
            Peer::containerd(containerd),
            Peer::runc(RUNC),
            Peer::crictl(CRICTL),
            Peer::kubelet(KUBERNETES),
            Peer::kube_apiserver(KUBERNETES),
        ]
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Debian root filesystem nodes are built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// Debian trixie (stable) with CRIU from sid.
    Trixie,
    /// Debian sid, with podman, buildah, skopeo, checkpointctl, a registry, etcd, kubectl,
    /// the CNI plugins and Redis.
    Sid,
}

impl Base {
    pub fn name(self) -> &'static str {
        match self {
            Base::Trixie => "trixie",
            Base::Sid => "sid",
        }
    }

    pub fn recipe(self) -> Recipe {
        let mut packages: Vec<String> = COMMON_PACKAGES.iter().map(|s| s.to_string()).collect();
        match self {
            Base::Trixie => {
                // The registry `make conformance` serves the containerd tests' images from
                // (sid has these already). skopeo needs a container-network-stack, a virtual
                // package debootstrap cannot resolve: netavark provides it, as on sid.
                packages.extend(
                    ["docker-registry", "skopeo", "netavark", "openssl"]
                        .iter()
                        .map(|s| s.to_string()),
                );
                Recipe {
                    suite: "trixie".into(),
                    packages,
                    // trixie's CRIU 4.1.1 cannot dump real processes on current kernels.
                    from_sid: vec!["criu".into()],
                }
            }
            Base::Sid => {
                packages.extend(
                    [
                        "podman",
                        "buildah",
                        "skopeo",
                        "checkpointctl",
                        "docker-registry",
                        // The harness's clusters: etcd under kube-apiserver, kubectl, and
                        // the CNI plugins of the workers' pod networks.
                        "etcd-server",
                        "kubernetes-client",
                        "containernetworking-plugins",
                        // The Redis pod the clusters move (its binaries, in an image).
                        "redis-server",
                    ]
                    .iter()
                    .map(|s| s.to_string()),
                );
                Recipe {
                    suite: "sid".into(),
                    packages,
                    from_sid: Vec::new(),
                }
            }
        }
    }
}

impl std::fmt::Display for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a root filesystem is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    pub suite: String,
    pub packages: Vec<String>,
    /// Packages installed afterwards from sid (`apt-get -t sid install`).
    pub from_sid: Vec<String>,
}

impl Recipe {
    /// The cache key: a digest of everything the build depends on.
    pub fn key(&self) -> String {
        let text =
            serde_json::to_string(&(RECIPE_VERSION, self)).expect("a recipe always serializes");
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }
}

/// What `complete.json` records about a finished build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Completion {
    pub key: String,
    pub recipe: Recipe,
    pub mirror: String,
    /// Package name -> installed version.
    pub versions: BTreeMap<String, String>,
    /// Path relative to the rootfs -> SHA-256 hex.
    pub digests: BTreeMap<String, String>,
}

/// A verified, ready root filesystem.
#[derive(Debug, Clone)]
pub struct Rootfs {
    pub flavour: Flavour,
    pub path: PathBuf,
    /// The base root's record, with the versions of [`Rootfs::peers`] in place of the
    /// packaged programs they replace.
    pub completion: Completion,
    /// Programs built from Go modules, installed over the root's own in every node.
    pub peers: Vec<Built>,
}

/// Where root filesystems are cached: `$REVIVE_CACHE_DIR`, else /var/cache/revive/nodes.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("REVIVE_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/revive/nodes"))
}

/// The SHA-256 of a file, by coreutils' sha256sum where there is one (a guest's disk image
/// is hundreds of MiB, which the harness's own unoptimized build hashes slowly), else by the
/// harness.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    if let Ok(out) = Command::new("sha256sum").arg(path).output()
        && out.status.success()
        && let Some(hex) = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
        && hex.len() == 64
    {
        return Ok(hex.to_string());
    }
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Digests of `files` (relative to `root`).
pub fn digest_files(root: &Path, files: &[&str]) -> Result<BTreeMap<String, String>> {
    files
        .iter()
        .map(|rel| Ok((rel.to_string(), sha256_file(&root.join(rel))?)))
        .collect()
}

/// A cache entry's `complete.json`, which must exist (it is written last) and record `key`.
pub(crate) fn read_record<T: serde::de::DeserializeOwned>(
    entry: &Path,
    key: &str,
    key_of: impl Fn(&T) -> &str,
) -> Result<T> {
    let record = entry.join("complete.json");
    let text = fs::read_to_string(&record)
        .with_context(|| format!("{} is missing: the build never finished", record.display()))?;
    let completion: T = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid completion record", record.display()))?;
    if key_of(&completion) != key {
        bail!(
            "{} records key {}, expected {key}",
            record.display(),
            key_of(&completion)
        );
    }
    Ok(completion)
}

/// Checks that each of `files` (relative to `dir`) still has the digest `digests` records
/// for it in `record`.
pub(crate) fn check_digests<'a>(
    dir: &Path,
    record: &Path,
    files: impl IntoIterator<Item = &'a str>,
    digests: &BTreeMap<String, String>,
) -> Result<()> {
    for file in files {
        let want = digests
            .get(file)
            .with_context(|| format!("{} records no digest of {file}", record.display()))?;
        let got = sha256_file(&dir.join(file))?;
        if &got != want {
            bail!(
                "{}/{file} is corrupt: sha256 {got}, recorded {want}",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Checks a cache entry: its completion record exists, matches `key`, and every recorded
/// digest still matches the file. Returns the record, or why the entry cannot be used.
pub fn verify_entry(entry: &Path, key: &str) -> Result<Completion> {
    let completion: Completion = read_record(entry, key, |c: &Completion| &c.key)?;
    let record = entry.join("complete.json");
    if completion.digests.is_empty() {
        bail!("{} records no digests", record.display());
    }
    let recorded = completion.digests.keys().map(String::as_str);
    check_digests(
        &entry.join("rootfs"),
        &record,
        recorded,
        &completion.digests,
    )?;
    Ok(completion)
}

/// Removes a directory tree, refusing if anything is mounted inside it (an `rm -rf` through
/// a bind mount of /dev would destroy the host's device nodes).
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let below = mounts::mounts_below(dir)?;
    if !below.is_empty() {
        bail!(
            "refusing to remove {}: mounts inside it: {:?}",
            dir.display(),
            below.iter().map(|m| &m.mount_point).collect::<Vec<_>>()
        );
    }
    fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// The Debian mirror the host's apt uses (read from its sources), so nodes fetch packages
/// from the same place the host does.
pub fn host_mirror() -> Result<String> {
    if let Some(mirror) = std::env::var_os("REVIVE_DEBIAN_MIRROR") {
        return Ok(mirror.to_string_lossy().into_owned());
    }
    let mut texts = Vec::new();
    for path in ["/etc/apt/sources.list"] {
        if let Ok(text) = fs::read_to_string(path) {
            texts.push(text);
        }
    }
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let name = path.to_string_lossy();
            if (name.ends_with(".list") || name.ends_with(".sources"))
                && let Ok(text) = fs::read_to_string(&path)
            {
                texts.push(text);
            }
        }
    }
    texts.iter().find_map(|t| mirror_from_sources(t)).context(
        "could not find a Debian mirror in the host's apt sources (/etc/apt/sources.list, \
             /etc/apt/sources.list.d); set REVIVE_DEBIAN_MIRROR to one",
    )
}

/// Finds the first Debian archive URI (not security, not another vendor) in an apt
/// sources text, one-line (`deb URI suite ...`) or deb822 (`URIs: ...`) style.
pub fn mirror_from_sources(text: &str) -> Option<String> {
    let is_debian = |uri: &str| {
        (uri.starts_with("http://") || uri.starts_with("https://") || uri.starts_with("file:/"))
            && !uri.contains("security")
            && uri.trim_end_matches('/').ends_with("/debian")
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let uris: Vec<&str> = if let Some(rest) = line.strip_prefix("URIs:") {
            rest.split_whitespace().collect()
        } else if line.starts_with("deb ") {
            line.split_whitespace()
                .skip(1)
                .filter(|w| !w.starts_with('['))
                .take(1)
                .collect()
        } else {
            continue;
        };
        if let Some(uri) = uris.into_iter().find(|u| is_debian(u)) {
            return Some(uri.trim_end_matches('/').to_string());
        }
    }
    None
}

/// Holds an exclusive lock (flock) on a file for as long as it lives: a cache entry being
/// built, a running node. The kernel releases it when its holder dies, however it dies.
pub(crate) struct FileLock(#[allow(dead_code)] fs::File);

impl FileLock {
    fn open(path: &Path) -> Result<fs::File> {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening lock {}", path.display()))
    }

    /// Waits for the lock.
    pub(crate) fn acquire(path: &Path) -> Result<FileLock> {
        let file = Self::open(path)?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(FileLock(file))
    }

    /// Takes the lock if nobody holds it; `None` when somebody does.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock(file))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(err)) => {
                Err(err).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

/// Returns a verified root filesystem for `flavour`, building its base root and its peers
/// first if the cache has no usable ones. Concurrent callers (parallel tests) wait for one
/// build.
pub fn ensure(flavour: Flavour) -> Result<Rootfs> {
    ensure_in(&cache_dir(), flavour)
}

/// [`ensure`] with the cache in `cache`.
pub fn ensure_in(cache: &Path, flavour: Flavour) -> Result<Rootfs> {
    let (path, mut completion) = ensure_base(cache, flavour.base())?;
    let mut built = Vec::new();
    let peer_cache = cache.join("peers");
    for peer in flavour.peers() {
        let b = peers::ensure_in(&peer_cache, &peer)?;
        completion.versions.insert(
            peer.name.clone(),
            peer.version.trim_start_matches('v').to_string(),
        );
        built.push(b);
    }
    peers::drop_build_cache(&peer_cache);
    Ok(Rootfs {
        flavour,
        path,
        completion,
        peers: built,
    })
}

/// The verified base root `base` in `cache`, built first if needed.
fn ensure_base(cache: &Path, base: Base) -> Result<(PathBuf, Completion)> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    fs::set_permissions(cache, fs::Permissions::from_mode(0o700))?;
    let _lock = FileLock::acquire(&cache.join(format!("{base}.lock")))?;
    let recipe = base.recipe();
    let key = recipe.key();
    let entry = cache.join(format!("{base}-{key}"));
    if entry.exists() {
        match verify_entry(&entry, &key) {
            Ok(completion) => return Ok((entry.join("rootfs"), completion)),
            Err(err) => {
                eprintln!("revive: cached {base} node root is unusable ({err:#}); rebuilding it");
            }
        }
    }
    // Remove this base's stale entries: old keys, unfinished builds, the corrupt one.
    for dirent in fs::read_dir(cache)?.flatten() {
        let name = dirent.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{base}-")) && dirent.path().is_dir() {
            remove_tree(&dirent.path())?;
        }
    }
    let mirror = host_mirror()?;
    let partial = cache.join(format!("{base}-{key}.partial"));
    build(base, &recipe, &key, &mirror, &partial)?;
    fs::rename(&partial, &entry)?;
    let completion = verify_entry(&entry, &key)?;
    Ok((entry.join("rootfs"), completion))
}

pub(crate) fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .env_remove("CONTAINER")
        .status()
        .with_context(|| format!("{what}: could not run {:?}", cmd.get_program()))?;
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{what} failed ({status}); last lines of {}:\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

fn build(flavour: Base, recipe: &Recipe, key: &str, mirror: &str, dir: &Path) -> Result<()> {
    remove_tree(dir)?;
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let rootfs = dir.join("rootfs");
    let log = dir.join("build.log");
    eprintln!(
        "revive: building the {flavour} node root (Debian {}, {} packages) from {mirror}; \
         this happens once per package list (about 1-2 minutes), log: {}",
        recipe.suite,
        recipe.packages.len(),
        log.display()
    );
    debootstrap(
        &recipe.suite,
        &recipe.packages,
        &rootfs,
        mirror,
        &log,
        "debootstrap",
    )?;
    if !recipe.from_sid.is_empty() {
        install_from_sid(
            &rootfs,
            &recipe.from_sid,
            mirror,
            &log,
            "installing packages from sid",
        )?;
    }
    // Drop downloaded packages and lists: they are not needed to run a node.
    for sub in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let path = rootfs.join(sub);
        if let Ok(entries) = fs::read_dir(&path) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
    let versions = installed_versions(&rootfs)?;
    for pkg in &recipe.packages {
        if !versions.contains_key(pkg) && REPORTED_PACKAGES.contains(&pkg.as_str()) {
            bail!("{pkg} is not installed in the {flavour} root after the build");
        }
    }
    let completion = Completion {
        key: key.to_string(),
        recipe: recipe.clone(),
        mirror: mirror.to_string(),
        versions,
        digests: digest_files(&rootfs, VERIFIED_FILES)?,
    };
    write_completion(dir, &completion)?;
    eprintln!(
        "revive: {flavour} node root ready: {}",
        versions_line(&completion.versions)
    );
    Ok(())
}

/// Writes `completion` as `dir/complete.json`, whole or not at all: a root whose
/// `complete.json` exists is finished.
pub(crate) fn write_completion(dir: &Path, completion: &impl Serialize) -> Result<()> {
    let tmp = dir.join("complete.json.tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(serde_json::to_string_pretty(completion)?.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join("complete.json"))?;
    Ok(())
}

/// `debootstrap --variant=minbase` of `suite` with `packages` into `target`. debootstrap mounts
/// /proc and /sys inside the target; a private mount namespace makes sure nothing it mounts
/// outlives it, even when it fails half-way.
pub(crate) fn debootstrap(
    suite: &str,
    packages: &[String],
    target: &Path,
    mirror: &str,
    log: &Path,
    what: &str,
) -> Result<()> {
    run_logged(
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "debootstrap",
                "--variant=minbase",
            ])
            .arg(format!("--include={}", packages.join(",")))
            .arg(suite)
            .arg(target)
            .arg(mirror),
        log,
        what,
    )
}

/// Installs `packages` from sid into the root `root` (`apt-get -t sid`, in a chroot with
/// private mount and pid namespaces), then removes the sid source again. sid's Release file
/// can be past its Valid-Until date, which debootstrap does not check either.
pub(crate) fn install_from_sid(
    root: &Path,
    packages: &[String],
    mirror: &str,
    log: &Path,
    what: &str,
) -> Result<()> {
    let list = root.join("etc/apt/sources.list.d/revive-sid.list");
    fs::write(&list, format!("deb {mirror} sid main\n"))?;
    let script = format!(
        "set -e; mount -t proc proc /proc; \
         apt-get -o Acquire::Check-Valid-Until=false update -qq; \
         DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false \
         install -y -qq --no-install-recommends -t sid {}; apt-get clean",
        packages.join(" ")
    );
    run_logged(
        Command::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--propagation",
                "private",
                "chroot",
            ])
            .arg(root)
            .args(["sh", "-c", &script]),
        log,
        what,
    )?;
    fs::remove_file(&list)?;
    Ok(())
}

/// Reads installed package versions from the root's dpkg status file.
pub fn installed_versions(rootfs: &Path) -> Result<BTreeMap<String, String>> {
    let status = fs::read_to_string(rootfs.join("var/lib/dpkg/status"))
        .context("reading the root's dpkg status")?;
    Ok(parse_dpkg_status(&status))
}

/// Package -> version for every installed package in a dpkg status text.
pub fn parse_dpkg_status(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let (Some(pkg), Some(version), Some(status)) =
            (field("Package:"), field("Version:"), field("Status:"))
        else {
            continue;
        };
        if status.ends_with(" installed") {
            out.insert(pkg, version);
        }
    }
    out
}

/// "containerd 1.7.24, runc 1.1.15, ..." for the packages in [`REPORTED_PACKAGES`].
pub fn versions_line(versions: &BTreeMap<String, String>) -> String {
    REPORTED_PACKAGES
        .iter()
        .filter_map(|p| versions.get(*p).map(|v| format!("{p} {v}")))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_package_list() {
        let a = Flavour::Stable.recipe();
        let mut b = a.clone();
        b.packages.push("strace".into());
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key(), Flavour::Stable.recipe().key());
        assert_ne!(Flavour::Stable.recipe().key(), Flavour::Lts.recipe().key());
        assert_eq!(Flavour::Lts.recipe().key(), Flavour::Latest.recipe().key());
    }

    fn fake_entry(dir: &Path, key: &str) {
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::write(rootfs.join("bin/busybox"), b"busybox bytes").unwrap();
        let completion = Completion {
            key: key.into(),
            recipe: Flavour::Lts.recipe(),
            mirror: "http://mirror/debian".into(),
            versions: BTreeMap::new(),
            digests: digest_files(&rootfs, &["bin/busybox"]).unwrap(),
        };
        fs::write(
            dir.join("complete.json"),
            serde_json::to_string(&completion).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn intact_entry_verifies() {
        let dir = tempfile::tempdir().unwrap();
        fake_entry(dir.path(), "k1");
        verify_entry(dir.path(), "k1").unwrap();
    }

    #[test]
    fn half_built_entry_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        fake_entry(dir.path(), "k1");
        fs::remove_file(dir.path().join("complete.json")).unwrap();
        let err = verify_entry(dir.path(), "k1").unwrap_err().to_string();
        assert!(err.contains("never finished"), "{err}");
    }

    #[test]
    fn corrupt_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        fake_entry(dir.path(), "k1");
        fs::write(dir.path().join("rootfs/bin/busybox"), b"truncated").unwrap();
        let err = verify_entry(dir.path(), "k1").unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn missing_file_and_wrong_key_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        fake_entry(dir.path(), "k1");
        assert!(verify_entry(dir.path(), "k2").is_err());
        fs::remove_file(dir.path().join("rootfs/bin/busybox")).unwrap();
        assert!(verify_entry(dir.path(), "k1").is_err());
        fs::write(dir.path().join("complete.json"), b"{not json").unwrap();
        assert!(verify_entry(dir.path(), "k1").is_err());
    }

    #[test]
    fn mirror_is_read_from_both_source_styles() {
        let deb822 = "Types: deb\n# URIs: http://old/debian\nURIs: http://deb.example.org/debian/\nSuites: bookworm\n\nTypes: deb\nURIs: http://deb.example.org/debian-security\n";
        assert_eq!(
            mirror_from_sources(deb822).as_deref(),
            Some("http://deb.example.org/debian")
        );
        let one_line = "deb [arch=amd64] http://ftp.example.net/debian bookworm main\n";
        assert_eq!(
            mirror_from_sources(one_line).as_deref(),
            Some("http://ftp.example.net/debian")
        );
        assert_eq!(
            mirror_from_sources("deb https://packages.vendor.com/apt stable main\n"),
            None
        );
    }

    #[test]
    fn dpkg_status_versions() {
        let status = "Package: criu\nStatus: install ok installed\nVersion: 4.2.1-1\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
        let v = parse_dpkg_status(status);
        assert_eq!(v.get("criu").map(String::as_str), Some("4.2.1-1"));
        assert!(!v.contains_key("gone"));
    }
}
