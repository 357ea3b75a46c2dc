//! The root filesystem cache never hands out a corrupt or half-built root: it removes it and
//! builds a new one. Works on a hard-linked copy of the real cache entry, so the real cache is
//! untouched; costs one real debootstrap of the stable flavour.

use std::fs;
use std::process::Command;

use revive_integration::{Flavour, rootfs};

fn corrupt_cache_entry_is_rebuilt_not_used() {
    let flavour = Flavour::Stable;
    let real = rootfs::ensure(flavour).expect("the real cache entry");
    let entry = real.path.parent().unwrap();
    let name = entry.file_name().unwrap();
    // Same file system as the cache, so the copy can be made of hard links.
    let cache = tempfile::Builder::new()
        .prefix("revive-cache-test")
        .tempdir_in("/var/tmp")
        .unwrap();
    let copy = cache.path().join(name);
    let status = Command::new("cp")
        .arg("-al")
        .arg(entry)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    // Corrupt CRIU in the copy: a new file, so the real entry's inode is left alone.
    let criu = copy.join("rootfs/usr/sbin/criu");
    fs::remove_file(&criu).unwrap();
    fs::write(&criu, b"not criu").unwrap();
    // And leave a half-built entry beside it, as an interrupted build would.
    let partial = cache
        .path()
        .join(format!("{}.partial", name.to_string_lossy()));
    fs::create_dir_all(partial.join("rootfs/usr")).unwrap();

    let rebuilt = rootfs::ensure_in(cache.path(), flavour).expect("the corrupt entry is rebuilt");
    assert_eq!(rebuilt.path, copy.join("rootfs"));
    let criu_now = fs::read(&criu).unwrap();
    assert_ne!(criu_now, b"not criu", "the corrupt CRIU was used");
    // The rebuilt entry verifies against its own record (sid may have moved since the real
    // entry was built, so its digests need not equal the real entry's).
    rootfs::verify_entry(&copy, &rebuilt.completion.key).unwrap();
    assert!(rebuilt.completion.digests.contains_key("usr/sbin/criu"));
    assert!(!partial.exists(), "the half-built entry was left behind");
    // The real cache entry is still intact.
    rootfs::verify_entry(entry, &real.completion.key).unwrap();
}

revive_integration::e2e_main! {
    corrupt_cache_entry_is_rebuilt_not_used,
}
