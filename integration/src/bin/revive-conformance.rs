//! revive-conformance: containerd's own `integration/client` tests against our shim and the
//! Go shim, side by side.
//!
//! `make conformance` runs `revive-conformance --flavour lts --flavour latest --flavour stable`
//! (the default). For each flavour it starts a node, builds the suite for that flavour's
//! containerd (or takes it from the cache), serves the tests' images from a registry in the
//! node, runs every test once per runtime, each alone with its own timeout, and writes the
//! report (markdown) and every test's output.
//!
//! Exit status: 0 when every test that passes with the first runtime (the reference, the Go
//! shim by default) passes with the others; 2 when the report is complete but some do not;
//! 1 when the run itself failed (a node, the suite build, the registry).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use revive_integration::conformance::{self, Report, Settings};
use revive_integration::{Flavour, bench, host, tool};

#[derive(Parser, Debug)]
#[command(
    name = "revive-conformance",
    version,
    about = "containerd's integration/client tests: revive against containerd-shim-runc-v2"
)]
struct Cli {
    /// Node flavour(s) to run on (repeatable; each gets its own node and section).
    #[arg(long = "flavour", value_enum, default_values_t = [Flavour::Lts, Flavour::Latest, Flavour::Stable])]
    flavours: Vec<Flavour>,
    /// containerd runtime(s), the reference first (repeatable).
    #[arg(long = "runtime", default_values_t = [conformance::RUNC_V2.to_string(), conformance::REVIVE_V2.to_string()])]
    runtimes: Vec<String>,
    /// Tests to run, by name, or a prefix ending in `*` (repeatable; default: all).
    #[arg(long = "test")]
    tests: Vec<String>,
    /// Seconds each test may take (the test binary's -test.timeout).
    #[arg(long, default_value_t = conformance::DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(5..=3600))]
    timeout: u64,
    /// Runs of each test (its -test.count); a test fails if any run fails. Hunts flakes:
    /// `--test TestTaskResize --count 300`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10000))]
    count: u32,
    /// The suite's TEST_SNAPSHOTTER (`revive`: a revive-snapshotter of its own per test);
    /// containerd's overlayfs when not given.
    #[arg(long)]
    snapshotter: Option<String>,
    /// Where to write the markdown report.
    #[arg(long, default_value = "target/conformance/report.md")]
    out: PathBuf,
    /// Where every test's full output goes (<dir>/<flavour>/<runtime>/<test>.log).
    #[arg(long, default_value = "target/conformance/logs")]
    logs: PathBuf,
}

impl Cli {
    fn reproduce(&self) -> String {
        let mut cmd = String::from("target/debug/revive-conformance");
        for f in &self.flavours {
            cmd.push_str(&format!(" --flavour {f}"));
        }
        for r in &self.runtimes {
            cmd.push_str(&format!(" --runtime {r}"));
        }
        for t in &self.tests {
            cmd.push_str(&format!(" --test '{t}'"));
        }
        cmd.push_str(&format!(" --timeout {}", self.timeout));
        if self.count > 1 {
            cmd.push_str(&format!(" --count {}", self.count));
        }
        if let Some(snapshotter) = &self.snapshotter {
            cmd.push_str(&format!(" --snapshotter {snapshotter}"));
        }
        cmd
    }
}

fn main() -> ExitCode {
    tool::exit_code("revive-conformance", run(&Cli::parse()))
}

fn run(cli: &Cli) -> Result<bool> {
    host::require_root()?;
    let started = Instant::now();
    let settings = Settings {
        timeout: Duration::from_secs(cli.timeout),
        log_dir: Some(cli.logs.clone()),
        count: cli.count,
        snapshotter: cli.snapshotter.clone(),
        retry: None,
    };
    if cli.logs.exists() {
        std::fs::remove_dir_all(&cli.logs)
            .with_context(|| format!("clearing {}", cli.logs.display()))?;
    }
    let mut progress = |line: &str| eprintln!("==> {line}");
    let mut flavours = Vec::new();
    for &flavour in &cli.flavours {
        flavours.push(conformance::run_flavour(
            flavour,
            &cli.runtimes,
            &cli.tests,
            &settings,
            &mut progress,
        ));
    }
    let report = Report {
        date: bench::now_utc(),
        revive: env!("CARGO_PKG_VERSION").to_string(),
        command: cli.reproduce(),
        timeout: settings.timeout,
        flavours,
        seconds: started.elapsed().as_secs_f64(),
    };
    let mut markdown = conformance::render_markdown(&report);
    markdown.push_str(&format!(
        "\nEvery test's output: `{}/<flavour>/<runtime>/<test>.log`.\n",
        cli.logs.display()
    ));
    tool::write_report("revive-conformance", &cli.out, &markdown)?;
    // The summary: counts and differences of every flavour.
    for run in &report.flavours {
        eprintln!("\n{}", conformance::summary(run));
    }
    if let Some(run) = report.flavours.iter().find(|f| f.error.is_some()) {
        anyhow::bail!(
            "the {} run did not complete: {}",
            run.flavour,
            run.error.as_deref().unwrap_or_default()
        );
    }
    let reference = &cli.runtimes[0];
    let regressions: Vec<String> = report
        .flavours
        .iter()
        .flat_map(|run| {
            cli.runtimes[1..].iter().flat_map(move |candidate| {
                run.regressions(reference, candidate)
                    .into_iter()
                    .map(move |t| format!("{} {candidate}: {t}", run.flavour))
            })
        })
        .collect();
    if !regressions.is_empty() {
        eprintln!(
            "\n*** revive-conformance: {} test(s) pass with {reference} but not with the \
             other runtime(s):\n***   {}\n",
            regressions.len(),
            regressions.join("\n***   ")
        );
    }
    Ok(regressions.is_empty())
}
