//! Crafted checkpoint images, on the lts flavour: one checkpoint of a counter with a
//! child, made with stock tools, edited by hand one change at a time (a capability of the
//! child's thread, of a thread added to the child, the child's uid, a binfmt_misc mount, a read-write /sys, apparmor.img, a
//! raised hard rlimit, oom_score_adj -1000, real-time scheduling). `ctr run` of each on
//! revive is refused naming that change alone and leaves nothing; the unedited copy
//! restores.
//!
//! Every case is tried and printed before the test judges them, so one run shows them all.

use std::time::Instant;

use revive_integration::crafted;
use revive_integration::{Flavour, on_node};

fn crafted_images(flavour: Flavour) {
    let what = format!("crafted checkpoint images ({flavour})");
    let started = Instant::now();
    let report = on_node(
        flavour,
        "crafted",
        &what,
        crafted::crafted_images_are_refused,
    );
    eprintln!(
        "{what} took {:.1?}: checkpointed at {}, unedited copy restored at {}",
        started.elapsed(),
        report.checkpointed,
        report.restored
    );
    let failures: Vec<String> = report
        .cases
        .iter()
        .filter_map(|c| {
            c.failure
                .as_ref()
                .map(|f| format!("{}: {f}", c.edit.name()))
        })
        .collect();
    assert_eq!(report.cases.len(), crafted::Edit::ALL.len());
    assert!(
        failures.is_empty(),
        "{what}: {} of {} crafted images not refused as they must be:\n{}",
        failures.len(),
        report.cases.len(),
        failures.join("\n")
    );
}

revive_integration::e2e_main! {
    crafted_checkpoint_images_are_refused_lts => crafted_images(Flavour::Lts),
}
