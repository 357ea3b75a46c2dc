//! Interruption of a long command (`revive migrate`): SIGINT, SIGTERM and SIGHUP are noted,
//! not obeyed at once, so the command stops between two of its steps and undoes what it
//! made, instead of dying halfway with a pod, an agent or a checkpoint archive left behind.

use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// The signals that interrupt.
const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The last interrupting signal received, 0 before one is.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(signal: libc::c_int) {
    // An atomic store is async-signal-safe.
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// Installs `action` for every one of [`SIGNALS`].
///
/// # Safety
/// `action`'s handler may only call async-signal-safe functions.
unsafe fn install(action: &SigAction) -> Result<()> {
    for signal in SIGNALS {
        // SAFETY: the caller vouches for the handler.
        unsafe { sigaction(signal, action) }
            .with_context(|| format!("installing a handler for {signal}"))?;
    }
    Ok(())
}

/// From now on, [`SIGNALS`] are noted for [`received`] instead of ending the process.
pub fn catch() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(note),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { install(&action) }
}

/// The interrupting signal received since [`catch`], if any.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// The files [`remove_on_signal`] removes, as C strings made before any signal comes.
static DOOMED: std::sync::OnceLock<Vec<std::ffi::CString>> = std::sync::OnceLock::new();

extern "C" fn remove_and_exit(signal: libc::c_int) {
    if let Some(paths) = DOOMED.get() {
        for path in paths {
            // SAFETY: unlink and _exit are async-signal-safe; the strings live forever.
            unsafe { libc::unlink(path.as_ptr()) };
        }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(128 + signal) }
}

/// From now on, [`SIGNALS`] remove `paths` and end the process (with 128 + the signal, as
/// a shell reports a death by signal). For files that must not outlive the process that
/// holds them, such as checkpoint archives in an agent pod that is deleted.
pub fn remove_on_signal(paths: &[std::path::PathBuf]) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let paths = paths
        .iter()
        .map(|p| std::ffi::CString::new(p.as_os_str().as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .context("a path with a NUL byte")?;
    anyhow::ensure!(
        DOOMED.set(paths).is_ok(),
        "files to remove on a signal were already named"
    );
    let action = SigAction::new(
        SigHandler::Handler(remove_and_exit),
        SaFlags::empty(),
        SigSet::all(),
    );
    // SAFETY: the handler only calls unlink and _exit, which are async-signal-safe.
    unsafe { install(&action) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_noted_not_obeyed() {
        catch().unwrap();
        assert_eq!(received(), None);
        nix::sys::signal::raise(Signal::SIGHUP).unwrap();
        assert_eq!(received(), Some(Signal::SIGHUP));
    }

    #[test]
    fn a_signal_removes_the_files_named_and_ends_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let doomed = dir.path().join("checkpoint.tar");
        std::fs::write(&doomed, "pages").unwrap();
        // SAFETY: the child only installs the handler and raises the signal; glibc's malloc
        // is usable after fork.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let _ = remove_on_signal(std::slice::from_ref(&doomed));
                let _ = nix::sys::signal::raise(Signal::SIGTERM);
                // SAFETY: ends the forked child without running the test harness's exit.
                unsafe { libc::_exit(1) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 128 + 15));
                assert!(!doomed.exists());
            }
        }
    }
}
