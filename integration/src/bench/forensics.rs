//! Forensic analysis, timed: `revive inspect` and `revive memgrep` beside checkpointctl's
//! `inspect --all` and `memparse --search`, on the same checkpoint archive of a pod holding
//! N MiB of touched memory, in one node.
//!
//! checkpointctl 1.3 reads a page run's length from the field CRIU 4.2 no longer fills, so
//! on the archive as CRIU wrote it, it reads no page at all. Both tools are timed on a copy
//! whose pagemaps are in the older layout ([`forensics::legacy_pagemaps`]), which both
//! read whole; that checkpointctl reads the pages there is checked (it finds the
//! environment's `PATH=`) before anything is timed.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::json;

use super::checkpoint::{size_label, workload};
use super::{Benchmark, Cell, REVIVE_V2, Settings, Summary};
use crate::crictl::{self, crictl};
use crate::ctr::poll;
use crate::forensics;
use crate::image::BUSYBOX;
use crate::node::Node;

/// A string no process holds: both tools read every page looking for it.
const NEEDLE: &str = "revive-bench-needle-held-by-no-process";
/// How long one analysis may take.
const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Forensics;

/// Rows per size.
const ROWS: [&str; 6] = [
    "checkpointctl inspect --all",
    "revive inspect",
    "checkpointctl memparse --search",
    "revive memgrep",
    "revive memgrep, memory searched per second (reading the archive: cat)",
    "memparse ÷ memgrep",
];

/// The timings of one size, seconds: (checkpointctl inspect, revive inspect, memparse,
/// memgrep, cat), one sample per run each.
#[derive(Default)]
struct Samples {
    archive_bytes: u64,
    memory_bytes: u64,
    times: [Vec<f64>; 5],
}

/// Runs `args` in the node; exit codes in `ok` are success. Returns the seconds it took.
fn timed(node: &Node, args: &[&str], ok: &[i32]) -> Result<f64> {
    let started = Instant::now();
    let out = node.exec_timeout(args, ANALYSIS_TIMEOUT)?;
    let took = started.elapsed().as_secs_f64();
    let code = out.status.code().unwrap_or(-1);
    ensure!(
        ok.contains(&code),
        "`{}` exited {code}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(took)
}

/// A pod holding `mib` MiB, checkpointed through CRI.
struct Archive {
    /// The legacy-layout copy, in the node.
    path: String,
    bytes: u64,
    /// The pid of `dd`, which holds the memory, and the bytes of its pages.
    pid: u64,
    memory: u64,
}

fn archive_of(node: &Node, mib: u64) -> Result<Archive> {
    let name = format!("bench-forensics-{mib}");
    let config = json!({
        "metadata": {"name": name, "attempt": 0},
        "image": {"image": BUSYBOX},
        "command": ["sh", "-c", workload(mib)],
        "log_path": format!("{name}.log"),
        "linux": {"security_context": {"namespace_options": {"network": 2, "pid": 1, "ipc": 0}}}
    });
    let (pod, id) = crictl::run_pod(
        node,
        &name,
        &format!("7a3e51c0-0000-4000-8000-{mib:012}"),
        &config,
    )?;
    let made = (|| {
        poll(Duration::from_secs(180), Duration::from_millis(200), || {
            Ok(
                match crictl(node, &["exec", "--sync", &id, "test", "-e", "/ready"]) {
                    Ok(_) => std::ops::ControlFlow::Break(()),
                    Err(_) => {
                        std::ops::ControlFlow::Continue(format!("{name} did not fill {mib} MiB"))
                    }
                },
            )
        })?;
        node.run(&["mkdir", "-p", forensics::ARCHIVE_DIR])?;
        let archive = format!("{}/{name}.tar", forensics::ARCHIVE_DIR);
        crictl(node, &["checkpoint", &format!("--export={archive}"), &id])?;
        Ok::<String, anyhow::Error>(archive)
    })();
    crictl(node, &["rmp", "--force", &pod])?;
    let archive = made?;
    let legacy = format!("{}/{name}-legacy.tar", forensics::ARCHIVE_DIR);
    forensics::legacy_pagemaps(&node.host_path(&archive), &node.host_path(&legacy))?;
    node.run(&["rm", "-f", &archive])?;
    let report = forensics::revive_inspect(node, &legacy)?;
    let dd = report["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["comm"] == "dd"))
        .with_context(|| format!("no dd among the processes of {legacy}: {report}"))?;
    Ok(Archive {
        bytes: node.run(&["stat", "-c", "%s", &legacy])?.trim().parse()?,
        pid: dd["pid"].as_u64().unwrap_or(0),
        memory: dd["memory"]["present"].as_u64().unwrap_or(0),
        path: legacy,
    })
}

/// checkpointctl reads the legacy copy's pages: its search finds what revive's does.
fn check_readable(node: &Node, archive: &str) -> Result<()> {
    let theirs = node.run(&[
        "checkpointctl",
        "memparse",
        "--pid",
        "1",
        "--search",
        "PATH=",
        archive,
    ])?;
    let ours = forensics::memgrep(node, archive, "PATH=")?;
    ensure!(
        !ours.is_empty() && !theirs.contains("No matches"),
        "checkpointctl does not read the pages of {archive} (revive finds PATH= {} times): \
         {theirs}",
        ours.len()
    );
    Ok(())
}

fn measure_size(
    node: &Node,
    mib: u64,
    runs: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Samples> {
    progress(&format!(
        "forensics: a pod holding {mib} MiB, checkpointed through CRI"
    ));
    let a = archive_of(node, mib)?;
    let (archive, pid) = (a.path.as_str(), a.pid.to_string());
    let cat = format!("cat {archive} >/dev/null");
    let result = (|| {
        check_readable(node, archive)?;
        let commands: [(Vec<&str>, &[i32]); 5] = [
            (
                [&forensics::CHECKPOINTCTL_INSPECT[..], &[archive]].concat(),
                &[0],
            ),
            (vec!["revive", "inspect", "--json", archive], &[0]),
            (
                vec![
                    "checkpointctl",
                    "memparse",
                    "--pid",
                    &pid,
                    "--search",
                    NEEDLE,
                    archive,
                ],
                &[0],
            ),
            (
                vec!["revive", "memgrep", "--pid", &pid, archive, NEEDLE],
                &[1],
            ),
            (vec!["sh", "-c", &cat], &[0]),
        ];
        // A first run of each, untimed: the archive in the page cache for all alike.
        for (args, ok) in &commands {
            timed(node, args, ok)?;
        }
        let mut samples = Samples {
            archive_bytes: a.bytes,
            memory_bytes: a.memory,
            ..Samples::default()
        };
        for run in 0..runs {
            progress(&format!("forensics: {mib} MiB, run {}/{runs}", run + 1));
            for (i, (args, ok)) in commands.iter().enumerate() {
                samples.times[i].push(timed(node, args, ok)?);
            }
        }
        Ok(samples)
    })();
    node.run(&["rm", "-f", archive])?;
    result
}

fn median(values: &[f64]) -> f64 {
    Summary::of(values).map_or(f64::NAN, |s| s.median)
}

impl Benchmark for Forensics {
    fn name(&self) -> &'static str {
        "forensics"
    }
    fn title(&self, s: &Settings) -> String {
        format!(
            "analysing a checkpoint without restoring it: revive beside checkpointctl 1.3 ({} runs per size)",
            s.forensics_runs
        )
    }
    fn rows(&self, s: &Settings) -> Vec<String> {
        s.checkpoint_mib
            .iter()
            .flat_map(|mib| {
                ROWS.iter()
                    .map(move |r| format!("{}: {r}", size_label(*mib)))
            })
            .collect()
    }
    fn method(&self, _: &Settings) -> Vec<String> {
        vec![
            format!(
                "A pod on handler `revive` (busybox) runs `{}`: N MiB read from /dev/urandom, \
                 touched and incompressible; `crictl checkpoint --export` writes its archive. \
                 checkpointctl 1.3 cannot read the page counts CRIU 4.2 writes (it sees every \
                 run as empty), so both tools read a copy with the pagemaps in CRIU's older \
                 layout, the same pages; that checkpointctl reads them there is checked first \
                 (it finds `PATH=` where revive does).",
                workload(0).replace("bs=0M", "bs=<N>M")
            ),
            format!(
                "Timed in the node, median of the runs, the archive in the page cache (one \
                 untimed run of each first): `checkpointctl inspect --all --format json`, \
                 `revive inspect --json`, `checkpointctl memparse --pid <dd> --search {NEEDLE}` \
                 and `revive memgrep --pid <dd> <archive> {NEEDLE}` (a string no process \
                 holds, so every page of the process holding the memory is read), and `cat` of the archive, the ceiling for anything \
                 that reads it. checkpointctl extracts what it needs into a temporary \
                 directory first; revive reads the tar in place."
            ),
            "The Go shim's column is empty: the tools read an archive, whichever shim made it."
                .into(),
            "The goal: memgrep at the speed the archive is read, and at least five times \
             faster than memparse (the last row)."
                .into(),
        ]
    }

    fn measure_runtimes(
        &self,
        node: &Node,
        runtimes: &[String],
        settings: &Settings,
        progress: &mut dyn FnMut(&str),
    ) -> Vec<Result<Vec<Cell>>> {
        let measured = (|| {
            crictl::require(node)?;
            crictl::configure(node)?;
            crictl::import_base_images(node)?;
            settings
                .checkpoint_mib
                .iter()
                .map(|mib| measure_size(node, *mib, settings.forensics_runs, progress))
                .collect::<Result<Vec<Samples>>>()
        })();
        let sizes = match measured {
            Ok(sizes) => sizes,
            Err(e) => {
                let why = format!("{e:#}");
                return runtimes.iter().map(|_| Err(anyhow!("{why}"))).collect();
            }
        };
        runtimes
            .iter()
            .map(|runtime| {
                let mut cells = Vec::new();
                for s in &sizes {
                    if runtime != REVIVE_V2 {
                        cells.extend(ROWS.iter().map(|_| Cell::text("—")));
                        continue;
                    }
                    let m: Vec<f64> = s.times.iter().map(|t| median(t)).collect();
                    for t in &m[..4] {
                        cells.push(Cell::number(format!("{t:.2} s"), *t));
                    }
                    let mbs = |bytes: u64, secs: f64| bytes as f64 / 1e6 / secs;
                    cells.push(Cell::number(
                        format!(
                            "{:.0} MB/s ({:.0} MB/s)",
                            mbs(s.memory_bytes, m[3]),
                            mbs(s.archive_bytes, m[4])
                        ),
                        mbs(s.memory_bytes, m[3]),
                    ));
                    cells.push(Cell::number(format!("{:.1}×", m[2] / m[3]), m[2] / m[3]));
                }
                Ok(cells)
            })
            .collect::<Vec<Result<Vec<Cell>>>>()
            .into_iter()
            .map(|r| r.context("forensics"))
            .collect()
    }
}
