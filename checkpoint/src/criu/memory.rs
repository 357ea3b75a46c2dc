//! A process's memory as CRIU dumped it: its mappings and the bounds of its arguments and
//! environment (`mm-PID.img`), and where each dumped page lies (`pagemap-PID.img`, whose
//! present pages are stored one after the other, in pagemap order, in `pages-ID.img`).
//!
//! Invariants: page runs are page-aligned, sorted, do not overlap, and every present run lies
//! wholly inside the pages file; every count and length is bounded; page data is read from
//! the source with [`Source::read_at`], never whole, so a memory of any size is searched in
//! bounded memory.

use serde::Serialize;

use super::images::{Source, one, records_up_to};
use super::{ImageError, proto};

pub const MM_MAGIC: u32 = 0x5749_2820;
pub const PAGEMAP_MAGIC: u32 = 0x5608_4025;
/// The page size of the architectures revive restores on (x86_64, aarch64 with 4 KiB pages).
pub const PAGE_SIZE: u64 = 4096;
/// Most mappings of one process (the kernel's default `vm.max_map_count` is 65530).
const MAX_MAPPINGS: usize = 1 << 18;
/// Most pagemap entries of one process.
const MAX_PAGE_RUNS: usize = 1 << 22;
/// Most words of the auxiliary vector kept (the kernel's `AT_VECTOR_SIZE` is far below).
const MAX_AUXV: usize = 1024;
/// Most bytes read of a process's arguments or environment.
pub const MAX_STRINGS_BYTES: u64 = 1 << 20;

/// CRIU's pagemap flags (`criu/include/pagemap.h`).
const PE_PARENT: u32 = 1 << 0;
const PE_LAZY: u32 = 1 << 1;
const PE_PRESENT: u32 = 1 << 2;

/// CRIU's VMA status bits (`criu/include/image.h`).
pub mod status {
    pub const REGULAR: u32 = 1 << 0;
    pub const STACK: u32 = 1 << 1;
    pub const VSYSCALL: u32 = 1 << 2;
    pub const VDSO: u32 = 1 << 3;
    pub const HEAP: u32 = 1 << 5;
    pub const FILE_PRIVATE: u32 = 1 << 6;
    pub const FILE_SHARED: u32 = 1 << 7;
    pub const ANON_SHARED: u32 = 1 << 8;
    pub const ANON_PRIVATE: u32 = 1 << 9;
    pub const SYSVIPC: u32 = 1 << 10;
    pub const SOCKET: u32 = 1 << 11;
    pub const VVAR: u32 = 1 << 12;
    pub const AIORING: u32 = 1 << 13;
    pub const MEMFD: u32 = 1 << 14;
    pub const SHSTK: u32 = 1 << 15;
    pub const GUARD: u32 = 1 << 16;
    pub const UPROBES: u32 = 1 << 17;
}

/// What a mapping is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MappingKind {
    Heap,
    Stack,
    Vdso,
    Vvar,
    Vsyscall,
    /// A file mapped privately or shared; [`Mapping::file_id`] names it in `files.img`.
    File,
    /// Anonymous memory of this process alone.
    Anonymous,
    /// Anonymous memory shared with other processes (its pages are in `pages-shmem`).
    SharedAnonymous,
    SysvIpc,
    Memfd,
    Other,
}

/// One memory mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// `rwxp`/`rwxs`, as /proc/PID/maps writes it.
    pub perms: String,
    pub kind: MappingKind,
    /// The file-backed mapping's file, by its id in `files.img`.
    pub file_id: Option<u32>,
    /// Offset in the file, in bytes.
    pub offset: u64,
}

/// Where the pages of a run are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PagesAt {
    /// In the pages file, from this byte.
    Here(u64),
    /// In the parent checkpoint (a pre-dump or an incremental checkpoint).
    Parent,
    /// Not dumped: served on demand at a lazy restore.
    Lazy,
}

/// A run of dumped pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PageRun {
    pub vaddr: u64,
    pub pages: u64,
    pub at: PagesAt,
}

impl PageRun {
    pub fn end(&self) -> u64 {
        self.vaddr + self.pages * PAGE_SIZE
    }
}

/// A process's memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub pid: u32,
    /// The file holding the present pages (`pages-ID.img`).
    pub pages_file: String,
    pub mappings: Vec<Mapping>,
    pub runs: Vec<PageRun>,
    /// `[start, end)` of the arguments and of the environment, NUL-separated strings.
    pub args: (u64, u64),
    pub env: (u64, u64),
    /// The mapped executable, by its id in `files.img`.
    pub exe_file_id: u32,
    /// The auxiliary vector the kernel gave the program (pairs of type and value).
    pub auxv: Vec<u64>,
}

fn invalid(image: &str, why: impl std::fmt::Display) -> ImageError {
    ImageError::Decode(format!("{image}: {why}"))
}

fn perms(prot: u32, flags: u32) -> String {
    const PROT_READ: u32 = 1;
    const PROT_WRITE: u32 = 2;
    const PROT_EXEC: u32 = 4;
    const MAP_SHARED: u32 = 1;
    let bit = |b: u32, c: char| if prot & b != 0 { c } else { '-' };
    let mut s = String::with_capacity(4);
    s.push(bit(PROT_READ, 'r'));
    s.push(bit(PROT_WRITE, 'w'));
    s.push(bit(PROT_EXEC, 'x'));
    s.push(if flags & MAP_SHARED != 0 { 's' } else { 'p' });
    s
}

fn kind(vma_status: u32) -> MappingKind {
    use status::*;
    match vma_status {
        s if s & HEAP != 0 => MappingKind::Heap,
        s if s & STACK != 0 => MappingKind::Stack,
        s if s & VDSO != 0 => MappingKind::Vdso,
        s if s & VVAR != 0 => MappingKind::Vvar,
        s if s & VSYSCALL != 0 => MappingKind::Vsyscall,
        s if s & SYSVIPC != 0 => MappingKind::SysvIpc,
        s if s & MEMFD != 0 => MappingKind::Memfd,
        s if s & (FILE_PRIVATE | FILE_SHARED) != 0 => MappingKind::File,
        s if s & ANON_SHARED != 0 => MappingKind::SharedAnonymous,
        s if s & ANON_PRIVATE != 0 => MappingKind::Anonymous,
        _ => MappingKind::Other,
    }
}

impl Memory {
    /// The memory of process `pid`; `None` where CRIU dumped none (a zombie, or a
    /// checkpoint without memory images).
    pub fn read(source: &dyn Source, pid: u32) -> Result<Option<Memory>, ImageError> {
        let mm_name = format!("mm-{pid}.img");
        let pagemap_name = format!("pagemap-{pid}.img");
        let (Some(mm), Some(pagemap)) = (source.read(&mm_name)?, source.read(&pagemap_name)?)
        else {
            return Ok(None);
        };
        let mm: proto::MmEntry = one(&mm, MM_MAGIC, &mm_name)?;
        if mm.vmas.len() > MAX_MAPPINGS {
            return Err(invalid(
                &mm_name,
                format!("more than {MAX_MAPPINGS} mappings"),
            ));
        }
        let mut mappings = Vec::with_capacity(mm.vmas.len());
        for vma in &mm.vmas {
            if vma.start >= vma.end
                || !vma.start.is_multiple_of(PAGE_SIZE)
                || !vma.end.is_multiple_of(PAGE_SIZE)
            {
                return Err(invalid(
                    &mm_name,
                    format!(
                        "mapping {:#x}-{:#x} is not a page range",
                        vma.start, vma.end
                    ),
                ));
            }
            if mappings.last().is_some_and(|m: &Mapping| m.end > vma.start) {
                return Err(invalid(&mm_name, "mappings overlap or are out of order"));
            }
            let kind = kind(vma.status);
            mappings.push(Mapping {
                start: vma.start,
                end: vma.end,
                perms: perms(vma.prot, vma.flags),
                kind,
                file_id: (kind == MappingKind::File || kind == MappingKind::Memfd)
                    .then(|| u32::try_from(vma.shmid).ok())
                    .flatten(),
                offset: vma.pgoff,
            });
        }
        // CRIU marks the heap but not the main thread's stack: it is the anonymous mapping
        // holding the stack's start.
        if let Some(m) = mappings
            .iter_mut()
            .find(|m| m.start <= mm.mm_start_stack && mm.mm_start_stack < m.end)
            .filter(|m| m.kind == MappingKind::Anonymous)
        {
            m.kind = MappingKind::Stack;
        }
        let records = records_up_to(&pagemap, PAGEMAP_MAGIC, &pagemap_name, MAX_PAGE_RUNS + 1)?;
        let (head, entries) = records
            .split_first()
            .ok_or(ImageError::Truncated("pagemap head"))?;
        let head: proto::PagemapHead = super::images::decode(head, &pagemap_name)?;
        let pages_file = format!("pages-{}.img", head.pages_id);
        let pages_size = source.size(&pages_file)?.unwrap_or(0);
        let mut runs = Vec::with_capacity(entries.len());
        let mut offset = 0u64;
        for entry in entries {
            let e: proto::PagemapEntry = super::images::decode(entry, &pagemap_name)?;
            let pages = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
            let flags = if e.in_parent == Some(true) {
                e.flags.unwrap_or(0) | PE_PARENT
            } else {
                e.flags.unwrap_or(PE_PRESENT)
            };
            let end = pages
                .checked_mul(PAGE_SIZE)
                .and_then(|len| e.vaddr.checked_add(len))
                .filter(|_| pages > 0 && e.vaddr.is_multiple_of(PAGE_SIZE))
                .ok_or_else(|| {
                    invalid(
                        &pagemap_name,
                        format!("run of {pages} pages at {:#x} is not a page range", e.vaddr),
                    )
                })?;
            if runs.last().is_some_and(|r: &PageRun| r.end() > e.vaddr) {
                return Err(invalid(
                    &pagemap_name,
                    "page runs overlap or are out of order",
                ));
            }
            let at = if flags & PE_PRESENT != 0 {
                let here = offset;
                offset = offset
                    .checked_add(end - e.vaddr)
                    .filter(|o| *o <= pages_size)
                    .ok_or_else(|| {
                        invalid(
                            &pagemap_name,
                            format!(
                                "its pages run past the end of {pages_file} ({pages_size} bytes)"
                            ),
                        )
                    })?;
                PagesAt::Here(here)
            } else if flags & PE_PARENT != 0 {
                PagesAt::Parent
            } else if flags & PE_LAZY != 0 {
                PagesAt::Lazy
            } else {
                return Err(invalid(
                    &pagemap_name,
                    format!(
                        "run at {:#x} has flags {flags:#x}: neither present, in the parent nor lazy",
                        e.vaddr
                    ),
                ));
            };
            runs.push(PageRun {
                vaddr: e.vaddr,
                pages,
                at,
            });
        }
        Ok(Some(Memory {
            pid,
            pages_file,
            mappings,
            runs,
            args: (mm.mm_arg_start, mm.mm_arg_end),
            env: (mm.mm_env_start, mm.mm_env_end),
            exe_file_id: mm.exe_file_id,
            auxv: mm.mm_saved_auxv.into_iter().take(MAX_AUXV).collect(),
        }))
    }

    /// Bytes of pages present in this checkpoint.
    pub fn present_bytes(&self) -> u64 {
        self.runs
            .iter()
            .filter(|r| matches!(r.at, PagesAt::Here(_)))
            .map(|r| r.pages * PAGE_SIZE)
            .sum()
    }

    /// The run holding the page of `addr`, and where `addr` is in the pages file, if that
    /// page is in this checkpoint.
    pub fn locate(&self, addr: u64) -> Option<(&PageRun, u64)> {
        let i = self.runs.partition_point(|r| r.end() <= addr);
        let run = self.runs.get(i).filter(|r| r.vaddr <= addr)?;
        match run.at {
            PagesAt::Here(offset) => Some((run, offset + (addr - run.vaddr))),
            _ => None,
        }
    }

    /// The mapping holding `addr`.
    pub fn mapping_at(&self, addr: u64) -> Option<&Mapping> {
        let i = self.mappings.partition_point(|m| m.end <= addr);
        self.mappings.get(i).filter(|m| m.start <= addr)
    }

    /// The bytes of `[start, end)`, if every page of it is present in this checkpoint.
    pub fn read_range(
        &self,
        source: &dyn Source,
        start: u64,
        end: u64,
    ) -> Result<Option<Vec<u8>>, ImageError> {
        if end < start || end - start > MAX_STRINGS_BYTES {
            return Ok(None);
        }
        let mut out = vec![0u8; (end - start) as usize];
        let mut at = start;
        while at < end {
            let Some((run, offset)) = self.locate(at) else {
                return Ok(None);
            };
            let upto = end.min(run.end());
            let from = (at - start) as usize;
            source.read_at(
                &self.pages_file,
                offset,
                &mut out[from..from + (upto - at) as usize],
            )?;
            at = upto;
        }
        Ok(Some(out))
    }

    /// The NUL-separated strings of `[start, end)` (the arguments or the environment);
    /// `None` if their pages are not in this checkpoint.
    pub fn strings(
        &self,
        source: &dyn Source,
        (start, end): (u64, u64),
    ) -> Result<Option<Vec<String>>, ImageError> {
        Ok(self.read_range(source, start, end)?.map(|bytes| {
            let bytes = bytes.strip_suffix(&[0]).unwrap_or(&bytes);
            if bytes.is_empty() {
                return Vec::new();
            }
            bytes
                .split(|b| *b == 0)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        }))
    }
}

#[cfg(test)]
#[path = "memory/tests.rs"]
pub(crate) mod tests;
