//! The node's side of a start: the launcher that creates the namespaces, and the node's
//! pid 1, which builds the node's file system view and then reaps orphans until killed.
//!
//! Runs in the `revive-node __launch` process, which must be single-threaded when it forks.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pivot_root, sethostname};
use serde::{Deserialize, Serialize};

use crate::cgroup::NodeCgroup;

/// Everything the launcher needs, written by the harness as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    pub name: String,
    pub hostname: String,
    /// The node's directory on the host (upper, work, root, logs, ...).
    pub dir: PathBuf,
    /// The cached, read-only root filesystem (the overlay's lower layer).
    pub lower: PathBuf,
    pub cgroup: NodeCgroup,
    /// The harness process: when it dies, the node dies too.
    pub harness_pid: u32,
    /// Host directories bound into the node: (host path, path inside the node).
    pub binds: Vec<(PathBuf, PathBuf)>,
}

impl NodeSpec {
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
}

/// Namespaces a node gets: its own mounts, pids, cgroup root, network, hostname and IPC.
const NODE_NAMESPACES: &[CloneFlags] = &[
    CloneFlags::CLONE_NEWNS,
    CloneFlags::CLONE_NEWPID,
    CloneFlags::CLONE_NEWCGROUP,
    CloneFlags::CLONE_NEWNET,
    CloneFlags::CLONE_NEWUTS,
    CloneFlags::CLONE_NEWIPC,
];

/// Entry point of `revive-node __launch SPEC`. Prints `pid <host pid of the node's init>`,
/// then the init prints `ready` (or `error: ...`). Returns the init's exit code.
pub fn launch(spec_path: &Path) -> Result<i32> {
    let spec: NodeSpec = serde_json::from_slice(&fs::read(spec_path)?)
        .with_context(|| format!("reading node spec {}", spec_path.display()))?;
    // A node must not outlive its harness, however the harness ends (a signal skips Drop):
    // the kernel kills the launcher when the harness's thread dies, and the node's pid 1
    // when the launcher dies (set after the fork below), which kills the whole node.
    die_with_parent()?;
    if nix::unistd::getppid().as_raw() as u32 != spec.harness_pid {
        bail!("the harness ({}) is already gone", spec.harness_pid);
    }
    spec.cgroup.create()?;
    spec.cgroup.enter(std::process::id(), false)?;
    let flags = NODE_NAMESPACES
        .iter()
        .fold(CloneFlags::empty(), |acc, f| acc | *f);
    unshare(flags).context("creating the node's namespaces")?;
    // The cgroup namespace is rooted at the node's cgroup; its processes live in the leaf.
    spec.cgroup.enter(std::process::id(), true)?;
    // SAFETY: the launcher is single-threaded (main thread only), so the child may run any
    // code after fork.
    match unsafe { fork() }.context("forking the node's init")? {
        ForkResult::Parent { child } => {
            println!("pid {child}");
            std::io::stdout().flush()?;
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e).context("waiting for the node's init"),
                }
            }
        }
        ForkResult::Child => {
            let code = match die_with_parent().and_then(|()| init(&spec)) {
                Ok(()) => 0,
                Err(err) => {
                    println!("error: {err:#}");
                    let _ = std::io::stdout().flush();
                    1
                }
            };
            std::process::exit(code);
        }
    }
}

/// Asks the kernel to SIGKILL this process when its parent (thread) dies.
fn die_with_parent() -> Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on the calling process.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error()).context("PR_SET_PDEATHSIG");
    }
    Ok(())
}

fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
    mount(Some(source), target, Some(fstype), flags, data).with_context(|| {
        format!(
            "mounting {fstype} on {} ({})",
            target.display(),
            data.unwrap_or("")
        )
    })
}

/// Makes every mount of this process's mount namespace private: nothing mounted from here
/// on propagates back to the host. Only a system call, so it may run between fork and exec.
pub fn make_mounts_private() -> nix::Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
}

/// Builds the node's file system under `spec.root()`, pivots into it, then serves as pid 1.
fn init(spec: &NodeSpec) -> Result<()> {
    make_mounts_private().context("making the node's mounts private")?;
    let root = spec.root();
    let overlay = format!(
        "lowerdir={},upperdir={},workdir={}",
        spec.lower.display(),
        spec.upper().display(),
        spec.work().display()
    );
    mount_fs(
        "overlay",
        &root,
        "overlay",
        MsFlags::empty(),
        Some(&overlay),
    )?;
    let secure = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", &root.join("proc"), "proc", secure, None)?;
    mount_fs("sysfs", &root.join("sys"), "sysfs", secure, None)?;
    mount_cgroups(spec, &root.join("sys/fs/cgroup"))?;
    build_dev(&root.join("dev"))?;
    mount_fs(
        "tmpfs",
        &root.join("run"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755"),
    )?;
    mount_fs(
        "tmpfs",
        &root.join("tmp"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    for (host, inside) in &spec.binds {
        let target = root.join(inside.strip_prefix("/").unwrap_or(inside));
        fs::create_dir_all(&target)?;
        mount(
            Some(host.as_path()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("binding {} to {}", host.display(), inside.display()))?;
    }
    std::env::set_current_dir(&root)?;
    let old = root.join(".oldroot");
    fs::create_dir_all(&old)?;
    pivot_root(".", ".oldroot").context("pivot_root into the node root")?;
    std::env::set_current_dir("/")?;
    umount2("/.oldroot", MntFlags::MNT_DETACH).context("detaching the host root")?;
    fs::remove_dir("/.oldroot")?;
    sethostname(&spec.hostname).context("setting the node's hostname")?;
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .env("PATH", crate::node::NODE_PATH)
        .status()
        .context("running ip to bring up loopback")?;
    if !status.success() {
        bail!("`ip link set lo up` failed: {status}");
    }
    reap_forever()
}

/// Mounts the host's cgroup hierarchies again inside the node's cgroup namespace, where the
/// kernel roots each at the node's cgroup.
fn mount_cgroups(spec: &NodeSpec, target: &Path) -> Result<()> {
    let layout = &spec.cgroup.layout;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME;
    if layout.unified {
        let data = &layout.hierarchies[0].data;
        return mount_fs("cgroup2", target, "cgroup2", flags, Some(data));
    }
    mount_fs("tmpfs", target, "tmpfs", flags, Some("mode=755"))?;
    for h in &layout.hierarchies {
        let rel = h.mount_point.strip_prefix("/sys/fs/cgroup")?;
        mount_fs(
            &h.fstype,
            &target.join(rel),
            &h.fstype,
            flags,
            Some(&h.data),
        )?;
    }
    for (name, link) in &layout.links {
        symlink(link, target.join(name))?;
    }
    Ok(())
}

/// A private /dev: a tmpfs with its own device nodes, never the host's.
fn build_dev(dev: &Path) -> Result<()> {
    mount_fs(
        "tmpfs",
        dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=755,size=65536k"),
    )?;
    for &(name, major, minor) in crate::host::REQUIRED_DEVICES {
        let path = dev.join(name);
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .with_context(|| format!("mknod {}", path.display()))?;
        // mknod honours the umask; the nodes must be usable by everyone.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        symlink(target, dev.join(name))?;
    }
    mount_fs(
        "devpts",
        &dev.join("pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620,gid=5"),
    )?;
    mount_fs(
        "shm",
        &dev.join("shm"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    mount_fs(
        "mqueue",
        &dev.join("mqueue"),
        "mqueue",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    Ok(())
}

/// Tells the harness the node is up, then reaps every orphan the node's daemons leave
/// (shims, containerd restarts). SIGTERM stops the node: everything gets SIGTERM, then the
/// kernel kills whatever is left when pid 1 exits.
fn reap_forever() -> Result<()> {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    signals.thread_block()?;
    println!("ready");
    std::io::stdout().flush()?;
    // Hand stdout back: the harness stops reading after `ready`.
    let devnull = fs::OpenOptions::new().write(true).open("/dev/null")?;
    nix::unistd::dup2_stdout(&devnull)?;
    loop {
        match signals.wait()? {
            Signal::SIGCHLD => loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            },
            _ => {
                let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGTERM);
                std::thread::sleep(std::time::Duration::from_secs(2));
                return Ok(());
            }
        }
    }
}

/// Paths as C strings, for code that runs between fork and exec.
pub fn c_paths(paths: &[PathBuf]) -> Result<Vec<CString>> {
    paths
        .iter()
        .map(|p| CString::new(p.as_os_str().as_encoded_bytes()).context("path with a NUL byte"))
        .collect()
}
