//! Checkpoint and restore of a container's init with the runtime and CRIU: the dump (with
//! its retries of a process met in state D, and its early freeze), the restore at Start of
//! an init created from a checkpoint, a container created from a checkpoint image, and what
//! CRIU leaves behind (its log beside the bundle, its stats, root-only image trees).
//!
//! The caller holds the init's lock across each of these (see [`crate::process`]).

use std::path::{Path, PathBuf};

use log::{info, warn};

use crate::io::{ProcessIo, StdioSpec};
use crate::options::CheckpointConfig;
use crate::preflight::Unready;
use crate::process::Restore;
use crate::runtime::{OciRuntime, RestoreConfig, read_pid};
use crate::spec::{cri_checkpoint_dir, read_spec, write_spec};

/// Why a checkpoint or a restore failed. The message is what containerd's client sees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// CRIU or the kernel cannot checkpoint or restore on this host.
    #[error(transparent)]
    Preflight(#[from] Unready),
    /// The runtime's dump failed; the container goes on as it was. `asleep` names the
    /// threads in uninterruptible sleep right after the first attempt, where CRIU met one.
    #[error("checkpoint of {id} failed; the container is left as it was: {cause}{log}{}",
        asleep.as_ref().map(|a| format!("\nin state D after the first attempt: {a}")).unwrap_or_default())]
    Dump {
        id: String,
        cause: Box<crate::error::Error>,
        log: CriuLog,
        asleep: Option<Box<str>>,
    },
    /// The runtime's restore failed; no container is left behind in the runtime.
    #[error("{cause}{log}")]
    Restore {
        cause: Box<crate::error::Error>,
        log: CriuLog,
    },
    /// Around the runtime call: the work directory, the spec, the console, the pid file.
    /// A restore failing here leaves no container behind in the runtime either.
    #[error(transparent)]
    Setup(Box<crate::error::Error>),
}

impl From<crate::error::Error> for Error {
    fn from(e: crate::error::Error) -> Error {
        Error::Setup(Box::new(e))
    }
}

impl Error {
    /// The status code containerd's client sees.
    pub fn code(&self) -> containerd_shim_protos::ttrpc::Code {
        use containerd_shim_protos::ttrpc::Code;
        match self {
            Error::Preflight(_) => Code::FAILED_PRECONDITION,
            Error::Dump { .. } | Error::Restore { .. } => Code::UNKNOWN,
            Error::Setup(e) => e.code(),
        }
    }
}

/// What CRIU's log of a failed dump or restore said, and where the whole of it was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriuLog {
    /// CRIU left no log to read.
    Missing,
    Kept {
        said: Said,
        /// What to do about it, for the errors CRIU's log is known to hold.
        advice: Option<&'static str>,
        /// The copy beside the bundle.
        copy: PathBuf,
    },
}

/// The part of CRIU's log an error quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// The errors it logged (at most five).
    Errors(Vec<String>),
    /// Its last ten lines, when it logged no error.
    LastLines(Vec<String>),
}

impl std::fmt::Display for CriuLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let CriuLog::Kept { said, advice, copy } = self else {
            return Ok(());
        };
        match said {
            Said::Errors(errors) => write!(f, "\nCRIU: {}", errors.join("; "))?,
            Said::LastLines(lines) => {
                write!(f, "\nlast lines of CRIU's log:\n{}", lines.join("\n"))?
            }
        }
        if let Some(advice) = advice {
            write!(f, "\nwhat to do: {advice}")?;
        }
        write!(f, "\nCRIU's full log: {}", copy.display())
    }
}

/// The pauses before each further attempt of a dump that met a process in uninterruptible
/// sleep.
const TRANSIENT_PAUSES: [std::time::Duration; 2] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(2),
];

/// The container a checkpoint or restore is of.
pub struct Target<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub runtime: &'a dyn OciRuntime,
}

/// Checkpoints the running (or paused) init `pid` with the runtime and CRIU.
pub async fn checkpoint(
    target: &Target<'_>,
    pid: u32,
    config: &CheckpointConfig,
) -> Result<(), Error> {
    let id = target.id;
    target.runtime.preflight(false).await?;
    // CRI's archive directory when CRI sent no options (see `cri_checkpoint_dir`): CRIU's
    // log and stats land where CRI archives them, as they do for runc-typed runtimes.
    let asked_work = config.work_path.clone().or_else(|| {
        let dir = cri_checkpoint_dir(&read_spec(target.bundle).ok()?, id)?;
        dir.is_dir().then(|| {
            info!(
                "checkpoint of {id}: CRIU's log and stats go to CRI's archive directory {}",
                dir.display()
            );
            dir
        })
    });
    let work = criu_work(target.bundle, asked_work.as_ref())?;
    let image_existed = config.image_path.exists();
    let log = target.bundle.join("checkpoint-log.json");
    let mut result = dump(target, pid, config, &work, &log).await;
    let mut asleep = None;
    // A process caught in uninterruptible sleep (waiting on a slow disk) fails the dump; the
    // container goes on running, and another attempt a moment later usually finds it awake.
    for pause in TRANSIENT_PAUSES {
        let transient = result.is_err()
            && std::fs::read_to_string(work.join("dump.log"))
                .is_ok_and(|text| revive_checkpoint::criulog::transient(&text));
        if !transient {
            break;
        }
        let now = sleepers(pid);
        warn!(
            "checkpoint of {id}: a process was in state D ({now}); trying again in {} ms",
            pause.as_millis()
        );
        asleep.get_or_insert(now.into_boxed_str());
        if !image_existed {
            let _ = std::fs::remove_dir_all(&config.image_path);
        }
        tokio::time::sleep(pause).await;
        result = dump(target, pid, config, &work, &log).await;
    }
    if let Err(cause) = result {
        let log = keep_criu_log(&work.join("dump.log"), &target.bundle.join("criu-dump.log"));
        if std::fs::read_to_string(work.join("dump.log"))
            .is_ok_and(|text| revive_checkpoint::criulog::transient(&text))
        {
            warn!(
                "checkpoint of {id}: gave up with a process in state D ({})",
                sleepers(pid)
            );
        }
        // What CRIU wrote before failing holds memory pages: gone if the directory
        // was ours, root-only if it was there before.
        if image_existed {
            restrict(&config.image_path);
        } else {
            let _ = std::fs::remove_dir_all(&config.image_path);
        }
        if asked_work.is_none() {
            let _ = std::fs::remove_dir_all(&work);
        }
        return Err(Error::Dump {
            id: id.to_string(),
            cause: Box::new(cause),
            log,
            asleep,
        });
    }
    report_stats(id, &work, &config.image_path);
    // Every memory page of the container is in there, secrets included: root only.
    restrict(&config.image_path);
    if asked_work.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        restrict(&work);
    }
    Ok(())
}

/// The runtime's checkpoint. One that ends the container freezes its cgroup first, which
/// spares CRIU's 100 ms freezer step (see [`crate::freezer`]); a failed one leaves it
/// running.
async fn dump(
    target: &Target<'_>,
    pid: u32,
    config: &CheckpointConfig,
    work: &Path,
    log: &Path,
) -> crate::error::Result<()> {
    let freezer = if config.exit && target.runtime.hands_criu_the_freezer() {
        freeze_early(target.id, pid).await
    } else {
        None
    };
    let result = target
        .runtime
        .checkpoint(target.id, config, work, log)
        .await;
    // After a dump that failed CRIU hands the processes back frozen, as it found them;
    // after one that succeeded they are gone and the cgroup with them. (One write to
    // the cgroup file: nothing to wait for.)
    if let Some(Err(e)) = freezer.map(|f| f.thaw()) {
        warn!("checkpoint of {}: thawing its cgroup: {e}", target.id);
    }
    result
}

/// What the threads of the cgroup of `pid` in uninterruptible sleep wait in, and whether
/// the cgroup is frozen (a client's pause holds it frozen across every attempt): for the
/// log of a dump that met a process in state D.
fn sleepers(pid: u32) -> String {
    let Some(freezer) = crate::freezer::Freezer::of(pid) else {
        return "its cgroup is not found".into();
    };
    let frozen = match freezer.state() {
        Ok(crate::freezer::State::Frozen) => "frozen",
        Ok(crate::freezer::State::Freezing) => "freezing",
        Ok(crate::freezer::State::Thawed) => "not frozen",
        Err(_) => "in an unknown freezer state",
    };
    let asleep = freezer.uninterruptible();
    if asleep.is_empty() {
        format!("none now, the cgroup {frozen}")
    } else {
        format!("now {}, the cgroup {frozen}", asleep.join(", "))
    }
}

/// Freezes the cgroup of `pid` for a checkpoint with exit; None (and nothing changed)
/// when there is no freezer, the container is already paused, or it did not freeze
/// within [`crate::freezer::BUDGET`], leaving the freezing to CRIU as usual.
async fn freeze_early(id: &str, pid: u32) -> Option<crate::freezer::Freezer> {
    let id = id.to_string();
    tokio::task::spawn_blocking(move || {
        let freezer = crate::freezer::Freezer::of(pid)?;
        match freezer.freeze(crate::freezer::BUDGET) {
            Ok(Some(took)) => {
                info!(
                    "checkpoint of {id}: froze its cgroup in {} us",
                    took.as_micros()
                );
                Some(freezer)
            }
            Ok(None) => {
                info!("checkpoint of {id}: cgroup not frozen early; CRIU freezes it");
                None
            }
            Err(e) => {
                warn!("checkpoint of {id}: freezing its cgroup early: {e}; CRIU freezes it");
                None
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// A restored init.
pub struct Restored {
    pub pid: u32,
    /// Restored for analysis ([`crate::sandbox`]): its processes stopped, to be frozen
    /// before they run.
    pub sandboxed: bool,
}

/// `runtime restore --detach` of `restore`, with the init's stdio.
pub async fn restore(
    target: &Target<'_>,
    restore: &Restore,
    io: &ProcessIo,
    stdio: &StdioSpec,
) -> Result<Restored, Error> {
    let (id, bundle) = (target.id, target.bundle);
    target.runtime.preflight(true).await?;
    let mut spec = read_spec(bundle)?;
    // Never into another container's cgroup (the checkpoint's spec names the original's).
    let moved = crate::cgroup::relocate_restore(&mut spec, id)?.is_some();
    let sandboxed = crate::sandbox::requested(&spec);
    if sandboxed {
        crate::sandbox::prepare(&mut spec, bundle)?;
        info!(
            "{id}: a sandboxed restore: stopped, then paused; loopback left down; root read-only"
        );
    }
    // Loopback up in a new network namespace before the processes resume, unless the
    // restore is a sandbox, whose loopback stays down.
    let shim =
        std::env::current_exe().map_err(crate::error::Error::io("finding the shim binary"))?;
    let hooked = !sandboxed && crate::network::add_loopback_hook(&mut spec, &shim);
    if moved || hooked || sandboxed {
        write_spec(bundle, &spec)?;
    }
    let work = criu_work(bundle, restore.work.as_ref())?;
    let mut criu = restore.criu.clone();
    // A checkpoint taken with open_tcp holds its connections as tcp-stream images;
    // CRIU restores them only with --tcp-established, which no restore request can
    // ask for (runc's Options has no such field).
    if !criu.open_tcp && holds_tcp_connections(&restore.image) {
        info!("{id}: the checkpoint holds established TCP connections: restoring them");
        criu.open_tcp = true;
    }
    let config = RestoreConfig {
        pid_file: bundle.join("init.pid"),
        image: restore.image.clone(),
        work: work.clone(),
        no_pivot: restore.no_pivot,
        criu,
        lsm: crate::privilege::lsm_args(&spec),
        log: bundle.join("restore-log.json"),
    };
    let console = io.expect_console();
    if let Err(cause) = target.runtime.restore(id, bundle, &config, io).await {
        if let Some(pending) = console {
            pending.abort();
        }
        let log = keep_criu_log(&work.join("restore.log"), &bundle.join("criu-restore.log"));
        // A failed restore leaves no container behind in the runtime.
        let _ = target.runtime.delete(id, true).await;
        return Err(Error::Restore {
            cause: Box::new(cause),
            log,
        });
    }
    let restored = match io.attach_console(console, stdio).await {
        Ok(()) => read_pid(&config.pid_file).await,
        Err(err) => Err(err),
    };
    if restored.is_err() {
        // Restored but not the shim's to manage: it goes, as after a failed restore.
        let _ = target.runtime.delete(id, true).await;
    }
    Ok(Restored {
        pid: restored?,
        sandboxed,
    })
}

/// CRIU's work directory (logs, stats): the one asked for, else `criu-work` in
/// [`work_dir`]; created.
fn criu_work(bundle: &Path, asked: Option<&PathBuf>) -> crate::error::Result<PathBuf> {
    let work = asked
        .cloned()
        .unwrap_or_else(|| work_dir(bundle).join("criu-work"));
    std::fs::create_dir_all(&work).map_err(crate::error::Error::io(format!(
        "creating {}",
        work.display()
    )))?;
    Ok(work)
}

/// containerd's per-task work directory (`<bundle>/work`), else the bundle.
fn work_dir(bundle: &Path) -> PathBuf {
    let work = bundle.join("work");
    if work.is_dir() {
        work
    } else {
        bundle.to_path_buf()
    }
}

/// Whether CRIU's images in `image` hold established TCP connections (`tcp-stream-*.img`,
/// written only by a dump with --tcp-established).
fn holds_tcp_connections(image: &Path) -> bool {
    std::fs::read_dir(image).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("tcp-stream-") && name.ends_with(".img")
        })
    })
}

/// Copies CRIU's `stats-dump` from the work directory into the image directory, logs its
/// timings and writes them there as `stats-dump.json`. Best effort: a checkpoint without
/// stats is still a checkpoint.
fn report_stats(id: &str, work: &Path, image: &Path) {
    let Ok(data) = std::fs::read(work.join("stats-dump")) else {
        return;
    };
    if work != image {
        let _ = std::fs::write(image.join("stats-dump"), &data);
    }
    match revive_checkpoint::criu::parse_stats(&data) {
        Ok(stats) => {
            if let Some(d) = &stats.dump {
                info!(
                    "checkpoint of {id}: freezing {} us, frozen {} us, memory dump {} us, memory write {} us, {} pages scanned, {} written",
                    d.freezing_time,
                    d.frozen_time,
                    d.memdump_time,
                    d.memwrite_time,
                    d.pages_scanned,
                    d.pages_written
                );
            }
            if let Ok(json) = serde_json::to_vec_pretty(&stats) {
                let _ = std::fs::write(image.join("stats-dump.json"), json);
            }
        }
        Err(e) => warn!("checkpoint of {id}: unreadable stats-dump: {e}"),
    }
}

/// Makes a checkpoint tree root-only: directories 0700, files 0600 (symlinks untouched).
pub fn restrict(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            restrict(&entry.path());
        }
    } else if meta.is_file() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o600));
    }
}

/// Copies CRIU's log of a failed dump or restore to `keep` and reads what it said.
fn keep_criu_log(log: &Path, keep: &Path) -> CriuLog {
    use revive_checkpoint::criulog;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(text) = std::fs::read_to_string(log) else {
        return CriuLog::Missing;
    };
    // Root only, like the checkpoint: the log names the container's files and sockets.
    let _ = std::fs::remove_file(keep);
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(keep)
    {
        let _ = std::io::Write::write_all(&mut file, text.as_bytes());
    }
    let errors = criulog::errors(&text, 5);
    let advice = criulog::advice(&errors);
    let said = if errors.is_empty() {
        let lines: Vec<&str> = text.lines().collect();
        Said::LastLines(
            lines[lines.len().saturating_sub(10)..]
                .iter()
                .map(|l| l.to_string())
                .collect(),
        )
    } else {
        Said::Errors(errors)
    };
    CriuLog::Kept {
        said,
        advice,
        copy: keep.to_path_buf(),
    }
}

/// If revive-snapshotter made the container's rootfs from a checkpoint image (its handoff
/// lies beside the overlay's upper directory, see `revive_checkpoint::handoff`): the handoff
/// and the checkpoint's CRIU images, once checked. `None` for any other container.
pub fn checkpoint_image(
    id: &str,
    rootfs: &[containerd_shim_protos::api::Mount],
) -> crate::error::Result<Option<(revive_checkpoint::handoff::Handoff, PathBuf)>> {
    use revive_checkpoint::{archive, handoff};
    let Some(upper) = rootfs
        .iter()
        .filter(|m| m.type_ == "overlay")
        .find_map(|m| handoff::upperdir(&m.options))
    else {
        return Ok(None);
    };
    let Some(handoff) =
        handoff::find(upper).map_err(|e| crate::error::Error::InvalidArgument(e.to_string()))?
    else {
        return Ok(None);
    };
    let images = archive::validate(&handoff.archive)
        .map_err(|e| refuse_image(id, &handoff, e.to_string()))?;
    Ok(Some((handoff, images)))
}

fn refuse_image(
    id: &str,
    handoff: &revive_checkpoint::handoff::Handoff,
    what: String,
) -> crate::error::Error {
    crate::error::Error::InvalidArgument(format!(
        "{id} is created from a checkpoint image (of a container of {}), but cannot be \
         restored: {what}",
        handoff.base_image
    ))
}

/// The new container's spec reconciled with a checkpoint image's `spec.dump` (see
/// [`crate::reconcile`]).
pub struct FromImage {
    /// The spec to write into the bundle.
    pub spec: serde_json::Value,
    /// The spec a restore is checked against: the container's own, with the stand-ins the
    /// shim supplies in place of what it had at their destinations.
    pub policy: serde_json::Value,
    pub notes: Vec<String>,
    /// What the shim makes before the restore.
    pub stand_ins: crate::standins::StandIns,
}

/// The new container's `spec` (in `bundle`) reconciled with the checkpoint's `spec.dump`.
pub fn reconcile_with(
    id: &str,
    handoff: &revive_checkpoint::handoff::Handoff,
    bundle: &Path,
    spec: &serde_json::Value,
) -> crate::error::Result<FromImage> {
    let dumped = revive_checkpoint::archive::read_spec(&handoff.archive)
        .map_err(|e| refuse_image(id, handoff, e.to_string()))?;
    let stand_ins = bundle.join(crate::standins::DIR);
    let images = handoff
        .archive
        .join(revive_checkpoint::archive::CHECKPOINT_DIR);
    let root_mode =
        revive_checkpoint::criu::images::root_mode(&revive_checkpoint::criu::images::Dir(&images))
            .map_err(|e| refuse_image(id, handoff, e.to_string()))?;
    let mut reconciled = spec.clone();
    let shared = crate::reconcile::share_joined_host_namespaces(
        &mut reconciled,
        &dumped,
        &crate::spec::is_host_namespace,
    );
    let mut done = crate::reconcile::reconcile(&mut reconciled, &dumped, &stand_ins)
        .map_err(|e| refuse_image(id, handoff, e))?;
    for kind in shared {
        done.notes
            .push(format!("the host's {kind} namespace shared, not joined"));
    }
    Ok(FromImage {
        policy: crate::reconcile::with_stand_ins(spec, &done.stand_ins),
        spec: reconciled,
        notes: done.notes,
        stand_ins: crate::standins::StandIns::new(
            bundle,
            done.stand_ins,
            &dumped,
            &handoff.archive,
            root_mode,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_streams_in_the_images_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inventory.img"), b"").unwrap();
        assert!(!holds_tcp_connections(dir.path()));
        std::fs::write(dir.path().join("tcp-stream-3a2b.img"), b"").unwrap();
        assert!(holds_tcp_connections(dir.path()));
        assert!(!holds_tcp_connections(&dir.path().join("missing")));
    }

    #[test]
    fn checkpoint_trees_become_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("ck/inner");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("pages-1.img"), b"secret").unwrap();
        std::fs::write(dir.path().join("ck/core.img"), b"x").unwrap();
        restrict(&dir.path().join("ck"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("ck")), 0o700);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join("pages-1.img")), 0o600);
        assert_eq!(mode(&dir.path().join("ck/core.img")), 0o600);
    }

    /// The messages clients see: the runtime's words, then CRIU's, the advice and the copy.
    #[test]
    fn failures_quote_criu_and_keep_its_log() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dump.log");
        let keep = dir.path().join("criu-dump.log");
        assert_eq!(keep_criu_log(&log, &keep), CriuLog::Missing);
        assert_eq!(CriuLog::Missing.to_string(), "");
        std::fs::write(&log, "one\ntwo\n").unwrap();
        let said = keep_criu_log(&log, &keep);
        assert_eq!(
            said.to_string(),
            format!(
                "\nlast lines of CRIU's log:\none\ntwo\nCRIU's full log: {}",
                keep.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&keep).unwrap(), "one\ntwo\n");
        assert_eq!(
            std::fs::metadata(&keep).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let dump = Error::Dump {
            id: "c1".into(),
            cause: Box::new(crate::error::Error::Runtime(
                "checkpoint: runtime exited with exit status: 1: criu failed".into(),
            )),
            log: CriuLog::Kept {
                said: Said::Errors(vec!["Error (criu/a.c:1): x".into(), "y".into()]),
                advice: Some("do this"),
                copy: "/b/criu-dump.log".into(),
            },
            asleep: None,
        };
        assert_eq!(
            dump.to_string(),
            "checkpoint of c1 failed; the container is left as it was: checkpoint: runtime \
             exited with exit status: 1: criu failed\nCRIU: Error (criu/a.c:1): x; y\nwhat to \
             do: do this\nCRIU's full log: /b/criu-dump.log"
        );
        let Error::Dump { id, cause, log, .. } = dump else {
            unreachable!("made above")
        };
        let asleep = Error::Dump {
            id,
            cause,
            log,
            asleep: Some("now 12 (sh) in wait_for_vfork_done, the cgroup frozen".into()),
        };
        assert!(
            asleep.to_string().ends_with(
                "CRIU's full log: /b/criu-dump.log\nin state D after the first attempt: now 12 \
                 (sh) in wait_for_vfork_done, the cgroup frozen"
            ),
            "{asleep}"
        );
        let dump = asleep;
        use containerd_shim_protos::ttrpc::Code;
        assert_eq!(dump.code(), Code::UNKNOWN);
        assert_eq!(
            Error::Preflight(Unready("criu is missing".into())).to_string(),
            "criu is missing"
        );
        assert_eq!(
            Error::Preflight(Unready("x".into())).code(),
            Code::FAILED_PRECONDITION
        );
        let restore = Error::Restore {
            cause: Box::new(crate::error::Error::Runtime("restore: boom".into())),
            log: CriuLog::Missing,
        };
        assert_eq!(restore.to_string(), "restore: boom");
        assert_eq!(
            Error::from(crate::error::Error::NotFound("gone".into())).code(),
            Code::NOT_FOUND
        );
    }
}
