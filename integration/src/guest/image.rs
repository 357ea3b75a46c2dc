//! The guest's disks and kernel, built once and cached like the node roots ([`crate::rootfs`]).
//!
//! A cache entry is `<cache>/guest-<key>/` holding `vmlinuz` (Debian trixie's cloud kernel),
//! `initrd.gz` (a small initramfs: busybox, the root disk's driver, a script that mounts the
//! root disk and hands over to systemd), `root.img` (a raw ext4 image of a debootstrap root
//! with systemd as init) and `complete.json`, written last, with the SHA-256 of those three
//! files. The key hashes the whole recipe: suite, packages, modules, every file baked into the
//! root. An entry without `complete.json`, or whose files no longer match it, is removed and
//! rebuilt, never used. Guests boot `root.img` with QEMU's `snapshot=on`, so it stays as built.
//!
//! containerd, runc and the project's binaries are not in the image: each boot brings them on
//! its job disk ([`crate::guest::job`]), so neither a rebuild of the project nor a new peer
//! build rebuilds the image.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rootfs::{self, FileLock};

/// Bumped whenever the build below changes in a way the recipe does not show.
const RECIPE_VERSION: u32 = 1;

/// The Debian release the guest runs.
pub const SUITE: &str = "trixie";

/// Packages debootstrap installs. iptables: CRIU runs it to lock the network during a dump
/// (without it every checkpoint fails with `criu failed: type NOTIFY`); iproute2: CRIU saves
/// and restores network namespaces with `ip`; dbus: the systemd cgroup driver's bus.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "kmod",
    "linux-image-cloud-amd64",
    "iptables",
    "iproute2",
    "procps",
    "busybox-static",
    "crun",
];

/// Packages installed afterwards from sid: trixie's CRIU 4.1.1 fails on real processes;
/// crun loads libcriu at run time.
pub const FROM_SID: &[&str] = &["criu", "libcriu2"];

/// Kernel modules the initramfs loads (after their dependencies) unless the kernel has them
/// built in: the root disk's driver and file system.
pub const INITRAMFS_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "ext4"];

/// Free space left on the root file system (containers and checkpoints live on the job
/// disk's scratch space instead).
const ROOT_FREE_MIB: u64 = 128;

/// Packages whose versions the completion record must show, with a required prefix.
const REQUIRED_VERSIONS: &[(&str, &str)] = &[
    ("criu", "4.2"),
    ("libcriu2", "4.2"),
    ("crun", ""),
    ("systemd", ""),
    ("dbus", ""),
    ("iptables", ""),
    ("iproute2", ""),
    ("busybox-static", ""),
    ("linux-image-cloud-amd64", ""),
];

/// The initramfs's `/init`: loads the modules listed in /modules/order, mounts the root disk
/// (the first virtio disk) and hands over to systemd; on failure it says why on the console
/// and powers the guest off, so the host sees the reason instead of a timeout.
const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
fail() { echo "revive guest initramfs: $*" > /dev/console; $bb poweroff -f; }
for m in $($bb cat /modules/order); do
    $bb insmod "/modules/$m.ko" || fail "insmod $m failed"
done
i=0
while [ ! -b /dev/vda ]; do
    i=$((i + 1))
    [ "$i" -le 300 ] || fail "no root disk /dev/vda after 30 s"
    $bb sleep 0.1
done
$bb mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount the root disk /dev/vda"
$bb umount /proc /sys
$bb mount --move /dev /newroot/dev
exec $bb switch_root /newroot /sbin/init
"#;

/// The unit that runs the job disk's `job.sh` once the system is up, and powers the guest
/// off at once when it ends, whatever its outcome (QEMU runs with -no-reboot and exits
/// then): the results are out on the serial port by then, and both disks are thrown away,
/// so nothing is stopped or unmounted first (which would wait for containers). Not a
/// oneshot: the boot counts as finished while it runs (`systemd-analyze` reports on it).
const JOB_UNIT: &str = "[Unit]
Description=revive guest job (job.sh of the job disk)
After=basic.target dbus.socket
Wants=dbus.socket
SuccessAction=poweroff-immediate
FailureAction=poweroff-immediate

[Service]
Type=exec
ExecStart=/usr/local/sbin/revive-guest-job
StandardOutput=journal+console
StandardError=inherit
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
";

/// Mounts the job disk (the second virtio disk) on /job and runs its job.sh.
const JOB_START: &str = "#!/bin/sh
set -e
mkdir -p /job
mount -t ext4 /dev/vdb /job
exec /bin/sh /job/job.sh
";

/// Units masked in the guest: logins on the console (it carries the job's output), and
/// timers whose work would only compete with the job for the emulated CPUs.
const MASKED_UNITS: &[&str] = &[
    "serial-getty@ttyS0.service",
    "getty@tty1.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-tmpfiles-clean.timer",
];

/// Files written into the root after the packages are installed: (path, content, mode).
fn baked_files() -> Vec<(&'static str, String, u32)> {
    vec![
        (
            "etc/fstab",
            "/dev/vda / ext4 rw,noatime 0 0\n".into(),
            0o644,
        ),
        ("etc/hostname", "revive-guest\n".into(), 0o644),
        (
            "etc/hosts",
            "127.0.0.1 localhost revive-guest\n::1 localhost\n".into(),
            0o644,
        ),
        (
            "etc/systemd/journald.conf.d/revive.conf",
            "[Journal]\nStorage=volatile\n".into(),
            0o644,
        ),
        (
            "etc/systemd/system/revive-guest-job.service",
            JOB_UNIT.into(),
            0o644,
        ),
        ("usr/local/sbin/revive-guest-job", JOB_START.into(), 0o755),
    ]
}

/// What a guest image is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    pub suite: String,
    pub packages: Vec<String>,
    pub from_sid: Vec<String>,
    pub initramfs_modules: Vec<String>,
    pub init_script: String,
    /// Path in the root -> content, of every file baked in.
    pub files: BTreeMap<String, String>,
    pub masked: Vec<String>,
    pub free_mib: u64,
}

impl Recipe {
    pub fn current() -> Recipe {
        let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Recipe {
            suite: SUITE.into(),
            packages: strings(PACKAGES),
            from_sid: strings(FROM_SID),
            initramfs_modules: strings(INITRAMFS_MODULES),
            init_script: INIT_SCRIPT.into(),
            files: baked_files()
                .into_iter()
                .map(|(path, content, mode)| (format!("{path} ({mode:o})"), content))
                .collect(),
            masked: strings(MASKED_UNITS),
            free_mib: ROOT_FREE_MIB,
        }
    }

    /// The cache key: a digest of everything the build depends on.
    pub fn key(&self) -> String {
        let text =
            serde_json::to_string(&(RECIPE_VERSION, self)).expect("a recipe always serializes");
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }
}

/// The kernel, in an entry.
pub const KERNEL: &str = "vmlinuz";
/// The initramfs, in an entry.
pub const INITRD: &str = "initrd.gz";
/// The root disk, in an entry.
pub const ROOT_DISK: &str = "root.img";
const VERIFIED: [&str; 3] = [KERNEL, INITRD, ROOT_DISK];

/// What `complete.json` records about a finished build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Completion {
    pub key: String,
    pub recipe: Recipe,
    pub mirror: String,
    /// `uname -r` of the guest kernel.
    pub kernel_release: String,
    /// Package -> version in the root.
    pub versions: BTreeMap<String, String>,
    /// File of the entry -> SHA-256 hex.
    pub digests: BTreeMap<String, String>,
    pub build_seconds: f64,
}

/// A verified guest image.
#[derive(Debug, Clone)]
pub struct GuestImage {
    pub dir: PathBuf,
    pub completion: Completion,
}

impl GuestImage {
    pub fn kernel(&self) -> PathBuf {
        self.dir.join(KERNEL)
    }
    pub fn initrd(&self) -> PathBuf {
        self.dir.join(INITRD)
    }
    pub fn root_disk(&self) -> PathBuf {
        self.dir.join(ROOT_DISK)
    }
    /// "kernel 6.12..., criu 4.2.1-1, crun 1.21-1, systemd 257..."
    pub fn versions_line(&self) -> String {
        let mut parts = vec![format!("kernel {}", self.completion.kernel_release)];
        for pkg in ["criu", "crun", "systemd", "iptables"] {
            if let Some(v) = self.completion.versions.get(pkg) {
                parts.push(format!("{pkg} {v}"));
            }
        }
        parts.join(", ")
    }
}

/// Returns the verified guest image, building it first if the cache has no usable one.
/// Concurrent callers wait for one build.
pub fn ensure() -> Result<GuestImage> {
    ensure_in(&rootfs::cache_dir())
}

/// [`ensure`] with the cache in `cache`.
pub fn ensure_in(cache: &Path) -> Result<GuestImage> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    fs::set_permissions(cache, fs::Permissions::from_mode(0o700))?;
    let _lock = FileLock::acquire(&cache.join("guest.lock"))?;
    let recipe = Recipe::current();
    let key = recipe.key();
    let entry = cache.join(format!("guest-{key}"));
    if entry.exists() {
        match verify_entry(&entry, &key) {
            Ok(completion) => {
                return Ok(GuestImage {
                    dir: entry,
                    completion,
                });
            }
            Err(err) => {
                eprintln!("revive: cached guest image is unusable ({err:#}); rebuilding it")
            }
        }
    }
    for dirent in fs::read_dir(cache)?.flatten() {
        let name = dirent.file_name().to_string_lossy().into_owned();
        if name.starts_with("guest-") && dirent.path().is_dir() {
            rootfs::remove_tree(&dirent.path())?;
        }
    }
    let mirror = rootfs::host_mirror()?;
    let partial = cache.join(format!("guest-{key}.partial"));
    build(&recipe, &key, &mirror, &partial)?;
    fs::rename(&partial, &entry)?;
    let completion = verify_entry(&entry, &key)?;
    Ok(GuestImage {
        dir: entry,
        completion,
    })
}

/// Checks an entry: its completion record exists, matches `key`, and the kernel, initramfs
/// and root disk match their recorded digests.
pub fn verify_entry(entry: &Path, key: &str) -> Result<Completion> {
    let completion: Completion = rootfs::read_record(entry, key, |c: &Completion| &c.key)?;
    let record = entry.join("complete.json");
    rootfs::check_digests(entry, &record, VERIFIED, &completion.digests)?;
    Ok(completion)
}

fn build(recipe: &Recipe, key: &str, mirror: &str, dir: &Path) -> Result<()> {
    let started = Instant::now();
    rootfs::remove_tree(dir)?;
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let root = dir.join("rootfs");
    let log = dir.join("build.log");
    eprintln!(
        "revive: building the cgroup v2 guest image (Debian {}, {} packages, CRIU from sid) \
         from {mirror}; this happens once per recipe (a few minutes), log: {}",
        recipe.suite,
        recipe.packages.len(),
        log.display()
    );
    rootfs::debootstrap(
        &recipe.suite,
        &recipe.packages,
        &root,
        mirror,
        &log,
        "debootstrap of the guest root",
    )?;
    install_from_sid(&root, &recipe.from_sid, mirror, &log)?;
    let versions = rootfs::installed_versions(&root)?;
    for (pkg, prefix) in REQUIRED_VERSIONS {
        match versions.get(*pkg) {
            Some(v) if v.starts_with(prefix) => {}
            Some(v) => bail!("the guest root has {pkg} {v}, expected {prefix}*"),
            None => bail!("{pkg} is not installed in the guest root after the build"),
        }
    }
    let release = kernel_release(&root)?;
    fs::copy(
        root.join(format!("boot/vmlinuz-{release}")),
        dir.join(KERNEL),
    )
    .context("copying the guest kernel out of its root")?;
    write_initramfs(
        &root,
        &release,
        &recipe.initramfs_modules,
        &dir.join(INITRD),
    )?;
    configure(&root, recipe)?;
    make_ext4(&root, &dir.join(ROOT_DISK), recipe.free_mib, &log)?;
    rootfs::remove_tree(&root)?;
    let digests = rootfs::digest_files(dir, &VERIFIED)?;
    let completion = Completion {
        key: key.to_string(),
        recipe: recipe.clone(),
        mirror: mirror.to_string(),
        kernel_release: release,
        versions,
        digests,
        build_seconds: started.elapsed().as_secs_f64(),
    };
    rootfs::write_completion(dir, &completion)?;
    eprintln!(
        "revive: guest image ready in {:.0} s: kernel {}, criu {}, crun {}",
        completion.build_seconds,
        completion.kernel_release,
        completion.versions["criu"],
        completion.versions["crun"]
    );
    Ok(())
}

/// `apt-get -t sid install` of `packages` in `root` (a sid source added for it and removed
/// after), then drops apt's downloads and lists.
fn install_from_sid(root: &Path, packages: &[String], mirror: &str, log: &Path) -> Result<()> {
    rootfs::install_from_sid(
        root,
        packages,
        mirror,
        log,
        "installing CRIU from sid into the guest root",
    )?;
    remove_children(&root.join("var/lib/apt/lists"))?;
    Ok(())
}

/// The one kernel release installed in `root` (its /lib/modules entry).
fn kernel_release(root: &Path) -> Result<String> {
    let mut releases: Vec<String> = fs::read_dir(root.join("lib/modules"))
        .context("the guest root has no /lib/modules: is a kernel package installed?")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    releases.sort();
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        other => bail!("the guest root should have one kernel, it has {other:?}"),
    }
}

/// A module's name as the kernel knows it: the file name without `.ko[.xz|.zst|.gz]`,
/// dashes as underscores.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let base = file.split(".ko").next().unwrap_or(file);
    base.replace('-', "_")
}

/// The module files (paths relative to the modules directory) to load, dependencies first,
/// for the `wanted` modules that `modules.dep` lists; those in `modules.builtin` need none.
pub fn module_load_order(
    modules_dep: &str,
    modules_builtin: &str,
    wanted: &[String],
) -> Result<Vec<String>> {
    let builtin: BTreeSet<String> = modules_builtin.lines().map(module_name).collect();
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in modules_dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let needs = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(module_name(path), (path.to_string(), needs));
    }
    fn visit(
        name: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        order: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> Result<()> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let (path, needs) = deps
            .get(name)
            .with_context(|| format!("module {name} is neither built in nor in modules.dep"))?;
        for need in needs {
            visit(&module_name(need), deps, order, seen)?;
        }
        order.push(path.clone());
        Ok(())
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for name in wanted {
        let name = name.replace('-', "_");
        if !builtin.contains(&name) {
            visit(&name, &deps, &mut order, &mut seen)?;
        }
    }
    Ok(order)
}

/// Writes the initramfs: busybox, `/init`, and the modules the kernel needs to reach its
/// root disk, decompressed (busybox's insmod takes plain modules).
fn write_initramfs(root: &Path, release: &str, modules: &[String], out: &Path) -> Result<()> {
    let moddir = root.join("lib/modules").join(release);
    let read = |name: &str| {
        fs::read_to_string(moddir.join(name))
            .with_context(|| format!("reading {}", moddir.join(name).display()))
    };
    let order = module_load_order(&read("modules.dep")?, &read("modules.builtin")?, modules)?;
    let dir = out.with_extension("d");
    rootfs::remove_tree(&dir)?;
    for sub in ["bin", "modules", "proc", "sys", "dev", "newroot"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let busybox = root.join("bin/busybox");
    fs::copy(&busybox, dir.join("bin/busybox"))?;
    fs::write(dir.join("init"), INIT_SCRIPT)?;
    fs::set_permissions(dir.join("init"), fs::Permissions::from_mode(0o755))?;
    let mut names = Vec::new();
    for rel in &order {
        let name = module_name(rel);
        let src = moddir.join(rel);
        let dest = dir.join("modules").join(format!("{name}.ko"));
        if rel.ends_with(".ko") {
            fs::copy(&src, &dest)?;
        } else if rel.ends_with(".ko.xz") {
            let out = Command::new(&busybox)
                .args(["unxz", "-c"])
                .arg(&src)
                .output()
                .with_context(|| format!("running {} unxz", busybox.display()))?;
            ensure!(
                out.status.success(),
                "decompressing {}: {}",
                src.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            fs::write(&dest, out.stdout)?;
        } else {
            bail!(
                "module {rel} is compressed in a way the initramfs builder does not handle \
                 (only .ko and .ko.xz); extend write_initramfs"
            );
        }
        names.push(name);
    }
    fs::write(dir.join("modules/order"), names.join("\n") + "\n")?;
    let cpio = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet")
        .arg("sh")
        .arg(&dir)
        .stderr(Stdio::piped())
        .output()
        .context("running cpio (install it: apt-get install cpio)")?;
    ensure!(
        cpio.status.success() && !cpio.stdout.is_empty(),
        "cpio of the initramfs failed ({}): {}; install cpio (scripts/host-deps.sh)",
        cpio.status,
        String::from_utf8_lossy(&cpio.stderr)
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&cpio.stdout)?;
    fs::write(out, gz.finish()?)?;
    rootfs::remove_tree(&dir)?;
    Ok(())
}

/// Removes everything inside `dir` (not `dir` itself); a missing `dir` is fine.
fn remove_children(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            rootfs::remove_tree(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Writes the baked files and unit masks, enables the job unit, and drops what a guest never
/// reads (the kernel and Debian's initramfs in /boot, documentation).
fn configure(root: &Path, recipe: &Recipe) -> Result<()> {
    for (path, content, mode) in baked_files() {
        let dest = root.join(path);
        fs::create_dir_all(dest.parent().expect("baked files are in directories"))?;
        fs::write(&dest, content)?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode))?;
    }
    let units = root.join("etc/systemd/system");
    for unit in &recipe.masked {
        let link = units.join(unit);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link)?;
    }
    let wants = units.join("multi-user.target.wants");
    fs::create_dir_all(&wants)?;
    let link = wants.join("revive-guest-job.service");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink("../revive-guest-job.service", &link)?;
    for dir in [
        "boot",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "var/cache/apt",
    ] {
        remove_children(&root.join(dir))?;
    }
    // Every boot starts from the same image: record the rebuild of caches over /usr
    // (ldconfig, the journal catalog) as done, or systemd redoes it on every boot.
    let out = Command::new("chroot")
        .arg(root)
        .arg("/usr/lib/systemd/systemd-update-done")
        .output()
        .context("running systemd-update-done in the guest root")?;
    ensure!(
        out.status.success() && root.join("etc/.updated").is_file(),
        "systemd-update-done in the guest root failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Bytes and inodes the files under `dir` take.
fn usage(dir: &Path) -> Result<(u64, u64)> {
    let mut bytes = 0;
    let mut inodes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)?;
        bytes += meta.blocks() * 512;
        inodes += 1;
        if meta.is_dir() {
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok((bytes, inodes))
}

/// A raw ext4 image of `dir` (`mkfs.ext4 -d`), sized to its content plus `free_mib`.
pub fn make_ext4(dir: &Path, image: &Path, free_mib: u64, log: &Path) -> Result<()> {
    let (bytes, inodes) = usage(dir)?;
    let mib = bytes * 5 / 4 / (1 << 20) + free_mib + 64;
    let _ = fs::remove_file(image);
    rootfs::run_logged(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "revive", "-E", "root_owner=0:0"])
            .arg("-N")
            .arg((inodes * 3 / 2 + 16384).to_string())
            .arg("-d")
            .arg(dir)
            .arg(image)
            .arg(format!("{mib}M")),
        log,
        "mkfs.ext4 -d (needs e2fsprogs >= 1.43: apt-get install e2fsprogs)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_load_after_their_dependencies_and_builtins_are_skipped() {
        let dep = "kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz\n\
                   kernel/drivers/virtio/virtio_ring.ko.xz: kernel/lib/crc-x.ko.xz\n\
                   kernel/lib/crc-x.ko.xz:\n\
                   kernel/fs/overlayfs/overlay.ko.xz:\n";
        let builtin = "kernel/fs/ext4/ext4.ko\nkernel/drivers/virtio/virtio_pci.ko\n";
        let wanted: Vec<String> = ["virtio_pci", "virtio_blk", "ext4", "virtio-ring"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            module_load_order(dep, builtin, &wanted).unwrap(),
            [
                "kernel/lib/crc-x.ko.xz",
                "kernel/drivers/virtio/virtio_ring.ko.xz",
                "kernel/drivers/block/virtio_blk.ko.xz",
            ]
        );
        let err = module_load_order(dep, builtin, &["nope".into()]).unwrap_err();
        assert!(err.to_string().contains("neither built in"), "{err}");
    }

    #[test]
    fn key_follows_the_recipe() {
        let a = Recipe::current();
        assert_eq!(a.key(), Recipe::current().key());
        let mut b = a.clone();
        b.files.insert("etc/x".into(), "y".into());
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn corrupt_or_unfinished_entries_are_rejected() {
        let dir = std::env::temp_dir().join(format!("revive-guest-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for file in VERIFIED {
            fs::write(dir.join(file), file.as_bytes()).unwrap();
        }
        assert!(verify_entry(&dir, "k").is_err());
        let completion = Completion {
            key: "k".into(),
            recipe: Recipe::current(),
            mirror: "m".into(),
            kernel_release: "6.12".into(),
            versions: BTreeMap::new(),
            digests: VERIFIED
                .iter()
                .map(|f| (f.to_string(), rootfs::sha256_file(&dir.join(f)).unwrap()))
                .collect(),
            build_seconds: 1.0,
        };
        fs::write(
            dir.join("complete.json"),
            serde_json::to_string(&completion).unwrap(),
        )
        .unwrap();
        verify_entry(&dir, "k").unwrap();
        assert!(verify_entry(&dir, "other").is_err());
        fs::write(dir.join(ROOT_DISK), b"changed").unwrap();
        let err = verify_entry(&dir, "k").unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(
            rootfs::sha256_file(&dir.join(ROOT_DISK)).unwrap(),
            rootfs::sha256_file(&dir.join(ROOT_DISK)).unwrap()
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
