//! `parse_deleted_files` on raw bytes (a checkpoint's `deleted.files`), with small limits
//! or the defaults; what it accepts is applied with `apply_deletions` to a target full of
//! symlinks out of it, and nothing outside may change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::extract::{Limits, apply_deletions, parse_deleted_files};
use revive_fuzz::sandbox::{Allowed, Sandbox};

fuzz_target!(|data: &[u8]| {
    let (small, json) = data.split_first().unwrap_or((&0, data));
    let limits = if *small & 1 == 1 {
        Limits {
            max_entries: u64::from(small >> 4),
            max_path_len: usize::from(small >> 1),
            max_depth: usize::from(small >> 5),
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    let Ok(paths) = parse_deleted_files(json, &limits) else {
        return;
    };
    assert!(paths.len() as u64 <= limits.max_entries);
    assert!(paths.iter().all(|p| p.len() <= limits.max_path_len));
    let sandbox = Sandbox::new();
    sandbox.populate();
    let _ = apply_deletions(sandbox.target(), &paths);
    sandbox.check(Allowed::default());
});
