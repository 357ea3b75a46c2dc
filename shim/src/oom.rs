//! OOM notifications for a container, published as /tasks/oom like containerd's Go shim:
//! cgroup v1 through an eventfd registered on memory.oom_control, cgroup v2 by watching
//! memory.events for a growing `oom_kill` count.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use log::{debug, warn};
use tokio::sync::mpsc::UnboundedSender;

use crate::stats;

/// Watches the memory cgroup of `pid` on a thread of its own and sends `id` on `events`
/// for every OOM kill, until the cgroup goes away.
pub fn watch(pid: u32, id: String, events: UnboundedSender<String>) {
    let Ok(mounts) = stats::cgroup_mounts() else {
        return;
    };
    if let Some(dir) = stats::cgroup_dir(pid, "memory", &mounts) {
        spawn(move || watch_v1(&dir, &id, &events));
    } else if let Some(dir) = stats::cgroup_dir(pid, "", &mounts) {
        spawn(move || watch_v2(&dir, &id, &events));
    }
}

fn spawn(f: impl FnOnce() -> std::io::Result<()> + Send + 'static) {
    let _ = std::thread::Builder::new()
        .name("oom-watch".into())
        .spawn(move || {
            if let Err(e) = f() {
                warn!("OOM watch: {e}");
            }
        });
}

fn watch_v1(dir: &Path, id: &str, events: &UnboundedSender<String>) -> std::io::Result<()> {
    // SAFETY: eventfd returns a new descriptor that we own from here on.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: efd is a fresh, valid descriptor owned by nobody else.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    let control = fs::File::open(dir.join("memory.oom_control"))?;
    fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
    )?;
    let mut efile = fs::File::from(efd);
    let mut buf = [0u8; 8];
    loop {
        efile.read_exact(&mut buf)?;
        // The eventfd also fires when the cgroup is removed.
        if !dir.exists() {
            debug!("memory cgroup of {id} is gone: OOM watch ends");
            return Ok(());
        }
        if events.send(id.to_string()).is_err() {
            return Ok(());
        }
    }
}

fn oom_kills(file: &Path) -> Option<u64> {
    let text = fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

fn watch_v2(dir: &Path, id: &str, events: &UnboundedSender<String>) -> std::io::Result<()> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let file: PathBuf = dir.join("memory.events");
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(std::io::Error::from)?;
    inotify
        .add_watch(&file, AddWatchFlags::IN_MODIFY)
        .map_err(std::io::Error::from)?;
    let mut seen = oom_kills(&file).unwrap_or(0);
    loop {
        inotify.read_events().map_err(std::io::Error::from)?;
        let Some(now) = oom_kills(&file) else {
            return Ok(());
        };
        if now > seen {
            seen = now;
            if events.send(id.to_string()).is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_count_parses() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.events");
        fs::write(&file, "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n").unwrap();
        assert_eq!(oom_kills(&file), Some(2));
        assert_eq!(oom_kills(&dir.path().join("missing")), None);
    }
}
