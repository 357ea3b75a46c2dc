//! `make_whiteouts` (`checkpoint/src/extract.rs`), which turns a checkpoint's
//! `deleted.files` into overlayfs whiteouts in the rebuilt root's upper directory, on paths
//! built from the input (`..`, absolute, through symlinks to the canary, beneath files) in
//! a target full of symlinks out of it: nothing outside may change, and every whiteout it
//! reports is a 0:0 character device where it says. Needs CAP_MKNOD (root), as the
//! snapshotter does; without it every call fails, and the target checks only that nothing
//! escaped.
#![no_main]

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::extract::make_whiteouts;
use revive_fuzz::archive::Name;
use revive_fuzz::sandbox::{Allowed, Sandbox};

fuzz_target!(|names: Vec<Name>| {
    let paths = Name::paths(&names);
    let sandbox = Sandbox::new();
    sandbox.populate();
    if let Ok(made) = make_whiteouts(sandbox.target(), &paths) {
        // make_whiteouts walks with openat and has no length limit of its own (the
        // snapshotter bounds deleted.files first); these checks go by path, so only where
        // the kernel takes the whole path.
        let reported = made
            .whiteouts
            .iter()
            .map(|p| (p, true))
            .chain(made.implicit_dirs.iter().map(|p| (p, false)));
        for (rel, whiteout) in reported {
            let what = if whiteout { "whiteout" } else { "directory" };
            let path = sandbox.target().join(rel);
            if path.as_os_str().len() >= 4000 {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("reported {what} {rel:?}: {e}"));
            let right = if whiteout {
                meta.file_type().is_char_device() && meta.rdev() == 0
            } else {
                meta.is_dir()
            };
            assert!(right, "{rel:?} is not a {what}");
        }
    }
    sandbox.check(Allowed {
        whiteouts: true,
        ..Allowed::default()
    });
});
