//! revive-bench: our shim against containerd-shim-runc-v2, side by side in one node.
//!
//! `make bench` runs `revive-bench --flavour next --out target/bench/results.md`. For each
//! node flavour it starts one node, imports busybox, and runs every benchmark
//! ([`revive_integration::bench::all`]) for every runtime in turn; it prints the report and
//! writes it as markdown. A runtime that cannot run is reported as such, never estimated.
//!
//! Exit status: 0 when every runtime produced numbers everywhere, 2 when the report is
//! complete except for runtimes that could not run, 1 when the benchmark itself failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use revive_integration::bench::{self, FlavourReport, Report, Settings};
use revive_integration::{Flavour, Node, host, rootfs, tool};

#[derive(Parser, Debug)]
#[command(
    name = "revive-bench",
    version,
    about = "Shim memory per container, `ctr run --rm` latency, checkpoint/restore time, `ctr run` of a checkpoint image against `ctr c restore`, and a pod's move with revive migrate against a cold start: revive against containerd-shim-runc-v2"
)]
struct Cli {
    /// Node flavour(s) to benchmark on (repeatable; each gets its own node and section).
    #[arg(long = "flavour", value_enum, default_values_t = [Flavour::Lts])]
    flavours: Vec<Flavour>,
    /// containerd runtime(s) to compare (repeatable).
    #[arg(long = "runtime", default_values_t = [bench::RUNC_V2.to_string(), bench::REVIVE_V2.to_string()])]
    runtimes: Vec<String>,
    /// Idle containers for the memory benchmark.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200))]
    containers: u32,
    /// Timed `ctr run --rm` runs per runtime (after one warm-up).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    runs: u32,
    /// Seconds the idle containers sit before their shims' memory is read.
    #[arg(long, default_value_t = 2)]
    settle: u64,
    /// MiB of touched memory in each checkpointed container (repeatable).
    #[arg(long = "checkpoint-mib", default_values_t = [64u64, 256, 1024],
          value_parser = clap::value_parser!(u64).range(1..=16_384))]
    checkpoint_mib: Vec<u64>,
    /// Checkpoint and restore runs per size and runtime.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..=100))]
    checkpoint_runs: u32,
    /// Repeated restores per size and side in the image restore benchmark, after each
    /// image's first run (the sizes are --checkpoint-mib's).
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..=100))]
    image_restore_runs: u32,
    /// Rounds per size of the migration benchmark (a cold start per runtime and a move each).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    migrate_runs: u32,
    /// Timed runs per size of each tool in the forensics benchmark.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    forensics_runs: u32,
    /// Run only these benchmarks (repeatable): memory, start, checkpoint, image-restore,
    /// migrate, forensics.
    /// All of them when not given.
    #[arg(long = "bench", value_parser = clap::builder::PossibleValuesParser::new(BENCHMARKS))]
    benches: Vec<String>,
    /// Where to write the markdown report.
    #[arg(long, default_value = "target/bench/results.md")]
    out: PathBuf,
}

/// The names of [`bench::all`]'s benchmarks, in order (checked by a test).
const BENCHMARKS: [&str; 6] = [
    "memory",
    "start",
    "checkpoint",
    "image-restore",
    "migrate",
    "forensics",
];

impl Cli {
    /// The command line that reproduces this run, every setting explicit.
    fn reproduce(&self) -> String {
        let mut cmd = String::from(
            "cargo build --workspace --release && \
             REVIVE_BIN_DIR=target/release target/release/revive-bench",
        );
        for f in &self.flavours {
            cmd.push_str(&format!(" --flavour {f}"));
        }
        for r in &self.runtimes {
            cmd.push_str(&format!(" --runtime {r}"));
        }
        cmd.push_str(&format!(
            " --containers {} --runs {} --settle {}",
            self.containers, self.runs, self.settle
        ));
        for mib in &self.checkpoint_mib {
            cmd.push_str(&format!(" --checkpoint-mib {mib}"));
        }
        cmd.push_str(&format!(
            " --checkpoint-runs {} --image-restore-runs {} --migrate-runs {} --forensics-runs {}",
            self.checkpoint_runs, self.image_restore_runs, self.migrate_runs, self.forensics_runs
        ));
        for b in &self.benches {
            cmd.push_str(&format!(" --bench {b}"));
        }
        cmd.push_str(&format!(" --out {}", self.out.display()));
        cmd
    }
}

fn main() -> ExitCode {
    tool::exit_code("revive-bench", run(&Cli::parse()))
}

fn progress(line: &str) {
    eprintln!("==> {line}");
}

fn run(cli: &Cli) -> Result<bool> {
    host::require_root()?;
    let started = Instant::now();
    let settings = Settings {
        containers: cli.containers as usize,
        runs: cli.runs as usize,
        settle: Duration::from_secs(cli.settle),
        checkpoint_mib: cli.checkpoint_mib.clone(),
        checkpoint_runs: cli.checkpoint_runs as usize,
        image_restore_runs: cli.image_restore_runs as usize,
        migrate_runs: cli.migrate_runs as usize,
        forensics_runs: cli.forensics_runs as usize,
    };
    let benchmarks: Vec<_> = bench::all()
        .into_iter()
        .filter(|b| cli.benches.is_empty() || cli.benches.iter().any(|n| n == b.name()))
        .collect();
    let mut flavours = Vec::new();
    for &flavour in &cli.flavours {
        flavours.push(run_flavour(flavour, cli, &settings, &benchmarks));
    }
    let report = Report {
        date: bench::now_utc(),
        machine: bench::machine_description(),
        revive: revive_version(),
        command: cli.reproduce(),
        flavours,
        seconds: started.elapsed().as_secs_f64(),
    };
    let markdown = bench::render_markdown(&report);
    println!("\n{markdown}");
    tool::write_report("revive-bench", &cli.out, &markdown)?;
    if let Some(err) = report.flavours.iter().find_map(|f| f.error.as_ref()) {
        anyhow::bail!("the benchmark could not complete: {err}");
    }
    let complete = report.complete();
    if !complete {
        eprintln!(
            "\n*** revive-bench: NOT every runtime produced numbers:\n***   {}\n",
            report.failures().join("\n***   ")
        );
    }
    Ok(complete)
}

fn run_flavour(
    flavour: Flavour,
    cli: &Cli,
    settings: &Settings,
    benchmarks: &[Box<dyn bench::Benchmark>],
) -> FlavourReport {
    let started = Instant::now();
    let mut report = FlavourReport {
        flavour: flavour.to_string(),
        versions: String::new(),
        sections: Vec::new(),
        error: None,
        seconds: 0.0,
    };
    let result = (|| -> Result<()> {
        progress(&format!("starting a {flavour} node"));
        let node = Node::start(flavour, "bench")?;
        report.versions = rootfs::versions_line(&node.rootfs().completion.versions);
        progress(&format!("node {} is up: {}", node.name(), report.versions));
        node.import_busybox()?;
        report.sections = bench::run_in_node(
            &node,
            benchmarks,
            &cli.runtimes,
            settings,
            &mut |line: &str| progress(line),
        );
        let left = node.stop()?;
        if !left.is_empty() {
            eprintln!("revive-bench: the node left things behind: {left:?}");
        }
        Ok(())
    })();
    if let Err(err) = result {
        eprintln!("revive-bench: {flavour} node: {err:#}");
        report.error = Some(bench::first_line(&format!("{err:#}")).to_string());
    }
    report.seconds = started.elapsed().as_secs_f64();
    progress(&format!("{flavour} node done in {:.0} s", report.seconds));
    report
}

/// Our version, and the commit when run from a git checkout, marked when the work tree has
/// uncommitted changes (read only: `git rev-parse`, and `git status` without optional locks,
/// so not even the index is refreshed).
fn revive_version() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("--no-optional-locks")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]).filter(|c| !c.is_empty()) else {
        return version.to_string();
    };
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{version} (commit {commit} plus uncommitted changes)")
    } else {
        format!("{version} (commit {commit})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_benchmark_can_be_selected() {
        let names: Vec<&str> = bench::all().iter().map(|b| b.name()).collect();
        assert_eq!(names, BENCHMARKS);
    }

    #[test]
    fn the_command_line_reproduces_the_selection() {
        let cli = Cli::parse_from([
            "revive-bench",
            "--bench",
            "image-restore",
            "--checkpoint-mib",
            "64",
        ]);
        let cmd = cli.reproduce();
        assert!(cmd.contains(" --checkpoint-mib 64 "), "{cmd}");
        assert!(
            cmd.contains(
                " --image-restore-runs 9 --migrate-runs 3 --forensics-runs 3 --bench image-restore --out "
            ),
            "{cmd}"
        );
        assert!(Cli::try_parse_from(["revive-bench", "--bench", "nope"]).is_err());
    }
}
