//! Reading the mount table of a process (`/proc/<pid>/mountinfo`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One line of mountinfo, reduced to what the harness needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// Undoes the octal escapes (`\040` for a space) that the kernel writes into mountinfo.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        if let Some(value) = octal {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of a mountinfo file.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let source = right.next()?;
            let super_options = right.next().unwrap_or("");
            Some(Mount {
                mount_point: PathBuf::from(unescape(mount_point)),
                fstype: fstype.to_string(),
                source: unescape(source),
                super_options: super_options.to_string(),
            })
        })
        .collect()
}

/// The mounts of the calling process.
pub fn own_mounts() -> Result<Vec<Mount>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

/// The calling process's mounts at or below `dir`.
pub fn mounts_below(dir: &Path) -> Result<Vec<Mount>> {
    Ok(own_mounts()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 22 0:27 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
40 22 0:40 / /var/lib/with\\040space rw - tmpfs tmpfs rw,size=10k
41 22 0:41 / /mnt/caf\u{e9}\\ rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_fields_and_escapes() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[4].mount_point, PathBuf::from("/mnt/caf\u{e9}\\"));
        assert_eq!(
            mounts[1].mount_point,
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(mounts[1].fstype, "cgroup");
        assert_eq!(mounts[1].super_options, "rw,memory");
        assert_eq!(mounts[3].mount_point, PathBuf::from("/var/lib/with space"));
        assert_eq!(mounts[3].source, "tmpfs");
    }

    #[test]
    fn own_mounts_include_root() {
        assert!(
            own_mounts()
                .unwrap()
                .iter()
                .any(|m| m.mount_point == Path::new("/"))
        );
    }
}
