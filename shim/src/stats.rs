//! Task metrics from the container's cgroups: `io.containerd.cgroups.v1.Metrics` where the
//! controllers are cgroup v1 (including hybrid hosts), `io.containerd.cgroups.v2.Metrics` on
//! a unified hierarchy. containerd (and CRI's ContainerStats) decode them by type.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::protobuf::well_known_types::any::Any;

use crate::error::{Error, Result};

/// Clock ticks per second for cpuacct.stat (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// Where each cgroup hierarchy of this process's view is mounted: controller (or "" for the
/// unified hierarchy) -> mount point.
pub fn cgroup_mounts() -> Result<HashMap<String, PathBuf>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(Error::io("reading mountinfo"))?;
    let mut mounts = HashMap::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or_default();
        let options = right.nth(1).unwrap_or_default();
        match fstype {
            "cgroup2" => {
                mounts.insert(String::new(), PathBuf::from(point));
            }
            "cgroup" => {
                for opt in options.split(',') {
                    if !matches!(opt, "rw" | "ro") {
                        mounts.insert(opt.to_string(), PathBuf::from(point));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(mounts)
}

/// The cgroup directory of `pid` for `controller` ("" = unified).
pub fn cgroup_dir(
    pid: u32,
    controller: &str,
    mounts: &HashMap<String, PathBuf>,
) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        if matches {
            let mount = mounts.get(controller)?;
            return Some(mount.join(path.trim_start_matches('/')));
        }
    }
    None
}

fn read_u64(dir: &Path, file: &str) -> u64 {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// "key value" lines (memory.stat, cpu.stat, cpuacct.stat).
pub fn read_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn keyed(dir: &Path, file: &str) -> HashMap<String, u64> {
    std::fs::read_to_string(dir.join(file))
        .map(|t| read_keyed(&t))
        .unwrap_or_default()
}

/// A limit file: a number, or "max" (no limit, reported as 0).
fn read_limit(dir: &Path, file: &str) -> u64 {
    read_u64(dir, file)
}

/// Metrics for the container whose init is `pid`.
pub fn collect(pid: u32) -> Result<Any> {
    let mounts = cgroup_mounts()?;
    let unified_only = !mounts.keys().any(|k| !k.is_empty());
    if unified_only {
        let dir = cgroup_dir(pid, "", &mounts).ok_or_else(|| {
            Error::NotFound(format!("no cgroup for pid {pid}: has the task exited?"))
        })?;
        return pack("io.containerd.cgroups.v2.Metrics", &collect_v2(&dir));
    }
    let dir = |c: &str| cgroup_dir(pid, c, &mounts);
    let memory =
        dir("memory").ok_or_else(|| Error::NotFound(format!("no memory cgroup for pid {pid}")))?;
    let mut metrics = v1::Metrics::new();
    let stat = keyed(&memory, "memory.stat");
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    metrics.memory = MessageField::some(v1::MemoryStat {
        cache: get("cache"),
        rss: get("rss"),
        rss_huge: get("rss_huge"),
        mapped_file: get("mapped_file"),
        dirty: get("dirty"),
        writeback: get("writeback"),
        pg_pg_in: get("pgpgin"),
        pg_pg_out: get("pgpgout"),
        pg_fault: get("pgfault"),
        pg_maj_fault: get("pgmajfault"),
        inactive_anon: get("inactive_anon"),
        active_anon: get("active_anon"),
        inactive_file: get("inactive_file"),
        active_file: get("active_file"),
        unevictable: get("unevictable"),
        hierarchical_memory_limit: get("hierarchical_memory_limit"),
        hierarchical_swap_limit: get("hierarchical_memsw_limit"),
        total_cache: get("total_cache"),
        total_rss: get("total_rss"),
        total_rss_huge: get("total_rss_huge"),
        total_mapped_file: get("total_mapped_file"),
        total_dirty: get("total_dirty"),
        total_writeback: get("total_writeback"),
        total_pg_pg_in: get("total_pgpgin"),
        total_pg_pg_out: get("total_pgpgout"),
        total_pg_fault: get("total_pgfault"),
        total_pg_maj_fault: get("total_pgmajfault"),
        total_inactive_anon: get("total_inactive_anon"),
        total_active_anon: get("total_active_anon"),
        total_inactive_file: get("total_inactive_file"),
        total_active_file: get("total_active_file"),
        total_unevictable: get("total_unevictable"),
        usage: MessageField::some(v1::MemoryEntry {
            usage: read_u64(&memory, "memory.usage_in_bytes"),
            limit: read_u64(&memory, "memory.limit_in_bytes"),
            max: read_u64(&memory, "memory.max_usage_in_bytes"),
            failcnt: read_u64(&memory, "memory.failcnt"),
            ..Default::default()
        }),
        ..Default::default()
    });
    if let Some(cpu) = dir("cpuacct") {
        let stat = keyed(&cpu, "cpuacct.stat");
        let ns = |k: &str| stat.get(k).copied().unwrap_or(0) * (1_000_000_000 / USER_HZ);
        let per_cpu = std::fs::read_to_string(cpu.join("cpuacct.usage_percpu"))
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        metrics.cpu = MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: read_u64(&cpu, "cpuacct.usage"),
                kernel: ns("system"),
                user: ns("user"),
                per_cpu,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if let Some(pids) = dir("pids") {
        metrics.pids = MessageField::some(v1::PidsStat {
            current: read_u64(&pids, "pids.current"),
            limit: read_limit(&pids, "pids.max"),
            ..Default::default()
        });
    }
    pack("io.containerd.cgroups.v1.Metrics", &metrics)
}

fn collect_v2(dir: &Path) -> v2::Metrics {
    let mut metrics = v2::Metrics::new();
    let mem = keyed(dir, "memory.stat");
    let get = |k: &str| mem.get(k).copied().unwrap_or(0);
    metrics.memory = MessageField::some(v2::MemoryStat {
        anon: get("anon"),
        file: get("file"),
        kernel_stack: get("kernel_stack"),
        slab: get("slab"),
        sock: get("sock"),
        shmem: get("shmem"),
        file_mapped: get("file_mapped"),
        file_dirty: get("file_dirty"),
        file_writeback: get("file_writeback"),
        anon_thp: get("anon_thp"),
        inactive_anon: get("inactive_anon"),
        active_anon: get("active_anon"),
        inactive_file: get("inactive_file"),
        active_file: get("active_file"),
        unevictable: get("unevictable"),
        pgfault: get("pgfault"),
        pgmajfault: get("pgmajfault"),
        usage: read_u64(dir, "memory.current"),
        usage_limit: read_limit(dir, "memory.max"),
        swap_usage: read_u64(dir, "memory.swap.current"),
        swap_limit: read_limit(dir, "memory.swap.max"),
        ..Default::default()
    });
    let cpu = keyed(dir, "cpu.stat");
    let get = |k: &str| cpu.get(k).copied().unwrap_or(0);
    metrics.cpu = MessageField::some(v2::CPUStat {
        usage_usec: get("usage_usec"),
        user_usec: get("user_usec"),
        system_usec: get("system_usec"),
        nr_periods: get("nr_periods"),
        nr_throttled: get("nr_throttled"),
        throttled_usec: get("throttled_usec"),
        ..Default::default()
    });
    metrics.pids = MessageField::some(v2::PidsStat {
        current: read_u64(dir, "pids.current"),
        limit: read_limit(dir, "pids.max"),
        ..Default::default()
    });
    metrics
}

fn pack(type_url: &str, message: &dyn containerd_shim_protos::protobuf::MessageDyn) -> Result<Any> {
    let value = message
        .write_to_bytes_dyn()
        .map_err(|e| Error::Internal(format!("encoding metrics: {e}")))?;
    Ok(Any {
        type_url: type_url.to_string(),
        value,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::Message;

    #[test]
    fn keyed_files_parse() {
        let stat = read_keyed("cache 4096\nrss 8192\ntotal_inactive_file 12\nbad line here\n");
        assert_eq!(stat.get("rss"), Some(&8192));
        assert_eq!(stat.get("total_inactive_file"), Some(&12));
        assert!(!stat.contains_key("bad"));
    }

    #[test]
    fn own_process_has_metrics() {
        // The test process lives in some cgroup: metrics for it must encode and carry the
        // type containerd expects.
        let any = collect(std::process::id()).unwrap();
        assert!(
            any.type_url.starts_with("io.containerd.cgroups.v"),
            "{}",
            any.type_url
        );
        if any.type_url.ends_with("v1.Metrics") {
            let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
            assert!(m.memory.usage.usage > 0);
        }
    }
}
