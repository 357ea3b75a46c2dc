//! CRIU log reading (`dump.log`, `restore.log`): error lines, advice, transience. The
//! first byte is how many errors to keep.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::criulog;

fuzz_target!(|data: &[u8]| {
    let (max, log) = data.split_first().unwrap_or((&5, data));
    let log = String::from_utf8_lossy(log);
    let errors = criulog::errors(&log, usize::from(*max));
    assert!(errors.len() <= usize::from(*max));
    let _ = criulog::advice(&errors);
    let _ = criulog::transient(&log);
});
