//! The comparison on the real filter runc compiled from containerd's default profile (the
//! `seccomp` fixture), on hand-made hostile filters, and the profile's semantics at single
//! inputs.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Value, json};

use super::*;
use crate::criu::images::{SeccompFilter, read_dir};
use bpf::assemble as insns;

fn fixture(case: &str) -> (Checkpoint, Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/criu/{case}"));
    let images = read_dir(&dir).unwrap();
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    (images, spec["linux"]["seccomp"].clone())
}

const RET: u16 = 0x06;
const LD: u16 = 0x20;
const JEQ: u16 = 0x15;

fn ret_allow() -> Vec<u8> {
    insns(&[(RET, 0, 0, RET_ALLOW)])
}

/// A checkpoint whose one thread has the chain of `programs`, oldest first.
fn chain(programs: &[Vec<u8>]) -> Checkpoint {
    Checkpoint {
        seccomp_filters: programs
            .iter()
            .enumerate()
            .map(|(i, p)| SeccompFilter {
                program: p.clone(),
                prev: i.checked_sub(1).map(|p| p as u32),
                flags: 0,
            })
            .collect(),
        ..Checkpoint::default()
    }
}

fn verdict(ck: &Checkpoint, profile: &Value) -> Result<(), String> {
    let newest = ck.seccomp_filters.len() as u32 - 1;
    Checker::for_abi(Some(profile), Some(Abi::X86_64))
        .check(ck, newest)
        .map_err(|e| e.to_string())
}

/// The real filter's program (both processes of the fixture share one).
fn real_filter() -> (Vec<u8>, Value) {
    let (ck, profile) = fixture("seccomp");
    (ck.seccomp_filters[0].program.clone(), profile)
}

#[test]
fn the_real_filter_passes_its_own_profile() {
    for case in ["seccomp", "usernsuserseccomp"] {
        let (ck, profile) = fixture(case);
        let started = Instant::now();
        let mut checker = Checker::for_abi(Some(&profile), Some(Abi::X86_64));
        for p in &ck.processes {
            for t in &p.threads {
                checker
                    .check(&ck, t.seccomp.filter.unwrap())
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
            }
        }
        eprintln!("{case}: compared in {:?}", started.elapsed());
    }
}

#[test]
fn an_allow_everything_filter_is_refused() {
    let (_, profile) = real_filter();
    let err = verdict(&chain(&[ret_allow()]), &profile).unwrap_err();
    assert_eq!(
        err.split(" and ").next().unwrap(),
        "has a seccomp filter that allows socket (x86_64) with some arguments, clone (x86_64) \
         with some arguments, syslog (x86_64)"
    );
    assert!(
        err.ends_with("more, which this container's seccomp profile refuses"),
        "{err}"
    );
}

#[test]
fn the_most_restrictive_filter_of_a_chain_wins() {
    let (real, profile) = real_filter();
    verdict(&chain(&[real.clone(), ret_allow()]), &profile).unwrap();
    verdict(&chain(&[ret_allow(), real.clone()]), &profile).unwrap();
    // A stricter filter on top of an allow-all one passes too: kill everything.
    verdict(
        &chain(&[ret_allow(), insns(&[(RET, 0, 0, RET_KILL_PROCESS)])]),
        &profile,
    )
    .unwrap();
    // SECCOMP_RET_ERRNO everywhere refuses nothing the profile allows... but is weaker than
    // SECCOMP_RET_KILL_THREAD for the architectures the profile does not list.
    let errno = insns(&[(RET, 0, 0, RET_ERRNO | 1)]);
    let err = verdict(&chain(&[errno]), &profile).unwrap_err();
    assert!(
        err.contains("aarch64 system calls and arm system calls"),
        "{err}"
    );
    assert!(
        err.contains("answers") && err.contains("SECCOMP_RET_KILL_THREAD"),
        "{err}"
    );
}

#[test]
fn the_real_filter_is_refused_by_a_stricter_profile() {
    let (real, _) = real_filter();
    let strict = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["read", "write", "exit"], "action": "SCMP_ACT_ALLOW"}],
    });
    let err = verdict(&chain(std::slice::from_ref(&real)), &strict).unwrap_err();
    assert!(err.contains("allows open (x86_64)"), "{err}");
    assert!(
        err.contains("which this container's seccomp profile refuses"),
        "{err}"
    );
    // Killing where the real one answers EPERM is stricter than it (runc's stub answers
    // ENOSYS above futex_requeue, the highest number this profile names).
    let kill = json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["read", "futex_requeue"], "action": "SCMP_ACT_ALLOW"}],
    });
    let err = verdict(&chain(&[real]), &kill).unwrap_err();
    assert!(
        err.contains("answers socket (x86_64) with some arguments, clone (x86_64) with some arguments, syslog (x86_64)")
            && err.contains("with SECCOMP_RET_ERRNO, where this container's seccomp profile answers SECCOMP_RET_KILL_PROCESS"),
        "{err}"
    );
}

#[test]
fn values_no_probe_would_try_are_seen() {
    let (real, profile) = real_filter();
    // mount(2) allowed when its first argument is 0xdeadbeef, else the real filter.
    let mut hostile = insns(&[
        (LD, 0, 0, 4),
        (JEQ, 0, 5, AUDIT_X86_64),
        (LD, 0, 0, 0),
        (JEQ, 0, 3, 165),
        (LD, 0, 0, 16),
        (JEQ, 0, 1, 0xdead_beef),
        (RET, 0, 0, RET_ALLOW),
    ]);
    hostile.extend(&real);
    let err = verdict(&chain(&[hostile]), &profile).unwrap_err();
    assert!(
        err.contains("allows mount (x86_64) with some arguments,"),
        "{err}"
    );
    // Everything allowed from one instruction pointer.
    let mut hostile = insns(&[(LD, 0, 0, 8), (JEQ, 0, 1, 0x1234), (RET, 0, 0, RET_ALLOW)]);
    hostile.extend(&real);
    let err = verdict(&chain(&[hostile]), &profile).unwrap_err();
    assert!(err.contains("allows"), "{err}");
    // A return value computed from an argument may be anything.
    let mut hostile = insns(&[
        (LD, 0, 0, 0),
        (JEQ, 0, 2, 165),
        (LD, 0, 0, 24),
        (0x16, 0, 0, 0),
    ]);
    hostile.extend(&real);
    let err = verdict(&chain(&[hostile]), &profile).unwrap_err();
    assert!(err.contains("mount"), "{err}");
}

#[test]
fn programs_the_kernel_would_refuse_are_refused() {
    let (real, profile) = real_filter();
    let mut long = Vec::new();
    for _ in 0..5000 {
        long.extend(ret_allow());
    }
    for (program, why) in [
        (real[..real.len() - 3].to_vec(), "not a whole number"),
        (insns(&[(0x94, 0, 0, 1), (RET, 0, 0, 0)]), "opcode 0x0094"),
        (
            insns(&[(JEQ, 9, 0, 1), (RET, 0, 0, 0)]),
            "jumps past the end",
        ),
        (long, "5000 instructions"),
        (insns(&[(LD, 0, 0, 64), (RET, 0, 0, 0)]), "offset 64"),
        (Vec::new(), "is empty"),
    ] {
        let err = verdict(&chain(&[program]), &profile).unwrap_err();
        assert!(
            err.contains("the kernel would refuse") && err.contains(why),
            "{why:?} not in {err}"
        );
    }
    // 27 copies of the real filter are more than one chain may hold.
    let err = verdict(&chain(&vec![real; 27]), &profile).unwrap_err();
    assert!(err.contains("more than the kernel accepts"), "{err}");
}

#[test]
fn a_spec_without_a_profile_accepts_any_filter() {
    for program in [ret_allow(), insns(&[(0x94, 0, 0, 1)])] {
        let ck = chain(&[program]);
        Checker::for_abi(None, Some(Abi::X86_64))
            .check(&ck, 0)
            .unwrap();
    }
    // Neither a default action nor rules: runc installs no filter.
    assert!(Profile::parse(&json!({}), None).unwrap().is_none());
}

#[test]
fn chains_are_compared_once() {
    let (real, profile) = real_filter();
    let mut ck = chain(std::slice::from_ref(&real));
    ck.seccomp_filters.push(SeccompFilter {
        program: real,
        prev: None,
        flags: 0,
    });
    let mut checker = Checker::for_abi(Some(&profile), Some(Abi::X86_64));
    checker.check(&ck, 0).unwrap();
    let spent = checker.budget;
    checker.check(&ck, 1).unwrap();
    // A chain seen before costs a step for each of its filters.
    assert_eq!(
        (checker.budget.steps + 1, checker.budget.paths),
        (spent.steps, spent.paths)
    );
    assert_eq!(checker.verdicts.len(), 1);
}

#[test]
fn spec_allow_needs_the_profile_s_consent() {
    let mut profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [
            "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"
        ],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    });
    let mut ck = chain(&[ret_allow()]);
    ck.seccomp_filters[0].flags = FLAG_SPEC_ALLOW;
    let err = verdict(&ck, &profile).unwrap_err();
    assert!(err.contains("SECCOMP_FILTER_FLAG_SPEC_ALLOW"), "{err}");
    // runc asks for it where the profile names no flags.
    profile.as_object_mut().unwrap().remove("flags");
    verdict(&ck, &profile).unwrap();
}

/// The strictest answer `profile` may give to one input.
fn answer(profile: &Value, arch: u32, nr: u32, args: [u64; 6]) -> Class {
    let profile = Profile::parse(profile, Some(Abi::X86_64)).unwrap().unwrap();
    let mut region = Region::default().with(NR, Atom::eq(nr)).unwrap();
    for (i, a) in args.iter().enumerate() {
        let (lo, hi) = bpf::arg_words(i as u8);
        region = region.with(lo, Atom::eq(*a as u32)).unwrap();
        region = region.with(hi, Atom::eq((*a >> 32) as u32)).unwrap();
    }
    let mut findings = Findings::default();
    let mut budget = Budget {
        steps: STEPS,
        paths: PATHS,
    };
    profile
        .findings(arch, &region, Class::Allow, &mut findings, &mut budget)
        .unwrap();
    findings
        .seen
        .iter()
        .map(|(_, p, _)| *p)
        .min()
        .unwrap_or(Class::Allow)
}

fn nr(abi: Abi, name: &str) -> u32 {
    abi.table().iter().find(|(n, _)| *n == name).unwrap().1
}

/// Asserts the strictest answer `profile` may give to each `(arch, nr, args)` input.
fn answers(profile: &Value, cases: &[(u32, u32, [u64; 6], Class)]) {
    for (i, &(arch, nr, args, expected)) in cases.iter().enumerate() {
        assert_eq!(
            answer(profile, arch, nr, args),
            expected,
            "case {i}: arch {arch:#x}, nr {nr}, args {args:#x?}"
        );
    }
}

#[test]
fn the_profile_answers_as_runc_and_libseccomp_compile_it() {
    use Class::{Allow, Errno, KillProcess, KillThread, Trap};
    let (_, profile) = real_filter();
    let x86 = |name| nr(Abi::X86_64, name);
    let (clone, personality) = (x86("clone"), x86("personality"));
    let x32_personality = nr(Abi::X32, "personality");
    answers(
        &profile,
        &[
            (AUDIT_X86_64, x86("read"), [0; 6], Allow),
            (AUDIT_X86_64, x86("mount"), [0; 6], Errno),
            // clone: allowed unless it asks for a namespace.
            (AUDIT_X86_64, clone, [0x11, 0, 0, 0, 0, 0], Allow),
            (AUDIT_X86_64, clone, [0x1000_0011, 0, 0, 0, 0, 0], Errno),
            // personality: only the listed values, compared on 64 bits on x86_64...
            (AUDIT_X86_64, personality, [8, 0, 0, 0, 0, 0], Allow),
            (AUDIT_X86_64, personality, [9, 0, 0, 0, 0, 0], Errno),
            (
                AUDIT_X86_64,
                personality,
                [0x1_0000_0008, 0, 0, 0, 0, 0],
                Errno,
            ),
            // ...and on their low 32 bits on x32.
            (
                AUDIT_X86_64,
                x32_personality,
                [0x1_0000_0008, 0, 0, 0, 0, 0],
                Allow,
            ),
            // i386: socket(2) reached through socketcall(2) follows socket's rule.
            (AUDIT_I386, SOCKETCALL, [1, 0, 0, 0, 0, 0], Allow),
            // runc's stub: ENOSYS above the highest number the profile names.
            (AUDIT_X86_64, 1000, [0; 6], Errno),
            // Architectures the profile does not list are killed.
            (AUDIT_AARCH64, 63, [0; 6], KillThread),
            (AUDIT_ARM, 3, [0; 6], KillThread),
        ],
    );

    let read = x86("read");
    let write = x86("write");
    let socket = nr(Abi::I386, "socket");
    let profiles = [
        // Several conditions on one argument make one rule each (runc); on different
        // arguments they are all required.
        (
            json!({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 2, "op": "SCMP_CMP_GT"}]},
            ]}),
            vec![
                (AUDIT_X86_64, read, [2, 0, 0, 0, 0, 0], Allow),
                (AUDIT_X86_64, read, [3, 0, 0, 0, 0, 0], KillProcess),
                (AUDIT_X86_64, write, [1, 3, 0, 0, 0, 0], Allow),
                (AUDIT_X86_64, write, [1, 2, 0, 0, 0, 0], KillProcess),
                // No x32 listed: x32 numbers are another architecture.
                (AUDIT_X86_64, X32_BIT, [0; 6], KillThread),
            ],
        ),
        // The first rule without conditions overrides every conditional one; a rule whose
        // action is the default is skipped.
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["read"], "action": "SCMP_ACT_KILL"},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["write"], "action": "SCMP_ACT_ERRNO"},
            ]}),
            vec![
                (AUDIT_X86_64, read, [1, 0, 0, 0, 0, 0], Allow),
                (AUDIT_X86_64, write, [1, 0, 0, 0, 0, 0], Allow),
            ],
        ),
        // i386: a rule for socket(2) also holds socketcall(2) with SYS_SOCKET, whatever it
        // said of the first argument (libseccomp).
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"], "syscalls": [
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
            ]}),
            vec![
                (AUDIT_I386, SOCKETCALL, [1, 0, 0, 0, 0, 0], Allow),
                (AUDIT_I386, SOCKETCALL, [2, 0, 0, 0, 0, 0], Errno),
                (AUDIT_I386, socket, [40, 0, 0, 0, 0, 0], Errno),
                (AUDIT_I386, socket, [2, 0, 0, 0, 0, 0], Allow),
            ],
        ),
        // Overlapping rules with different actions: both answers count.
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]},
            ]}),
            vec![
                (AUDIT_X86_64, read, [1, 1, 0, 0, 0, 0], Trap),
                // No stub in front of a filter whose default allows: new calls are allowed.
                (AUDIT_X86_64, 1000, [0; 6], Allow),
            ],
        ),
    ];
    for (p, cases) in &profiles {
        answers(p, cases);
    }
}

#[test]
fn profiles_runc_would_refuse_are_errors() {
    for bad in [
        json!("SCMP_ACT_ALLOW"),
        json!({"defaultAction": "SCMP_ACT_MAYBE"}),
        json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["x86"]}),
        json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}),
        json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
        json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}),
    ] {
        assert!(Profile::parse(&bad, Some(Abi::X86_64)).is_err(), "{bad}");
    }
}

#[test]
fn hostile_chains_cost_a_bounded_time() {
    let (_, profile) = real_filter();
    // 2^20 paths through tests of argument bits; 4000 tests of the number, each splitting.
    let mut bits = Vec::new();
    for bit in 0..20u32 {
        bits.push((LD, 0, 0, 16 + 8 * (bit % 6)));
        bits.push((0x45, 0, 0, 1 << bit));
    }
    bits.push((RET, 0, 0, RET_ALLOW));
    let mut numbers = vec![(LD, 0, 0, 0)];
    for k in 0..4000u32 {
        numbers.push((JEQ, 0, 0, k));
    }
    numbers.push((RET, 0, 0, RET_ALLOW));
    for p in [bits, numbers] {
        let started = Instant::now();
        let err = verdict(&chain(&[insns(&p)]), &profile).unwrap_err();
        assert!(err.contains("too complex"), "{err}");
        eprintln!("refused in {:?}", started.elapsed());
    }
    // Once the budget is spent, every other chain is refused at once.
    let mut ck = chain(&[ret_allow()]);
    ck.seccomp_filters.push(SeccompFilter {
        program: insns(&[(RET, 0, 0, RET_KILL_PROCESS)]),
        prev: None,
        flags: 0,
    });
    let mut checker = Checker::for_abi(Some(&profile), Some(Abi::X86_64));
    checker.budget.steps = 0;
    assert_eq!(checker.check(&ck, 1), Err(Mismatch::TooComplex));
}

#[test]
fn the_kernel_orders_raw_actions_before_it_reads_them() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "architectures": [
            "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"
        ],
    });
    // An action the kernel does not know kills the process...
    let unknown = insns(&[(RET, 0, 0, 0x0001_0000)]);
    verdict(&chain(std::slice::from_ref(&unknown)), &profile).unwrap();
    // ...unless another filter answers lower: SECCOMP_RET_KILL_THREAD (0) is below it.
    let err = verdict(&chain(&[unknown, insns(&[(RET, 0, 0, 0)])]), &profile).unwrap_err();
    assert!(
        err.contains("with SECCOMP_RET_KILL_THREAD, where this container's seccomp profile answers SECCOMP_RET_KILL_PROCESS"),
        "{err}"
    );
}
