//! A Kubernetes cluster of nodes, for what needs an API server: a control-plane node (etcd
//! from Debian, kube-apiserver built from its Go module at the kubelet's version, an OCI
//! registry) and worker nodes (containerd with revive, a kubelet registered with the API
//! server). Pods name their node (`spec.nodeName`): no scheduler or controller manager runs,
//! so the harness creates what those would (the `default` service account).
//!
//! Network: the control plane's network namespace holds a bridge at [`CONTROL_IP`] in
//! 198.18.0.0/24 (RFC 2544's benchmarking range, never routed); each worker gets one end of a
//! veth pair as `eth0` with an address of its own, the other end on the bridge. Nothing of
//! it reaches the host's network, and it goes away with the nodes' network namespaces.
//!
//! Trust: a CA made with openssl in the control plane signs the API server's and the
//! registry's serving certificates and every client's: the harness's administrator
//! (`system:masters`), each kubelet (`system:node:<name>` in `system:nodes`, so the Node
//! authorizer and NodeRestriction govern it) and the API server's own client for the
//! kubelets. Every node trusts the CA, so containerd pulls from the registry over TLS.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::kubelet::{self, Access};
use crate::node::{Leftovers, Node, NodeOptions, tail};
use crate::{Flavour, crictl};

/// The control plane's address: the API server (port 6443) and the registry (port 5000).
pub const CONTROL_IP: &str = "198.18.0.1";
const PREFIX: u8 = 24;
/// The API server's port.
pub const API_PORT: u16 = 6443;
/// The registry's port and the name the nodes know it by.
pub const REGISTRY_PORT: u16 = 5000;
/// Where the control plane keeps the cluster's keys and certificates, and where the workers
/// get theirs.
pub const PKI: &str = "/etc/kubernetes/pki";
/// The administrator's kubeconfig, in the control plane.
pub const ADMIN_CONFIG: &str = "/etc/kubernetes/admin.conf";
/// A kubelet's kubeconfig, in its worker.
pub const KUBELET_CONFIG: &str = "/etc/kubernetes/kubelet.conf";
/// How long the API server, a kubelet's registration or a pod may take.
pub const WAIT: Duration = Duration::from_secs(180);

/// A worker node of a [`Cluster`].
pub struct Worker {
    pub node: Node,
    /// Its Kubernetes node name (`node-a`, `node-b`, ...).
    pub name: String,
    /// Its address on the cluster's network.
    pub ip: String,
}

/// A control plane and its workers; dropping it stops every node, workers first (the
/// fields' order), since their kubelets talk to the control plane until they stop.
pub struct Cluster {
    pub workers: Vec<Worker>,
    pub control: Node,
}

/// The `i`th worker's Kubernetes name: `node-a`, `node-b`, ...
pub fn worker_name(i: usize) -> String {
    format!("node-{}", char::from(b'a' + i as u8))
}

/// The `i`th worker's address.
pub fn worker_ip(i: usize) -> String {
    format!("198.18.0.{}", 10 + i)
}

/// The registry's address as images name it.
pub fn registry() -> String {
    format!("{CONTROL_IP}:{REGISTRY_PORT}")
}

impl Cluster {
    /// Starts a control plane and `workers` workers of `flavour`, labelled `label`, and
    /// waits until every worker's node is Ready and the `revive` RuntimeClass exists.
    pub fn start(flavour: Flavour, label: &str, workers: usize) -> Result<Cluster> {
        ensure!((1..=20).contains(&workers), "a cluster has 1 to 20 workers");
        let control = Node::start_with(
            flavour,
            NodeOptions {
                label: format!("{label}-cp"),
                snapshotter: false,
                default_snapshotter: None,
            },
        )?;
        let mut cluster = Cluster {
            workers: Vec::new(),
            control,
        };
        for i in 0..workers {
            let node = Node::start(flavour, &format!("{label}-{}", worker_name(i)))?;
            cluster.workers.push(Worker {
                node,
                name: worker_name(i),
                ip: worker_ip(i),
            });
        }
        let set_up = (|| {
            cluster.network()?;
            cluster.pki()?;
            cluster.control_plane()?;
            cluster.registry()?;
            for i in 0..workers {
                cluster.join(i)?;
            }
            cluster.wait_ready()
        })();
        match set_up {
            Ok(()) => Ok(cluster),
            Err(e) => bail!("{e:#}\n{}", cluster.log_tails()),
        }
    }

    /// Stops every node, workers first; what each left behind.
    pub fn stop(self) -> Result<Vec<Leftovers>> {
        let mut left = Vec::new();
        for worker in self.workers {
            left.push(worker.node.stop()?);
        }
        left.push(self.control.stop()?);
        Ok(left)
    }

    /// The last lines of every node's logs, the control plane's daemons included.
    pub fn log_tails(&self) -> String {
        let mut tails = String::new();
        for worker in &self.workers {
            tails.push_str(&worker.node.log_tails());
        }
        tails.push_str(&self.control.log_tails());
        tails
    }

    /// The worker named `name`.
    pub fn worker(&self, name: &str) -> Result<&Worker> {
        self.workers
            .iter()
            .find(|w| w.name == name)
            .with_context(|| format!("the cluster has no worker {name}"))
    }

    /// The bridge in the control plane and one veth pair per worker, made from the host
    /// (the nodes' roots need no network tools of their own for it).
    fn network(&self) -> Result<()> {
        let control = self.control.init_pid().to_string();
        in_netns(&control, &["ip", "link", "add", "br0", "type", "bridge"])?;
        in_netns(
            &control,
            &[
                "ip",
                "addr",
                "add",
                &format!("{CONTROL_IP}/{PREFIX}"),
                "dev",
                "br0",
            ],
        )?;
        in_netns(&control, &["ip", "link", "set", "br0", "up"])?;
        for (i, worker) in self.workers.iter().enumerate() {
            let pid = worker.node.init_pid().to_string();
            // Made in the worker's namespace, so no name is ever taken on the host.
            let peer = format!("rv{i}");
            in_netns(
                &pid,
                &[
                    "ip", "link", "add", "eth0", "type", "veth", "peer", "name", &peer,
                ],
            )?;
            in_netns(&pid, &["ip", "link", "set", &peer, "netns", &control])?;
            in_netns(
                &pid,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{}/{PREFIX}", worker.ip),
                    "dev",
                    "eth0",
                ],
            )?;
            in_netns(&pid, &["ip", "link", "set", "eth0", "up"])?;
            in_netns(
                &control,
                &["ip", "link", "set", &peer, "master", "br0", "up"],
            )?;
        }
        Ok(())
    }

    /// The CA and every certificate, made in the control plane; each worker gets the CA's
    /// certificate and its kubelet's key pair, and every node trusts the CA.
    fn pki(&self) -> Result<()> {
        let names: Vec<&str> = self.workers.iter().map(|w| w.name.as_str()).collect();
        self.control
            .sh(&pki_script(&names))
            .context("making the cluster's CA and certificates with openssl")?;
        let files = |name: &str| {
            fs::read(self.control.host_path(&format!("{PKI}/{name}")))
                .with_context(|| format!("reading {PKI}/{name} from the control plane"))
        };
        let ca = files("ca.crt")?;
        trust(&self.control, &ca)?;
        for worker in &self.workers {
            let node = &worker.node;
            node.run(&["mkdir", "-p", "-m", "0700", PKI])?;
            for (file, data) in [
                ("ca.crt".to_string(), ca.clone()),
                (
                    "kubelet.crt".to_string(),
                    files(&format!("kubelet-{}.crt", worker.name))?,
                ),
                (
                    "kubelet.key".to_string(),
                    files(&format!("kubelet-{}.key", worker.name))?,
                ),
            ] {
                let path = node.host_path(&format!("{PKI}/{file}"));
                fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
            }
            node.run(&["chmod", "600", &format!("{PKI}/kubelet.key")])?;
            trust(node, &ca)?;
            let kubeconfig = kubeconfig(
                &format!("system:node:{}", worker.name),
                &format!("{PKI}/kubelet.crt"),
                &format!("{PKI}/kubelet.key"),
            );
            fs::write(node.host_path(KUBELET_CONFIG), kubeconfig)
                .context("writing the kubelet's kubeconfig")?;
        }
        fs::write(
            self.control.host_path(ADMIN_CONFIG),
            kubeconfig(
                "revive-admin",
                &format!("{PKI}/admin.crt"),
                &format!("{PKI}/admin.key"),
            ),
        )
        .context("writing the administrator's kubeconfig")
    }

    /// etcd and kube-apiserver in the control plane; waits until the API server is ready,
    /// then creates what the missing controllers would and the `revive` RuntimeClass.
    fn control_plane(&self) -> Result<()> {
        let cp = &self.control;
        for program in ["etcd", "kube-apiserver", "kubectl"] {
            let found = cp.exec_timeout(&["sh", "-c", &format!("command -v {program}")], WAIT)?;
            ensure!(
                found.status.success(),
                "node {} has no {program}: only the lts and latest flavours' roots have the \
                 cluster's programs",
                cp.name()
            );
        }
        cp.spawn_daemon("etcd", ETCD)?;
        cp.spawn_daemon("kube-apiserver", &apiserver_command())?;
        let deadline = Instant::now() + WAIT;
        loop {
            match self.kubectl(&["get", "--raw", "/readyz"]) {
                Ok(out) if out.trim() == "ok" => break,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
                result => bail!(
                    "kube-apiserver was not ready within {} s ({result:?}); its log ends:\n{}",
                    WAIT.as_secs(),
                    self.log_tail("kube-apiserver", 30)
                ),
            }
        }
        // The service account the ServiceAccount admission gives every pod, which the
        // (absent) controller manager would create.
        self.kubectl(&[
            "create",
            "serviceaccount",
            "default",
            "--namespace",
            "default",
        ])?;
        // The API server reaches the kubelets (logs, exec, checkpoint) as this user.
        self.kubectl(&[
            "create",
            "clusterrolebinding",
            "kube-apiserver-kubelet-client",
            "--clusterrole=system:kubelet-api-admin",
            "--user=kube-apiserver-kubelet-client",
        ])?;
        // What an operator installs from config/: the RuntimeClass, and the API server's
        // right to call the kubelets' checkpoint API.
        for (file, text) in [
            ("runtimeclass.yaml", RUNTIME_CLASS),
            ("checkpoint-rbac.yaml", CHECKPOINT_RBAC),
            ("migrate.yaml", MIGRATE),
        ] {
            let path = format!("/etc/kubernetes/{file}");
            fs::write(cp.host_path(&path), text).with_context(|| format!("writing {path}"))?;
            self.kubectl(&["apply", "-f", &path])?;
        }
        // The administrator's kubectl configuration, as `revive migrate` finds it.
        cp.run(&["mkdir", "-p", "-m", "0700", "/root/.kube"])?;
        cp.run(&["cp", ADMIN_CONFIG, "/root/.kube/config"])?;
        Ok(())
    }

    /// The registry on the control plane's address, with its certificate from the cluster's
    /// CA.
    fn registry(&self) -> Result<()> {
        let config = crate::conformance::registry::registry_config(
            &registry(),
            &format!("{PKI}/registry.crt"),
            &format!("{PKI}/registry.key"),
        );
        self.control
            .run(&["mkdir", "-p", "/var/lib/revive-registry"])?;
        fs::write(self.control.host_path("/etc/revive-registry.yml"), config)
            .context("writing the registry's configuration")?;
        self.control
            .spawn_daemon("registry", "docker-registry serve /etc/revive-registry.yml")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe = format!(
            "openssl s_client -connect {} -verify_return_error -verify_ip {CONTROL_IP} \
             </dev/null >/dev/null 2>&1",
            registry()
        );
        loop {
            let out = self
                .control
                .exec_timeout(&["sh", "-c", &probe], Duration::from_secs(10))?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the registry did not answer with a trusted certificate within 30 s:\n{}",
                    self.log_tail("registry", 30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts worker `i`'s kubelet, registered with the API server.
    fn join(&self, i: usize) -> Result<()> {
        let worker = &self.workers[i];
        let node = &worker.node;
        crictl::configure(node)?;
        pod_network(node, i)?;
        // Checkpoint images pulled from the cluster's registry bring their base image along.
        node.restart_snapshotter_with(&format!("--pull-bases-from {}", registry()))?;
        // The sandbox image only: workloads' images come from the registry.
        let sandbox = crate::cri::cri_config(node)?.sandbox_image;
        crate::cri::import_image(node, &crate::cri::pause_image(node, &sandbox)?)?;
        crictl::wait_for_image(node, &sandbox)?;
        let ca = format!("{PKI}/ca.crt");
        kubelet::prepare(
            node,
            &worker.name,
            &Access::Cluster {
                ip: &worker.ip,
                ca: &ca,
            },
        )?;
        kubelet::start_with(node, &kubelet_command(worker))
            .with_context(|| format!("the kubelet of {}", worker.name))?;
        Ok(())
    }

    /// Worker `name` goes through what a reboot does to a node's runtime: every process but
    /// the node's init killed (kubelet, containerd, revive-snapshotter, shims, containers),
    /// the runtime's mounts gone and `/run`'s state of containerd, revive and CNI wiped,
    /// while `/var/lib` (images, snapshots, the kubelet's files) stays; then
    /// revive-snapshotter, containerd and the kubelet start again, and the node is Ready.
    pub fn reboot(&self, name: &str) -> Result<()> {
        let worker = self.worker(name)?;
        let node = &worker.node;
        // The shell that kills is spared by `kill -1`, and exits by itself.
        node.sh("kill -9 -1; sleep 1")
            .context("killing every process of the node")?;
        node.sh(
            "grep -oE ' (/run/containerd|/run/netns|/run/revive|/var/lib/kubelet/pods)/[^ ]*' \
             /proc/self/mountinfo | sort -r | while read m; do umount -l \"$m\" || exit 1; done; \
             rm -rf /run/containerd /run/netns /run/revive /var/run/cni",
        )
        .context("unmounting and wiping the runtime's state")?;
        node.start_snapshotter(&format!("--pull-bases-from {}", registry()))?;
        node.start_containerd()?;
        kubelet::start_with(node, &kubelet_command(worker))
            .with_context(|| format!("the kubelet of {name} after the reboot"))?;
        self.wait_ready()
    }

    /// Waits until every worker's Node is Ready.
    fn wait_ready(&self) -> Result<()> {
        for worker in &self.workers {
            let deadline = Instant::now() + WAIT;
            loop {
                let ready = self
                    .kubectl(&[
                        "get",
                        "node",
                        &worker.name,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                    ])
                    .unwrap_or_default();
                if ready.trim() == "True" {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "node {} was not Ready within {} s; its kubelet's log ends:\n{}",
                        worker.name,
                        WAIT.as_secs(),
                        kubelet::log_tail(&worker.node, 30)
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        Ok(())
    }

    /// `kubectl args` as the administrator, in the control plane; stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut command = vec!["kubectl", "--kubeconfig", ADMIN_CONFIG];
        command.extend_from_slice(args);
        self.control.run(&command)
    }

    /// `kubectl get args -o json`, parsed.
    pub fn get(&self, args: &[&str]) -> Result<Value> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&full)?;
        serde_json::from_str(&out)
            .with_context(|| format!("kubectl {} printed {out}", full.join(" ")))
    }

    /// Creates `object` (a manifest) through the API server.
    pub fn create(&self, object: &Value) -> Result<()> {
        let name = object["metadata"]["name"].as_str().unwrap_or("object");
        let file = format!("/tmp/{name}-{}.json", std::process::id());
        fs::write(
            self.control.host_path(&file),
            serde_json::to_vec_pretty(object)?,
        )
        .with_context(|| format!("writing {file} in the control plane"))?;
        let created = self.kubectl(&["create", "-f", &file]);
        self.control.run(&["rm", "-f", &file])?;
        created.map(drop)
    }

    /// Waits until pod `name` (namespace `default`) is Running with every container ready;
    /// returns it.
    pub fn wait_running(&self, name: &str) -> Result<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let pod = self.get(&["pod", name])?;
            let ready = pod["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["ready"] == true));
            if pod["status"]["phase"] == "Running" && ready {
                return Ok(pod);
            }
            if Instant::now() > deadline {
                bail!(
                    "pod {name} was not running within {} s: {}",
                    WAIT.as_secs(),
                    serde_json::to_string(&pod["status"]).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The last `n` lines of the control plane's daemon `log`.
    pub fn log_tail(&self, log: &str, n: usize) -> String {
        tail(
            &fs::read_to_string(self.control.logs_dir().join(format!("{log}.log")))
                .unwrap_or_default(),
            n,
        )
    }

    /// Keeps every node's logs after the test.
    pub fn keep_logs(&mut self) {
        self.control.keep_logs();
        for worker in &mut self.workers {
            worker.node.keep_logs();
        }
    }
}

/// The shape of an end-to-end test on a cluster, as [`crate::on_node`] is on one node: starts
/// a cluster of `workers` workers of `flavour` labelled `label`, runs `scenario` with a
/// narrator, fails with every node's logs if it fails, and if a node leaves anything behind.
pub fn on_cluster<T>(
    flavour: Flavour,
    label: &str,
    workers: usize,
    what: &str,
    scenario: impl FnOnce(&Cluster, &mut dyn FnMut(&str)) -> Result<T>,
) -> T {
    let cluster = Cluster::start(flavour, label, workers)
        .unwrap_or_else(|e| panic!("a cluster for {what} on {flavour}: {e:#}"));
    let result = scenario(&cluster, &mut |step| eprintln!("  {step}"))
        .unwrap_or_else(|e| panic!("{what} on {flavour}: {e:#}\n{}", cluster.log_tails()));
    let left = cluster.stop().expect("the cluster stops");
    assert!(
        left.iter().all(Leftovers::is_empty),
        "the cluster's nodes left behind: {left:?}"
    );
    result
}

/// Pushes the harness's busybox image from the control plane into the cluster's registry
/// as `<registry>/revive/busybox:1`; returns that name.
pub fn push_busybox(cluster: &Cluster) -> Result<String> {
    let name = format!("{}/revive/busybox:1", registry());
    let busybox = crate::image::Image::busybox(&cluster.control.rootfs().path)?;
    push_image(cluster, &busybox, &name)?;
    Ok(name)
}

/// The counter of [`crate::scenario::COUNTER_SCRIPT`] as a pod of the API server, its
/// container `counter` ([`one_container_pod`]).
pub fn counter_pod(name: &str, node: &str, image: &str) -> Value {
    let command = ["sh", "-c", crate::scenario::COUNTER_SCRIPT];
    one_container_pod(name, node, image, "counter", &command)
}

/// A pod of one container, `container` running `command` from `image`, on node `node` and
/// RuntimeClass `revive`, the node's pod network, no service account token, stopped within
/// a second.
pub fn one_container_pod(
    name: &str,
    node: &str,
    image: &str,
    container: &str,
    command: &[&str],
) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "runtimeClassName": "revive",
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": container,
                "image": image,
                "command": command,
            }],
        },
    })
}

/// A counter pod created through the API server on RuntimeClass `revive`, its image pulled
/// from the cluster's registry over TLS, runs on the node it names on revive's shim and
/// counts; deleted through the API server, it leaves no container on the node. Returns the
/// counter it showed.
pub fn pod_on_runtime_class(
    cluster: &Cluster,
    narrate: &mut dyn FnMut(&str),
) -> Result<crate::scenario::Counter> {
    let image = push_busybox(cluster)?;
    narrate(&format!(
        "busybox pushed to the cluster's registry: {image}"
    ));
    let worker = cluster.worker(&worker_name(0))?;
    cluster.create(&counter_pod("counter", &worker.name, &image))?;
    cluster.wait_running("counter")?;
    let listed = crictl::containers(&worker.node, "^counter$")?;
    let id = listed
        .first()
        .and_then(|c| c["id"].as_str())
        .with_context(|| format!("no counter container on {}: {listed:?}", worker.name))?
        .to_string();
    let runtime = kubelet::runtime_of(&worker.node, &id)?;
    ensure!(
        runtime == kubelet::RUNTIME_TYPE,
        "the pod's container runs on {runtime:?}, not {}",
        kubelet::RUNTIME_TYPE
    );
    let counter = crictl::wait_for_count(&worker.node, &id, 3, None)?;
    narrate(&format!(
        "pod counter on {} ({}) runs on {runtime}, pulled from the registry: {counter}",
        worker.name, worker.ip
    ));
    cluster.kubectl(&["delete", "pod", "counter", "--wait=true", "--timeout=120s"])?;
    let left = crictl::containers(&worker.node, "^counter$")?;
    ensure!(
        left.is_empty(),
        "the deleted pod's container is still on {}: {left:?}",
        worker.name
    );
    Ok(counter)
}

/// Worker `i`'s pod network: a CNI bridge in the worker's network namespace with
/// [`pod_subnet`]`(i)`, from Debian's CNI plugins (found where containerd looks for them).
/// containerd's CRI picks the configuration up as it appears.
pub(crate) fn pod_network(node: &Node, i: usize) -> Result<()> {
    let config = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "revive-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_subnet(i)}]],
                },
            },
            {"type": "loopback"},
        ],
    });
    node.sh("mkdir -p /etc/cni/net.d /opt/cni && ln -sfn /usr/lib/cni /opt/cni/bin")?;
    let path = node.host_path("/etc/cni/net.d/10-revive-pods.conflist");
    fs::write(&path, serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Worker `i`'s pod addresses.
pub fn pod_subnet(i: usize) -> String {
    format!("10.244.{i}.0/24")
}

/// The container `container` of pod `pod` on `node` (CRI's listing), once it is there.
pub fn container_id(node: &Node, pod: &str, container: &str) -> Result<String> {
    let listed = crictl::crictl_json(node, &["ps", "--name", &format!("^{container}$")])?;
    listed["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["labels"]["io.kubernetes.pod.name"] == pod)
        .and_then(|c| c["id"].as_str())
        .map(str::to_string)
        .with_context(|| {
            format!(
                "no container {container} of pod {pod} on {}: {listed}",
                node.name()
            )
        })
}

/// Checkpoints container `container` of pod `pod` through the API server (the kubelet's
/// checkpoint API behind `nodes/proxy`); the archive's path on the pod's node.
pub fn checkpoint(cluster: &Cluster, node: &str, pod: &str, container: &str) -> Result<String> {
    let path = format!("/api/v1/nodes/{node}/proxy/checkpoint/default/{pod}/{container}");
    let answer = cluster
        .kubectl(&["create", "--raw", &path, "-f", "/dev/null"])
        .with_context(|| format!("POST {path}"))?;
    let answer: Value = serde_json::from_str(&answer)
        .with_context(|| format!("the kubelet's checkpoint answer is not JSON: {answer:?}"))?;
    match answer["items"].as_array().map(Vec::as_slice) {
        Some([Value::String(archive)]) => Ok(archive.clone()),
        _ => bail!("the kubelet's checkpoint answer names no single archive: {answer}"),
    }
}

/// The image `revive migrate`'s agent pods run: busybox with the project's `revive` and the
/// shared libraries it needs (from the node root), pushed to the cluster's registry as
/// `<registry>/revive/agent:1`; its name.
pub fn push_agent_image(cluster: &Cluster) -> Result<String> {
    let cp = &cluster.control;
    let root = &cp.rootfs().path;
    let name = format!("{}/revive/agent:1", registry());
    let image = crate::image::busybox_builder(root, &name)?.host_file(
        "/usr/local/bin/revive",
        &crate::node::bin_dir()?.join("revive"),
        0o755,
    )?;
    let image =
        with_libraries(image, root, &["libgcc_s.so.1", "libm.so.6", "libc.so.6"])?.build()?;
    push_image(cluster, &image, &name)?;
    Ok(name)
}

/// `image` with the shared libraries `libs` (file names) from the node root `root`, and the
/// dynamic loader.
fn with_libraries(
    mut image: crate::image::ImageBuilder,
    root: &Path,
    libs: &[&str],
) -> Result<crate::image::ImageBuilder> {
    let dir = "usr/lib/x86_64-linux-gnu";
    for lib in libs {
        image = image.host_file(&format!("/{dir}/{lib}"), &root.join(dir).join(lib), 0o755)?;
    }
    image.host_file(
        "/lib64/ld-linux-x86-64.so.2",
        &root.join(dir).join("ld-linux-x86-64.so.2"),
        0o755,
    )
}

/// The shared libraries (file names) that `binary` of the node root `root` needs, as
/// `ldd` in that root lists them.
fn libraries_of(root: &Path, binary: &str) -> Result<Vec<String>> {
    let out = Command::new("chroot")
        .arg(root)
        .args(["ldd", binary])
        .output()
        .context("chroot ldd")?;
    ensure!(
        out.status.success(),
        "ldd {binary}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(" => ").map(|(lib, _)| lib.trim().to_string()))
        .collect())
}

/// An image of busybox with Debian's redis-server and redis-cli and the libraries they
/// need, from the control plane's node root, pushed as `<registry>/revive/redis:1`; its
/// name.
pub fn push_redis_image(cluster: &Cluster) -> Result<String> {
    let root = &cluster.control.rootfs().path;
    let name = format!("{}/revive/redis:1", registry());
    let mut image = crate::image::busybox_builder(root, &name)?;
    for binary in ["redis-server", "redis-cli"] {
        // redis-server is a link to redis-check-rdb, which runs as the server by its name.
        image = image.host_file(
            &format!("/usr/bin/{binary}"),
            &root.join("usr/bin").join(binary),
            0o755,
        )?;
    }
    let libs = libraries_of(root, "/usr/bin/redis-server")?;
    let libs: Vec<&str> = libs.iter().map(String::as_str).collect();
    let image = with_libraries(image, root, &libs)?.build()?;
    push_image(cluster, &image, &name)?;
    Ok(name)
}

/// `image`, written into the control plane's share directory, pushed to the cluster's
/// registry as `name` with `skopeo copy`.
fn push_image(cluster: &Cluster, image: &crate::image::Image, name: &str) -> Result<()> {
    let cp = &cluster.control;
    let file = format!("{}.tar", image.file_stem());
    image.write_archive(&cp.share_dir().join(&file))?;
    let out = cp.exec_timeout(
        &[
            "skopeo",
            "copy",
            "--quiet",
            "--all",
            &format!("oci-archive:/share/{file}"),
            &format!("docker://{name}"),
        ],
        WAIT,
    )?;
    ensure!(
        out.status.success(),
        "pushing {name} with skopeo: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// `revive migrate` of pod `pod` to node `to`, run by the administrator in the control
/// plane; what it printed.
pub fn revive_migrate(cluster: &Cluster, pod: &str, to: &str, agent: &str) -> Result<String> {
    revive_migrate_to(
        cluster,
        pod,
        to,
        agent,
        &format!("{}/revive/migrated", registry()),
    )
}

/// [`revive_migrate`] with the images pushed to `repository`.
pub fn revive_migrate_to(
    cluster: &Cluster,
    pod: &str,
    to: &str,
    agent: &str,
    repository: &str,
) -> Result<String> {
    let args = migrate_args(pod, to, agent, repository);
    let out = cluster.control.exec_timeout(&args, WAIT * 3)?;
    ensure!(
        out.status.success(),
        "`{}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command line of `revive migrate` of pod `pod` to node `to`.
fn migrate_args<'a>(
    pod: &'a str,
    to: &'a str,
    agent: &'a str,
    repository: &'a str,
) -> [&'a str; 11] {
    [
        "revive",
        "migrate",
        pod,
        "--to",
        to,
        "--registry",
        repository,
        "--agent-image",
        agent,
        "--timeout",
        "150",
    ]
}

/// [`revive_migrate`], sent SIGINT (an operator's Ctrl-C) midway: once its agent pod is
/// building and pushing the checkpoint images on the source node. Fails with what it
/// printed when it stopped, as a refused move does; succeeds if the move went through.
fn revive_migrate_interrupted(
    cluster: &Cluster,
    pod: &str,
    to: &str,
    agent: &str,
) -> Result<String> {
    let repository = format!("{}/revive/migrated", registry());
    let command = migrate_args(pod, to, agent, &repository).join(" ");
    let script = format!(
        "{command} >/tmp/migrate.out 2>&1 & pid=$!
         until kubectl --kubeconfig {ADMIN_CONFIG} get pods -n revive-system -o name | grep -q .; do
           kill -0 $pid 2>/dev/null || break
           sleep 0.1
         done
         kill -INT $pid; wait $pid; rc=$?
         cat /tmp/migrate.out; exit $rc"
    );
    let out = cluster
        .control
        .exec_timeout(&["sh", "-c", &script], WAIT * 3)?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.success() {
        true => Ok(said),
        false => bail!("`{command}` ({}): {said}", out.status),
    }
}

/// The containers of the migrated pod: two counters, each with its own token.
pub const MIGRATED_CONTAINERS: [&str; 2] = ["counter", "sidecar"];

/// A pod of two counters (see [`MIGRATED_CONTAINERS`]) on `node`, as [`counter_pod`].
pub fn two_counter_pod(name: &str, node: &str, image: &str) -> Value {
    let mut pod = counter_pod(name, node, image);
    let mut sidecar = pod["spec"]["containers"][0].clone();
    sidecar["name"] = serde_json::json!(MIGRATED_CONTAINERS[1]);
    if let Some(containers) = pod["spec"]["containers"].as_array_mut() {
        containers.push(sidecar);
    }
    pod
}

/// The counters of pod `pod`'s containers on `node`, once each counts past `min` (with the
/// token of `tokens`, when given, container by container).
fn pod_counters(
    node: &Node,
    pod: &str,
    min: u64,
    tokens: Option<&[crate::scenario::Counter]>,
) -> Result<Vec<crate::scenario::Counter>> {
    MIGRATED_CONTAINERS
        .iter()
        .enumerate()
        .map(|(i, container)| {
            let id = container_id(node, pod, container)?;
            let token = tokens.map(|t| t[i].token.as_str());
            crictl::wait_for_count(node, &id, min, token)
                .with_context(|| format!("container {container} of pod {pod}"))
        })
        .collect()
}

/// What [`migrate_pod`] saw: the counters of the pod's containers before, after the move to
/// node-b, after the move back to node-a.
#[derive(Debug)]
pub struct Migrated {
    pub before: Vec<crate::scenario::Counter>,
    pub there: Vec<crate::scenario::Counter>,
    pub back: Vec<crate::scenario::Counter>,
}

/// A pod of two counters moved from node-a to node-b with `revive migrate`, as a whole, then
/// back (a second generation): each container counts on with its own token; the source pod,
/// the agent pod and the checkpoint archives are gone after each move.
pub fn migrate_pod(cluster: &Cluster, narrate: &mut dyn FnMut(&str)) -> Result<Migrated> {
    let base = push_busybox(cluster)?;
    let agent = push_agent_image(cluster)?;
    let (a, b) = (cluster.worker("node-a")?, cluster.worker("node-b")?);
    cluster.create(&two_counter_pod("counters", &a.name, &base))?;
    cluster.wait_running("counters")?;
    let before = pod_counters(&a.node, "counters", 3, None)?;
    narrate(&format!("pod counters on {}: {before:?}", a.name));
    let min = before.iter().map(|c| c.count).max().unwrap_or(0) + 1;
    let mut moves = Vec::new();
    for (pod, new, from, to) in [
        ("counters", "counters-m1", a, b),
        ("counters-m1", "counters-m2", b, a),
    ] {
        let said = revive_migrate(cluster, pod, &to.name, &agent)
            .with_context(|| format!("revive migrate {pod} --to {}", to.name))?;
        narrate(said.trim());
        let moved = pod_counters(&to.node, new, min, Some(&before))?;
        narrate(&format!("pod {new} on {}: {moved:?}", to.name));
        let left = cluster.kubectl(&["get", "pods", "-A", "-o", "name"])?;
        ensure!(
            !left
                .lines()
                .any(|l| l == format!("pod/{pod}") || l.contains("revive-agent")),
            "after moving {pod}, the API server still has: {left}"
        );
        no_archives_left(from)?;
        moves.push(moved);
    }
    let back = moves.pop().context("two moves")?;
    let there = moves.pop().context("two moves")?;
    Ok(Migrated {
        before,
        there,
        back,
    })
}

/// Keys the Redis pod holds before its move: `key:<i>` for i in 1..=REDIS_KEYS.
pub const REDIS_KEYS: usize = 2000;

/// A Redis server seen from its node: what `revive migrate` must keep.
#[derive(Debug, PartialEq, Eq)]
pub struct RedisState {
    /// `INFO server`'s run_id: a new one for every start of the server, the same through a
    /// restore of its process.
    pub run_id: String,
    pub keys: usize,
    /// The values of the first and the last key.
    pub first: String,
    pub last: String,
}

/// `redis-cli -h <ip> args` on `node` (the node root's redis-cli, over the pod network).
fn redis_cli(node: &Node, ip: &str, args: &[&str]) -> Result<String> {
    let mut command = vec!["redis-cli", "-h", ip];
    command.extend_from_slice(args);
    Ok(node.run(&command)?.trim().to_string())
}

/// Pod `pod`'s address on its node's pod network.
fn pod_ip(cluster: &Cluster, pod: &str) -> Result<String> {
    let ip = cluster.kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])?;
    let ip = ip.trim();
    ensure!(!ip.is_empty(), "pod {pod} has no IP");
    Ok(ip.to_string())
}

/// The state of the Redis server of pod `pod`, asked from `worker` over the pod network.
fn redis_state(cluster: &Cluster, worker: &Worker, pod: &str) -> Result<RedisState> {
    let ip = &pod_ip(cluster, pod)?;
    let info = redis_cli(&worker.node, ip, &["INFO", "server"])?;
    let run_id = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .with_context(|| format!("no run_id in INFO server: {info}"))?
        .trim()
        .to_string();
    Ok(RedisState {
        run_id,
        keys: redis_cli(&worker.node, ip, &["DBSIZE"])?
            .parse()
            .context("DBSIZE")?,
        first: redis_cli(&worker.node, ip, &["GET", "key:1"])?,
        last: redis_cli(&worker.node, ip, &["GET", &format!("key:{REDIS_KEYS}")])?,
    })
}

/// A Redis pod on node-a holding [`REDIS_KEYS`] keys, moved to node-b with `revive migrate`:
/// the restored server answers over node-b's pod network with every key and the run id it
/// had (the same process, not a new start), and pod redis is gone. Returns the state
/// before and after.
pub fn migrate_redis(
    cluster: &Cluster,
    narrate: &mut dyn FnMut(&str),
) -> Result<(RedisState, RedisState)> {
    let image = push_redis_image(cluster)?;
    let agent = push_agent_image(cluster)?;
    let (a, b) = (cluster.worker("node-a")?, cluster.worker("node-b")?);
    let command = [
        "redis-server",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
    ];
    cluster.create(&one_container_pod(
        "redis", &a.name, &image, "redis", &command,
    ))?;
    cluster.wait_running("redis")?;
    let ip = pod_ip(cluster, "redis")?;
    a.node.sh(&format!(
        "until redis-cli -h {ip} PING >/dev/null 2>&1; do sleep 0.1; done
         token=$(cat /proc/sys/kernel/random/uuid)
         i=1; while [ $i -le {REDIS_KEYS} ]; do echo \"SET key:$i value-$i-$token\"; i=$((i+1)); done \
           | redis-cli -h {ip} >/dev/null"
    ))?;
    let before = redis_state(cluster, a, "redis")?;
    narrate(&format!("pod redis on {}: {before:?}", a.name));
    let said = revive_migrate(cluster, "redis", &b.name, &agent)?;
    narrate(said.trim());
    let after = redis_state(cluster, b, "redis-m1")?;
    narrate(&format!("pod redis-m1 on {}: {after:?}", b.name));
    let left = cluster.kubectl(&["get", "pods", "-o", "name"])?;
    ensure!(
        left.trim() == "pod/redis-m1",
        "after the move the API server has: {left}"
    );
    no_archives_left(a)?;
    Ok((before, after))
}

/// Fails if checkpoint archives are left in `worker`'s kubelet directory.
fn no_archives_left(worker: &Worker) -> Result<()> {
    let archives = worker
        .node
        .run(&["ls", "-A", "/var/lib/kubelet/checkpoints"])?;
    ensure!(
        archives.trim().is_empty(),
        "checkpoint archives left on {}: {archives}",
        worker.name
    );
    Ok(())
}

/// A move of the counter pod from node-a to node-b that must fail: `prepare` readies the
/// cluster, `attempt` runs `revive migrate` with the agent image's name. The pod's image is
/// pulled from the registry, or with `side_loaded` imported into node-a under the
/// registry's name ([`side_load_busybox`]). The
/// error must come back, the source pod count on with its state, and no copy, agent pod or
/// checkpoint archive be left. Returns the error `revive migrate` printed.
fn failed_move(
    cluster: &Cluster,
    narrate: &mut dyn FnMut(&str),
    side_loaded: bool,
    prepare: impl FnOnce(&Worker, &Worker) -> Result<String>,
    attempt: impl FnOnce(&str, &Worker) -> Result<String>,
) -> Result<String> {
    let agent = push_agent_image(cluster)?;
    let (a, b) = (cluster.worker("node-a")?, cluster.worker("node-b")?);
    let base = match side_loaded {
        false => push_busybox(cluster)?,
        true => side_load_busybox(cluster, a)?,
    };
    narrate(&prepare(a, b)?);
    cluster.create(&counter_pod("counter", &a.name, &base))?;
    cluster.wait_running("counter")?;
    let id = container_id(&a.node, "counter", "counter")?;
    let before = crictl::wait_for_count(&a.node, &id, 3, None)?;
    let refused = match attempt(&agent, b) {
        Ok(out) => bail!("the move succeeded: {out}"),
        Err(e) => format!("{e:#}"),
    };
    narrate(&format!("refused: {refused}"));
    let after = crictl::wait_for_count(&a.node, &id, before.count + 2, Some(&before.token))
        .context("the source pod after the failed move")?;
    narrate(&format!("pod counter on {} still counts: {after}", a.name));
    let pods = cluster.kubectl(&["get", "pods", "-A", "-o", "name"])?;
    ensure!(
        pods.trim() == "pod/counter",
        "after the failed move the API server has: {pods}"
    );
    no_archives_left(a)?;
    Ok(refused)
}

/// Busybox imported into `worker`'s containerd (CRI's namespace) under the name
/// [`push_busybox`] pushes it as, but not pushed: as an image side-loaded onto a node, its
/// container's checkpoint names it by that name and its id, with no digest on the registry.
fn side_load_busybox(cluster: &Cluster, worker: &Worker) -> Result<String> {
    let name = format!("{}/revive/busybox:1", registry());
    let image = crate::image::busybox_builder(&cluster.control.rootfs().path, &name)?.build()?;
    crate::cri::import_image(&worker.node, &image)?;
    Ok(name)
}

/// The hard limit `limit` (as `/proc/<pid>/limits` names it, e.g. `Max pending signals`) of
/// the node's containerd.
fn containerd_hard_limit(node: &Node, limit: &str) -> Result<u64> {
    let limits = node.sh("cat /proc/$(pidof containerd)/limits")?;
    limits
        .lines()
        .find(|l| l.starts_with(limit))
        .and_then(|l| l[limit.len()..].split_whitespace().nth(1))
        .and_then(|hard| hard.parse().ok())
        .with_context(|| format!("no numeric hard {limit:?} in containerd's limits:\n{limits}"))
}

/// Moves that must fail (see [`failed_move`]).
#[derive(Debug, Clone, Copy)]
pub enum FailedMove {
    /// To a registry nobody serves: the push fails.
    UnreachableRegistry,
    /// To a node that cannot take the checkpoint: node-b's containerd (and so its shims and
    /// containers) gets a lower hard limit of pending signals than node-a's, so the restore
    /// would raise the process's limit, and revive refuses it.
    LowerLimits,
    /// Interrupted by the operator (SIGINT) while the agent builds and pushes the images.
    Interrupted,
    /// To a node that cannot get the base image for its platform: the source pod's image
    /// was side-loaded on node-a, and the registry holds its name for linux/arm64 only.
    BaseForAnotherPlatform,
    /// Onto another base: the source pod's image was side-loaded on node-a, and its name in
    /// the registry names another image (one more file), not the one the checkpoint was
    /// taken on.
    BaseMoved,
}

/// `revive migrate` of the counter pod in the case `case`: it fails with the reason, and
/// leaves the source pod running, nothing else behind. What `revive migrate` printed.
pub fn migrate_fails(
    cluster: &Cluster,
    case: FailedMove,
    narrate: &mut dyn FnMut(&str),
) -> Result<String> {
    let nobody = format!("{CONTROL_IP}:5999/nobody");
    let prepare = |a: &Worker, b: &Worker| match case {
        FailedMove::UnreachableRegistry => Ok(format!("the registry: {nobody}, unserved")),
        FailedMove::LowerLimits => {
            let limit = containerd_hard_limit(&a.node, "Max pending signals")?;
            let lower = (limit / 2).max(64);
            b.node
                .restart_containerd_under(&format!("prlimit --sigpending={lower}:{lower}"))?;
            Ok(format!(
                "{}'s containerd: at most {lower} pending signals, {}'s {limit}",
                b.name, a.name
            ))
        }
        FailedMove::Interrupted => Ok("revive migrate will get SIGINT midway".to_string()),
        FailedMove::BaseForAnotherPlatform => Ok(format!(
            "{}'s platform: linux/{}, the base image's once the pod runs: linux/arm64",
            b.name,
            std::env::consts::ARCH
        )),
        FailedMove::BaseMoved => Ok("the base image's name will name another image".into()),
    };
    let retag = |arch: Option<oci_spec::image::Arch>| -> Result<()> {
        let name = format!("{}/revive/busybox:1", registry());
        let mut other = crate::image::busybox_builder(&cluster.control.rootfs().path, &name)?.file(
            "/etc/retagged",
            "another image under the same name\n",
            0o644,
        );
        if let Some(arch) = arch {
            other = other.architecture(arch);
        }
        push_image(cluster, &other.build()?, &name)
    };
    let attempt = |agent: &str, b: &Worker| match case {
        FailedMove::UnreachableRegistry => {
            revive_migrate_to(cluster, "counter", &b.name, agent, &nobody)
        }
        FailedMove::LowerLimits => revive_migrate(cluster, "counter", &b.name, agent),
        FailedMove::Interrupted => revive_migrate_interrupted(cluster, "counter", &b.name, agent),
        FailedMove::BaseForAnotherPlatform => {
            retag(Some(oci_spec::image::Arch::ARM64))?;
            revive_migrate(cluster, "counter", &b.name, agent)
        }
        FailedMove::BaseMoved => {
            retag(None)?;
            revive_migrate(cluster, "counter", &b.name, agent)
        }
    };
    let side_loaded = matches!(
        case,
        FailedMove::BaseForAnotherPlatform | FailedMove::BaseMoved
    );
    failed_move(cluster, narrate, side_loaded, prepare, attempt)
}

/// The kubelet's command line on `worker`: registered with the API server by its name and
/// address.
fn kubelet_command(worker: &Worker) -> String {
    format!(
        "{} --kubeconfig={KUBELET_CONFIG} --hostname-override={} --node-ip={}",
        kubelet::command(),
        worker.name,
        worker.ip
    )
}

/// Where [`save_counter`] writes the saved pod's manifest, on the control node.
const SAVED: &str = "/root/counter-saved.json";

/// Runs a counter pod on node-a (busybox from the cluster's registry) and saves it to the
/// registry with `revive migrate --save` [`SAVED`], which deletes it; returns its counter
/// before.
fn save_counter(
    cluster: &Cluster,
    narrate: &mut dyn FnMut(&str),
) -> Result<crate::scenario::Counter> {
    let base = push_busybox(cluster)?;
    let agent = push_agent_image(cluster)?;
    let a = cluster.worker("node-a")?;
    cluster.create(&counter_pod("counter", &a.name, &base))?;
    cluster.wait_running("counter")?;
    let id = container_id(&a.node, "counter", "counter")?;
    let before = crictl::wait_for_count(&a.node, &id, 3, None)?;
    let said = cluster.control.run(&[
        "revive",
        "migrate",
        "counter",
        "--save",
        SAVED,
        "--registry",
        &format!("{}/revive/saved", registry()),
        "--agent-image",
        &agent,
    ])?;
    narrate(said.trim());
    Ok(before)
}

/// A node's reboot survived with its pod's state: the counter pod on node-a is saved to
/// the registry (`revive migrate --save`, which deletes the pod), node-a goes through a
/// reboot ([`Cluster::reboot`]), and the saved manifest, created again, brings the counter
/// back on node-a from the registry, counting on with its token. Returns the counter before
/// and after.
pub fn reboot_with_state(
    cluster: &Cluster,
    narrate: &mut dyn FnMut(&str),
) -> Result<(crate::scenario::Counter, crate::scenario::Counter)> {
    let a = cluster.worker("node-a")?;
    let before = save_counter(cluster, narrate)?;
    ensure!(
        cluster
            .kubectl(&["get", "pods", "-o", "name"])?
            .trim()
            .is_empty(),
        "the saved pod is still there"
    );
    cluster.reboot(&a.name)?;
    let left = a.node.run(&["ps", "-eo", "args"])?;
    ensure!(
        !left.contains("sleep"),
        "a container process survived the reboot:\n{left}"
    );
    narrate(&format!(
        "{} rebooted (processes killed, /run wiped, daemons started)",
        a.name
    ));
    cluster.kubectl(&["create", "-f", SAVED])?;
    cluster.wait_running("counter-m1")?;
    let id = container_id(&a.node, "counter-m1", "counter")?;
    let after = crictl::wait_for_count(&a.node, &id, before.count + 1, Some(&before.token))?;
    narrate(&format!(
        "pod counter-m1 on {} after the reboot: {after}",
        a.name
    ));
    Ok((before, after))
}

/// Runs `args` in the network namespace of host process `pid`, with the host's programs.
fn in_netns(pid: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("nsenter")
        .args(["-t", pid, "-n", "--"])
        .args(args)
        .output()
        .context("running nsenter")?;
    ensure!(
        out.status.success(),
        "`{}` in the network namespace of {pid}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Adds the cluster's CA (`ca`, PEM) to `node`'s trusted certificates.
fn trust(node: &Node, ca: &[u8]) -> Result<()> {
    let path = node.host_path("/usr/local/share/ca-certificates/revive-cluster-ca.crt");
    fs::write(&path, ca).with_context(|| format!("writing {}", path.display()))?;
    node.sh("update-ca-certificates >/dev/null 2>&1")
        .context("update-ca-certificates")
        .map(drop)
}

/// The shell script that makes, in [`PKI`]: the CA, the API server's and the registry's
/// serving certificates, the service account signing key, and the client certificates of
/// the administrator, the API server (towards the kubelets) and each worker's kubelet.
fn pki_script(workers: &[&str]) -> String {
    let mut script = format!(
        "set -e; mkdir -p -m 0700 {PKI}; cd {PKI}
key() {{ openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\" 2>/dev/null; }}
key ca.key
openssl req -x509 -new -key ca.key -days 2 -subj '/CN=revive test cluster CA' \\
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \\
  -out ca.crt 2>/dev/null
sign() {{
  key \"$1.key\"
  openssl req -new -key \"$1.key\" -subj \"$2\" -out \"$1.csr\" 2>/dev/null
  printf \"$3\" > \"$1.ext\"
  openssl x509 -req -in \"$1.csr\" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \\
    -extfile \"$1.ext\" -out \"$1.crt\" 2>/dev/null
}}
server='basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\nextendedKeyUsage=serverAuth\\n'
client='basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\nextendedKeyUsage=clientAuth\\n'
sign apiserver /CN=kube-apiserver \"subjectAltName=IP:{CONTROL_IP},IP:10.96.0.1,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\\n$server\"
sign registry /CN=registry \"subjectAltName=IP:{CONTROL_IP}\\n$server\"
sign admin /O=system:masters/CN=revive-admin \"$client\"
sign apiserver-kubelet-client /CN=kube-apiserver-kubelet-client \"$client\"
key sa.key
openssl pkey -in sa.key -pubout -out sa.pub
"
    );
    for worker in workers {
        script.push_str(&format!(
            "sign kubelet-{worker} /O=system:nodes/CN=system:node:{worker} \"$client\"\n"
        ));
    }
    script.push_str("rm -f *.csr *.ext; chmod 600 *.key\n");
    script
}

/// A kubeconfig for `user` of the cluster's API server, with its certificate and key files.
fn kubeconfig(user: &str, cert: &str, key: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: revive
  cluster:
    server: https://{CONTROL_IP}:{API_PORT}
    certificate-authority: {PKI}/ca.crt
users:
- name: \"{user}\"
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: revive
  context:
    cluster: revive
    user: \"{user}\"
current-context: revive
"
    )
}

/// etcd for one API server, on loopback; its data in the node's own file system.
const ETCD: &str = "etcd --name cp --data-dir /var/lib/etcd \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster cp=http://127.0.0.1:2380 --unsafe-no-fsync";

/// kube-apiserver as kubeadm runs it, but for what a test cluster leaves out: Node and
/// RBAC authorization, NodeRestriction, service account tokens signed with the cluster's
/// key, and client certificates towards the kubelets.
fn apiserver_command() -> String {
    format!(
        "kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
         --bind-address=0.0.0.0 --advertise-address={CONTROL_IP} --secure-port={API_PORT} \
         --service-cluster-ip-range=10.96.0.0/16 \
         --client-ca-file={PKI}/ca.crt \
         --tls-cert-file={PKI}/apiserver.crt --tls-private-key-file={PKI}/apiserver.key \
         --service-account-issuer=https://kubernetes.default.svc \
         --service-account-key-file={PKI}/sa.pub \
         --service-account-signing-key-file={PKI}/sa.key \
         --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
         --kubelet-client-certificate={PKI}/apiserver-kubelet-client.crt \
         --kubelet-client-key={PKI}/apiserver-kubelet-client.key \
         --kubelet-preferred-address-types=InternalIP --v=1"
    )
}

/// The project's RuntimeClass (`config/runtimeclass.yaml`), as users install it.
const RUNTIME_CLASS: &str = include_str!("../../config/runtimeclass.yaml");
/// The agent pods' namespace and the migrator's role (`config/migrate.yaml`).
const MIGRATE: &str = include_str!("../../config/migrate.yaml");
/// The project's grant of the kubelets' checkpoint API to the API server
/// (`config/checkpoint-rbac.yaml`).
const CHECKPOINT_RBAC: &str = include_str!("../../config/checkpoint-rbac.yaml");

/// A pod saved to the registry (`revive migrate --save`) and created again from the saved
/// manifest with the annotation `revive.io/sandbox: "true"`, under a new name: through the
/// kubelet and CRI it comes up paused (containerd's task PAUSED, the counter standing
/// still), in a network namespace of its own with only a loopback that is down (its pod's
/// has the CNI's eth0), its root read-only. Returns what was seen, and the token before.
pub fn sandbox_pod(
    cluster: &Cluster,
    narrate: &mut dyn FnMut(&str),
) -> Result<(crictl::SandboxPod, String)> {
    let a = cluster.worker("node-a")?;
    let before = save_counter(cluster, narrate)?;
    let mut pod: Value = serde_json::from_str(&cluster.control.run(&["cat", SAVED])?)
        .context("the saved manifest")?;
    pod["metadata"]["name"] = "counter-sandbox".into();
    pod["metadata"]["annotations"]["revive.io/sandbox"] = "true".into();
    cluster.create(&pod)?;
    cluster.wait_running("counter-sandbox")?;
    let id = container_id(&a.node, "counter-sandbox", "counter")?;
    let view = crictl::sandbox_view(&a.node, &id, None, narrate)?;
    cluster.kubectl(&["delete", "pod", "counter-sandbox", "--wait=true"])?;
    Ok((view, before.token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_have_names_and_addresses_of_their_own() {
        assert_eq!(worker_name(0), "node-a");
        assert_eq!(worker_name(1), "node-b");
        assert_eq!(worker_ip(1), "198.18.0.11");
        assert_eq!(registry(), "198.18.0.1:5000");
    }

    #[test]
    fn every_kubelet_gets_a_node_identity() {
        let script = pki_script(&["node-a", "node-b"]);
        for want in [
            "sign kubelet-node-a /O=system:nodes/CN=system:node:node-a",
            "sign kubelet-node-b /O=system:nodes/CN=system:node:node-b",
            "sign admin /O=system:masters/CN=revive-admin",
            "chmod 600 *.key",
        ] {
            assert!(script.contains(want), "{want} missing from:\n{script}");
        }
    }

    #[test]
    fn the_api_server_authorizes_nodes_and_restricts_them() {
        let command = apiserver_command();
        assert!(command.contains("--authorization-mode=Node,RBAC"));
        assert!(command.contains("--enable-admission-plugins=NodeRestriction"));
        assert!(RUNTIME_CLASS.contains("handler: revive"));
    }
}
