//! A restore never gives the process more privilege than its new container allows.
//!
//! A restored process's credentials, capability sets, no_new_privs, seccomp filter and mount
//! tree come from CRIU's images, not from the new container's spec. The revive shim must
//! refuse, at task Create, a checkpoint whose processes hold more than that spec would give a
//! process started afresh, naming each difference, and leave nothing behind; a checkpoint
//! that holds no more must still restore. The checkpoints here are made with stock tools (the
//! Go shim, containerd's CRI), as anyone could on a machine of their own, then run on revive
//! with `ctr` and as pods.
//!
//! Each case records what happened ([`Outcome`]) beside what it must do ([`Expect`]), and
//! [`Case::failure`] says when the two differ, so that one run shows every case.

use std::collections::BTreeSet;
use std::fmt;

use anyhow::{Result, bail, ensure};

use crate::checkpoint_image::{self, Format, FormatImage, GO_SHIM, tar_dir};
use crate::cri::{self, Cri, api};
use crate::image::{BUSYBOX, Image};
use crate::node::Node;
use crate::scenario::{
    COUNTER_SCRIPT, Counter, criu_log_named, exec_sh, remove_container, run_shell_with,
    wait_for_count, with_criu_errors,
};

/// What a case must do.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Be refused, with an error holding `refused` and each of these words.
    Refused(&'static [&'static str]),
    /// Come up restored.
    Restores,
}

/// What a case did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Refused, leaving nothing: what the client was told.
    Refused(String),
    /// Came up restored: what showed it (the counter, the token), and what its process holds
    /// ([`PRIVILEGE_SCRIPT`]).
    Restored { shows: String, privilege: String },
    /// Not tried: its checkpoint could not be made (said loudly with `***` when it happened).
    NotTried(String),
}

/// One restore of a checkpoint into a container with some privilege.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub expect: Expect,
    pub outcome: Outcome,
}

impl Case {
    /// The case, once `narrate` has said it.
    fn said(name: String, expect: Expect, outcome: Outcome, narrate: &mut dyn FnMut(&str)) -> Case {
        let case = Case {
            name,
            expect,
            outcome,
        };
        narrate(&case.to_string());
        case
    }

    /// Why the outcome is not what the case must do; None when it is (or when it was not
    /// tried).
    pub fn failure(&self) -> Option<String> {
        let name = &self.name;
        match (&self.expect, &self.outcome) {
            (_, Outcome::NotTried(_)) | (Expect::Restores, Outcome::Restored { .. }) => None,
            (Expect::Restores, Outcome::Refused(said)) => {
                Some(format!("{name}: must restore, but was refused: {said}"))
            }
            (Expect::Refused(_), Outcome::Restored { shows, privilege }) => Some(format!(
                "{name}: must be refused, but came up restored ({shows}) holding: {privilege}"
            )),
            (Expect::Refused(words), Outcome::Refused(said)) => {
                let missing: Vec<&str> = std::iter::once("refused")
                    .chain(words.iter().copied())
                    .filter(|w| !said.contains(w))
                    .collect();
                (!missing.is_empty())
                    .then(|| format!("{name}: refused without naming {missing:?}: {said}"))
            }
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Refused(said) => write!(f, "{}: refused: {said}", self.name),
            Outcome::Restored { shows, privilege } => {
                write!(f, "{}: restored ({shows}), holding: {privilege}", self.name)
            }
            Outcome::NotTried(why) => write!(f, "{}: NOT TRIED: {why}", self.name),
        }
    }
}

/// Run in a container with `sh -c`: what its first process holds (ids, capability sets,
/// no_new_privs, seccomp mode) and how its /sys is mounted.
pub const PRIVILEGE_SCRIPT: &str = "grep -E '^(Uid|Gid|CapEff|CapBnd|NoNewPrivs|Seccomp):' \
     /proc/1/status; grep ' /sys ' /proc/mounts";

/// The lines of `text` on one line, blanks squeezed.
fn one_line(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The node's mount table (`/proc/mounts` lines).
fn mount_table(node: &Node) -> Result<BTreeSet<String>> {
    Ok(node
        .run(&["cat", "/proc/mounts"])?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Refused restore `what` mounted nothing that is still there: the node's mount table has no
/// line it lacked `before`.
fn check_no_new_mounts(node: &Node, before: &BTreeSet<String>, what: &str) -> Result<()> {
    let after = mount_table(node)?;
    let new: Vec<&String> = after.difference(before).collect();
    ensure!(new.is_empty(), "the refused {what} left mounts: {new:#?}");
    Ok(())
}

/// No process whose command line holds `marker` (the checkpointed workload's) runs in the
/// node: the refused `what` started nothing.
fn check_not_running(node: &Node, marker: &str, what: &str) -> Result<()> {
    let pids = cri::pgrep(node, marker)?;
    ensure!(
        pids.is_empty(),
        "the refused {what} left processes of the checkpointed workload: {pids:?}"
    );
    Ok(())
}

/// The words [`Case::failure`] looks for in a refusal of a privileged checkpoint: a
/// capability of `--privileged` only, and its read-write /sys.
const PRIVILEGED_WORDS: [&str; 3] = ["CAP_SYS_ADMIN", "/sys", "read-write"];

/// In [`COUNTER_SCRIPT`]'s command line: finds a counter's processes.
const COUNTER_MARKER: &str = "written-at-start";

/// A checkpoint image of the counter, made with stock tools.
struct Checkpoint {
    /// What the checkpointed container was, for case names.
    what: &'static str,
    image: String,
    at: Counter,
    /// The checkpoint archive's directory (the image's layer).
    dir: std::path::PathBuf,
}

/// The counter run as container `id` on the Go shim (stock containerd and runc) with `ctr
/// run` flags `flags`, checkpointed as an engine exports it
/// ([`checkpoint_image::archive_of`]; the container is removed), made into the CRI-O
/// checkpoint image `revive.test/privilege/<id>:1` and imported.
fn checkpoint_of(node: &Node, what: &'static str, id: &str, flags: &[&str]) -> Result<Checkpoint> {
    run_shell_with(node, GO_SHIM, flags, id, COUNTER_SCRIPT)?;
    wait_for_count(node, id, 3)?;
    let (dir, at) = checkpoint_image::archive_of(node, id)?;
    let image = format!("revive.test/privilege/{id}:1");
    node.import_image(&Format::CriO.image(&image, tar_dir(&dir)?, id, BUSYBOX)?)?;
    Ok(Checkpoint {
        what,
        image,
        at,
        dir,
    })
}

/// `ck` with every seccomp filter in its CRIU images replaced by one that allows every
/// system call (`BPF_RET | BPF_K` of SECCOMP_RET_ALLOW), as a checkpoint image of its own.
fn with_allow_all_seccomp(node: &Node, ck: &Checkpoint, id: &str) -> Result<Checkpoint> {
    use revive_checkpoint::criu::{images, proto};
    const RET_ALLOW: [u8; 8] = [0x06, 0, 0, 0, 0x00, 0x00, 0xff, 0x7f];
    let dir = ck.dir.with_file_name(format!("{id}-archive"));
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&ck.dir)
        .arg(&dir)
        .status()?;
    ensure!(copied.success(), "copying {} failed", ck.dir.display());
    let file = dir.join("checkpoint/seccomp.img");
    let data = std::fs::read(&file)?;
    let record = images::records(&data, images::SECCOMP_MAGIC, "seccomp.img")?;
    let [record] = record.as_slice() else {
        bail!("seccomp.img holds {} records, not one", record.len());
    };
    let mut entry = <proto::SeccompEntry as prost::Message>::decode(*record)?;
    ensure!(
        !entry.seccomp_filters.is_empty(),
        "the checkpoint of a --seccomp container holds no seccomp filter"
    );
    for filter in &mut entry.seccomp_filters {
        filter.filter = RET_ALLOW.to_vec();
    }
    std::fs::write(&file, images::write(images::SECCOMP_MAGIC, &[entry]))?;
    let image = format!("revive.test/privilege/{id}:1");
    node.import_image(&Format::CriO.image(&image, tar_dir(&dir)?, id, BUSYBOX)?)?;
    Ok(Checkpoint {
        what: "--seccomp (its filter replaced by allow-all)",
        image,
        at: ck.at.clone(),
        dir,
    })
}

/// `ctr run` of checkpoint `ck` as container `id` on revive-snapshotter and the revive shim,
/// with `flags`. A refusal must leave nothing: no task, no mount, no snapshot once the
/// record ctr keeps is removed, no counter process. A container that comes up must be the
/// checkpointed counter, counting on with its token; what its process holds is read, and it
/// is removed.
fn ctr_case(
    node: &Node,
    ck: &Checkpoint,
    id: &str,
    flags: &[&str],
    expect: Expect,
    narrate: &mut dyn FnMut(&str),
) -> Result<Case> {
    let how = match flags {
        [] => "no privilege flag".to_string(),
        _ => flags.join(" "),
    };
    let name = format!("{} checkpoint, `ctr run` ({how}) on revive", ck.what);
    let mounts = mount_table(node)?;
    let outcome = match checkpoint_image::run_image_with(node, &ck.image, id, flags) {
        Err(e) => {
            let err = format!("{e:#}");
            checkpoint_image::check_refusal_left_nothing(node, id)?;
            check_no_new_mounts(node, &mounts, id)?;
            check_not_running(node, COUNTER_MARKER, id)?;
            Outcome::Refused(checkpoint_image::said(&err))
        }
        Ok(_) => {
            let counter = wait_for_count(node, id, ck.at.count + 3)?;
            ensure!(
                counter.token == ck.at.token,
                "{id} started afresh instead of being restored: {} -> {counter}",
                ck.at
            );
            let held = exec_sh(node, id, PRIVILEGE_SCRIPT)?;
            remove_container(node, id)?;
            Outcome::Restored {
                shows: counter.to_string(),
                privilege: one_line(&held),
            }
        }
    };
    Ok(Case::said(name, expect, outcome, narrate))
}

/// What CRIU says when it may not read the rlimits of a process of another uid
/// (`prlimit`: EPERM), and why that is.
const RLIMIT_DENIED: (&str, &str) = (
    "Can't get rlimit",
    "CRIU runs as root but without CAP_SYS_RESOURCE, which this machine's capability \
     bounding set lacks (field notes, section 1), and so may not read the rlimits of a \
     process of another uid: no container of a non-root user can be checkpointed here",
);

/// Says loudly that `name` could not be tried, because its checkpoint could not be made.
fn not_tried(name: &str, err: &anyhow::Error) -> Case {
    let mut why = format!("its checkpoint could not be made: {err:#}");
    if why.contains(RLIMIT_DENIED.0) {
        why = format!("{} ({why})", RLIMIT_DENIED.1);
    }
    eprintln!("*** {name}: NOT TRIED: {why}");
    Case {
        name: name.to_string(),
        expect: Expect::Restores,
        outcome: Outcome::NotTried(why),
    }
}

/// The `ctr` cases, on one node. Checkpoints made on the Go shim of a `ctr run --privileged`
/// counter, a plain one (uid 0, default capabilities) and a `--seccomp` one, run on revive:
/// - the privileged one with no privilege flag: refused, naming CAP_SYS_ADMIN and the
///   read-write /sys;
/// - the privileged one with `--user 1000:1000 --seccomp`: refused, naming the uid,
///   CAP_SYS_ADMIN, seccomp and /sys;
/// - the privileged one with `--privileged`: restored;
/// - the plain one with `--user 1000:1000`: refused, naming the uid;
/// - the `--seccomp` one with `--seccomp`: restored (not tried, loudly, when CRIU cannot
///   dump it).
pub fn ctr_cases(node: &Node, narrate: &mut dyn FnMut(&str)) -> Result<Vec<Case>> {
    node.import_busybox()?;
    let mut cases = Vec::new();
    let privileged = checkpoint_of(node, "privileged", "privileged", &["--privileged"])?;
    narrate(&format!(
        "`ctr run --privileged` counter on the Go shim checkpointed at {}",
        privileged.at
    ));
    for (id, flags, expect) in [
        ("priv-as-plain", &[][..], Expect::Refused(&PRIVILEGED_WORDS)),
        (
            "priv-as-user",
            &["--user", "1000:1000", "--seccomp"][..],
            Expect::Refused(&[
                "uid",
                "1000",
                "CAP_SYS_ADMIN",
                "seccomp",
                "/sys",
                "read-write",
            ]),
        ),
        ("priv-as-priv", &["--privileged"][..], Expect::Restores),
    ] {
        cases.push(ctr_case(node, &privileged, id, flags, expect, narrate)?);
    }
    let plain = checkpoint_of(node, "plain", "plain", &[])?;
    cases.push(ctr_case(
        node,
        &plain,
        "plain-as-user",
        &["--user", "1000:1000"],
        Expect::Refused(&["uid", "1000"]),
        narrate,
    )?);
    let seccomp = &["--seccomp"][..];
    let made = checkpoint_of(node, "--seccomp", "seccomp", seccomp);
    let last = match made {
        Ok(ck) => {
            // The same checkpoint with an allow-all filter: refused by the same container.
            let loose = with_allow_all_seccomp(node, &ck, "seccomp-loose")?;
            cases.push(ctr_case(
                node,
                &loose,
                "loose-as-seccomp",
                seccomp,
                Expect::Refused(&["seccomp filter that allows", "seccomp profile refuses"]),
                narrate,
            )?);
            ctr_case(
                node,
                &ck,
                "seccomp-as-seccomp",
                seccomp,
                Expect::Restores,
                narrate,
            )?
        }
        Err(e) => {
            // The dump failed with the Go shim's container still running: remove it.
            let _ = remove_container(node, "seccomp");
            not_tried(
                "--seccomp checkpoint, `ctr run --seccomp` on revive (CRIU could not dump a \
                 `ctr run --seccomp` container on the Go shim)",
                &e,
            )
        }
    };
    cases.push(last);
    Ok(cases)
}

/// A pod container's security context, as the kubelet sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// `privileged: true` (its sandbox too, as CRI requires).
    Privileged,
    /// Capabilities drop ALL, allowPrivilegeEscalation false (no_new_privs), seccomp
    /// RuntimeDefault; as root.
    Confined,
    /// [`Security::Confined`] and runAsUser 1000: Pod Security "restricted".
    Restricted,
}

impl Security {
    fn name(self) -> &'static str {
        match self {
            Security::Privileged => "privileged",
            Security::Confined => "confined",
            Security::Restricted => "restricted",
        }
    }

    fn apply(self, sc: &mut api::LinuxContainerSecurityContext) {
        if self == Security::Privileged {
            sc.privileged = true;
            return;
        }
        sc.capabilities = Some(api::Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
        sc.no_new_privs = true;
        sc.seccomp = Some(api::SecurityProfile {
            profile_type: api::ProfileType::RuntimeDefault as i32,
            ..Default::default()
        });
        if self == Security::Restricted {
            sc.run_as_user = Some(api::Int64Value { value: 1000 });
        }
    }

    /// Pod `name` (the CRI scenario's shape, [`checkpoint_image::restore_pod`]), privileged
    /// when its container is.
    fn pod(self, name: &str) -> api::PodSandboxConfig {
        let mut pod = checkpoint_image::restore_pod(name);
        if let Some(sc) = pod.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
            sc.privileged = self == Security::Privileged;
        }
        pod
    }

    /// The CRI workload's container ([`cri::container`]) from `image` running `command`.
    fn container(self, image: &str, command: &[&str]) -> api::ContainerConfig {
        let mut ctr = cri::container("workload", image, command);
        if let Some(sc) = ctr.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
            self.apply(sc);
        }
        ctr
    }
}

/// A checkpoint made through CRI: its image (CRI-O format) and the workload's token.
pub struct PodCheckpoint {
    what: Security,
    image: String,
    token: String,
    /// The checkpoint image, to import on another node.
    archive: Image,
}

/// Pod checkpoints made on one node, with the base image they were made on (CRIU checks the
/// files the restored processes map, so it goes wherever they go).
pub struct PodCheckpoints {
    base: Image,
    privileged: PodCheckpoint,
    confined: PodCheckpoint,
}

/// The CRI workload ([`cri::WORKLOAD_SCRIPT`]) in a pod on handler `runc` (the Go shim) with
/// security context `what`, checkpointed by CheckpointContainer (the kubelet's checkpoint
/// API); the archive is made into a CRI-O checkpoint image (containerd 2.1 would claim an
/// `org.criu` one itself) and imported. The pod is removed, whatever happened.
fn pod_checkpoint(node: &Node, client: &mut Cri, what: Security) -> Result<PodCheckpoint> {
    let pod = what.pod(what.name());
    node.run(&["mkdir", "-p", &pod.log_directory])?;
    let pod_id = client.run_pod_sandbox(&pod, "runc")?;
    let ctr = what.container(BUSYBOX, &["/bin/sh", "-c", cri::WORKLOAD_SCRIPT]);
    let made = checkpoint_in_pod(node, client, &pod_id, &pod, &ctr);
    client.stop_pod_sandbox(&pod_id)?;
    client.remove_pod_sandbox(&pod_id)?;
    let (archive, token) = made?;
    let image = format!("revive.test/privilege/pod-{}:1", what.name());
    let archive = Format::CriO.image(&image, archive, "workload", BUSYBOX)?;
    cri::import_image(node, &archive)?;
    client.wait_for_image(&image)?;
    Ok(PodCheckpoint {
        what,
        image,
        token,
        archive,
    })
}

/// Container `ctr` created and started in pod `pod_id`, checkpointed by CheckpointContainer
/// once its token is written: the archive and the token.
fn checkpoint_in_pod(
    node: &Node,
    client: &mut Cri,
    pod_id: &str,
    pod: &api::PodSandboxConfig,
    ctr: &api::ContainerConfig,
) -> Result<(Vec<u8>, String)> {
    let id = client.create_container(pod_id, ctr, pod)?;
    client.start_container(&id)?;
    let token = client.wait_for_token(&id)?;
    let made = cri::checkpoint_container(node, client, &id, &token).map_err(|e| {
        // The Go shim's copy of CRIU's log goes with the pod: its errors, now.
        let log = criu_log_named(node, &format!("{e:#}"));
        with_criu_errors(e, log)
    })?;
    match made {
        cri::CheckpointOutcome::Archive { archive, .. } => Ok((archive, token)),
        other => bail!("CheckpointContainer wrote no archive: {other}"),
    }
}

/// A pod on handler `revive` with security context `into`, whose container is created from
/// checkpoint `ck` (command `/bin/sh`: CRI wants one; the checkpointed process is what
/// runs). A refused StartContainer must leave the container not running, no task of it, no
/// mount and no workload process; a container that comes up must be the checkpointed
/// workload (its token, its process); what its process holds is read. The pod is removed
/// either way.
fn pod_case(
    node: &Node,
    client: &mut Cri,
    ck: &PodCheckpoint,
    into: Security,
    expect: Expect,
    narrate: &mut dyn FnMut(&str),
) -> Result<Case> {
    let (from, to) = (ck.what.name(), into.name());
    let name = format!("{from} pod's checkpoint, {to} pod on revive");
    let pod = into.pod(&format!("{from}-as-{to}"));
    let ctr = into.container(&ck.image, &["/bin/sh"]);
    let attempt = checkpoint_image::create_in_pod(node, client, &pod, &ctr)?;
    let id = &attempt.id;
    let mounts = mount_table(node)?;
    let outcome = match client.start_container(id) {
        Err(e) => {
            let said = format!("{e:#}");
            let status = client.container_status(id)?;
            ensure!(
                status.state != api::ContainerState::ContainerRunning as i32,
                "StartContainer of {id} failed, yet it runs: {said}"
            );
            let tasks = node.ctr(&["-n", cri::NAMESPACE, "tasks", "ls", "-q"])?;
            ensure!(
                !tasks.lines().any(|t| t.trim() == id),
                "the refused {id} left a task: {tasks}"
            );
            check_no_new_mounts(node, &mounts, id)?;
            check_not_running(node, cri::WORKLOAD_MARKER, id)?;
            Outcome::Refused(said)
        }
        Ok(()) => {
            checkpoint_image::check_restored_workload(client, id, &ck.token)?;
            let held = client.exec_sync(id, &["sh", "-c", PRIVILEGE_SCRIPT], 30)?;
            Outcome::Restored {
                shows: format!("token {}", ck.token),
                privilege: one_line(&held.stdout),
            }
        }
    };
    checkpoint_image::remove_pod(client, &attempt)?;
    Ok(Case::said(name, expect, outcome, narrate))
}

/// The CRI cases (containerd 2.x: CheckpointContainer), on one node. Pod containers are
/// checkpointed on the Go shim through CRI, then run in pods on handler `revive`:
/// - a privileged one's in a restricted pod ([`Security::Restricted`]): StartContainer
///   refused, naming the uid, CAP_SYS_ADMIN, seccomp, no_new_privs and the read-write /sys;
///   the container is not running;
/// - a confined one's (root, otherwise restricted) in the same confined pod: restored;
/// - the confined one's in a restricted pod: refused, naming the uid;
/// - a restricted one's in the same restricted pod: restored (not tried, loudly, where CRIU
///   cannot dump a process of another uid, as on this machine).
pub fn cri_cases(
    node: &Node,
    narrate: &mut dyn FnMut(&str),
) -> Result<(Vec<Case>, PodCheckpoints)> {
    let base = Image::busybox(&node.rootfs().path)?;
    let mut client = cri::prepare(node, &base)?;
    let privileged = pod_checkpoint(node, &mut client, Security::Privileged)?;
    let confined = pod_checkpoint(node, &mut client, Security::Confined)?;
    narrate("a privileged and a confined pod on the Go shim checkpointed through CRI");
    let made = PodCheckpoints {
        base,
        privileged,
        confined,
    };
    let mut cases = pod_cases(node, &mut client, &made, narrate)?;
    let restricted = Security::Restricted;
    cases.push(match pod_checkpoint(node, &mut client, restricted) {
        Ok(ck) => pod_case(
            node,
            &mut client,
            &ck,
            restricted,
            Expect::Restores,
            narrate,
        )?,
        Err(e) => not_tried(
            "restricted pod's checkpoint, restricted pod on revive (CRI could not checkpoint \
             the restricted pod on the Go shim)",
            &e,
        ),
    });
    no_tasks_left(node)?;
    Ok((cases, made))
}

/// The pod checkpoints of [`cri_cases`], moved to `node` (containerd 1.7 has no
/// CheckpointContainer to make them with): the same refusals and restores there.
pub fn cri_cases_moved(
    node: &Node,
    made: &PodCheckpoints,
    narrate: &mut dyn FnMut(&str),
) -> Result<Vec<Case>> {
    let mut client = cri::prepare(node, &made.base)?;
    for ck in [&made.privileged, &made.confined] {
        cri::import_image(node, &ck.archive)?;
        client.wait_for_image(&ck.image)?;
    }
    narrate("the privileged and the confined pod's checkpoint images moved here");
    let cases = pod_cases(node, &mut client, made, narrate)?;
    no_tasks_left(node)?;
    Ok(cases)
}

fn no_tasks_left(node: &Node) -> Result<()> {
    let tasks = node.ctr(&["-n", cri::NAMESPACE, "tasks", "ls", "-q"])?;
    ensure!(tasks.trim().is_empty(), "containerd tasks left: {tasks}");
    Ok(())
}

/// A privileged pod's checkpoint in a restricted pod (refused), a confined pod's in a
/// confined pod (restored) and in a restricted one (refused).
fn pod_cases(
    node: &Node,
    client: &mut Cri,
    made: &PodCheckpoints,
    narrate: &mut dyn FnMut(&str),
) -> Result<Vec<Case>> {
    let (privileged, confined) = (&made.privileged, &made.confined);
    let mut cases = Vec::new();
    for (ck, into, expect) in [
        (
            &privileged,
            Security::Restricted,
            Expect::Refused(&[
                "uid",
                "1000",
                "CAP_SYS_ADMIN",
                "seccomp",
                "no_new_privs",
                "/sys",
                "read-write",
            ]),
        ),
        (&confined, Security::Confined, Expect::Restores),
        (
            &confined,
            Security::Restricted,
            Expect::Refused(&["uid", "1000"]),
        ),
    ] {
        cases.push(pod_case(node, client, ck, into, expect, narrate)?);
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(expect: Expect, outcome: Outcome) -> Case {
        Case {
            name: "c".into(),
            expect,
            outcome,
        }
    }

    #[test]
    fn failures_compare_outcomes_with_expectations() {
        let refused = |said: &str| Outcome::Refused(said.into());
        let restored = Outcome::Restored {
            shows: "count 9".into(),
            privilege: "Uid: 0".into(),
        };
        let words = Expect::Refused(&["uid", "CAP_SYS_ADMIN"]);
        assert!(case(Expect::Restores, restored.clone()).failure().is_none());
        assert!(
            case(words.clone(), refused("refused: uid 0, CAP_SYS_ADMIN"))
                .failure()
                .is_none()
        );
        let missing = case(words.clone(), refused("refused: uid 0"))
            .failure()
            .unwrap();
        assert!(missing.contains("CAP_SYS_ADMIN"), "{missing}");
        let unsaid = case(words.clone(), refused("uid CAP_SYS_ADMIN"))
            .failure()
            .unwrap();
        assert!(unsaid.contains("\"refused\""), "{unsaid}");
        assert!(case(words, restored).failure().unwrap().contains("Uid: 0"));
        assert!(case(Expect::Restores, refused("no")).failure().is_some());
        assert!(
            case(Expect::Restores, Outcome::NotTried("dump".into()))
                .failure()
                .is_none()
        );
    }

    #[test]
    fn lines_are_joined() {
        assert_eq!(
            one_line("Uid:\t0\t0\n\nCapEff:  01\n"),
            "Uid: 0 0; CapEff: 01"
        );
    }
}
