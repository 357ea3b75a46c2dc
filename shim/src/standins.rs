//! Stand-ins for the files an engine generated for a checkpointed container on its old host
//! (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, `/run/.containerenv`,
//! `/dev/termination-log`) and for its `/dev/shm`, which [`crate::reconcile`] bound into the
//! new container's spec from `<bundle>/stand-ins`.
//!
//! They are made at Create, where a hostile one is refused like any other part of the image
//! (no task is left), and go with the container (Delete, or the shim's cleanup after it
//! died). The files hold nothing of
//! the host but its resolver configuration: `hosts` names localhost and the checkpointed
//! container's hostname (which its restored UTS namespace keeps), `hostname` that name, the
//! others are empty. `/dev/shm` is a tmpfs of the size the new container's spec gives its own
//! `/dev/shm` (never more than admission control saw), holding what the checkpoint saved of
//! it, extracted as safely as any other archive.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use log::{info, warn};
use nix::mount::{MntFlags, MsFlags};
use revive_checkpoint::extract;
use revive_checkpoint::needs::StandIn;

use crate::error::{Error, Result};
use crate::reconcile::Planned;

/// The stand-ins' directory in a bundle.
pub const DIR: &str = "stand-ins";

/// The largest resolver configuration copied from the host.
const MAX_RESOLV_CONF: u64 = 64 << 10;

/// What to make for one container.
#[derive(Debug, Clone, PartialEq)]
pub struct StandIns {
    /// `<bundle>/stand-ins`.
    pub dir: PathBuf,
    pub planned: Vec<Planned>,
    /// The checkpointed container's hostname, if it is a valid one.
    pub hostname: Option<String>,
    /// The checkpoint's saved `/dev/shm` (Podman's `devshm-checkpoint.tar`), if it has one.
    pub shm_archive: Option<PathBuf>,
    /// The container's root filesystem (`<bundle>/rootfs`, revive-snapshotter's overlay).
    pub rootfs: PathBuf,
    /// The permission bits of the checkpointed container's `/`, which CRIU checks: an
    /// engine's layers may give `/` another mode than containerd's do (containers/storage
    /// 0555, containerd 0755), and the new `/` is given the checkpoint's.
    pub root_mode: Option<u32>,
}

impl StandIns {
    /// The stand-ins of `planned` in `bundle`, for a checkpoint whose `spec.dump` is
    /// `dumped` and whose archive is unpacked in `archive`.
    pub fn new(
        bundle: &Path,
        planned: Vec<Planned>,
        dumped: &serde_json::Value,
        archive: &Path,
        root_mode: Option<u32>,
    ) -> StandIns {
        let shm_archive = archive.join(revive_checkpoint::archive::DEVSHM_TAR);
        StandIns {
            dir: bundle.join(DIR),
            planned,
            hostname: dumped["hostname"]
                .as_str()
                .filter(|h| valid_hostname(h))
                .map(str::to_string),
            shm_archive: shm_archive.is_file().then_some(shm_archive),
            rootfs: bundle.join("rootfs"),
            root_mode: root_mode.map(|mode| mode & 0o1777),
        }
    }

    /// Makes every stand-in and gives `/` the checkpoint's mode. On failure no stand-in is
    /// left: no file, no mount.
    pub fn make(&self) -> Result<()> {
        if let Some(mode) = self.root_mode {
            let now = fs::metadata(&self.rootfs)
                .map_err(Error::io(format!("reading {}", self.rootfs.display())))?;
            if now.permissions().mode() & 0o1777 != mode {
                fs::set_permissions(&self.rootfs, fs::Permissions::from_mode(mode)).map_err(
                    Error::io(format!("giving {} mode {mode:o}", self.rootfs.display())),
                )?;
                info!("/ given the checkpoint's mode {mode:o}");
            }
        }
        if self.planned.is_empty() {
            return Ok(());
        }
        remove(&self.dir);
        let made = self.make_all();
        if made.is_err() {
            remove(&self.dir);
        }
        made
    }

    fn make_all(&self) -> Result<()> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.dir)
            .map_err(Error::io(format!("creating {}", self.dir.display())))?;
        for planned in &self.planned {
            let path = self.dir.join(planned.stand_in.file_name());
            match planned.stand_in {
                StandIn::Shm => self.make_shm(&path, &planned.tmpfs)?,
                stand_in => write_file(&path, &self.content(stand_in))?,
            }
        }
        info!(
            "stand-ins made in {}: {}",
            self.dir.display(),
            self.planned
                .iter()
                .map(|p| p.stand_in.destination())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(())
    }

    fn content(&self, stand_in: StandIn) -> Vec<u8> {
        let hostname = self.hostname.as_deref();
        match stand_in {
            StandIn::Hosts => hosts(hostname).into_bytes(),
            StandIn::Hostname => hostname.map_or(String::new(), |h| format!("{h}\n")).into(),
            StandIn::ResolvConf => host_resolv_conf(),
            StandIn::ContainerEnv | StandIn::TerminationLog | StandIn::Shm => Vec::new(),
        }
    }

    /// A tmpfs with `options` (the new container's own `/dev/shm` ones) at `path`, holding
    /// the checkpoint's saved `/dev/shm`.
    fn make_shm(&self, path: &Path, options: &[String]) -> Result<()> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(Error::io(format!("creating {}", path.display())))?;
        nix::mount::mount(
            Some("shm"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(options.join(",").as_str()),
        )
        .map_err(|e| {
            Error::Internal(format!(
                "mounting a tmpfs ({}) for /dev/shm at {}: {e}",
                options.join(","),
                path.display()
            ))
        })?;
        let Some(archive) = &self.shm_archive else {
            return Ok(());
        };
        let file =
            fs::File::open(archive).map_err(Error::io(format!("opening {}", archive.display())))?;
        // Owners as saved (the container's users); no devices, no setuid: a tmpfs of
        // shared memory holds plain files.
        let options = extract::Options::default();
        let report =
            extract::extract(std::io::BufReader::new(file), path, &options).map_err(|e| {
                Error::InvalidArgument(format!(
                    "the checkpoint's saved /dev/shm ({}): {e}; refusing to restore from it",
                    revive_checkpoint::archive::DEVSHM_TAR
                ))
            })?;
        info!(
            "/dev/shm stand-in: {} entries, {} bytes from the checkpoint",
            report.entries, report.bytes
        );
        Ok(())
    }
}

/// Unmounts and removes the stand-ins directory `dir` (`<bundle>/stand-ins`), if there is
/// one. Best effort: what cannot be removed is logged.
pub fn remove(dir: &Path) {
    let shm = dir.join(StandIn::Shm.file_name());
    match nix::mount::umount2(&shm, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => warn!("unmounting {}: {e}", shm.display()),
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!("removing {}: {e}", dir.display()),
    }
}

/// A file the container reads (mode 0644, root's), written whole.
fn write_file(path: &Path, content: &[u8]) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(Error::io(format!("creating {}", path.display())))?;
    std::io::Write::write_all(&mut file, content)
        .map_err(Error::io(format!("writing {}", path.display())))
}

/// `/etc/hosts` for a container named `hostname`.
fn hosts(hostname: Option<&str>) -> String {
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(name) = hostname {
        text.push_str(&format!("127.0.1.1\t{name}\n"));
    }
    text
}

/// The host's resolver configuration, as containerd's CRI and Podman give containers:
/// systemd-resolved's upstream list where the host's own names only its local stub, which
/// no container network reaches; empty where the host has none.
fn host_resolv_conf() -> Vec<u8> {
    let read = |path: &str| -> Option<Vec<u8>> {
        let mut text = Vec::new();
        fs::File::open(path)
            .ok()?
            .take(MAX_RESOLV_CONF)
            .read_to_end(&mut text)
            .ok()?;
        Some(text)
    };
    let Some(host) = read("/etc/resolv.conf") else {
        return Vec::new();
    };
    let stub_only = String::from_utf8_lossy(&host)
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .all(|ns| ns.trim().starts_with("127.0.0.53"));
    if stub_only && let Some(upstream) = read("/run/systemd/resolve/resolv.conf") {
        return upstream;
    }
    host
}

/// A hostname of letters, digits, `-` and `.`, as the kernel and resolvers take it.
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn planned(stand_in: StandIn) -> Planned {
        Planned {
            stand_in,
            mount: json!({}),
            tmpfs: Vec::new(),
        }
    }

    #[test]
    fn files_are_made_whole_and_removed_with_the_directory() {
        let bundle = tempfile::tempdir().unwrap();
        let archive = tempfile::tempdir().unwrap();
        let dumped = json!({"hostname": "counter-7"});
        let all = [
            StandIn::Hosts,
            StandIn::Hostname,
            StandIn::ResolvConf,
            StandIn::ContainerEnv,
            StandIn::TerminationLog,
        ];
        let stand_ins = StandIns::new(
            bundle.path(),
            all.into_iter().map(planned).collect(),
            &dumped,
            archive.path(),
            None,
        );
        assert_eq!(stand_ins.shm_archive, None);
        stand_ins.make().unwrap();
        let read = |s: StandIn| fs::read_to_string(stand_ins.dir.join(s.file_name())).unwrap();
        assert!(read(StandIn::Hosts).contains("127.0.1.1\tcounter-7\n"));
        assert!(read(StandIn::Hosts).starts_with("127.0.0.1\tlocalhost\n"));
        assert_eq!(read(StandIn::Hostname), "counter-7\n");
        assert_eq!(read(StandIn::ContainerEnv), "");
        assert_eq!(read(StandIn::TerminationLog), "");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&stand_ins.dir), 0o700);
        assert_eq!(mode(&stand_ins.dir.join("hosts")), 0o644);
        // Made again from scratch: a retried restore finds no leftovers in its way.
        stand_ins.make().unwrap();
        remove(&stand_ins.dir);
        assert!(!stand_ins.dir.exists());
        remove(&stand_ins.dir);
    }

    #[test]
    fn only_valid_hostnames_are_written() {
        let bundle = tempfile::tempdir().unwrap();
        for (name, kept) in [
            (json!("web-1.example"), true),
            (json!("evil\n127.0.0.1 bank"), false),
            (json!(""), false),
            (json!(7), false),
            (json!("x".repeat(254)), false),
        ] {
            let stand_ins = StandIns::new(
                bundle.path(),
                vec![planned(StandIn::Hosts)],
                &json!({ "hostname": name }),
                bundle.path(),
                None,
            );
            assert_eq!(stand_ins.hostname.is_some(), kept, "{name}");
        }
        assert_eq!(
            hosts(None),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        );
    }

    #[test]
    fn the_root_gets_the_checkpoint_s_mode_and_no_more() {
        let bundle = tempfile::tempdir().unwrap();
        let rootfs = bundle.path().join("rootfs");
        fs::create_dir(&rootfs).unwrap();
        fs::set_permissions(&rootfs, fs::Permissions::from_mode(0o755)).unwrap();
        let mode = || fs::metadata(&rootfs).unwrap().permissions().mode() & 0o7777;
        for (recorded, given) in [(0o40555, 0o555), (0o46777, 0o777), (0o41755, 0o1755)] {
            let stand_ins = StandIns::new(
                bundle.path(),
                Vec::new(),
                &json!({}),
                bundle.path(),
                Some(recorded),
            );
            stand_ins.make().unwrap();
            assert_eq!(mode(), given, "{recorded:o}");
        }
        assert!(!bundle.path().join(DIR).exists());
    }

    #[test]
    fn nothing_planned_makes_nothing() {
        let bundle = tempfile::tempdir().unwrap();
        let stand_ins = StandIns::new(bundle.path(), Vec::new(), &json!({}), bundle.path(), None);
        stand_ins.make().unwrap();
        assert!(!stand_ins.dir.exists());
    }

    /// Stand-ins of a `/dev/shm` with `tmpfs` options, of a checkpoint whose saved
    /// `/dev/shm` holds `name` (`data`); None, said loudly, without root.
    fn saved_shm(
        name: &str,
        data: &[u8],
        tmpfs: &[&str],
    ) -> Option<(tempfile::TempDir, tempfile::TempDir, StandIns)> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("!!! SKIPPED: this test needs root (mounting a tmpfs) !!!");
            return None;
        }
        let bundle = tempfile::tempdir().unwrap();
        let archive = tempfile::tempdir().unwrap();
        let mut tar = revive_checkpoint::testing::Tar::new();
        tar.file(name, data, 0o600);
        let saved = archive.path().join(revive_checkpoint::archive::DEVSHM_TAR);
        fs::write(saved, tar.bytes()).unwrap();
        let mut shm = planned(StandIn::Shm);
        shm.tmpfs = tmpfs.iter().map(|o| o.to_string()).collect();
        let stand_ins = StandIns::new(bundle.path(), vec![shm], &json!({}), archive.path(), None);
        Some((bundle, archive, stand_ins))
    }

    #[test]
    fn dev_shm_is_a_tmpfs_of_the_given_size_with_the_saved_content() {
        let Some((_bundle, _archive, stand_ins)) =
            saved_shm("sem.counter", b"32", &["mode=1777", "size=1m"])
        else {
            return;
        };
        stand_ins.make().unwrap();
        let dir = stand_ins.dir.join("shm");
        let fs_type = nix::sys::statfs::statfs(&dir).unwrap().filesystem_type();
        assert_eq!(fs_type, nix::sys::statfs::TMPFS_MAGIC);
        assert_eq!(fs::read(dir.join("sem.counter")).unwrap(), b"32");
        // Nothing beyond the size the spec gives.
        let big = fs::write(dir.join("big"), vec![0u8; 2 << 20]);
        assert!(big.is_err(), "a 2 MiB file fits in a 1 MiB /dev/shm");
        remove(&stand_ins.dir);
        assert!(!stand_ins.dir.exists());
    }

    #[test]
    fn a_hostile_saved_dev_shm_leaves_nothing_behind() {
        let Some((bundle, _archive, stand_ins)) = saved_shm("../../escaped", b"x", &["size=1m"])
        else {
            return;
        };
        let err = stand_ins.make().unwrap_err().to_string();
        assert!(err.contains("saved /dev/shm"), "{err}");
        assert!(
            !stand_ins.dir.exists(),
            "the tmpfs is unmounted and removed"
        );
        assert!(!bundle.path().join("escaped").exists());
    }
}
