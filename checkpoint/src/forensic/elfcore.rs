//! An ELF core file of one process of a checkpoint (`revive core`), as the kernel would
//! have written it at the checkpoint: gdb opens it beside the program's binary and shows
//! every thread's registers and backtrace and reads the process's variables.
//!
//! What it holds: a `PT_NOTE` segment with `NT_PRPSINFO` (command, ids), one `NT_PRSTATUS`
//! (general registers) and `NT_PRFPREG` (x87/SSE state) per thread,
//! the leader first, `NT_AUXV` and `NT_FILE` (which file each file-backed mapping maps);
//! then a `PT_LOAD` segment per run of pages the checkpoint holds, cut at mapping
//! boundaries. Pages CRIU did not dump (a file's untouched pages, memory never written)
//! are not in it, as in a kernel core: gdb reads those from the binary. x86_64 only.
//!
//! The layout is computed before anything is written, and page data is copied a chunk at
//! a time, so a core of any size is written in bounded memory.

use std::io::Write;

use super::ProcessView;
use crate::criu::files::FileTable;
use crate::criu::images::{self, Source};
use crate::criu::memory::{Memory, PAGE_SIZE, PagesAt};
use crate::criu::{ImageError, proto};

const EM_X86_64: u16 = 62;
const ET_CORE: u16 = 4;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const NT_PRSTATUS: u32 = 1;
const NT_PRFPREG: u32 = 2;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_FILE: u32 = 0x4649_4c45;
const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
/// Bytes copied from a pages file at a time.
const COPY_CHUNK: u64 = 1 << 20;

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub threads: usize,
    pub segments: usize,
    pub bytes: u64,
}

/// Why no core can be written.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the checkpoint has no process {0} with memory (a zombie, or not in its tree)")]
    NoProcess(u32),
    #[error("thread {tid} was dumped for {arch}; revive core writes x86_64 cores only")]
    Architecture { tid: u32, arch: String },
    #[error("thread {0} has no registers in its core image: the checkpoint is damaged")]
    NoRegisters(u32),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("writing the core: {0}")]
    Write(#[from] std::io::Error),
}

/// One `PT_LOAD` segment: where its pages are in the pages file.
struct Segment {
    vaddr: u64,
    len: u64,
    flags: u32,
    from: u64,
}

fn note(out: &mut Vec<u8>, kind: u32, desc: &[u8]) {
    let name = b"CORE\0";
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn u16s(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn u32s(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn u64s(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// `struct elf_prstatus` of x86_64 (336 bytes) for one thread.
fn prstatus(p: &ProcessView, tid: u32, r: &proto::UserX86RegsEntry) -> Vec<u8> {
    let mut d = Vec::with_capacity(336);
    d.extend_from_slice(&[0u8; 12]); // pr_info: signo, code, errno
    d.extend_from_slice(&[0u8; 4]); // pr_cursig and padding
    d.extend_from_slice(&[0u8; 16]); // pr_sigpend, pr_sighold
    for id in [tid, p.ppid, p.pgid, p.sid] {
        u32s(&mut d, id);
    }
    d.extend_from_slice(&[0u8; 64]); // user, system and children's times
    for v in [
        r.r15, r.r14, r.r13, r.r12, r.bp, r.bx, r.r11, r.r10, r.r9, r.r8, r.ax, r.cx, r.dx, r.si,
        r.di, r.orig_ax, r.ip, r.cs, r.flags, r.sp, r.ss, r.fs_base, r.gs_base, r.ds, r.es, r.fs,
        r.gs,
    ] {
        u64s(&mut d, v);
    }
    u32s(&mut d, 1); // pr_fpvalid
    d.extend_from_slice(&[0u8; 4]);
    d
}

/// The 512-byte FXSAVE area of one thread.
fn fxsave(f: &proto::UserX86FpregsEntry) -> Vec<u8> {
    let mut d = Vec::with_capacity(512);
    for v in [f.cwd, f.swd, f.twd, f.fop] {
        u16s(&mut d, v as u16);
    }
    u64s(&mut d, f.rip);
    u64s(&mut d, f.rdp);
    u32s(&mut d, f.mxcsr);
    u32s(&mut d, f.mxcsr_mask);
    for (words, n) in [(&f.st_space, 32), (&f.xmm_space, 64), (&f.padding, 24)] {
        for i in 0..n {
            u32s(&mut d, words.get(i).copied().unwrap_or(0));
        }
    }
    d
}

/// `struct elf_prpsinfo` of x86_64 (136 bytes).
fn prpsinfo(p: &ProcessView, uid: u32, gid: u32) -> Vec<u8> {
    let mut d = Vec::with_capacity(136);
    d.extend_from_slice(&[b'S', b'S', 0, 0, 0, 0, 0, 0]); // state, sname, zomb, nice, pad
    u64s(&mut d, 0); // pr_flag
    u32s(&mut d, uid);
    u32s(&mut d, gid);
    for id in [p.pid, p.ppid, p.pgid, p.sid] {
        u32s(&mut d, id);
    }
    let mut fname = [0u8; 16];
    let comm = p.comm.as_bytes();
    fname[..comm.len().min(15)].copy_from_slice(&comm[..comm.len().min(15)]);
    d.extend_from_slice(&fname);
    let mut args = [0u8; 80];
    let joined = p.cmdline.as_deref().unwrap_or_default().join(" ");
    let joined = joined.as_bytes();
    args[..joined.len().min(79)].copy_from_slice(&joined[..joined.len().min(79)]);
    d.extend_from_slice(&args);
    d
}

/// `NT_FILE`: the file-backed mappings and their files' paths.
fn file_note(memory: &Memory, table: &FileTable) -> Vec<u8> {
    let files: Vec<(u64, u64, u64, &str)> = memory
        .mappings
        .iter()
        .filter_map(|m| {
            let path = m.file_id.and_then(|id| table.path(id))?;
            Some((m.start, m.end, m.offset / PAGE_SIZE, path))
        })
        .collect();
    let mut d = Vec::new();
    u64s(&mut d, files.len() as u64);
    u64s(&mut d, PAGE_SIZE);
    for (start, end, offset, _) in &files {
        for v in [*start, *end, *offset] {
            u64s(&mut d, v);
        }
    }
    for (_, _, _, path) in &files {
        d.extend_from_slice(path.as_bytes());
        d.push(0);
    }
    d
}

/// The `PT_LOAD` segments: every present run, cut at mapping boundaries, with the
/// mapping's permissions.
fn segments(memory: &Memory) -> Vec<Segment> {
    let mut out = Vec::new();
    for run in &memory.runs {
        let PagesAt::Here(offset) = run.at else {
            continue;
        };
        let mut at = run.vaddr;
        while at < run.end() {
            let mapping = memory.mapping_at(at);
            let end = mapping.map_or(run.end(), |m| m.end.min(run.end()));
            let flags = mapping.map_or(4, |m| {
                let p = m.perms.as_bytes();
                u32::from(p[0] == b'r') * 4 + u32::from(p[1] == b'w') * 2 + u32::from(p[2] == b'x')
            });
            out.push(Segment {
                vaddr: at,
                len: end - at,
                flags,
                from: offset + (at - run.vaddr),
            });
            at = end;
        }
    }
    out
}

/// Writes the core of process `pid` (as `inspect` showed it: `view`) to `out`.
pub fn write(
    source: &dyn Source,
    view: &ProcessView,
    out: &mut dyn Write,
) -> Result<Written, CoreError> {
    let memory = Memory::read(source, view.pid)?.ok_or(CoreError::NoProcess(view.pid))?;
    let table = FileTable::read(source)?;
    let mut notes = Vec::new();
    let (uid, gid) = view
        .threads
        .first()
        .map_or((0, 0), |t| (t.creds.uid, t.creds.gid));
    note(&mut notes, NT_PRPSINFO, &prpsinfo(view, uid, gid));
    let mut tids: Vec<u32> = view.threads.iter().map(|t| t.tid).collect();
    if tids.is_empty() {
        tids.push(view.pid);
    }
    for &tid in &tids {
        let (_, core) = images::read_core(source, tid)?;
        let Some(info) = core.thread_info.as_ref() else {
            return Err(if core.mtype == 1 || core.mtype == 0 {
                CoreError::NoRegisters(tid)
            } else {
                CoreError::Architecture {
                    tid,
                    arch: proto::core_entry::March::try_from(core.mtype)
                        .map(|m| m.as_str_name().to_string())
                        .unwrap_or_else(|_| format!("machine {}", core.mtype)),
                }
            });
        };
        if info.gpregs.mode == Some(proto::UserX86RegsMode::Compat as i32) {
            return Err(CoreError::Architecture {
                tid,
                arch: "i386 (a 32-bit task)".into(),
            });
        }
        note(&mut notes, NT_PRSTATUS, &prstatus(view, tid, &info.gpregs));
        note(&mut notes, NT_PRFPREG, &fxsave(&info.fpregs));
    }
    let auxv: Vec<u8> = memory.auxv.iter().flat_map(|v| v.to_le_bytes()).collect();
    note(&mut notes, NT_AUXV, &auxv);
    note(&mut notes, NT_FILE, &file_note(&memory, &table));

    let segments = segments(&memory);
    let phnum = 1 + segments.len() as u64;
    let notes_at = EHDR_SIZE + phnum * PHDR_SIZE;
    let mut data_at = (notes_at + notes.len() as u64).next_multiple_of(PAGE_SIZE);
    let mut head = Vec::with_capacity(notes_at as usize);
    head.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    u16s(&mut head, ET_CORE);
    u16s(&mut head, EM_X86_64);
    u32s(&mut head, 1);
    u64s(&mut head, 0); // e_entry
    u64s(&mut head, EHDR_SIZE); // e_phoff
    u64s(&mut head, 0); // e_shoff
    u32s(&mut head, 0); // e_flags
    u16s(&mut head, EHDR_SIZE as u16);
    u16s(&mut head, PHDR_SIZE as u16);
    u16s(&mut head, u16::try_from(phnum).unwrap_or(u16::MAX));
    u16s(&mut head, 64); // e_shentsize
    u16s(&mut head, 0); // e_shnum
    u16s(&mut head, 0); // e_shstrndx
    let phdr = |head: &mut Vec<u8>,
                kind: u32,
                flags: u32,
                offset: u64,
                vaddr: u64,
                len: u64,
                align: u64| {
        u32s(head, kind);
        u32s(head, flags);
        u64s(head, offset);
        u64s(head, vaddr);
        u64s(head, 0); // p_paddr
        u64s(head, len); // p_filesz
        u64s(head, len); // p_memsz
        u64s(head, align);
    };
    phdr(&mut head, PT_NOTE, 0, notes_at, 0, notes.len() as u64, 4);
    for s in &segments {
        phdr(
            &mut head, PT_LOAD, s.flags, data_at, s.vaddr, s.len, PAGE_SIZE,
        );
        data_at += s.len;
    }
    out.write_all(&head)?;
    out.write_all(&notes)?;
    let mut written = notes_at + notes.len() as u64;
    let pad = (notes_at + notes.len() as u64).next_multiple_of(PAGE_SIZE) - written;
    out.write_all(&vec![0u8; pad as usize])?;
    written += pad;
    let mut buf = Vec::new();
    for s in &segments {
        let mut done = 0;
        while done < s.len {
            let n = (s.len - done).min(COPY_CHUNK);
            buf.resize(n as usize, 0);
            source.read_at(&memory.pages_file, s.from + done, &mut buf)?;
            out.write_all(&buf)?;
            done += n;
        }
        written += s.len;
    }
    Ok(Written {
        threads: tids.len(),
        segments: segments.len(),
        bytes: written,
    })
}
