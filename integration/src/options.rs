//! Runtime options reach the shim, whichever way containerd hands them over (the task API's
//! options at Create up to 2.2, also the start-up `BootstrapParams` from 2.3 on): a CRI
//! handler's `BinaryName` and `Root`, and `ctr task checkpoint`'s image and work paths.
//!
//! The node's test handler `revive-options` (config/node-*.toml) runs the revive shim with
//! `BinaryName` set to [`RUNC_RECORDER`], a wrapper recording every call's arguments, and
//! `Root` set to [`OPTIONS_ROOT`]; what the wrapper recorded shows what the shim did with them.

use anyhow::{Result, ensure};

use crate::cri::{self, WORKLOAD_SCRIPT};
use crate::image::{BUSYBOX, Image};
use crate::node::{Node, RUNC_RECORDER, RUNC_RECORDS};

/// The CRI handler with recorded runtime options.
pub const HANDLER: &str = "revive-options";
/// Its `Root`.
pub const OPTIONS_ROOT: &str = "/run/revive-options-root";

/// The runtime calls [`RUNC_RECORDER`] recorded, one per line.
pub fn recorded_calls(node: &Node) -> Result<Vec<String>> {
    let text = node.sh(&format!("cat {RUNC_RECORDS} 2>/dev/null || true"))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// The calls whose first argument after the global options is `command`.
fn calls_of<'a>(calls: &'a [String], command: &str) -> Vec<&'a String> {
    calls
        .iter()
        .filter(|c| c.split_whitespace().any(|w| w == command))
        .collect()
}

/// Runs a pod container on [`HANDLER`] and checks each option took effect; on containerd
/// 2.x, checkpoints it with `ctr task checkpoint --image-path --work-path` (containerd 1.7
/// passes checkpoint options only to `io.containerd.runc*` runtimes). Returns what it saw.
pub fn runtime_options_reach_the_shim(
    node: &Node,
    narrate: &mut dyn FnMut(&str),
) -> Result<Vec<String>> {
    let mut seen = Vec::new();
    let mut client = cri::prepare(node, &Image::busybox(&node.rootfs().path)?)?;
    let pod = cri::host_network_pod("options", "0b7e0c55-0000-4000-8000-00000000000f");
    node.run(&["mkdir", "-p", &pod.log_directory])?;
    let pod_id = client.run_pod_sandbox(&pod, HANDLER)?;
    let config = cri::container("workload", BUSYBOX, &["/bin/sh", "-c", WORKLOAD_SCRIPT]);
    let id = client.create_container(&pod_id, &config, &pod)?;
    client.start_container(&id)?;
    let token = client.wait_for_token(&id)?;

    let calls = recorded_calls(node)?;
    ensure!(
        !calls_of(&calls, "create").is_empty() && !calls_of(&calls, "start").is_empty(),
        "BinaryName {RUNC_RECORDER:?} of handler {HANDLER} was not used to create and start \
         the pod's containers; it recorded {calls:#?}"
    );
    // As the Go shim does, the state of each containerd namespace gets a directory of its
    // own below Root. `features` (the runtime's self-description, which containerd 2.x asks
    // the shim for through `-info`) reads no state.
    let root = format!("{OPTIONS_ROOT}/{}", cri::NAMESPACE);
    let rootless: Vec<&String> = calls
        .iter()
        .filter(|c| c.trim() != "features" && !c.contains(&format!("--root {root} ")))
        .collect();
    ensure!(
        rootless.is_empty(),
        "runtime calls of handler {HANDLER} without its Root ({root}): {rootless:#?}"
    );
    let listed = node.run(&["runc", "--root", &root, "list", "-q"])?;
    ensure!(
        listed.lines().any(|l| l.trim() == id),
        "runc's state under Root ({root}) does not list container {id}: {listed}"
    );
    let features = calls.iter().filter(|c| c.trim() == "features").count();
    seen.push(format!(
        "BinaryName and Root: {} runtime calls recorded ({features} of them `features`, for \
         containerd's runtime introspection), every other one with --root {root}",
        calls.len()
    ));
    narrate(seen.last().expect("just pushed"));

    if node.version("containerd").unwrap_or("").starts_with("1.") {
        seen.push(
            "checkpoint options: not sent by containerd 1.7 to runtimes other than \
             io.containerd.runc*"
                .into(),
        );
        narrate(seen.last().expect("just pushed"));
    } else {
        let images = "/var/lib/revive/options-images";
        let work = "/var/lib/revive/options-work";
        node.ctr(&[
            "-n",
            cri::NAMESPACE,
            "task",
            "checkpoint",
            "--image-path",
            images,
            "--work-path",
            work,
            &id,
        ])?;
        let calls = recorded_calls(node)?;
        let checkpoints = calls_of(&calls, "checkpoint");
        ensure!(
            checkpoints
                .iter()
                .any(|c| c.contains(&format!("--image-path {images}"))
                    && c.contains(&format!("--work-path {work}"))),
            "no checkpoint call with --image-path {images} --work-path {work}: {checkpoints:#?}"
        );
        node.run(&["test", "-f", &format!("{images}/pstree.img")])?;
        node.run(&["test", "-f", &format!("{work}/dump.log")])?;
        let still = client.exec_sync(&id, &["cat", cri::TOKEN_FILE], 30)?;
        ensure!(
            still.stdout.trim() == token,
            "the container did not keep running through the checkpoint: {still:?}"
        );
        seen.push(format!(
            "checkpoint options: CRIU's images in --image-path {images}, its dump.log in \
             --work-path {work}, the container kept running"
        ));
        narrate(seen.last().expect("just pushed"));
    }
    client.stop_container(&id, 10)?;
    client.remove_container(&id)?;
    client.stop_pod_sandbox(&pod_id)?;
    client.remove_pod_sandbox(&pod_id)?;
    Ok(seen)
}
