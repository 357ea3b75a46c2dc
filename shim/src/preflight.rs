//! Before a checkpoint or a restore: is CRIU there, new enough, and can this kernel do it?
//! A missing piece is an error that names it, before runc and CRIU get to fail with a log
//! excerpt.
//!
//! CRIU is asked through its RPC interface (rust-criu starts `criu swrk`), once per shim:
//! the answer does not change while the shim lives.

use std::path::{Path, PathBuf};

use tokio::sync::OnceCell;

use crate::error::{Error, Result};

/// The oldest CRIU runc checkpoints and restores with (runc's own minimum).
const MIN_CRIU: u32 = 30000;

/// The CRIU the preflight found: its path and version (major * 10000 + minor * 100 +
/// sublevel).
type Found = std::result::Result<(PathBuf, u32), String>;

/// Only a CRIU that answered is remembered: one installed after a failed preflight is
/// found by the next.
static FOUND: OnceCell<(PathBuf, u32)> = OnceCell::const_new();

/// Checks CRIU and the kernel for a checkpoint (`restore` false) or a restore.
pub async fn check(restore: bool) -> Result<()> {
    FOUND
        .get_or_try_init(|| async {
            tokio::task::spawn_blocking(find_criu)
                .await
                .unwrap_or_else(|e| Err(format!("checking CRIU: {e}")))
        })
        .await
        .map_err(|e| Error::FailedPrecondition(e.clone()))?;
    kernel(Path::new("/proc"), restore).map_err(Error::FailedPrecondition)
}

/// CRIU on the PATH (where runc looks for it), and its version through its RPC interface.
fn find_criu() -> Found {
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
    Ok((path, version))
}

/// The kernel features a checkpoint or restore needs, seen in `proc`.
fn kernel(proc: &Path, restore: bool) -> std::result::Result<(), String> {
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
        let (_, version) = find_criu().unwrap();
        assert!(version >= MIN_CRIU, "{}", dotted(version));
    }
}
