//! A fresh directory to extract into, for each input, and the checks that nothing escaped.
//!
//! ```text
//! $TMPDIR/revive-fuzz-XXXX/       base: one per process, holds only the current outer
//!     outer-XXXX/                 a fresh outer directory per input
//!         canary/secret           must stay exactly as it was (content, mode, owner, times,
//!                                 one link), and canary/ must hold nothing else
//!         target/                 what is extracted into
//! ```
//!
//! [`Sandbox::check`] looks at all of it without following any symlink: `base` holds only
//! `outer`, `outer` only `canary` and `target`, the canary is untouched (so no symlink
//! was written, chmod-ed, chowned or timed through), and every hard-linked file in `target`
//! has all of its links in `target` (so none leads outside). It also checks what the
//! extractor promises about what it creates: no whiteout files, no devices unless allowed,
//! no setuid or setgid bits unless kept. Dropping the sandbox removes `outer`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::libc;
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, fchmodat, fstatat};

const SECRET: &[u8] = b"secret";

/// What an extraction was allowed to create.
#[derive(Clone, Copy, Debug, Default)]
pub struct Allowed {
    pub devices: bool,
    pub setid: bool,
    /// Overlayfs whiteouts (0:0 character devices) asked for (`Options::overlay_whiteouts`).
    pub whiteouts: bool,
}

/// Metadata of the sandbox's own files, compared before and after.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Stamp {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    Stamp {
        ino: m.ino(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        nlink: m.nlink(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    }
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| PathBuf::from(e.expect("a directory entry").file_name()))
        .collect();
    names.sort();
    names
}

/// The per-process directory holding each input's outer directory. It is left behind
/// (empty) when the process ends: `scripts/fuzz.sh` points TMPDIR at a scratch directory
/// of its own and removes it.
pub fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("revive-fuzz-")
            .tempdir()
            .expect("a temporary directory")
            .keep()
    })
}

pub struct Sandbox {
    outer: PathBuf,
    target: PathBuf,
    canary: PathBuf,
    stamps: [Stamp; 3],
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let outer = tempfile::Builder::new()
            .prefix("outer-")
            .tempdir_in(base())
            .expect("an outer directory")
            .keep();
        let canary = outer.join("canary");
        let target = outer.join("target");
        fs::create_dir(&canary).expect("canary");
        fs::write(canary.join("secret"), SECRET).expect("canary/secret");
        fs::set_permissions(
            canary.join("secret"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .expect("chmod canary/secret");
        fs::create_dir(&target).expect("target");
        let stamps = [stamp(&outer), stamp(&canary), stamp(&canary.join("secret"))];
        Sandbox {
            outer,
            target,
            canary,
            stamps,
        }
    }

    /// The directory to extract into.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// A directory beside the target that must stay untouched.
    pub fn canary(&self) -> &Path {
        &self.canary
    }

    /// The file in the canary directory.
    pub fn secret(&self) -> PathBuf {
        self.canary.join("secret")
    }

    /// The target's parent.
    pub fn outer(&self) -> &Path {
        &self.outer
    }

    /// Fills the target with what `deleted.files` might name: files, nested directories,
    /// a hard link, an empty and a locked directory, and symlinks out of it (to the canary,
    /// its file and the outer directory, relative and absolute).
    pub fn populate(&self) {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let t = &self.target;
        fs::create_dir_all(t.join("a/sub/deep")).expect("fixture");
        for file in ["a/f", "a/sub/g", "a/sub/deep/h", "file"] {
            fs::write(t.join(file), file).expect("fixture");
        }
        fs::hard_link(t.join("file"), t.join("hard")).expect("fixture");
        fs::create_dir(t.join("empty")).expect("fixture");
        fs::create_dir(t.join("locked")).expect("fixture");
        fs::write(t.join("locked/f"), "f").expect("fixture");
        fs::set_permissions(t.join("locked"), fs::Permissions::from_mode(0o000)).expect("fixture");
        symlink("../canary", t.join("link")).expect("fixture");
        symlink(&self.canary, t.join("abs")).expect("fixture");
        symlink(self.secret(), t.join("a/secret")).expect("fixture");
        symlink("..", t.join("up")).expect("fixture");
        symlink("../../canary", t.join("a/sub/canary")).expect("fixture");
    }

    /// Panics, naming what happened, if anything outside the target changed or the target
    /// holds something the extractor must not create.
    pub fn check(&self, allowed: Allowed) {
        let outer_name = PathBuf::from(self.outer.file_name().expect("a name"));
        assert_eq!(
            listing(base()),
            [outer_name],
            "something appeared in the base"
        );
        assert_eq!(
            listing(&self.outer),
            [PathBuf::from("canary"), PathBuf::from("target")],
            "something appeared beside the target"
        );
        assert_eq!(
            listing(&self.canary),
            [PathBuf::from("secret")],
            "something appeared in the canary directory"
        );
        let now = [
            stamp(&self.outer),
            stamp(&self.canary),
            stamp(&self.secret()),
        ];
        assert_eq!(
            now, self.stamps,
            "the outer directory or the canary changed"
        );
        assert_eq!(fs::read(self.secret()).expect("canary/secret"), SECRET);
        assert!(
            fs::symlink_metadata(&self.target)
                .expect("target")
                .file_type()
                .is_dir(),
            "the target is no longer a directory"
        );

        let mut walk = Walk {
            allowed,
            links: HashMap::new(),
            problems: Vec::new(),
        };
        let root = open(
            &self.target,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .expect("open the target");
        walk.dir(root, &mut PathBuf::new());
        for ((dev, ino), (nlink, seen)) in &walk.links {
            if nlink != seen {
                walk.problems.push(format!(
                    "inode {dev}:{ino} has {nlink} links, {seen} of them in the target: \
                     a hard link leads outside"
                ));
            }
        }
        assert!(
            walk.problems.is_empty(),
            "the target breaks the extractor's promises: {:#?}",
            walk.problems
        );
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if fs::remove_dir_all(&self.outer).is_err() {
            // Directories without search or write permission (for a caller that is not
            // root): open them up, without following symlinks, and try again.
            if let Ok(root) = open(
                &self.target,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                let mut walk = Walk {
                    allowed: Allowed {
                        devices: true,
                        setid: true,
                        whiteouts: true,
                    },
                    links: HashMap::new(),
                    problems: Vec::new(),
                };
                walk.dir(root, &mut PathBuf::new());
            }
            if let Err(e) = fs::remove_dir_all(&self.outer)
                && !std::thread::panicking()
            {
                panic!("cannot remove the sandbox {:?}: {e}", self.outer);
            }
        }
    }
}

/// A walk of the target that never follows a symlink, through descriptors (so paths
/// longer than PATH_MAX are no problem), opening up directories for their removal.
struct Walk {
    allowed: Allowed,
    /// Hard-linked non-directories: their link count and how many links the walk saw.
    links: HashMap<(u64, u64), (u64, u64)>,
    problems: Vec<String>,
}

impl Walk {
    fn dir(&mut self, fd: OwnedFd, path: &mut PathBuf) {
        let Ok(mut dir) = Dir::from_fd(fd) else {
            self.problems
                .push(format!("{path:?}: cannot read the directory"));
            return;
        };
        let names: Vec<Vec<u8>> = dir
            .iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .collect();
        for name in names {
            let name = OsStr::from_bytes(&name);
            path.push(name);
            match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => self.entry(&dir, name, &st, path),
                Err(e) => self.problems.push(format!("{path:?}: lstat: {e}")),
            }
            path.pop();
        }
    }

    fn entry(&mut self, dir: &Dir, name: &OsStr, st: &FileStat, path: &mut PathBuf) {
        let kind = st.st_mode & libc::S_IFMT;
        if name.as_bytes().starts_with(b".wh.") {
            self.problems
                .push(format!("{path:?}: a whiteout was created, not reported"));
        }
        match kind {
            libc::S_IFCHR if self.allowed.whiteouts && st.st_rdev == 0 => {}
            libc::S_IFCHR | libc::S_IFBLK if !self.allowed.devices => {
                self.problems
                    .push(format!("{path:?}: a device was created"));
            }
            libc::S_IFSOCK => self
                .problems
                .push(format!("{path:?}: a socket was created")),
            _ => {}
        }
        if !self.allowed.setid {
            let mut forbidden = libc::S_ISUID | libc::S_ISGID;
            if kind != libc::S_IFDIR {
                forbidden |= libc::S_ISVTX;
            }
            // A symlink's mode is always 0777 and means nothing.
            if kind != libc::S_IFLNK && st.st_mode & forbidden != 0 {
                self.problems.push(format!(
                    "{path:?}: mode {:o} keeps setuid, setgid or sticky bits",
                    st.st_mode
                ));
            }
        }
        if kind != libc::S_IFDIR {
            if st.st_nlink > 1 {
                let seen = self
                    .links
                    .entry((st.st_dev, st.st_ino))
                    .or_insert((st.st_nlink, 0));
                seen.1 += 1;
            }
            return;
        }
        if st.st_mode & 0o700 != 0o700 {
            let mode = Mode::from_bits_truncate((st.st_mode | 0o700) & 0o7777);
            if let Err(e) = fchmodat(dir.as_fd(), name, mode, FchmodatFlags::NoFollowSymlink) {
                self.problems.push(format!("{path:?}: chmod: {e}"));
            }
        }
        match openat(
            dir.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => self.dir(fd, path),
            Err(e) => self.problems.push(format!("{path:?}: open: {e}")),
        }
    }
}
