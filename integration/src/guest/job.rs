//! What one boot of the guest runs: a job disk (an ext4 image made per boot with
//! `mkfs.ext4 -d`) holding the binaries to install, configuration, images, `job.sh`, and
//! empty scratch space where containerd, revive-snapshotter and checkpoints keep their state.
//! The guest mounts it on /job and runs job.sh ([`crate::guest::image`]'s job unit).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::guest::image::make_ext4;
use crate::image::{Image, busybox_builder};
use crate::node::{self, PROJECT_BINARIES};
use crate::rootfs::{self, Rootfs};

/// Where the driver's binary goes in the guest.
pub const DRIVER: &str = "/usr/local/bin/revive-guest";

/// One boot's work.
#[derive(Debug, Clone)]
pub struct Job {
    /// Appears in the run directory's name.
    pub label: String,
    /// Files put in place in the guest's root before job.sh's own commands run.
    pub install: Vec<Install>,
    /// Files of the job disk: path below /job, content, mode.
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// The commands of job.sh, run by `sh -eu` once the files are installed.
    pub script: String,
    /// Empty space on the job disk, in MiB (/job/scratch).
    pub scratch_mib: u64,
    /// How long a boot may take, boot and power-off included.
    pub timeout: Duration,
}

/// A host file the guest gets at `guest` (an absolute path).
#[derive(Debug, Clone)]
pub struct Install {
    pub guest: String,
    pub host: PathBuf,
    /// Without its debug information (most of a debug build's size, which the guest would
    /// otherwise read from its emulated disk).
    pub strip: bool,
}

/// job.sh's first commands: links every installed file into place.
const INSTALL: &str = "cd /job/root
for f in $(find . ! -type d); do
    mkdir -p \"$(dirname \"/$f\")\"
    ln -sf \"/job/root/${f#./}\" \"/${f#./}\"
done
cd /
mkdir -p /job/scratch
";

impl Job {
    /// The text of job.sh.
    pub fn job_sh(&self) -> String {
        format!(
            "#!/bin/sh\nset -eu\necho \"revive guest: job {} on $(uname -r), $(cut -d' ' -f1 \
             /proc/uptime) s after boot\"\n{INSTALL}{}\n",
            self.label, self.script
        )
    }

    /// Writes the job disk `disk`, staging its files in `staging` (removed after).
    pub fn write_disk(&self, staging: &Path, disk: &Path, log: &Path) -> Result<()> {
        rootfs::remove_tree(staging)?;
        fs::create_dir_all(staging.join("root"))?;
        fs::create_dir_all(staging.join("scratch"))?;
        for install in &self.install {
            let guest = &install.guest;
            ensure!(
                guest.starts_with('/') && !guest.contains(".."),
                "install path {guest} must be absolute and plain"
            );
            let dest = staging.join("root").join(guest.trim_start_matches('/'));
            fs::create_dir_all(dest.parent().expect("an absolute path has a parent"))?;
            let stripped = install.strip && strip_debug(&install.host, &dest);
            if !stripped {
                link_or_copy(&install.host, &dest).with_context(|| {
                    format!(
                        "putting {} on the job disk as {guest}",
                        install.host.display()
                    )
                })?;
            }
        }
        for (path, content, mode) in &self.files {
            ensure!(
                !path.starts_with('/') && !path.contains(".."),
                "job file {path} must be relative and plain"
            );
            let dest = staging.join(path);
            fs::create_dir_all(dest.parent().expect("a job file is in a directory"))?;
            fs::write(&dest, content)?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(*mode))?;
        }
        fs::write(staging.join("job.sh"), self.job_sh())?;
        make_ext4(staging, disk, self.scratch_mib, log)?;
        rootfs::remove_tree(staging)
    }
}

/// Writes `from` without its debug information to `to` (binutils' strip); false when that
/// failed (no strip on the host), and `to` is then not there.
fn strip_debug(from: &Path, to: &Path) -> bool {
    let ok = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(to)
        .arg(from)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = fs::remove_file(to);
    }
    ok
}

/// Hard-links `from` to `to` (copies it across file systems). The disk image is written
/// from the links at once, so a later change of `from` does not reach a running guest.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(err) if err.raw_os_error() == Some(libc::EXDEV) => {
            fs::copy(from, to).map(|_| ()).map_err(Into::into)
        }
        Err(err) => Err(err).with_context(|| format!("linking {}", from.display())),
    }
}

/// The sandbox image the guest's CRI runs pods with (the node configuration pins it).
pub const SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The guest's containerd configuration: the nodes' (revive's registration, the proxy
/// snapshotter, the test settings) with what kubeadm sets up on a systemd host: the systemd
/// cgroup driver for runc (`runc` handler, Go shim) and for revive, plus crun handlers for
/// both shims (`revive-crun`, `crun`).
pub fn containerd_config(containerd_version: &str) -> Result<String> {
    let base = node::containerd_config(containerd_version);
    let revive_options = "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.revive.options]\n  BinaryName = \"runc\"\n";
    if !base.contains(revive_options) {
        bail!(
            "the node configuration no longer has revive's runtime options as\n{revive_options}\
             update guest::job::containerd_config to where it sets them"
        );
    }
    let base = base.replacen(
        revive_options,
        &format!("{revive_options}  SystemdCgroup = true\n"),
        1,
    );
    Ok(format!(
        "{base}
# --- cgroup v2 guest: the systemd cgroup driver, as kubeadm configures a systemd host ---
[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc]
  runtime_type = \"io.containerd.runc.v2\"

[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc.options]
  SystemdCgroup = true

[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.revive-crun]
  runtime_type = \"io.containerd.revive.v2\"
  snapshotter = \"revive\"

[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.revive-crun.options]
  BinaryName = \"crun\"
  SystemdCgroup = true

[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.crun]
  runtime_type = \"io.containerd.runc.v2\"

[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.crun.options]
  BinaryName = \"crun\"
  SystemdCgroup = true
"
    ))
}

/// crictl's configuration in the guest.
const CRICTL_YAML: &str = "runtime-endpoint: unix:///run/containerd/containerd.sock
image-endpoint: unix:///run/containerd/containerd.sock
timeout: 120
";

/// The suite's job.sh after the install: state on the scratch space, revive-snapshotter and
/// then containerd started as systemd services (containerd as its own unit file has it:
/// delegated cgroup, only the main process killed on stop), then the driver, which writes
/// results to the second serial port.
const SUITE_SCRIPT: &str = r#"up() { cut -d' ' -f1 /proc/uptime; }
for d in containerd revive work; do mkdir -p /job/scratch/$d; done
mkdir -p /var/lib/containerd /var/lib/revive /etc/containerd
mount --bind /job/scratch/containerd /var/lib/containerd
mount --bind /job/scratch/revive /var/lib/revive
cp /job/etc/containerd/config.toml /etc/containerd/config.toml
cp /job/etc/crictl.yaml /etc/crictl.yaml
modprobe overlay
systemd-run --quiet --unit=revive-snapshotter -p UMask=0077 /usr/local/bin/revive-snapshotter
i=0
until [ -S /run/revive/snapshotter.sock ]; do
    i=$((i + 1))
    if [ "$i" -gt 600 ]; then
        echo "revive-snapshotter did not listen within 60 s"
        journalctl -u revive-snapshotter --no-pager | tail -40
        exit 1
    fi
    sleep 0.1
done
echo "revive guest: revive-snapshotter is up at $(up) s of uptime"
systemd-run --quiet --unit=containerd -p Type=notify -p Delegate=yes -p KillMode=process \
    -p LimitNOFILE=infinity -p OOMScoreAdjust=-999 /usr/bin/containerd
if ! ctr version >/dev/null; then
    journalctl -u containerd --no-pager | tail -40
    exit 1
fi
echo "revive guest: containerd and revive-snapshotter are up at $(up) s of uptime"
"#;

/// How long the suite's boot may take. Software emulation runs 5 to 30 times slower than the
/// host; the whole suite takes a few minutes.
pub const SUITE_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The suite's job: containerd, ctr, the Go shim, runc and crictl of `rootfs`'s peers (the
/// project's Go module builds), the project's binaries from [`node::bin_dir`], the driver
/// `driver`, the guest configuration, busybox and pause images built from `rootfs`'s
/// busybox, and `revive-guest run` with `driver_args`.
pub fn suite(rootfs: &Rootfs, driver: &Path, driver_args: &[String]) -> Result<Job> {
    let mut install = Vec::new();
    for built in &rootfs.peers {
        if built.completion.peer.name == "kubelet" {
            continue;
        }
        for name in built.completion.digests.keys() {
            install.push(Install {
                guest: format!("/{}/{name}", built.completion.peer.dir),
                host: built.binary(name),
                strip: false,
            });
        }
    }
    for want in [
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "runc",
        "crictl",
    ] {
        ensure!(
            install
                .iter()
                .any(|i| i.guest.ends_with(&format!("/{want}"))),
            "the {} node's peers have no {want}: the guest needs containerd, ctr, the Go \
             shim, runc and crictl built from their Go modules",
            rootfs.flavour
        );
    }
    let bins = node::bin_dir()?;
    let missing: Vec<&str> = PROJECT_BINARIES
        .iter()
        .copied()
        .filter(|b| !bins.join(b).is_file())
        .collect();
    ensure!(
        missing.is_empty(),
        "project binaries missing from {}: {}; build them first (`cargo build --workspace`), or \
         point REVIVE_BIN_DIR at them",
        bins.display(),
        missing.join(", ")
    );
    for bin in PROJECT_BINARIES {
        install.push(Install {
            guest: format!("/usr/local/bin/{bin}"),
            host: bins.join(bin),
            strip: true,
        });
    }
    ensure!(
        driver.is_file(),
        "the guest driver {} is missing: build it (`cargo build -p revive-integration --bin \
         revive-guest`)",
        driver.display()
    );
    install.push(Install {
        guest: DRIVER.into(),
        host: driver.to_path_buf(),
        strip: true,
    });

    let containerd = rootfs
        .completion
        .versions
        .get("containerd")
        .context("the node root records no containerd version")?;
    let busybox = Image::busybox(&rootfs.path)?;
    let pause = pause_image(&rootfs.path)?;
    let files = vec![
        (
            "etc/containerd/config.toml".to_string(),
            containerd_config(containerd)?.into_bytes(),
            0o644,
        ),
        (
            "etc/crictl.yaml".into(),
            CRICTL_YAML.as_bytes().to_vec(),
            0o644,
        ),
        (
            "images/busybox.tar".into(),
            busybox.archive().to_vec(),
            0o644,
        ),
        ("images/pause.tar".into(), pause.archive().to_vec(), 0o644),
    ];
    let mut script = SUITE_SCRIPT.to_string();
    script.push_str(&format!(
        "exec {DRIVER} run --results /dev/ttyS1 --work /job/scratch/work --images /job/images{}\n",
        driver_args
            .iter()
            .map(|a| format!(" '{}'", a.replace('\'', "'\\''")))
            .collect::<String>()
    ));
    Ok(Job {
        label: "suite".into(),
        install,
        files,
        script,
        scratch_mib: 3072,
        timeout: SUITE_TIMEOUT,
    })
}

/// The sandbox image, as the CRI tests build it: busybox sleeping until SIGTERM or SIGINT.
pub fn pause_image(rootfs: &Path) -> Result<Image> {
    use crate::cri::{PAUSE_MARKER, PAUSE_SLEEP};
    let script = format!(": {PAUSE_MARKER}; trap 'exit 0' TERM INT; {PAUSE_SLEEP} & wait");
    busybox_builder(rootfs, SANDBOX_IMAGE)?
        .cmd(&["/bin/sh", "-c", &script])
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sets_the_systemd_driver_and_crun_handlers() {
        let config = containerd_config("2.3.7").unwrap();
        assert!(config.contains("\nversion = 4\n"), "{config}");
        let revive = config
            .split("runtimes.revive.options]")
            .nth(1)
            .unwrap()
            .split("\n\n")
            .next()
            .unwrap();
        assert!(revive.contains("SystemdCgroup = true"), "{revive}");
        assert!(config.contains("runtimes.revive-crun.options]\n  BinaryName = \"crun\""));
        assert!(config.contains("runtimes.runc.options]\n  SystemdCgroup = true"));
        assert!(config.contains("address = \"/run/revive/snapshotter.sock\""));
    }

    #[test]
    fn job_sh_installs_then_runs_the_script() {
        let job = Job {
            label: "t".into(),
            install: Vec::new(),
            files: Vec::new(),
            script: "echo hi".into(),
            scratch_mib: 1,
            timeout: Duration::from_secs(1),
        };
        let sh = job.job_sh();
        assert!(sh.starts_with("#!/bin/sh\nset -eu\n"));
        assert!(sh.find("ln -sf").unwrap() < sh.find("echo hi").unwrap());
    }
}
