//! The shim's reconciliation of a new container's spec with a checkpoint's `spec.dump`
//! (the shim's `reconcile` module), on two JSON documents separated by a NUL byte: it must
//! answer with a spec or an error, never panic, whatever either holds, and mount stand-ins
//! only from their own directory.
#![no_main]

use containerd_shim_revive_v2::reconcile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut halves = data.splitn(2, |b| *b == 0);
    let (Some(new), Some(dumped)) = (halves.next(), halves.next()) else {
        return;
    };
    let (Ok(mut spec), Ok(dumped)) = (
        serde_json::from_slice::<serde_json::Value>(new),
        serde_json::from_slice::<serde_json::Value>(dumped),
    ) else {
        return;
    };
    let stand_ins = std::path::Path::new("/run/bundle/stand-ins");
    if let Ok(done) = reconcile::reconcile(&mut spec, &dumped, stand_ins) {
        // What it made is a spec the shim can write and read back, and every stand-in is
        // mounted from the stand-ins' directory.
        let text = serde_json::to_vec(&spec).expect("a JSON value serializes");
        let back: serde_json::Value = serde_json::from_slice(&text).expect("and parses");
        assert!(back["process"].is_object() || back.get("process").is_none());
        for planned in &done.stand_ins {
            let source = planned.mount["source"].as_str().expect("a source");
            assert!(source.starts_with("/run/bundle/stand-ins/"), "{source}");
        }
    }
});
