//! The lifecycle scenario table on every flavour, for the Go shim
//! `io.containerd.runc.v2`: the reference a drop-in shim must match row by row.
//!
//! Every row of every table is a test of its own, named `lifecycle_<runtime>_<flavour>::<row>`
//! (`cargo test -p revive-integration --test lifecycle -- --list`); the rows of one table
//! share one node, which starts before the first selected row and stops after the last, so
//! `cargo test --test lifecycle lifecycle_revive_lts::oom` starts one node for one row.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use revive_integration::harness::{Shared, Suite};
use revive_integration::lifecycle::{self, ROWS, Table};
use revive_integration::{Flavour, Node};

const RUNC: &str = "io.containerd.runc.v2";
const REVIVE: &str = "io.containerd.revive.v2";

/// The table of `runtime` on a node of `flavour`, with the prefix of its trials'
/// names: `lifecycle_<runtime>_<flavour>`.
fn table(runtime: &'static str, flavour: Flavour) -> (String, Arc<Shared<Table>>) {
    let short = if runtime == RUNC { "runc" } else { "revive" };
    (
        format!("lifecycle_{short}_{flavour}"),
        lifecycle::shared_table(
            runtime,
            move || Node::start(flavour, "lifecycle"),
            |_| Ok(()),
        ),
    )
}

/// Events a shim publishes after containerd restarted still reach containerd: the Go shim
/// reconnects, and so must revive (CRI learns that a container stopped only from its
/// `/tasks/exit`).
fn events_after_restart(runtime: &str) {
    let what = format!("events after a containerd restart ({runtime})");
    let line = revive_integration::on_node(Flavour::Lts, "events", &what, |node, _| {
        revive_integration::scenario::events_after_containerd_restart(
            node,
            runtime,
            "after-restart",
            Duration::from_secs(30),
        )
    });
    eprintln!("{runtime}: {line}");
}

fn main() -> ExitCode {
    let mut suite = Suite::new();
    // Two workers (one per core) take the trials in this order, and the rows of one table run
    // one at a time on its node: the rows of three tables alternate, so that a worker always
    // finds a row whose table is free, and only those tables' nodes are up.
    let groups = [
        vec![
            table(RUNC, Flavour::Stable),
            table(RUNC, Flavour::Lts),
            table(REVIVE, Flavour::Stable),
        ],
        vec![table(REVIVE, Flavour::Lts), table(REVIVE, Flavour::Latest)],
    ];
    // The two tests that start nodes of their own alternate with the rows of the last group.
    let others: [(&str, fn()); 2] = [
        ("events_reach_a_restarted_containerd_runc", || {
            events_after_restart(RUNC)
        }),
        ("events_reach_a_restarted_containerd_revive", || {
            events_after_restart(REVIVE)
        }),
    ];
    let mut others = others.into_iter();
    for (i, group) in groups.iter().enumerate() {
        for row in ROWS {
            for (prefix, table) in group {
                lifecycle::add_row(&mut suite, table, prefix, row);
            }
            if i + 1 == groups.len()
                && let Some((name, test)) = others.next()
            {
                suite.e2e(name, test);
            }
        }
    }
    suite.run()
}
