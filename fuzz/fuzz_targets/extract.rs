//! `extract` on raw bytes (tar or gzip, as a checkpoint holds them), into a sandbox whose
//! surroundings must not change. The seeds (scripts/fuzz-seeds.sh) are archives GNU tar
//! wrote; `extract_archive` builds hostile ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::extract::{Limits, Options, extract};
use revive_fuzz::sandbox::{Allowed, Sandbox};

fuzz_target!(|data: &[u8]| {
    let sandbox = Sandbox::new();
    let options = Options {
        limits: Limits {
            max_file_bytes: 1 << 20,
            max_total_bytes: 4 << 20,
            ..Limits::default()
        },
        ..Options::default()
    };
    let _ = extract(data, sandbox.target(), &options);
    sandbox.check(Allowed::default());
});
