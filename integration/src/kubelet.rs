//! A real kubelet (built from its Go module into the Lts and Latest nodes) drives revive:
//! standalone, with static pods, on the node's containerd whose default CRI runtime is
//! revive (without an API server no RuntimeClass can be resolved). A counter pod is
//! checkpointed through the kubelet's checkpoint API, the archive becomes a checkpoint image
//! (`revive image build`), and the pod's manifest, given that image, brings the counter back
//! restored; three generations of that in a row.
//!
//! The kubelet's writes that would reach the host are kept inside the node: the kernel
//! tunables it sets are files bound over their /proc/sys entries, its cgroups live below the
//! node's cgroup, its iptables chains in the node's network namespace. Its own log goes to
//! `/var/log/revive/kubelet.log` and the pods' logs below `/var/log/revive/pods`, which a
//! failed test keeps.

use std::fmt;
use std::fs;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::cri;
use crate::crictl::{
    self, Archive, Findings, Timeline, build_checkpoint_image, check_archive, read_counter,
    state_of, wait_for_count,
};
use crate::image::BUSYBOX;
use crate::node::{Node, tail};
use crate::scenario::{COUNTER_SCRIPT, Counter};

/// The kubelet's HTTPS server (checkpoint API) and its plain-HTTP health endpoint, both on
/// the node's loopback.
pub const PORT: u16 = 10250;
pub const HEALTHZ_PORT: u16 = 10248;
/// Where the kubelet reads its configuration and static pods.
pub const CONFIG_PATH: &str = "/etc/kubernetes/kubelet.yaml";
pub const MANIFESTS: &str = "/etc/kubernetes/manifests";
/// The kubelet's serving certificate and key (self-signed, made with openssl in the node).
pub const TLS_CERT: &str = "/var/lib/kubelet/pki/kubelet.crt";
pub const TLS_KEY: &str = "/var/lib/kubelet/pki/kubelet.key";
/// Pod logs: below the node's logs directory, which a failed test keeps.
pub const POD_LOGS: &str = "/var/log/revive/pods";
/// The static pod and its container.
pub const POD: &str = "counter";
pub const CONTAINER: &str = "counter";
pub const POD_NAMESPACE: &str = "default";
/// Checkpoint generations: checkpoint, build, restore, and again from the restored pod.
pub const GENERATIONS: u32 = 3;
/// The shim every pod of the node must run on.
pub const RUNTIME_TYPE: &str = "io.containerd.revive.v2";

/// The kernel tunables (below /proc/sys) the kubelet sets at start-up
/// (`setupKernelTunables`): each gets a file of its own bound over it in the node, so that
/// the kubelet's writes stay there.
pub const SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// The kubelet's configuration (`kubelet.config.k8s.io/v1beta1`; every setting the
/// deprecated flags would give is here):
/// - static pods only, no API server; the manifests directory checked every 5 s besides
///   inotify;
/// - CRI on the node's containerd; cgroupfs, as containerd's runc options use; on this cgroup
///   v1 host, which 1.35 and later refuse unless `failCgroupV1` is false; swap not refused;
/// - the checkpoint API (`ContainerCheckpoint`, beta and on by default since 1.30; named so
///   the intent is explicit), on the HTTPS server at 127.0.0.1:10250 with a self-signed
///   certificate, anonymous and allowed to do anything;
/// - no change to its own oom_score_adj (the machine lacks CAP_SYS_RESOURCE to lower it);
/// - no local ephemeral storage accounting (cAdvisor finds no device for the node's overlay
///   root); no DNS configuration passed on from the node's resolv.conf (the node's network
///   is loopback only, its name servers unreachable);
/// - pod logs below the node's logs directory;
/// - image garbage collection and evictions only on a full disk: the test host's disk may
///   be fuller than the defaults allow, and the checkpoint images must not be collected.
pub fn config(node_name: &str, access: &Access<'_>) -> String {
    let (address, authentication, authorization) = match access {
        Access::Loopback => (
            "127.0.0.1".to_string(),
            "  anonymous:\n    enabled: true\n  webhook:\n    enabled: false\n".to_string(),
            "AlwaysAllow",
        ),
        Access::Cluster { ip, ca } => (
            ip.to_string(),
            format!(
                "  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n  \
                 x509:\n    clientCAFile: {ca}\n"
            ),
            "Webhook",
        ),
    };
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# node {node_name}
staticPodPath: {MANIFESTS}
fileCheckFrequency: 5s
containerRuntimeEndpoint: unix://{socket}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
featureGates:
  ContainerCheckpoint: true
address: {address}
port: {PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {HEALTHZ_PORT}
tlsCertFile: {TLS_CERT}
tlsPrivateKeyFile: {TLS_KEY}
authentication:
{authentication}authorization:
  mode: {authorization}
oomScoreAdj: 0
localStorageCapacityIsolation: false
resolvConf: \"\"
podLogsDir: {POD_LOGS}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: \"1Mi\"
  nodefs.available: \"1%\"
  nodefs.inodesFree: \"1%\"
  imagefs.available: \"1%\"
",
        socket = cri::SOCKET
    )
}

/// Who may call a kubelet's API, and where it listens.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// A standalone kubelet: on loopback, anonymous callers allowed everything.
    Loopback,
    /// A kubelet of a cluster: on the node's address `ip`, for clients with a certificate
    /// of the cluster's CA (the certificate file `ca` in the node), each call authorized by
    /// the API server (`SubjectAccessReview`), as kubeadm sets it up.
    Cluster { ip: &'a str, ca: &'a str },
}

/// The kubelet's command line: everything else is in [`config`].
pub fn command() -> String {
    format!("kubelet --config={CONFIG_PATH} --v=2")
}

/// The static pod's manifest: the counter of [`COUNTER_SCRIPT`] from `image`, on the node's
/// network, never pulled, stopped within a second. A container created from a checkpoint
/// image keeps the checkpointed container's command, which restoring it never runs: were it
/// started afresh instead, its counter would show a new token.
pub fn manifest(image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": POD_NAMESPACE},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": CONTAINER,
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", COUNTER_SCRIPT],
            }],
        },
    })
}

/// Writes the static pod's manifest for `image`, replacing any previous one at once (a
/// rename; the kubelet ignores the dot file meanwhile).
pub fn write_manifest(node: &Node, image: &str) -> Result<()> {
    let dir = node.host_path(MANIFESTS);
    let staged = dir.join(format!(".{POD}.json"));
    fs::write(&staged, serde_json::to_vec_pretty(&manifest(image))?)
        .with_context(|| format!("writing {}", staged.display()))?;
    fs::rename(&staged, dir.join(format!("{POD}.json")))
        .with_context(|| format!("installing the manifest in {}", dir.display()))
}

/// Makes `handler` the default runtime of containerd's CRI in the node (appended to its
/// config.toml) and restarts containerd; checks with `containerd config dump`.
pub fn make_default_runtime(node: &Node, handler: &str) -> Result<()> {
    let path = node.host_path("/etc/containerd/config.toml");
    let mut text =
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.push_str(&format!(
        "\n# A kubelet without an API server resolves no RuntimeClass: its pods run on CRI's \
         default runtime.\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n  \
         default_runtime_name = \"{handler}\"\n"
    ));
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    node.restart_containerd()?;
    let dump = node.run(&["containerd", "config", "dump"])?;
    let default = cri::toml_strings(&dump)
        .get("plugins.\"io.containerd.cri.v1.runtime\".containerd")
        .and_then(|s| s.get("default_runtime_name"))
        .cloned()
        .unwrap_or_default();
    ensure!(
        default == handler,
        "containerd's CRI default runtime is {default:?} after adding {handler:?} to {}",
        path.display()
    );
    Ok(())
}

/// Reads the host's values of [`SYSCTLS`].
fn host_sysctls() -> Result<Vec<(String, String)>> {
    SYSCTLS
        .iter()
        .map(|s| {
            let path = format!("/proc/sys/{s}");
            let value = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            Ok((s.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// Everything the kubelet needs in the node before it starts: a /dev/kmsg (its OOM
/// watcher reads it), [`SYSCTLS`] bound over by files of their own, the TLS certificate,
/// the configuration and the manifests directory.
pub fn prepare(node: &Node, node_name: &str, access: &Access<'_>) -> Result<()> {
    node.sh("[ -c /dev/kmsg ] || mknod -m 600 /dev/kmsg c 1 11")
        .context("creating /dev/kmsg in the node (in its private /dev)")?;
    let mut script = String::from("set -e; mkdir -p /run/kubelet-sysctls\n");
    for s in SYSCTLS {
        let file = format!("/run/kubelet-sysctls/{}", s.replace('/', "."));
        script.push_str(&format!(
            "cat /proc/sys/{s} > {file}; mount --bind {file} /proc/sys/{s}; \
             grep -q ' /proc/sys/{s} ' /proc/self/mountinfo\n"
        ));
    }
    node.sh(&script)
        .context("binding files over the kernel tunables the kubelet sets")?;
    node.run(&["mkdir", "-p", "/var/lib/kubelet/pki", MANIFESTS, POD_LOGS])?;
    node.run(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={node_name}"),
        "-addext",
        &match access {
            Access::Loopback => format!("subjectAltName=IP:127.0.0.1,DNS:{node_name}"),
            Access::Cluster { ip, .. } => {
                format!("subjectAltName=IP:127.0.0.1,IP:{ip},DNS:{node_name}")
            }
        },
        "-keyout",
        TLS_KEY,
        "-out",
        TLS_CERT,
    ])
    .context("making the kubelet's self-signed certificate with openssl in the node")?;
    node.run(&["chmod", "600", TLS_KEY])?;
    fs::write(node.host_path(CONFIG_PATH), config(node_name, access))
        .with_context(|| format!("writing {CONFIG_PATH} in the node"))
}

/// Starts the kubelet (log: /var/log/revive/kubelet.log) and waits until its health
/// endpoint answers; fails early, with its log, if it exits. Returns its pid in the node.
pub fn start(node: &Node) -> Result<u32> {
    start_with(node, &command())
}

/// [`start`] with the kubelet's command line `command`.
pub fn start_with(node: &Node, command: &str) -> Result<u32> {
    let pid = node.spawn_daemon("kubelet", command)?;
    let deadline = Instant::now() + crictl::WAIT;
    loop {
        let out = node.exec_timeout(
            &[
                "busybox",
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://127.0.0.1:{HEALTHZ_PORT}/healthz"),
            ],
            Duration::from_secs(10),
        )?;
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
            return Ok(pid);
        }
        let alive = node
            .exec_timeout(&["kill", "-0", &pid.to_string()], Duration::from_secs(10))?
            .status
            .success();
        if !alive || Instant::now() > deadline {
            bail!(
                "the kubelet {} (pid {pid}); last lines of its log:\n{}",
                if alive {
                    "did not become healthy within 120 s"
                } else {
                    "exited"
                },
                log_tail(node, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The last `n` lines of the kubelet's log.
pub fn log_tail(node: &Node, n: usize) -> String {
    tail(
        &fs::read_to_string(node.logs_dir().join("kubelet.log")).unwrap_or_default(),
        n,
    )
}

/// The kubelet's last error lines about the static pod, for failure messages.
pub fn pod_errors(node: &Node) -> String {
    let log = fs::read_to_string(node.logs_dir().join("kubelet.log")).unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(POD) && (l.contains("rror") || l.contains("ailed")))
        .collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a whole HTTP/1.1 response (as read until the server closed the connection):
/// status line, headers, and the body by Content-Length, chunked, or up to the end.
pub fn parse_http_response(raw: &[u8]) -> Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| {
            format!(
                "no end of HTTP headers in {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad HTTP status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if response
        .header("Transfer-Encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("truncated chunk size line")?;
            let size_text = String::from_utf8_lossy(&rest[..end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            rest = &rest[end + 2..];
            if size == 0 {
                break;
            }
            ensure!(rest.len() >= size, "truncated chunk of {size} bytes");
            response.body.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or(&[]);
        }
    } else if let Some(length) = response.header("Content-Length") {
        let length: usize = length.parse().context("bad Content-Length")?;
        ensure!(
            rest.len() >= length,
            "body of {} bytes where Content-Length says {length}",
            rest.len()
        );
        response.body = rest[..length].to_vec();
    } else {
        response.body = rest.to_vec();
    }
    Ok(response)
}

static REQUEST: AtomicU32 = AtomicU32::new(0);

/// `POST path` to the kubelet's HTTPS server, sent from inside the node with `openssl
/// s_client` (its certificate is self-signed; s_client reports that and goes on).
pub fn post(node: &Node, path: &str) -> Result<HttpResponse> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    let file = format!("kubelet-request-{}", REQUEST.fetch_add(1, Ordering::SeqCst));
    fs::write(node.share_dir().join(&file), request)?;
    // -quiet prints only what the server sends, and waits for the server to close the
    // connection after stdin's end.
    let out = node.exec_timeout(
        &[
            "sh",
            "-c",
            &format!("openssl s_client -quiet -connect 127.0.0.1:{PORT} < /share/{file}"),
        ],
        Duration::from_secs(300),
    )?;
    parse_http_response(&out.stdout).with_context(|| {
        format!(
            "POST https://127.0.0.1:{PORT}{path} through openssl s_client ({}): stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// The kubelet's checkpoint API: `POST /checkpoint/<namespace>/<pod>/<container>`; returns
/// the archive's path in the node (`{"items":["/var/lib/kubelet/checkpoints/..."]}`).
pub fn checkpoint(node: &Node, namespace: &str, pod: &str, container: &str) -> Result<String> {
    let path = format!("/checkpoint/{namespace}/{pod}/{container}");
    let response = post(node, &path)?;
    let body = String::from_utf8_lossy(&response.body).into_owned();
    ensure!(
        response.status == 200,
        "the kubelet answered POST {path} with {}: {body}\nkubelet's errors about the pod:\n{}",
        response.status,
        pod_errors(node)
    );
    let answer: Value = serde_json::from_str(&body)
        .with_context(|| format!("the kubelet's checkpoint answer is not JSON: {body:?}"))?;
    let items = answer["items"].as_array().cloned().unwrap_or_default();
    match items.as_slice() {
        [Value::String(archive)] => Ok(archive.clone()),
        _ => bail!("the kubelet's checkpoint answer names no single archive: {body}"),
    }
}

/// Waits (at most [`crictl::WAIT`]) until the static pod runs exactly one container that is
/// none of `seen`, and none of `seen` runs any more; fails at once when a new attempt
/// exited, with what the kubelet and the runtime said. Returns its `crictl ps` entry.
pub fn wait_for_new_container(node: &Node, seen: &[String]) -> Result<Value> {
    let deadline = Instant::now() + crictl::WAIT;
    loop {
        let all = crictl::containers(node, &format!("^{CONTAINER}$"))?;
        let id = |c: &Value| c["id"].as_str().unwrap_or("").to_string();
        let fresh: Vec<&Value> = all.iter().filter(|c| !seen.contains(&id(c))).collect();
        let running_old = all
            .iter()
            .filter(|c| seen.contains(&id(c)) && state_of(c) == "CONTAINER_RUNNING")
            .count();
        let running: Vec<&&Value> = fresh
            .iter()
            .filter(|c| state_of(c) == "CONTAINER_RUNNING")
            .collect();
        if running.len() == 1 && running_old == 0 {
            return Ok((*running[0]).clone());
        }
        let exited = fresh.iter().find(|c| state_of(c) == "CONTAINER_EXITED");
        if exited.is_some() || Instant::now() > deadline {
            let listing: Vec<String> = all
                .iter()
                .map(|c| {
                    format!(
                        "{} {} attempt {} image {}",
                        &id(c)[..13.min(id(c).len())],
                        state_of(c),
                        c["metadata"]["attempt"],
                        c["image"]["image"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            let runtime = exited
                .map(|c| crictl::restore_diagnostics(node, &id(c)))
                .unwrap_or_default();
            bail!(
                "{} (containers: {listing:?})\n{runtime}\nkubelet's errors about the pod:\n{}",
                if exited.is_some() {
                    "a new container of the static pod exited instead of running".to_string()
                } else {
                    format!(
                        "the static pod has no new running container {} s after its manifest \
                         changed",
                        crictl::WAIT.as_secs()
                    )
                },
                pod_errors(node)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The containerd runtime container `id` runs on (`ctr containers info`).
pub fn runtime_of(node: &Node, id: &str) -> Result<String> {
    let info: Value =
        serde_json::from_str(&node.ctr(&["-n", cri::NAMESPACE, "containers", "info", id])?)?;
    Ok(info["Runtime"]["Name"].as_str().unwrap_or("").to_string())
}

/// One generation: the pod checkpointed through the kubelet, and restored from the image.
#[derive(Debug, Clone)]
pub struct Generation {
    pub number: u32,
    /// The counter just before the checkpoint.
    pub checkpointed: Counter,
    pub archive: Archive,
    pub image: String,
    /// The counter of the pod's new container once it came up.
    pub restored: Counter,
    pub container: String,
}

/// What the kubelet scenario saw.
#[derive(Debug)]
pub struct Report {
    pub node_name: String,
    pub kubelet_version: String,
    /// The original container's mounts (`crictl inspect`): what the kubelet adds.
    pub mounts: Vec<String>,
    pub generations: Vec<Generation>,
    pub timeline: Timeline,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} on node {}",
            self.kubelet_version.trim(),
            self.node_name
        )?;
        writeln!(f, "the kubelet's mounts: {}", self.mounts.join(", "))?;
        for g in &self.generations {
            writeln!(
                f,
                "generation {}: checkpointed at {} into {} ({}), image {}, restored as {} at {}",
                g.number,
                g.checkpointed,
                g.archive.path,
                g.archive.entries.join(" "),
                g.image,
                &g.container[..13.min(g.container.len())],
                g.restored
            )?;
        }
        write!(f, "timings:\n{}", self.timeline)
    }
}

/// The kubelet scenario: a standalone kubelet on the node's containerd (revive its default
/// runtime) brings up a static busybox counter pod; [`GENERATIONS`] times, the pod's
/// container is checkpointed through the kubelet's API (a root-only archive with CRIU's
/// images, log and statistics; the container keeps running), `revive image build` makes
/// it a checkpoint image, and the manifest, given that image, brings the pod back restored:
/// the same token, counting on from the checkpoint, on revive, first attempt. Then the
/// manifest is removed and the kubelet stops the pod; the host's kernel tunables are as
/// before.
pub fn kubelet_restores(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Report> {
    let mut findings = Findings::default();
    let before = host_sysctls()?;
    let result = kubelet_steps(node, narrate, &mut findings);
    let after = host_sysctls()?;
    for ((name, was), (_, now)) in before.iter().zip(&after) {
        if !findings.expect(was == now, || {
            format!(
                "the host's /proc/sys/{name} changed from {was} to {now} while the kubelet ran \
                 (set back)"
            )
        }) {
            let _ = fs::write(format!("/proc/sys/{name}"), was);
        }
    }
    findings.finish(result)
}

fn kubelet_steps(
    node: &Node,
    narrate: &mut dyn FnMut(&str),
    findings: &mut Findings,
) -> Result<Report> {
    let mut timeline = Timeline::new();
    crictl::require(node)?;
    let found = node.exec_timeout(&["test", "-x", "/usr/local/bin/kubelet"], crictl::WAIT)?;
    ensure!(
        found.status.success(),
        "node {} has no /usr/local/bin/kubelet: only the lts and latest flavours build it",
        node.name()
    );
    let kubelet_version = node.run(&["kubelet", "--version"])?;
    crictl::configure(node)?;
    make_default_runtime(node, crictl::HANDLER)?;
    timeline.step(
        narrate,
        &format!(
            "containerd restarted with {} as CRI's default runtime",
            crictl::HANDLER
        ),
    );
    crictl::import_base_images(node)?;
    let node_name = node.run(&["hostname"])?.trim().to_lowercase();
    prepare(node, &node_name, &Access::Loopback)?;
    write_manifest(node, BUSYBOX)?;
    let pid = start(node)?;
    timeline.step(
        narrate,
        &format!("{} (pid {pid}) healthy", kubelet_version.trim()),
    );

    let mut seen: Vec<String> = Vec::new();
    let first = wait_for_new_container(node, &seen)?;
    let mut current = first["id"].as_str().unwrap_or("").to_string();
    seen.push(current.clone());
    let runtime = runtime_of(node, &current)?;
    ensure!(
        runtime == RUNTIME_TYPE,
        "the static pod's container runs on {runtime:?}, not {RUNTIME_TYPE}: containerd's \
         default runtime did not take"
    );
    let start = wait_for_count(node, &current, 3, None)?;
    let token = start.token.clone();
    let inspected = crictl::inspect(node, &current)?;
    let mounts: Vec<String> = inspected["status"]["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{} <- {}",
                m["containerPath"].as_str().unwrap_or("?"),
                m["hostPath"].as_str().unwrap_or("?")
            )
        })
        .collect();
    timeline.step(
        narrate,
        &format!("static pod {POD} runs container {current} on {runtime}: {start}"),
    );
    narrate(&format!("the kubelet's mounts: {}", mounts.join(", ")));

    let pod_name = format!("{POD}-{node_name}");
    let mut generations = Vec::new();
    for number in 1..=GENERATIONS {
        let checkpointed = read_counter(node, &current)?;
        let archive = checkpoint(node, POD_NAMESPACE, &pod_name, CONTAINER)
            .with_context(|| format!("generation {number}: the kubelet's checkpoint API"))?;
        timeline.step(
            narrate,
            &format!(
                "generation {number}: POST /checkpoint/{POD_NAMESPACE}/{pod_name}/{CONTAINER} \
                 -> {archive}"
            ),
        );
        let archive = check_archive(node, &archive, findings)
            .with_context(|| format!("generation {number}: the kubelet's checkpoint archive"))?;
        let went_on = wait_for_count(node, &current, checkpointed.count + 2, Some(&token))
            .with_context(|| {
                format!(
                    "generation {number}: the container did not keep running after the checkpoint"
                )
            })?;
        let state = state_of(&crictl::inspect(node, &current)?).to_string();
        findings.expect(state == "CONTAINER_RUNNING", || {
            format!("generation {number}: container {current} is {state} after its checkpoint")
        });
        narrate(&format!(
            "archive holds {}; the container runs on: {went_on}",
            archive.entries.join(" ")
        ));

        let image = format!("revive.test/kubelet/{POD}:gen{number}");
        let built = build_checkpoint_image(node, &archive.path, &image)
            .with_context(|| format!("generation {number}: revive image build"))?;
        timeline.step(narrate, &format!("generation {number}: {built}"));

        write_manifest(node, &image)?;
        let entry = wait_for_new_container(node, &seen)
            .with_context(|| format!("generation {number}: the pod from {image}"))?;
        current = entry["id"].as_str().unwrap_or("").to_string();
        seen.push(current.clone());
        let restored = wait_for_count(node, &current, checkpointed.count + 3, Some(&token))
            .with_context(|| format!("generation {number}: the pod from {image}"))?;
        let attempt = entry["metadata"]["attempt"].as_u64().unwrap_or(u64::MAX);
        findings.expect(attempt == 0, || {
            format!(
                "generation {number}: the restored container {current} is attempt {attempt}: \
                 earlier attempts failed\n{}",
                pod_errors(node)
            )
        });
        let runtime = runtime_of(node, &current)?;
        findings.expect(runtime == RUNTIME_TYPE, || {
            format!("generation {number}: the restored container runs on {runtime:?}")
        });
        timeline.step(
            narrate,
            &format!(
                "generation {number}: manifest -> {image}: container {current} restored at \
                 {restored} (checkpointed at {checkpointed})"
            ),
        );
        generations.push(Generation {
            number,
            checkpointed,
            archive,
            image,
            restored,
            container: current.clone(),
        });
    }

    fs::remove_file(node.host_path(&format!("{MANIFESTS}/{POD}.json")))?;
    let deadline = Instant::now() + crictl::WAIT;
    loop {
        let running = crictl::containers(node, &format!("^{CONTAINER}$"))?
            .iter()
            .filter(|c| state_of(c) == "CONTAINER_RUNNING")
            .count();
        if running == 0 {
            break;
        }
        if !findings.expect(Instant::now() < deadline, || {
            format!(
                "the kubelet did not stop the restored pod within {} s of its manifest's \
                 removal\n{}",
                crictl::WAIT.as_secs(),
                pod_errors(node)
            )
        }) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    timeline.step(narrate, "manifest removed: the kubelet stopped the pod");
    Ok(Report {
        node_name,
        kubelet_version,
        mounts,
        generations,
        timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_length_chunks_or_neither_parse() {
        let r = parse_http_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n\
              {\"items\":[]}",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, b"{\"items\":[]}");
        let r = parse_http_response(
            b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (500, &b"hello world"[..]));
        let r = parse_http_response(b"HTTP/1.0 404 Not Found\r\n\r\npod does not exist").unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (404, &b"pod does not exist"[..])
        );
        assert!(parse_http_response(b"").is_err());
        assert!(parse_http_response(b"garbage\r\n\r\n").is_err());
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    }

    #[test]
    fn config_names_what_a_standalone_kubelet_needs() {
        let c = config("revive-lts", &Access::Loopback);
        for want in [
            "staticPodPath: /etc/kubernetes/manifests",
            "containerRuntimeEndpoint: unix:///run/containerd/containerd.sock",
            "cgroupDriver: cgroupfs",
            "failCgroupV1: false",
            "failSwapOn: false",
            "ContainerCheckpoint: true",
            "mode: AlwaysAllow",
            "oomScoreAdj: 0",
            "localStorageCapacityIsolation: false",
            "tlsCertFile: /var/lib/kubelet/pki/kubelet.crt",
        ] {
            assert!(c.contains(want), "{want} missing from:\n{c}");
        }
        assert!(!c.contains('\t'), "YAML must not hold tabs");
    }

    #[test]
    fn a_cluster_kubelet_listens_on_its_address_for_the_clusters_clients_only() {
        let c = config(
            "node-a",
            &Access::Cluster {
                ip: "198.18.0.10",
                ca: "/etc/kubernetes/pki/ca.crt",
            },
        );
        for want in [
            "address: 198.18.0.10\n",
            "  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n",
            "  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n",
            "authorization:\n  mode: Webhook\n",
        ] {
            assert!(c.contains(want), "{want} missing from:\n{c}");
        }
        assert!(!c.contains("AlwaysAllow"));
    }

    #[test]
    fn manifest_is_a_host_network_static_pod_never_pulled() {
        let m = manifest("revive.test/kubelet/counter:gen1");
        assert_eq!(m["spec"]["hostNetwork"], true);
        let c = &m["spec"]["containers"][0];
        assert_eq!(c["image"], "revive.test/kubelet/counter:gen1");
        assert_eq!(c["imagePullPolicy"], "Never");
        assert_eq!(c["name"], CONTAINER);
    }
}
