//! A cgroup of its own for each node, in every hierarchy the host has.
//!
//! The node's processes live in `<hierarchy>/revive-node-<name>/init` and the node gets a
//! cgroup namespace rooted at `revive-node-<name>`, so the cgroups containerd and runc create
//! inside (`/default/<id>`) land below the node's cgroup: two nodes never collide, and
//! teardown removes one subtree per hierarchy.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::mounts::{self, Mount};

/// One cgroup hierarchy as mounted on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// Where it is mounted on the host, e.g. /sys/fs/cgroup/memory.
    pub mount_point: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    pub fstype: String,
    /// Mount data to mount the same hierarchy again, e.g. `memory` or `none,name=systemd`.
    pub data: String,
}

/// The host's cgroup layout, as far as nodes need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// True when /sys/fs/cgroup itself is a cgroup2 mount (no v1 controllers).
    pub unified: bool,
    pub hierarchies: Vec<Hierarchy>,
    /// Symlinks directly in /sys/fs/cgroup (e.g. cpu -> cpu,cpuacct), name -> target.
    pub links: Vec<(String, String)>,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Derives the layout from a mount table.
pub fn layout_from_mounts(mounts: &[Mount]) -> Result<Layout> {
    let root = Path::new(CGROUP_ROOT);
    let mut hierarchies = Vec::new();
    let mut unified = false;
    for m in mounts {
        if m.fstype != "cgroup" && m.fstype != "cgroup2" {
            continue;
        }
        if m.mount_point == root {
            unified = m.fstype == "cgroup2";
        } else if !m.mount_point.starts_with(root) {
            continue;
        }
        let opts: Vec<&str> = m
            .super_options
            .split(',')
            .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
            .collect();
        let data = if m.fstype == "cgroup" && opts.iter().all(|o| o.starts_with("name=")) {
            // A named hierarchy without controllers needs `none`.
            std::iter::once("none")
                .chain(opts)
                .collect::<Vec<_>>()
                .join(",")
        } else {
            opts.join(",")
        };
        hierarchies.push(Hierarchy {
            mount_point: m.mount_point.clone(),
            fstype: m.fstype.clone(),
            data,
        });
    }
    if hierarchies.is_empty() {
        bail!("no cgroup hierarchy is mounted under {CGROUP_ROOT}");
    }
    // The later mount on the same point wins; keep one entry per point.
    hierarchies.dedup_by(|a, b| a.mount_point == b.mount_point);
    if unified {
        hierarchies.retain(|h| h.mount_point == root);
    }
    Ok(Layout {
        unified,
        hierarchies,
        links: Vec::new(),
    })
}

/// The host's layout, read from this process's mount table and /sys/fs/cgroup.
pub fn host_layout() -> Result<Layout> {
    let mut layout = layout_from_mounts(&mounts::own_mounts()?)?;
    if !layout.unified {
        for entry in fs::read_dir(CGROUP_ROOT)?.flatten() {
            if entry.file_type()?.is_symlink() {
                let target = fs::read_link(entry.path())?;
                layout.links.push((
                    entry.file_name().to_string_lossy().into_owned(),
                    target.to_string_lossy().into_owned(),
                ));
            }
        }
    }
    Ok(layout)
}

/// A node's cgroup in every hierarchy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeCgroup {
    /// Directory name under each hierarchy's root, e.g. `revive-node-next-smoke-1234-0`.
    pub name: String,
    pub layout: Layout,
}

impl NodeCgroup {
    pub fn new(name: String, layout: Layout) -> NodeCgroup {
        NodeCgroup { name, layout }
    }

    /// The node's directory in each hierarchy on the host.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.layout
            .hierarchies
            .iter()
            .map(|h| h.mount_point.join(&self.name))
            .collect()
    }

    /// The `cgroup.procs` files processes are moved into: the node root, or its `init` leaf.
    pub fn procs_files(&self, leaf: bool) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| if leaf { d.join("init") } else { d }.join("cgroup.procs"))
            .collect()
    }

    /// Creates the node's cgroup and its `init` leaf in every hierarchy.
    pub fn create(&self) -> Result<()> {
        for (h, dir) in self.layout.hierarchies.iter().zip(self.dirs()) {
            for d in [dir.clone(), dir.join("init")] {
                fs::create_dir_all(&d)
                    .with_context(|| format!("creating cgroup {}", d.display()))?;
                inherit_cpuset(&d)?;
            }
            if h.fstype == "cgroup2" {
                enable_controllers(&dir)?;
            }
        }
        Ok(())
    }

    /// Moves process `pid` (0 = the caller) into the node's cgroup (`leaf`: its init leaf).
    pub fn enter(&self, pid: u32, leaf: bool) -> Result<()> {
        for file in self.procs_files(leaf) {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            f.write_all(pid.to_string().as_bytes())
                .with_context(|| format!("moving {pid} into {}", file.display()))?;
        }
        Ok(())
    }

    /// Removes the node's cgroup trees, killing anything still inside, retrying while the
    /// kernel finishes tearing processes down.
    pub fn remove(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        for dir in self.dirs() {
            loop {
                match remove_cgroup_tree(&dir) {
                    Ok(()) => break,
                    Err(err) if Instant::now() < deadline => {
                        let _ = err;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(())
    }

    /// What is left of the node's cgroups on the host.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        self.dirs().into_iter().filter(|d| d.exists()).collect()
    }
}

/// A new v1 cpuset cgroup starts with no cpus and mems, and no process can join it until
/// they are set: copy them from the parent.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let path = dir.join(file);
        let Ok(current) = fs::read_to_string(&path) else {
            continue;
        };
        if !current.trim().is_empty() {
            continue;
        }
        let parent = dir.parent().context("cgroup without parent")?.join(file);
        let value = fs::read_to_string(&parent)?;
        fs::write(&path, value.trim()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Lets a v2 cgroup's children use every controller it has.
fn enable_controllers(dir: &Path) -> Result<()> {
    let controllers = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<String> = controllers
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "))
        .with_context(|| format!("enabling controllers in {}", dir.display()))
}

fn remove_cgroup_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type()?.is_dir() {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing cgroup {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounts::parse_mountinfo;

    #[test]
    fn hybrid_layout() {
        let text = "\
25 1 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
28 25 0:25 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
";
        let layout = layout_from_mounts(&parse_mountinfo(text)).unwrap();
        assert!(!layout.unified);
        let data: Vec<&str> = layout.hierarchies.iter().map(|h| h.data.as_str()).collect();
        assert_eq!(
            data,
            ["cpu", "none,name=systemd", "nsdelegate", "cpu,cpuacct"]
        );
    }

    #[test]
    fn unified_layout() {
        let text =
            "28 1 0:25 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let layout = layout_from_mounts(&parse_mountinfo(text)).unwrap();
        assert!(layout.unified);
        assert_eq!(layout.hierarchies.len(), 1);
        let cg = NodeCgroup::new("revive-node-x".into(), layout);
        assert_eq!(
            cg.procs_files(true),
            [PathBuf::from(
                "/sys/fs/cgroup/revive-node-x/init/cgroup.procs"
            )]
        );
    }

    #[test]
    fn no_cgroups_is_an_error() {
        assert!(
            layout_from_mounts(&parse_mountinfo("22 1 254:0 / / rw - ext4 /dev/vda rw\n")).is_err()
        );
    }
}
