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

/// `revive migrate` moves a Redis pod holding keys to another node: the same server (its
/// run id) answers there with every key.
fn redis(flavour: Flavour) {
    let (before, after) = on_cluster(flavour, "redis", 2, "revive migrate of Redis", |c, say| {
        cluster::migrate_redis(c, say)
    });
    assert_eq!(before.keys, cluster::REDIS_KEYS);
    assert_eq!(after, before);
}

/// A move that must fail ([`cluster::FailedMove`]) fails with its reason, every one of
/// `said`, and leaves the source pod running, nothing else behind: to a registry nobody
/// serves, to a node whose containerd has lower limits than the source's, which the
/// privilege rules refuse, or interrupted midway by the operator.
fn failed_move(flavour: Flavour, case: cluster::FailedMove, said: &[&str]) {
    let what = format!("a failed move ({case:?})");
    let refused = on_cluster(flavour, "failed", 2, &what, |c, say| {
        cluster::migrate_fails(c, case, say)
    });
    assert!(said.iter().all(|s| refused.contains(s)), "{refused}");
}

/// A node's reboot survived with state: its pod saved to the registry, the node's runtime
/// killed and wiped, the pod created again and restored on the same node.
fn reboot(flavour: Flavour) {
    let (before, after) = on_cluster(flavour, "reboot", 1, "a reboot with state", |c, say| {
        cluster::reboot_with_state(c, say)
    });
    assert_eq!(before.token, after.token);
}

/// A pod saved to the registry, created again with `revive.io/sandbox: "true"`: through
/// the kubelet it comes up paused, isolated, its root read-only.
fn sandbox(flavour: Flavour) {
    let (s, token) = on_cluster(flavour, "sandbox", 1, "a sandboxed pod", |c, say| {
        cluster::sandbox_pod(c, say)
    });
    assert_eq!(s.status, "PAUSED");
    assert_eq!(s.paused.0, s.paused.1, "the paused sandbox counted on");
    assert_eq!(s.paused.0.token, token, "the sandbox is not the saved pod");
    let links: Vec<&str> = s.links.lines().collect();
    assert!(
        links.len() == 1 && links[0].contains(": lo:") && links[0].contains("state DOWN"),
        "more than a loopback that is down: {}",
        s.links
    );
    assert!(
        s.pod_links.contains("eth0"),
        "the pod has no eth0: {}",
        s.pod_links
    );
    assert!(
        s.root_options.split(',').any(|o| o == "ro"),
        "the root is not read-only: {}",
        s.root_options
    );
}

revive_integration::e2e_main! {
    a_saved_pod_comes_back_as_a_sandbox_lts => sandbox(Flavour::Lts),
    revive_migrate_moves_a_pod_there_and_back_lts => migrate(Flavour::Lts),
    revive_migrate_moves_a_pod_there_and_back_latest => migrate(Flavour::Latest),
    revive_migrate_moves_a_redis_pod_holding_keys_lts => redis(Flavour::Lts),
    revive_migrate_moves_a_redis_pod_holding_keys_latest => redis(Flavour::Latest),
    revive_migrate_to_an_unreachable_registry_leaves_the_pod_lts => failed_move(
        Flavour::Lts,
        cluster::FailedMove::UnreachableRegistry,
        &["could not push"],
    ),
    revive_migrate_refused_by_the_target_leaves_the_pod_latest => failed_move(
        Flavour::Latest,
        cluster::FailedMove::LowerLimits,
        &["restore was refused", "RLIMIT_SIGPENDING"],
    ),
    revive_migrate_interrupted_midway_undoes_the_move_lts => failed_move(
        Flavour::Lts,
        cluster::FailedMove::Interrupted,
        &["building and pushing the checkpoint images on the source node: interrupted by SIGINT", "the move was undone"],
    ),
    revive_migrate_to_a_node_without_the_base_images_platform_leaves_the_pod_latest => failed_move(
        Flavour::Latest,
        cluster::FailedMove::BaseForAnotherPlatform,
        &["restore was refused", "has no manifest for linux/amd64"],
    ),
    revive_migrate_onto_a_base_image_that_moved_leaves_the_pod_lts => failed_move(
        Flavour::Lts,
        cluster::FailedMove::BaseMoved,
        &["restore was refused", "the name has moved since"],
    ),
    a_reboot_keeps_the_pods_state_through_the_registry_lts => reboot(Flavour::Lts),
    pod_on_runtime_class_revive_lts => pod_on_revive(Flavour::Lts),
    pod_on_runtime_class_revive_latest => pod_on_revive(Flavour::Latest),
}
