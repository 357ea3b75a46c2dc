//! revive on a cgroup v2 host with systemd, as kubeadm sets containerd up there (the
//! systemd cgroup driver for runc, revive and crun): a QEMU guest (`revive_integration::
//! guest`) runs containerd 2.3 and the scenarios of `guest::driver` in one boot; this test
//! builds (or verifies) the guest image, runs the boot, and asserts every scenario's report.
//!
//! `REVIVE_GUEST_ONLY=lifecycle,stats-oom` runs only those scenarios (and `environment`).

use std::path::Path;
use std::time::Instant;

use revive_integration::guest::driver::{RECORDED, SCENARIOS, in_scope, scope_of, selected};
use revive_integration::guest::report::{
    CheckpointRestore, Environment, ImageRestore, Lifecycle, StatsOom,
};
use revive_integration::guest::{self, Outcome};
use revive_integration::{rootfs, rootfs::Flavour};

/// Checks that gather every failure before the test fails, with the guest's output.
struct Checks {
    failures: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(what());
        }
    }
}

fn restored_row(c: &mut Checks, name: &str, r: &CheckpointRestore) {
    let (Some(before), Some(checkpointed), Some(restored)) =
        (&r.before, &r.checkpointed, &r.restored)
    else {
        c.failures.push(format!("{name}: no counters: {r:?}"));
        return;
    };
    c.check(
        restored.token == before.token && restored.count > checkpointed.count,
        || format!("{name}: the restored counter did not continue: {checkpointed} -> {restored}"),
    );
    c.check(
        r.after_checkpoint
            .as_ref()
            .is_some_and(|a| a.token == before.token && a.count > checkpointed.count),
        || format!("{name}: ctr container checkpoint did not leave the task running: {r:?}"),
    );
    let id = format!(
        "ck-{}-{}",
        if r.shim.contains("revive") {
            "revive"
        } else {
            "goshim"
        },
        r.binary
    );
    c.check(
        in_scope(&r.cgroup, &id) && in_scope(&r.restored_cgroup, &id),
        || {
            format!(
                "{name}: not in the systemd scope {}: {} then {}",
                scope_of(&id),
                r.cgroup,
                r.restored_cgroup
            )
        },
    );
    c.check(r.restored_shim_cgroup != r.restored_cgroup, || {
        format!("{name}: the restored task is in its shim's cgroup")
    });
    c.check(
        guest::driver::link_is_up(&r.lo_after) && r.lo_addr_after.contains("127.0.0.1"),
        || {
            format!(
                "{name}: loopback after restore: {} / {}",
                r.lo_after, r.lo_addr_after
            )
        },
    );
    c.check(
        r.rw_layer_kept
            && r.exit_checkpoint_stopped
            && r.exit_checkpoint_files.iter().any(|f| f == "inventory.img"),
        || {
            format!(
                "{name}: rw layer kept {}, --exit stopped {}",
                r.rw_layer_kept, r.exit_checkpoint_stopped
            )
        },
    );
}

fn assert_outcome(outcome: &Outcome, only: &[String]) {
    let mut c = Checks {
        failures: Vec::new(),
    };
    c.check(outcome.done, || {
        "the guest's driver did not finish (no REVIVE-DONE on the results port)".into()
    });
    for &name in SCENARIOS {
        let wanted = selected(name, only);
        let Some(result) = outcome.result(name) else {
            if wanted {
                c.failures.push(format!("scenario {name} sent no result"));
            }
            continue;
        };
        if !RECORDED.contains(&name) {
            c.check(result.ok, || {
                format!(
                    "scenario {name} failed: {}",
                    result.error.as_deref().unwrap_or("?")
                )
            });
        }
        match name {
            "environment" => match result.data::<Environment>() {
                Ok(e) => {
                    c.check(e.cgroup_fs == "cgroup2fs" && e.v1_mounts.is_empty(), || {
                        format!("not a cgroup v2 only host: {e:?}")
                    });
                    c.check(
                        e.containerd.contains("v2.3.") && e.criu.contains("4.2"),
                        || format!("versions: {} / {}", e.containerd, e.criu),
                    );
                }
                Err(e) => c.failures.push(format!("{e:#}")),
            },
            "lifecycle" => match result.data::<Lifecycle>() {
                Ok(l) if result.ok => {
                    c.check(l.cgroup == scope_of("life"), || {
                        format!("lifecycle: task in {}", l.cgroup)
                    });
                    c.check(l.freeze_file == "1" && l.frozen_event == "frozen 1", || {
                        format!("lifecycle: freezer {} {}", l.freeze_file, l.frozen_event)
                    });
                    c.check(l.paused_counts.0 == l.paused_counts.1, || {
                        format!("lifecycle: counted while paused {:?}", l.paused_counts)
                    });
                    c.check(
                        l.exec_exit_code == 5 && l.term_exit_code == 3 && l.short_exit_code == 7,
                        || {
                            format!(
                                "lifecycle: exit codes exec {} term {} short {}",
                                l.exec_exit_code, l.term_exit_code, l.short_exit_code
                            )
                        },
                    );
                    c.check(l.cgroup_removed, || {
                        "lifecycle: scope left after delete".into()
                    });
                }
                Ok(_) => {}
                Err(e) => c.failures.push(format!("{e:#}")),
            },
            "checkpoint-restore-revive-runc" | "checkpoint-restore-revive-crun" => {
                match result.data::<CheckpointRestore>() {
                    Ok(r) if result.ok => restored_row(&mut c, name, &r),
                    Ok(_) => {}
                    Err(e) => c.failures.push(format!("{e:#}")),
                }
            }
            "checkpoint-image" => match result.data::<ImageRestore>() {
                Ok(r) if result.ok => {
                    let token = r.checkpointed.as_ref().map(|c| c.token.clone());
                    c.check(
                        r.ctr_restored.as_ref().map(|c| c.token.clone()) == token
                            && r.systemd_restored.as_ref().map(|c| c.token.clone()) == token,
                        || format!("checkpoint-image: tokens differ: {r:?}"),
                    );
                    c.check(
                        !r.cri_token.is_empty() && r.cri_restored_token == r.cri_token,
                        || {
                            format!(
                                "checkpoint-image: CRI token {:?} -> {:?}",
                                r.cri_token, r.cri_restored_token
                            )
                        },
                    );
                    c.check(r.cri_restored_cgroup.ends_with(".scope"), || {
                        format!("checkpoint-image: CRI restore in {}", r.cri_restored_cgroup)
                    });
                }
                Ok(_) => {}
                Err(e) => c.failures.push(format!("{e:#}")),
            },
            "stats-oom" => match result.data::<StatsOom>() {
                Ok(s) if result.ok => {
                    c.check(s.pids_current >= 3 && s.memory_usage > 0, || {
                        format!("stats: {:?}", s.metrics)
                    });
                    c.check(s.oom_exit_code == 137 && !s.oom_event.is_empty(), || {
                        format!("oom: exit {} event {:?}", s.oom_exit_code, s.oom_event)
                    });
                }
                Ok(_) => {}
                Err(e) => c.failures.push(format!("{e:#}")),
            },
            _ => {}
        }
    }
    if !c.failures.is_empty() {
        panic!(
            "the cgroup v2 guest failed:\n  - {}\n\n===== scenarios =====\n{}\n===== job output \
             =====\n{}\n===== console (last 100 lines) =====\n{}",
            c.failures.join("\n  - "),
            outcome.describe(),
            outcome.job_output(),
            outcome.console_tail(100)
        );
    }
}

/// The Go shim's rows next to revive's, for docs/shim.md's comparison.
fn comparison(outcome: &Outcome) -> String {
    let mut out = String::from("checkpoint/restore through containerd, systemd cgroup driver:\n");
    for name in [
        "checkpoint-restore-revive-runc",
        "checkpoint-restore-revive-crun",
        "checkpoint-restore-goshim-runc",
        "checkpoint-restore-goshim-crun",
    ] {
        let Some(r) = outcome.result(name) else {
            continue;
        };
        let data: CheckpointRestore = r.data().unwrap_or_default();
        let lo = if data.lo_after.is_empty() {
            "-".to_string()
        } else if guest::driver::link_is_up(&data.lo_after) {
            "lo up".to_string()
        } else {
            "lo DOWN".to_string()
        };
        out.push_str(&format!(
            "  {name:34} {:4} {lo:8} {}\n",
            if r.ok { "ok" } else { "FAIL" },
            r.error
                .as_deref()
                .map(|e| e.lines().next().unwrap_or_default().to_string())
                .unwrap_or_default()
        ));
    }
    out
}

fn cgroup_v2_guest_runs_the_scenarios() {
    let started = Instant::now();
    let image = guest::image::ensure().expect("the guest image builds or verifies");
    let image_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "guest image {} ({}) ready in {image_seconds:.1} s",
        image.dir.display(),
        image.versions_line()
    );
    let lts = rootfs::ensure(Flavour::Lts).expect("the lts node root and its peers");
    let only: Vec<String> = std::env::var("REVIVE_GUEST_ONLY")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let args: Vec<String> = only
        .iter()
        .flat_map(|o| ["--only".to_string(), o.clone()])
        .collect();
    let job = guest::job::suite(&lts, Path::new(env!("CARGO_BIN_EXE_revive-guest")), &args)
        .expect("the guest job");
    let outcome = guest::vm::run(&image, &job).expect("the guest boots and runs its job");
    eprintln!("{}", outcome.describe());
    eprintln!("{}", comparison(&outcome));
    for (i, boot) in outcome.boots.iter().enumerate() {
        let at = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{t:.0} s"));
        eprintln!(
            "boot {}: {:.1} s (job started at {}, driver done at {}){}{}",
            i + 1,
            boot.seconds,
            at(boot.job_started),
            at(boot.driver_done),
            if boot.timed_out { ", TIMED OUT" } else { "" },
            boot.kernel_failure
                .as_deref()
                .map(|l| format!(", kernel failure: {l}"))
                .unwrap_or_default()
        );
    }
    eprintln!(
        "timings: image {image_seconds:.1} s, run {:.1} s, whole test {:.1} s",
        outcome.seconds,
        started.elapsed().as_secs_f64()
    );
    assert_outcome(&outcome, &only);
}

revive_integration::e2e_main! {
    cgroup_v2_guest_runs_the_scenarios,
}
