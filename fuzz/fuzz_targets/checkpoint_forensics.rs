//! What `revive inspect`, `revive memgrep` and `revive core` read of CRIU's images
//! (`checkpoint/src/forensic.rs`, `checkpoint/src/criu/{memory,files,search}.rs`), on a tar
//! of image files (seeds: the checkpoint crate's fixtures, the holder's memory and open
//! files among them). Nothing may panic; every match a search reports is what was looked
//! for and lies in a run of pages the checkpoint holds; a range read is as long as asked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::criu::memory::{Memory, PagesAt};
use revive_checkpoint::criu::search::{self, Pattern};
use revive_checkpoint::forensic::{self, Beside};

fuzz_target!(|data: &[u8]| {
    let files = revive_fuzz::image_files(data);
    let beside = Beside {
        config_dump: files.get("config.dump").cloned(),
        spec_dump: files.get("spec.dump").cloned(),
        stats_dump: files.get("stats-dump").cloned(),
        root_fs_diff: None,
    };
    if let Ok(inspection) = forensic::inspect(&files, &beside) {
        for process in inspection.processes.iter().take(4) {
            let mut core = Vec::new();
            if let Ok(written) = forensic::elfcore::write(&files, process, &mut core) {
                assert_eq!(written.bytes, core.len() as u64);
            }
        }
    }
    let literal = Pattern::literal(b"\0\0\x01").expect("a pattern");
    let regex = Pattern::regex("[a-z]{4}=").expect("a pattern");
    for pid in 1..16 {
        let Ok(Some(memory)) = Memory::read(&files, pid) else {
            continue;
        };
        let present = |address: u64, len: u64| {
            memory.runs.iter().any(|r| {
                matches!(r.at, PagesAt::Here(_)) && r.vaddr <= address && address + len <= r.end()
            })
        };
        for pattern in [&literal, &regex] {
            let mut seen = 0;
            let _ = search::search(&files, &memory, pattern, 8, &mut |hit| {
                assert!(present(hit.address, hit.len as u64), "{hit:?}");
                if matches!(pattern, Pattern::Literal(_)) {
                    assert_eq!(hit.matched, b"\0\0\x01");
                }
                seen += 1;
                seen < 64
            });
        }
        for (start, end) in [memory.args, memory.env] {
            if let Ok(Some(bytes)) = memory.read_range(&files, start, end) {
                assert_eq!(bytes.len() as u64, end - start);
            }
        }
    }
});
