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

/// A pod moved from one node to another through the registry, step by step.
fn migrate_steps(flavour: Flavour) {
    let (before, after) = on_cluster(flavour, "migrate", 2, "a migration by steps", |c, say| {
        cluster::migrate_by_steps(c, say)
    });
    assert_eq!(before.token, after.token);
}

revive_integration::e2e_main! {
    pod_migrates_through_the_registry_by_steps_lts => migrate_steps(Flavour::Lts),
    pod_migrates_through_the_registry_by_steps_latest => migrate_steps(Flavour::Latest),
    pod_on_runtime_class_revive_lts => pod_on_revive(Flavour::Lts),
    pod_on_runtime_class_revive_latest => pod_on_revive(Flavour::Latest),
}
