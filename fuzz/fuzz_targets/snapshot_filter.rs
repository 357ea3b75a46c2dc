//! containerd filter expressions as clients send them to revive-snapshotter's `List`
//! (`snapshotter/src/filter.rs`): one filter string per line, parsed, then matched against
//! a few snapshots.
//!
//! The snapshotter's library brings tonic, tokio and redb, which would triple the fuzz
//! build, so its filter module is compiled here on its own, beside stand-ins for the two
//! things it takes from its crate (`store::Info` and `error::SnapshotError`). If filter.rs
//! starts using more of its crate, add the stand-in here.
#![no_main]

#[allow(dead_code)]
#[path = "../../snapshotter/src/filter.rs"]
mod filter;

/// Stand-in for revive-snapshotter's `store`: the fields filters look at.
mod store {
    pub type Labels = std::collections::BTreeMap<String, String>;

    #[derive(Clone, Copy)]
    pub enum Kind {
        View,
        Active,
        Committed,
    }

    impl Kind {
        pub fn as_str(self) -> &'static str {
            match self {
                Kind::View => "view",
                Kind::Active => "active",
                Kind::Committed => "committed",
            }
        }
    }

    pub struct Info {
        pub name: String,
        pub parent: Option<String>,
        pub kind: Kind,
        pub labels: Labels,
    }
}

/// Stand-in for revive-snapshotter's `error`.
mod error {
    #[derive(Debug)]
    pub enum SnapshotError {
        InvalidArgument(String),
    }

    impl std::fmt::Display for SnapshotError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let SnapshotError::InvalidArgument(msg) = self;
            f.write_str(msg)
        }
    }
}

use libfuzzer_sys::fuzz_target;
use store::{Info, Kind, Labels};

fn info(name: &str, parent: Option<&str>, kind: Kind, labels: &[(&str, &str)]) -> Info {
    Info {
        name: name.into(),
        parent: parent.map(Into::into),
        kind,
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Labels>(),
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
        Err(error::SnapshotError::InvalidArgument(msg)) => assert!(!msg.is_empty()),
    }
});
