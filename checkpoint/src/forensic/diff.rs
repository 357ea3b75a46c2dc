//! Two checkpoints of the same container compared (`revive diff`): processes started or
//! gone, files opened or closed, sockets, mounts, and which memory pages changed.
//!
//! Processes are matched by pid (a restore keeps them), files and sockets by descriptor
//! and what it names. Pages are compared in place, a chunk of each checkpoint at a time, so
//! checkpoints of any size are compared in bounded memory.

use serde::Serialize;

use super::{Inspection, ProcessView};
use crate::criu::ImageError;
use crate::criu::images::Source;
use crate::criu::memory::{Memory, PAGE_SIZE, PagesAt};

/// Pages compared at a time.
const CHUNK_PAGES: u64 = 256;

/// What differs between checkpoint A (before) and B (after).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// `pid comm` of processes only in B, and only in A.
    pub started: Vec<String>,
    pub gone: Vec<String>,
    /// `pid: fd KIND path` of descriptors only in B (opened), and only in A (closed).
    pub opened: Vec<String>,
    pub closed: Vec<String>,
    pub sockets_opened: Vec<String>,
    pub sockets_closed: Vec<String>,
    /// `destination type source` of mounts only in B, and only in A.
    pub mounts_added: Vec<String>,
    pub mounts_removed: Vec<String>,
    /// Per process in both: its pages that changed, appeared or disappeared.
    pub memory: Vec<MemoryDiff>,
}

/// How a process's dumped memory changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryDiff {
    pub pid: u32,
    /// Pages in both checkpoints, and how many of them differ.
    pub compared: u64,
    pub changed: u64,
    /// Pages dumped in only one of the two.
    pub only_before: u64,
    pub only_after: u64,
    /// The changed pages as `[start, end)` address ranges, adjacent pages merged.
    pub ranges: Vec<(u64, u64)>,
}

impl Diff {
    /// Whether the two checkpoints hold the same processes, files, sockets, mounts and
    /// pages.
    pub fn is_empty(&self) -> bool {
        [
            &self.started,
            &self.gone,
            &self.opened,
            &self.closed,
            &self.sockets_opened,
            &self.sockets_closed,
            &self.mounts_added,
            &self.mounts_removed,
        ]
        .iter()
        .all(|v| v.is_empty())
            && self
                .memory
                .iter()
                .all(|m| m.changed == 0 && m.only_before == 0 && m.only_after == 0)
    }
}

fn only_in<T: PartialEq + Clone>(these: &[T], not: &[T]) -> Vec<T> {
    these.iter().filter(|x| !not.contains(x)).cloned().collect()
}

fn files_of(p: &ProcessView) -> Vec<String> {
    p.files
        .iter()
        .map(|f| format!("{}: {} {} {}", p.pid, f.fd, f.kind, f.path))
        .collect()
}

fn sockets_of(p: &ProcessView) -> Vec<String> {
    p.sockets
        .iter()
        .map(|s| {
            let ends = match (&s.source, s.source_port) {
                (Some(a), Some(port)) => format!("{a}:{port}"),
                (Some(a), None) => a.clone(),
                _ => String::new(),
            };
            format!(
                "{}: {} {} {} {} {ends}",
                p.pid,
                s.fd,
                s.family,
                s.protocol.as_deref().unwrap_or(&s.sock_type),
                s.state
            )
        })
        .collect()
}

/// Compares two inspections (everything but memory).
pub fn compare(a: &Inspection, b: &Inspection) -> Diff {
    let names = |i: &Inspection| -> Vec<String> {
        i.processes
            .iter()
            .map(|p| format!("{} {}", p.pid, p.comm))
            .collect()
    };
    let all = |i: &Inspection, f: fn(&ProcessView) -> Vec<String>| -> Vec<String> {
        i.processes.iter().flat_map(f).collect()
    };
    let mounts = |i: &Inspection| -> Vec<String> {
        i.mounts
            .iter()
            .map(|m| format!("{} {} {}", m.destination, m.fstype, m.source))
            .collect()
    };
    Diff {
        started: only_in(&names(b), &names(a)),
        gone: only_in(&names(a), &names(b)),
        opened: only_in(&all(b, files_of), &all(a, files_of)),
        closed: only_in(&all(a, files_of), &all(b, files_of)),
        sockets_opened: only_in(&all(b, sockets_of), &all(a, sockets_of)),
        sockets_closed: only_in(&all(a, sockets_of), &all(b, sockets_of)),
        mounts_added: only_in(&mounts(b), &mounts(a)),
        mounts_removed: only_in(&mounts(a), &mounts(b)),
        memory: Vec::new(),
    }
}

/// Every run of pages `memory` holds: (first page's address, pages, offset in the pages
/// file).
fn present(memory: &Memory) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
    memory.runs.iter().filter_map(|r| match r.at {
        PagesAt::Here(offset) => Some((r.vaddr, r.pages, offset)),
        _ => None,
    })
}

/// Compares the dumped pages of one process in two checkpoints.
pub fn compare_memory(
    a_source: &dyn Source,
    a: &Memory,
    b_source: &dyn Source,
    b: &Memory,
) -> Result<MemoryDiff, ImageError> {
    let mut out = MemoryDiff {
        pid: a.pid,
        ..MemoryDiff::default()
    };
    let (mut buf_a, mut buf_b) = (Vec::new(), Vec::new());
    for (start, pages, offset_a) in present(a) {
        let mut page = 0;
        while page < pages {
            let addr = start + page * PAGE_SIZE;
            let Some((run_b, offset_b)) = b.locate(addr) else {
                out.only_before += 1;
                page += 1;
                continue;
            };
            // As many pages as both hold from here, at most a chunk.
            let in_b = (run_b.end() - addr) / PAGE_SIZE;
            let n = (pages - page).min(in_b).min(CHUNK_PAGES);
            let len = (n * PAGE_SIZE) as usize;
            buf_a.resize(len, 0);
            buf_b.resize(len, 0);
            a_source.read_at(&a.pages_file, offset_a + page * PAGE_SIZE, &mut buf_a)?;
            b_source.read_at(&b.pages_file, offset_b, &mut buf_b)?;
            for (i, (pa, pb)) in buf_a
                .chunks(PAGE_SIZE as usize)
                .zip(buf_b.chunks(PAGE_SIZE as usize))
                .enumerate()
            {
                out.compared += 1;
                if pa != pb {
                    out.changed += 1;
                    let at = addr + i as u64 * PAGE_SIZE;
                    match out.ranges.last_mut() {
                        Some((_, end)) if *end == at => *end = at + PAGE_SIZE,
                        _ => out.ranges.push((at, at + PAGE_SIZE)),
                    }
                }
            }
            page += n;
        }
    }
    for (start, pages, _) in present(b) {
        for page in 0..pages {
            if a.locate(start + page * PAGE_SIZE).is_none() {
                out.only_after += 1;
            }
        }
    }
    Ok(out)
}
