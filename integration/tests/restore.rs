//! Checkpoint/restore through revive beyond the smoke scenario, on the lts flavour (the full
//! matrix; the other flavours run the compatibility set), against real containerd, runc and
//! CRIU.

use revive_integration::scenario::{self, Remove};
use revive_integration::{Flavour, on_node};

const REVIVE: &str = "io.containerd.revive.v2";
const RUNC: &str = "io.containerd.runc.v2";

/// A copy restored beside its running original lives in a cgroup of its own: removing
/// either leaves the other running (containerd issue 9691; the Go shim restores into the
/// original's cgroup, see docs/shim.md's comparison).
fn lives_apart(flavour: Flavour, remove: Remove) {
    let survivor = on_node(
        flavour,
        "apart",
        "restore beside the original",
        |node, say| scenario::restored_copy_lives_apart(node, REVIVE, "apart", remove, say),
    );
    eprintln!("survivor: {survivor}");
}

/// After a restore, loopback is up with its addresses and a server listening on 127.0.0.1
/// inside the container answers (the Go shim restores an empty namespace, lo down).
fn loopback_answers(flavour: Flavour) {
    let lo = on_node(
        flavour,
        "loopback",
        "loopback after restore",
        |node, say| scenario::loopback_server_after_restore(node, REVIVE, "lo", say),
    );
    assert!(lo.contains("UP") && lo.contains("127.0.0.1/8"), "{lo}");
}

/// Kernel-held state survives a checkpoint and restore (fd offset, a pipe between two
/// processes, the process tree with its pids), and the restored task pauses, resumes,
/// reports metrics, and is checkpointed and restored again: for revive and, side by side,
/// for the Go shim, which does the same.
fn process_state(flavour: Flavour, runtime: &str) {
    let what = format!("process state across restore ({runtime})");
    let (before, after) = on_node(flavour, "state", &what, |node, say| {
        scenario::process_state_survives(node, runtime, "state", say)
    });
    eprintln!("before: {before}\nafter:  {after}");
}

/// A container with a terminal keeps it across checkpoint and restore (ctr on a pty of the
/// harness): for revive and, side by side, the Go shim.
fn terminal(flavour: Flavour, runtime: &str) {
    let what = format!("terminal across restore ({runtime})");
    let (before, after) = on_node(flavour, "tty", &what, |node, say| {
        scenario::terminal_survives(node, runtime, "tty", say)
    });
    eprintln!("terminal before: {before}, after: {after}");
}

/// An established TCP connection over the container's loopback: a checkpoint without
/// open_tcp is refused with a clear error and the container goes on unchanged; with
/// open_tcp it is checkpointed and restored, and the connection carries data both ways.
fn tcp(flavour: Flavour) {
    let report = on_node(
        flavour,
        "tcp",
        "TCP connection across restore",
        |node, say| scenario::tcp_connection_survives(node, REVIVE, "tcp", say),
    );
    assert!(
        report.refused.contains("TCP") && report.refused.contains("open_tcp"),
        "the refusal does not say what to do: {}",
        report.refused
    );
}

/// A TCP connection from the container to a server outside it (in the node, on the node's
/// network that the container shares) survives a checkpoint with open_tcp and exit and a
/// restore: the server outside keeps its end and the numbers go on.
fn tcp_outside(flavour: Flavour) {
    let (checkpointed, restored) = on_node(
        flavour,
        "tcp-outside",
        "TCP connection to a server outside the container",
        |node, say| scenario::tcp_to_outside_survives(node, REVIVE, "tcp-out", say),
    );
    assert!(restored > checkpointed + 3);
}

/// The CRIU preflight: without CRIU a checkpoint says so and the container goes on; with
/// CRIU back, it checkpoints.
fn no_criu(flavour: Flavour) {
    let refused = on_node(flavour, "nocriu", "checkpoint without CRIU", |node, say| {
        scenario::checkpoint_without_criu(node, REVIVE, "nocriu", say)
    });
    assert!(
        refused.contains("CRIU is not installed"),
        "the error does not name what is missing: {refused}"
    );
}

/// A container paused and checkpointed the moment it started (its init held in the
/// runtime by a startContainer hook until then) is checkpointed running its program: Start
/// returns once the program runs.
fn checkpoint_at_start(flavour: Flavour) {
    let runs = on_node(flavour, "atstart", "checkpoint at start", |node, say| {
        scenario::checkpoint_at_start(node, REVIVE, "atstart", say)
    });
    assert_eq!(runs, format!("/bin/sh -c {}", scenario::AT_START_LOOP));
}

/// A checkpoint whose process tree holds a zombie restores, the zombie with it.
fn zombie(flavour: Flavour) {
    let tree = on_node(flavour, "zombie", "a zombie across restore", |node, say| {
        scenario::zombie_survives(node, REVIVE, "zombie", say)
    });
    assert!(tree.contains(" Z"), "{tree}");
}

revive_integration::e2e_main! {
    checkpoint_holding_a_zombie_restores_lts => zombie(Flavour::Lts),
    checkpoint_of_a_container_paused_at_start_lts => checkpoint_at_start(Flavour::Lts),
    checkpoint_without_criu_lts => no_criu(Flavour::Lts),
    loopback_server_answers_after_restore_lts => loopback_answers(Flavour::Lts),
    original_survives_its_restored_copy_lts => lives_apart(Flavour::Lts, Remove::Restored),
    process_state_survives_revive_lts => process_state(Flavour::Lts, REVIVE),
    process_state_survives_runc_lts => process_state(Flavour::Lts, RUNC),
    restored_copy_survives_its_original_lts => lives_apart(Flavour::Lts, Remove::Original),
    tcp_connection_survives_lts => tcp(Flavour::Lts),
    tcp_connection_to_outside_survives_lts => tcp_outside(Flavour::Lts),
    terminal_survives_revive_lts => terminal(Flavour::Lts, REVIVE),
    terminal_survives_runc_lts => terminal(Flavour::Lts, RUNC),
}
