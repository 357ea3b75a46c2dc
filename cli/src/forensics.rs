//! `revive inspect` and `revive memgrep`: what a checkpoint shows about its container, and
//! a search of its processes' memory, without restoring anything.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use revive_checkpoint::archive;
use revive_checkpoint::criu::files::FileTable;
use revive_checkpoint::criu::images::Source;
use revive_checkpoint::criu::memory::{Mapping, MappingKind, Memory, PAGE_SIZE};
use revive_checkpoint::criu::search::{self, Hit, Pattern};
use revive_checkpoint::forensic::diff::Diff;
use revive_checkpoint::forensic::{self, Beside, Inspection, ProcessView};
use revive_checkpoint::privilege::caps;
use serde::Serialize;

use crate::inspect::human;
use crate::opened::{Opened, Origin};

/// Largest `stats-dump` read.
const MAX_STATS_BYTES: u64 = 1 << 20;

/// What `revive inspect` reports: where the checkpoint came from, and what it shows.
#[derive(Debug, Serialize)]
pub struct Report {
    pub origin: Origin,
    #[serde(flatten)]
    pub inspection: Inspection,
}

/// What an opened checkpoint shows.
fn inspection(opened: &Opened, path: &Path) -> Result<Inspection> {
    let beside = Beside {
        config_dump: opened.file(archive::CONFIG_DUMP, archive::MAX_CONFIG_BYTES)?,
        spec_dump: opened.file(archive::SPEC_DUMP, archive::MAX_SPEC_BYTES)?,
        stats_dump: opened.file("stats-dump", MAX_STATS_BYTES)?,
        root_fs_diff: opened.file_size(archive::ROOTFS_DIFF),
    };
    forensic::inspect(opened, &beside)
        .with_context(|| format!("reading CRIU's images in {}", path.display()))
}

/// Reads the checkpoint at `path`.
pub fn inspect(path: &Path) -> Result<Report> {
    let opened = Opened::open(path)?;
    Ok(Report {
        inspection: inspection(&opened, path)?,
        origin: opened.origin.clone(),
    })
}

/// Compares two checkpoints of the same container: `before`, then `after`.
pub fn diff(before: &Path, after: &Path) -> Result<Diff> {
    let (a, b) = (Opened::open(before)?, Opened::open(after)?);
    let (ia, ib) = (inspection(&a, before)?, inspection(&b, after)?);
    let mut out = forensic::diff::compare(&ia, &ib);
    for p in ia.processes.iter().filter(|p| !p.zombie) {
        if !ib.processes.iter().any(|q| q.pid == p.pid && !q.zombie) {
            continue;
        }
        let (Some(ma), Some(mb)) = (Memory::read(&a, p.pid)?, Memory::read(&b, p.pid)?) else {
            continue;
        };
        out.memory
            .push(forensic::diff::compare_memory(&a, &ma, &b, &mb)?);
    }
    Ok(out)
}

/// The human rendering of a diff.
pub fn render_diff(d: &Diff) -> String {
    let mut out = String::new();
    let sections: [(&str, &Vec<String>); 8] = [
        ("processes started", &d.started),
        ("processes gone", &d.gone),
        ("files opened", &d.opened),
        ("files closed", &d.closed),
        ("sockets opened", &d.sockets_opened),
        ("sockets closed", &d.sockets_closed),
        ("mounts added", &d.mounts_added),
        ("mounts removed", &d.mounts_removed),
    ];
    for (title, lines) in sections {
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}");
        for line in lines {
            let _ = writeln!(out, "  {line}");
        }
    }
    for m in &d.memory {
        let _ = writeln!(
            out,
            "memory of {}: {} of {} pages compared changed; {} dumped before only, {} after only",
            m.pid, m.changed, m.compared, m.only_before, m.only_after
        );
        for (start, end) in m.ranges.iter().take(64) {
            let _ = writeln!(out, "  {start:x}-{end:x} ({})", human(end - start));
        }
        if m.ranges.len() > 64 {
            let _ = writeln!(
                out,
                "  ... {} more ranges (--json lists them all)",
                m.ranges.len() - 64
            );
        }
    }
    if d.is_empty() {
        out.push_str("no difference\n");
    }
    out
}

fn mapping_label(kind: MappingKind, path: Option<&str>) -> String {
    match (kind, path) {
        (_, Some(path)) => path.to_string(),
        (MappingKind::Heap, _) => "[heap]".into(),
        (MappingKind::Stack, _) => "[stack]".into(),
        (MappingKind::Vdso, _) => "[vdso]".into(),
        (MappingKind::Vvar, _) => "[vvar]".into(),
        (MappingKind::Vsyscall, _) => "[vsyscall]".into(),
        (MappingKind::SharedAnonymous, _) => "[anon shared]".into(),
        (MappingKind::SysvIpc, _) => "[sysv shm]".into(),
        (MappingKind::Memfd, _) => "[memfd]".into(),
        (MappingKind::File, _) => "[file]".into(),
        _ => "[anon]".into(),
    }
}

fn quoted(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.bytes().all(|b| b.is_ascii_graphic() && b != b'\'') {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn render_process(out: &mut String, p: &ProcessView, depth: usize) {
    let pad = "  ".repeat(depth);
    let zombie = match p.wait_status {
        _ if !p.zombie => String::new(),
        Some(s) if s & 0x7f != 0 => format!(" (zombie: killed by signal {})", s & 0x7f),
        Some(s) => format!(" (zombie: exited {})", s >> 8),
        None => " (zombie)".into(),
    };
    let _ = writeln!(out, "{pad}[{}] {}{zombie}", p.pid, p.comm);
    let pad = format!("{pad}    ");
    let line = |out: &mut String, key: &str, value: &str| {
        let _ = writeln!(out, "{pad}{key:<12} {value}");
    };
    match &p.cmdline {
        Some(args) => line(out, "command", &quoted(args)),
        None if !p.zombie => line(out, "command", "(its pages are not in the checkpoint)"),
        None => {}
    }
    if let Some(exe) = &p.exe {
        line(out, "executable", exe);
    }
    line(
        out,
        "ppid",
        &format!("{} (pgid {}, sid {})", p.ppid, p.pgid, p.sid),
    );
    if let Some(cwd) = &p.cwd {
        line(out, "cwd", cwd);
    }
    if let Some(root) = &p.root {
        line(out, "root", root);
    }
    for t in &p.threads {
        let c = &t.creds;
        line(
            out,
            &format!("thread {}", t.tid),
            &format!(
                "uid {} gid {} groups {:?} seccomp {}{}",
                c.uid,
                c.gid,
                c.groups,
                t.seccomp,
                if c.no_new_privs { " no_new_privs" } else { "" }
            ),
        );
        line(out, "  effective", &caps::names(c.caps.effective));
        if c.caps.bounding != c.caps.effective {
            line(out, "  bounding", &caps::names(c.caps.bounding));
        }
    }
    if let Some(env) = &p.environment {
        for (i, var) in env.iter().enumerate() {
            line(out, if i == 0 { "environment" } else { "" }, var);
        }
    }
    for f in &p.files {
        if f.fd == "cwd" || f.fd == "root" {
            continue;
        }
        let pos = f.pos.map(|p| format!(" (at {p})")).unwrap_or_default();
        line(
            out,
            &format!("fd {}", f.fd),
            &format!("{} {}{pos}", f.kind, f.path),
        );
    }
    for s in &p.sockets {
        let ends = match (&s.source, s.source_port, &s.destination, s.destination_port) {
            (Some(src), Some(sp), Some(dst), Some(dp)) => format!("{src}:{sp} -> {dst}:{dp}"),
            (Some(src), _, _, _) => src.clone(),
            _ => String::new(),
        };
        line(
            out,
            &format!("socket {}", s.fd),
            &format!(
                "{} {}{} {} {ends} (send {}, receive {})",
                s.family,
                s.protocol
                    .as_deref()
                    .map(|p| format!("{p} "))
                    .unwrap_or_default(),
                s.sock_type,
                s.state,
                human(u64::from(s.send_buffer)),
                human(u64::from(s.receive_buffer)),
            ),
        );
    }
    if let Some(m) = &p.memory {
        line(
            out,
            "memory",
            &format!("{} in {} mappings", human(m.present), m.mappings.len()),
        );
    }
}

/// The human rendering of a report.
pub fn render(report: &Report) -> String {
    let i = &report.inspection;
    let c = &i.container;
    let mut out = String::new();
    let mut line = |key: &str, value: &str| {
        let _ = writeln!(out, "{key:<16} {value}");
    };
    line("container", &c.name);
    line("id", &c.id);
    line("image", &c.image);
    if !c.image_id.is_empty() {
        line("image id", &c.image_id);
    }
    line("runtime", &c.runtime);
    line("engine", &c.engine);
    if let Some(pod) = &c.pod {
        line(
            "pod",
            &format!(
                "{pod} (namespace {})",
                c.namespace.as_deref().unwrap_or("?")
            ),
        );
    }
    line("created", &c.created);
    line("checkpointed", &c.checkpointed);
    line(
        "from",
        &match &report.origin {
            Origin::Archive { compression } => format!("checkpoint archive ({compression})"),
            Origin::Image { name } => format!("checkpoint image {name}"),
            Origin::Containerd { name } => format!("containerd checkpoint {name}"),
        },
    );
    line(
        "size",
        &format!(
            "{} of CRIU images, {} of them memory pages; root filesystem diff {}",
            human(i.sizes.checkpoint),
            human(i.sizes.memory_pages),
            i.sizes.root_fs_diff.map_or("none".into(), human)
        ),
    );
    if let Some(s) = &i.statistics {
        line(
            "CRIU dump",
            &format!(
                "froze in {} us, frozen {} us, memory dumped in {} us and written in {} us; \
                 {} pages scanned, {} written",
                s.freezing_time,
                s.frozen_time,
                s.memdump_time,
                s.memwrite_time,
                s.pages_scanned,
                s.pages_written
            ),
        );
    }
    out.push_str("\nprocesses\n");
    let mut stack: Vec<(u32, usize)> = Vec::new();
    for p in &i.processes {
        while stack.last().is_some_and(|(pid, _)| *pid != p.ppid) {
            stack.pop();
        }
        let depth = stack.last().map_or(1, |(_, d)| d + 1);
        render_process(&mut out, p, depth);
        stack.push((p.pid, depth));
    }
    if !i.mounts.is_empty() {
        out.push_str("\nmounts (the container's spec)\n");
        for m in &i.mounts {
            let _ = writeln!(
                out,
                "  {:<24} {:<8} {} [{}]",
                m.destination,
                m.fstype,
                m.source,
                m.options.join(",")
            );
        }
    }
    if !i.problems.is_empty() {
        out.push_str("\nnot read\n");
        for p in &i.problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    out
}

/// What `revive memgrep` looks for and how it reports.
pub struct Grep<'a> {
    pub pattern: &'a Pattern,
    pub pid: Option<u32>,
    pub context: usize,
    /// Stop after this many matches.
    pub max: usize,
}

/// One match as `revive memgrep --json` prints it.
#[derive(Debug, Serialize)]
pub struct JsonHit {
    #[serde(flatten)]
    hit: Hit,
    comm: String,
    mapping_label: Option<String>,
    before: String,
    matched: String,
    after: String,
}

/// Printable bytes as they are, others as `\xNN`.
pub fn escaped(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// "1, 11, 12".
fn pid_list(pids: impl Iterator<Item = u32>) -> String {
    pids.map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
}

/// The processes of `opened` to search: one (`pid`), or every one that has memory.
fn memories(opened: &Opened, pid: Option<u32>) -> Result<Vec<(Memory, String)>> {
    let checkpoint = revive_checkpoint::criu::images::read(opened)?;
    let mut out = Vec::new();
    for p in &checkpoint.processes {
        if pid.is_some_and(|want| want != p.pid) {
            continue;
        }
        if let Some(memory) = Memory::read(opened, p.pid)? {
            out.push((memory, p.comm.clone()));
        }
    }
    if let Some(want) = pid {
        ensure!(
            !out.is_empty(),
            "the checkpoint has no process {want} with memory (its processes: {})",
            pid_list(checkpoint.processes.iter().map(|p| p.pid))
        );
    }
    Ok(out)
}

/// Searches the memory of the checkpoint at `path`, writing each match to `out` as it is
/// found (a line of text, or of JSON); returns how many were found and how many bytes were
/// searched.
pub fn memgrep(
    path: &Path,
    grep: &Grep<'_>,
    json: bool,
    out: &mut dyn std::io::Write,
) -> Result<(usize, u64)> {
    let opened = Opened::open(path)?;
    let table = FileTable::read(&opened)?;
    let mut found = 0usize;
    let mut searched = 0u64;
    let mut failed = None;
    for (memory, comm) in memories(&opened, grep.pid)? {
        searched += search::search(&opened, &memory, grep.pattern, grep.context, &mut |hit| {
            found += 1;
            let label = hit
                .mapping
                .as_ref()
                .map(|m| mapping_label(m.kind, m.file_id.and_then(|id| table.path(id))));
            let written = if json {
                let line = JsonHit {
                    comm: comm.clone(),
                    mapping_label: label,
                    before: escaped(&hit.before),
                    matched: escaped(&hit.matched),
                    after: escaped(&hit.after),
                    hit,
                };
                serde_json::to_string(&line)
                    .map_err(std::io::Error::other)
                    .and_then(|l| writeln!(out, "{l}"))
            } else {
                let range = hit
                    .mapping
                    .as_ref()
                    .map(|m| format!("{:x}-{:x} {}", m.start, m.end, m.perms))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{} {} {:#x} {} {}: {}[{}]{}",
                    hit.pid,
                    comm,
                    hit.address,
                    label.as_deref().unwrap_or("(no mapping)"),
                    range,
                    escaped(&hit.before),
                    escaped(&hit.matched),
                    escaped(&hit.after)
                )
            };
            if let Err(e) = written {
                failed = Some(e);
                return false;
            }
            found < grep.max
        })?;
        if let Some(e) = failed.take() {
            return Err(e).context("writing the matches");
        }
        if found >= grep.max {
            break;
        }
    }
    Ok((found, searched))
}

/// Writes the pages of the mapping of process `pid` that holds `address` to `output`
/// (0600, not replacing a file): the mapping's bytes from its start, pages the checkpoint
/// does not hold as zeros. Returns the mapping.
pub fn dump_mapping(path: &Path, pid: u32, address: u64, output: &Path) -> Result<Mapping> {
    let opened = Opened::open(path)?;
    let Some((memory, _)) = memories(&opened, Some(pid))?.pop() else {
        bail!("the checkpoint has no process {pid} with memory");
    };
    let mapping = memory
        .mapping_at(address)
        .with_context(|| format!("process {pid} has no mapping at {address:#x}"))?
        .clone();
    write_private(output, |file| {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        for at in (mapping.start..mapping.end).step_by(PAGE_SIZE as usize) {
            match memory.locate(at) {
                Some((_, offset)) => opened.read_at(&memory.pages_file, offset, &mut page)?,
                None => page.fill(0),
            }
            file.write_all(&page)?;
        }
        Ok(())
    })?;
    Ok(mapping)
}

/// Writes an ELF core file of process `pid` (default: the first that is not a zombie) of
/// the checkpoint at `path` to `output`, a new 0600 file; removed again if writing fails.
pub fn core(
    path: &Path,
    pid: Option<u32>,
    output: &Path,
) -> Result<(ProcessView, forensic::elfcore::Written)> {
    let opened = Opened::open(path)?;
    let inspection = inspection(&opened, path)?;
    let process = inspection
        .processes
        .iter()
        .find(|p| pid.map_or(!p.zombie, |want| p.pid == want))
        .with_context(|| match pid {
            Some(want) => format!(
                "the checkpoint has no process {want} (its processes: {})",
                pid_list(inspection.processes.iter().map(|p| p.pid))
            ),
            None => "the checkpoint has no process that is not a zombie".into(),
        })?
        .clone();
    let written = write_private(output, |file| {
        Ok(forensic::elfcore::write(&opened, &process, file)?)
    })
    .with_context(|| format!("writing the core of process {}", process.pid))?;
    Ok((process, written))
}

/// Writes `output`, a new file (0600: it holds process memory), buffered, with `write`;
/// removes it again if writing fails, so a failure leaves no partial file.
fn write_private<T>(
    output: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<T>,
) -> Result<T> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .with_context(|| format!("creating {} (it must not exist)", output.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let written = write(&mut writer).and_then(|w| Ok(writer.flush().map(|()| w)?));
    if written.is_err() {
        let _ = std::fs::remove_file(output);
    }
    written.with_context(|| format!("writing {}", output.display()))
}
