//! The shim daemon (the process containerd talks to), started by `start` with `-socket`.
//!
//! The `containerd-shim` crate's own daemon serves only `containerd.task.v3.Task`, but
//! containerd 1.7 (and 2.0–2.2 after a version-2 start reply) calls `containerd.task.v2.Task`.
//! The messages are identical, so this daemon serves one service under both names. The rest
//! mirrors the crate: logger on the bundle's log fifo, event publisher, subreaper and a
//! SIGCHLD reaper that feeds the crate's exit monitor.

use std::sync::Arc;

use containerd_shim::Flags;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::asynchronous::monitor::monitor_notify_by_pid;
use containerd_shim_protos::shim_async::create_task;
use containerd_shim_protos::ttrpc::r#async::Server;
use containerd_shim_protos::ttrpc::r#async::transport::Listener;
use log::{error, info, warn};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use crate::task::TaskService;

const TASK_V2: &str = "containerd.task.v2.Task";
const TASK_V3: &str = "containerd.task.v3.Task";

/// The ttrpc services for `task`: the Task API under its v3 and v2 names.
pub fn task_services(
    task: TaskService,
) -> std::collections::HashMap<String, containerd_shim_protos::ttrpc::r#async::Service> {
    let task: Arc<dyn containerd_shim_protos::shim_async::Task + Send + Sync> = Arc::new(task);
    let mut services = create_task(task.clone());
    for (name, service) in create_task(task) {
        services.insert(name.replace(TASK_V3, TASK_V2), service);
    }
    services
}

/// Runs the daemon until Shutdown. Errors go to stderr, which `start` forwards to containerd.
pub async fn serve(flags: Flags) -> Result<(), String> {
    if flags.socket.is_empty() {
        return Err("the shim daemon needs -socket".into());
    }
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) on the calling process; no memory involved.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "becoming a subreaper: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut sigchld = signal(SignalKind::child()).map_err(|e| format!("SIGCHLD handler: {e}"))?;
    tokio::spawn(async move {
        while sigchld.recv().await.is_some() {
            reap().await;
        }
    });
    // SIGTERM/SIGINT alone do not stop a shim (containerd uses Shutdown); SIGPIPE is ignored.
    for kind in [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::pipe(),
    ] {
        if let Ok(mut s) = signal(kind) {
            tokio::spawn(async move { while s.recv().await.is_some() {} });
        }
    }
    containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id)
        .map_err(|e| format!("logger: {e}"))?;

    let path = flags.socket.trim_start_matches("unix://").to_string();
    let listener = match std::os::unix::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                // Another daemon of this group already serves the socket: `start` reuses it.
                info!("{path} is already served");
                signal_started();
                return Ok(());
            }
            // A socket left by a shim that was killed: nobody answers, take it over (as the
            // Go shim does).
            info!("{path}: removing the stale socket of a dead shim");
            let _ = std::fs::remove_file(&path);
            std::os::unix::net::UnixListener::bind(&path)
                .map_err(|e2| format!("listening on {path}: {e}; after removing it: {e2}"))?
        }
        Err(e) => {
            if let Some(parent) = std::path::Path::new(&path).parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            std::os::unix::net::UnixListener::bind(&path)
                .map_err(|e2| format!("listening on {path}: {e}; {e2}"))?
        }
    };
    let ttrpc_address =
        std::env::var("TTRPC_ADDRESS").map_err(|_| "TTRPC_ADDRESS is not set".to_string())?;
    let publisher = crate::events::Publisher::new(&ttrpc_address);
    let exit = Arc::new(ExitSignal::default());
    let task = TaskService::new(&flags.namespace, Some(publisher), exit.clone()).await;
    let listener = Listener::try_from(listener).map_err(|e| format!("ttrpc listener: {e}"))?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(task_services(task));
    server
        .start()
        .await
        .map_err(|e| format!("starting the ttrpc server: {e}"))?;
    signal_started();
    info!("serving the task API (v2 and v3) on {path}");
    exit.wait().await;
    info!("shutting down");
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Collects every exited child and tells the monitor (runtime commands wait there too).
async fn reap() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => notify(pid, code).await,
            Ok(WaitStatus::Signaled(pid, sig, _)) => notify(pid, 128 + sig as i32).await,
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
            Ok(_) => continue,
            Err(e) => {
                warn!("waitpid: {e}");
                break;
            }
        }
    }
}

async fn notify(pid: Pid, code: i32) {
    if let Err(e) = monitor_notify_by_pid(pid.as_raw(), code).await {
        error!("forwarding the exit of {pid}: {e}");
    }
}

/// `start` waits for the daemon's stdout to close: point it at stderr.
fn signal_started() {
    // SAFETY: dup2 on the process's own standard descriptors.
    unsafe {
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
    }
}
