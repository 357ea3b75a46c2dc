//! containerd filter expressions as clients send them to revive-snapshotter's `List`
//! (`snapshotter/src/filter.rs`): one filter string per line, parsed, then matched against
//! a few snapshots.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_snapshotter::error::SnapshotError;
use revive_snapshotter::filter;
use revive_snapshotter::store::{Info, Kind, Labels, Timestamp};

fn info(name: &str, parent: Option<&str>, kind: Kind, labels: &[(&str, &str)]) -> Info {
    Info {
        name: name.into(),
        parent: parent.map(Into::into),
        kind,
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Labels>(),
        created_at: Timestamp::default(),
        updated_at: Timestamp::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let filters: Vec<&str> = text.split('\n').take(16).collect();
    match filter::Filter::parse_all(&filters) {
        Ok(filter) => {
            let snapshots = [
                info(
                    "sha256:abc",
                    None,
                    Kind::Committed,
                    &[("containerd.io/gc.root", "2024"), ("x", "1")],
                ),
                info("k/1", Some("sha256:abc"), Kind::Active, &[("a.b", "é\"\n")]),
                info("", Some(""), Kind::View, &[("", "")]),
            ];
            for snapshot in &snapshots {
                let _ = filter.matches(snapshot);
            }
        }
        Err(SnapshotError::InvalidArgument(msg)) => assert!(!msg.is_empty()),
        Err(other) => panic!("a bad filter is an invalid argument, not {other:?}"),
    }
});
