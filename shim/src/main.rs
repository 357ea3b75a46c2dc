//! `containerd-shim-revive-v2`: the containerd shim v2 binary for the
//! `io.containerd.revive.v2` runtime.
//!
//! containerd runs this binary three ways:
//! - `start`: launch (or reuse) the long-lived shim daemon for the container's
//!   group and print its ttrpc address;
//! - `delete`: clean up after a shim that died, printing a `DeleteResponse`;
//! - no action (`-socket` given): the daemon serving the Task API.
//!
//! The `containerd-shim` crate drives `start` and `delete` through [`service::Service`];
//! the daemon is our own ([`daemon`]) so that it can serve task API v2 and v3. Layering
//! follows containerd's Go shim: [`task`] is the RPC surface, exit fan-in and events only;
//! [`container`] turns requests into runtime calls; [`process`] is the per-process state
//! machine; [`io`] wires stdio; [`runtime`] drives the OCI runtime binary.

use std::ffi::OsString;

use containerd_shim::asynchronous::run;

mod cgroup;
mod container;
mod daemon;
mod error;
mod events;
mod freezer;
mod io;
mod network;
mod oom;
mod options;
mod preflight;
mod privilege;
mod process;
mod reconcile;
mod runtime;
mod service;
mod spec;
mod stats;
mod task;

/// Runtime type containerd resolves to this binary (`containerd-shim-revive-v2`).
pub const RUNTIME_ID: &str = "io.containerd.revive.v2";

/// Name of the binary, used in `--version` output and error messages.
pub const SHIM_NAME: &str = "containerd-shim-revive-v2";

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    // runc runs this binary as a createRuntime hook during a restore (see `network`): it
    // must stay single-threaded to enter the container's network namespace.
    if args.get(1).is_some_and(|a| a == network::HOOK_ARG) {
        if let Err(e) = network::run_loopback_hook() {
            eprintln!("{SHIM_NAME} {}: {e}", network::HOOK_ARG);
            std::process::exit(1);
        }
        return;
    }
    if wants_version(&args) {
        print!("{}", version_text());
        return;
    }

    // A shim runs per pod and mostly waits: one thread for all its async work keeps its
    // memory small, and one malloc arena stops glibc from giving every thread its own.
    // SAFETY: mallopt only adjusts allocator parameters; no allocation is in flight yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{SHIM_NAME}: failed to start the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    // The daemon (no action, -socket given) is ours; `start`, `delete` and `-info` are the
    // crate's.
    match containerd_shim::parse(args.get(1..).unwrap_or_default()) {
        Ok(flags) if flags.action.is_empty() && !flags.info && !flags.socket.is_empty() => {
            let code = match runtime.block_on(daemon::serve(flags)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{SHIM_NAME}: {e}");
                    1
                }
            };
            // Exit now: nothing the daemon started may keep the process alive after
            // Shutdown (a runtime drop would wait for every blocking task).
            std::process::exit(code);
        }
        _ => runtime.block_on(run::<service::Service>(RUNTIME_ID, None)),
    }
}

/// Whether `-v`/`-version` (or `--v`/`--version`, Go flag syntax) was passed.
///
/// The `containerd-shim` crate parses the flag but does not act on it. Flags it
/// cannot parse are left to [`run`], which reports them.
fn wants_version(args: &[OsString]) -> bool {
    containerd_shim::parse(args.get(1..).unwrap_or_default()).is_ok_and(|flags| flags.version)
}

/// Version report, in the layout of containerd's Go shims.
fn version_text() -> String {
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
