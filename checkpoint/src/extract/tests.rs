use super::beneath::{Beneath, IMPLICIT_DIR_MODE, WALK_ONLY, open_beneath, openat2_beneath};
use super::overlay::OVERLAY_OPAQUE_XATTR;
use super::*;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::stat::makedev;
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use tar::{EntryType, Header};

use crate::testing::{MTIME, Tar};

/// A temporary directory holding `target` (extracted into) and `outside` (with one
/// file, `secret`), which extraction must never change.
struct Sandbox {
    dir: tempfile::TempDir,
    target: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let outside = dir.path().join("outside");
        fs::create_dir(&target).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        Sandbox {
            dir,
            target,
            outside,
        }
    }

    fn extract(&self, archive: &[u8]) -> Result<Report, ExtractError> {
        self.extract_with(archive, &Options::default())
    }

    /// Makes `name`, beneath the target, a symlink to the directory outside it.
    fn link_outside(&self, name: &str) {
        std::os::unix::fs::symlink(&self.outside, self.at(name)).unwrap();
    }

    fn extract_with(&self, archive: &[u8], options: &Options) -> Result<Report, ExtractError> {
        extract(archive, &self.target, options)
    }

    /// Asserts nothing was written outside `target`.
    fn assert_contained(&self) {
        let mut names: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["outside", "target"]);
        let inside: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(inside, ["secret"]);
        let secret = self.outside.join("secret");
        assert_eq!(fs::read(&secret).unwrap(), b"secret");
        let meta = fs::symlink_metadata(&secret).unwrap();
        assert_eq!(meta.nlink(), 1, "the secret was hard-linked");
        assert_eq!(meta.mode() & 0o7777, 0o644);
    }

    fn at(&self, path: &str) -> PathBuf {
        self.target.join(path)
    }

    fn outside_str(&self) -> Vec<u8> {
        self.outside.as_os_str().as_bytes().to_vec()
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn normal_archive_extracts_exactly() {
    let sandbox = Sandbox::new();
    let long = format!("deep/{}/file", "n".repeat(150));
    let archive = Tar::new()
        .dir(b"./", 0o755)
        .dir(b"etc/", 0o750)
        .file(b"etc/hosts", b"127.0.0.1 localhost\n", 0o640)
        .file(b"bin/tool", b"#!/bin/sh\n", 0o755)
        .symlink(b"etc/localtime", b"/usr/share/zoneinfo/UTC")
        .symlink(b"etc/rel", b"../bin/tool")
        .hardlink(b"bin/tool2", b"bin/tool")
        .node(b"run/fifo", EntryType::Fifo, 0, 0)
        .owned_file(b"home/user/.profile", b"x", 1234, 5678)
        .file(long.as_bytes(), b"long", 0o600)
        .pax(&[
            ("path", b"pax/\xffname"),
            ("uid", b"42"),
            ("mtime", b"1600000000.5"),
        ])
        .file(b"ignored-name", b"pax", 0o644)
        .file(b"a//b/./c", b"c", 0o644)
        .bytes();
    let report = sandbox.extract(&archive).unwrap();
    assert_eq!(report.entries, 12);
    assert_eq!(report.bytes, 20 + 10 + 1 + 4 + 3 + 1);
    assert!(report.whiteouts.is_empty() && report.opaque_dirs.is_empty());

    assert_eq!(mode(&sandbox.at("etc")), 0o750);
    assert_eq!(
        fs::read(sandbox.at("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    assert_eq!(mode(&sandbox.at("etc/hosts")), 0o640);
    assert_eq!(mode(&sandbox.at("bin/tool")), 0o755);
    assert_eq!(mode(&sandbox.at("bin")), 0o755, "implicit directory");
    assert_eq!(
        fs::read_link(sandbox.at("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/UTC")
    );
    assert_eq!(
        fs::read_link(sandbox.at("etc/rel")).unwrap(),
        Path::new("../bin/tool")
    );
    let tool = fs::metadata(sandbox.at("bin/tool")).unwrap();
    let tool2 = fs::metadata(sandbox.at("bin/tool2")).unwrap();
    assert_eq!((tool.ino(), tool.nlink()), (tool2.ino(), 2));
    assert!(
        fs::symlink_metadata(sandbox.at("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let profile = fs::metadata(sandbox.at("home/user/.profile")).unwrap();
    assert_eq!((profile.uid(), profile.gid()), (1234, 5678));
    assert_eq!(tool.mtime(), MTIME as i64);
    assert_eq!(
        fs::metadata(sandbox.at("etc")).unwrap().mtime(),
        MTIME as i64
    );
    assert_eq!(fs::read(sandbox.at(&long)).unwrap(), b"long");
    let pax = sandbox.target.join(OsStr::from_bytes(b"pax/\xffname"));
    let pax = fs::metadata(pax).unwrap();
    assert_eq!((pax.uid(), pax.mtime()), (42, 1_600_000_000));
    assert!(!sandbox.at("ignored-name").exists());
    assert_eq!(fs::read(sandbox.at("a/b/c")).unwrap(), b"c");
    sandbox.assert_contained();
}

#[test]
fn gzip_archive_extracts() {
    let sandbox = Sandbox::new();
    let archive = Tar::new()
        .dir(b"d", 0o755)
        .file(b"d/f", b"data", 0o644)
        .bytes();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&archive).unwrap();
    let gz = encoder.finish().unwrap();
    let report = sandbox.extract(&gz).unwrap();
    assert_eq!((report.entries, report.bytes), (2, 4));
    assert_eq!(fs::read(sandbox.at("d/f")).unwrap(), b"data");
    // A corrupt stream is an error.
    let mut corrupt = gz.clone();
    corrupt.truncate(gz.len() / 2);
    corrupt.extend_from_slice(&[0xff; 64]);
    assert!(Sandbox::new().extract(&corrupt).is_err());
}

#[test]
fn dotdot_names_are_refused() {
    for name in [&b"../evil"[..], b"a/../../evil", b"a/..", b".."] {
        let sandbox = Sandbox::new();
        let archive = Tar::new().file(name, b"evil", 0o644).bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(
            matches!(err, ExtractError::PathEscape { .. }),
            "{name:?}: {err}"
        );
        sandbox.assert_contained();
    }
}

#[test]
fn absolute_names_are_stripped() {
    let sandbox = Sandbox::new();
    let evil = sandbox.outside.join("evil");
    let archive = Tar::new()
        .file(b"/etc/evil", b"evil", 0o644)
        .file(evil.as_os_str().as_bytes(), b"evil", 0o644)
        .bytes();
    sandbox.extract(&archive).unwrap();
    assert_eq!(fs::read(sandbox.at("etc/evil")).unwrap(), b"evil");
    let inside = sandbox.target.join(evil.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside).unwrap(), b"evil");
    sandbox.assert_contained();
}

#[test]
fn nul_and_empty_names_are_refused() {
    let sandbox = Sandbox::new();
    let name = [b"a\0/".as_slice(), &[b'x'; 120]].concat();
    let archive = Tar::new().file(&name, b"x", 0o644).bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
    let archive = Tar::new()
        .pax(&[("path", b"b\0c")])
        .file(b"x", b"x", 0o644)
        .bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
    // (With a trailing slash, a file entry is an old-style directory: `./` is skipped.)
    for empty in [&b"."[..], b"/.", b"//./."] {
        let archive = Tar::new().file(empty, b"x", 0o644).bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
    }
    assert_eq!(fs::read_dir(&sandbox.target).unwrap().count(), 0);
    sandbox.assert_contained();
}

#[test]
fn symlinks_are_never_followed() {
    let cases: Vec<(&[u8], Vec<u8>)> = vec![
        (b"link/file", Sandbox::new().outside_str()),
        (b"link/file", b"..".to_vec()),
        (b"link/../../file", b"..".to_vec()),
        (b"link/x/file", b"../outside".to_vec()),
    ];
    for (name, link) in cases {
        let sandbox = Sandbox::new();
        let link = if link.starts_with(b"/") {
            sandbox.outside_str()
        } else {
            link
        };
        let archive = Tar::new()
            .symlink(b"link", &link)
            .file(name, b"pwned", 0o644)
            .bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
        assert_eq!(
            fs::read_link(sandbox.at("link")).unwrap(),
            Path::new(OsStr::from_bytes(&link))
        );
        sandbox.assert_contained();
    }
}

#[test]
fn symlink_to_a_directory_made_later_is_not_followed() {
    let sandbox = Sandbox::new();
    let archive = Tar::new()
        .symlink(b"link", b"sub")
        .dir(b"sub", 0o755)
        .file(b"link/file", b"x", 0o644)
        .bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
    assert!(!sandbox.at("sub/file").exists());
    // A directory entry through it neither.
    let archive = Tar::new().dir(b"link/d", 0o755).bytes();
    assert!(sandbox.extract(&archive).is_err());
    assert!(!sandbox.at("sub/d").exists());
    sandbox.assert_contained();
}

#[test]
fn entries_replace_symlinks_instead_of_writing_through() {
    let sandbox = Sandbox::new();
    let secret = sandbox.outside.join("secret");
    std::os::unix::fs::symlink(&secret, sandbox.at("preexisting")).unwrap();
    let archive = Tar::new()
        .symlink(b"link", secret.as_os_str().as_bytes())
        .file(b"link", b"replaced", 0o644)
        .file(b"preexisting", b"replaced", 0o644)
        .symlink(b"dirlink", sandbox.outside.as_os_str().as_bytes())
        .dir(b"dirlink", 0o700)
        .bytes();
    sandbox.extract(&archive).unwrap();
    for name in ["link", "preexisting"] {
        let meta = fs::symlink_metadata(sandbox.at(name)).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(fs::read(sandbox.at(name)).unwrap(), b"replaced");
    }
    assert!(
        fs::symlink_metadata(sandbox.at("dirlink"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(mode(&sandbox.outside), 0o755);
    sandbox.assert_contained();
}

#[test]
fn hard_links_stay_inside() {
    let sandbox = Sandbox::new();
    let secret = sandbox.outside.join("secret");
    let passwd_links = fs::metadata("/etc/passwd").map(|m| m.nlink()).ok();
    let refused: Vec<Vec<u8>> = vec![
        b"../outside/secret".to_vec(),
        b"/etc/passwd".to_vec(),
        secret.as_os_str().as_bytes().to_vec(),
        b"a/../../outside/secret".to_vec(),
        b"never-extracted".to_vec(),
        b"dir/secret".to_vec(),
    ];
    for link in refused {
        let archive = Tar::new()
            .symlink(b"dir", sandbox.outside.as_os_str().as_bytes())
            .hardlink(b"h", &link)
            .bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(
            matches!(err, ExtractError::LinkEscape { .. }),
            "{link:?}: {err}"
        );
        assert!(fs::symlink_metadata(sandbox.at("h")).is_err());
    }
    // Linking an extracted symlink links the symlink, not what it points to.
    let archive = Tar::new()
        .symlink(b"s", secret.as_os_str().as_bytes())
        .hardlink(b"h", b"s")
        .symlink(b"d", sandbox.outside.as_os_str().as_bytes())
        .hardlink(b"h2", b"d/secret")
        .bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::LinkEscape { .. }), "{err}");
    let s = fs::symlink_metadata(sandbox.at("s")).unwrap();
    let h = fs::symlink_metadata(sandbox.at("h")).unwrap();
    assert!(h.file_type().is_symlink());
    assert_eq!(s.ino(), h.ino());
    assert_eq!(
        fs::metadata("/etc/passwd").map(|m| m.nlink()).ok(),
        passwd_links
    );
    sandbox.assert_contained();
}

#[test]
fn devices_need_the_option() {
    let sandbox = Sandbox::new();
    let archive = Tar::new().node(b"dev/null", EntryType::Char, 1, 3).bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::Unsupported { .. }), "{err}");
    let archive = Tar::new().node(b"dev/loop", EntryType::Block, 7, 0).bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::Unsupported { .. }), "{err}");
    assert!(!sandbox.at("dev/null").exists() && !sandbox.at("dev/loop").exists());

    let options = Options {
        allow_devices: true,
        ..Options::default()
    };
    let archive = Tar::new()
        .node(b"dev/null", EntryType::Char, 1, 3)
        .node(b"dev/loop", EntryType::Block, 7, 0)
        .bytes();
    sandbox.extract_with(&archive, &options).unwrap();
    let null = fs::symlink_metadata(sandbox.at("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!((null.rdev(), null.mode() & 0o7777), (makedev(1, 3), 0o640));
    let dev = fs::symlink_metadata(sandbox.at("dev/loop")).unwrap();
    assert!(dev.file_type().is_block_device());
    assert_eq!(dev.rdev(), makedev(7, 0));
    sandbox.assert_contained();
}

#[test]
fn unknown_types_are_refused() {
    let sandbox = Sandbox::new();
    for kind in [b'S', b'V', b'Z'] {
        let archive = Tar::new().node(b"x", EntryType::new(kind), 0, 0).bytes();
        let err = sandbox.extract(&archive).unwrap_err();
        assert!(matches!(err, ExtractError::Unsupported { .. }), "{err}");
    }
    assert_eq!(fs::read_dir(&sandbox.target).unwrap().count(), 0);
}

#[test]
fn setid_bits_are_dropped_unless_kept() {
    let archive = Tar::new()
        .file(b"suid", b"x", 0o4755)
        .file(b"sgid", b"x", 0o2755)
        .file(b"sticky", b"x", 0o1644)
        .dir(b"tmp", 0o1777)
        .dir(b"shared", 0o2775)
        .bytes();
    let sandbox = Sandbox::new();
    sandbox.extract(&archive).unwrap();
    assert_eq!(mode(&sandbox.at("suid")), 0o755);
    assert_eq!(mode(&sandbox.at("sgid")), 0o755);
    assert_eq!(mode(&sandbox.at("sticky")), 0o644);
    assert_eq!(mode(&sandbox.at("tmp")), 0o1777);
    assert_eq!(mode(&sandbox.at("shared")), 0o775);

    let sandbox = Sandbox::new();
    let options = Options {
        keep_setid: true,
        ..Options::default()
    };
    sandbox.extract_with(&archive, &options).unwrap();
    assert_eq!(mode(&sandbox.at("suid")), 0o4755);
    assert_eq!(mode(&sandbox.at("sgid")), 0o2755);
    assert_eq!(mode(&sandbox.at("shared")), 0o2775);
}

#[test]
fn owners_are_kept_unless_told() {
    let archive = Tar::new()
        .owned_file(b"f", b"x", 1000, 2000)
        .symlink(b"s", b"f")
        .bytes();
    let sandbox = Sandbox::new();
    sandbox.extract(&archive).unwrap();
    let f = fs::metadata(sandbox.at("f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (1000, 2000));
    let options = Options {
        keep_owner: false,
        ..Options::default()
    };
    let sandbox = Sandbox::new();
    sandbox.extract_with(&archive, &options).unwrap();
    let f = fs::metadata(sandbox.at("f")).unwrap();
    assert_eq!(f.uid(), nix::unistd::geteuid().as_raw());
}

#[test]
fn existing_entries() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.at("full/sub")).unwrap();
    fs::create_dir(sandbox.at("empty")).unwrap();
    fs::create_dir(sandbox.at("dir")).unwrap();
    fs::write(sandbox.at("dir/keep"), b"keep").unwrap();
    fs::write(sandbox.at("file"), b"old").unwrap();
    let archive = Tar::new()
        .file(b"file", b"new", 0o600)
        .file(b"empty", b"was a dir", 0o644)
        .dir(b"dir", 0o711)
        .bytes();
    sandbox.extract(&archive).unwrap();
    assert_eq!(fs::read(sandbox.at("file")).unwrap(), b"new");
    assert_eq!(mode(&sandbox.at("file")), 0o600);
    assert_eq!(fs::read(sandbox.at("empty")).unwrap(), b"was a dir");
    assert_eq!(mode(&sandbox.at("dir")), 0o711);
    assert_eq!(fs::read(sandbox.at("dir/keep")).unwrap(), b"keep");
    let archive = Tar::new().file(b"full", b"x", 0o644).bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::Io { .. }), "{err}");
    assert!(sandbox.at("full/sub").is_dir());
    // A file where a parent directory should be.
    let archive = Tar::new().file(b"file/x", b"x", 0o644).bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::Io { .. }), "{err}");
}

#[test]
fn size_limits_are_checked_before_writing() {
    let sandbox = Sandbox::new();
    // 17 GiB announced, a few bytes present: refused before anything is created.
    let archive = Tar::new().claim(b"giant", 17 << 30, &[0; 512]).bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::LimitExceeded {
                what: "entry size",
                ..
            }
        ),
        "{err}"
    );
    assert!(!sandbox.at("giant").exists());

    let small = Options {
        limits: Limits {
            max_file_bytes: 1000,
            max_total_bytes: 1500,
            ..Limits::default()
        },
        ..Options::default()
    };
    let archive = Tar::new().file(b"big", &[1; 1001], 0o644).bytes();
    let err = sandbox.extract_with(&archive, &small).unwrap_err();
    assert!(
        matches!(err, ExtractError::LimitExceeded { limit: 1000, .. }),
        "{err}"
    );
    assert!(!sandbox.at("big").exists());
    let archive = Tar::new()
        .file(b"one", &[1; 800], 0o644)
        .file(b"two", &[1; 800], 0o644)
        .bytes();
    let err = sandbox.extract_with(&archive, &small).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::LimitExceeded {
                what: "total size",
                limit: 1500,
                ..
            }
        ),
        "{err}"
    );
    assert!(sandbox.at("one").exists() && !sandbox.at("two").exists());
    sandbox.assert_contained();
}

#[test]
fn entry_and_name_limits() {
    let sandbox = Sandbox::new();
    let options = Options {
        limits: Limits {
            max_entries: 3,
            max_path_len: 60,
            max_depth: 4,
            ..Limits::default()
        },
        ..Options::default()
    };
    let mut many = Tar::new();
    for i in 0..5 {
        many.file(format!("f{i}").as_bytes(), b"", 0o644);
    }
    let err = sandbox.extract_with(&many.bytes(), &options).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::LimitExceeded {
                what: "number of entries",
                limit: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(sandbox.at("f2").exists() && !sandbox.at("f3").exists());

    let deep = Tar::new().file(b"a/b/c/d/e", b"", 0o644).bytes();
    let err = sandbox.extract_with(&deep, &options).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::LimitExceeded {
                what: "path depth",
                ..
            }
        ),
        "{err}"
    );
    assert!(!sandbox.at("a").exists());

    let long = Tar::new().file([b'x'; 61], b"", 0o644).bytes();
    let err = sandbox.extract_with(&long, &options).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::LimitExceeded {
                what: "name length",
                ..
            }
        ),
        "{err}"
    );
    // GNU long names and PAX headers are bounded before they are read.
    let mut huge_name = Tar::new();
    huge_name.gnu_long(EntryType::GNULongName, &vec![b'y'; 5000]);
    let huge_name = huge_name.file(b"z", b"", 0o644).bytes();
    let err = sandbox.extract(&huge_name).unwrap_err();
    assert!(matches!(err, ExtractError::LimitExceeded { .. }), "{err}");
    let huge_pax = Tar::new()
        .pax(&[("comment", &vec![b'c'; 2 << 20])])
        .file(b"z", b"", 0o644)
        .bytes();
    let err = sandbox.extract(&huge_pax).unwrap_err();
    assert!(matches!(err, ExtractError::LimitExceeded { .. }), "{err}");
    let link = Tar::new().symlink(b"s", [b'l'; 200]).bytes();
    let err = sandbox.extract_with(&link, &options).unwrap_err();
    assert!(matches!(err, ExtractError::LimitExceeded { .. }), "{err}");
}

#[test]
fn pax_size_that_disagrees_is_refused() {
    let sandbox = Sandbox::new();
    let archive = Tar::new()
        .pax(&[("size", b"10")])
        .file(b"f", b"", 0o644)
        .bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::Unsupported { .. }), "{err}");
    let archive = Tar::new()
        .pax(&[("size", b"x")])
        .file(b"f", b"", 0o644)
        .bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    let archive = Tar::new().pax(&[("path", b"p")]).bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
}

#[test]
fn truncated_and_garbage_archives_are_errors() {
    let sandbox = Sandbox::new();
    let archive = Tar::new()
        .file(b"first", b"ok", 0o644)
        .file(b"second", &[7; 3000], 0o644)
        .bytes();
    let cut = &archive[..512 * 3 + 1000];
    match sandbox.extract(cut).unwrap_err() {
        ExtractError::Malformed {
            entry,
            path,
            reason,
        } => {
            assert_eq!((entry, path.as_path()), (2, Path::new("second")));
            assert!(
                matches!(
                    reason,
                    Malformation::Truncated {
                        written: 1000,
                        size: 3000
                    }
                ),
                "{reason}"
            );
            assert!(reason.to_string().contains("1000 of 3000"), "{reason}");
        }
        err => panic!("{err}"),
    }
    // Cut inside a header.
    let err = Sandbox::new()
        .extract(&archive[..512 * 2 + 100])
        .unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    // Garbage.
    let mut garbage = b"this is not a tar archive".to_vec();
    garbage.resize(2048, b'!');
    let err = Sandbox::new().extract(&garbage).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    let err = Sandbox::new().extract(&garbage[..100]).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    // A bad number in a header.
    let mut bad = Tar::new().file(b"f", b"x", 0o644).bytes();
    bad[100..108].copy_from_slice(b"99999999");
    let mut header = Header::new_old();
    header.as_mut_bytes().copy_from_slice(&bad[..512]);
    header.set_cksum();
    bad[..512].copy_from_slice(header.as_bytes());
    let err = Sandbox::new().extract(&bad).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    // Empty input is an empty archive.
    assert_eq!(Sandbox::new().extract(b"").unwrap(), Report::default());
}

#[test]
fn whiteouts_are_reported_not_created() {
    let sandbox = Sandbox::new();
    let archive = Tar::new()
        .file(b".wh.gone", b"", 0o644)
        .dir(b"etc", 0o755)
        .file(b"etc/.wh.motd", b"", 0o644)
        .file(b"var/.wh..wh..opq", b"", 0o644)
        .file(b".wh..wh..opq", b"", 0o644)
        .file(b".wh..wh.plnk/x", b"", 0o644)
        .file(b".wh..wh.plnk/.wh.y", b"", 0o644)
        .node(b"usr/overlay-whiteout", EntryType::Char, 0, 0)
        .bytes();
    let report = sandbox.extract(&archive).unwrap();
    assert_eq!(
        report.whiteouts,
        [
            PathBuf::from("gone"),
            PathBuf::from("etc/motd"),
            PathBuf::from("usr/overlay-whiteout")
        ]
    );
    assert_eq!(
        report.opaque_dirs,
        [PathBuf::from("var"), PathBuf::from(".")]
    );
    let mut names: Vec<_> = fs::read_dir(&sandbox.target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["etc"]);
    assert_eq!(fs::read_dir(sandbox.at("etc")).unwrap().count(), 0);
    for bad in [&b".wh."[..], b"a/.wh..", b"a/.wh..."] {
        let archive = Tar::new().file(bad, b"", 0o644).bytes();
        assert!(matches!(
            sandbox.extract(&archive).unwrap_err(),
            ExtractError::PathEscape { .. }
        ));
    }
    let archive = Tar::new().file(b"a/.wh.b/c", b"", 0o644).bytes();
    let err = sandbox.extract(&archive).unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    assert!(!sandbox.at("a").exists());
}

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("!!! SKIPPED: this test needs root (mknod, trusted.* xattrs, chown) !!!");
    false
}

/// The value of the xattr `name` of `path` (not following a symlink), if set.
fn xattr(path: &Path, name: &std::ffi::CStr) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut value = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a live buffer of the length given.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    value.truncate(n);
    Some(value)
}

fn is_overlay_whiteout(path: &Path) -> bool {
    let meta = fs::symlink_metadata(path).unwrap();
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn overlay_options() -> Options {
    Options {
        overlay_whiteouts: true,
        ..Options::default()
    }
}

#[test]
fn overlay_whiteouts_are_created() {
    if !is_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let archive = Tar::new()
        .file(b"x", b"replaced", 0o644)
        .dir(b"d", 0o755)
        .file(b"d/y", b"", 0o644)
        .file(b"d/sub/z", b"", 0o644)
        .file(b".wh.x", b"", 0o644)
        .file(b".wh.d", b"", 0o644)
        .file(b"lib/.wh.gone", b"", 0o644)
        .file(b"e/.wh..wh..opq", b"", 0o644)
        .file(b"e/kept", b"k", 0o644)
        .dir(b"e", 0o711)
        .file(b".wh..wh..opq", b"", 0o644)
        .node(b"c", EntryType::Char, 0, 0)
        .file(b".wh.back", b"", 0o644)
        .file(b"back", b"again", 0o644)
        .file(b".wh..wh.plnk/.wh.aufs", b"", 0o644)
        .bytes();
    let report = sandbox.extract_with(&archive, &overlay_options()).unwrap();
    assert_eq!(
        report.whiteouts,
        ["x", "d", "lib/gone", "c", "back"].map(PathBuf::from)
    );
    assert_eq!(report.opaque_dirs, ["e", "."].map(PathBuf::from));
    for whiteout in ["x", "d", "lib/gone", "c"] {
        assert!(is_overlay_whiteout(&sandbox.at(whiteout)), "{whiteout}");
        assert_eq!(mode(&sandbox.at(whiteout)), 0, "{whiteout}");
    }
    assert_eq!(fs::read(sandbox.at("back")).unwrap(), b"again");
    assert_eq!(fs::read(sandbox.at("e/kept")).unwrap(), b"k");
    assert_eq!(mode(&sandbox.at("e")), 0o711);
    let opaque = OVERLAY_OPAQUE_XATTR;
    assert_eq!(xattr(&sandbox.at("e"), opaque).as_deref(), Some(&b"y"[..]));
    assert_eq!(xattr(&sandbox.target, opaque).as_deref(), Some(&b"y"[..]));
    assert_eq!(xattr(&sandbox.at("lib"), opaque), None);
    assert!(!sandbox.at(".wh..wh.plnk").exists());
    assert_eq!(report.implicit_dirs, [PathBuf::from("lib")]);
    sandbox.assert_contained();

    // A hard link may not point at what a whiteout replaced.
    let sandbox = Sandbox::new();
    let archive = Tar::new()
        .file(b"f", b"", 0o644)
        .file(b".wh.f", b"", 0o644)
        .hardlink(b"h", b"f")
        .bytes();
    let err = sandbox
        .extract_with(&archive, &overlay_options())
        .unwrap_err();
    assert!(matches!(err, ExtractError::LinkEscape { .. }), "{err}");

    // A whiteout through a symlink is refused like any other entry.
    let outside = sandbox.outside_str();
    let archive = Tar::new()
        .symlink(b"out", &outside)
        .file(b"out/.wh.secret", b"", 0o644)
        .file(b"out/.wh..wh..opq", b"", 0o644)
        .bytes();
    let err = sandbox
        .extract_with(&archive, &overlay_options())
        .unwrap_err();
    assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
    let archive = Tar::new()
        .symlink(b"out2", &outside)
        .file(b"out2/.wh..wh..opq", b"", 0o644)
        .bytes();
    let err = sandbox
        .extract_with(&archive, &overlay_options())
        .unwrap_err();
    assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
    assert_eq!(xattr(&sandbox.outside, OVERLAY_OPAQUE_XATTR), None);
    sandbox.assert_contained();
}

#[test]
fn implicit_dirs_are_reported() {
    let sandbox = Sandbox::new();
    let archive = Tar::new()
        .file(b"a/b/f", b"", 0o644)
        .file(b"c/d/e/f", b"", 0o644)
        .dir(b"a", 0o700)
        .dir(b"c/d", 0o750)
        .dir(b"x", 0o755)
        .file(b"x/y/f", b"", 0o644)
        .file(b"a/b/g", b"", 0o644)
        .bytes();
    let report = sandbox.extract(&archive).unwrap();
    assert_eq!(
        report.implicit_dirs,
        ["a/b", "c", "c/d/e", "x/y"].map(PathBuf::from)
    );
    assert_eq!(mode(&sandbox.at("a/b")), IMPLICIT_DIR_MODE);
    assert_eq!(mode(&sandbox.at("a")), 0o700);
    assert_eq!(mode(&sandbox.at("c/d")), 0o750);

    // Directories a whiteout removed are not reported.
    if is_root() {
        let sandbox = Sandbox::new();
        let archive = Tar::new()
            .file(b"p/q/f", b"", 0o644)
            .file(b"r/s/f", b"", 0o644)
            .file(b"p/.wh.q", b"", 0o644)
            .bytes();
        let report = sandbox.extract_with(&archive, &overlay_options()).unwrap();
        assert_eq!(report.implicit_dirs, ["p", "r", "r/s"].map(PathBuf::from));
    }
}

#[test]
fn make_whiteouts_stays_inside() {
    if !is_root() {
        return;
    }
    let sandbox = Sandbox::new();
    fs::write(sandbox.at("f"), b"").unwrap();
    fs::create_dir_all(sandbox.at("tree/a/b")).unwrap();
    fs::write(sandbox.at("tree/a/b/c"), b"").unwrap();
    sandbox.link_outside("tree/a/out");
    sandbox.link_outside("sym");

    for bad in [
        "sym/secret",
        "../outside/secret",
        "/",
        "a/../../x",
        "sym/new/x",
    ] {
        let err = make_whiteouts(&sandbox.target, &[bad.to_string()]).unwrap_err();
        assert!(
            matches!(err, ExtractError::PathEscape { .. }),
            "{bad}: {err}"
        );
    }
    // Found by the whiteouts fuzz target: a whiteout for `.wh..` was made as a `.wh.`
    // entry.
    for bad in [".wh..", "tree/.wh.c", ".wh..wh..opq"] {
        let err = make_whiteouts(&sandbox.target, &[bad.to_string()]).unwrap_err();
        assert!(
            matches!(err, ExtractError::Malformed { .. }),
            "{bad}: {err}"
        );
    }
    sandbox.assert_contained();
    assert!(
        fs::symlink_metadata(sandbox.at("sym"))
            .unwrap()
            .is_symlink()
    );

    let paths = [
        "/f",
        "tree",
        "tree/a/b",
        "./new/deep/g",
        "sym",
        "gone/away/h",
        "gone",
        "solo",
    ]
    .map(String::from);
    let made = make_whiteouts(&sandbox.target, &paths).unwrap();
    // `gone` replaced the directory that held `gone/away/h` (found by the whiteouts
    // fuzz target: a whiteout reported that no longer was).
    assert_eq!(
        made.whiteouts,
        ["f", "tree", "new/deep/g", "sym", "gone", "solo"].map(PathBuf::from)
    );
    assert_eq!(made.implicit_dirs, ["new", "new/deep"].map(PathBuf::from));
    for whiteout in ["f", "tree", "new/deep/g", "sym", "gone", "solo"] {
        assert!(is_overlay_whiteout(&sandbox.at(whiteout)), "{whiteout}");
    }
    assert_eq!(mode(&sandbox.at("new/deep")), IMPLICIT_DIR_MODE);
    sandbox.assert_contained();
}

#[test]
fn dir_attrs_come_from_the_first_lower_that_has_them() {
    if !is_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let lowers: Vec<PathBuf> = (0..4)
        .map(|i| sandbox.dir.path().join(format!("lower{i}")))
        .collect();
    for lower in &lowers {
        fs::create_dir(lower).unwrap();
    }
    let set = |path: &Path, mode: u32, owner: u32| {
        fs::create_dir_all(path).unwrap();
        fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        std::os::unix::fs::lchown(path, Some(owner), Some(owner + 1)).unwrap();
    };
    // lower0 lacks tmp; lower1 has it 1777; lower2 too, 0700.
    set(&lowers[1].join("tmp"), 0o1777, 5);
    set(&lowers[2].join("tmp"), 0o700, 6);
    set(&lowers[2].join("var/cache"), 0o2775, 7);
    // lower1 has a symlink where lower2 has var/cache's parent: it hides lower2.
    std::os::unix::fs::symlink("/elsewhere", lowers[1].join("var")).unwrap();
    set(&lowers[3].join("opt/x"), 0o750, 8);

    let archive = Tar::new()
        .file(b"tmp/f", b"", 0o644)
        .file(b"var/cache/f", b"", 0o644)
        .file(b"opt/x/f", b"", 0o644)
        .file(b"none/f", b"", 0o644)
        .bytes();
    let report = sandbox.extract(&archive).unwrap();
    let mut copied = Vec::new();
    for dir in &report.implicit_dirs {
        if copy_dir_attrs(&sandbox.target, dir, &lowers).unwrap() {
            copied.push(dir.clone());
        }
    }
    assert_eq!(copied, ["tmp", "opt", "opt/x"].map(PathBuf::from));
    let meta = fs::symlink_metadata(sandbox.at("tmp")).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o1777, 5, 6)
    );
    let meta = fs::symlink_metadata(sandbox.at("opt/x")).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o750, 8, 9)
    );
    assert_eq!(mode(&sandbox.at("var/cache")), IMPLICIT_DIR_MODE);
    assert_eq!(mode(&sandbox.at("none")), IMPLICIT_DIR_MODE);

    // Beneath the target, nothing is followed.
    sandbox.link_outside("link");
    let err = copy_dir_attrs(&sandbox.target, Path::new("link"), &lowers).unwrap_err();
    assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
    let err = copy_dir_attrs(&sandbox.target, Path::new("../outside"), &lowers).unwrap_err();
    assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
    assert!(!copy_dir_attrs(&sandbox.target, Path::new("missing"), &lowers).unwrap());
    assert_eq!(mode(&sandbox.outside), 0o755);
}

#[test]
fn deletions_stay_inside() {
    let sandbox = Sandbox::new();
    fs::write(sandbox.at("gone"), b"").unwrap();
    fs::write(sandbox.at("keep"), b"").unwrap();
    fs::create_dir_all(sandbox.at("tree/a/b/c")).unwrap();
    fs::write(sandbox.at("tree/a/b/c/f"), b"").unwrap();
    fs::write(sandbox.at("tree/f"), b"").unwrap();
    sandbox.link_outside("tree/a/out");
    sandbox.link_outside("sym");
    sandbox.link_outside("sym2");

    for bad in ["sym/secret", "../outside/secret", "/"] {
        let err = apply_deletions(&sandbox.target, &[bad.into()]).unwrap_err();
        assert!(
            matches!(err, ExtractError::PathEscape { .. }),
            "{bad}: {err}"
        );
    }
    sandbox.assert_contained();

    let deleted = [
        "/gone",
        "tree",
        "sym2",
        "missing",
        "missing/x",
        "keep/x",
        "./tree/a",
    ]
    .map(String::from);
    let removed = apply_deletions(&sandbox.target, &deleted).unwrap();
    assert_eq!(
        removed,
        [Path::new("gone"), Path::new("tree"), Path::new("sym2")]
    );
    let mut names: Vec<_> = fs::read_dir(&sandbox.target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["keep", "sym"]);
    sandbox.assert_contained();
}

#[test]
fn deleted_files_are_parsed_with_limits() {
    let limits = Limits::default();
    assert_eq!(
        parse_deleted_files(br#"["/etc/motd", "tmp/x"]"#, &limits).unwrap(),
        ["/etc/motd", "tmp/x"]
    );
    assert!(parse_deleted_files(b"[]", &limits).unwrap().is_empty());
    for escaping in [
        &br#"["../x"]"#[..],
        br#"["a/../../x"]"#,
        br#"["/"]"#,
        br#"["a\u0000b"]"#,
    ] {
        let err = parse_deleted_files(escaping, &limits).unwrap_err();
        assert!(matches!(err, ExtractError::PathEscape { .. }), "{err}");
    }
    for malformed in [
        &b"{\"a\": 1}"[..],
        b"[1]",
        b"[",
        b"",
        b"null",
        b"[\"a\"] x",
        br#"[".wh.."]"#,
        br#"["etc/.wh.motd"]"#,
        br#"["a/.wh..wh..opq/b"]"#,
    ] {
        let err = parse_deleted_files(malformed, &limits).unwrap_err();
        assert!(matches!(err, ExtractError::Malformed { .. }), "{err}");
    }
    let small = Limits {
        max_entries: 2,
        max_path_len: 8,
        ..Limits::default()
    };
    let err = parse_deleted_files(br#"["a", "b", "c"]"#, &small).unwrap_err();
    assert!(
        matches!(err, ExtractError::LimitExceeded { limit: 2, .. }),
        "{err}"
    );
    let err = parse_deleted_files(br#"["123456789"]"#, &small).unwrap_err();
    assert!(
        matches!(err, ExtractError::LimitExceeded { limit: 8, .. }),
        "{err}"
    );
}

/// xorshift64*: deterministic pseudo-random numbers for the fuzz test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut data = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        if data.len() < 512 {
            break;
        }
        let blocks = data.len() / 512;
        match rng.below(8) {
            // Flip bytes, mostly in headers.
            0..=2 => {
                let block = rng.below(blocks);
                let at = block * 512 + rng.below(512);
                if let Some(byte) = data.get_mut(at) {
                    *byte = rng.next() as u8;
                }
                if rng.below(2) == 0 {
                    fix_checksum(&mut data, block * 512);
                }
            }
            // An interesting value in a numeric field (mode, uid, size, mtime, type).
            3 => {
                let block = rng.below(blocks) * 512;
                let (field, len) =
                    [(100, 8), (108, 8), (124, 12), (136, 12), (156, 1)][rng.below(5)];
                let values: [&[u8]; 7] = [
                    b"0",
                    b"7777777",
                    b"77777777777",
                    b"\x80\xff\xff",
                    b"-1",
                    b"",
                    b"1",
                ];
                let value = values[rng.below(values.len())];
                if let Some(slot) = data.get_mut(block + field..block + field + len) {
                    slot.fill(0);
                    let n = value.len().min(len);
                    slot[..n].copy_from_slice(&value[..n]);
                }
                if rng.below(2) == 0 {
                    fix_checksum(&mut data, block);
                }
            }
            // Drop or copy whole blocks (drops, repeats and reorders entries).
            4 => {
                let at = rng.below(blocks) * 512;
                data.drain(at..(at + 512).min(data.len()));
            }
            5 => {
                let from = rng.below(blocks) * 512;
                let to = rng.below(blocks) * 512;
                let block = data[from..(from + 512).min(data.len())].to_vec();
                data.splice(to..to, block);
            }
            6 => {
                let at = rng.below(data.len());
                data.truncate(at);
            }
            _ => {
                let block = rng.below(blocks) * 512;
                let at = block + rng.below(100);
                let names: [&[u8]; 5] = [b"../x\0", b"/x\0", b"link/\0", b".wh.\0", b"a\0"];
                let name = names[rng.below(names.len())];
                if let Some(slot) = data.get_mut(at..at + name.len()) {
                    slot.copy_from_slice(name);
                }
                fix_checksum(&mut data, block);
            }
        }
    }
    data
}

fn fix_checksum(data: &mut [u8], block: usize) {
    if let Some(bytes) = data.get(block..block + 512) {
        let mut header = Header::new_old();
        header.as_mut_bytes().copy_from_slice(bytes);
        header.set_cksum();
        data[block..block + 512].copy_from_slice(header.as_bytes());
    }
}

#[test]
fn fuzzed_archives_never_panic_nor_escape() {
    let sandbox = Sandbox::new();
    let outside = sandbox.outside_str();
    let secret = [outside.as_slice(), b"/secret"].concat();
    let benign = Tar::new()
        .dir(b"d", 0o755)
        .file(b"d/f", &[b'f'; 700], 0o4755)
        .symlink(b"d/s", b"f")
        .hardlink(b"d/h", b"d/f")
        .node(b"p", EntryType::Fifo, 0, 0)
        .file([b'l'; 130], b"long", 0o644)
        .pax(&[("path", b"pax/p"), ("uid", b"7")])
        .file(b"x", b"pax", 0o644)
        .file(b".wh.gone", b"", 0o644)
        .bytes();
    let hostile = [
        Tar::new()
            .symlink(b"link", &outside)
            .file(b"link/new", b"pwned", 0o644)
            .dir(b"link", 0o777)
            .bytes(),
        Tar::new()
            .symlink(b"up", b"..")
            .file(b"up/outside/new", b"pwned", 0o644)
            .bytes(),
        Tar::new()
            .symlink(b"abs", &secret)
            .hardlink(b"hl", b"abs")
            .file(b"abs", b"pwned", 0o4777)
            .node(b"abs", EntryType::Fifo, 0, 0)
            .bytes(),
        Tar::new()
            .file(b"f", b"x", 0o644)
            .hardlink(b"h1", b"../outside/secret")
            .hardlink(b"h2", b"f")
            .bytes(),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = std::time::Instant::now();
    let mut outcomes = [0usize; 2];
    for round in 0..3000 {
        let base = if round % 2 == 0 {
            &benign
        } else {
            &hostile[rng.below(hostile.len())]
        };
        let mut data = mutate(&mut rng, base);
        if round % 10 == 0 {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&data).unwrap();
            data = encoder.finish().unwrap();
            if round % 20 == 0 {
                let at = rng.below(data.len());
                data[at] ^= 1 << rng.below(8);
            }
        }
        fs::remove_dir_all(&sandbox.target).unwrap();
        fs::create_dir(&sandbox.target).unwrap();
        let result = std::panic::catch_unwind(|| sandbox.extract(&data));
        match result {
            Ok(r) => outcomes[usize::from(r.is_err())] += 1,
            Err(_) => panic!("round {round} panicked"),
        }
        sandbox.assert_contained();
    }
    // Both outcomes happen: the mutations are neither all fatal nor all harmless.
    assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
    assert!(started.elapsed().as_secs() < 60);
}

/// Runs `test` with directories beneath a root opened only by the component walk.
fn walk_only(test: fn()) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            WALK_ONLY.set(false);
        }
    }
    WALK_ONLY.set(true);
    let _reset = Reset;
    test();
}

#[test]
fn escapes_are_refused_by_the_component_walk_too() {
    for test in [
        normal_archive_extracts_exactly,
        dotdot_names_are_refused,
        absolute_names_are_stripped,
        symlinks_are_never_followed,
        symlink_to_a_directory_made_later_is_not_followed,
        entries_replace_symlinks_instead_of_writing_through,
        hard_links_stay_inside,
        existing_entries,
        implicit_dirs_are_reported,
        make_whiteouts_stays_inside,
        dir_attrs_come_from_the_first_lower_that_has_them,
        deletions_stay_inside,
    ] {
        walk_only(test);
    }
}

/// What [`open_beneath`] found, with a directory named by its device and inode.
fn found(root: &OwnedFd, path: &str) -> String {
    let components: Vec<&[u8]> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::as_bytes)
        .collect();
    match open_beneath(root, &components, false).unwrap() {
        Beneath::Dir(fd) => {
            let st = nix::sys::stat::fstat(&fd).unwrap();
            format!("dir {}:{}", st.st_dev, st.st_ino)
        }
        Beneath::Missing => "missing".into(),
        Beneath::Symlink(i) => format!("symlink at {i}"),
        Beneath::NotDir(i) => format!("not a directory at {i}"),
    }
}

#[test]
fn openat2_and_the_component_walk_open_the_same_directories() {
    let sandbox = Sandbox::new();
    let t = &sandbox.target;
    fs::create_dir_all(t.join("a/b/c")).unwrap();
    fs::write(t.join("f"), b"").unwrap();
    std::os::unix::fs::symlink("/etc", t.join("abs")).unwrap();
    std::os::unix::fs::symlink(&sandbox.outside, t.join("out")).unwrap();
    std::os::unix::fs::symlink("..", t.join("a/up")).unwrap();
    std::os::unix::fs::symlink("../../..", t.join("a/b/far")).unwrap();
    std::os::unix::fs::symlink("b", t.join("a/inside")).unwrap();
    let root = nix::fcntl::open(
        t.as_path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let dir = |path: &str| {
        let st = fs::metadata(t.join(path)).unwrap();
        format!("dir {}:{}", st.dev(), st.ino())
    };
    let cases = [
        ("", dir(".")),
        ("a", dir("a")),
        ("a/b/c", dir("a/b/c")),
        ("abs", "symlink at 0".into()),
        ("abs/ssl", "symlink at 0".into()),
        ("out", "symlink at 0".into()),
        ("a/up", "symlink at 1".into()),
        ("a/up/a", "symlink at 1".into()),
        ("a/b/far", "symlink at 2".into()),
        ("a/inside", "symlink at 1".into()),
        ("a/inside/c", "symlink at 1".into()),
        ("f", "not a directory at 0".into()),
        ("f/x", "not a directory at 0".into()),
        ("none", "missing".into()),
        ("a/none/x", "missing".into()),
    ];
    for (path, expected) in &cases {
        assert_eq!(&found(&root, path), expected, "{path:?}");
        WALK_ONLY.set(true);
        let walked = found(&root, path);
        WALK_ONLY.set(false);
        assert_eq!(&walked, expected, "{path:?} by the walk");
    }
    // openat2 itself opens what exists and refuses every symlink, inside or out.
    match openat2_beneath(&root, &[b"a", b"b", b"c"]) {
        Err(Errno::ENOSYS) => {
            eprintln!("SKIPPED part of openat2_and_the_component_walk: no openat2 (Linux < 5.6)");
            return;
        }
        opened => {
            let st = nix::sys::stat::fstat(opened.unwrap()).unwrap();
            assert_eq!(format!("dir {}:{}", st.st_dev, st.st_ino), dir("a/b/c"));
        }
    }
    // A symlink as the last component fails like O_NOFOLLOW | O_DIRECTORY (ENOTDIR), one
    // on the way fails like RESOLVE_NO_SYMLINKS (ELOOP).
    for path in [
        &[&b"abs"[..]][..],
        &[b"out"],
        &[b"a", b"up"],
        &[b"a", b"b", b"far"],
        &[b"a", b"inside"],
    ] {
        let err = openat2_beneath(&root, path).unwrap_err();
        assert!(
            matches!(err, Errno::ELOOP | Errno::ENOTDIR),
            "{path:?}: {err}"
        );
    }
    for path in [
        &[&b"abs"[..], b"ssl"][..],
        &[b"out", b"secret"],
        &[b"a", b"up", b"a"],
        &[b"a", b"b", b"far", b"etc"],
        &[b"a", b"inside", b"c"],
    ] {
        assert_eq!(
            openat2_beneath(&root, path).unwrap_err(),
            Errno::ELOOP,
            "{path:?}"
        );
    }
    assert_eq!(openat2_beneath(&root, &[b"f"]).unwrap_err(), Errno::ENOTDIR);
    assert_eq!(
        openat2_beneath(&root, &[b"none"]).unwrap_err(),
        Errno::ENOENT
    );
    sandbox.assert_contained();
}

#[test]
fn components_that_are_not_plain_names_are_refused_by_both_paths() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.target.join("a")).unwrap();
    let root = nix::fcntl::open(
        sandbox.target.as_path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    for walk in [false, true] {
        WALK_ONLY.set(walk);
        for path in [
            &[&b"a"[..], b".."][..],
            &[b"a", b"..", b".."],
            &[b".."],
            &[b"."],
            &[b""],
            &[b"a/.."],
        ] {
            for create in [false, true] {
                let refused = open_beneath(&root, path, create).err();
                assert_eq!(
                    refused.map(|e| e.kind()),
                    Some(std::io::ErrorKind::InvalidInput),
                    "{path:?} (walk only: {walk})"
                );
            }
        }
    }
    WALK_ONLY.set(false);
    sandbox.assert_contained();
}
