//! End to end: a restore from a checkpoint image never gives the process more
//! privilege than its new container allows. Checkpoints made with stock tools (the Go shim,
//! containerd's CRI) of privileged, plain, `--seccomp` and restricted containers are run on
//! revive into containers of less, equal and more privilege: the revive shim must refuse
//! (at task Create) every restore that would hold more than the new spec gives, naming each
//! difference and leaving nothing, and restore the others.
//!
//! Every case is tried and printed before the test judges them, so one run shows them all.

use std::time::Instant;

use revive_integration::privilege::{self, Case};
use revive_integration::{Flavour, on_node};

/// Fails naming each case (all narrated as they were tried) whose outcome is not what it
/// must be.
fn judge(what: &str, cases: &[Case], started: Instant) {
    eprintln!("{what} took {:.1?}", started.elapsed());
    let failures: Vec<String> = cases.iter().filter_map(Case::failure).collect();
    assert!(
        failures.is_empty(),
        "{what}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn ctr_restores(flavour: Flavour) {
    let what = format!("privilege of ctr restores ({flavour})");
    let started = Instant::now();
    let cases = on_node(flavour, "privilege", &what, privilege::ctr_cases);
    judge(&what, &cases, started);
}

/// Pods (containerd 2.1's CRI; 1.7 has no CheckpointContainer to make the checkpoints with),
/// checkpointed through CRI on the Go shim and run in pods on handler `revive`: a privileged
/// pod's container is refused at StartContainer in a restricted pod (capabilities drop ALL,
/// runAsUser 1000, allowPrivilegeEscalation false, seccomp RuntimeDefault), naming the uid,
/// CAP_SYS_ADMIN, seccomp, no_new_privs and the read-write /sys, its container not running
/// and nothing left; a confined one's (the same as root) restores into the same confined
/// pod and is refused in a restricted one, naming the uid; a restricted one's restores into
/// the same restricted pod (where CRIU can dump a non-root process: not on this machine,
/// which the test says loudly). The privileged and confined checkpoints are then moved to a
/// containerd 1.7 node (which cannot make them: it has no CheckpointContainer), where the
/// same pods are refused and restored alike.
fn pod_restore_never_exceeds_the_pods_security_context() {
    let what = "privilege of pod restores (lts)";
    let started = Instant::now();
    let (cases, made) = on_node(Flavour::Lts, "privilege-pod", what, privilege::cri_cases);
    judge(what, &cases, started);
    let what = "privilege of pod restores, checkpoints moved from lts (stable)";
    let started = Instant::now();
    let cases = on_node(Flavour::Stable, "privilege-pod", what, |node, say| {
        privilege::cri_cases_moved(node, &made, say)
    });
    judge(what, &cases, started);
}

revive_integration::e2e_main! {
    // `ctr run` of checkpoint images on revive (containerd 2.1): a `--privileged` container's
    // checkpoint is refused into a plain container (naming CAP_SYS_ADMIN and the read-write
    // /sys) and into a `--user 1000:1000 --seccomp` one (naming the uid, CAP_SYS_ADMIN,
    // seccomp, /sys), and restores into a `--privileged` one; a plain (uid 0) container's
    // checkpoint is refused into a `--user 1000:1000` one (naming the uid); a `--seccomp`
    // container's restores into a `--seccomp` one, and the same checkpoint with its filters
    // replaced by one that allows everything is refused there (naming the system calls it
    // allows). Refusals leave no task, mount, snapshot or process.
    ctr_restore_never_exceeds_the_new_containers_privilege_lts => ctr_restores(Flavour::Lts),
    // The same on containerd 1.7.
    ctr_restore_never_exceeds_the_new_containers_privilege_stable => ctr_restores(Flavour::Stable),
    pod_restore_never_exceeds_the_pods_security_context,
}
