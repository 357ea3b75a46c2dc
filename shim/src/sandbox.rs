//! A sandboxed restore, for looking at a checkpoint live: asked for by the annotation
//! [`ANNOTATION`] on the new container, it comes up paused before the checkpoint's code runs
//! a single instruction, with a read-only root and, in a network namespace of its own, no
//! interface but a loopback left down.
//!
//! How: CRIU is told, through the configuration file the `org.criu.config` annotation names
//! (runc and crun both pass it on), to leave the restored processes stopped
//! (`leave-stopped`); the shim then freezes the container with the runtime's pause and
//! sends every process SIGCONT, which the frozen processes take only once resumed. The
//! loopback hook the shim adds to other restores is left out, and a network namespace the
//! container would join (a pod's) is replaced by a fresh one. CRIU brings the root mount
//! back as it was dumped (read-write), so once the processes are frozen the shim remounts
//! the root read-only in their mount namespace.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The annotation that asks for a sandboxed restore ("true").
pub const ANNOTATION: &str = "revive.io/sandbox";
/// The annotation runc and crun read CRIU's configuration file from.
const CRIU_CONFIG: &str = "org.criu.config";
/// The fresh network namespace a sandbox joins instead of a pod's, bind-mounted in the
/// bundle.
const NETNS: &str = "sandbox-netns";

/// Whether the spec asks for a sandboxed restore.
pub fn requested(spec: &serde_json::Value) -> bool {
    spec["annotations"][ANNOTATION].as_str() == Some("true")
}

/// Readies `spec` (of the container in `bundle`) for a sandboxed restore: CRIU's
/// configuration file with `leave-stopped`, written into the bundle, named by the
/// `org.criu.config` annotation.
pub fn prepare(spec: &mut serde_json::Value, bundle: &Path) -> Result<PathBuf> {
    if let Some(other) = spec["annotations"][CRIU_CONFIG].as_str() {
        return Err(Error::InvalidArgument(format!(
            "{ANNOTATION} and {CRIU_CONFIG} ({other}) cannot both be given: a sandboxed \
             restore names its own CRIU configuration file; drop one of them"
        )));
    }
    let config = bundle.join("criu-sandbox.conf");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&config)
            .map_err(Error::io(format!("writing {}", config.display())))?;
        file.write_all(b"leave-stopped\n")
            .map_err(Error::io(format!("writing {}", config.display())))?;
    }
    spec["annotations"][CRIU_CONFIG] = config.display().to_string().into();
    // A namespace to join (a pod's) is replaced by a fresh one: no interface but a
    // loopback that is down.
    if let Some(ns) = spec["linux"]["namespaces"]
        .as_array_mut()
        .and_then(|all| all.iter_mut().find(|n| n["type"] == "network"))
        .filter(|n| n.get("path").is_some())
    {
        let fresh = bundle.join(NETNS);
        fresh_netns(&fresh)?;
        ns["path"] = fresh.display().to_string().into();
    }
    Ok(config)
}

/// Makes a new, empty network namespace and bind-mounts it on `target` (a new file): a
/// forked child unshares one and mounts its own.
fn fresh_netns(target: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)
        .map_err(Error::io(format!("creating {}", target.display())))?;
    let source = c"/proc/self/ns/net";
    let to = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{} holds a NUL", target.display())))?;
    let done = in_child(|| {
        // SAFETY: raw system calls on strings made before the fork.
        unsafe {
            libc::unshare(libc::CLONE_NEWNET) == 0
                && libc::mount(
                    source.as_ptr(),
                    to.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) == 0
        }
    });
    if let Err(e) = done {
        let _ = std::fs::remove_file(target);
        return Err(Error::FailedPrecondition(format!(
            "making a network namespace for the sandbox at {}: {e}",
            target.display()
        )));
    }
    Ok(())
}

/// Removes the sandbox's network namespace from `bundle`, if it made one.
pub fn remove_netns(bundle: &Path) {
    let target = bundle.join(NETNS);
    if target.exists() {
        let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&target);
    }
}

/// Runs `work` in a forked child, which makes only system calls with what was made before
/// the fork, and exits with whether it succeeded.
fn in_child(work: impl FnOnce() -> bool) -> std::result::Result<(), String> {
    // SAFETY: the child runs `work` (raw system calls, no allocation) and `_exit`s.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let ok = work();
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                other => Err(format!("the child ended {other:?}")),
            }
        }
        Err(e) => Err(format!("fork: {e}")),
    }
}

/// Remounts `/` read-only in the mount namespace of `pid` (a frozen process): a forked
/// child joins the namespace and remounts, since a multithreaded process cannot join a
/// mount namespace.
pub fn make_root_read_only(pid: u32) -> Result<()> {
    use std::os::fd::AsRawFd as _;
    let ns_path = format!("/proc/{pid}/ns/mnt");
    let ns = std::fs::File::open(&ns_path).map_err(Error::io(format!("opening {ns_path}")))?;
    let root = c"/";
    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
    in_child(|| {
        // SAFETY: raw system calls on a descriptor and a string made before the fork.
        unsafe {
            libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                ) == 0
        }
    })
    .map_err(|e| {
        Error::FailedPrecondition(format!(
            "remounting the root of process {pid} read-only failed: {e}"
        ))
    })
}

/// Fails when process `pid` shares the shim's network namespace (the node's): a
/// checkpoint taken in the node's network (a host-network pod, `ctr run --net-host`) comes
/// back in it, and a sandbox there would reach the node's network.
pub fn check_isolated(pid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let ns = |path: String| {
        std::fs::metadata(&path)
            .map(|m| (m.dev(), m.ino()))
            .map_err(Error::io(format!("reading {path}")))
    };
    if ns(format!("/proc/{pid}/ns/net"))? == ns("/proc/self/ns/net".into())? {
        return Err(Error::FailedPrecondition(format!(
            "a sandboxed restore needs a network namespace of its own, and this checkpoint \
             came back in the node's (it was taken in the host's network: a host-network pod, \
             or `ctr run --net-host`); it was killed. Restore it without {ANNOTATION}, or \
             take the checkpoint of a container with a network namespace of its own"
        )));
    }
    Ok(())
}

/// Sends SIGCONT to every process in `pids`: stopped by CRIU, frozen by the runtime, they
/// take it when the container is resumed.
pub fn wake_when_resumed(pids: &[usize]) {
    for pid in pids {
        if let Ok(pid) = i32::try_from(*pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandboxed_restore_is_asked_for_and_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = serde_json::json!({"root": {"path": "rootfs"}, "annotations": {}});
        assert!(!requested(&spec));
        spec["annotations"][ANNOTATION] = "true".into();
        assert!(requested(&spec));
        let config = prepare(&mut spec, dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "leave-stopped\n");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            spec["annotations"][CRIU_CONFIG],
            config.display().to_string()
        );
        // Its own configuration file cannot sit beside another.
        let err = prepare(&mut spec, dir.path()).unwrap_err();
        assert!(err.to_string().contains("cannot both be given"), "{err}");
    }
}
