//! `parse_stats` on raw bytes (a checkpoint's `stats-dump`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = revive_checkpoint::criu::parse_stats(data);
});
