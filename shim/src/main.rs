//! The `containerd-shim-revive-v2` binary: dispatches on how containerd ran it (see the
//! library, `containerd_shim_revive_v2`).

use std::ffi::OsString;

use containerd_shim::asynchronous::run;
use containerd_shim_revive_v2::{
    RUNTIME_ID, SHIM_NAME, daemon, network, service, version_text, wants_version,
};

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
