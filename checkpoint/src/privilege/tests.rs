//! Every rule on crafted checkpoints, against specs shaped as containerd and CRI write them.

use serde_json::json;

use super::*;
use crate::criu::images::{
    CapSets, CgroupMember, CgroupSet, Creds, MS_RDONLY, Mount, Rlimit, Seccomp, SeccompFilter,
    UserNs,
};

const DEFAULT_CAPS: &[&str] = caps::CONTAINERD_DEFAULTS;

fn default_caps() -> u64 {
    caps::from_names(DEFAULT_CAPS.iter().copied())
}

fn all_caps() -> u64 {
    (1u64 << caps::NAMES.len()) - 1
}

/// A spec as `ctr run` writes it: uid 0, default capabilities, read-only cgroups.
fn ctr_spec() -> Value {
    json!({
        "process": {
            "user": {"uid": 0, "gid": 0},
            "capabilities": {
                "bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/x/hosts", "options": ["rbind", "ro"]},
        ],
        "linux": {
            "maskedPaths": ["/proc/kcore", "/proc/acpi", "/proc/no-such-thing"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
            "namespaces": [{"type": "pid"}, {"type": "mount"}],
        },
    })
}

/// `ctr run --privileged`: every capability, read-write sysfs and cgroups, nothing masked.
fn privileged_spec() -> Value {
    let mut spec = ctr_spec();
    let every: Vec<&str> = caps::NAMES.to_vec();
    spec["process"]["capabilities"] =
        json!({"bounding": every, "effective": every, "permitted": every});
    spec["mounts"][2]["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
    spec["mounts"][3]["options"] = json!(["nosuid", "noexec", "nodev", "relatime", "rw"]);
    spec["linux"]["maskedPaths"] = json!([]);
    spec["linux"]["readonlyPaths"] = json!([]);
    spec
}

/// A pod container with drop ALL, runAsUser 1000, allowPrivilegeEscalation false and
/// seccomp RuntimeDefault.
fn restricted_spec() -> Value {
    let mut spec = ctr_spec();
    spec["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [1000]});
    spec["process"]["capabilities"] = json!({});
    spec["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []});
    spec
}

fn thread(tid: u32, uid: u32, caps: u64) -> Thread {
    Thread {
        tid,
        creds: Creds {
            uid,
            euid: uid,
            suid: uid,
            fsuid: uid,
            gid: uid,
            egid: uid,
            sgid: uid,
            fsgid: uid,
            groups: vec![],
            caps: CapSets {
                inheritable: 0,
                permitted: caps,
                effective: caps,
                bounding: caps,
                ambient: 0,
            },
            secbits: 0,
            no_new_privs: true,
            lsm_profile: None,
        },
        seccomp: Seccomp::default(),
        ..Thread::default()
    }
}

fn mount(mountpoint: &str, fstype: &str, root: &str, flags: u32) -> Mount {
    Mount {
        mountpoint: mountpoint.into(),
        fstype: fstype.into(),
        root: root.into(),
        source: fstype.into(),
        flags,
        ..Mount::default()
    }
}

/// What CRIU dumps of a container `ctr_spec` started: the shell and a child with two
/// threads, and runc's mount tree.
fn plain_checkpoint() -> Checkpoint {
    let process = |pid: u32, threads: Vec<Thread>| Process {
        pid,
        ppid: 0,
        comm: "sh".into(),
        threads,
        rlimits: vec![
            Rlimit {
                soft: 1024,
                hard: 1024
            };
            8
        ],
        oom_score_adj: Some(0),
        loginuid: Some(u32::MAX),
        ..Process::default()
    };
    let caps = default_caps();
    Checkpoint {
        processes: vec![
            process(1, vec![thread(1, 0, caps)]),
            process(7, vec![thread(7, 0, caps), thread(8, 0, caps)]),
        ],
        mounts: vec![
            mount("/", "overlay", "/", 0),
            mount("/proc", "proc", "/", MS_NOSUID_NODEV_NOEXEC),
            mount("/dev", "tmpfs", "/", 2),
            mount("/sys", "sysfs", "/", MS_NOSUID_NODEV_NOEXEC | 1),
            // runc on cgroup v1: a read-write tmpfs, and each hierarchy a read-only bind of
            // the container's cgroup that the runtime gives again.
            mount("/sys/fs/cgroup", "tmpfs", "/", MS_NOSUID_NODEV_NOEXEC),
            Mount {
                external: true,
                ..mount("/sys/fs/cgroup/memory", "cgroup", "/default/c", 1)
            },
            // CRIU records CRI's binds of files as of an unknown filesystem.
            Mount {
                external: true,
                flags: 1,
                ..mount("/etc/hosts", "unknown", "/x/hosts", 1)
            },
            Mount {
                external: true,
                ..mount("/proc/kcore", "tmpfs", "/null", 0)
            },
            mount("/proc/acpi", "tmpfs", "/", 1),
            mount("/proc/sys", "proc", "/sys", 1),
            mount("/proc/sysrq-trigger", "proc", "/sysrq-trigger", 1),
        ],
        ..Checkpoint::default()
    }
}

const MS_NOSUID_NODEV_NOEXEC: u32 = 2 | 4 | 8;

fn host() -> Host<'static> {
    Host {
        rlimits: vec![Some(u64::MAX); 16],
        oom_score_adj: 0,
        loginuid: u32::MAX,
        path_exists: &|path| path != "/proc/no-such-thing",
    }
}

fn verdict(checkpoint: &Checkpoint, spec: &Value) -> Result<(), String> {
    let policy = Policy::from_spec(spec).expect("spec reads");
    check(checkpoint, &policy, &host()).map_err(|r| r.to_string())
}

fn refused(checkpoint: &Checkpoint, spec: &Value, expect: &[&str]) -> String {
    let err = verdict(checkpoint, spec).expect_err("refused");
    for e in expect {
        assert!(err.contains(e), "{e:?} not in:\n{err}");
    }
    err
}

fn with_threads(mut ck: Checkpoint, f: impl Fn(&mut Thread)) -> Checkpoint {
    for p in &mut ck.processes {
        p.threads.iter_mut().for_each(&f);
    }
    ck
}

#[test]
fn a_checkpoint_of_the_same_spec_restores() {
    verdict(&plain_checkpoint(), &ctr_spec()).unwrap();
}

#[test]
fn a_privileged_checkpoint_restores_only_into_a_privileged_container() {
    let mut ck = with_threads(plain_checkpoint(), |t| {
        t.creds.caps = CapSets {
            permitted: all_caps(),
            effective: all_caps(),
            bounding: all_caps(),
            ..CapSets::default()
        };
        t.creds.no_new_privs = false;
    });
    for m in &mut ck.mounts {
        if m.fstype == "sysfs" || m.fstype == "cgroup" {
            m.flags &= !MS_RDONLY;
        }
    }
    ck.mounts.retain(|m| !m.mountpoint.starts_with("/proc/"));
    let mut privileged = privileged_spec();
    privileged["process"]["noNewPrivileges"] = json!(false);
    verdict(&ck, &privileged).unwrap();
    let err = refused(
        &ck,
        &ctr_spec(),
        &[
            "restore refused",
            "CAP_SYS_ADMIN",
            "bounding, permitted and effective capability sets",
            "no_new_privs",
            "/sys is not read-only",
            "cgroup mount at /sys/fs/cgroup/memory is read-write",
            "leaves /proc/sys read-write",
            "leaves /proc/kcore unmasked",
            "what to do",
        ],
    );
    assert!(!err.contains("/proc/no-such-thing"), "{err}");
    refused(&ck, &restricted_spec(), &["uid 0", "uid 1000", "seccomp"]);
}

#[test]
fn root_into_a_non_root_container_is_refused() {
    let mut user = ctr_spec();
    user["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    refused(
        &plain_checkpoint(),
        &user,
        &["runs as uid 0", "container runs as uid 1000", "gid 0"],
    );
    // Even with containerd's default capabilities listed: a non-root process keeps none
    // across its execve.
    let policy = Policy::from_spec(&user).unwrap();
    assert_eq!(policy.reachable(), 0);
}

#[test]
fn one_thread_of_one_child_is_enough_to_refuse() {
    let mut ck = plain_checkpoint();
    ck.processes[1].threads[1].creds.caps.effective |= 1 << 21;
    refused(
        &ck,
        &ctr_spec(),
        &["thread 8 of process 7", "CAP_SYS_ADMIN in its effective"],
    );
    let mut ck = plain_checkpoint();
    ck.processes[1].threads[0].creds.caps.inheritable = 1 << 12;
    // Without no_new_privs a root process may set any bounding capability inheritable
    // with CAP_SETPCAP; CAP_NET_ADMIN is not in the default bounding set.
    refused(&ck, &ctr_spec(), &["CAP_NET_ADMIN in its inheritable"]);
    let mut ck = plain_checkpoint();
    ck.processes[1].threads[0].creds.caps.ambient = 1 << 21;
    refused(&ck, &ctr_spec(), &["in its ambient"]);
    let mut ck = plain_checkpoint();
    ck.processes[1].threads[0].creds.caps.permitted |= 1 << 12;
    refused(&ck, &ctr_spec(), &["CAP_NET_ADMIN in its permitted"]);
}

#[test]
fn a_uid_differing_in_one_child_is_refused_where_setuid_is_not_granted() {
    let mut user = restricted_spec();
    user["linux"].as_object_mut().unwrap().remove("seccomp");
    let mut ck = with_threads(plain_checkpoint(), |t| {
        t.creds = Creds {
            groups: vec![1000],
            ..thread(t.tid, 1000, 0).creds
        };
    });
    verdict(&ck, &user).unwrap();
    ck.processes[1].threads[0].creds.fsuid = 0;
    refused(
        &ck,
        &user,
        &["process 7 (sh) runs as uid 1000", "filesystem 0"],
    );
    // A root container holding CAP_SETUID may run its processes as anyone.
    let mut ck = plain_checkpoint();
    ck.processes[1].threads[0].creds.uid = 33;
    verdict(&ck, &ctr_spec()).unwrap();
    let mut ck = with_threads(plain_checkpoint(), |t| {
        t.creds = Creds {
            groups: vec![1000, 4],
            ..thread(t.tid, 1000, 0).creds
        };
    });
    ck.processes[0].threads[0].creds.groups = vec![1000, 4];
    refused(&ck, &user, &["groups [1000, 4]"]);
}

#[test]
fn the_uid_zero_rule_for_each_set() {
    let mut spec = ctr_spec();
    // Root without no_new_privs reaches its bounding set by executing a program.
    spec["process"]["noNewPrivileges"] = json!(false);
    spec["process"]["capabilities"]["permitted"] = json!(["CAP_KILL"]);
    spec["process"]["capabilities"]["effective"] = json!(["CAP_KILL"]);
    let policy = Policy::from_spec(&spec).unwrap();
    assert_eq!(policy.reachable(), default_caps());
    // With no_new_privs it keeps what runc left it.
    spec["process"]["noNewPrivileges"] = json!(true);
    let policy = Policy::from_spec(&spec).unwrap();
    assert_eq!(policy.reachable(), 1 << 5);
    // A non-root process keeps its ambient set; with CAP_SETUID there and no
    // no_new_privs it may become root and reach the bounding set.
    spec["process"]["user"] = json!({"uid": 5});
    spec["process"]["capabilities"] = json!({
        "bounding": DEFAULT_CAPS, "permitted": ["CAP_SETUID"], "inheritable": ["CAP_SETUID"],
        "ambient": ["CAP_SETUID"],
    });
    assert_eq!(Policy::from_spec(&spec).unwrap().reachable(), 1 << 7);
    spec["process"]["noNewPrivileges"] = json!(false);
    assert_eq!(
        Policy::from_spec(&spec).unwrap().reachable(),
        default_caps()
    );
    // A bounding set can only shrink.
    let ck = with_threads(plain_checkpoint(), |t| t.creds.caps.bounding |= 1 << 25);
    refused(&ck, &ctr_spec(), &["CAP_SYS_TIME in its bounding"]);
}

#[test]
fn no_new_privs_and_securebits() {
    let mut ck = plain_checkpoint();
    ck.processes[0].threads[0].creds.no_new_privs = false;
    refused(
        &ck,
        &ctr_spec(),
        &["process 1 (sh) runs without no_new_privs"],
    );
    let mut ck = plain_checkpoint();
    ck.processes[0].threads[0].creds.secbits = SECBIT_NO_SETUID_FIXUP;
    verdict(&ck, &ctr_spec()).unwrap();
    let mut user = ctr_spec();
    user["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let mut ck = with_threads(plain_checkpoint(), |t| *t = thread(t.tid, 1000, 0));
    ck.processes[0].threads[0].creds.secbits = SECBIT_NO_SETUID_FIXUP | 1 << 4;
    refused(&ck, &user, &["securebits 0x14"]);
}

#[test]
fn seccomp_a_profile_needs_a_filter_and_no_profile_accepts_any() {
    let mut spec = ctr_spec();
    spec["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ERRNO"});
    refused(
        &plain_checkpoint(),
        &spec,
        &["runs without a seccomp filter", "seccomp profile"],
    );
    let mut ck = with_threads(plain_checkpoint(), |t| {
        t.seccomp = Seccomp {
            mode: 2,
            filter: Some(0),
        }
    });
    // A filter that kills on every call is stricter than any profile; one the kernel would
    // refuse to attach is refused, whatever the profile.
    let ret_kill = 0x8000_0000u32;
    let mut program = vec![0x06, 0, 0, 0];
    program.extend(ret_kill.to_le_bytes());
    ck.seccomp_filters = vec![SeccompFilter {
        program,
        ..SeccompFilter::default()
    }];
    verdict(&ck, &spec).unwrap();
    verdict(&ck, &ctr_spec()).unwrap();
    let mut empty = ck.clone();
    empty.seccomp_filters = vec![SeccompFilter::default()];
    refused(&empty, &spec, &["the kernel would refuse", "is empty"]);
    verdict(&empty, &ctr_spec()).unwrap();
    ck.processes[1].threads[1].seccomp.filter = Some(3);
    refused(&ck, &spec, &["thread 8", "unreadable seccomp filter chain"]);
    ck.processes[1].threads[1].seccomp = Seccomp {
        mode: 1,
        filter: None,
    };
    verdict(&ck, &spec).unwrap();
}

#[test]
fn scheduling_rlimits_oom_score_adj_and_loginuid() {
    let mut ck = plain_checkpoint();
    ck.processes[1].threads[1].sched_policy = 1;
    ck.processes[1].threads[1].sched_prio = 50;
    refused(&ck, &ctr_spec(), &["real-time scheduling", "CAP_SYS_NICE"]);
    let mut ck = plain_checkpoint();
    ck.processes[0].threads[0].sched_nice = -10;
    refused(&ck, &ctr_spec(), &["nice -10"]);
    let mut ck = plain_checkpoint();
    ck.processes[0].threads[0].sched_nice = 10;
    verdict(&ck, &ctr_spec()).unwrap();

    let mut ck = plain_checkpoint();
    ck.processes[1].rlimits[7].hard = 1 << 20;
    refused(
        &ck,
        &ctr_spec(),
        &["hard RLIMIT_NOFILE of 1048576, above this container's 1024"],
    );
    // Where the spec sets no limit, the shim's own is the ceiling.
    let policy = Policy::from_spec(&ctr_spec()).unwrap();
    let tight = Host {
        rlimits: vec![Some(100); 16],
        ..host()
    };
    let err = check(&plain_checkpoint(), &policy, &tight)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("RLIMIT_CPU of 1024, above this container's 100"),
        "{err}"
    );
    assert!(!err.contains("RLIMIT_NOFILE"), "{err}");

    let mut ck = plain_checkpoint();
    ck.processes[0].oom_score_adj = Some(-1000);
    refused(
        &ck,
        &ctr_spec(),
        &["oom_score_adj -1000, below this container's 0"],
    );
    let mut spec = ctr_spec();
    spec["process"]["oomScoreAdj"] = json!(-1000);
    verdict(&ck, &spec).unwrap();

    let mut ck = plain_checkpoint();
    ck.processes[0].loginuid = Some(0);
    refused(&ck, &ctr_spec(), &["loginuid 0"]);
    // Privilege that grants all of these lets them through.
    let mut ck = plain_checkpoint();
    ck.processes[0].oom_score_adj = Some(-1000);
    ck.processes[0].loginuid = Some(0);
    ck.processes[0].threads[0].sched_policy = 2;
    ck.processes[0].rlimits[7].hard = u64::MAX;
    verdict(&ck, &privileged_spec()).unwrap();
}

#[test]
fn host_wide_filesystems_and_host_images_are_refused() {
    for fstype in [
        "binfmt_misc",
        "devtmpfs",
        "securityfs",
        "debugfs",
        "tracefs",
        "fusectl",
    ] {
        let mut ck = plain_checkpoint();
        ck.mounts.push(mount("/mnt", fstype, "/", 0));
        refused(
            &ck,
            &privileged_spec(),
            &[&format!("the {fstype} mount at /mnt"), "host-wide"],
        );
    }
    let mut ck = plain_checkpoint();
    ck.host_images = vec!["apparmor.img".into()];
    refused(&ck, &privileged_spec(), &["apparmor.img", "AppArmor"]);
    ck.host_images = vec!["binfmt-misc-1.img".into()];
    refused(&ck, &privileged_spec(), &["binfmt_misc"]);
}

#[test]
fn mounts_of_types_or_places_the_spec_never_mounts_are_refused() {
    let mut ck = plain_checkpoint();
    ck.mounts.push(mount("/mnt", "ext4", "/", 0));
    refused(
        &ck,
        &ctr_spec(),
        &["the ext4 mount at /mnt", "never mounts"],
    );
    // A second, read-write procfs would unmask everything.
    let mut ck = plain_checkpoint();
    ck.mounts.push(mount("/tmp/p", "proc", "/", 0));
    refused(&ck, &ctr_spec(), &["the proc mount at /tmp/p is outside"]);
    let mut ck = plain_checkpoint();
    ck.mounts.push(mount("/tmp/s", "sysfs", "/", 1));
    refused(
        &ck,
        &privileged_spec(),
        &["the sysfs mount at /tmp/s is outside"],
    );
    // The runtime supplies external mounts again from the spec.
    let mut ck = plain_checkpoint();
    ck.mounts.push(Mount {
        external: true,
        ..mount("/data", "ext4", "/srv", 0)
    });
    verdict(&ck, &ctr_spec()).unwrap();
}

/// On cgroup v2 with a cgroup namespace (CRI's pods), runc mounts cgroup2 itself for the
/// spec's `cgroup` mount: allowed there, read-only as the spec says, and nowhere else.
#[test]
fn cgroup2_stands_for_the_spec_s_cgroup_mount() {
    let on_v2 = |mountpoint: &str, flags: u32| {
        let mut ck = plain_checkpoint();
        ck.mounts
            .retain(|m| !m.mountpoint.starts_with("/sys/fs/cgroup"));
        ck.mounts.push(Mount {
            sb_flags: 0,
            ..mount(mountpoint, "cgroup2", "/", MS_NOSUID_NODEV_NOEXEC | flags)
        });
        ck
    };
    verdict(&on_v2("/sys/fs/cgroup", 1), &ctr_spec()).unwrap();
    refused(
        &on_v2("/sys/fs/cgroup", 0),
        &ctr_spec(),
        &["cgroup2 mount at /sys/fs/cgroup is read-write"],
    );
    refused(
        &on_v2("/mnt/cg", 1),
        &ctr_spec(),
        &["the cgroup2 mount at /mnt/cg is outside every cgroup mount"],
    );
}

#[test]
fn spec_mount_flags_read_only_paths_and_masks_are_kept() {
    let mut ck = plain_checkpoint();
    ck.mounts[1].flags = 0;
    refused(
        &ck,
        &ctr_spec(),
        &[
            "/proc is not nosuid",
            "/proc is not nodev",
            "/proc is not noexec",
        ],
    );
    // The sysfs read-only flag may sit on the superblock.
    let mut ck = plain_checkpoint();
    ck.mounts[3].flags = MS_NOSUID_NODEV_NOEXEC;
    ck.mounts[3].sb_flags = MS_RDONLY;
    verdict(&ck, &ctr_spec()).unwrap();
    ck.mounts[3].sb_flags = 0;
    refused(
        &ck,
        &ctr_spec(),
        &["the sysfs mount at /sys is not read-only"],
    );
    // A read-only path without its mount, under a read-write proc: refused.
    let mut ck = plain_checkpoint();
    ck.mounts.retain(|m| m.mountpoint != "/proc/sysrq-trigger");
    refused(&ck, &ctr_spec(), &["leaves /proc/sysrq-trigger read-write"]);
    // A masked path that does not exist needs no mask.
    let mut ck = plain_checkpoint();
    ck.mounts.retain(|m| m.mountpoint != "/proc/acpi");
    refused(&ck, &ctr_spec(), &["leaves /proc/acpi unmasked"]);
    let mut ck = plain_checkpoint();
    ck.mounts
        .iter_mut()
        .find(|m| m.mountpoint == "/proc/acpi")
        .unwrap()
        .flags = 0;
    refused(&ck, &ctr_spec(), &["leaves /proc/acpi unmasked"]);
    // A read-only root stays read-only.
    let mut spec = ctr_spec();
    spec["root"]["readonly"] = json!(true);
    refused(
        &plain_checkpoint(),
        &spec,
        &["overlay mount at / is read-write"],
    );
    let mut ck = plain_checkpoint();
    ck.mounts[0].flags = MS_RDONLY;
    verdict(&ck, &spec).unwrap();
}

#[test]
fn user_namespaces_need_the_spec_s_exact_maps() {
    let mut ck = plain_checkpoint();
    ck.user_namespaces = vec![UserNs {
        uid_map: vec![(0, 100000, 65536)],
        gid_map: vec![(0, 100000, 65536)],
    }];
    refused(
        &ck,
        &ctr_spec(),
        &["user namespace", "has no user namespace"],
    );
    let mut spec = ctr_spec();
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    verdict(&ck, &spec).unwrap();
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    refused(&ck, &spec, &["maps [(0, 0, 65536)]"]);
}

fn member(controller: &str, path: &str) -> CgroupMember {
    CgroupMember {
        controller: controller.into(),
        path: path.into(),
        cgns_prefix: None,
    }
}

/// `plain_checkpoint` in cgroup set 2, the container's cgroup /default/c.
fn in_cgroups(sets: Vec<CgroupSet>, dirs: &[(&str, &str)]) -> Checkpoint {
    let mut ck = with_threads(plain_checkpoint(), |t| t.cg_set = Some(2));
    let mut all = vec![CgroupSet {
        id: 2,
        members: vec![member("memory", "/default/c"), member("", "/default/c")],
    }];
    all.extend(sets);
    ck.cgroup_sets = all;
    ck.cgroup_dirs = dirs
        .iter()
        .map(|(c, d)| (c.to_string(), d.to_string()))
        .collect();
    ck
}

#[test]
fn cgroups_stay_inside_the_container_s() {
    verdict(
        &in_cgroups(vec![], &[("memory", "/default/c")]),
        &ctr_spec(),
    )
    .unwrap();
    // A child in a cgroup below the container's.
    let mut ck = in_cgroups(
        vec![CgroupSet {
            id: 3,
            members: vec![member("memory", "/default/c/sub")],
        }],
        &[("memory", "/default/c"), ("memory", "/default/c/sub")],
    );
    ck.processes[1].threads[0].cg_set = Some(3);
    verdict(&ck, &ctr_spec()).unwrap();
    // The host's cgroups, by path or by `..`, are refused, and so is a directory CRIU would
    // create and configure there.
    for path in [
        "/system.slice",
        "/default/c/../other",
        "default/c",
        "/default/cc",
    ] {
        let ck = in_cgroups(
            vec![CgroupSet {
                id: 3,
                members: vec![member("memory", path)],
            }],
            &[],
        );
        refused(
            &ck,
            &privileged_spec(),
            &["cgroup.img", "places processes in memory"],
        );
    }
    let ck = in_cgroups(vec![], &[("memory,devices", "/default/c")]);
    refused(
        &ck,
        &privileged_spec(),
        &["would create and configure the memory,devices"],
    );
    let ck = in_cgroups(vec![], &[("memory", "/other")]);
    refused(&ck, &privileged_spec(), &["cgroup /other, outside"]);
    let mut ck = in_cgroups(vec![], &[]);
    ck.cgroup_sets[0].members[0].cgns_prefix = Some(400);
    refused(
        &ck,
        &privileged_spec(),
        &["namespace prefix longer than its path"],
    );
    let mut ck = in_cgroups(vec![], &[]);
    ck.processes[0].threads[0].cg_set = Some(9);
    refused(
        &ck,
        &privileged_spec(),
        &["names no cgroup set for the root process"],
    );
}

#[test]
fn zombies_hold_nothing() {
    let mut ck = plain_checkpoint();
    ck.processes[1].zombie = true;
    ck.processes[1].threads[0].creds.caps.effective = all_caps();
    verdict(&ck, &ctr_spec()).unwrap();
}

#[test]
fn malformed_specs_are_errors() {
    for bad in [
        json!({"process": {"user": {"uid": "root"}}}),
        json!({"process": {"capabilities": {"bounding": "CAP_SYS_ADMIN"}}}),
        json!({"process": {"rlimits": [{"hard": 1}]}}),
        json!({"mounts": [{"type": "proc"}]}),
        json!({"linux": {"maskedPaths": [1]}}),
    ] {
        assert!(Policy::from_spec(&bad).is_err(), "{bad}");
    }
}

#[test]
fn the_refusal_lists_a_bounded_number_of_violations() {
    let mut ck = plain_checkpoint();
    for pid in 100..140 {
        let mut p = ck.processes[0].clone();
        p.pid = pid;
        p.threads[0].tid = pid;
        p.threads[0].creds.caps.effective = all_caps();
        ck.processes.push(p);
    }
    let err = refused(&ck, &ctr_spec(), &["process 102 (sh) and 37 more"]);
    assert!(err.lines().count() < 20, "{err}");
}

/// Real checkpoints (see `tests/fixtures/criu/README.md`) against real specs.
mod fixtures {
    use super::*;
    use crate::criu::images::read_dir;
    use std::path::PathBuf;

    fn dir(case: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/criu/{case}"))
    }

    fn images(case: &str) -> Checkpoint {
        read_dir(&dir(case)).unwrap_or_else(|e| panic!("{case}: {e}"))
    }

    fn spec(case: &str) -> Value {
        serde_json::from_slice(&std::fs::read(dir(case).join("config.json")).unwrap()).unwrap()
    }

    /// The paths that existed on the kernel the fixtures were made on.
    const EXISTED: &[&str] = &[
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/acpi",
        "/sys/firmware",
        "/proc/keys",
        "/proc/timer_list",
    ];

    fn verdict(image: &str, spec_of: &str) -> Result<(), String> {
        verdict_of(&images(image), &spec(spec_of))
    }

    fn verdict_of(images: &Checkpoint, spec: &Value) -> Result<(), String> {
        let policy = Policy::from_spec(spec).unwrap();
        let host = Host {
            rlimits: vec![Some(u64::MAX); 16],
            oom_score_adj: 0,
            loginuid: u32::MAX,
            path_exists: &|p| EXISTED.contains(&p),
        };
        check(images, &policy, &host).map_err(|r| r.to_string())
    }

    const CASES: &[&str] = &[
        "plain",
        "privileged",
        "seccomp",
        "usernsroot",
        "usernsuser",
        "usernsuserseccomp",
        "cgroup",
        "cgrouppriv",
    ];

    #[test]
    fn every_checkpoint_restores_into_its_own_spec() {
        for case in CASES {
            verdict(case, case).unwrap_or_else(|e| panic!("{case}:\n{e}"));
        }
    }

    #[test]
    fn what_real_images_hold() {
        let plain = images("plain");
        let t = &plain.processes[0].threads[0];
        assert_eq!(t.creds.uid, 0);
        assert_eq!(t.creds.caps.effective, 0xa804_25fb);
        assert!(t.creds.no_new_privs);
        assert_eq!(t.seccomp.mode, 0);
        assert!(
            plain
                .mounts
                .iter()
                .any(|m| m.mountpoint == "/sys" && m.read_only())
        );
        let set = plain.processes[0].threads[0].cg_set.unwrap();
        let set = plain.cgroup_sets.iter().find(|s| s.id == set).unwrap();
        assert!(
            set.members
                .iter()
                .any(|m| m.controller == "memory" && m.path == "/default/plain")
        );
        assert!(
            plain
                .cgroup_dirs
                .contains(&("memory".into(), "/default/plain".into()))
        );
        let user = images("usernsuser");
        let t = &user.processes[0].threads[0];
        assert_eq!((t.creds.uid, t.creds.caps.effective), (1000, 0));
        assert_eq!(user.user_namespaces[0].uid_map, vec![(0, 100_000, 65_536)]);
        let seccomp = images("seccomp");
        let t = &seccomp.processes[0].threads[0];
        assert_eq!(t.seccomp.mode, 2);
        let chain = seccomp.filter_chain(t.seccomp.filter.unwrap()).unwrap();
        assert!(
            chain[0].program.len() > 8 * 1000,
            "{}",
            chain[0].program.len()
        );
    }

    #[test]
    fn summaries_say_what_a_container_must_grant() {
        let plain = Summary::of(&images("plain"));
        assert_eq!(plain.uids, vec![0]);
        assert!(!plain.privileged);
        assert_eq!(plain.without_no_new_privs, 0);
        assert_eq!(plain.without_seccomp, plain.threads);
        assert!(plain.capabilities.contains(&"CAP_SETUID".to_string()));
        assert!(
            plain.needs.iter().any(|n| n.contains("uid 0")),
            "{:?}",
            plain.needs
        );
        assert!(
            !plain.needs.iter().any(|n| n.contains("beyond")),
            "{:?}",
            plain.needs
        );
        let privileged = Summary::of(&images("privileged"));
        assert!(privileged.privileged);
        assert!(
            privileged
                .mounts
                .contains(&"sysfs at /sys read-write".to_string())
        );
        assert!(
            privileged.needs.iter().any(|n| n.contains("CAP_SYS_ADMIN")),
            "{:?}",
            privileged.needs
        );
        let user = Summary::of(&images("usernsuserseccomp"));
        assert_eq!(
            (user.uids.as_slice(), user.without_seccomp),
            (&[1000][..], 0)
        );
        assert!(user.capabilities.is_empty() && user.user_namespace);
    }

    #[test]
    fn more_privilege_is_refused() {
        let expect = |image: &str, spec: &str, what: &[&str]| {
            let err = verdict(image, spec).expect_err(&format!("{image} into {spec}"));
            for w in what {
                assert!(err.contains(w), "{image} into {spec}: {w:?} not in\n{err}");
            }
        };
        expect(
            "privileged",
            "plain",
            &["CAP_SYS_ADMIN", "/sys is not read-only"],
        );
        expect(
            "privileged",
            "seccomp",
            &["CAP_SYS_ADMIN", "without a seccomp filter"],
        );
        expect("plain", "seccomp", &["without a seccomp filter"]);
        expect("usernsroot", "usernsuser", &["runs as uid 0", "uid 1000"]);
        expect(
            "usernsroot",
            "usernsuserseccomp",
            &["runs as uid 0", "seccomp"],
        );
        expect(
            "cgrouppriv",
            "cgroup",
            &["cgroup mount at /sys/fs/cgroup/", "read-write"],
        );
        expect("usernsroot", "plain", &["has no user namespace"]);
        // Less privilege restores.
        verdict("seccomp", "plain").unwrap();
        verdict("plain", "privileged").unwrap();
        verdict("usernsuserseccomp", "usernsuser").unwrap();
    }

    use super::seccomp::assemble as program;

    const RET_ALLOW: (u16, u8, u8, u32) = (0x06, 0, 0, 0x7fff_0000);

    #[test]
    fn seccomp_filters_are_held_to_the_profile() {
        // Every filter allows everything: refused, naming calls containerd's profile refuses.
        let mut allow_all = images("seccomp");
        for f in &mut allow_all.seccomp_filters {
            f.program = program(&[RET_ALLOW]);
        }
        let err = verdict_of(&allow_all, &spec("seccomp")).unwrap_err();
        for what in [
            "process 1 (sh) and process 8 (sleep) has a seccomp filter that allows",
            "(x86_64)",
            "which this container's seccomp profile refuses",
        ] {
            assert!(err.contains(what), "{what:?} not in\n{err}");
        }
        // The real filter under a newer one that allows everything: the stricter one wins.
        let mut stacked = images("seccomp");
        let n = stacked.seccomp_filters.len() as u32;
        for (i, f) in stacked.seccomp_filters.clone().into_iter().enumerate() {
            stacked.seccomp_filters.push(SeccompFilter {
                program: program(&[RET_ALLOW]),
                prev: Some(i as u32),
                flags: f.flags,
            });
        }
        for p in &mut stacked.processes {
            for t in &mut p.threads {
                t.seccomp.filter = t.seccomp.filter.map(|i| i + n);
            }
        }
        verdict_of(&stacked, &spec("seccomp")).unwrap();
        // A profile stricter than containerd's refuses the real filter.
        let mut strict = spec("seccomp");
        strict["linux"]["seccomp"]["syscalls"] =
            json!([{"names": ["read", "write", "exit"], "action": "SCMP_ACT_ALLOW"}]);
        let err = verdict_of(&images("seccomp"), &strict).unwrap_err();
        assert!(
            err.contains("has a seccomp filter that allows open (x86_64)"),
            "{err}"
        );
        // Programs the kernel would refuse to attach are refused, with the reason.
        let long: Vec<_> = vec![RET_ALLOW; 5000];
        for (bad, why) in [
            (
                program(&[RET_ALLOW])[..5].to_vec(),
                "not a whole number of 8-byte",
            ),
            (program(&[(0x94, 0, 0, 0), RET_ALLOW]), "opcode 0x0094"),
            (program(&[(0x15, 7, 0, 0), RET_ALLOW]), "jumps past the end"),
            (program(&long), "5000 instructions"),
            (program(&[(0x20, 0, 0, 64), RET_ALLOW]), "offset 64"),
        ] {
            let mut ck = images("usernsuserseccomp");
            ck.seccomp_filters[0].program = bad.clone();
            let err = verdict_of(&ck, &spec("usernsuserseccomp")).unwrap_err();
            assert!(
                err.contains("the kernel would refuse") && err.contains(why),
                "{why:?} not in\n{err}"
            );
            // A spec without a profile accepts any filter: a filter only takes away.
            verdict_of(&ck, &spec("usernsuser")).unwrap();
        }
        verdict_of(&allow_all, &spec("plain")).unwrap();
    }
}
