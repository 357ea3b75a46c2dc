//! Benchmarks of containerd shims, side by side in one node: `revive-bench` and `make bench`.
//!
//! Each [`Benchmark`] measures one runtime at a time in a running [`Node`] and answers a
//! column of cells (one per row it declares), or an error that the report prints as "could
//! not run: ..." for that runtime. The report ([`Report`]) renders every benchmark as a table
//! with one column per runtime, its method, and the targets when both our shim and
//! containerd-shim-runc-v2 produced numbers. Nothing in a report is ever estimated or filled
//! in: a cell is either measured in this run or says why it is not.
//!
//! The pure parts (statistics, `smaps_rollup` and `/proc/<pid>/status` parsing, `ctr task ls`
//! parsing, markdown rendering) are unit-tested here; the rest needs a node.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::ctr::{Status, parse_task_list, run_args};
use crate::image::BUSYBOX;
use crate::node::Node;

mod checkpoint;
mod forensics;
mod image_restore;
mod migrate;

/// containerd's Go shim, the baseline.
pub const RUNC_V2: &str = "io.containerd.runc.v2";
/// Our shim.
pub const REVIVE_V2: &str = "io.containerd.revive.v2";

/// How long one `ctr` command may take before it counts as failed.
const CTR_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------

/// The `p`-th percentile (0..=100) of `sorted` (ascending), interpolating linearly between
/// the two nearest samples (numpy's default; the median of an even count is the mean of the
/// two middle samples). `None` for no samples.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let pos = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// Summary statistics of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for a single sample.
    pub sd: f64,
    pub median: f64,
    pub p90: f64,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Summary {
            n,
            min: sorted[0],
            max: sorted[n - 1],
            mean,
            sd,
            median: percentile(&sorted, 50.0)?,
            p90: percentile(&sorted, 90.0)?,
        })
    }
}

// ---------------------------------------------------------------------------------------
// /proc parsing
// ---------------------------------------------------------------------------------------

/// The memory of one process, from `/proc/<pid>/smaps_rollup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// PSS of anonymous and of file-backed pages (kernels since 5.9 say).
    pub pss_anon_kib: Option<u64>,
    pub pss_file_kib: Option<u64>,
}

/// Parses `/proc/<pid>/smaps_rollup` (the first line names the address range; then
/// `Field:   N kB` lines). Fails unless both `Rss` and `Pss` are there.
pub fn parse_smaps_rollup(text: &str) -> Result<Memory> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut words = rest.split_whitespace();
        if let (Some(number), Some("kB"), None) = (words.next(), words.next(), words.next())
            && let Ok(kib) = number.parse::<u64>()
        {
            fields.insert(key.trim(), kib);
        }
    }
    let field = |name: &str| {
        fields
            .get(name)
            .copied()
            .with_context(|| format!("smaps_rollup without a {name} line:\n{text}"))
    };
    Ok(Memory {
        rss_kib: field("Rss")?,
        pss_kib: field("Pss")?,
        pss_anon_kib: fields.get("Pss_Anon").copied(),
        pss_file_kib: fields.get("Pss_File").copied(),
    })
}

/// What the harness needs from `/proc/<pid>/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStatus {
    pub name: String,
    pub ppid: u32,
    /// The pid in each pid namespace the process is in, outermost (the reader's) first.
    pub ns_pids: Vec<u32>,
}

pub fn parse_status(text: &str) -> Result<ProcStatus> {
    let mut name = None;
    let mut ppid = None;
    let mut ns_pids = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("PPid:") {
            ppid = Some(v.trim().parse().context("bad PPid")?);
        } else if let Some(v) = line.strip_prefix("NSpid:") {
            ns_pids = v
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .context("bad NSpid")?;
        }
    }
    Ok(ProcStatus {
        name: name.context("status without Name")?,
        ppid: ppid.context("status without PPid")?,
        ns_pids,
    })
}

/// The first non-empty line of `text`, trimmed.
pub fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// "io.containerd.runc.v2" -> "runc-v2": a prefix for container ids.
pub fn short_runtime(runtime: &str) -> String {
    runtime
        .strip_prefix("io.containerd.")
        .unwrap_or(runtime)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the epoch.
pub fn utc_timestamp(secs: u64) -> String {
    let t = revive_checkpoint::utc::Utc::from_unix(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute
    )
}

pub fn now_utc() -> String {
    utc_timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

fn mib(kib: f64) -> String {
    format!("{:.2} MiB", kib / 1024.0)
}

fn ms(d: f64) -> String {
    format!("{d:.1} ms")
}

// ---------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------

/// One measured cell: its text and, where it is a number a target compares, that number.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub text: String,
    pub value: Option<f64>,
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            value: None,
        }
    }
    pub fn number(text: impl Into<String>, value: f64) -> Cell {
        Cell {
            text: text.into(),
            value: Some(value),
        }
    }
}

/// A column of a section: one runtime's cells (aligned with the section's rows), or why it
/// has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub runtime: String,
    pub outcome: std::result::Result<Vec<Cell>, String>,
}

/// How a target compares our shim's number with the Go shim's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// ours / theirs <= the factor.
    AtMostTimes(f64),
    /// ours <= theirs.
    NoWorse,
}

/// An acceptance target on one row of a section.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub row: usize,
    pub goal: Goal,
}

/// One benchmark's results in one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub title: String,
    pub rows: Vec<String>,
    pub columns: Vec<Column>,
    /// How it was measured (bullets under the table).
    pub method: Vec<String>,
    pub targets: Vec<Target>,
}

impl Section {
    fn value(&self, runtime: &str, row: usize) -> std::result::Result<f64, String> {
        let column = self
            .columns
            .iter()
            .find(|c| c.runtime == runtime)
            .ok_or_else(|| format!("{runtime} was not benchmarked"))?;
        match &column.outcome {
            Ok(cells) => cells
                .get(row)
                .and_then(|c| c.value)
                .ok_or_else(|| format!("{runtime} has no number here")),
            Err(_) => Err(format!("{runtime} could not run")),
        }
    }

    /// The verdict on each target: our shim against containerd-shim-runc-v2.
    pub fn verdicts(&self) -> Vec<String> {
        self.targets
            .iter()
            .map(|t| {
                let row = &self.rows[t.row];
                let goal = match t.goal {
                    Goal::AtMostTimes(f) => format!("at most {f}× the Go shim's"),
                    Goal::NoWorse => "no worse than the Go shim's".to_string(),
                };
                match (self.value(REVIVE_V2, t.row), self.value(RUNC_V2, t.row)) {
                    (Ok(ours), Ok(theirs)) => {
                        let met = match t.goal {
                            Goal::AtMostTimes(f) => ours <= theirs * f,
                            Goal::NoWorse => ours <= theirs,
                        };
                        let ratio = if theirs > 0.0 {
                            format!("{:.2}×", ours / theirs)
                        } else {
                            "n/a".into()
                        };
                        format!(
                            "{row}: revive/runc = {ratio} (target: {goal}): **{}**",
                            if met { "met" } else { "NOT met" }
                        )
                    }
                    (Err(why), _) | (_, Err(why)) => {
                        format!("{row} (target: {goal}): **not measured**: {why}")
                    }
                }
            })
            .collect()
    }
}

/// The results in one node flavour.
#[derive(Debug, Clone, PartialEq)]
pub struct FlavourReport {
    pub flavour: String,
    /// "containerd 2.1.9+ds1-5, runc 1.3.6+ds1-1, ..."
    pub versions: String,
    pub sections: Vec<Section>,
    /// Anything that went wrong outside a runtime's column (e.g. the node did not start).
    pub error: Option<String>,
    pub seconds: f64,
}

/// A whole run of revive-bench.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub revive: String,
    pub command: String,
    pub flavours: Vec<FlavourReport>,
    pub seconds: f64,
}

impl Report {
    /// Whether every requested runtime produced numbers in every benchmark of every flavour.
    pub fn complete(&self) -> bool {
        self.flavours.iter().all(|f| {
            f.error.is_none()
                && f.sections
                    .iter()
                    .all(|s| s.columns.iter().all(|c| c.outcome.is_ok()))
        })
    }

    /// The runtimes that could not run somewhere, with the flavour.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.flavours {
            if let Some(err) = &f.error {
                out.push(format!("{} node: {err}", f.flavour));
            }
            for s in &f.sections {
                for c in &s.columns {
                    if let Err(err) = &c.outcome {
                        let line = format!("{} on the {} node: {err}", c.runtime, f.flavour);
                        if !out.contains(&line) {
                            out.push(line);
                        }
                    }
                }
            }
        }
        out
    }
}

/// A markdown table with padded columns (readable as plain text too).
pub fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let escape = |s: &str| s.replace('|', "\\|");
    let header: Vec<String> = header.iter().map(|s| escape(s)).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|s| escape(s)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count().max(3)).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::from("|");
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).map(String::as_str).unwrap_or("");
            let pad = w - cell.chars().count().min(*w);
            out.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
        }
        out.push('\n');
        out
    };
    let mut out = line(&header);
    out.push('|');
    for w in &widths {
        out.push_str(&format!("{}|", "-".repeat(w + 2)));
    }
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// Renders a section: table, failures, method, targets.
pub fn render_section(section: &Section) -> String {
    let mut header = vec![String::new()];
    header.extend(section.columns.iter().map(|c| format!("`{}`", c.runtime)));
    let rows: Vec<Vec<String>> = section
        .rows
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let mut row = vec![label.clone()];
            row.extend(section.columns.iter().map(|c| match &c.outcome {
                Ok(cells) => cells.get(i).map(|c| c.text.clone()).unwrap_or_default(),
                Err(_) => "could not run".to_string(),
            }));
            row
        })
        .collect();
    let mut out = format!("### {}\n\n", section.title);
    out.push_str(&markdown_table(&header, &rows));
    let failures: Vec<&Column> = section
        .columns
        .iter()
        .filter(|c| c.outcome.is_err())
        .collect();
    if !failures.is_empty() {
        out.push('\n');
        for c in failures {
            if let Err(err) = &c.outcome {
                let _ = writeln!(out, "- **`{}` could not run:** {err}", c.runtime);
            }
        }
    }
    if !section.method.is_empty() {
        out.push_str("\nMethod:\n\n");
        for m in &section.method {
            let _ = writeln!(out, "- {m}");
        }
    }
    let verdicts = section.verdicts();
    if !verdicts.is_empty() {
        out.push_str("\nTargets:\n\n");
        for v in verdicts {
            let _ = writeln!(out, "- {v}");
        }
    }
    out
}

/// Renders the whole report as markdown.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::from("# revive benchmarks\n\n");
    let _ = writeln!(out, "- date: {}", report.date);
    let _ = writeln!(out, "- machine: {}", report.machine);
    let _ = writeln!(out, "- revive: {}", report.revive);
    let _ = writeln!(
        out,
        "- reproduce (as root, in the repository): `{}`",
        report.command
    );
    let _ = writeln!(out, "- took: {:.0} s", report.seconds);
    for f in &report.flavours {
        let _ = write!(out, "\n## {} node: {}\n\n", f.flavour, f.versions);
        if let Some(err) = &f.error {
            let _ = writeln!(
                out,
                "**The benchmark could not complete on this node:** {err}\n"
            );
        }
        for s in &f.sections {
            out.push_str(&render_section(s));
            out.push('\n');
        }
    }
    let failures = report.failures();
    if !failures.is_empty() {
        out.push_str("## Not measured\n\n");
        for f in failures {
            let _ = writeln!(out, "- {f}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------

/// Settings shared by every benchmark.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Idle containers for the memory benchmark.
    pub containers: usize,
    /// Timed runs for the latency benchmark (after one warm-up).
    pub runs: usize,
    /// How long the idle containers sit before their shims are measured.
    pub settle: Duration,
    /// Memory the checkpointed containers hold, MiB each.
    pub checkpoint_mib: Vec<u64>,
    /// Checkpoint and restore runs per size.
    pub checkpoint_runs: usize,
    /// Repeated runs per size of the image restore benchmark (after each image's first run).
    pub image_restore_runs: usize,
    /// Rounds per size of the migration benchmark.
    pub migrate_runs: usize,
    /// Timed runs per size of each tool of the forensics benchmark.
    pub forensics_runs: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            containers: 10,
            runs: 20,
            settle: Duration::from_secs(2),
            checkpoint_mib: vec![64, 256, 1024],
            checkpoint_runs: 9,
            image_restore_runs: 9,
            migrate_runs: 3,
            forensics_runs: 3,
        }
    }
}

/// One benchmark: declares its rows, measures one runtime at a time in a node.
pub trait Benchmark {
    /// A short name to select it by (`revive-bench --bench <name>`).
    fn name(&self) -> &'static str;
    fn title(&self, settings: &Settings) -> String;
    fn rows(&self, settings: &Settings) -> Vec<String>;
    fn method(&self, settings: &Settings) -> Vec<String>;
    /// What the numbers are held against; none by default.
    fn targets(&self, _settings: &Settings) -> Vec<Target> {
        Vec::new()
    }
    /// Measures `runtime`; the cells align with [`Benchmark::rows`]. Leaves no container of
    /// its own behind, whether it succeeds or not. A benchmark implements this or
    /// [`Benchmark::measure_runtimes`] (each one's default calls the other); by default, the
    /// one column that `measure_runtimes` gives for `runtime` alone.
    fn measure(&self, node: &Node, runtime: &str, settings: &Settings) -> Result<Vec<Cell>> {
        self.measure_runtimes(node, &[runtime.to_string()], settings, &mut |_| {})
            .pop()
            .unwrap_or_else(|| Err(anyhow::anyhow!("no column for {runtime}")))
    }

    /// Measures every runtime, a column each. By default one after the other with
    /// [`Benchmark::measure`]; a benchmark whose numbers drift with the machine's state (page
    /// cache, disk) interleaves them instead.
    fn measure_runtimes(
        &self,
        node: &Node,
        runtimes: &[String],
        settings: &Settings,
        progress: &mut dyn FnMut(&str),
    ) -> Vec<Result<Vec<Cell>>> {
        runtimes
            .iter()
            .map(|runtime| {
                progress(&format!("{}: {runtime}", self.title(settings)));
                self.measure(node, runtime, settings)
            })
            .collect()
    }
}

/// The benchmarks `revive-bench` runs, in order.
pub fn all() -> Vec<Box<dyn Benchmark>> {
    vec![
        Box::new(ShimMemory),
        Box::new(StartLatency),
        Box::new(checkpoint::CheckpointRestore),
        Box::new(image_restore::ImageRestore),
        Box::new(migrate::Migration),
        Box::new(forensics::Forensics),
    ]
}

/// Runs every benchmark for every runtime in `node`.
pub fn run_in_node(
    node: &Node,
    benchmarks: &[Box<dyn Benchmark>],
    runtimes: &[String],
    settings: &Settings,
    progress: &mut dyn FnMut(&str),
) -> Vec<Section> {
    benchmarks
        .iter()
        .map(|b| {
            let outcomes = b.measure_runtimes(node, runtimes, settings, progress);
            let columns = runtimes
                .iter()
                .zip(outcomes)
                .map(|(runtime, outcome)| {
                    let outcome = outcome.map_err(|e| first_line(&format!("{e:#}")).to_string());
                    if let Err(err) = &outcome {
                        progress(&format!("{runtime} could not run: {err}"));
                    }
                    Column {
                        runtime: runtime.clone(),
                        outcome,
                    }
                })
                .collect();
            Section {
                title: b.title(settings),
                rows: b.rows(settings),
                columns,
                method: b.method(settings),
                targets: b.targets(settings),
            }
        })
        .collect()
}

/// Runs `ctr` in the node; on failure the error names the command and carries the first
/// line of what ctr said.
pub fn ctr(node: &Node, args: &[&str]) -> Result<String> {
    let mut full = vec!["ctr"];
    full.extend_from_slice(args);
    let out = node.exec_timeout(&full, CTR_TIMEOUT)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let said = match (first_line(&stderr), first_line(&stdout)) {
            ("", "") => out.status.to_string(),
            ("", line) | (line, _) => line.to_string(),
        };
        bail!("`{}` failed: {said}", full.join(" "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The shim binary containerd starts for `runtime`: "io.containerd.runc.v2" ->
/// "containerd-shim-runc-v2".
pub fn shim_binary(runtime: &str) -> String {
    format!("containerd-shim-{}", short_runtime(runtime))
}

/// Removes containers `ids` (and their tasks, killed) if they exist; best effort. Then waits
/// (up to 5 s) until no shim process of `runtime` is left in the node, and says so on stderr
/// when some stay (a shim that outlives its containers is worth knowing about).
pub fn remove_containers(node: &Node, runtime: &str, ids: &[String]) {
    let existing = ctr(node, &["containers", "ls", "-q"]).unwrap_or_default();
    for id in existing.lines().map(str::trim) {
        if ids.iter().any(|i| i == id) {
            let _ = ctr(node, &["tasks", "delete", "--force", id]);
            if let Err(err) = ctr(node, &["containers", "delete", id]) {
                eprintln!("revive-bench: could not remove container {id}: {err:#}");
            }
        }
    }
    let binary = shim_binary(runtime);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = node_processes(node)
            .into_iter()
            .filter_map(|p| {
                let argv = cmdline(p.host_pid);
                let argv0 = argv.first()?;
                (argv0.rsplit('/').next() == Some(binary.as_str()))
                    .then(|| format!("{} (host pid {})", argv.join(" "), p.host_pid))
            })
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            eprintln!(
                "revive-bench: {} {binary} process(es) still running 5 s after their containers \
                 were removed (they stay until the node stops):\n  {}",
                left.len(),
                left.join("\n  ")
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process of the node, seen from the host.
#[derive(Debug, Clone)]
pub struct HostProcess {
    pub host_pid: u32,
    pub status: ProcStatus,
}

/// Every process of `node` (those in its cgroup subtree), with host pids.
pub fn node_processes(node: &Node) -> Vec<HostProcess> {
    let needle = format!("/{}", node.cgroup_name());
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let host_pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cgroup = fs::read_to_string(e.path().join("cgroup")).ok()?;
            if !cgroup.lines().any(|l| l.contains(&needle)) {
                return None;
            }
            let status = parse_status(&fs::read_to_string(e.path().join("status")).ok()?).ok()?;
            Some(HostProcess { host_pid, status })
        })
        .collect()
}

fn cmdline(host_pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{host_pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The host pid of the shim serving container `id`, whose init has pid `node_pid` in the
/// node: the init's parent (shims are their containers' subreapers), else the shim started
/// with `-id <id>`.
pub fn find_shim(procs: &[HostProcess], id: &str, node_pid: u32) -> Result<u32> {
    let is_shim = |p: &HostProcess| p.status.name.starts_with("containerd-shim");
    let init = procs
        .iter()
        .find(|p| p.status.ns_pids.get(1) == Some(&node_pid))
        .with_context(|| format!("no process with pid {node_pid} in the node (task {id})"))?;
    if let Some(parent) = procs
        .iter()
        .find(|p| p.host_pid == init.status.ppid && is_shim(p))
    {
        return Ok(parent.host_pid);
    }
    procs
        .iter()
        .filter(|p| is_shim(p))
        .find(|p| {
            cmdline(p.host_pid)
                .windows(2)
                .any(|w| w[0] == "-id" && w[1] == id)
        })
        .map(|p| p.host_pid)
        .with_context(|| {
            format!(
                "no shim found for task {id}: its init's parent is pid {} and no shim runs with -id {id}",
                init.status.ppid
            )
        })
}

/// Memory of the shims behind idle containers.
pub struct ShimMemory;

impl ShimMemory {
    const ROWS: [&'static str; 7] = [
        "containers / shim processes",
        "RSS per container, mean ± sd",
        "RSS per container, min – max",
        "PSS per container, mean ± sd",
        "PSS per container, min – max",
        "PSS per container: anonymous + file-backed, mean",
        "PSS of all shims together",
    ];
    const PSS_MEAN_ROW: usize = 3;

    fn measure_running(
        &self,
        node: &Node,
        runtime: &str,
        ids: &[String],
        settings: &Settings,
    ) -> Result<Vec<Cell>> {
        for id in ids {
            ctr(
                node,
                &run_args(&["-d"], runtime, BUSYBOX, id, &["sleep", "100000"]),
            )?;
        }
        std::thread::sleep(settings.settle);
        let tasks = parse_task_list(&ctr(node, &["tasks", "ls"])?);
        let procs = node_processes(node);
        // shim host pid -> the containers it serves
        let mut shims: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for id in ids {
            let task = tasks
                .iter()
                .find(|t| &t.id == id)
                .with_context(|| format!("task {id} is not listed by ctr tasks ls"))?;
            if task.status != Status::Running {
                bail!("task {id} is {} instead of RUNNING", task.status);
            }
            shims
                .entry(find_shim(&procs, id, task.pid)?)
                .or_default()
                .push(id);
        }
        // Each container is charged its shim's memory divided by the containers it serves.
        let mut rss = Vec::new();
        let mut pss = Vec::new();
        let mut pss_total = 0.0;
        let mut split = Some((0.0, 0.0));
        for (pid, served) in &shims {
            let path = format!("/proc/{pid}/smaps_rollup");
            let mem = parse_smaps_rollup(
                &fs::read_to_string(&path).with_context(|| format!("reading {path}"))?,
            )?;
            pss_total += mem.pss_kib as f64;
            split = match (split, mem.pss_anon_kib, mem.pss_file_kib) {
                (Some((a, f)), Some(anon), Some(file)) => Some((a + anon as f64, f + file as f64)),
                _ => None,
            };
            let share = served.len() as f64;
            for _ in served {
                rss.push(mem.rss_kib as f64 / share);
                pss.push(mem.pss_kib as f64 / share);
            }
        }
        let rss = Summary::of(&rss).context("no containers")?;
        let pss = Summary::of(&pss).context("no containers")?;
        Ok(vec![
            Cell::text(format!("{} / {}", ids.len(), shims.len())),
            Cell::number(format!("{} ± {}", mib(rss.mean), mib(rss.sd)), rss.mean),
            Cell::text(format!("{} – {}", mib(rss.min), mib(rss.max))),
            Cell::number(format!("{} ± {}", mib(pss.mean), mib(pss.sd)), pss.mean),
            Cell::text(format!("{} – {}", mib(pss.min), mib(pss.max))),
            Cell::text(match split {
                Some((anon, file)) => {
                    let n = ids.len() as f64;
                    format!("{} + {}", mib(anon / n), mib(file / n))
                }
                None => "n/a (no Pss_Anon/Pss_File in smaps_rollup)".into(),
            }),
            Cell::number(mib(pss_total), pss_total),
        ])
    }
}

impl Benchmark for ShimMemory {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn title(&self, s: &Settings) -> String {
        format!(
            "Shim memory per running container ({} idle busybox containers)",
            s.containers
        )
    }
    fn rows(&self, _: &Settings) -> Vec<String> {
        Self::ROWS.iter().map(|s| s.to_string()).collect()
    }
    fn method(&self, s: &Settings) -> Vec<String> {
        vec![
            format!(
                "`ctr run -d --runtime <runtime> {BUSYBOX} <id> sleep 100000`, {} times, then {:.0} s idle.",
                s.containers,
                s.settle.as_secs_f64()
            ),
            "Each container's shim is the parent of its init (`ctr tasks ls` pid, mapped to the \
             host pid through `NSpid` in /proc/<pid>/status), or the shim started with `-id <id>`. \
             RSS and PSS come from the shim's /proc/<pid>/smaps_rollup, read on the host."
                .into(),
            "A shim serving several containers is charged to each in equal parts; the spread is \
             over containers. `ctr` sets no pod labels, so each runtime is free to start one shim \
             per container (the Go shim does); the table shows how many ran."
                .into(),
            "PSS splits each shared page among the processes mapping it, so shims of the same binary \
             share its text: PSS is the fair per-container cost, RSS counts shared pages in full. \
             File-backed PSS includes pages of the binary each process dirtied (e.g. relocated \
             RELRO data of a position-independent executable), which are not shared."
                .into(),
            "1 MiB = 1024 KiB. The containers are removed afterwards, and revive-bench waits \
             until their shims have exited before the next measurement."
                .into(),
        ]
    }
    fn targets(&self, _: &Settings) -> Vec<Target> {
        vec![Target {
            row: Self::PSS_MEAN_ROW,
            goal: Goal::AtMostTimes(0.25),
        }]
    }
    fn measure(&self, node: &Node, runtime: &str, settings: &Settings) -> Result<Vec<Cell>> {
        let short = short_runtime(runtime);
        let ids: Vec<String> = (0..settings.containers)
            .map(|i| format!("{short}-idle-{i}"))
            .collect();
        let result = self.measure_running(node, runtime, &ids, settings);
        remove_containers(node, runtime, &ids);
        result
    }
}

/// Wall time of `ctr run --rm ... true`.
pub struct StartLatency;

impl StartLatency {
    const ROWS: [&'static str; 5] = [
        "median",
        "p90",
        "min",
        "max",
        "`ctr version` median (fixed overhead in every sample)",
    ];
    const MEDIAN_ROW: usize = 0;

    fn timed(node: &Node, args: &[&str]) -> Result<f64> {
        let start = Instant::now();
        ctr(node, args)?;
        Ok(start.elapsed().as_secs_f64() * 1000.0)
    }

    fn measure_runs(node: &Node, runtime: &str, ids: &[String], runs: usize) -> Result<Vec<Cell>> {
        let run = |id: &str| {
            Self::timed(
                node,
                &["run", "--rm", "--runtime", runtime, BUSYBOX, id, "true"],
            )
        };
        run(&ids[0]).context("warm-up run")?;
        let mut samples = Vec::with_capacity(runs);
        for (k, id) in ids[1..].iter().enumerate() {
            samples.push(run(id).with_context(|| format!("run {}", k + 1))?);
        }
        let mut overhead = Vec::with_capacity(runs);
        for _ in 0..runs {
            overhead.push(Self::timed(node, &["version"])?);
        }
        let s = Summary::of(&samples).context("no runs")?;
        let o = Summary::of(&overhead).context("no runs")?;
        Ok(vec![
            Cell::number(ms(s.median), s.median),
            Cell::number(ms(s.p90), s.p90),
            Cell::number(ms(s.min), s.min),
            Cell::number(ms(s.max), s.max),
            Cell::number(ms(o.median), o.median),
        ])
    }
}

impl Benchmark for StartLatency {
    fn name(&self) -> &'static str {
        "start"
    }
    fn title(&self, s: &Settings) -> String {
        format!("`ctr run --rm` latency ({} runs after one warm-up)", s.runs)
    }
    fn rows(&self, _: &Settings) -> Vec<String> {
        Self::ROWS.iter().map(|s| s.to_string()).collect()
    }
    fn method(&self, _: &Settings) -> Vec<String> {
        vec![
            format!(
                "Wall time of `ctr run --rm --runtime <runtime> {BUSYBOX} <id> true`, each run with \
                 a new id: create the container, start its shim, start the task, wait for it to \
                 exit, delete task and container, stop the shim."
            ),
            "Timed by revive-bench around the whole command, which enters the node with `nsenter`; \
             that overhead (and ctr's own start-up) is the same for every runtime. The last row \
             times `ctr version` the same way to show its size."
                .into(),
            "The runtimes are measured one after the other in the same node; percentiles \
             interpolate linearly between samples."
                .into(),
        ]
    }
    fn targets(&self, _: &Settings) -> Vec<Target> {
        vec![Target {
            row: Self::MEDIAN_ROW,
            goal: Goal::NoWorse,
        }]
    }
    fn measure(&self, node: &Node, runtime: &str, settings: &Settings) -> Result<Vec<Cell>> {
        let short = short_runtime(runtime);
        let ids: Vec<String> = std::iter::once(format!("{short}-start-warmup"))
            .chain((0..settings.runs).map(|k| format!("{short}-start-{k}")))
            .collect();
        let result = Self::measure_runs(node, runtime, &ids, settings.runs);
        remove_containers(node, runtime, &ids);
        result
    }
}

// ---------------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------------

/// "2 CPUs (model), 7.8 GiB RAM, Linux 6.1.0"
pub fn machine_description() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kib| format!("{:.1} GiB RAM", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown RAM".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{cpus} CPUs ({model}), {mem}, Linux {kernel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 0.0), Some(1.0));
        assert_eq!(percentile(&ten, 100.0), Some(10.0));
        assert_eq!(percentile(&ten, 50.0), Some(5.5));
        assert!((percentile(&ten, 90.0).unwrap() - 9.1).abs() < 1e-9);
        assert_eq!(percentile(&[4.0], 90.0), Some(4.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
    }

    #[test]
    fn summary_sorts_and_spreads() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 4.0]).unwrap();
        assert_eq!(
            (s.n, s.min, s.max, s.mean, s.median),
            (4, 1.0, 4.0, 2.5, 2.5)
        );
        assert!((s.sd - 1.290_994_448_7).abs() < 1e-9);
        assert!((s.p90 - 3.7).abs() < 1e-9);
        let one = Summary::of(&[7.0]).unwrap();
        assert_eq!((one.sd, one.median, one.p90), (0.0, 7.0, 7.0));
        assert!(Summary::of(&[]).is_none());
    }

    const SMAPS: &str = "\
55d4c0a00000-7ffc1b5fe000 ---p 00000000 00:00 0                          [rollup]
Rss:               12345 kB
Pss:                4321 kB
Pss_Dirty:          3000 kB
Pss_Anon:           2900 kB
Pss_File:           1421 kB
Pss_Shmem:             0 kB
Shared_Clean:       8000 kB
Private_Dirty:      3000 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
";

    #[test]
    fn smaps_rollup_parses() {
        let m = parse_smaps_rollup(SMAPS).unwrap();
        assert_eq!(
            m,
            Memory {
                rss_kib: 12345,
                pss_kib: 4321,
                pss_anon_kib: Some(2900),
                pss_file_kib: Some(1421),
            }
        );
        // Pss_Anon and friends must not be mistaken for Pss.
        let no_pss: String = SMAPS
            .lines()
            .filter(|l| !l.starts_with("Pss:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_smaps_rollup(&no_pss).is_err());
        let old_kernel = parse_smaps_rollup("Rss: 8 kB\nPss: 4 kB\n").unwrap();
        assert_eq!(
            (old_kernel.pss_anon_kib, old_kernel.pss_file_kib),
            (None, None)
        );
        assert!(parse_smaps_rollup("").is_err());
    }

    #[test]
    fn status_parses_nested_pids() {
        let text = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n\
                    Ngid:\t0\nPid:\t4242\nPPid:\t4200\nTracerPid:\t0\nNSpid:\t4242\t57\t1\n";
        let s = parse_status(text).unwrap();
        assert_eq!(s.name, "sleep");
        assert_eq!(s.ppid, 4200);
        assert_eq!(s.ns_pids, vec![4242, 57, 1]);
        assert!(parse_status("PPid:\t1\n").is_err());
    }

    fn proc(host_pid: u32, name: &str, ppid: u32, ns: &[u32]) -> HostProcess {
        HostProcess {
            host_pid,
            status: ProcStatus {
                name: name.into(),
                ppid,
                ns_pids: ns.to_vec(),
            },
        }
    }

    #[test]
    fn shim_is_the_parent_of_the_init() {
        let procs = vec![
            proc(100, "containerd", 90, &[100, 5]),
            proc(200, "containerd-shim", 1, &[200, 20]),
            proc(201, "sleep", 200, &[201, 21, 1]),
            proc(300, "containerd-shim", 1, &[300, 30]),
            proc(301, "sleep", 300, &[301, 31, 1]),
        ];
        assert_eq!(find_shim(&procs, "a", 21).unwrap(), 200);
        assert_eq!(find_shim(&procs, "b", 31).unwrap(), 300);
        assert!(find_shim(&procs, "c", 99).is_err());
    }

    #[test]
    fn small_helpers() {
        assert_eq!(short_runtime(RUNC_V2), "runc-v2");
        assert_eq!(short_runtime(REVIVE_V2), "revive-v2");
        assert_eq!(shim_binary(RUNC_V2), "containerd-shim-runc-v2");
        assert_eq!(shim_binary(REVIVE_V2), "containerd-shim-revive-v2");
        assert_eq!(first_line("\n  ctr: boom  \nmore"), "ctr: boom");
        assert_eq!(first_line(""), "");
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_timestamp(951_782_400 + 3_723), "2000-02-29 01:02 UTC");
        assert_eq!(utc_timestamp(1_767_225_599), "2025-12-31 23:59 UTC");
    }

    fn section(revive: std::result::Result<Vec<Cell>, String>) -> Section {
        Section {
            title: "Shim memory".into(),
            rows: vec!["shims".into(), "PSS | mean".into()],
            columns: vec![
                Column {
                    runtime: RUNC_V2.into(),
                    outcome: Ok(vec![
                        Cell::text("10"),
                        Cell::number("8.00 MiB", 8.0 * 1024.0),
                    ]),
                },
                Column {
                    runtime: REVIVE_V2.into(),
                    outcome: revive,
                },
            ],
            method: vec!["measured".into()],
            targets: vec![Target {
                row: 1,
                goal: Goal::AtMostTimes(0.25),
            }],
        }
    }

    #[test]
    fn tables_are_padded_markdown() {
        let t = markdown_table(
            &["".into(), "a".into()],
            &[vec!["long label".into(), "x|y".into()]],
        );
        assert_eq!(
            t,
            "|            | a    |\n|------------|------|\n| long label | x\\|y |\n"
        );
    }

    #[test]
    fn failed_runtime_is_reported_not_invented() {
        let s = section(Err(
            "`ctr run` failed: ctr: unsupported shim version (3)".into()
        ));
        let text = render_section(&s);
        assert!(
            text.contains("| shims       | 10                      | could not run             |")
        );
        assert!(text.contains(
            "- **`io.containerd.revive.v2` could not run:** `ctr run` failed: ctr: unsupported shim version (3)"
        ));
        assert!(text.contains("PSS \\| mean"));
        assert!(text.contains("**not measured**: io.containerd.revive.v2 could not run"));
        assert!(!text.contains("**met**"));
        let report = Report {
            date: "2025-01-01 00:00 UTC".into(),
            machine: "2 CPUs".into(),
            revive: "0.1.0".into(),
            command: "make bench".into(),
            flavours: vec![FlavourReport {
                flavour: "next".into(),
                versions: "containerd 2.1.9".into(),
                sections: vec![s],
                error: None,
                seconds: 1.0,
            }],
            seconds: 2.0,
        };
        assert!(!report.complete());
        let md = render_markdown(&report);
        assert!(md.starts_with("# revive benchmarks\n"));
        assert!(md.contains("- reproduce (as root, in the repository): `make bench`"));
        assert!(md.contains("## next node: containerd 2.1.9"));
        assert!(md.contains("## Not measured\n\n- io.containerd.revive.v2 on the next node:"));
    }

    #[test]
    fn targets_compare_both_shims() {
        let met = section(Ok(vec![
            Cell::text("10"),
            Cell::number("2.00 MiB", 2.0 * 1024.0),
        ]));
        assert_eq!(
            met.verdicts(),
            vec!["PSS | mean: revive/runc = 0.25× (target: at most 0.25× the Go shim's): **met**"]
        );
        let missed = section(Ok(vec![
            Cell::text("10"),
            Cell::number("3.00 MiB", 3.0 * 1024.0),
        ]));
        assert!(missed.verdicts()[0].ends_with("**NOT met**"));
        let report = Report {
            date: String::new(),
            machine: String::new(),
            revive: String::new(),
            command: String::new(),
            flavours: vec![FlavourReport {
                flavour: "next".into(),
                versions: String::new(),
                sections: vec![met],
                error: None,
                seconds: 0.0,
            }],
            seconds: 0.0,
        };
        assert!(report.complete());
        assert!(!render_markdown(&report).contains("Not measured"));
    }
}
