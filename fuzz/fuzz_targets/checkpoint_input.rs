//! The revive CLI's reader of checkpoints to analyse (`cli/src/opened.rs`), through
//! `revive inspect` and `revive memgrep` (`cli/src/forensics.rs`): the input is the file,
//! a checkpoint archive (plain, gzip or zstd) or an OCI image archive. Nothing may panic,
//! and a search writes only whole lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::criu::search::Pattern;
use revive_cli::forensics;

fuzz_target!(|data: &[u8]| {
    let file = revive_fuzz::sandbox::base().join("checkpoint.tar");
    std::fs::write(&file, data).expect("writing the input");
    if let Ok(report) = forensics::inspect(&file) {
        let _ = forensics::render(&report);
    }
    let pattern = Pattern::regex("[a-z]{3}").expect("a pattern");
    let grep = forensics::Grep {
        pattern: &pattern,
        pid: None,
        context: 4,
        max: 16,
    };
    let mut out = Vec::new();
    let _ = forensics::memgrep(&file, &grep, true, &mut out);
    assert!(out.is_empty() || out.ends_with(b"\n"));
});
