//! The CRIU image decoder (`checkpoint/src/criu/images.rs`) and the restore check
//! (`checkpoint/src/privilege.rs`) on a tar of image files (seeds: the CRIU images of the
//! checkpoint crate's fixtures). Decoding and checking must never panic, a checkpoint the
//! check lets into a plain `ctr run` container holds no capability beyond that container's,
//! and one it lets into a container with a seccomp profile has a filter on every thread.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::criu::images;
use revive_checkpoint::privilege::{self, Host, Policy, Summary, caps};

const DEFAULT_CAPS: &[&str] = caps::CONTAINERD_DEFAULTS;

fuzz_target!(|data: &[u8]| {
    let Ok(checkpoint) = images::read(&revive_fuzz::image_files(data)) else {
        return;
    };
    let _ = Summary::of(&checkpoint);
    let spec = serde_json::json!({
        "process": {
            "user": {"uid": 0, "gid": 0},
            "capabilities": {
                "bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS,
            },
            "noNewPrivileges": true,
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {"maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]},
    });
    let policy = Policy::from_spec(&spec).expect("the fixed spec reads");
    let host = Host {
        rlimits: vec![Some(u64::MAX); 16],
        oom_score_adj: 0,
        loginuid: u32::MAX,
        path_exists: &|_| true,
    };
    // The same spec with a seccomp profile: every thread's filter chain is compared with it.
    let mut with_profile = spec.clone();
    with_profile["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "write", "exit", "exit_group", "socketcall"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ],
    });
    let seccomp = Policy::from_spec(&with_profile).expect("the fixed spec reads");
    if privilege::check(&checkpoint, &seccomp, &host).is_ok() {
        for p in checkpoint.processes.iter().filter(|p| !p.zombie) {
            for t in &p.threads {
                assert_ne!(
                    t.seccomp.mode, 0,
                    "the check let through a thread without a filter"
                );
            }
        }
    }
    if privilege::check(&checkpoint, &policy, &host).is_ok() {
        let allowed = caps::from_names(DEFAULT_CAPS.iter().copied());
        for p in checkpoint.processes.iter().filter(|p| !p.zombie) {
            for t in &p.threads {
                let c = &t.creds.caps;
                let held = c.bounding | c.permitted | c.effective | c.ambient;
                assert_eq!(held & !allowed, 0, "the check let through {held:#x}");
                assert!(
                    t.creds.no_new_privs,
                    "the check let through no no_new_privs"
                );
            }
        }
    }
});
