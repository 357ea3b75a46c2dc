//! containerd filter expressions as clients send them to revive-snapshotter's `List`
//! (`snapshotter/src/filter.rs`): one filter string per line, parsed, then matched against
//! a few snapshots.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_snapshotter::error::SnapshotError;
use revive_snapshotter::filter;
use revive_snapshotter::store::{Info, Kind};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let filters: Vec<&str> = text.split('\n').take(16).collect();
    match filter::Filter::parse_all(&filters) {
        Ok(filter) => {
            let snapshots = [
                Info::unstored(
                    "sha256:abc",
                    None,
                    Kind::Committed,
                    &[("containerd.io/gc.root", "2024"), ("x", "1")],
                ),
                Info::unstored("k/1", Some("sha256:abc"), Kind::Active, &[("a.b", "é\"\n")]),
                Info::unstored("", Some(""), Kind::View, &[("", "")]),
            ];
            for snapshot in &snapshots {
                let _ = filter.matches(snapshot);
            }
        }
        Err(SnapshotError::InvalidArgument(msg)) => assert!(!msg.is_empty()),
        Err(other) => panic!("a bad filter is an invalid argument, not {other:?}"),
    }
});
