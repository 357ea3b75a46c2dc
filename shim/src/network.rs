//! A restored container's network.
//!
//! runc always asks CRIU to leave the network namespace out of a checkpoint (`empty_ns`
//! CLONE_NEWNET) when the container has a namespace of its own, so a restore gets a fresh,
//! empty one: loopback down, no 127.0.0.1, and a server listening there is unreachable
//! (CRIU issue 590, containerd issue 4683; the Go shim restores it so). revive asks runc
//! to run this binary as a `createRuntime` hook for the restore. runc runs it when CRIU has
//! made the namespaces and before the processes resume (CRIU's `setup-namespaces`), and it
//! brings loopback up there, so 127.0.0.1 and ::1 exist again before restored sockets,
//! established loopback TCP connections included, need them.
//!
//! Namespaces given by path (a CRI pod's, the host's) are joined by runc and CRIU as they
//! are, and keep their own configuration; the hook is only added for a new namespace.

use std::io::Read;
use std::path::Path;

use log::info;
use nix::sched::{CloneFlags, setns};

use crate::spec::has_own_namespace;

/// The argument that makes this binary the hook (argv[1]).
pub const HOOK_ARG: &str = "restore-hook-loopback";

/// Adds the loopback hook to the spec when the container has a network namespace of its
/// own and the spec lacks it (a restore retried on the spec an earlier one wrote). `shim`
/// is this binary's path. Returns whether it did.
pub fn add_loopback_hook(spec: &mut serde_json::Value, shim: &Path) -> bool {
    if !has_own_namespace(spec, "network") || has_loopback_hook(spec, shim) {
        return false;
    }
    let hook = serde_json::json!({
        "path": shim,
        "args": [crate::SHIM_NAME, HOOK_ARG],
        "timeout": 10,
    });
    if !spec["hooks"].is_object() {
        spec["hooks"] = serde_json::json!({});
    }
    match spec["hooks"]["createRuntime"].as_array_mut() {
        Some(hooks) => hooks.insert(0, hook),
        None => spec["hooks"]["createRuntime"] = serde_json::json!([hook]),
    }
    true
}

fn has_loopback_hook(spec: &serde_json::Value, shim: &Path) -> bool {
    spec["hooks"]["createRuntime"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|hook| {
            hook["path"].as_str().map(Path::new) == Some(shim)
                && hook["args"].get(1).and_then(|a| a.as_str()) == Some(HOOK_ARG)
        })
}

/// The hook itself: reads the OCI state from stdin, enters the restored init's network
/// namespace and brings `lo` up. Runs single-threaded, before any runtime is started.
pub fn run_loopback_hook() -> Result<(), String> {
    let mut state = String::new();
    std::io::stdin()
        .read_to_string(&mut state)
        .map_err(|e| format!("reading the OCI state: {e}"))?;
    let state: serde_json::Value =
        serde_json::from_str(&state).map_err(|e| format!("invalid OCI state: {e}"))?;
    let pid = state["pid"]
        .as_u64()
        .filter(|p| *p > 0)
        .ok_or("the OCI state has no pid")?;
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| format!("opening the network namespace of {pid}: {e}"))?;
    setns(&netns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("entering the network namespace of {pid}: {e}"))?;
    loopback_up().map_err(|e| format!("bringing lo up in the namespace of {pid}: {e}"))?;
    info!("lo is up in the restored network namespace of {pid}");
    Ok(())
}

/// `ip link set lo up` in the current network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS).
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own, on our socket.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_goes_first_for_an_own_namespace_only() {
        let mut spec = serde_json::json!({
            "linux": {"namespaces": [{"type": "network"}, {"type": "pid"}]},
            "hooks": {"createRuntime": [{"path": "/bin/cni"}], "poststop": [{"path": "/x"}]}
        });
        assert!(add_loopback_hook(&mut spec, Path::new("/usr/bin/shim")));
        let hooks = spec["hooks"]["createRuntime"].as_array().unwrap();
        assert_eq!(hooks.len(), 2);
        assert_eq!(hooks[0]["path"], "/usr/bin/shim");
        assert_eq!(hooks[0]["args"][1], HOOK_ARG);
        assert_eq!(hooks[1]["path"], "/bin/cni");
        assert_eq!(spec["hooks"]["poststop"][0]["path"], "/x");
        // A retried restore finds the hook in the spec the first one wrote.
        let written = spec.clone();
        assert!(!add_loopback_hook(&mut spec, Path::new("/usr/bin/shim")));
        assert_eq!(spec, written);

        let mut bare = serde_json::json!({"linux": {"namespaces": [{"type": "network"}]}});
        assert!(add_loopback_hook(&mut bare, Path::new("/s")));
        assert_eq!(bare["hooks"]["createRuntime"][0]["path"], "/s");

        let pod = serde_json::json!({
            "linux": {"namespaces": [{"type": "network", "path": "/var/run/netns/cni-1"}]}
        });
        let mut joined = pod.clone();
        assert!(!add_loopback_hook(&mut joined, Path::new("/s")));
        assert_eq!(joined, pod);
        let mut host = serde_json::json!({"linux": {"namespaces": [{"type": "pid"}]}});
        assert!(!add_loopback_hook(&mut host, Path::new("/s")));
    }
}
