//! The node harness itself: isolation from the host, side-by-side nodes, complete teardown
//! (also when a test panics), and the wiring of revive's binaries into containerd.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc;

use revive_integration::image::BUSYBOX;
use revive_integration::node::processes_in_cgroup;
use revive_integration::{Flavour, Image, Node, ctr, host, mounts, scenario};

/// Everything a node could leave on the host, recorded while it runs.
struct Footprint {
    dir: PathBuf,
    cgroup_name: String,
    cgroups: Vec<PathBuf>,
}

fn footprint(node: &Node) -> Footprint {
    let cgroups = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path().join(node.cgroup_name()))
        .filter(|p| p.exists())
        .collect::<Vec<_>>();
    assert!(!cgroups.is_empty(), "the node has no cgroup of its own");
    // The node's processes, containers included, are found through its cgroup.
    let processes = processes_in_cgroup(node.cgroup_name());
    assert!(
        processes.iter().any(|p| p.contains("containerd")),
        "{processes:?}"
    );
    Footprint {
        dir: node.dir().to_path_buf(),
        cgroup_name: node.cgroup_name().to_string(),
        cgroups,
    }
}

/// Fails unless nothing of the node is left: processes, mounts (in the host's mount table,
/// as /proc/mounts shows it), cgroups, and its directory.
fn assert_gone(fp: &Footprint) {
    assert_eq!(
        processes_in_cgroup(&fp.cgroup_name),
        Vec::<String>::new(),
        "processes left"
    );
    let host_mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let dir = fp.dir.to_string_lossy();
    assert!(
        !host_mounts.contains(dir.as_ref()),
        "mounts left in /proc/mounts:\n{host_mounts}"
    );
    assert!(mounts::mounts_below(&fp.dir).unwrap().is_empty());
    for cg in &fp.cgroups {
        assert!(!cg.exists(), "cgroup left: {}", cg.display());
    }
    assert!(
        !fp.dir.exists(),
        "node directory left: {}",
        fp.dir.display()
    );
}

fn start_with_container(flavour: Flavour, label: &str) -> Node {
    let node = Node::start(flavour, label).expect("node starts");
    node.import_image(&Image::busybox(&node.rootfs().path).unwrap())
        .unwrap();
    node.ctr(&["run", "-d", BUSYBOX, "sleeper", "sleep", "1000"])
        .unwrap();
    assert_eq!(ctr::status(&node, "sleeper").unwrap(), ctr::Status::Running);
    node
}

fn teardown_leaves_nothing_behind() {
    let node = start_with_container(Flavour::Lts, "teardown");
    let fp = footprint(&node);
    // The container's own cgroup lives below the node's.
    let memory = fp
        .cgroups
        .iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/memory"))
        .cloned();
    if let Some(memory) = memory {
        assert!(
            memory.join("default/sleeper").exists(),
            "container cgroup not below the node's"
        );
    }
    let left = node.stop().unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_gone(&fp);
}

fn a_panicking_test_still_tears_its_node_down() {
    let (tx, rx) = mpsc::channel();
    let result = std::thread::spawn(move || {
        let node = start_with_container(Flavour::Stable, "panics");
        tx.send(footprint(&node)).unwrap();
        panic!("deliberate panic with a running container");
    })
    .join();
    assert!(result.is_err(), "the thread should have panicked");
    let fp = rx.recv().unwrap();
    // A failing test keeps its logs for the developer, and nothing else.
    let logs = fp.dir.join("logs");
    assert!(
        logs.join("containerd.log").is_file(),
        "logs of the failed test were not kept"
    );
    std::fs::remove_dir_all(&fp.dir).unwrap();
    assert_gone(&fp);
}

fn nodes_run_side_by_side_isolated() {
    let a = start_with_container(Flavour::Lts, "twin-a");
    let b = start_with_container(Flavour::Lts, "twin-b");
    // The same container id in both: each node has its own containerd, cgroups and pids.
    for node in [&a, &b] {
        let tasks = node.ctr(&["task", "ls", "-q"]).unwrap();
        assert_eq!(tasks.trim(), "sleeper");
    }
    // Each node has its own network namespace with loopback up, so both can bind one port.
    for node in [&a, &b] {
        node.sh(&format!("mkdir -p /srv && echo {} > /srv/who", node.name()))
            .unwrap();
        node.spawn_daemon("httpd", "busybox httpd -f -p 127.0.0.1:8080 -h /srv")
            .unwrap();
    }
    for node in [&a, &b] {
        let mut answer = Err(anyhow::anyhow!("not tried"));
        for _ in 0..50 {
            answer = node.sh("busybox wget -q -O - http://127.0.0.1:8080/who");
            if answer.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // Each node's port 8080 is its own server.
        assert_eq!(answer.unwrap().trim(), node.name());
    }
    let fps = [footprint(&a), footprint(&b)];
    assert!(a.stop().unwrap().is_empty());
    assert!(b.stop().unwrap().is_empty());
    for fp in &fps {
        assert_gone(fp);
    }
}

fn node_dev_is_private() {
    let node = Node::start(Flavour::Stable, "dev").unwrap();
    let inside = node
        .run(&["stat", "-c", "%d:%i %F %t:%T", "/dev/null"])
        .unwrap();
    let host = std::fs::metadata("/dev/null").unwrap();
    let host_id = format!("{}:{}", host.dev(), host.ino());
    let (id, kind) = inside.trim().split_once(' ').unwrap();
    assert_ne!(id, host_id, "the node's /dev/null is the host's");
    assert_eq!(kind, "character special file 1:3");
    let fstype = node.run(&["stat", "-f", "-c", "%T", "/dev"]).unwrap();
    assert_eq!(fstype.trim(), "tmpfs");
    // Removing a device node in the node leaves the host's alone.
    node.run(&["rm", "/dev/null"]).unwrap();
    host::check_device_nodes(std::path::Path::new("/dev")).unwrap();
    assert!(node.stop().unwrap().is_empty());
}

/// containerd in each flavour loads revive-snapshotter as a proxy plugin and launches the
/// revive shim for `--runtime io.containerd.revive.v2`.
fn wiring(flavour: Flavour) {
    let node = Node::start(flavour, "wiring").unwrap();
    let plugins = node.ctr(&["plugins", "ls"]).unwrap();
    let revive = plugins
        .lines()
        .find(|l| {
            l.starts_with("io.containerd.snapshotter.v1")
                && l.split_whitespace().nth(1) == Some("revive")
        })
        .unwrap_or_else(|| panic!("revive snapshotter not registered:\n{plugins}"));
    assert!(revive.split_whitespace().any(|w| w == "ok"), "{revive}");
    // containerd reaches revive-snapshotter over gRPC.
    let snapshots = node
        .ctr(&["snapshots", "--snapshotter", "revive", "ls"])
        .unwrap();
    assert!(snapshots.starts_with("KEY"), "{snapshots}");
    let version = node
        .run(&["containerd-shim-revive-v2", "--version"])
        .unwrap();
    assert!(version.contains("io.containerd.revive.v2"), "{version}");
    // containerd finds the shim, negotiates its start protocol and task API version, and
    // runs a container on it; the shim exits once its container is gone.
    node.import_image(&Image::busybox(&node.rootfs().path).unwrap())
        .unwrap();
    let out = node
        .ctr(&[
            "run",
            "--rm",
            "--runtime",
            "io.containerd.revive.v2",
            BUSYBOX,
            "r1",
            "echo",
            "on-revive",
        ])
        .unwrap();
    assert_eq!(out.trim(), "on-revive");
    let shims = node
        .exec_timeout(
            &["pgrep", "-f", "containerd-shim-revive-v2"],
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    assert!(
        shims.stdout.is_empty(),
        "revive shim left running: {}",
        String::from_utf8_lossy(&shims.stdout)
    );
    assert!(node.stop().unwrap().is_empty());
}

/// `ImageBuilder` makes images of our own: here a static web server whose command comes from
/// the image config, run with `ctr run` and no command.
fn locally_built_server_image_runs() {
    let node = Node::start(Flavour::Lts, "webimage").unwrap();
    let image =
        revive_integration::image::busybox_builder(&node.rootfs().path, "docker.io/revive/web:1")
            .unwrap()
            .dir("www", 0o755)
            .file(
                "www/index.html",
                "served from a locally built image\n",
                0o644,
            )
            .cmd(&["httpd", "-f", "-p", "127.0.0.1:8081", "-h", "/www"])
            .build()
            .unwrap();
    node.import_image(&image).unwrap();
    node.ctr(&["run", "-d", "--net-host", "docker.io/revive/web:1", "web"])
        .unwrap();
    let mut page = Err(anyhow::anyhow!("not tried"));
    for _ in 0..50 {
        page = node.sh("busybox wget -q -O - http://127.0.0.1:8081/index.html");
        if page.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(page.unwrap(), "served from a locally built image\n");
    scenario::remove_container(&node, "web").unwrap();
    assert!(node.stop().unwrap().is_empty());
}

/// A harness killed by a signal (no Drop runs) takes its node's processes with it, and the
/// next node start removes the cgroups and files it left (keeping its logs).
fn a_killed_harness_leaves_no_node_behind() {
    let bin = revive_integration::node::bin_dir()
        .unwrap()
        .join("revive-node");
    let mut harness = std::process::Command::new(&bin)
        .args(["shell", "--flavour", "stable", "--", "sleep", "300"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until its node is up: its cgroup holds a containerd.
    let prefix = format!("revive-node-stable-shell-{}-", harness.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let cgroup_name = loop {
        let found = std::fs::read_dir("/sys/fs/cgroup/memory")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(&prefix));
        if let Some(name) = found
            && processes_in_cgroup(&name)
                .iter()
                .any(|p| p.contains("containerd"))
        {
            break name;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the harness's node never came up"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    harness.kill().unwrap();
    harness.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !processes_in_cgroup(&cgroup_name).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "node processes outlived their harness"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let dir =
        revive_integration::node::nodes_dir().join(cgroup_name.trim_start_matches("revive-node-"));
    let node = Node::start(Flavour::Stable, "sweeper").unwrap();
    assert!(node.stop().unwrap().is_empty());
    let cgroup = std::path::Path::new("/sys/fs/cgroup/memory").join(&cgroup_name);
    assert!(!cgroup.exists(), "the dead node's cgroup is still there");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["logs"], "only the dead node's logs may stay");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A node being torn down by a live harness looks dead (no process left in its cgroup), but
/// another harness's sweep must leave it alone, or its own teardown fails on files that
/// vanish under it (CI saw `No such file or directory` ending a conformance run when a
/// parallel test started a node at that moment). The node's lock tells them apart.
fn a_live_node_without_processes_is_not_swept() {
    let mut node = Node::start(Flavour::Stable, "torn-down").unwrap();
    node.kill().unwrap();
    assert!(
        processes_in_cgroup(node.cgroup_name()).is_empty(),
        "the node's processes outlived kill()"
    );
    // As old as the conformance node was when its teardown raced another node's start.
    let status = std::process::Command::new("touch")
        .args(["-d", "10 minutes ago"])
        .arg(node.dir().join("spec.json"))
        .status()
        .unwrap();
    assert!(status.success());
    let other = Node::start(Flavour::Stable, "sweeper").unwrap();
    assert!(
        node.dir().join("spec.json").exists() && node.dir().join("upper").exists(),
        "another node's start swept a live node"
    );
    assert!(other.stop().unwrap().is_empty());
    let left = node.stop().unwrap();
    assert!(left.is_empty(), "teardown left {left:?}");
}

revive_integration::e2e_main! {
    a_killed_harness_leaves_no_node_behind,
    a_live_node_without_processes_is_not_swept,
    a_panicking_test_still_tears_its_node_down,
    locally_built_server_image_runs,
    node_dev_is_private,
    nodes_run_side_by_side_isolated,
    teardown_leaves_nothing_behind,
    wiring_lts => wiring(Flavour::Lts),
    wiring_stable => wiring(Flavour::Stable),
}
