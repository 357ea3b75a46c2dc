//! Checks on the host that must hold before any node starts.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{Result, bail};

/// Device nodes CRIU and the runtimes rely on, with their (major, minor) numbers.
pub const REQUIRED_DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Fails unless the current process runs as root.
pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "revive's node harness needs root (it creates mount, pid and cgroup namespaces \
             and runs containerd): run it as root, e.g. `sudo make test`"
        );
    }
    Ok(())
}

/// Checks that `dev_dir` (normally `/dev`) holds intact character devices for every entry
/// of [`REQUIRED_DEVICES`]. A /dev/null that became a regular file makes CRIU fail in
/// misleading ways, so this runs before any node starts.
pub fn check_device_nodes(dev_dir: &Path) -> Result<()> {
    let mut broken = Vec::new();
    for &(name, major, minor) in REQUIRED_DEVICES {
        let path = dev_dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_char_device() => {
                let rdev = meta.rdev();
                let (got_major, got_minor) = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
                if (got_major, got_minor) != (major, minor) {
                    broken.push(format!(
                        "{} is char device {got_major}:{got_minor}, expected {major}:{minor}",
                        path.display()
                    ));
                }
            }
            Ok(meta) => broken.push(format!(
                "{} is not a character device (it is a {:?})",
                path.display(),
                meta.file_type()
            )),
            Err(err) => broken.push(format!("{}: {err}", path.display())),
        }
    }
    if !broken.is_empty() {
        bail!(
            "the host's device nodes are damaged, which makes CRIU and runc fail in misleading \
             ways:\n  {}\nRepair them first, e.g. `rm /dev/null && mknod -m 666 /dev/null c 1 3`",
            broken.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_dev_is_intact() {
        check_device_nodes(Path::new("/dev")).unwrap();
    }

    #[test]
    fn regular_file_in_place_of_null_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("null"), b"").unwrap();
        let err = check_device_nodes(dir.path()).unwrap_err().to_string();
        assert!(err.contains("null is not a character device"), "{err}");
        assert!(err.contains("zero: No such file"), "{err}");
        assert!(err.contains("mknod"), "{err}");
    }
}
