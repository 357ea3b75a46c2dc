//! `revive migrate`: a running pod moved to another node through a registry, with what
//! Kubernetes and OCI registries already have, every step authorized by the API server.
//!
//! 1. Every container of the pod is checkpointed with the kubelet's checkpoint API, reached
//!    through the API server (`nodes/proxy`; the API server needs `nodes/checkpoint` on the
//!    kubelets, `config/checkpoint-rbac.yaml`). The pod keeps running.
//! 2. An agent pod on the source node (the `revive` binary in the agent image, run by the
//!    source's kubelet, no port opened) builds a checkpoint image of each archive (CRI-O's
//!    format, which every containerd revive supports restores in a pod), pushes it through
//!    the node's containerd (`revive agent push`) and removes the archive: it holds every
//!    memory page of the container.
//! 3. A copy of the pod is created on the target node, on RuntimeClass `revive`, each
//!    container's image its checkpoint image: the target's kubelet pulls it, revive restores.
//! 4. Once every container of the copy is ready, the source pod is deleted.
//!
//! A failure before step 4 leaves the source pod running and removes what was made for
//! the move (the agent pod, the copy). The API calls go through `kubectl`, so every way an
//! operator authenticates to a cluster works unchanged.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

/// The namespace of the agent pods (`config/agent.yaml` creates it).
pub const AGENT_NAMESPACE: &str = "revive-system";
/// The agent pods' service account (`config/migrate.yaml`; it has no rights).
pub const AGENT_SERVICE_ACCOUNT: &str = "revive-agent";
/// Where the kubelet writes checkpoint archives, mounted into the agent pod.
pub const KUBELET_CHECKPOINTS: &str = "/var/lib/kubelet/checkpoints";
/// The placeholder command of a moved container that had none: a restore never runs it, but
/// the API server wants an image without a command to be given one.
pub const PLACEHOLDER_COMMAND: &str = "/revive-restored";

/// What to move where.
#[derive(Debug, Clone)]
pub struct Migration {
    pub namespace: String,
    pub pod: String,
    /// The node to move it to; None with `save`: the node it is on.
    pub target: Option<String>,
    /// Instead of creating the copy, write its manifest here and delete the pod: the pod is
    /// parked in the registry (before a node's reboot) until the manifest is created again.
    pub save: Option<std::path::PathBuf>,
    /// Where the checkpoint images go: `<repository>/<pod>-<container>:<tag>`.
    pub repository: String,
    /// An image with the `revive` binary, pulled on the source node.
    pub agent_image: String,
    /// The new pod's name; default: the pod's with `-m<generation>`.
    pub new_name: Option<String>,
    pub kubectl: String,
    pub timeout: Duration,
}

/// What a migration did and how long each step took.
#[derive(Debug)]
pub struct Moved {
    pub source_node: String,
    pub target_node: String,
    pub new_pod: String,
    pub images: Vec<String>,
    pub checkpointed: Duration,
    pub pushed: Duration,
    pub restored: Duration,
}

/// Checks that `path` names a checkpoint archive the kubelet writes: a file right in
/// [`KUBELET_CHECKPOINTS`], so the agent reads and removes nothing else on the node.
pub fn kubelet_archive(path: &std::path::Path) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    ensure!(
        // Path equality compares components: `..` anywhere makes the parent differ.
        path.parent() == Some(std::path::Path::new(KUBELET_CHECKPOINTS)) && name.ends_with(".tar"),
        "{} is not a checkpoint archive in {KUBELET_CHECKPOINTS}: the agent only reads and \
         removes the kubelet's archives",
        path.display()
    );
    Ok(())
}

/// The name of the next generation of `pod`: `web` -> `web-m1` -> `web-m2`.
pub fn next_name(pod: &str) -> String {
    if let Some((stem, n)) = pod.rsplit_once("-m")
        && let Ok(n) = n.parse::<u32>()
        && !stem.is_empty()
    {
        return format!("{stem}-m{}", n + 1);
    }
    format!("{pod}-m1")
}

/// A tag for the images of one move: seconds since the epoch.
fn tag() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_string()
}

/// Runs the migration.
pub fn migrate(m: &Migration) -> Result<Moved> {
    let kube = Kubectl {
        program: &m.kubectl,
        interruptible: true,
    };
    let pod = kube.json(&["get", "pod", &m.pod, "-n", &m.namespace, "-o", "json"])?;
    let source = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .with_context(|| format!("pod {} is not on a node yet", m.pod))?
        .to_string();
    let target_name: String = match (&m.target, &m.save) {
        (Some(target), None) if *target == source => {
            bail!("pod {} is on {source} already", m.pod)
        }
        (Some(target), _) => target.clone(),
        (None, Some(_)) => source.clone(),
        (None, None) => bail!(
            "say where to move pod {} (--to NODE), or --save a manifest",
            m.pod
        ),
    };
    ensure!(
        pod["status"]["phase"] == "Running",
        "pod {} is {}, not Running: only a running pod can be checkpointed",
        m.pod,
        pod["status"]["phase"]
    );
    let target = kube
        .json(&["get", "node", &target_name, "-o", "json"])
        .with_context(|| format!("the target node {target_name}"))?;
    ensure!(
        m.save.is_some() || ready(&target),
        "the target node {target_name} is not Ready: choose another node or wait"
    );
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    ensure!(!containers.is_empty(), "pod {} has no containers", m.pod);
    let tag = tag();
    let images: Vec<String> = containers
        .iter()
        .map(|c| format!("{}/{}-{c}:{tag}", m.repository.trim_end_matches('/'), m.pod))
        .collect();
    for image in &images {
        crate::write::check_ref(image)?;
    }

    // Until here nothing was made, and a signal ends the process as usual; from here on it
    // stops the move between two steps, which then undoes what they made.
    crate::interrupt::catch()?;
    let plan = Plan {
        pod,
        containers,
        images,
        source,
        target: target_name,
    };
    let mut made = Made::default();
    match moved(m, &kube, &plan, &mut made) {
        Ok(moved) => {
            kube.delete_pod(&m.pod, &m.namespace, m.timeout)
                .with_context(|| {
                    format!(
                        "pod {} {}, but deleting the source pod {} failed: delete it",
                        moved.new_pod,
                        match &m.save {
                            Some(save) => format!("is saved in {}", save.display()),
                            None => format!("runs on {}", moved.target_node),
                        },
                        m.pod
                    )
                })?;
            Ok(moved)
        }
        Err(e) => {
            let source = &plan.source;
            let stop = Kubectl {
                program: &m.kubectl,
                interruptible: false,
            };
            let left = made.undo(&stop, m, source);
            let why = match crate::interrupt::received() {
                Some(signal) if !e.chain().any(|c| c.is::<Interrupted>()) => {
                    format!("interrupted by {signal} ({e:#})")
                }
                _ => format!("{e:#}"),
            };
            if left.is_empty() {
                bail!(
                    "{why}; the move was undone: pod {} still runs on {source}, and what \
                     the move made is removed",
                    m.pod
                )
            }
            bail!(
                "{why}; pod {} still runs on {source}, but undoing the move left: {}",
                m.pod,
                left.join("; ")
            )
        }
    }
}

/// What a move has made so far that a failed or interrupted move removes.
#[derive(Debug, Default)]
struct Made {
    /// Checkpoint archives on the source node that no agent pod has taken over.
    archives: Vec<String>,
    /// The agent pod, until it is deleted.
    agent: Option<String>,
    /// The copy, until the source pod's deletion starts.
    copy: Option<String>,
    /// The copy's manifest written by `--save`, until the source pod's deletion starts.
    saved: Option<std::path::PathBuf>,
}

impl Made {
    /// Removes what was made: the copy, the agent pod once it has ended (it removes the
    /// archives it took over whatever happens), and archives no agent took over (through an
    /// agent pod that only removes them). What could not be removed, for the operator.
    fn undo(&mut self, kube: &Kubectl<'_>, m: &Migration, source: &str) -> Vec<String> {
        let mut left = Vec::new();
        if let Some(saved) = self.saved.take()
            && let Err(e) = std::fs::remove_file(&saved)
        {
            left.push(format!("the saved manifest {} ({e})", saved.display()));
        }
        if let Some(copy) = self.copy.take()
            && let Err(e) = kube.delete_pod(&copy, &m.namespace, m.timeout)
        {
            left.push(format!("the copy {}/{copy} ({e:#})", m.namespace));
        }
        if self.agent.is_none() && !self.archives.is_empty() {
            let name = format!("revive-discard-{}-{}", m.pod, tag());
            let pod = agent_pod(&name, source, &m.agent_image, &discard_args(&self.archives));
            match kube.create(&pod) {
                Ok(()) => {
                    self.agent = Some(name);
                    self.archives.clear();
                }
                Err(e) => left.push(format!(
                    "checkpoint archives {} on {source}, which hold the pod's memory: remove \
                     them ({e:#})",
                    self.archives.join(", ")
                )),
            }
        }
        if let Some(agent) = self.agent.take() {
            let ended = kube.wait_ended(&agent, AGENT_NAMESPACE, m.timeout);
            if let Err(e) = ended.and(kube.delete_pod(&agent, AGENT_NAMESPACE, m.timeout)) {
                left.push(format!(
                    "the agent pod {AGENT_NAMESPACE}/{agent} ({e:#}): delete it once it ended, \
                     and check {KUBELET_CHECKPOINTS} on {source} for archives"
                ));
            }
        }
        left
    }
}

/// A move, checked and named before anything is made.
struct Plan {
    /// The source pod, as the API server has it.
    pod: Value,
    containers: Vec<String>,
    /// The checkpoint image of each container.
    images: Vec<String>,
    source: String,
    target: String,
}

/// The steps of a move up to the source pod's deletion, each recording in `made` what it
/// made.
fn moved(m: &Migration, kube: &Kubectl<'_>, plan: &Plan, made: &mut Made) -> Result<Moved> {
    let Plan {
        pod,
        containers,
        images,
        source,
        target: target_name,
    } = plan;
    let started = Instant::now();
    for container in containers {
        kube.check_interrupted()?;
        let path = format!(
            "/api/v1/nodes/{source}/proxy/checkpoint/{}/{}/{container}",
            m.namespace, m.pod
        );
        let answer = kube
            .json(&["create", "--raw", &path, "-f", "/dev/null"])
            .with_context(|| {
                format!(
                    "checkpointing container {container} through the API server (POST {path}); \
                     the API server needs nodes/checkpoint on the kubelets \
                     (config/checkpoint-rbac.yaml)"
                )
            })?;
        match answer["items"].as_array().map(Vec::as_slice) {
            Some([Value::String(archive)]) => made.archives.push(archive.clone()),
            _ => bail!("the kubelet's checkpoint answer names no single archive: {answer}"),
        }
    }
    let checkpointed = started.elapsed();

    kube.check_interrupted()?;
    let started = Instant::now();
    let agent = format!("revive-agent-{}-{}", m.pod, tag());
    let agent_pod = agent_pod(
        &agent,
        source,
        &m.agent_image,
        &push_args(&made.archives, images),
    );
    kube.create(&agent_pod)?;
    made.agent = Some(agent.clone());
    made.archives.clear();
    kube.wait_succeeded(&agent, AGENT_NAMESPACE, m.timeout)
        .context("building and pushing the checkpoint images on the source node")?;
    kube.delete_pod(&agent, AGENT_NAMESPACE, m.timeout)?;
    made.agent = None;
    let pushed = started.elapsed();

    kube.check_interrupted()?;
    let started = Instant::now();
    let new_name = m.new_name.clone().unwrap_or_else(|| next_name(&m.pod));
    let copy = moved_pod(pod, &new_name, target_name, images)?;
    match &m.save {
        Some(save) => {
            std::fs::write(save, serde_json::to_vec_pretty(&copy)?)
                .with_context(|| format!("writing {}", save.display()))?;
            made.saved = Some(save.clone());
        }
        None => {
            kube.create(&copy)?;
            made.copy = Some(new_name.clone());
            kube.wait_ready(&new_name, &m.namespace, m.timeout)
                .with_context(|| format!("restoring on {target_name}"))?;
        }
    }
    let restored = started.elapsed();
    // The last moment to stop: once the source's deletion starts, the copy is the pod.
    kube.check_interrupted()?;
    made.copy = None;
    made.saved = None;
    Ok(Moved {
        target_node: target_name.to_string(),
        source_node: source.to_string(),
        new_pod: new_name,
        images: images.to_vec(),
        checkpointed,
        pushed,
        restored,
    })
}

/// kubectl's `--timeout` flag for `timeout`.
fn wait_flag(timeout: Duration) -> String {
    format!("--timeout={}s", timeout.as_secs())
}

/// Whether a Node object's Ready condition is True.
fn ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The agent's arguments that push each of `archives` as its image in `images` and remove
/// the archives.
fn push_args(archives: &[String], images: &[String]) -> Vec<String> {
    let mut args = vec![
        "agent".to_string(),
        "push".to_string(),
        "--remove-archives".to_string(),
    ];
    args.extend(
        archives
            .iter()
            .zip(images)
            .map(|(archive, image)| format!("{archive}={image}")),
    );
    args
}

/// The agent's arguments that only remove `archives`.
fn discard_args(archives: &[String]) -> Vec<String> {
    let mut args = vec!["agent".to_string(), "discard".to_string()];
    args.extend(archives.iter().cloned());
    args
}

/// The agent pod running `revive` with `args`: on `node`, root, the kubelet's checkpoint
/// directory and containerd's socket from the node, no service account token, never
/// restarted.
pub fn agent_pod(name: &str, node: &str, image: &str, args: &[String]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": AGENT_NAMESPACE,
            "labels": {"app.kubernetes.io/name": "revive-agent"},
        },
        "spec": {
            "nodeName": node,
            "serviceAccountName": AGENT_SERVICE_ACCOUNT,
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "agent",
                "image": image,
                "command": ["revive"],
                "args": args,
                "securityContext": {"runAsUser": 0},
                "volumeMounts": [
                    {"name": "checkpoints", "mountPath": KUBELET_CHECKPOINTS},
                    {"name": "containerd", "mountPath": crate::push::DEFAULT_SOCKET},
                    {"name": "work", "mountPath": "/work"},
                ],
                "workingDir": "/work",
            }],
            "volumes": [
                {"name": "checkpoints",
                 "hostPath": {"path": KUBELET_CHECKPOINTS, "type": "Directory"}},
                {"name": "containerd",
                 "hostPath": {"path": crate::push::DEFAULT_SOCKET, "type": "Socket"}},
                {"name": "work", "emptyDir": {}},
            ],
        },
    })
}

/// The copy of `pod` named `name` on `node`, on RuntimeClass revive, each container's image
/// its checkpoint image (in `images`, in the containers' order). What only the source node
/// had is left out: its status, its init containers (they ran there; the checkpoint holds
/// what they left), the fields the API server sets.
pub fn moved_pod(pod: &Value, name: &str, node: &str, images: &[String]) -> Result<Value> {
    let mut spec = pod["spec"].clone();
    let spec_map = spec.as_object_mut().context("the pod has no spec")?;
    spec_map.remove("initContainers");
    spec_map.insert("nodeName".into(), json!(node));
    spec_map.insert("runtimeClassName".into(), json!("revive"));
    let containers = spec_map
        .get_mut("containers")
        .and_then(Value::as_array_mut)
        .context("the pod has no containers")?;
    ensure!(
        containers.len() == images.len(),
        "{} containers, {} images",
        containers.len(),
        images.len()
    );
    for (container, image) in containers.iter_mut().zip(images) {
        container["image"] = json!(image);
        container["imagePullPolicy"] = json!("IfNotPresent");
        if container.get("command").is_none_or(Value::is_null) {
            container["command"] = json!([PLACEHOLDER_COMMAND]);
        }
    }
    let metadata = &pod["metadata"];
    let mut annotations = metadata["annotations"].clone();
    if let Some(map) = annotations.as_object_mut() {
        map.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": metadata["namespace"],
            "labels": metadata["labels"],
            "annotations": annotations,
        },
        "spec": spec,
    }))
}

/// Why a container of the copy will not come up, from its status: the restore refused (the
/// runtime's error, at create or at start), the image not pulled, or the restored process
/// gone. None while it may still come up.
fn failed_start(status: &Value) -> Option<String> {
    let name = status["name"].as_str().unwrap_or("?");
    let waiting = &status["state"]["waiting"];
    let reason = waiting["reason"].as_str().unwrap_or("");
    let message = waiting["message"].as_str().unwrap_or("");
    let terminated = &status["lastState"]["terminated"];
    match reason {
        "CreateContainerError"
        | "CreateContainerConfigError"
        | "RunContainerError"
        | "ErrImagePull"
        | "ImagePullBackOff"
        | "InvalidImageName" => Some(format!("container {name}: {reason}: {message}")),
        "CrashLoopBackOff" => Some(format!(
            "container {name}: the restored process exited ({}: exit code {})",
            terminated["reason"].as_str().unwrap_or("unknown"),
            terminated["exitCode"]
        )),
        _ if status["state"]["terminated"].is_object() => Some(format!(
            "container {name}: the restored process exited: {}",
            status["state"]["terminated"]
        )),
        _ => None,
    }
}

/// The error of a step that stopped because the process was interrupted.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}")]
struct Interrupted(nix::sys::signal::Signal);

/// `kubectl`, with the operator's own configuration and credentials.
struct Kubectl<'a> {
    program: &'a str,
    /// Whether its waits stop when the process is interrupted ([`crate::interrupt`]); the
    /// one that undoes a move's steps waits on.
    interruptible: bool,
}

impl Kubectl<'_> {
    /// Fails when the process was interrupted and this one stops for it.
    fn check_interrupted(&self) -> Result<()> {
        match crate::interrupt::received() {
            Some(signal) if self.interruptible => Err(Interrupted(signal).into()),
            _ => Ok(()),
        }
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        self.run_with_input(args, None)
    }

    fn run_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Result<String> {
        use std::io::Write;
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(self.program);
        // In a process group of its own, so the Ctrl-C of a terminal reaches revive alone,
        // which finishes the call and then stops between two steps.
        command
            .process_group(0)
            .args(args)
            .stdin(if input.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().with_context(|| {
            format!(
                "running {}: revive migrate drives the API server through kubectl; install it \
                 or name it with --kubectl",
                self.program
            )
        })?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input)?;
        }
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "`kubectl {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let out = self.run(args)?;
        serde_json::from_str(&out)
            .with_context(|| format!("`kubectl {}` printed no JSON: {out}", args.join(" ")))
    }

    fn create(&self, object: &Value) -> Result<()> {
        self.run_with_input(&["create", "-f", "-"], Some(&serde_json::to_vec(object)?))
            .map(drop)
    }

    /// Reads pod `name` every `pause` until `done` says it is done (`Some(Ok)`) or has
    /// failed (`Some(Err)`); after `timeout`, fails saying it was not `what` in time.
    fn wait_pod(
        &self,
        name: &str,
        namespace: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> Option<Result<()>>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let pause = Duration::from_millis(250);
        loop {
            self.check_interrupted()?;
            let pod = self.json(&["get", "pod", name, "-n", namespace, "-o", "json"])?;
            if let Some(done) = done(&pod) {
                return done;
            }
            if Instant::now() > deadline {
                bail!(
                    "pod {name} was not {what} within {} s: {}",
                    timeout.as_secs(),
                    pod["status"]
                );
            }
            std::thread::sleep(pause);
        }
    }

    /// Waits until pod `name` has succeeded; fails with its log if it failed.
    fn wait_succeeded(&self, name: &str, namespace: &str, timeout: Duration) -> Result<()> {
        self.wait_pod(
            name,
            namespace,
            timeout,
            "done",
            |pod| match pod["status"]["phase"].as_str() {
                Some("Succeeded") => Some(Ok(())),
                Some("Failed") => Some(Err(anyhow::anyhow!(
                    "the agent pod {name} failed: {}",
                    self.run(&["logs", name, "-n", namespace])
                        .unwrap_or_default()
                        .trim()
                ))),
                _ => None,
            },
        )
    }

    /// Waits until pod `name` has ended, succeeded or failed.
    fn wait_ended(&self, name: &str, namespace: &str, timeout: Duration) -> Result<()> {
        self.wait_pod(name, namespace, timeout, "done", |pod| {
            matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
            .then_some(Ok(()))
        })
    }

    /// Deletes pod `name` and waits until it is gone; a pod already gone is no error.
    fn delete_pod(&self, name: &str, namespace: &str, timeout: Duration) -> Result<()> {
        self.run(&[
            "delete",
            "pod",
            name,
            "-n",
            namespace,
            "--ignore-not-found",
            &wait_flag(timeout),
        ])
        .map(drop)
    }

    /// Waits until every container of pod `name` is ready; fails early when one is waiting
    /// with an error that does not pass (the restore was refused).
    fn wait_ready(&self, name: &str, namespace: &str, timeout: Duration) -> Result<()> {
        self.wait_pod(name, namespace, timeout, "ready", |pod| {
            let statuses = pod["status"]["containerStatuses"].as_array()?;
            if !statuses.is_empty() && statuses.iter().all(|c| c["ready"] == true) {
                return Some(Ok(()));
            }
            let refused = statuses.iter().find_map(failed_start)?;
            Some(Err(anyhow::anyhow!("the restore was refused: {refused}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_touches_only_the_kubelets_archives() {
        use std::path::Path;
        let ok = "/var/lib/kubelet/checkpoints/checkpoint-web_default-app-2026-01-01T00:00:00Z.tar";
        kubelet_archive(Path::new(ok)).unwrap();
        for bad in [
            "/etc/shadow",
            "/var/lib/kubelet/checkpoints/../pki/kubelet.key",
            "/var/lib/kubelet/checkpoints/../checkpoints/x.tar",
            "/var/lib/kubelet/checkpoints/sub/x.tar",
            "var/lib/kubelet/checkpoints/x.tar",
            "/var/lib/kubelet/checkpoints/notes.txt",
        ] {
            let err = kubelet_archive(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains("not a checkpoint archive"), "{bad}: {err}");
        }
    }

    /// A kubectl that logs its arguments (and a created object's name) to `log` and says
    /// every pod it is asked for has succeeded.
    fn fake_kubectl(dir: &std::path::Path) -> (String, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let log = dir.join("calls");
        let program = dir.join("kubectl");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\necho \"$*\" >> {log}\n\
                 case \"$1\" in\n\
                 create) grep -o '\"args\":[^]]*]' >> {log} ;;\n\
                 get) echo '{{\"status\": {{\"phase\": \"Succeeded\"}}}}' ;;\n\
                 esac\n",
                log = log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        (program.to_string_lossy().into_owned(), log)
    }

    #[test]
    fn an_undone_move_removes_what_it_made() {
        let dir = tempfile::tempdir().unwrap();
        let (program, log) = fake_kubectl(dir.path());
        let kube = Kubectl {
            program: &program,
            interruptible: false,
        };
        let m = Migration {
            namespace: "shop".into(),
            pod: "web".into(),
            target: Some("node-b".into()),
            save: None,
            repository: "r".into(),
            agent_image: "agent:1".into(),
            new_name: None,
            kubectl: program.clone(),
            timeout: Duration::from_secs(5),
        };
        let archive = format!("{KUBELET_CHECKPOINTS}/checkpoint-web_shop-app-1.tar");
        let mut made = Made {
            archives: vec![archive.clone()],
            agent: None,
            copy: Some("web-m1".into()),
            saved: Some(dir.path().join("web.json")),
        };
        std::fs::write(dir.path().join("web.json"), "{}").unwrap();
        assert!(made.undo(&kube, &m, "node-a").is_empty());
        assert!(!dir.path().join("web.json").exists());
        let calls = std::fs::read_to_string(&log).unwrap();
        let calls: Vec<&str> = calls.lines().collect();
        assert!(calls[0].starts_with("delete pod web-m1 -n shop --ignore-not-found"));
        assert_eq!(calls[1], "create -f -");
        assert_eq!(
            calls[2],
            format!("\"args\":[\"agent\",\"discard\",\"{archive}\"]")
        );
        assert!(
            calls[3].starts_with("get pod revive-discard-web-"),
            "{calls:?}"
        );
        assert!(
            calls[4].starts_with("delete pod revive-discard-web-"),
            "{calls:?}"
        );
        assert!(calls[4].contains(&format!("-n {AGENT_NAMESPACE}")));
        assert_eq!(calls.len(), 5, "{calls:?}");
        assert!(made.archives.is_empty() && made.agent.is_none() && made.copy.is_none());
        assert!(made.saved.is_none());
    }

    #[test]
    fn generations_have_names_of_their_own() {
        assert_eq!(next_name("web"), "web-m1");
        assert_eq!(next_name("web-m1"), "web-m2");
        assert_eq!(next_name("web-m9"), "web-m10");
        assert_eq!(next_name("web-mx"), "web-mx-m1");
        assert_eq!(next_name("-m3"), "-m3-m1");
    }

    #[test]
    fn the_copy_runs_on_revive_on_the_target_from_the_checkpoint_images() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "7",
                         "labels": {"app": "web"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                                         "team": "a"}},
            "spec": {"nodeName": "node-a", "initContainers": [{"name": "init"}],
                     "containers": [{"name": "app", "image": "app:1", "command": ["app"]},
                                    {"name": "side", "image": "side:1"}]},
            "status": {"phase": "Running"},
        });
        let copy = moved_pod(
            &pod,
            "web-m1",
            "node-b",
            &["r/web-app:1".into(), "r/web-side:1".into()],
        )
        .unwrap();
        assert_eq!(copy["metadata"]["name"], "web-m1");
        assert_eq!(copy["metadata"]["namespace"], "shop");
        assert_eq!(copy["metadata"]["labels"]["app"], "web");
        assert_eq!(copy["metadata"]["annotations"], json!({"team": "a"}));
        assert!(copy["metadata"].get("uid").is_none() && copy.get("status").is_none());
        assert_eq!(copy["spec"]["nodeName"], "node-b");
        assert_eq!(copy["spec"]["runtimeClassName"], "revive");
        assert!(copy["spec"].get("initContainers").is_none());
        assert_eq!(copy["spec"]["containers"][0]["image"], "r/web-app:1");
        assert_eq!(copy["spec"]["containers"][0]["command"], json!(["app"]));
        assert_eq!(
            copy["spec"]["containers"][1]["command"],
            json!([PLACEHOLDER_COMMAND])
        );
        assert!(moved_pod(&pod, "x", "n", &["only-one".into()]).is_err());
    }

    #[test]
    fn a_copy_that_cannot_come_up_says_why() {
        let refused = json!({"name": "app", "state": {"waiting": {
            "reason": "RunContainerError",
            "message": "restore refused: the checkpoint would bring back more privilege"}}});
        assert_eq!(
            failed_start(&refused).unwrap(),
            "container app: RunContainerError: restore refused: the checkpoint would bring \
             back more privilege"
        );
        let pulling = json!({"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}});
        assert_eq!(failed_start(&pulling), None);
        let running = json!({"name": "app", "state": {"running": {}}});
        assert_eq!(failed_start(&running), None);
        let looping = json!({"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                             "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}});
        assert!(
            failed_start(&looping)
                .unwrap()
                .contains("exited (Error: exit code 1)")
        );
    }

    #[test]
    fn the_agent_reads_checkpoints_and_talks_to_containerd_on_the_source_only() {
        let pod = agent_pod(
            "a",
            "node-a",
            "agent:1",
            &push_args(&["/x.tar".into()], &["r/i:1".into()]),
        );
        assert_eq!(pod["spec"]["nodeName"], "node-a");
        assert_eq!(pod["metadata"]["namespace"], AGENT_NAMESPACE);
        assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
        assert_eq!(
            pod["spec"]["containers"][0]["args"],
            json!(["agent", "push", "--remove-archives", "/x.tar=r/i:1"])
        );
        assert!(pod["spec"]["containers"][0].get("ports").is_none());
    }
}
