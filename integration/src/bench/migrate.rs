//! Moving a pod to another node with `revive migrate`, against starting the same workload
//! cold, in a cluster of two workers ([`crate::cluster`]) on the node's flavour.
//!
//! The workload is the image restore benchmark's ([`workload`]): `N` MiB of touched,
//! incompressible memory and a token drawn at start, answering a nonce written to `/ask`.
//! In each round, for each size, on node-a:
//! - **cold start**, per runtime (the order alternating between rounds): a pod with the
//!   workload, on the cluster's default runtime (the Go shim) or on RuntimeClass `revive`,
//!   timed from just before `kubectl create` to its first answer (`crictl exec` on the
//!   node, retried every 50 ms): the pod scheduled, its sandbox and container started, the
//!   memory filled from /dev/urandom;
//! - **migrate**, revive's cold-started pod then moved to node-b with `revive migrate`,
//!   timed from just before the command (its checkpoint's start) to the first answer of
//!   the copy on node-b carrying the pod's token: the downtime of a pod that moves, since
//!   whatever it did after the checkpoint is lost. `revive migrate`'s own report splits
//!   it: checkpoint, image build and push, restore (copy created to ready).
//!
//! Each pod is removed after its round, and the copy's checkpoint image from node-b, so
//! every move is a first generation onto a node that has not seen its image.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

use super::checkpoint::size_label;
use super::image_restore::{ask_script, parse_answer, workload};
use super::{Benchmark, Cell, REVIVE_V2, RUNC_V2, Settings, Summary};
use crate::cluster::{self, Cluster, Worker};
use crate::node::Node;

/// How long a pod may take from its creation, or from the move's start, to its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// The workload's container name.
const CONTAINER: &str = "app";

pub struct Migration;

/// The three phases `revive migrate` reports: checkpoint, image build and push, restore.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phases {
    pub checkpoint: f64,
    pub push: f64,
    pub restore: f64,
}

/// The phases in what `revive migrate` printed ("checkpointed in 0.5 s, images pushed in
/// 4.0 s (...), restored in 1.2 s").
pub fn phases(said: &str) -> Option<Phases> {
    let after = |label: &str| -> Option<f64> {
        let rest = &said[said.find(label)? + label.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some(Phases {
        checkpoint: after("checkpointed in ")?,
        push: after("images pushed in ")?,
        restore: after("restored in ")?,
    })
}

/// The pod of the workload holding `mib` MiB on `node`, on RuntimeClass revive for
/// `runtime` revive, else on the cluster's default runtime.
fn workload_pod(name: &str, node: &str, image: &str, runtime: &str, mib: u64) -> serde_json::Value {
    let script = workload(mib);
    let mut pod = cluster::one_container_pod(name, node, image, CONTAINER, &["sh", "-c", &script]);
    if runtime != REVIVE_V2
        && let Some(spec) = pod["spec"].as_object_mut()
    {
        spec.remove("runtimeClassName");
    }
    pod
}

/// Asks the workload of pod `pod` on `node` until it answers, for at most
/// [`ANSWER_TIMEOUT`] from `since`, or until `gave_up` says to stop; the token it answered.
fn first_answer(
    node: &Node,
    pod: &str,
    since: Instant,
    gave_up: &dyn Fn() -> bool,
) -> Result<String> {
    for n in 0u64.. {
        let nonce = format!("m{n}");
        let answer = cluster::container_id(node, pod, CONTAINER).and_then(|id| {
            crate::crictl::crictl(node, &["exec", &id, "sh", "-c", &ask_script(&nonce)])
        });
        if let Ok(token) = answer.and_then(|out| parse_answer(&out, &nonce)) {
            return Ok(token);
        }
        ensure!(!gave_up(), "pod {pod} did not come up");
        ensure!(
            since.elapsed() < ANSWER_TIMEOUT,
            "pod {pod} did not answer within {ANSWER_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    unreachable!("the loop returns")
}

/// One cold start of pod `name` on `worker`: seconds from `kubectl create` to its answer,
/// and its token. The pod stays.
fn cold_start(
    cluster: &Cluster,
    worker: &Worker,
    name: &str,
    image: &str,
    runtime: &str,
    mib: u64,
) -> Result<(f64, String)> {
    let pod = workload_pod(name, &worker.name, image, runtime, mib);
    let started = Instant::now();
    cluster.create(&pod)?;
    let token = first_answer(&worker.node, name, started, &|| false)?;
    Ok((started.elapsed().as_secs_f64(), token))
}

/// Moves pod `pod` (answering with `token`) from node-a to node-b: seconds from the
/// command to the copy's answer with that token, and the phases `revive migrate` reported.
fn migrate(
    cluster: &Cluster,
    pod: &str,
    token: &str,
    agent: &str,
    to: &Worker,
) -> Result<(f64, Phases, Vec<String>)> {
    let copy = format!("{pod}-m1");
    let started = Instant::now();
    std::thread::scope(|scope| {
        let moving = scope.spawn(|| cluster::revive_migrate(cluster, pod, &to.name, agent));
        let answered = first_answer(&to.node, &copy, started, &|| moving.is_finished());
        let elapsed = started.elapsed().as_secs_f64();
        let said = moving
            .join()
            .map_err(|_| anyhow!("revive migrate's thread panicked"))??;
        let answer = answered?;
        ensure!(
            answer == token,
            "{copy} answered with token {answer}, {pod} had {token}"
        );
        let phases = phases(&said).with_context(|| format!("no phases in {said:?}"))?;
        Ok((elapsed, phases, pushed_images(&said)))
    })
}

/// Deletes pods `pods` and waits until they are gone.
fn delete(cluster: &Cluster, pods: &[&str]) -> Result<()> {
    let mut args = vec!["delete", "pod", "--wait", "--ignore-not-found"];
    args.extend_from_slice(pods);
    cluster.kubectl(&args).map(drop)
}

/// Samples per size: cold starts per runtime, moves.
#[derive(Default)]
struct Samples {
    cold: Vec<Vec<f64>>,
    moves: Vec<f64>,
    phases: Vec<Phases>,
}

/// "1.23 s (1.01–1.50)" of `samples`.
fn seconds(samples: &[f64]) -> Result<Cell> {
    let s = Summary::of(samples).context("no runs")?;
    Ok(Cell::number(
        format!("{:.2} s ({:.2}–{:.2})", s.median, s.min, s.max),
        s.median,
    ))
}

/// Every round of every size in one cluster; samples per size.
fn measure_cluster(
    cluster: &Cluster,
    runtimes: &[String],
    settings: &Settings,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Samples>> {
    let image = cluster::push_busybox(cluster)?;
    let agent = cluster::push_agent_image(cluster)?;
    let (a, b) = (cluster.worker("node-a")?, cluster.worker("node-b")?);
    for worker in [a, b] {
        crate::crictl::crictl(&worker.node, &["pull", &image])?;
    }
    let mut out = Vec::new();
    for &mib in &settings.checkpoint_mib {
        let mut samples = Samples {
            cold: vec![Vec::new(); runtimes.len()],
            ..Samples::default()
        };
        for round in 0..settings.migrate_runs {
            progress(&format!(
                "migrate: {}, round {} of {}",
                size_label(mib),
                round + 1,
                settings.migrate_runs
            ));
            let mut order: Vec<usize> = (0..runtimes.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            let mut moving = None;
            for i in order {
                let name = format!("cold-{mib}m-{round}-{i}");
                let (secs, token) = cold_start(cluster, a, &name, &image, &runtimes[i], mib)?;
                samples.cold[i].push(secs);
                if runtimes[i] == REVIVE_V2 {
                    moving = Some((name, token));
                } else {
                    delete(cluster, &[&name])?;
                }
            }
            let Some((pod, token)) = moving else {
                continue;
            };
            let (secs, phases, images) = migrate(cluster, &pod, &token, &agent, b)?;
            samples.moves.push(secs);
            samples.phases.push(phases);
            delete(cluster, &[&format!("{pod}-m1")])?;
            for image in images {
                if let Err(e) = crate::crictl::crictl(&b.node, &["rmi", &image]) {
                    progress(&format!("migrate: {image} stays on node-b: {e:#}"));
                }
            }
        }
        out.push(samples);
    }
    Ok(out)
}

/// The checkpoint images `revive migrate` said it pushed ("images pushed in 4.0 s (a, b)").
fn pushed_images(said: &str) -> Vec<String> {
    said.split_once("images pushed in ")
        .and_then(|(_, rest)| rest.split_once('(')?.1.split_once(')'))
        .map(|(list, _)| list.split(", ").map(str::to_string).collect())
        .unwrap_or_default()
}

impl Benchmark for Migration {
    fn name(&self) -> &'static str {
        "migrate"
    }

    fn title(&self, s: &Settings) -> String {
        format!(
            "a pod moved to another node with revive migrate, against a cold start ({} \
             round{} per size)",
            s.migrate_runs,
            if s.migrate_runs == 1 { "" } else { "s" }
        )
    }

    fn rows(&self, s: &Settings) -> Vec<String> {
        s.checkpoint_mib
            .iter()
            .flat_map(|&mib| {
                let size = size_label(mib);
                [
                    format!("{size}: cold start, pod created to answer"),
                    format!("{size}: revive migrate, checkpoint to answer on the target"),
                    format!("{size}: of which checkpoint / images / restore"),
                ]
            })
            .collect()
    }

    fn method(&self, _: &Settings) -> Vec<String> {
        vec![
            format!(
                "A cluster of two workers (kube-apiserver, kubelets, the cluster's registry \
                 over TLS), the pod's container running `{}` from busybox, on node-a.",
                workload(0).replace("bs=0M", "bs=<N>M")
            ),
            format!(
                "Cold start: `kubectl create` of the pod on the cluster's default runtime \
                 (`{RUNC_V2}` column) or on RuntimeClass revive (`{REVIVE_V2}` column), timed \
                 to its first answer through `crictl exec` on the node (retried every 50 ms), \
                 the runtimes taking turns, the order alternating between rounds."
            ),
            "revive migrate: revive's cold-started pod moved to node-b, timed from just before \
             `revive migrate` (its checkpoint's start) to the first answer of the copy on \
             node-b, which must carry the pod's token: what is lost of a moving pod's work. \
             The split is `revive migrate`'s own report: checkpoint through the kubelet, the \
             agent building and pushing the image, the copy created until ready. The Go shim \
             moves no pod; its cells say so."
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
        let measured = if node.flavour() == crate::Flavour::Stable {
            Err(anyhow!(
                "containerd 1.7 has no CRI CheckpointContainer, which revive migrate needs"
            ))
        } else {
            progress("migrate: starting a cluster of two workers");
            Cluster::start(node.flavour(), "bench", 2)
        };
        let measured = measured.and_then(|cluster| {
            let measured = measure_cluster(&cluster, runtimes, settings, progress);
            let left = cluster.stop()?;
            if left.iter().any(|l| !l.is_empty()) {
                bail!("the cluster left things behind: {left:?}");
            }
            measured
        });
        let samples = match measured {
            Ok(samples) => samples,
            Err(e) => {
                let why = format!("{e:#}");
                return runtimes.iter().map(|_| Err(anyhow!("{why}"))).collect();
            }
        };
        runtimes
            .iter()
            .enumerate()
            .map(|(i, runtime)| {
                let mut cells = Vec::new();
                for size in &samples {
                    cells.push(seconds(&size.cold[i])?);
                    if runtime != REVIVE_V2 {
                        cells.push(Cell::text("moves no pod"));
                        cells.push(Cell::text("—"));
                        continue;
                    }
                    cells.push(seconds(&size.moves)?);
                    let median = |f: fn(&Phases) -> f64| {
                        let values: Vec<f64> = size.phases.iter().map(f).collect();
                        Summary::of(&values).map_or(f64::NAN, |s| s.median)
                    };
                    cells.push(Cell::text(format!(
                        "{:.1} s / {:.1} s / {:.1} s",
                        median(|p| p.checkpoint),
                        median(|p| p.push),
                        median(|p| p.restore)
                    )));
                }
                Ok(cells)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phases_come_from_what_revive_migrate_said() {
        let said = "moved web from node-a to node-b as web-m1: checkpointed in 0.5 s, images \
                    pushed in 4.0 s (r/revive/migrated/web-app:17), restored in 1.2 s";
        assert_eq!(
            phases(said),
            Some(Phases {
                checkpoint: 0.5,
                push: 4.0,
                restore: 1.2
            })
        );
        assert_eq!(phases("moved web: checkpointed in 0.5 s"), None);
    }

    #[test]
    fn the_images_come_from_what_revive_migrate_said() {
        let said = "moved web from a to b as web-m1: checkpointed in 0.5 s, images pushed in \
                    4.0 s (r/m/web-app:17, r/m/web-side:17), restored in 1.2 s";
        assert_eq!(pushed_images(said), ["r/m/web-app:17", "r/m/web-side:17"]);
        assert!(pushed_images("moved web").is_empty());
    }
}
