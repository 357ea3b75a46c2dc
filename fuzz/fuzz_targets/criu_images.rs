//! The CRIU image decoder (`checkpoint/src/criu/images.rs`) and the restore check
//! (`checkpoint/src/privilege.rs`) on a tar of image files (seeds: the CRIU images of the
//! checkpoint crate's fixtures). Decoding and checking must never panic, and a checkpoint the
//! check lets into a plain `ctr run` container holds no capability beyond that container's.
#![no_main]

use std::collections::BTreeMap;
use std::io::Read;

use libfuzzer_sys::fuzz_target;
use revive_checkpoint::criu::images;
use revive_checkpoint::privilege::{self, Host, Policy, Summary, caps};

/// Most files and bytes per file taken from one input.
const MAX_FILES: usize = 64;
const MAX_FILE: u64 = 1 << 20;

const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn files(data: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(data);
    let Ok(entries) = archive.entries() else {
        return out;
    };
    for entry in entries.take(MAX_FILES) {
        let Ok(entry) = entry else { break };
        let Ok(path) = entry.path() else { continue };
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let mut bytes = Vec::new();
        if entry.take(MAX_FILE).read_to_end(&mut bytes).is_err() {
            break;
        }
        out.insert(name, bytes);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(checkpoint) = images::read(&files(data)) else {
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
