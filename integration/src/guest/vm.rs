//! Boots the guest: QEMU with software emulation (this host's /dev/kvm runs only PVM guest
//! kernels), the cached root disk with `snapshot=on` (writes go to a temporary overlay), the
//! job disk, the console on the first serial port and results on the second, both logged to
//! files. One boot runs the whole job and powers off.
//!
//! Everything a run creates lives in its run directory, removed when the run ends however it
//! ends: QEMU dies with the thread that started it (parent-death signal) and is killed and
//! reaped on drop, and its temporary snapshot file lives in the run directory. A run
//! directory whose harness died is removed by the next run (its lock is free).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::guest::image::GuestImage;
use crate::guest::job::Job;
use crate::guest::report::{DONE, ScenarioResult, parse_results};
use crate::node::tail;
use crate::rootfs::{self, FileLock};

/// The guest kernel's command line: the console on the first serial port, the unified
/// cgroup hierarchy only, and a kernel oops or panic ends the boot at once (QEMU runs with
/// -no-reboot), so that a broken boot is seen and retried instead of waited out. No CPU
/// vulnerability mitigations: the guest runs only the test, and emulation is slow enough.
pub const KERNEL_ARGS: &str = "console=ttyS0 panic=-1 oops=panic loglevel=4 \
    systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all systemd.show_status=error \
    net.ifnames=0 mitigations=off";

/// QEMU's acceleration: `$REVIVE_GUEST_ACCEL`, else multi-threaded software emulation.
pub fn accel() -> String {
    std::env::var("REVIVE_GUEST_ACCEL").unwrap_or_else(|_| "tcg,thread=multi,tb-size=64".into())
}

/// Where run directories live: `$REVIVE_GUEST_DIR`, else /var/lib/revive-test/guests.
pub fn runs_dir() -> PathBuf {
    std::env::var_os("REVIVE_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/revive-test/guests"))
}

/// Console lines that mean the guest kernel failed: the boot's results cannot be trusted.
pub fn kernel_failure(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| {
            l.contains("] Oops")
                || l.contains("] BUG:")
                || l.contains("Kernel panic - not syncing")
                || l.contains("] general protection fault")
        })
        .map(|l| l.trim().to_string())
}

/// One boot.
#[derive(Debug, Clone)]
pub struct Boot {
    pub seconds: f64,
    /// QEMU's exit status; None when it was killed at the timeout.
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    /// The console line of a kernel oops or panic.
    pub kernel_failure: Option<String>,
    /// When (seconds into the boot) the job's first console line and the driver's last
    /// result line arrived.
    pub job_started: Option<f64>,
    pub driver_done: Option<f64>,
}

/// What a run brought back.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub results: Vec<ScenarioResult>,
    /// Whether the driver finished (wrote its last line).
    pub done: bool,
    /// The last boot's console log.
    pub console: String,
    /// Every boot, the retried one first.
    pub boots: Vec<Boot>,
    /// The run's wall time: job disk, boots, results.
    pub seconds: f64,
}

impl Outcome {
    pub fn result(&self, name: &str) -> Option<&ScenarioResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// The last `n` lines of the console.
    pub fn console_tail(&self, n: usize) -> String {
        tail(&self.console, n)
    }

    /// The console lines the job wrote (its unit's output), without the kernel's and
    /// systemd's own.
    pub fn job_output(&self) -> String {
        self.console
            .lines()
            .filter(|l| l.contains("revive-guest-job[") || l.contains("revive guest"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every scenario, as text.
    pub fn describe(&self) -> String {
        self.results.iter().map(ScenarioResult::describe).collect()
    }
}

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);
const LOCK_FILE: &str = "lock";

/// A run directory, locked while in use and removed on drop.
struct RunDir {
    dir: PathBuf,
    _lock: Option<FileLock>,
}

impl RunDir {
    fn create(label: &str) -> Result<RunDir> {
        let runs = runs_dir();
        fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
        fs::set_permissions(&runs, fs::Permissions::from_mode(0o700))?;
        sweep_stale_runs(&runs);
        let dir = runs.join(format!(
            "{label}-{}-{}",
            std::process::id(),
            RUN_COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        rootfs::remove_tree(&dir)?;
        fs::create_dir_all(&dir)?;
        let lock = FileLock::acquire(&dir.join(LOCK_FILE))?;
        Ok(RunDir {
            dir,
            _lock: Some(lock),
        })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(err) = rootfs::remove_tree(&self.dir) {
            eprintln!(
                "revive: could not remove the guest run directory {}: {err:#}",
                self.dir.display()
            );
        }
    }
}

/// The harness pid in a run directory's name (`<label>-<pid>-<n>`).
fn run_pid(name: &str) -> Option<u32> {
    name.rsplit('-').nth(1)?.parse().ok()
}

/// Removes run directories whose harness died: its process is gone and nobody holds the
/// lock. A directory of a live process is never taken, even before its lock exists.
fn sweep_stale_runs(runs: &Path) {
    let Ok(entries) = fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if run_pid(&name).is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
            continue;
        }
        let lock = entry.path().join(LOCK_FILE);
        // The lock is held (by `_held`) while the directory is removed.
        if let Ok(Some(_held)) = FileLock::try_acquire(&lock)
            && rootfs::remove_tree(&entry.path()).is_ok()
        {
            eprintln!(
                "revive: removed stale guest run {} (its harness died)",
                entry.path().display()
            );
        }
    }
}

/// QEMU, killed and reaped when dropped.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `job` in a guest booted from `image`: builds the job disk, boots, waits for the
/// guest to power off (at most the job's timeout), and returns the results. When the guest
/// kernel oopses or panics, says so loudly and boots once more on a fresh job disk.
pub fn run(image: &GuestImage, job: &Job) -> Result<Outcome> {
    ensure!(
        Command::new("qemu-system-x86_64")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "qemu-system-x86_64 is not installed: run scripts/host-deps.sh (apt-get install \
         --no-install-recommends qemu-system-x86 cpio)"
    );
    let started = Instant::now();
    let run = RunDir::create(&job.label)?;
    let mut boots = Vec::new();
    loop {
        let disk = run.dir.join("job.img");
        job.write_disk(&run.dir.join("job"), &disk, &run.dir.join("job-disk.log"))?;
        let boot = boot(image, &disk, &run.dir, job.timeout)?;
        let console = fs::read_to_string(run.dir.join("console.log")).unwrap_or_default();
        let results = fs::read_to_string(run.dir.join("results.log")).unwrap_or_default();
        let (results, done) = parse_results(&results);
        let failure = boot.kernel_failure.clone();
        boots.push(boot);
        if let Some(line) = failure
            && boots.len() == 1
        {
            eprintln!(
                "\n*** revive: the guest kernel failed ({line}); booting once more. Last \
                 console lines of the failed boot:\n{}\n***\n",
                tail(&console, 60)
            );
            continue;
        }
        return Ok(Outcome {
            results,
            done,
            console,
            boots,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
}

fn boot(image: &GuestImage, job_disk: &Path, dir: &Path, timeout: Duration) -> Result<Boot> {
    let tmp = dir.join("tmp");
    rootfs::remove_tree(&tmp)?;
    fs::create_dir_all(&tmp)?;
    let drive = |path: &Path, extra: &str| -> Result<String> {
        let path = path.to_string_lossy();
        ensure!(
            !path.contains(','),
            "QEMU cannot take a disk path with a comma: {path}"
        );
        Ok(format!(
            "file={path},format=raw,if=virtio,cache=unsafe{extra}"
        ))
    };
    let started = Instant::now();
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-name", "revive-guest", "-accel", &accel()])
        .args(["-cpu", "max", "-smp", "2", "-m", "1536"])
        .args(["-nographic", "-nodefaults", "-no-reboot", "-no-user-config"])
        .args(["-monitor", "none", "-nic", "none"])
        .args(["-device", "virtio-rng-pci"])
        .arg("-kernel")
        .arg(image.kernel())
        .arg("-initrd")
        .arg(image.initrd())
        .args(["-append", KERNEL_ARGS])
        .arg("-drive")
        .arg(drive(&image.root_disk(), ",snapshot=on")?)
        .arg("-drive")
        .arg(drive(job_disk, "")?)
        .arg("-serial")
        .arg(format!("file:{}", dir.join("console.log").display()))
        .arg("-serial")
        .arg(format!("file:{}", dir.join("results.log").display()))
        // snapshot=on's temporary overlay goes here, inside the run directory.
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("qemu.log"))?)
        .stderr(fs::File::create(dir.join("qemu.err"))?);
    // SAFETY: prctl is async-signal-safe; QEMU gets SIGKILL if the thread that started it
    // dies, so no guest outlives its harness.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut qemu = Qemu(cmd.spawn().context("starting qemu-system-x86_64")?);
    let deadline = started + timeout;
    let (mut job_started, mut driver_done) = (None, None);
    let (status, timed_out) = loop {
        if let Some(status) = qemu.0.try_wait()? {
            break (Some(status), false);
        }
        if Instant::now() >= deadline {
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(500));
        let now = started.elapsed().as_secs_f64();
        if job_started.is_none()
            && fs::read_to_string(dir.join("console.log"))
                .is_ok_and(|c| c.contains("revive guest: job "))
        {
            job_started = Some(now);
        }
        if driver_done.is_none()
            && fs::read_to_string(dir.join("results.log"))
                .is_ok_and(|r| r.lines().any(|l| l.trim_end() == DONE))
        {
            driver_done = Some(now);
        }
    };
    drop(qemu);
    let console = fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    let err = fs::read_to_string(dir.join("qemu.err")).unwrap_or_default();
    if let Some(status) = status {
        ensure!(
            status.success(),
            "QEMU failed ({status}): {}\nconsole:\n{}",
            err.trim(),
            tail(&console, 40)
        );
    }
    rootfs::remove_tree(&tmp)?;
    Ok(Boot {
        seconds: started.elapsed().as_secs_f64(),
        status,
        timed_out,
        kernel_failure: kernel_failure(&console),
        job_started,
        driver_done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_directories_name_their_harness() {
        assert_eq!(run_pid("suite-1234-0"), Some(1234));
        assert_eq!(run_pid("my-label-77-12"), Some(77));
        assert_eq!(run_pid("junk"), None);
    }

    #[test]
    fn kernel_failures_are_recognised_only_as_kernel_lines() {
        let ok = "[    1.0] systemd[1]: started\n[ 2.0] sh[5]: echo Oops no BUG: here\n";
        assert_eq!(kernel_failure(ok), None);
        let oops = "[   12.5] BUG: kernel NULL pointer dereference, address: 0\n";
        assert!(kernel_failure(oops).unwrap().contains("NULL pointer"));
        let panic = "[   3.1] Kernel panic - not syncing: Fatal exception\n";
        assert!(kernel_failure(panic).is_some());
        assert!(kernel_failure("[ 1.0] Oops: 0000 [#1] SMP\n").is_some());
    }
}
