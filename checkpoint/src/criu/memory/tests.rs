use std::collections::BTreeMap;

use prost::Message;

use super::*;
use crate::criu::images::write;
use crate::criu::search::{self, CHUNK, Pattern};

const P: u64 = PAGE_SIZE;

pub(crate) fn vma(start: u64, end: u64, status: u32) -> proto::VmaEntry {
    proto::VmaEntry {
        start,
        end,
        pgoff: 0,
        shmid: 0,
        prot: 3,
        flags: 2,
        status,
        fd: -1,
        ..Default::default()
    }
}

pub(crate) fn entry(vaddr: u64, pages: u64, flags: Option<u32>) -> proto::PagemapEntry {
    proto::PagemapEntry {
        vaddr,
        compat_nr_pages: 0,
        nr_pages: Some(pages),
        flags,
        ..Default::default()
    }
}

pub(crate) fn pagemap(pages_id: u32, entries: &[proto::PagemapEntry]) -> Vec<u8> {
    let mut out = write(PAGEMAP_MAGIC, &[proto::PagemapHead { pages_id }]);
    for e in entries {
        let bytes = e.encode_to_vec();
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Process 7: a heap at 0x10000 (3 pages, the middle one in a parent checkpoint), a stack
/// at 0x7f0000 (2 pages) holding the arguments and environment, and a lazy page.
pub(crate) fn images() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mm = proto::MmEntry {
        mm_start_stack: 0x7f1000,
        mm_arg_start: 0x7f1ff8,
        mm_arg_end: 0x7f200d,
        mm_env_start: 0x7f200d,
        mm_env_end: 0x7f2016,
        exe_file_id: 4,
        vmas: vec![
            vma(
                0x10000,
                0x13000,
                status::REGULAR | status::HEAP | status::ANON_PRIVATE,
            ),
            vma(0x20000, 0x21000, status::REGULAR | status::ANON_PRIVATE),
            vma(0x7f0000, 0x7f3000, status::REGULAR | status::ANON_PRIVATE),
        ],
        ..Default::default()
    };
    files.insert("mm-7.img".into(), write(MM_MAGIC, &[mm]));
    files.insert(
        "pagemap-7.img".into(),
        pagemap(
            3,
            &[
                entry(0x10000, 1, Some(PE_PRESENT)),
                entry(0x11000, 1, Some(PE_PARENT)),
                entry(0x12000, 1, Some(PE_PRESENT)),
                entry(0x20000, 1, Some(PE_LAZY)),
                entry(0x7f1000, 2, Some(PE_PRESENT)),
            ],
        ),
    );
    let mut pages = vec![0u8; 4 * P as usize];
    pages[..4].copy_from_slice(b"HEAP");
    pages[P as usize..P as usize + 6].copy_from_slice(b"SECOND");
    // The arguments (one of them empty) cross the stack's two pages; then the environment.
    let args_at = 2 * P as usize + 0xff8;
    let strings = b"sh\0\0-c\0echo hi there\0A=1\0B=22\0";
    pages[args_at..args_at + strings.len()].copy_from_slice(strings);
    files.insert("pages-3.img".into(), pages);
    files
}

#[test]
fn mappings_runs_and_where_their_pages_are() {
    let m = Memory::read(&images(), 7).unwrap().unwrap();
    assert_eq!(m.pages_file, "pages-3.img");
    let kinds: Vec<MappingKind> = m.mappings.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            MappingKind::Heap,
            MappingKind::Anonymous,
            MappingKind::Stack
        ]
    );
    assert_eq!(m.mappings[0].perms, "rw-p");
    let at: Vec<PagesAt> = m.runs.iter().map(|r| r.at).collect();
    assert_eq!(
        at,
        [
            PagesAt::Here(0),
            PagesAt::Parent,
            PagesAt::Here(P),
            PagesAt::Lazy,
            PagesAt::Here(2 * P)
        ]
    );
    assert_eq!(m.present_bytes(), 4 * P);
    assert_eq!(m.exe_file_id, 4);
    assert_eq!(m.mapping_at(0x12fff).unwrap().start, 0x10000);
    assert!(m.mapping_at(0x13000).is_none());
    assert!(Memory::read(&images(), 8).unwrap().is_none());
}

#[test]
fn arguments_and_environment_are_read_across_pages() {
    let source = images();
    let m = Memory::read(&source, 7).unwrap().unwrap();
    assert_eq!(
        m.strings(&source, m.args).unwrap().unwrap(),
        ["sh", "", "-c", "echo hi there"]
    );
    assert_eq!(m.strings(&source, m.env).unwrap().unwrap(), ["A=1", "B=22"]);
    // Pages in a parent checkpoint, lazy or never dumped are not read as anything.
    assert_eq!(m.read_range(&source, 0x10ff0, 0x11010).unwrap(), None);
    assert_eq!(m.read_range(&source, 0x20000, 0x20001).unwrap(), None);
    assert_eq!(m.read_range(&source, 0x30000, 0x30001).unwrap(), None);
    assert_eq!(
        m.read_range(&source, 0x10000, 0x10004).unwrap().unwrap(),
        b"HEAP"
    );
}

#[test]
fn legacy_pagemaps_count_and_flag_as_criu_reads_them() {
    let mut files = images();
    let legacy = |vaddr, pages, in_parent| proto::PagemapEntry {
        vaddr,
        compat_nr_pages: pages,
        in_parent,
        ..Default::default()
    };
    files.insert(
        "pagemap-7.img".into(),
        pagemap(
            3,
            &[legacy(0x10000, 1, None), legacy(0x11000, 1, Some(true))],
        ),
    );
    let m = Memory::read(&files, 7).unwrap().unwrap();
    assert_eq!(m.runs[0].at, PagesAt::Here(0));
    assert_eq!(m.runs[1].at, PagesAt::Parent);
}

#[test]
fn hostile_memory_images_are_errors() {
    let cases: Vec<(&str, Vec<proto::PagemapEntry>)> = vec![
        (
            "overlap",
            vec![entry(0x10000, 2, None), entry(0x11000, 1, None)],
        ),
        ("unaligned", vec![entry(0x10001, 1, None)]),
        ("empty run", vec![entry(0x10000, 0, None)]),
        ("past the pages file", vec![entry(0x10000, 5, None)]),
        (
            "overflow",
            vec![entry(u64::MAX - P + 1, u64::MAX / P, None)],
        ),
        ("no flags that say where", vec![entry(0x10000, 1, Some(0))]),
    ];
    for (what, entries) in cases {
        let mut files = images();
        files.insert("pagemap-7.img".into(), pagemap(3, &entries));
        assert!(Memory::read(&files, 7).is_err(), "{what}");
    }
    let mut files = images();
    let mm = proto::MmEntry {
        vmas: vec![vma(0x20000, 0x21000, 0), vma(0x10000, 0x11000, 0)],
        ..Default::default()
    };
    files.insert("mm-7.img".into(), write(MM_MAGIC, &[mm]));
    assert!(Memory::read(&files, 7).is_err(), "mappings out of order");
    let mut files = images();
    files.insert(
        "pagemap-7.img".into(),
        write(PAGEMAP_MAGIC, &[] as &[proto::PagemapHead]),
    );
    assert!(Memory::read(&files, 7).is_err(), "no head");
    // Every prefix of a real image is an error or a value, never a panic.
    let files = images();
    for name in ["mm-7.img", "pagemap-7.img"] {
        let data = &files[name];
        for n in 0..data.len() {
            let mut cut = files.clone();
            cut.insert(name.into(), data[..n].to_vec());
            let _ = Memory::read(&cut, 7);
        }
    }
}

fn grep(source: &BTreeMap<String, Vec<u8>>, pattern: &Pattern, context: usize) -> Vec<search::Hit> {
    let m = Memory::read(source, 7).unwrap().unwrap();
    let mut hits = Vec::new();
    search::search(source, &m, pattern, context, &mut |h| {
        hits.push(h);
        true
    })
    .unwrap();
    hits
}

#[test]
fn search_finds_matches_with_their_mapping_and_context() {
    let source = images();
    let hits = grep(&source, &Pattern::literal(b"SECOND").unwrap(), 2);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].address, 0x12000);
    assert_eq!(hits[0].mapping.as_ref().unwrap().kind, MappingKind::Heap);
    // The run starts at the match: no context before it.
    assert_eq!(hits[0].before, b"");
    assert_eq!(hits[0].after, b"\0\0");
    let hits = grep(&source, &Pattern::regex("B=[0-9]+").unwrap(), 3);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].matched, b"B=22");
    assert_eq!(hits[0].before, b"=1\0");
    assert_eq!(hits[0].mapping.as_ref().unwrap().kind, MappingKind::Stack);
    // Across the stack's page boundary (one run).
    let hits = grep(&source, &Pattern::literal(b"-c\0echo").unwrap(), 0);
    assert_eq!(hits[0].address, 0x7f1ffc);
    assert!(grep(&source, &Pattern::hex("48 45 41 50").unwrap(), 0).len() == 1);
    // Not in this checkpoint's pages: nothing.
    assert!(grep(&source, &Pattern::literal(b"nowhere").unwrap(), 0).is_empty());
}

#[test]
fn a_match_across_a_chunk_boundary_is_found_once() {
    let mut files = images();
    let pages = 2 * CHUNK as u64 / P + 1;
    files.insert(
        "pagemap-7.img".into(),
        pagemap(3, &[entry(0x10000, pages, None)]),
    );
    let mut data = vec![0u8; (pages * P) as usize];
    let needle = b"straddling-the-chunk-end";
    data[CHUNK - 5..CHUNK - 5 + needle.len()].copy_from_slice(needle);
    data[2 * CHUNK + 7..2 * CHUNK + 7 + needle.len()].copy_from_slice(needle);
    files.insert("pages-3.img".into(), data);
    for pattern in [
        Pattern::literal(needle).unwrap(),
        Pattern::regex("straddling-[a-z-]+end").unwrap(),
    ] {
        let hits = grep(&files, &pattern, 4);
        let at: Vec<u64> = hits.iter().map(|h| h.address).collect();
        assert_eq!(
            at,
            [0x10000 + CHUNK as u64 - 5, 0x10000 + 2 * CHUNK as u64 + 7]
        );
        assert_eq!(hits[0].before, b"\0\0\0\0");
    }
}

#[test]
fn patterns_that_cannot_be_searched_say_why() {
    assert!(matches!(
        Pattern::literal(b""),
        Err(search::PatternError::Empty)
    ));
    assert!(matches!(
        Pattern::hex("7g"),
        Err(search::PatternError::Hex(_))
    ));
    assert!(matches!(
        Pattern::regex("("),
        Err(search::PatternError::Regex(_))
    ));
    assert!(matches!(
        Pattern::literal(&vec![1u8; search::MAX_LITERAL + 1]),
        Err(search::PatternError::TooLong(_))
    ));
}
