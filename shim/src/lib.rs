//! `containerd-shim-revive-v2`: the containerd shim v2 for the `io.containerd.revive.v2`
//! runtime, as a library; the binary (`main.rs`) only dispatches on how containerd ran it.
//!
//! containerd runs the binary three ways:
//! - `start`: launch (or reuse) the long-lived shim daemon for the container's
//!   group and print its ttrpc address;
//! - `delete`: clean up after a shim that died, printing a `DeleteResponse`;
//! - no action (`-socket` given): the daemon serving the Task API.
//!
//! The `containerd-shim` crate drives `start` and `delete` through [`service::Service`];
//! the daemon is our own ([`daemon`]) so that it can serve task API v2 and v3. Layering
//! follows containerd's Go shim: `task` is the RPC surface, exit fan-in and events only;
//! `container` turns requests into runtime calls; `process` is the per-process state
//! machine, whose lock each operation holds across its runtime call; `checkpoint` is
//! checkpoint and restore with CRIU; `io` wires stdio; `runtime` is the OCI runtime behind
//! a trait (runc and crun, or a fake in unit tests).

use std::ffi::OsString;

mod cgroup;
mod checkpoint;
mod container;
pub mod daemon;
pub mod error;
mod events;
mod freezer;
mod io;
pub mod network;
mod oom;
pub mod options;
mod preflight;
mod privilege;
mod process;
mod program;
pub mod reconcile;
mod runtime;
mod sandbox;
pub mod service;
mod spec;
pub mod standins;
mod stats;
mod task;

/// Runtime type containerd resolves to this binary (`containerd-shim-revive-v2`).
pub const RUNTIME_ID: &str = "io.containerd.revive.v2";

/// Name of the binary, used in `--version` output and error messages.
pub const SHIM_NAME: &str = "containerd-shim-revive-v2";

/// Whether `-v`/`-version` (or `--v`/`--version`, Go flag syntax) was passed.
///
/// The `containerd-shim` crate parses the flag but does not act on it. Flags it
/// cannot parse are left to its `run`, which reports them.
pub fn wants_version(args: &[OsString]) -> bool {
    containerd_shim::parse(args.get(1..).unwrap_or_default()).is_ok_and(|flags| flags.version)
}

/// Version report, in the layout of containerd's Go shims.
pub fn version_text() -> String {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!(
        "{SHIM_NAME}:\n  Version:  {}\n  Runtime:  {RUNTIME_ID}\n  Task API: containerd.task.v2.Task, containerd.task.v3.Task\n  Build:    {profile}, {}-{}\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn version_flags_are_recognised() {
        for flag in ["-v", "-version", "--v", "--version"] {
            assert!(wants_version(&args(&[SHIM_NAME, flag])), "{flag}");
        }
        assert!(!wants_version(&args(&[SHIM_NAME])));
        assert!(!wants_version(&args(&[SHIM_NAME, "-id", "c1", "start"])));
        // Unknown flags are not ours to report here.
        assert!(!wants_version(&args(&[SHIM_NAME, "-bogus"])));
    }

    #[test]
    fn version_text_names_the_shim_and_version() {
        let text = version_text();
        assert!(text.starts_with("containerd-shim-revive-v2:\n"), "{text}");
        assert!(
            text.contains(&format!("Version:  {}", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
        assert!(text.contains(RUNTIME_ID), "{text}");
    }
}
