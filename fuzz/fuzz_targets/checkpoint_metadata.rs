//! A checkpoint archive's metadata (`checkpoint/src/archive.rs`): `config.dump` and
//! `spec.dump` as the snapshotter and the shim parse them, on raw bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::archive;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = archive::parse_config(data) {
        let refs = config.base_image_refs();
        assert!(refs.iter().all(|r| !r.is_empty() && r.trim() == r));
    }
    if let Ok(spec) = archive::parse_spec(data) {
        assert!(spec["process"].is_object() && spec["linux"].is_object());
    }
});
