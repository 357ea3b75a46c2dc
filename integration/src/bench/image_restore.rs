//! From a restore command to the restored container answering: `ctr run` of a
//! checkpoint image on revive (revive-snapshotter, revive shim) against `ctr c restore --live
//! --rw` of a containerd checkpoint on the Go shim, at each checkpoint size.
//!
//! The workload ([`workload`]) holds `N` MiB of touched, incompressible memory (the
//! checkpoint benchmark's `dd` buffer) and a token drawn at start, and answers questions: a
//! question is a nonce written to `/ask`; within 20 ms the workload writes `<token> <nonce>`
//! to `/answer`. Only a live process holding the token answers a new nonce, so the first
//! answer proves the restored process runs with its memory.
//!
//! Made once per size, outside the timings, from one container on the Go shim (overlayfs):
//! 1. `ctr c checkpoint --task --rw` into a containerd checkpoint image (the task keeps
//!    running): what `ctr c restore --live --rw` restores on the Go shim;
//! 2. a checkpoint archive of the same process right after ([`checkpoint_image::archive_dir_of`]:
//!    `ctr task checkpoint --exit`, spec, rw layer), made into a checkpoint image
//!    ([`Format::CriO`]) and imported: what `ctr run` restores on revive.
//!
//! Two checkpoints, because containerd's checkpoint image and a checkpoint archive are made
//! by different calls; they are of the same process a moment apart (the same token and
//! buffer), and both are checked to answer with that token.
//!
//! Each timed run starts the restore command and then asks the container a new question
//! (`ctr task exec`, retried until the task takes it), timed from just before the command
//! to the answer; then the container is removed. The first run of each image is timed on
//! its own: for revive that is when containerd unpacks the image's layer into
//! revive-snapshotter and revive rebuilds the checkpoint's root filesystem on its base, what
//! a user moving a container sees once. The repeated runs follow in rounds in which the two
//! take turns, the order alternating, as in the checkpoint benchmark.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

use super::checkpoint::{run_filled, size_label};
use super::{Benchmark, Cell, REVIVE_V2, RUNC_V2, Settings, Summary};
use crate::checkpoint_image::{self, Format, FormatImage};
use crate::ctr;
use crate::image::BUSYBOX;
use crate::node::Node;
use crate::scenario;

/// How long a restored container may take from the command to its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// What containerd's tasks service leaves behind after each restore from its checkpoint
/// image: the CRIU images it extracted into `os.MkdirTemp($XDG_RUNTIME_DIR, "ctrd-checkpoint")`,
/// in /tmp when that is unset, as in the node (a tmpfs there, so N MiB of memory per restore).
const CONTAINERD_LEFTOVERS: &str = "/tmp/ctrd-checkpoint*";

/// The workload answers a question within this many seconds of it being asked.
const TICK: &str = "0.02";

/// The container's command for `mib` MiB of touched memory that answers questions.
pub fn workload(mib: u64) -> String {
    format!(
        "t=$(cat /proc/sys/kernel/random/uuid); rm -f /ready /ask /answer; \
         dd if=/dev/urandom bs={mib}M count=1 iflag=fullblock 2>/dev/null | \
         {{ head -c 1 >/dev/null; touch /ready; while :; do if [ -e /ask ]; then \
         read q < /ask; rm -f /ask; echo \"$t $q\" > /answer.new; mv /answer.new /answer; \
         fi; sleep {TICK}; done; }}"
    )
}

/// The question, asked inside the container: writes `nonce` to `/ask` and waits (up to
/// 20 s) for the answer naming it, which it prints.
pub fn ask_script(nonce: &str) -> String {
    format!(
        "echo {nonce} > /ask.new && mv /ask.new /ask && i=0; \
         while ! grep -qs ' {nonce}$' /answer; do i=$((i+1)); \
         if [ $i -gt 2000 ]; then echo 'no answer within 20 s' >&2; exit 1; fi; \
         sleep 0.01; done; cat /answer"
    )
}

/// The token in an answer to `nonce`.
pub fn parse_answer(text: &str, nonce: &str) -> Result<String> {
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(token), Some(n), None) if n == nonce && !token.is_empty() => Ok(token.to_string()),
        _ => bail!("not an answer to {nonce}: {text:?}"),
    }
}

static QUESTION: AtomicU32 = AtomicU32::new(0);

/// Asks container `id` a new question once; the token it answers with.
fn ask(node: &Node, id: &str) -> Result<String> {
    let n = QUESTION.fetch_add(1, Ordering::SeqCst);
    let nonce = format!("q{n}");
    let out = node.ctr(&[
        "task",
        "exec",
        "--exec-id",
        &format!("ask-{n}"),
        id,
        "sh",
        "-c",
        &ask_script(&nonce),
    ])?;
    parse_answer(&out, &nonce)
}

/// Asks container `id` until it answers (the task may not take an exec yet), for at most
/// `timeout`.
fn first_answer(node: &Node, id: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        match ask(node, id) {
            Ok(token) => return Ok(token),
            Err(err) if Instant::now() >= deadline => {
                return Err(err.context(format!("{id} did not answer within {timeout:?}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Seconds from just before the restore command to its return and to the first answer.
#[derive(Debug, Clone, Copy)]
struct Timing {
    command: f64,
    answered: f64,
}

/// One size's checkpoints, made once.
struct Checkpoints {
    mib: u64,
    /// The token the checkpointed process holds.
    token: String,
    /// containerd's checkpoint image (`ctr c checkpoint --task --rw`).
    containerd_image: String,
    /// The checkpoint image holding a checkpoint archive.
    checkpoint_image: String,
}

impl Checkpoints {
    fn make(node: &Node, mib: u64) -> Result<Checkpoints> {
        let id = format!("image-source-{mib}m");
        run_filled(node, RUNC_V2, &id, mib, &workload(mib))?;
        let token = first_answer(node, &id, Duration::from_secs(30))?;
        let containerd_image = format!("revive.bench/containerd-checkpoint-{mib}m:1");
        scenario::ctr_checkpoint(
            node,
            RUNC_V2,
            &[
                "container",
                "checkpoint",
                "--task",
                "--rw",
                &id,
                &containerd_image,
            ],
        )?;
        let still = ask(node, &id).context("asking after `ctr c checkpoint --task`")?;
        ensure!(
            still == token,
            "{id} answered {still} after its checkpoint, {token} before"
        );
        let dir = checkpoint_image::archive_dir_of(node, &id)?;
        let pages: u64 = std::fs::read_dir(dir.join("checkpoint"))
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        ensure!(
            pages >= mib << 20,
            "the archive's CRIU images hold {pages} bytes of pages, less than {mib} MiB"
        );
        let archive = checkpoint_image::tar_dir(&dir)?;
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        let checkpoint_image = format!("revive.bench/checkpoint-image-{mib}m:1");
        let image = Format::CriO.image(&checkpoint_image, archive, &id, BUSYBOX)?;
        node.import_image(&image)?;
        let file = node.share_dir().join(format!("{}.tar", image.file_stem()));
        std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        Ok(Checkpoints {
            mib,
            token,
            containerd_image,
            checkpoint_image,
        })
    }

    /// One restore by `runtime`'s way into a new container `id`, timed from just before the
    /// command to its return and to the first answer; the container is removed afterwards
    /// (untimed).
    fn restore(&self, node: &Node, runtime: &str, id: &str) -> Result<Timing> {
        node.run(&["sync"])?;
        let started = Instant::now();
        match runtime {
            RUNC_V2 => node.ctr(&[
                "container",
                "restore",
                "--live",
                "--rw",
                id,
                &self.containerd_image,
            ])?,
            REVIVE_V2 => checkpoint_image::run_image(node, &self.checkpoint_image, id)?,
            other => bail!("{}", unsupported(other)),
        };
        let command = started.elapsed().as_secs_f64();
        let answer = first_answer(node, id, ANSWER_TIMEOUT);
        let answered = started.elapsed().as_secs_f64();
        let answer = answer.and_then(|token| {
            ensure!(
                token == self.token,
                "{id} answered with token {token}, not the checkpointed {}: it started afresh",
                self.token
            );
            Ok(())
        });
        let removed = ctr::remove(node, id);
        // containerd's tasks service extracts a checkpoint image's CRIU images into a
        // temporary directory for the restore and never removes it.
        let swept = if runtime == RUNC_V2 {
            node.sh(&format!("rm -rf {CONTAINERD_LEFTOVERS}")).map(drop)
        } else {
            Ok(())
        };
        answer?;
        removed?;
        swept?;
        Ok(Timing { command, answered })
    }

    fn remove(&self, node: &Node) {
        for image in [&self.containerd_image, &self.checkpoint_image] {
            if let Err(err) = node.ctr(&["images", "rm", image]) {
                eprintln!("revive-bench: could not remove image {image}: {err:#}");
            }
        }
    }
}

fn unsupported(runtime: &str) -> String {
    format!(
        "this benchmark compares `ctr c restore` on {RUNC_V2} with `ctr run` of a checkpoint \
         image on {REVIVE_V2}; it has nothing to run on {runtime}"
    )
}

/// One runtime's column while the rounds go on.
struct Samples<'a> {
    runtime: &'a str,
    first: Vec<Option<Timing>>,
    repeated: Vec<Vec<Timing>>,
    failed: Option<anyhow::Error>,
}

impl<'a> Samples<'a> {
    fn run(&mut self, node: &Node, ck: &Checkpoints, size: usize, round: usize) {
        if self.failed.is_some() {
            return;
        }
        let side = if self.runtime == RUNC_V2 { "go" } else { "rv" };
        let id = format!("{side}-restored-{}m-{round}", ck.mib);
        match ck.restore(node, self.runtime, &id) {
            Ok(timing) if round == 0 => self.first[size] = Some(timing),
            Ok(timing) => self.repeated[size].push(timing),
            Err(err) => {
                let when = if round == 0 {
                    "first run".to_string()
                } else {
                    format!("run {round}")
                };
                self.failed = Some(err.context(format!("{} {when}", size_label(ck.mib))));
            }
        }
    }

    fn cells(self) -> Result<Vec<Cell>> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let mut cells = Vec::new();
        for (first, repeated) in self.first.iter().zip(&self.repeated) {
            let first = first.context("no first run")?;
            cells.push(Cell::number(
                format!("{:.2} s (command {:.2} s)", first.answered, first.command),
                first.answered,
            ));
            let answered: Vec<f64> = repeated.iter().map(|t| t.answered).collect();
            let command: Vec<f64> = repeated.iter().map(|t| t.command).collect();
            let s = Summary::of(&answered).context("no repeated runs")?;
            let c = Summary::of(&command).context("no repeated runs")?;
            cells.push(Cell::number(
                format!(
                    "{:.2} s ({:.2}–{:.2} s; command {:.2} s)",
                    s.median, s.min, s.max, c.median
                ),
                s.median,
            ));
        }
        Ok(cells)
    }
}

/// `ctr run` of a checkpoint image on revive against `ctr c restore` on the Go shim.
pub struct ImageRestore;

impl ImageRestore {
    fn rows_for(settings: &Settings) -> Vec<String> {
        let mut rows = Vec::new();
        for mib in &settings.checkpoint_mib {
            rows.push(format!("{}: first run of the image", size_label(*mib)));
            rows.push(format!(
                "{}: repeated runs, median (range)",
                size_label(*mib)
            ));
        }
        rows
    }
}

impl Benchmark for ImageRestore {
    fn name(&self) -> &'static str {
        "image-restore"
    }
    fn title(&self, s: &Settings) -> String {
        format!(
            "restore command to the restored container answering: `ctr c restore --live --rw` \
             (Go shim) against `ctr run` of a checkpoint image (revive), {} repeated runs per size",
            s.image_restore_runs
        )
    }
    fn rows(&self, settings: &Settings) -> Vec<String> {
        Self::rows_for(settings)
    }
    fn method(&self, _: &Settings) -> Vec<String> {
        vec![
            format!(
                "The container (busybox, Go shim, overlayfs) runs `{}`: the checkpoint \
                 benchmark's dd buffer of N MiB, and a loop that answers a nonce written to \
                 `/ask` with `<token> <nonce>` in `/answer` within {TICK} s.",
                workload(0).replace("bs=0M", "bs=<N>M")
            ),
            "Made once per size, untimed, from that one container: `ctr c checkpoint --task --rw \
             <id> <image>` (containerd's checkpoint image; the task keeps running and is asked \
             again), then right after `ctr task checkpoint --exit --image-path`, the container's \
             spec and its rw layer as a checkpoint archive, made into a checkpoint image (CRI-O's \
             annotations, one gzip layer) and imported. Two checkpoints of the same process, \
             because neither kind can be made from the other."
                .into(),
            format!(
                "`{RUNC_V2}` column: `ctr c restore --live --rw <new id> <containerd image>` (the \
                 runtime the checkpoint names; overlayfs). `{REVIVE_V2}` column: `ctr run -d \
                 --snapshotter revive --runtime {REVIVE_V2} <checkpoint image> <new id>`, no \
                 command. Each timed from just before the command (entering the node with \
                 nsenter, as every ctr here) to the first answer to a new nonce from `ctr task \
                 exec ... sh -c <ask>`, retried until the task takes it; the answer must carry \
                 the checkpointed token. \"command\" is the part until the command returned \
                 (for both, once the task has started). A `sync` comes before each, the \
                 container is removed after each (untimed); so are the CRIU images containerd \
                 extracts from its checkpoint image for each `ctr c restore` into \
                 `{CONTAINERD_LEFTOVERS}` and leaves there (on the node's tmpfs they would fill \
                 its memory within 8 rounds at these sizes)."
            ),
            "First run: the first restore of each image, every size in turn, the two taking \
             turns; for revive it includes containerd unpacking the image's layer into \
             revive-snapshotter (gunzip, N MiB of pages) and the rebuild of the checkpoint's \
             root filesystem on its base (busybox, unpacked by revive once, in the smallest \
             size's first run). Both images were just written, so their content is in the page \
             cache for both. Then the repeated runs: rounds in which the two take turns, every \
             size in each round, which goes first alternating between rounds and between sizes."
                .into(),
        ]
    }

    fn measure_runtimes(
        &self,
        node: &Node,
        runtimes: &[String],
        settings: &Settings,
        progress: &mut dyn FnMut(&str),
    ) -> Vec<Result<Vec<Cell>>> {
        let title = "image restore";
        let sizes = settings.checkpoint_mib.len();
        let mut columns: Vec<Samples<'_>> = runtimes
            .iter()
            .map(|runtime| Samples {
                runtime,
                first: vec![None; sizes],
                repeated: vec![Vec::new(); sizes],
                failed: (runtime != RUNC_V2 && runtime != REVIVE_V2)
                    .then(|| anyhow!("{}", unsupported(runtime))),
            })
            .collect();
        let mut checkpoints = Vec::new();
        let mut setup_failed = None;
        for mib in &settings.checkpoint_mib {
            progress(&format!(
                "{title}: checkpointing {} on {RUNC_V2} (both kinds)",
                size_label(*mib)
            ));
            let started = Instant::now();
            match Checkpoints::make(node, *mib) {
                Ok(ck) => {
                    progress(&format!(
                        "{title}: {} checkpointed and imported in {:.0} s",
                        size_label(*mib),
                        started.elapsed().as_secs_f64()
                    ));
                    checkpoints.push(ck);
                }
                Err(err) => {
                    eprintln!("revive-bench: image restore: {err:#}");
                    setup_failed = Some(format!(
                        "making the {} checkpoints: {err:#}",
                        size_label(*mib)
                    ));
                    break;
                }
            }
        }
        if setup_failed.is_none() {
            for round in 0..=settings.image_restore_runs {
                progress(&format!(
                    "{title}: {}",
                    if round == 0 {
                        "first runs".to_string()
                    } else {
                        format!("round {round}/{}", settings.image_restore_runs)
                    }
                ));
                for (size, ck) in checkpoints.iter().enumerate() {
                    let mut order: Vec<usize> = (0..columns.len()).collect();
                    if (round + size) % 2 == 1 {
                        order.reverse();
                    }
                    for i in order {
                        columns[i].run(node, ck, size, round);
                    }
                }
            }
        }
        for ck in &checkpoints {
            ck.remove(node);
        }
        let _ = node.sh("rm -rf /share/image-source-*-archive");
        columns
            .into_iter()
            .map(|c| match &setup_failed {
                Some(err) => Err(anyhow!("{err}")),
                None => c.cells(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_their_question() {
        assert_eq!(parse_answer("tok q7\n", "q7").unwrap(), "tok");
        assert!(parse_answer("tok q7\n", "q8").is_err());
        assert!(parse_answer("tok\n", "q7").is_err());
        assert!(parse_answer("tok q7 extra\n", "q7").is_err());
        let ask = ask_script("q7");
        assert!(
            ask.contains("echo q7 > /ask.new && mv /ask.new /ask"),
            "{ask}"
        );
        assert!(ask.contains("grep -qs ' q7$' /answer"), "{ask}");
    }

    #[test]
    fn the_workload_fills_and_answers() {
        let w = workload(256);
        assert!(w.contains("bs=256M count=1 iflag=fullblock"), "{w}");
        assert!(w.contains("echo \"$t $q\" > /answer.new"), "{w}");
        let settings = Settings {
            checkpoint_mib: vec![64, 1024],
            ..Settings::default()
        };
        let rows = ImageRestore::rows_for(&settings);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[2], "1 GiB: first run of the image");
        assert_eq!(rows[3], "1 GiB: repeated runs, median (range)");
    }
}
