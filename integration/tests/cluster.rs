//! Kubernetes clusters in the harness (`revive_integration::cluster`): a control plane with
//! etcd, kube-apiserver and a registry, and worker nodes whose kubelets register with it,
//! each on an address of its own. Pods select revive with `runtimeClassName: revive` (the
//! RuntimeClass created through the API from `config/runtimeclass.yaml`), as in production.

use revive_integration::Flavour;
use revive_integration::cluster::{self, on_cluster};

/// A pod created through the API server on RuntimeClass revive, its image pulled from the
/// cluster's registry over TLS, runs on revive's shim on the node it names.
fn pod_on_revive(flavour: Flavour) {
    let counter = on_cluster(
        flavour,
        "cluster",
        2,
        "a pod on RuntimeClass revive",
        |c, say| cluster::pod_on_runtime_class(c, say),
    );
    eprintln!("counter: {counter}");
}

/// `revive migrate` moves a pod of two counters from node-a to node-b and back, as a whole:
/// each container counts on with its own token each time.
fn migrate(flavour: Flavour) {
    let moved = on_cluster(flavour, "migrate", 2, "revive migrate", |c, say| {
        cluster::migrate_pod(c, say)
    });
    for (i, before) in moved.before.iter().enumerate() {
        assert_eq!(moved.there[i].token, before.token);
        assert_eq!(moved.back[i].token, before.token);
        assert!(moved.back[i].count > moved.there[i].count);
    }
}

/// A move to a registry nobody serves fails with the reason and leaves the source pod
/// running, nothing else behind.
fn unreachable_registry(flavour: Flavour) {
    let refused = on_cluster(
        flavour,
        "unreachable",
        2,
        "a move to an unreachable registry",
        |c, say| cluster::migrate_fails(c, cluster::FailedMove::UnreachableRegistry, say),
    );
    assert!(refused.contains("could not push"), "{refused}");
}

/// A move to a node whose containerd has lower limits than the source's is refused by the
/// privilege rules, naming the limit, and leaves the source pod running, nothing else behind.
fn refused_by_target(flavour: Flavour) {
    let refused = on_cluster(
        flavour,
        "refused",
        2,
        "a move the target refuses",
        |c, say| cluster::migrate_fails(c, cluster::FailedMove::LowerLimits, say),
    );
    assert!(
        refused.contains("restore was refused") && refused.contains("RLIMIT_SIGPENDING"),
        "{refused}"
    );
}

/// A node's reboot survived with state: its pod saved to the registry, the node's runtime
/// killed and wiped, the pod created again and restored on the same node.
fn reboot(flavour: Flavour) {
    let (before, after) = on_cluster(flavour, "reboot", 1, "a reboot with state", |c, say| {
        cluster::reboot_with_state(c, say)
    });
    assert_eq!(before.token, after.token);
}

revive_integration::e2e_main! {
    revive_migrate_moves_a_pod_there_and_back_lts => migrate(Flavour::Lts),
    revive_migrate_moves_a_pod_there_and_back_latest => migrate(Flavour::Latest),
    revive_migrate_to_an_unreachable_registry_leaves_the_pod_lts => unreachable_registry(Flavour::Lts),
    revive_migrate_refused_by_the_target_leaves_the_pod_latest => refused_by_target(Flavour::Latest),
    a_reboot_keeps_the_pods_state_through_the_registry_lts => reboot(Flavour::Lts),
    pod_on_runtime_class_revive_lts => pod_on_revive(Flavour::Lts),
    pod_on_runtime_class_revive_latest => pod_on_revive(Flavour::Latest),
}
