//! Before a checkpoint or a restore: is CRIU there, new enough, and can this kernel do it?
//! A missing piece is an error that names it, before runc and CRIU get to fail with a log
//! excerpt.
//!
//! CRIU is asked through its RPC interface (rust-criu starts `criu swrk`, about 7 ms here),
//! once per CRIU binary and boot: the answer is kept in the shim for its life and in
//! [`CACHE`] for the shims after it (one per container or pod, each of which would otherwise
//! ask again before its first checkpoint or restore).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tokio::sync::OnceCell;

/// What this host lacks for a checkpoint or a restore, in words that name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unready(pub String);

/// The oldest CRIU runc checkpoints and restores with (runc's own minimum).
const MIN_CRIU: u32 = 30000;

/// The CRIU the preflight found: its path and version (major * 10000 + minor * 100 +
/// sublevel).
type Found = Result<(PathBuf, u32), String>;

/// Only a CRIU that answered is remembered: one installed after a failed preflight is
/// found by the next.
static FOUND: OnceCell<(PathBuf, u32)> = OnceCell::const_new();

/// Where a CRIU that answered is remembered across shims: the binary's identity and its
/// version. On tmpfs (gone at reboot), root-only.
const CACHE: &str = "/run/revive/criu-preflight";

/// Checks CRIU and the kernel for a checkpoint (`restore` false) or a restore.
pub async fn check(restore: bool) -> Result<(), Unready> {
    FOUND
        .get_or_try_init(|| async {
            tokio::task::spawn_blocking(|| find_criu(Path::new(CACHE)))
                .await
                .unwrap_or_else(|e| Err(format!("checking CRIU: {e}")))
        })
        .await
        .map_err(|e| Unready(e.clone()))?;
    kernel(Path::new("/proc"), restore).map_err(Unready)
}

/// What tells one CRIU binary from another: a new or reinstalled one has another inode,
/// size or modification time.
fn identity(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "{} dev {} ino {} size {} mtime {}.{}",
        path.display(),
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// The version [`CACHE`] holds for the CRIU whose identity is `id`, if any.
fn cached_version(cache: &Path, id: &str) -> Option<u32> {
    let text = std::fs::read_to_string(cache).ok()?;
    let (line, version) = text.trim_end().split_once('\n')?;
    (line == id).then(|| version.parse().ok()).flatten()
}

/// Remembers that the CRIU `id` answered with `version` (a new file renamed over the old;
/// best effort: without it the next shim asks CRIU again).
fn remember(cache: &Path, id: &str, version: u32) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = cache.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, format!("{id}\n{version}\n").as_bytes())
            })?;
        std::fs::rename(&tmp, cache)
    };
    if let Err(e) = write() {
        log::debug!(
            "not remembering the CRIU preflight in {}: {e}",
            cache.display()
        );
    }
}

/// CRIU on the PATH (where runc looks for it), and its version through its RPC interface,
/// unless `cache` remembers this very binary answering.
fn find_criu(cache: &Path) -> Found {
    let path = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("criu"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            "CRIU is not installed (no criu on the PATH): checkpoint and restore need it; \
             install it (Debian and Ubuntu: apt install criu)"
                .to_string()
        })?;
    let id = identity(&path);
    if let Some(version) = id.as_deref().and_then(|id| cached_version(cache, id))
        && version >= MIN_CRIU
    {
        log::debug!(
            "CRIU {} at {} (as it answered before)",
            dotted(version),
            path.display()
        );
        return Ok((path, version));
    }
    let mut criu = rust_criu::Criu::new_with_criu_path(path.to_string_lossy().into_owned())
        .map_err(|e| format!("CRIU at {}: {e}", path.display()))?;
    let version = criu.get_criu_version().map_err(|e| {
        format!(
            "CRIU at {} does not answer on its RPC interface ({e}): reinstall it, or run `criu check` to see why",
            path.display()
        )
    })?;
    if version < MIN_CRIU {
        return Err(format!(
            "CRIU at {} is version {}, older than the {} runc needs: upgrade it",
            path.display(),
            dotted(version),
            dotted(MIN_CRIU)
        ));
    }
    log::info!("CRIU {} at {}", dotted(version), path.display());
    if let Some(id) = id {
        remember(cache, &id, version);
    }
    Ok((path, version))
}

/// The kernel features a checkpoint or restore needs, seen in `proc`.
fn kernel(proc: &Path, restore: bool) -> Result<(), String> {
    // /proc/<pid>/map_files exists only with CONFIG_CHECKPOINT_RESTORE, which CRIU needs
    // to read a process's mappings (and which carries TCP repair for open_tcp).
    if !proc.join("self/map_files").is_dir() {
        return Err("this kernel has no checkpoint/restore support \
                    (CONFIG_CHECKPOINT_RESTORE): CRIU cannot run here"
            .into());
    }
    // A restore gives processes their old pids: ns_last_pid (or clone3's set_tid).
    if restore && !proc.join("sys/kernel/ns_last_pid").exists() {
        return Err(
            "this kernel cannot restore pids (no /proc/sys/kernel/ns_last_pid): \
                    CRIU cannot restore here"
                .into(),
        );
    }
    Ok(())
}

/// 40201 -> "4.2.1".
pub fn dotted(version: u32) -> String {
    format!(
        "{}.{}.{}",
        version / 10000,
        version / 100 % 100,
        version % 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_dotted() {
        assert_eq!(dotted(40201), "4.2.1");
        assert_eq!(dotted(30000), "3.0.0");
    }

    #[test]
    fn kernel_without_checkpoint_support_is_named() {
        let proc = tempfile::tempdir().unwrap();
        let err = kernel(proc.path(), false).unwrap_err();
        assert!(err.contains("CONFIG_CHECKPOINT_RESTORE"), "{err}");
        std::fs::create_dir_all(proc.path().join("self/map_files")).unwrap();
        assert!(kernel(proc.path(), false).is_ok());
        let err = kernel(proc.path(), true).unwrap_err();
        assert!(err.contains("ns_last_pid"), "{err}");
        std::fs::create_dir_all(proc.path().join("sys/kernel")).unwrap();
        std::fs::write(proc.path().join("sys/kernel/ns_last_pid"), "1").unwrap();
        assert!(kernel(proc.path(), true).is_ok());
    }

    /// On a machine with CRIU (the test nodes, CI), the RPC interface answers.
    #[test]
    fn the_installed_criu_answers() {
        if std::env::var_os("PATH")
            .is_some_and(|p| !std::env::split_paths(&p).any(|d| d.join("criu").is_file()))
        {
            eprintln!("SKIPPED: no criu on this machine's PATH");
            return;
        }
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: CRIU's RPC interface needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("revive/criu-preflight");
        let (path, version) = find_criu(&cache).unwrap();
        assert!(version >= MIN_CRIU, "{}", dotted(version));
        // Remembered for the next shim, root-only.
        let id = identity(&path).unwrap();
        assert_eq!(cached_version(&cache, &id), Some(version));
        let mode = std::fs::metadata(&cache).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn the_cache_answers_only_for_the_same_binary() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("revive/criu-preflight");
        let binary = dir.path().join("criu");
        std::fs::write(&binary, "one").unwrap();
        let id = identity(&binary).unwrap();
        assert_eq!(cached_version(&cache, &id), None);
        remember(&cache, &id, 40201);
        assert_eq!(cached_version(&cache, &id), Some(40201));
        let dir_mode = std::fs::metadata(cache.parent().unwrap()).unwrap().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        // Another binary at the same path (reinstalled: new inode and size) is asked again.
        std::fs::remove_file(&binary).unwrap();
        std::fs::write(&binary, "another").unwrap();
        let other = identity(&binary).unwrap();
        assert_ne!(other, id);
        assert_eq!(cached_version(&cache, &other), None);
        // A damaged cache is no answer.
        std::fs::write(&cache, "garbage").unwrap();
        assert_eq!(cached_version(&cache, &id), None);
    }
}
