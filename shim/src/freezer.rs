//! Freezing a container's cgroup before a checkpoint with exit, so that CRIU finds it frozen.
//!
//! runc hands CRIU the container's freezer cgroup (`freeze_cgroup`). CRIU asks the freezer to
//! freeze and then looks at its state in steps of 100 ms (criu/seize.c, `freeze_processes`).
//! The freezer is often still FREEZING at the first look, so a small container's checkpoint
//! took either about 0.08 s or about 0.18 s here, with either shim; CRIU's own `stats-dump`
//! shows the 100 ms in its freezing time (`make bench`, docs/benchmarks.md).
//!
//! When a checkpoint ends the container (`exit`), the shim freezes the cgroup first, looking
//! at its state every few hundred microseconds. CRIU, finding it FROZEN, records that, skips
//! its wait and seizes the processes. After a successful dump it kills them without freezing
//! the cgroup again (it restores the freezer's state only for processes that live on); after
//! a failed dump it hands them back frozen, as it found them, and the shim thaws the cgroup:
//! the container goes on running, as it would have without this.
//!
//! A checkpoint that leaves the container running is not frozen early: the processes would
//! stand still through runc's and CRIU's start-up as well, which is longer than the step
//! saved. runc passes `freeze_cgroup` to CRIU on every cgroup version, crun on cgroup v2
//! only (since 0.16); the early freeze is used with runc, and other runtimes are left
//! alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::stats::{cgroup_dir, cgroup_mounts};

/// How long the shim waits for the freezer before giving the job back to CRIU.
pub const BUDGET: Duration = Duration::from_millis(50);

/// The first pause between two looks at the freezer's state; it doubles up to [`MAX_STEP`].
const FIRST_STEP: Duration = Duration::from_micros(100);
const MAX_STEP: Duration = Duration::from_millis(2);

/// A cgroup freezer, as runc would hand it to CRIU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freezer {
    /// cgroup v1: `freezer.state` (THAWED, FREEZING, FROZEN).
    V1(PathBuf),
    /// cgroup v2 (unified mode): `cgroup.freeze` to ask, `cgroup.events` ("frozen 1") to see.
    V2(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Thawed,
    Freezing,
    Frozen,
}

impl Freezer {
    /// The freezer of process `pid`'s cgroup, as runc picks it: the unified hierarchy when
    /// /sys/fs/cgroup is cgroup2, else the v1 freezer controller. None when there is none,
    /// or for the root cgroup (which cannot be frozen).
    pub fn of(pid: u32) -> Option<Freezer> {
        let unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
        let mounts = cgroup_mounts().ok()?;
        let freezer = if unified {
            Freezer::V2(cgroup_dir(pid, "", &mounts)?)
        } else {
            Freezer::V1(cgroup_dir(pid, "freezer", &mounts)?)
        };
        freezer.control().is_file().then_some(freezer)
    }

    /// The file written to freeze and thaw.
    fn control(&self) -> PathBuf {
        match self {
            Freezer::V1(dir) => dir.join("freezer.state"),
            Freezer::V2(dir) => dir.join("cgroup.freeze"),
        }
    }

    fn dir(&self) -> &Path {
        match self {
            Freezer::V1(dir) | Freezer::V2(dir) => dir,
        }
    }

    pub fn state(&self) -> std::io::Result<State> {
        match self {
            Freezer::V1(dir) => parse_v1(&std::fs::read_to_string(dir.join("freezer.state"))?),
            Freezer::V2(dir) => {
                if std::fs::read_to_string(dir.join("cgroup.freeze"))?.trim() == "0" {
                    return Ok(State::Thawed);
                }
                parse_v2_events(&std::fs::read_to_string(dir.join("cgroup.events"))?)
            }
        }
    }

    fn write(&self, frozen: bool) -> std::io::Result<()> {
        let value = match (self, frozen) {
            (Freezer::V1(_), true) => "FROZEN",
            (Freezer::V1(_), false) => "THAWED",
            (Freezer::V2(_), true) => "1",
            (Freezer::V2(_), false) => "0",
        };
        use std::io::Write;
        // Never created: a cgroup that is gone stays gone.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.control())?
            .write_all(value.as_bytes())
    }

    /// Freezes a THAWED cgroup and waits until it is FROZEN, at most `budget`. Returns how
    /// long it took, or None, with the cgroup thawed again, when it was not THAWED to begin
    /// with (paused, or a freeze under way: not ours to touch) or did not freeze in time.
    pub fn freeze(&self, budget: Duration) -> std::io::Result<Option<Duration>> {
        if self.state()? != State::Thawed {
            return Ok(None);
        }
        let started = Instant::now();
        self.write(true)?;
        let mut step = FIRST_STEP;
        let mut asked = started;
        loop {
            match self.state() {
                Ok(State::Frozen) => return Ok(Some(started.elapsed())),
                Ok(_) if started.elapsed() < budget => {}
                other => {
                    self.thaw()?;
                    return other.map(|_| None);
                }
            }
            // The v1 freezer tries each process once; asking again retries the ones that
            // were busy (CRIU does the same).
            if matches!(self, Freezer::V1(_)) && asked.elapsed() >= Duration::from_millis(10) {
                self.write(true)?;
                asked = Instant::now();
            }
            std::thread::sleep(step);
            step = (step * 2).min(MAX_STEP);
        }
    }

    /// The threads of the cgroup and its descendants that the kernel reports in
    /// uninterruptible sleep (state D), each as "TID (COMM) in WCHAN".
    pub fn uninterruptible(&self) -> Vec<String> {
        let list = match self {
            Freezer::V1(_) => "tasks",
            Freezer::V2(_) => "cgroup.threads",
        };
        let mut found = Vec::new();
        let mut dirs = vec![self.dir().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let tids = std::fs::read_to_string(dir.join(list)).unwrap_or_default();
            for tid in tids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                if let Some(sleeper) = uninterruptible_thread(tid) {
                    found.push(sleeper);
                }
            }
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(entry.path());
                }
            }
        }
        found
    }

    /// Thaws a cgroup left FREEZING (a freeze that never finished); true when it did.
    pub fn thaw_if_freezing(&self) -> bool {
        self.state().is_ok_and(|s| s == State::Freezing) && self.thaw().is_ok()
    }

    /// Thaws the cgroup; a cgroup that is gone (the container was destroyed) is thawed.
    pub fn thaw(&self) -> std::io::Result<()> {
        match self.write(false) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || !self.dir().exists() => Ok(()),
            other => other,
        }
    }
}

/// Thread `tid` as "TID (COMM) in WCHAN" when the kernel reports it in state D.
fn uninterruptible_thread(tid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    let (comm, state) = parse_stat(&stat)?;
    if state != 'D' {
        return None;
    }
    let wchan = std::fs::read_to_string(format!("/proc/{tid}/wchan")).unwrap_or_default();
    let wchan = match wchan.trim() {
        "" | "0" => "an unknown place",
        w => w,
    };
    Some(format!("{tid} ({comm}) in {wchan}"))
}

/// The command name and the state letter of a /proc/PID/stat line (the name may hold
/// spaces and parentheses: it ends at the last ") ").
fn parse_stat(stat: &str) -> Option<(&str, char)> {
    let (head, rest) = stat.rsplit_once(") ")?;
    let (_, comm) = head.split_once(" (")?;
    Some((comm, rest.chars().next()?))
}

fn parse_v1(text: &str) -> std::io::Result<State> {
    match text.trim() {
        "THAWED" => Ok(State::Thawed),
        "FREEZING" => Ok(State::Freezing),
        "FROZEN" => Ok(State::Frozen),
        other => Err(std::io::Error::other(format!(
            "unknown freezer state {other:?}"
        ))),
    }
}

fn parse_v2_events(text: &str) -> std::io::Result<State> {
    match text.lines().find_map(|l| l.strip_prefix("frozen ")) {
        Some("1") => Ok(State::Frozen),
        Some("0") => Ok(State::Freezing),
        _ => Err(std::io::Error::other("cgroup.events has no frozen line")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse() {
        assert_eq!(parse_stat("42 (sh) D 1 42 42 0 -1"), Some(("sh", 'D')));
        assert_eq!(parse_stat("7 (a) b (c)) S 1 7"), Some(("a) b (c)", 'S')));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_cgroup_without_sleepers_has_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cgroup.threads"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("child")).unwrap();
        std::fs::write(dir.path().join("child/cgroup.threads"), "").unwrap();
        // The test's own thread is running, not in state D.
        assert!(
            Freezer::V2(dir.path().to_path_buf())
                .uninterruptible()
                .is_empty()
        );
    }

    #[test]
    fn states_parse() {
        assert_eq!(parse_v1("THAWED\n").unwrap(), State::Thawed);
        assert_eq!(parse_v1("FREEZING\n").unwrap(), State::Freezing);
        assert_eq!(parse_v1("FROZEN").unwrap(), State::Frozen);
        assert!(parse_v1("MELTING").is_err());
        assert_eq!(
            parse_v2_events("populated 1\nfrozen 1\n").unwrap(),
            State::Frozen
        );
        assert_eq!(
            parse_v2_events("populated 1\nfrozen 0\n").unwrap(),
            State::Freezing
        );
        assert!(parse_v2_events("populated 1\n").is_err());
    }

    /// A v1 freezer directory whose state the test sets (the kernel's part is played by
    /// hand: a write of FROZEN leaves it FREEZING until the test says otherwise).
    fn fake_v1(state: &str) -> (tempfile::TempDir, Freezer) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("freezer.state"), state).unwrap();
        let freezer = Freezer::V1(dir.path().to_path_buf());
        (dir, freezer)
    }

    #[test]
    fn a_frozen_or_freezing_cgroup_is_not_touched() {
        for state in ["FROZEN\n", "FREEZING\n"] {
            let (dir, freezer) = fake_v1(state);
            assert_eq!(freezer.freeze(BUDGET).unwrap(), None);
            let now = std::fs::read_to_string(dir.path().join("freezer.state")).unwrap();
            assert_eq!(now, state);
        }
    }

    #[test]
    fn a_freeze_is_seen_and_timed() {
        // A plain file keeps what was written: FROZEN at the first look.
        let (_dir, freezer) = fake_v1("THAWED\n");
        let took = freezer.freeze(BUDGET).unwrap().expect("frozen");
        assert!(took < BUDGET * 10, "{took:?}");
        assert_eq!(freezer.state().unwrap(), State::Frozen);
        freezer.thaw().unwrap();
        assert_eq!(freezer.state().unwrap(), State::Thawed);
    }

    #[test]
    fn a_freezer_that_never_freezes_is_thawed_after_the_budget() {
        // A v2 freezer whose events never say frozen: asked, it stays "frozen 0".
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.freeze"), "0\n").unwrap();
        std::fs::write(dir.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        let freezer = Freezer::V2(dir.path().to_path_buf());
        let started = Instant::now();
        assert_eq!(freezer.freeze(Duration::from_millis(5)).unwrap(), None);
        assert!(started.elapsed() >= Duration::from_millis(5));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cgroup.freeze")).unwrap(),
            "0"
        );
        // Asked to freeze, then thawed; nothing else was written.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn only_a_freezer_stuck_freezing_is_thawed() {
        let (dir, freezer) = fake_v1("FREEZING\n");
        let state = dir.path().join("freezer.state");
        assert!(freezer.thaw_if_freezing());
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "THAWED");
        std::fs::write(&state, "FROZEN\n").unwrap();
        assert!(!freezer.thaw_if_freezing());
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "FROZEN\n");
        assert!(!Freezer::V1(dir.path().join("missing")).thaw_if_freezing());
    }

    /// A real cgroup of `hierarchy` holding one busy process (a shell loop, always running
    /// or runnable while it may), thawed, killed and removed when dropped.
    struct Busy {
        freezer: Freezer,
        child: std::process::Child,
    }

    impl Busy {
        fn start(hierarchy: &Path, v2: bool) -> Busy {
            let dir = hierarchy.join(format!("revive-freezer-test-{}", std::process::id()));
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            let child = std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap();
            let freezer = if v2 {
                Freezer::V2(dir.clone())
            } else {
                Freezer::V1(dir.clone())
            };
            let busy = Busy { freezer, child };
            std::fs::write(dir.join("cgroup.procs"), busy.child.id().to_string()).unwrap();
            busy
        }

        /// The process's state letter as the kernel reports it (/proc/PID/stat).
        fn kernel_state(&self) -> char {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
            let after = stat.rsplit_once(") ").unwrap().1;
            after.chars().next().unwrap()
        }

        /// Waits (at most 10 s) until the kernel says the process is running, or is not.
        fn wait_running(&self, running: bool) {
            let started = Instant::now();
            while (self.kernel_state() == 'R') != running {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the process stayed in state {} (running wanted: {running})",
                    self.kernel_state()
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    impl Drop for Busy {
        fn drop(&mut self) {
            let _ = self.freezer.thaw();
            let _ = self.child.kill();
            let _ = self.child.wait();
            // The reaped process leaves the cgroup a moment later.
            for _ in 0..1000 {
                if std::fs::remove_dir(self.freezer.dir()).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            eprintln!("left behind: {}", self.freezer.dir().display());
        }
    }

    /// Freezes and thaws a real busy process through the kernel's freezer, checking the
    /// process's own state as the kernel reports it, not only the freezer's files.
    fn kernel_freezer_round_trip(hierarchy: &Path, v2: bool) {
        let busy = Busy::start(hierarchy, v2);
        let freezer = &busy.freezer;
        assert_eq!(freezer.state().unwrap(), State::Thawed);
        busy.wait_running(true);
        // A generous budget: this tests the mechanics, not the speed.
        let took = freezer.freeze(Duration::from_secs(10)).unwrap();
        assert!(took.is_some(), "{freezer:?} did not freeze");
        assert_eq!(freezer.state().unwrap(), State::Frozen);
        for _ in 0..20 {
            assert_ne!(busy.kernel_state(), 'R', "a frozen process ran");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Already frozen: not ours to touch, and it stays frozen.
        assert_eq!(freezer.freeze(BUDGET).unwrap(), None);
        assert!(!freezer.thaw_if_freezing());
        assert_eq!(freezer.state().unwrap(), State::Frozen);
        freezer.thaw().unwrap();
        assert_eq!(freezer.state().unwrap(), State::Thawed);
        busy.wait_running(true);
        // The hierarchy Freezer::of picks on this machine finds the same cgroup.
        let host_unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
        if host_unified == v2 {
            assert_eq!(Freezer::of(busy.child.id()).as_ref(), Some(freezer));
        }
    }

    fn root_or_skip(what: &str) -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        eprintln!("!!! SKIPPED: {what} needs root (it makes a cgroup) !!!");
        false
    }

    #[test]
    fn a_v1_kernel_freezer_freezes_and_thaws_a_busy_process() {
        let hierarchy = Path::new("/sys/fs/cgroup/freezer");
        if !root_or_skip("the v1 freezer test") {
            return;
        }
        if !hierarchy.join("freezer.state").exists() && !hierarchy.join("tasks").exists() {
            eprintln!("!!! SKIPPED: this machine has no cgroup v1 freezer (pure cgroup v2) !!!");
            return;
        }
        kernel_freezer_round_trip(hierarchy, false);
    }

    /// On a hybrid machine (v1 controllers, cgroup2 at /sys/fs/cgroup/unified, like this
    /// project's CI machine) the v2 freezer is tested there, although runc uses v1.
    #[test]
    fn a_v2_kernel_freezer_freezes_and_thaws_a_busy_process() {
        let hierarchy = cgroup_mounts()
            .ok()
            .and_then(|mounts| mounts.get("").cloned());
        if !root_or_skip("the v2 freezer test") {
            return;
        }
        let Some(hierarchy) = hierarchy else {
            eprintln!("!!! SKIPPED: this machine has no cgroup2 mount !!!");
            return;
        };
        kernel_freezer_round_trip(&hierarchy, true);
    }

    #[test]
    fn a_removed_cgroup_counts_as_thawed() {
        let dir = tempfile::tempdir().unwrap();
        let freezer = Freezer::V1(dir.path().join("gone"));
        freezer.thaw().unwrap();
    }
}
