//! When a started init runs the container's program.
//!
//! `runc start` (and `crun start`) returns as soon as the init has written to the exec
//! FIFO; the init then runs the spec's startContainer hooks, closes its descriptors and
//! calls execve(2). Until that execve, the init's executable is the runtime's own sealed
//! copy (for runc, a file on a private overlay mount no other namespace sees), and a
//! Pause or Checkpoint in that window catches a process CRIU cannot dump ("Can't lookup
//! mount ... path=/runc"). So Start returns once the init's executable is no longer the
//! one it had before the start: the program runs, or the init is gone.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// The longest Start waits for the execve: a startContainer hook may run that long, and
/// past it Start returns anyway (with a warning), as the Go shim does at once.
pub const EXEC_WAIT: Duration = Duration::from_secs(10);

/// The first pause between two looks; each next pause doubles, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_micros(200);
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// A process's executable, as device and inode of `/proc/<pid>/exe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Executable {
    dev: u64,
    ino: u64,
}

impl Executable {
    /// The executable of `pid`, or `None` if it has none to read (it is gone, a zombie, or
    /// not a real process, as a fake runtime's are).
    pub fn of(pid: u32) -> Option<Executable> {
        let meta = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
        Some(Executable {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Waits until `pid` runs another executable than `self` or has none, at most `limit`.
    /// Returns whether that happened in time.
    pub async fn wait_replaced(self, pid: u32, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut pause = FIRST_PAUSE;
        loop {
            if Executable::of(pid) != Some(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;

    #[tokio::test]
    async fn start_waits_until_the_program_replaces_the_init() {
        // A shell that, once told to go on, execs another program: the runtime's init
        // between its FIFO write and its execve.
        let mut child = Command::new("sh")
            .args(["-c", "read _; exec sleep 30"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let shell = Executable::of(pid).expect("the shell's executable");
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();

        assert!(shell.wait_replaced(pid, Duration::from_secs(30)).await);
        let sleep = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(
            sleep.to_string_lossy().contains("sleep"),
            "the program runs: {sleep:?}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn an_init_that_stays_in_the_runtime_is_waited_for_at_most_the_limit() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let before = Executable::of(pid).unwrap();
        assert!(!before.wait_replaced(pid, Duration::from_millis(50)).await);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            before.wait_replaced(pid, Duration::from_secs(30)).await,
            "gone"
        );
    }

    #[test]
    fn a_process_that_is_not_there_has_no_executable() {
        assert_eq!(Executable::of(u32::MAX), None);
    }
}
