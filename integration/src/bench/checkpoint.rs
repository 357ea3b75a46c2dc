//! Checkpoint and restore wall time of a container holding touched memory.
//!
//! The container's `dd` reads `N` MiB from /dev/urandom into one buffer (touched,
//! incompressible pages) and then blocks writing it into a pipe nobody drains; its reader
//! marks `/ready` once the first byte arrives, so the whole buffer is resident. Each
//! repetition then, for the runtime under test:
//! 1. checkpoints the task with exit into a directory on the node's disk, through
//!    containerd's Tasks API (the same call for every runtime and containerd version;
//!    containerd 1.7's `ctr` sends no image path to runtimes it does not know);
//! 2. deletes the task and restores it from that directory (`Options.criu_image_path`),
//!    until Start returns the restored pid.
//!
//! Both are timed around the API call, after one untimed warm-up round per runtime. The
//! runtimes take turns, round by round and in alternating order, so that whatever drifts in
//! the machine (page cache, disk write-back) weighs on both columns alike. Page cache is flushed (`sync`) before each, so one
//! runtime's write-back does not slow the next. The image's size over the checkpoint time
//! gives MB/s, next to the disk's own sequential write speed measured in the same directory.
//! CRIU's own `stats-dump` of each checkpoint (in the work directory both runtimes are given)
//! splits the time: how long the freezer took, and how long the processes stayed frozen.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use revive_proto::runc::CheckpointOptions;

use super::{Benchmark, Cell, Goal, Settings, Summary, Target, remove_containers, short_runtime};
use crate::containerd::Containerd;
use crate::ctr::{self, Status};
use crate::node::Node;
use crate::scenario;

/// Where images are written: the node's /var/lib/revive is a directory on the host's disk
/// (not a tmpfs), as a real checkpoint's would be.
const DIR: &str = "/var/lib/revive/bench-checkpoint";

/// The disk probe: 1 GiB of zeros, flushed to the disk before dd exits.
const PROBE_BYTES: u64 = 1 << 30;

/// How long a container may take to fill its memory.
const FILL_TIMEOUT: Duration = Duration::from_secs(180);

/// Starts container `id` on `runtime` running `script`, a workload that fills `mib` MiB of
/// memory and then creates `/ready`, and waits (at most [`FILL_TIMEOUT`]) until it has.
pub(super) fn run_filled(
    node: &Node,
    runtime: &str,
    id: &str,
    mib: u64,
    script: &str,
) -> Result<()> {
    scenario::run_shell(node, runtime, id, script)?;
    let ready = scenario::rootfs_file(id, "ready");
    let deadline = Instant::now() + FILL_TIMEOUT;
    while node.run(&["test", "-e", &ready]).is_err() {
        ensure!(
            Instant::now() < deadline,
            "container {id} did not fill {mib} MiB within {FILL_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The container's command for `mib` MiB of touched memory.
pub fn workload(mib: u64) -> String {
    format!(
        "rm -f /ready; dd if=/dev/urandom bs={mib}M count=1 iflag=fullblock 2>/dev/null | \
         {{ head -c 1 >/dev/null; touch /ready; while :; do sleep 1; done; }}"
    )
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// Rows per size: checkpoint, restore, CRIU's freezing and frozen times, and checkpoint and
/// restore round by round against the first column.
const ROWS_PER_SIZE: usize = 6;

/// `other` against `reference`, round by round (the i-th samples were taken in the same
/// round, one right after the other): the median of other/reference, and in how many rounds
/// `other` was faster, of how many. None without a common round.
fn paired(reference: &[f64], other: &[f64]) -> Option<(f64, usize, usize)> {
    let ratios: Vec<f64> = reference
        .iter()
        .zip(other)
        .map(|(theirs, ours)| ours / theirs)
        .collect();
    let median = Summary::of(&ratios)?.median;
    let faster = ratios.iter().filter(|r| **r < 1.0).count();
    Some((median, faster, ratios.len()))
}

/// One checkpoint and restore, as measured.
struct Run {
    checkpoint: f64,
    restore: f64,
    /// Bytes of the image's memory pages.
    bytes: u64,
    /// CRIU's freezing and frozen times of the checkpoint, in seconds.
    freezing: f64,
    frozen: f64,
}

/// CRIU's dump statistics from a checkpoint's work directory, read on the host through the
/// node's root.
fn dump_stats(node: &Node, work: &str) -> Result<revive_checkpoint::criu::DumpStats> {
    let path = node.host_path(&format!("{work}/stats-dump"));
    let data = std::fs::read(&path).with_context(|| format!("reading CRIU's {path:?}"))?;
    revive_checkpoint::criu::parse_stats(&data)
        .with_context(|| format!("parsing CRIU's {path:?}"))?
        .dump
        .with_context(|| format!("{path:?} holds no dump statistics"))
}

/// Checkpoint and restore of containers holding 64 MiB, 256 MiB and 1 GiB (by default).
pub struct CheckpointRestore;

impl CheckpointRestore {
    fn rows_for(settings: &Settings) -> Vec<String> {
        let mut rows = vec!["disk: sequential write, 1 GiB, fdatasync".to_string()];
        for mib in &settings.checkpoint_mib {
            rows.push(format!("{}: checkpoint (exit), median", size_label(*mib)));
            rows.push(format!("{}: restore, median", size_label(*mib)));
            rows.push(format!(
                "{}: checkpoint, of which CRIU freezing the cgroup, median",
                size_label(*mib)
            ));
            rows.push(format!(
                "{}: checkpoint, of which processes frozen, median",
                size_label(*mib)
            ));
            for what in ["checkpoint", "restore"] {
                rows.push(format!(
                    "{}: {what}, round by round against the first column: median ratio",
                    size_label(*mib)
                ));
            }
        }
        rows
    }

    /// The disk's sequential write speed in DIR, in MB/s.
    fn disk_speed(node: &Node) -> Result<Cell> {
        node.run(&["mkdir", "-p", DIR])?;
        let probe = format!("{DIR}/write-probe");
        let started = Instant::now();
        node.run(&[
            "dd",
            "if=/dev/zero",
            &format!("of={probe}"),
            "bs=1M",
            &format!("count={}", PROBE_BYTES >> 20),
            "conv=fdatasync",
        ])
        .context("measuring the disk's write speed")?;
        let secs = started.elapsed().as_secs_f64();
        node.run(&["rm", "-f", &probe])?;
        let speed = mb_per_s(PROBE_BYTES, secs);
        Ok(Cell::number(format!("{speed:.0} MB/s"), speed))
    }

    /// One checkpoint and restore of container `id` holding `mib` MiB.
    fn once(node: &Node, api: &Containerd, runtime: &str, id: &str, mib: u64) -> Result<Run> {
        let dir = format!("{DIR}/{id}");
        let work = format!("{DIR}/{id}.work");
        node.run(&["rm", "-rf", &dir, &work])?;
        run_filled(node, runtime, id, mib, &workload(mib))?;
        node.run(&["sync"])?;
        let started = Instant::now();
        api.checkpoint(
            id,
            &CheckpointOptions {
                exit: true,
                image_path: dir.clone(),
                work_path: work.clone(),
                ..Default::default()
            },
        )?;
        let checkpoint = started.elapsed().as_secs_f64();
        let stats = dump_stats(node, &work)?;
        ctr::wait_status(node, id, Status::Stopped)?;
        let bytes: u64 = node
            .sh(&format!("cat {dir}/pages-*.img | wc -c"))?
            .trim()
            .parse()
            .context("sizing the memory pages of the image")?;
        ensure!(
            bytes >= mib << 20,
            "the checkpoint of {id} holds {bytes} bytes of pages, less than its {mib} MiB"
        );
        node.ctr(&["task", "delete", id])?;
        node.run(&["sync"])?;
        let started = Instant::now();
        api.restore_from_dir(id, "overlayfs", &dir)?;
        let restore = started.elapsed().as_secs_f64();
        ensure!(
            ctr::status(node, id)? == Status::Running,
            "the restored {id} is not running"
        );
        ctr::remove(node, id)?;
        node.run(&["rm", "-rf", &dir, &work])?;
        Ok(Run {
            checkpoint,
            restore,
            bytes,
            freezing: f64::from(stats.freezing_time) / 1e6,
            frozen: f64::from(stats.frozen_time) / 1e6,
        })
    }
}

/// One runtime's column while the rounds go on.
struct Samples<'a> {
    runtime: &'a str,
    /// (MiB, container id) per size.
    ids: Vec<(u64, String)>,
    disk: Option<Cell>,
    checkpoints: Vec<Vec<f64>>,
    restores: Vec<Vec<f64>>,
    freezing: Vec<Vec<f64>>,
    frozen: Vec<Vec<f64>>,
    bytes: Vec<u64>,
    failed: Option<anyhow::Error>,
}

impl<'a> Samples<'a> {
    fn new(runtime: &'a str, settings: &Settings) -> Samples<'a> {
        let short = short_runtime(runtime);
        let n = settings.checkpoint_mib.len();
        Samples {
            runtime,
            ids: settings
                .checkpoint_mib
                .iter()
                .map(|mib| (*mib, format!("{short}-ckpt-{mib}m")))
                .collect(),
            disk: None,
            checkpoints: vec![Vec::new(); n],
            restores: vec![Vec::new(); n],
            freezing: vec![Vec::new(); n],
            frozen: vec![Vec::new(); n],
            bytes: vec![0; n],
            failed: None,
        }
    }

    /// The disk probe and one untimed round: a runtime's first checkpoint and restore in a
    /// node run with cold caches (runc, CRIU, the shim binary).
    fn warm_up(&mut self, node: &Node, api: &Containerd) {
        let result = CheckpointRestore::disk_speed(node).and_then(|disk| {
            self.disk = Some(disk);
            let (mib, id) = self.ids.first().context("no sizes")?;
            CheckpointRestore::once(node, api, self.runtime, id, *mib).context("warm-up run")
        });
        if let Err(err) = result {
            self.failed = Some(err);
        }
    }

    fn run(&mut self, node: &Node, api: &Containerd, size: usize, round: usize) {
        if self.failed.is_some() {
            return;
        }
        let (mib, id) = &self.ids[size];
        match CheckpointRestore::once(node, api, self.runtime, id, *mib) {
            Ok(run) => {
                self.checkpoints[size].push(run.checkpoint);
                self.restores[size].push(run.restore);
                self.freezing[size].push(run.freezing);
                self.frozen[size].push(run.frozen);
                self.bytes[size] = run.bytes;
            }
            Err(err) => {
                self.failed = Some(err.context(format!("{} run {}", size_label(*mib), round + 1)));
            }
        }
    }

    /// The column's cells; `reference` is the first column, which the round-by-round rows
    /// compare with (None for the first column itself).
    fn cells(&self, reference: Option<&Samples<'_>>) -> Result<Vec<Cell>> {
        if let Some(err) = &self.failed {
            return Err(anyhow::anyhow!("{err:#}"));
        }
        let mut cells = vec![self.disk.clone().context("no disk measurement")?];
        for size in 0..self.ids.len() {
            for samples in [&self.checkpoints[size], &self.restores[size]] {
                let s = Summary::of(samples).context("no runs")?;
                cells.push(Cell::number(
                    format!(
                        "{:.2} s ({:.0} MB/s; {:.2}–{:.2} s)",
                        s.median,
                        mb_per_s(self.bytes[size], s.median),
                        s.min,
                        s.max
                    ),
                    s.median,
                ));
            }
            for samples in [&self.freezing[size], &self.frozen[size]] {
                let s = Summary::of(samples).context("no runs")?;
                cells.push(Cell::number(
                    format!(
                        "{:.0} ms ({:.0}–{:.0} ms)",
                        s.median * 1e3,
                        s.min * 1e3,
                        s.max * 1e3
                    ),
                    s.median,
                ));
            }
            for (ours, theirs) in [
                (&self.checkpoints, reference.map(|r| &r.checkpoints)),
                (&self.restores, reference.map(|r| &r.restores)),
            ] {
                cells.push(match theirs {
                    None => Cell::text("(the reference)"),
                    Some(_) if reference.is_some_and(|r| r.failed.is_some()) => {
                        Cell::text("(no reference)")
                    }
                    Some(theirs) => {
                        let (ratio, faster, n) =
                            paired(&theirs[size], &ours[size]).context("no common rounds")?;
                        Cell::number(
                            format!("{ratio:.2}× (faster in {faster} of {n} rounds)"),
                            ratio,
                        )
                    }
                });
            }
        }
        Ok(cells)
    }
}

pub(super) fn size_label(mib: u64) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

impl Benchmark for CheckpointRestore {
    fn name(&self) -> &'static str {
        "checkpoint"
    }
    fn title(&self, s: &Settings) -> String {
        format!(
            "checkpoint and restore of a container holding touched memory ({} runs per size)",
            s.checkpoint_runs
        )
    }
    fn rows(&self, settings: &Settings) -> Vec<String> {
        Self::rows_for(settings)
    }
    fn method(&self, _: &Settings) -> Vec<String> {
        vec![
            format!(
                "The container (busybox) runs `{}`: dd's one buffer holds N MiB read from \
                 /dev/urandom (touched, incompressible), blocked writing into a pipe that is \
                 not drained; `/ready` appears once the buffer is full.",
                workload(0).replace("0M", "<N>M")
            ),
            format!(
                "Checkpoint: Tasks.Checkpoint with `containerd.runc.v1.CheckpointOptions{{exit: \
                 true, image_path}}` into `{DIR}` on the node's disk; restore: the task is \
                 deleted, then Tasks.Create with `Options{{criu_image_path}}` and Tasks.Start; \
                 each timed around the API call, after a `sync`. The same calls for every \
                 runtime and containerd version. One untimed checkpoint and restore of the \
                 smallest size comes first for each runtime (cold caches); then the runtimes \
                 take turns, every size in each round, first one and then the other going \
                 first."
            ),
            "The checkpoint's work directory (`work_path`, beside the image) holds CRIU's \
             `stats-dump`: its freezing time (from asking the cgroup freezer to freeze until \
             every process is seized) and frozen time (until they run again or are killed) are \
             part of the checkpoint time and are shown below it."
                .into(),
            "Round by round: in each round the runtimes run one right after the other, so \
             the ratio of their times in that round leaves out what drifts between rounds; \
             the median of those ratios against the first column, and in how many rounds the \
             column was the faster."
                .into(),
            "MB/s is the size of the image's memory pages (`pages-*.img`, checked to hold at \
             least N MiB) over the median time. The checkpoint writes into the page cache \
             without fsync, as runc and CRIU do, so it can beat the disk's own speed (first \
             row: `dd bs=1M count=1024 conv=fdatasync` in the same directory)."
                .into(),
        ]
    }
    fn targets(&self, settings: &Settings) -> Vec<Target> {
        // Row 0 is the disk; then per size a checkpoint and a restore row (the targets),
        // CRIU's freezing and frozen times (what the checkpoint time is made of), and the
        // round-by-round comparison.
        (0..settings.checkpoint_mib.len())
            .flat_map(|size| [1 + ROWS_PER_SIZE * size, 2 + ROWS_PER_SIZE * size])
            .map(|row| Target {
                row,
                goal: Goal::NoWorse,
            })
            .collect()
    }

    /// Round by round, every size for every runtime, the order of the runtimes alternating
    /// between rounds: whatever drifts (page cache, disk write-back) weighs on every column
    /// alike.
    fn measure_runtimes(
        &self,
        node: &Node,
        runtimes: &[String],
        settings: &Settings,
        progress: &mut dyn FnMut(&str),
    ) -> Vec<Result<Vec<Cell>>> {
        let api = match Containerd::connect(node, "default") {
            Ok(api) => api,
            Err(err) => {
                let err = format!("{err:#}");
                return runtimes
                    .iter()
                    .map(|_| Err(anyhow::anyhow!("{err}")))
                    .collect();
            }
        };
        let title = self.title(settings);
        let mut columns: Vec<Samples<'_>> =
            runtimes.iter().map(|r| Samples::new(r, settings)).collect();
        for column in &mut columns {
            progress(&format!(
                "{title}: {} (disk probe, warm-up)",
                column.runtime
            ));
            column.warm_up(node, &api);
        }
        for round in 0..settings.checkpoint_runs {
            progress(&format!(
                "{title}: round {}/{}, every runtime",
                round + 1,
                settings.checkpoint_runs
            ));
            for size in 0..settings.checkpoint_mib.len() {
                let mut order: Vec<usize> = (0..columns.len()).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for i in order {
                    columns[i].run(node, &api, size, round);
                }
            }
        }
        for column in &columns {
            let names: Vec<String> = column.ids.iter().map(|(_, id)| id.clone()).collect();
            remove_containers(node, column.runtime, &names);
        }
        let _ = node.run(&["rm", "-rf", DIR]);
        let reference = columns.first();
        columns
            .iter()
            .enumerate()
            .map(|(i, c)| c.cells(reference.filter(|_| i > 0)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_label_and_rows_pair_up() {
        assert_eq!(size_label(64), "64 MiB");
        assert_eq!(size_label(1024), "1 GiB");
        assert_eq!(size_label(1536), "1536 MiB");
        let settings = Settings {
            checkpoint_mib: vec![64, 1024],
            ..Settings::default()
        };
        let rows = CheckpointRestore::rows_for(&settings);
        assert_eq!(rows.len(), 1 + 2 * ROWS_PER_SIZE);
        assert_eq!(rows[7], "1 GiB: checkpoint (exit), median");
        assert_eq!(rows[8], "1 GiB: restore, median");
        assert!(rows[9].contains("freezing"), "{}", rows[9]);
        assert!(rows[12].starts_with("1 GiB: restore, round by round"));
        let targets: Vec<usize> = CheckpointRestore
            .targets(&settings)
            .iter()
            .map(|t| t.row)
            .collect();
        assert_eq!(targets, [1, 2, 7, 8]);
    }

    #[test]
    fn rounds_pair_up() {
        // Faster in rounds 1 and 3, slower in round 2: ratios 0.5, 1.5, 0.8.
        let (ratio, faster, n) = paired(&[2.0, 2.0, 1.0], &[1.0, 3.0, 0.8]).unwrap();
        assert_eq!((faster, n), (2, 3));
        assert!((ratio - 0.8).abs() < 1e-9, "{ratio}");
        // A column that failed part-way pairs only the rounds it has.
        assert_eq!(paired(&[1.0, 1.0], &[2.0]).unwrap(), (2.0, 0, 1));
        assert_eq!(paired(&[1.0], &[]), None);
    }

    #[test]
    fn the_workload_fills_one_buffer() {
        let w = workload(256);
        assert!(w.contains("bs=256M count=1 iflag=fullblock"), "{w}");
        assert!(w.contains("touch /ready"), "{w}");
        assert_eq!(mb_per_s(2_000_000, 2.0), 1.0);
    }
}
