//! revive-guest: the driver the cgroup v2 guest runs (see `revive_integration::guest`).
//!
//! `revive-guest run --results /dev/ttyS1 --work DIR --images DIR` runs the scenarios
//! against the guest's containerd and writes one result line per scenario to the results
//! port; its narration goes to stdout (the guest's console).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use revive_integration::guest::driver::{self, Options};

#[derive(Parser)]
#[command(
    name = "revive-guest",
    about = "revive's scenarios inside the cgroup v2 guest (started by its job, not by hand)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and write their results.
    Run {
        /// Where result lines go (the guest's second serial port).
        #[arg(long)]
        results: PathBuf,
        /// Scratch directory for checkpoints and archives.
        #[arg(long)]
        work: PathBuf,
        /// Directory of the image archives (busybox.tar, pause.tar).
        #[arg(long)]
        images: PathBuf,
        /// Run only these scenarios (and `environment`); all when none is given.
        #[arg(long)]
        only: Vec<String>,
    },
    /// List the scenarios.
    List,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::List => {
            for name in driver::SCENARIOS {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Cmd::Run {
            results,
            work,
            images,
            only,
        } => match driver::run_all(&Options {
            results,
            work,
            images,
            only,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("revive-guest: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}
