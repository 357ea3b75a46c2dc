//! `extract` on archives built from the input (see `revive_fuzz::archive`): hostile names,
//! links to the canary beside the target and writes through them, hard links, devices,
//! whiteouts, huge sizes, GNU and PAX metadata, gzip; with any options and small limits,
//! once or twice into the same target. Nothing may change outside the target, and the
//! report must respect the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::extract::extract;
use revive_fuzz::Chunked;
use revive_fuzz::archive::Input;
use revive_fuzz::sandbox::{Allowed, Sandbox};

fuzz_target!(|input: Input| {
    let sandbox = Sandbox::new();
    let options = input.options.options();
    let bytes = input.archive.bytes(&sandbox, options.allow_devices);
    let chunk = match input.chunk {
        0 => usize::MAX,
        n => n.into(),
    };
    let rounds = if input.twice { 2 } else { 1 };
    for _ in 0..rounds {
        if let Ok(report) = extract(Chunked::new(&bytes, chunk), sandbox.target(), &options) {
            let limits = &options.limits;
            assert!(report.entries <= limits.max_entries, "{report:?}");
            assert!(report.bytes <= limits.max_total_bytes, "{report:?}");
        }
    }
    sandbox.check(Allowed {
        devices: options.allow_devices,
        setid: options.keep_setid,
        whiteouts: options.overlay_whiteouts,
    });
});
