//! `revive-snapshotter`: containerd proxy snapshotter for revive.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use log::{LevelFilter, error, info};
use revive_snapshotter::{Config, Snapshotter, VERSION, config};
use tokio::signal::unix::{SignalKind, signal};

/// containerd proxy snapshotter that restores checkpoint images.
#[derive(Debug, Parser)]
#[command(name = "revive-snapshotter", version)]
struct Cli {
    /// Unix socket to serve the containerd snapshots gRPC API on.
    #[arg(long, default_value = config::DEFAULT_ADDRESS)]
    address: PathBuf,

    /// Directory holding snapshot data and metadata.
    #[arg(long, default_value = config::DEFAULT_ROOT)]
    root: PathBuf,

    /// containerd's own gRPC socket, from which checkpoints' base images are read.
    #[arg(long, default_value = config::DEFAULT_CONTAINERD_SOCKET)]
    containerd_socket: PathBuf,

    /// A registry (`host[:port]`) from which a checkpoint's base image that containerd lacks
    /// is pulled (through containerd's transfer service); repeat for several. None by
    /// default: the base image's name comes from the checkpoint.
    #[arg(long = "pull-bases-from", value_name = "REGISTRY")]
    pull_bases_from: Vec<String>,

    /// The registry hosts configuration base image pulls use, as CRI's `config_path`.
    #[arg(long, default_value = config::DEFAULT_REGISTRY_HOSTS_DIR)]
    registry_hosts_dir: PathBuf,

    /// Log level: off, error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: LevelFilter,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .filter_level(cli.log_level)
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("failed to start tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    // Install the handlers before binding so a signal arriving during startup
    // still leads to an orderly shutdown.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let mut config = Config::new(cli.address, cli.root);
    config.containerd_socket = cli.containerd_socket;
    config.pull_bases_from = cli.pull_bases_from;
    config.registry_hosts_dir = cli.registry_hosts_dir;
    let snapshotter = Snapshotter::bind(config)?;
    info!(
        "revive-snapshotter {VERSION} listening on {} (root {})",
        snapshotter.config().address.display(),
        snapshotter.config().root.display()
    );
    snapshotter
        .serve(async move {
            tokio::select! {
                _ = sigterm.recv() => info!("received SIGTERM"),
                _ = sigint.recv() => info!("received SIGINT"),
            }
        })
        .await?;
    Ok(())
}
