//! `apply_deletions` on paths built from the input (`..`, absolute, through symlinks to the
//! canary, into a locked directory...) in a target full of symlinks out of it: nothing
//! outside may change, and what it says it removed is gone. The same paths, as JSON, go
//! through `parse_deleted_files`, which must give them back unchanged if it accepts them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::extract::{Limits, apply_deletions, parse_deleted_files};
use revive_fuzz::archive::Name;
use revive_fuzz::sandbox::{Allowed, Sandbox};

fuzz_target!(|names: Vec<Name>| {
    let paths = Name::paths(&names);
    let json = serde_json::to_vec(&paths).expect("JSON of strings");
    if let Ok(parsed) = parse_deleted_files(&json, &Limits::default()) {
        assert_eq!(parsed, paths);
    }
    let sandbox = Sandbox::new();
    sandbox.populate();
    if let Ok(removed) = apply_deletions(sandbox.target(), &paths) {
        for path in removed {
            assert!(
                std::fs::symlink_metadata(sandbox.target().join(&path)).is_err(),
                "{path:?} was reported removed"
            );
        }
    }
    sandbox.check(Allowed::default());
});
