//! `crictl` (cri-tools, built from its Go module into the Lts and Latest nodes) against a
//! node's containerd, and the CRI-O blog's restore-outside-Kubernetes steps on revive: a pod
//! on RuntimeClass handler `revive` runs a counter, `crictl checkpoint --export` writes a
//! checkpoint archive, `revive image build` makes it a checkpoint image, and a new pod whose
//! container is created from that image comes up restored.
//!
//! Also the pieces the kubelet scenario ([`crate::kubelet`]) shares: reading a container's
//! counter through CRI, checking a checkpoint archive, building and importing a checkpoint
//! image, and [`Findings`] and [`Timeline`] for the report.

use std::fmt;
use std::fs;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

use crate::cri;
use crate::image::{BUSYBOX, Image};
use crate::node::Node;
use crate::scenario::{COUNTER_SCRIPT, Counter, parse_counter};

/// Where crictl reads its configuration.
pub const CONFIG_PATH: &str = "/etc/crictl.yaml";
/// crictl's configuration in a node: the node's containerd for runtime and images, a timeout
/// long enough for a checkpoint on a loaded machine, and never a pull (no registry).
pub const CONFIG: &str = "runtime-endpoint: unix:///run/containerd/containerd.sock\n\
                          image-endpoint: unix:///run/containerd/containerd.sock\n\
                          timeout: 120\n\
                          debug: false\n\
                          pull-image-on-create: false\n";
/// The RuntimeClass handler under test.
pub const HANDLER: &str = "revive";
/// The annotation format `revive image build` writes here: CRI-O's, on the manifest.
/// containerd 2.3 refuses images annotated `org.criu.checkpoint.*` on their index in CRI
/// (its own restore-via-create is off by default) before any runtime sees them.
pub const IMAGE_FORMAT: &str = "cri-o";
/// How long a container may take to come up, a counter to advance, an image to appear.
pub const WAIT: Duration = Duration::from_secs(120);
/// How long one crictl call may take (a checkpoint included).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// The checkpoint archive entries every restore needs: CRIU's images, the container's
/// config and spec.
pub const REQUIRED_ENTRIES: &[&str] = &["checkpoint/", "config.dump", "spec.dump"];
/// Entries a complete Kubernetes checkpoint archive also holds: CRIU's log and statistics
/// (what `checkpointctl inspect --stats` reads).
pub const EXPECTED_ENTRIES: &[&str] = &["dump.log", "stats-dump"];

/// Checks that fail without stopping the scenario, so that one run shows every defect the
/// later steps can still reach; the scenario fails at the end if any did.
#[derive(Debug, Default)]
pub struct Findings(Vec<String>);

impl Findings {
    /// Records `failure()` unless `ok`; returns `ok`.
    pub fn expect(&mut self, ok: bool, failure: impl FnOnce() -> String) -> bool {
        if !ok {
            let text = failure();
            eprintln!("  FAILED CHECK: {text}");
            self.0.push(text);
        }
        ok
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scenario's outcome with the recorded failures: an error naming all of them
    /// (after the error that stopped the scenario, if one did).
    pub fn finish<T>(self, result: Result<T>) -> Result<T> {
        let list = self
            .0
            .iter()
            .map(|f| format!("\n  - {f}"))
            .collect::<String>();
        match result {
            Ok(_) if !self.0.is_empty() => Err(anyhow!(
                "the scenario ran to its end, but these checks failed:{list}"
            )),
            Err(err) if !self.0.is_empty() => Err(anyhow!(
                "{err:#}\nchecks that had already failed before that:{list}"
            )),
            result => result,
        }
    }
}

/// The scenario's steps with the time each took, narrated as they finish.
#[derive(Debug)]
pub struct Timeline {
    started: Instant,
    last: Instant,
    pub steps: Vec<(String, Duration)>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

impl Timeline {
    pub fn new() -> Timeline {
        let now = Instant::now();
        Timeline {
            started: now,
            last: now,
            steps: Vec::new(),
        }
    }

    /// Records `what` as done now, with the time since the previous step.
    pub fn step(&mut self, narrate: &mut dyn FnMut(&str), what: &str) {
        let took = self.last.elapsed();
        self.last = Instant::now();
        narrate(&format!(
            "[{:>6.1}s, step {:>5.1}s] {what}",
            self.started.elapsed().as_secs_f64(),
            took.as_secs_f64()
        ));
        self.steps.push((what.to_string(), took));
    }

    pub fn total(&self) -> Duration {
        self.started.elapsed()
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (what, took) in &self.steps {
            writeln!(f, "  {:>6.1}s  {what}", took.as_secs_f64())?;
        }
        write!(f, "  {:>6.1}s  in all", self.total().as_secs_f64())
    }
}

/// Fails unless the node has crictl (the Lts and Latest flavours build it) and a containerd
/// with CRI's CheckpointContainer (2.x).
pub fn require(node: &Node) -> Result<()> {
    let containerd = node.version("containerd").unwrap_or("");
    ensure!(
        !containerd.starts_with("1."),
        "node {} runs containerd {containerd}, which has no CRI CheckpointContainer: run \
         this scenario on the lts or latest flavour",
        node.name()
    );
    let found = node.exec_timeout(&["test", "-x", "/usr/local/bin/crictl"], CALL_TIMEOUT)?;
    ensure!(
        found.status.success(),
        "node {} has no /usr/local/bin/crictl: only the lts and latest flavours build it (see \
         rootfs::Flavour::peers)",
        node.name()
    );
    Ok(())
}

/// Writes [`CONFIG`] to the node's /etc/crictl.yaml.
pub fn configure(node: &Node) -> Result<()> {
    let path = node.host_path(CONFIG_PATH);
    fs::write(&path, CONFIG).with_context(|| format!("writing {}", path.display()))
}

/// Runs `crictl args` in the node; fails with its output unless it exits 0. Returns stdout.
pub fn crictl(node: &Node, args: &[&str]) -> Result<String> {
    let mut full = vec!["crictl"];
    full.extend_from_slice(args);
    let out = node.exec_timeout(&full, CALL_TIMEOUT)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\nstdout: {}\nstderr: {}",
            full.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `crictl command -o json args...`, parsed (crictl takes flags only before the first
/// argument).
pub fn crictl_json(node: &Node, args: &[&str]) -> Result<Value> {
    let (command, rest) = args.split_first().context("crictl without a command")?;
    let mut full = vec![*command, "-o", "json"];
    full.extend_from_slice(rest);
    let out = crictl(node, &full)?;
    serde_json::from_str(&out).with_context(|| format!("crictl {} printed {out:?}", args.join(" ")))
}

/// The containers `crictl ps -a` lists whose name matches the regular expression `name`.
pub fn containers(node: &Node, name: &str) -> Result<Vec<Value>> {
    let listed = crictl_json(node, &["ps", "-a", "--name", name])?;
    Ok(listed["containers"].as_array().cloned().unwrap_or_default())
}

/// A container's state as crictl prints it in JSON (`CONTAINER_RUNNING`, ...), from a `ps`
/// entry or an `inspect` answer.
pub fn state_of(container: &Value) -> &str {
    container["state"]
        .as_str()
        .or_else(|| container["status"]["state"].as_str())
        .unwrap_or("")
}

/// `crictl inspect id`, parsed.
pub fn inspect(node: &Node, id: &str) -> Result<Value> {
    crictl_json(node, &["inspect", id])
}

/// Reads the counter of [`COUNTER_SCRIPT`] in container `id` (CRI ExecSync).
pub fn read_counter(node: &Node, id: &str) -> Result<Counter> {
    parse_counter(&crictl(node, &["exec", "--sync", id, "cat", "/state"])?)
}

/// Waits (at most [`WAIT`]) until container `id`'s counter has reached `min`; fails at once
/// when it shows another token than `token` (when given): a process started afresh.
pub fn wait_for_count(node: &Node, id: &str, min: u64, token: Option<&str>) -> Result<Counter> {
    let deadline = Instant::now() + WAIT;
    loop {
        let read = read_counter(node, id);
        if let (Ok(counter), Some(token)) = (&read, token) {
            ensure!(
                counter.token == token,
                "container {id} counts with token {} where {token} was checkpointed: it was \
                 started afresh instead of restored (now at {counter})",
                counter.token
            );
        }
        match read {
            Ok(counter) if counter.count >= min => return Ok(counter),
            Ok(counter) if Instant::now() > deadline => {
                bail!("the counter of container {id} is stuck at {counter} (waited for {min})")
            }
            Err(err) if Instant::now() > deadline => {
                return Err(err.context(format!("reading the counter of container {id}")));
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Imports the sandbox ("pause") image containerd expects and the busybox image into CRI's
/// namespace, and waits until CRI knows both.
pub fn import_base_images(node: &Node) -> Result<()> {
    let config = cri::cri_config(node)?;
    cri::import_image(node, &cri::pause_image(node, &config.sandbox_image)?)?;
    cri::import_image(node, &Image::busybox(&node.rootfs().path)?)?;
    wait_for_image(node, &config.sandbox_image)?;
    wait_for_image(node, BUSYBOX)
}

/// Waits (bounded) until CRI knows `image` (`crictl inspecti`): an import reaches CRI's image
/// store through containerd's events.
pub fn wait_for_image(node: &Node, image: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match crictl(node, &["inspecti", image]) {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() > deadline => {
                return Err(err.context(format!(
                    "CRI does not know image {image} 30 s after its import into namespace {}",
                    cri::NAMESPACE
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// What a checkpoint archive held.
#[derive(Debug, Clone)]
pub struct Archive {
    /// The archive's path in the node.
    pub path: String,
    /// Its top-level entries (directories with a trailing slash).
    pub entries: Vec<String>,
}

/// Checks the checkpoint archive at `path` in the node: root-only (0600, owned by root) and
/// holding [`EXPECTED_ENTRIES`] (recorded in `findings`), and [`REQUIRED_ENTRIES`] with
/// CRIU's process tree (else an error: nothing can be restored from it).
pub fn check_archive(node: &Node, path: &str, findings: &mut Findings) -> Result<Archive> {
    let owner = node.run(&["stat", "-c", "%a %U", path])?;
    findings.expect(owner.trim() == "600 root", || {
        format!(
            "the checkpoint archive {path} is {}, not 600 root: it holds every memory page of \
             the container",
            owner.trim()
        )
    });
    let listing = node.run(&["tar", "-tf", path])?;
    let entries = cri::top_level_entries(&listing);
    let lacking = |wanted: &[&str]| -> Vec<String> {
        wanted
            .iter()
            .filter(|w| !entries.iter().any(|e| e == *w))
            .map(|w| w.to_string())
            .collect()
    };
    let missing = lacking(REQUIRED_ENTRIES);
    ensure!(
        missing.is_empty(),
        "the checkpoint archive {path} lacks {missing:?}; it has {entries:?}"
    );
    ensure!(
        listing
            .lines()
            .any(|l| l.ends_with("checkpoint/pstree.img")),
        "the checkpoint archive {path} has no CRIU process tree (checkpoint/pstree.img):\n\
         {listing}"
    );
    let missing = lacking(EXPECTED_ENTRIES);
    findings.expect(missing.is_empty(), || {
        format!(
            "the checkpoint archive {path} lacks {missing:?} (CRIU's dump log and statistics, \
             which a complete Kubernetes checkpoint holds); it has {entries:?}"
        )
    });
    Ok(Archive {
        path: path.to_string(),
        entries,
    })
}

/// `revive image build --format cri-o` of the archive at `archive` in the node into image
/// `reference`, imported into CRI's namespace and unpacked into revive-snapshotter; waits
/// until CRI knows it. Returns what `revive image build` printed.
pub fn build_checkpoint_image(node: &Node, archive: &str, reference: &str) -> Result<String> {
    let stem: String = reference
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let out = format!("/share/{stem}.tar");
    let built = node.run(&[
        "revive",
        "image",
        "build",
        "--format",
        IMAGE_FORMAT,
        archive,
        reference,
        "-o",
        &out,
    ])?;
    node.ctr(&[
        "-n",
        cri::NAMESPACE,
        "images",
        "import",
        "--snapshotter",
        crate::snapshotter::SNAPSHOTTER,
        &out,
    ])?;
    wait_for_image(node, reference)?;
    Ok(built.trim().to_string())
}

/// A pod sandbox config for `crictl runp`, as the kubelet sends one for a
/// `hostNetwork: true` pod: the node's network (no CNI), no hostname (there is no private
/// UTS namespace to set it in), a pid namespace per container, the pod's ipc namespace.
pub fn pod_config(name: &str, uid: &str) -> Value {
    json!({
        "metadata": {"name": name, "uid": uid, "namespace": "default", "attempt": 0},
        "log_directory": log_directory(name, uid),
        "labels": {"io.kubernetes.pod.name": name},
        "linux": {
            "cgroup_parent": format!("/kubepods/besteffort/pod{uid}"),
            "security_context": {
                "namespace_options": {"network": 2, "pid": 1, "ipc": 0}
            }
        }
    })
}

fn log_directory(name: &str, uid: &str) -> String {
    format!("{}/default_{name}_{uid}", cri::POD_LOG_ROOT)
}

/// A container config for `crictl create`: [`COUNTER_SCRIPT`] from `image`, in host
/// network pod `pod` (labelled as the kubelet labels its containers). A checkpoint image has
/// no command of its own, so a container created from one names the checkpointed
/// container's command, which restoring it never runs.
pub fn counter_config(name: &str, pod: &str, image: &str) -> Value {
    json!({
        "metadata": {"name": name, "attempt": 0},
        "image": {"image": image},
        "command": ["sh", "-c", COUNTER_SCRIPT],
        "log_path": format!("{name}.log"),
        "labels": {
            "io.kubernetes.container.name": name,
            "io.kubernetes.pod.name": pod,
            "io.kubernetes.pod.namespace": "default",
        },
        "linux": {
            "security_context": {
                "namespace_options": {"network": 2, "pid": 1, "ipc": 0}
            }
        }
    })
}

/// Writes `value` to /share/`file` of the node; returns its path in the node.
fn share_json(node: &Node, file: &str, value: &Value) -> Result<String> {
    fs::write(
        node.share_dir().join(file),
        serde_json::to_vec_pretty(value)?,
    )?;
    Ok(format!("/share/{file}"))
}

/// `crictl runp --runtime revive` of [`pod_config`] `name`, then `crictl create` and
/// `crictl start` of [`counter_config`] from `image` in it. Returns (pod id, container id).
fn run_counter_pod(node: &Node, name: &str, uid: &str, image: &str) -> Result<(String, String)> {
    run_pod(node, name, uid, &counter_config("counter", name, image))
}

/// `crictl runp --runtime revive` of [`pod_config`] `name`, then `crictl create` and
/// `crictl start` of the container config `ctr` in it. Returns (pod id, container id).
pub fn run_pod(node: &Node, name: &str, uid: &str, ctr: &Value) -> Result<(String, String)> {
    run_pod_on(node, HANDLER, name, uid, ctr)
}

/// [`run_pod`] on RuntimeClass handler `runtime` (`runc` is the Go shim).
pub fn run_pod_on(
    node: &Node,
    runtime: &str,
    name: &str,
    uid: &str,
    ctr: &Value,
) -> Result<(String, String)> {
    let (pod_id, id) = create_in_pod(node, runtime, name, uid, &pod_config(name, uid), ctr)?;
    if let Err(err) = crictl(node, &["start", &id]) {
        return Err(err.context(restore_diagnostics(node, &id)));
    }
    Ok((pod_id, id))
}

/// `crictl runp --runtime runtime` of the pod config `pod` (named `name`, uid `uid`), then
/// `crictl create` of the container config `ctr` in it, not started. Returns (pod id,
/// container id).
pub fn create_in_pod(
    node: &Node,
    runtime: &str,
    name: &str,
    uid: &str,
    pod: &Value,
    ctr: &Value,
) -> Result<(String, String)> {
    node.run(&["mkdir", "-p", &log_directory(name, uid)])?;
    let pod_file = share_json(node, &format!("crictl-pod-{name}.json"), pod)?;
    let ctr_file = share_json(node, &format!("crictl-ctr-{name}.json"), ctr)?;
    let pod_id = crictl(node, &["runp", "--runtime", runtime, &pod_file])?
        .trim()
        .to_string();
    let handler = crictl_json(node, &["inspectp", &pod_id])?["status"]["runtimeHandler"]
        .as_str()
        .unwrap_or("")
        .to_string();
    ensure!(
        handler == runtime,
        "crictl runp --runtime {runtime} made pod {pod_id} on handler {handler:?}"
    );
    let id = crictl(node, &["create", &pod_id, &ctr_file, &pod_file])?
        .trim()
        .to_string();
    Ok((pod_id, id))
}

/// What the node says about a container that did not come up: its CRI status and CRIU's
/// restore log, if one was written.
pub fn restore_diagnostics(node: &Node, id: &str) -> String {
    let status = inspect(node, id)
        .map(|v| {
            format!(
                "state {} reason {:?} message {:?} exit code {}",
                state_of(&v),
                v["status"]["reason"].as_str().unwrap_or(""),
                v["status"]["message"].as_str().unwrap_or(""),
                v["status"]["exitCode"]
            )
        })
        .unwrap_or_else(|e| format!("crictl inspect {id}: {e:#}"));
    let criu = node
        .sh(
            "for f in $(find /run/containerd /var/lib/revive -name '*restore*.log' 2>/dev/null); \
             do echo \"== $f\"; tail -25 \"$f\"; done",
        )
        .unwrap_or_default();
    format!("container {id}: {status}\nCRIU restore logs:\n{criu}")
}

/// Waits (at most [`WAIT`]) until `crictl inspect` reports container `id` running.
pub fn wait_running(node: &Node, id: &str) -> Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let inspected = inspect(node, id)?;
        match state_of(&inspected) {
            "CONTAINER_RUNNING" => return Ok(inspected),
            "CONTAINER_EXITED" => bail!(
                "container {id} exited instead of running\n{}",
                restore_diagnostics(node, id)
            ),
            state if Instant::now() > deadline => bail!(
                "container {id} is {state} {} s after it was started, not running",
                WAIT.as_secs()
            ),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// What the crictl scenario saw.
#[derive(Debug)]
pub struct Report {
    pub crictl_version: String,
    /// The counter just before the checkpoint, and once restored.
    pub checkpointed: Counter,
    pub restored: Counter,
    pub archive: Archive,
    pub built: String,
    /// `crictl ps` once the restored container runs.
    pub ps: String,
    pub timeline: Timeline,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.crictl_version.trim())?;
        writeln!(
            f,
            "archive {} holds {}",
            self.archive.path,
            self.archive.entries.join(" ")
        )?;
        writeln!(f, "{}", self.built)?;
        writeln!(
            f,
            "checkpointed at {}, restored at {}",
            self.checkpointed, self.restored
        )?;
        writeln!(f, "crictl ps:\n{}", self.ps.trim_end())?;
        write!(f, "timings:\n{}", self.timeline)
    }
}

/// The CRI-O blog's restore outside Kubernetes, with crictl on revive: `crictl runp
/// --runtime revive`, `crictl create` and `crictl start` of a busybox counter;
/// `crictl checkpoint --export` (a root-only archive holding CRIU's images, log and
/// statistics; the container keeps running); `revive image build` into a checkpoint image;
/// the pod removed; a new pod whose container is created from the checkpoint image comes up
/// restored (its token, counting on from the checkpoint), and `crictl inspect` and
/// `crictl ps` show it running.
pub fn crictl_restores(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Report> {
    let mut findings = Findings::default();
    let result = crictl_steps(node, narrate, &mut findings);
    findings.finish(result)
}

fn crictl_steps(
    node: &Node,
    narrate: &mut dyn FnMut(&str),
    findings: &mut Findings,
) -> Result<Report> {
    let mut timeline = Timeline::new();
    require(node)?;
    configure(node)?;
    let crictl_version = crictl(node, &["version"])?;
    import_base_images(node)?;
    timeline.step(narrate, "pause and busybox images imported into k8s.io");

    let (pod_id, id) = run_counter_pod(
        node,
        "crictl-counter",
        "7a3e51c0-0000-4000-8000-0000000000c1",
        BUSYBOX,
    )?;
    let first = wait_for_count(node, &id, 3, None)?;
    timeline.step(
        narrate,
        &format!("crictl runp/create/start: pod {pod_id}, container {id} at {first}"),
    );

    let path = "/var/lib/checkpoints/crictl-counter.tar";
    node.run(&["mkdir", "-p", "/var/lib/checkpoints"])?;
    let checkpointed = read_counter(node, &id)?;
    crictl(node, &["checkpoint", &format!("--export={path}"), &id])?;
    timeline.step(narrate, &format!("crictl checkpoint --export={path} {id}"));
    let archive = check_archive(node, path, findings)?;
    narrate(&format!("archive holds {}", archive.entries.join(" ")));
    let after = wait_for_count(node, &id, checkpointed.count + 2, Some(&checkpointed.token))
        .context("the container did not keep running after crictl checkpoint")?;
    findings.expect(
        state_of(&inspect(node, &id)?) == "CONTAINER_RUNNING",
        || format!("container {id} is not running after crictl checkpoint"),
    );
    timeline.step(
        narrate,
        &format!("the checkpointed container runs on: {after}"),
    );

    let reference = "revive.test/crictl/counter:1";
    let built = build_checkpoint_image(node, path, reference)?;
    timeline.step(narrate, &format!("revive image build: {built}"));

    crictl(node, &["stopp", &pod_id])?;
    crictl(node, &["rmp", &pod_id])?;
    timeline.step(narrate, &format!("pod {pod_id} stopped and removed"));

    let (restored_pod, restored_id) = run_counter_pod(
        node,
        "crictl-restored",
        "7a3e51c0-0000-4000-8000-0000000000c2",
        reference,
    )?;
    let inspected = wait_running(node, &restored_id)?;
    let restored = wait_for_count(
        node,
        &restored_id,
        checkpointed.count + 3,
        Some(&checkpointed.token),
    )?;
    timeline.step(
        narrate,
        &format!(
            "pod {restored_pod}: container {restored_id} from {reference} is restored: \
             {restored} (checkpointed at {checkpointed})"
        ),
    );
    let image = inspected["status"]["image"]["image"].as_str().unwrap_or("");
    findings.expect(image == reference, || {
        format!("crictl inspect {restored_id} names image {image:?}, not {reference}")
    });
    let listed = crictl_json(node, &["ps", "--id", &restored_id])?;
    let listed = listed["containers"].as_array().cloned().unwrap_or_default();
    findings.expect(
        listed.len() == 1 && state_of(&listed[0]) == "CONTAINER_RUNNING",
        || format!("crictl ps --id {restored_id} does not list it running: {listed:?}"),
    );
    let ps = crictl(node, &["ps"])?;
    findings.expect(
        ps.contains(&restored_id[..13.min(restored_id.len())]),
        || format!("crictl ps does not list the restored container {restored_id}:\n{ps}"),
    );
    Ok(Report {
        crictl_version,
        checkpointed,
        restored,
        archive,
        built,
        ps,
        timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_fail_the_scenario_at_its_end() {
        let mut f = Findings::default();
        assert!(f.expect(true, || unreachable!()));
        assert!(f.finish(Ok(1)).is_ok());
        let mut f = Findings::default();
        assert!(!f.expect(false, || "archive lacks dump.log".into()));
        let err = format!("{:#}", f.finish(Ok(1)).unwrap_err());
        assert!(
            err.contains("ran to its end") && err.contains("dump.log"),
            "{err}"
        );
        let mut f = Findings::default();
        f.expect(false, || "first".into());
        let err = format!("{:#}", f.finish::<()>(Err(anyhow!("second"))).unwrap_err());
        assert!(err.starts_with("second") && err.contains("first"), "{err}");
    }

    #[test]
    fn pod_and_container_configs_are_what_crictl_reads() {
        let pod = pod_config("p", "u");
        assert_eq!(pod["metadata"]["name"], "p");
        assert_eq!(
            pod["linux"]["security_context"]["namespace_options"]["network"],
            2
        );
        assert!(pod.get("hostname").is_none());
        let ctr = counter_config("c", "p", "img:1");
        assert_eq!(ctr["image"]["image"], "img:1");
        assert_eq!(ctr["command"][2], COUNTER_SCRIPT);
    }

    #[test]
    fn states_come_from_ps_and_inspect() {
        assert_eq!(
            state_of(&json!({"state": "CONTAINER_RUNNING"})),
            "CONTAINER_RUNNING"
        );
        assert_eq!(
            state_of(&json!({"status": {"state": "CONTAINER_EXITED"}})),
            "CONTAINER_EXITED"
        );
        assert_eq!(state_of(&json!({})), "");
    }
}

/// What [`sandbox_in_a_pod`] saw of the sandboxed restore.
#[derive(Debug)]
pub struct SandboxPod {
    /// containerd's status of its task (`ctr -n k8s.io task ls`).
    pub status: String,
    /// The counter at the checkpoint, and read from the paused restore's root twice, 2 s
    /// apart.
    pub checkpointed: Counter,
    pub paused: (Counter, Counter),
    /// `ip -o link` in its network namespace (the pod's has eth0), and its root's options.
    pub links: String,
    pub pod_links: String,
    pub root_options: String,
}

/// A counter in a pod with a CNI network, checkpointed through CRI and made a checkpoint
/// image, restored with the annotation `revive.io/sandbox=true` into a second such pod: it
/// comes up paused, in a network namespace of its own holding only a loopback that is
/// down (the pod's has its eth0), its root read-only.
pub fn sandbox_in_a_pod(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<SandboxPod> {
    require(node)?;
    configure(node)?;
    import_base_images(node)?;
    crate::cluster::pod_network(node, 0)?;
    let in_pod_network = |name: &str, uid: &str| {
        let mut pod = pod_config(name, uid);
        pod["linux"]["security_context"]["namespace_options"]["network"] = 0.into();
        pod
    };
    let run = |name: &str, uid: &str, ctr: &Value| {
        create_in_pod(node, HANDLER, name, uid, &in_pod_network(name, uid), ctr)
    };
    let (pod, id) = run(
        "sandbox-source",
        "7a3e51c0-0000-4000-8000-0000000000a1",
        &counter_config("counter", "sandbox-source", BUSYBOX),
    )?;
    crictl(node, &["start", &id])?;
    wait_for_count(node, &id, 3, None)?;
    let archive = "/var/lib/checkpoints/sandbox-source.tar";
    node.run(&["mkdir", "-p", "/var/lib/checkpoints"])?;
    crictl(node, &["checkpoint", &format!("--export={archive}"), &id])?;
    // The counter as the checkpoint's rw layer (gzip) holds it.
    let diff = format!(
        "tar -xOf {archive} rootfs-diff.tar | tar -xzOf - --wildcards '*state' --exclude '*.new'"
    );
    crictl(node, &["rmp", "--force", &pod])?;
    let checkpointed = parse_counter(&node.sh(&diff)?)?;
    let image = "revive.test/sandbox/counter:1";
    build_checkpoint_image(node, archive, image)?;
    let mut config = counter_config("counter", "sandboxed", image);
    config["annotations"] = serde_json::json!({"revive.io/sandbox": "true"});
    let (sandbox_pod, new) = run("sandboxed", "7a3e51c0-0000-4000-8000-0000000000a2", &config)?;
    if let Err(err) = crictl(node, &["start", &new]) {
        return Err(err.context(restore_diagnostics(node, &new)));
    }
    let view = sandbox_view(node, &new, Some(checkpointed), narrate)?;
    // Removing the pod kills the paused container (runc thaws a paused container it sends
    // SIGKILL to) and removes the sandbox's network namespace.
    crictl(node, &["rmp", "--force", &sandbox_pod])?;
    ensure!(
        node.run(&["sh", "-c", "grep -c sandbox-netns /proc/self/mountinfo"])
            .is_err(),
        "the sandbox's network namespace is still mounted after its pod was removed"
    );
    Ok(view)
}

/// What CRI container `id`, a sandboxed restore, looks like from its node: containerd's
/// status of its task, its counter read twice, 2 s apart, from its root (it takes no
/// exec while frozen), the links of its network namespace and of its pod's, the options
/// of its root mount. `checkpointed` is the counter the checkpoint holds (none: the
/// first read).
pub fn sandbox_view(
    node: &Node,
    id: &str,
    checkpointed: Option<Counter>,
    narrate: &mut dyn FnMut(&str),
) -> Result<SandboxPod> {
    let status = crate::ctr::parse_task_list(&node.ctr(&["-n", cri::NAMESPACE, "task", "ls"])?)
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| t.status.to_string())
        .unwrap_or_default();
    let inspected = inspect(node, id)?;
    let pid = inspected["info"]["pid"].to_string();
    let state = format!("/proc/{pid}/root/state");
    let read = || -> Result<Counter> { parse_counter(&node.run(&["cat", &state])?) };
    let first = read()?;
    std::thread::sleep(Duration::from_secs(2));
    let second = read()?;
    let (links, root_options) = crate::checkpoint_image::isolation_of(node, &pid)?;
    let sandbox = inspected["info"]["sandboxID"].as_str().unwrap_or("");
    let pod_pid = crictl_json(node, &["inspectp", sandbox])?["info"]["pid"].to_string();
    let pod_links = crate::checkpoint_image::isolation_of(node, &pod_pid)?.0;
    narrate(&format!(
        "sandboxed {id}: task {status}; counter {first} then {second}; its links {links:?}; \
         the pod's {pod_links:?}; root {root_options}"
    ));
    Ok(SandboxPod {
        status,
        checkpointed: checkpointed.unwrap_or_else(|| first.clone()),
        paused: (first, second),
        links,
        pod_links,
        root_options,
    })
}
