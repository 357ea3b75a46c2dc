use std::collections::BTreeMap;

use super::*;
use crate::criu::files::{FDINFO_MAGIC, IDS_MAGIC};
use crate::criu::images::{FILES_MAGIC, FS_MAGIC, write};
use crate::criu::proto::FdTypes;
use crate::criu::{memory, search};

fn crate_memory_images() -> BTreeMap<String, Vec<u8>> {
    memory::tests::images()
}

fn fown() -> proto::FownEntry {
    proto::FownEntry::default()
}

fn file(id: u32, kind: FdTypes) -> proto::FileEntry {
    proto::FileEntry {
        r#type: kind as i32,
        id,
        ..Default::default()
    }
}

fn reg(id: u32, name: &str, pos: u64) -> proto::FileEntry {
    proto::FileEntry {
        reg: Some(proto::RegFileEntry {
            id,
            flags: 1,
            pos,
            fown: fown(),
            name: name.into(),
            mode: Some(0o100644),
            size: Some(pos),
            ..Default::default()
        }),
        ..file(id, FdTypes::Reg)
    }
}

fn opts(snd: u32, rcv: u32) -> proto::SkOptsEntry {
    proto::SkOptsEntry {
        so_sndbuf: snd,
        so_rcvbuf: rcv,
        ..Default::default()
    }
}

/// The privilege test's process 1, with the memory test's memory, a file open at 24, a
/// pipe, a TCP listener on [::1]:8080, a connected abstract unix socket and an eventfd.
fn images() -> BTreeMap<String, Vec<u8>> {
    let mut files = images::tests::images();
    for (name, data) in crate_memory_images() {
        files.insert(name.replace("-7.img", "-1.img"), data);
    }
    let v6_loopback = vec![0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];
    let entries = vec![
        reg(1, "/dev/null", 0),
        reg(2, "/", 0),
        reg(3, "/tmp/log", 24),
        reg(4, "/bin/server", 0),
        proto::FileEntry {
            pipe: Some(proto::PipeEntry {
                id: 5,
                pipe_id: 777,
                flags: 0,
                fown: fown(),
            }),
            ..file(5, FdTypes::Pipe)
        },
        proto::FileEntry {
            isk: Some(proto::InetSkEntry {
                id: 6,
                ino: 1006,
                family: 10,
                r#type: 1,
                proto: 6,
                state: 10,
                src_port: 8080,
                src_addr: v6_loopback,
                fown: fown(),
                opts: opts(16384, 131072),
                ..Default::default()
            }),
            ..file(6, FdTypes::Inetsk)
        },
        proto::FileEntry {
            usk: Some(proto::UnixSkEntry {
                id: 7,
                ino: 1007,
                r#type: 1,
                state: 1,
                peer: 1008,
                fown: fown(),
                opts: opts(1, 2),
                name: b"\0bus".to_vec(),
                ..Default::default()
            }),
            ..file(7, FdTypes::Unixsk)
        },
        file(8, FdTypes::Eventfd),
    ];
    files.insert("files.img".into(), write(FILES_MAGIC, &entries));
    let fd = |fd: u32, id: u32, kind: FdTypes| proto::FdinfoEntry {
        id,
        flags: 0,
        r#type: kind as i32,
        fd,
        ..Default::default()
    };
    files.insert(
        "fdinfo-2.img".into(),
        write(
            FDINFO_MAGIC,
            &[
                fd(0, 1, FdTypes::Reg),
                fd(1, 5, FdTypes::Pipe),
                fd(3, 3, FdTypes::Reg),
                fd(4, 6, FdTypes::Inetsk),
                fd(5, 7, FdTypes::Unixsk),
                fd(6, 8, FdTypes::Eventfd),
                fd(9, 99, FdTypes::Reg),
            ],
        ),
    );
    files.insert(
        "ids-1.img".into(),
        write(
            IDS_MAGIC,
            &[proto::TaskKobjIdsEntry {
                files_id: 2,
                ..Default::default()
            }],
        ),
    );
    files.insert(
        "fs-1.img".into(),
        write(
            FS_MAGIC,
            &[proto::FsEntry {
                cwd_id: 2,
                root_id: 2,
                umask: None,
            }],
        ),
    );
    files
}

fn beside(annotations: serde_json::Value) -> Beside {
    Beside {
        config_dump: Some(
            serde_json::json!({
                "id": "c0ffee", "name": "k8s_web", "rootfsImageName": "busybox:1",
                "rootfsImageRef": "sha256:ab", "runtime": "io.containerd.runc.v2",
                "createdTime": "2026-01-02T03:04:05.5Z", "checkpointedTime": "2026-01-02T03:05:00Z"
            })
            .to_string()
            .into_bytes(),
        ),
        spec_dump: Some(
            serde_json::json!({
                "ociVersion": "1.2.0", "process": {}, "linux": {},
                "annotations": annotations,
                "mounts": [{"destination": "/proc", "type": "proc", "source": "proc",
                            "options": ["nosuid"]}]
            })
            .to_string()
            .into_bytes(),
        ),
        stats_dump: None,
        root_fs_diff: Some(10),
    }
}

#[test]
fn a_process_is_shown_whole() {
    let i = inspect(
        &images(),
        &beside(serde_json::json!({
            "io.kubernetes.cri.container-name": "web",
            "io.kubernetes.cri.sandbox-name": "web-pod",
            "io.kubernetes.cri.sandbox-namespace": "shop"
        })),
    )
    .unwrap();
    assert_eq!(i.problems, Vec::<String>::new());
    let c = &i.container;
    assert_eq!(
        (c.name.as_str(), c.engine.as_str(), c.image.as_str()),
        ("web", "containerd", "busybox:1")
    );
    assert_eq!(c.pod.as_deref(), Some("web-pod"));
    assert_eq!(c.namespace.as_deref(), Some("shop"));
    let p = &i.processes[0];
    assert_eq!(
        p.cmdline.as_deref().unwrap(),
        ["sh", "", "-c", "echo hi there"]
    );
    assert_eq!(p.environment.as_deref().unwrap(), ["A=1", "B=22"]);
    assert_eq!(
        (p.cwd.as_deref(), p.root.as_deref()),
        (Some("/"), Some("/"))
    );
    assert_eq!(p.exe.as_deref(), Some("/bin/server"));
    assert_eq!(p.threads.len(), 2);
    assert_eq!(p.threads[0].seccomp, "filter");
    let shown: Vec<(&str, &str, &str, Option<u64>)> = p
        .files
        .iter()
        .map(|f| (f.fd.as_str(), f.kind.as_str(), f.path.as_str(), f.pos))
        .collect();
    assert_eq!(
        shown,
        [
            ("0", "REG", "/dev/null", Some(0)),
            ("1", "PIPE", "pipe[777]", None),
            ("3", "REG", "/tmp/log", Some(24)),
            ("4", "INETSK", "socket:[1006]", None),
            ("5", "UNIXSK", "socket:[1007]", None),
            ("6", "EVENTFD", "anon_inode:eventfd", None),
            ("9", "UND", "(not in files.img)", None),
            ("cwd", "REG", "/", Some(0)),
            ("root", "REG", "/", Some(0)),
        ]
    );
    let tcp = &p.sockets[0];
    assert_eq!(
        (
            tcp.family.as_str(),
            tcp.protocol.as_deref(),
            tcp.state.as_str()
        ),
        ("INET6", Some("TCP"), "LISTEN")
    );
    assert_eq!(
        (tcp.source.as_deref(), tcp.source_port),
        (Some("::1"), Some(8080))
    );
    assert_eq!((tcp.send_buffer, tcp.receive_buffer), (16384, 131072));
    let unix = &p.sockets[1];
    assert_eq!(
        (unix.family.as_str(), unix.source.as_deref(), unix.peer),
        ("UNIX", Some("@bus"), Some(1008))
    );
    let memory = p.memory.as_ref().unwrap();
    assert_eq!(memory.present, 4 * 4096);
    assert_eq!(i.sizes.memory_pages, 4 * 4096);
    assert_eq!(i.sizes.root_fs_diff, Some(10));
    assert!(i.sizes.checkpoint > i.sizes.memory_pages);
    assert_eq!(i.mounts[0].destination, "/proc");
}

#[test]
fn the_engine_is_told_by_the_spec_s_annotations() {
    let podman = inspect(
        &images(),
        &beside(serde_json::json!({"io.container.manager": "libpod"})),
    )
    .unwrap();
    assert_eq!(
        (
            podman.container.engine.as_str(),
            podman.container.name.as_str()
        ),
        ("Podman", "k8s_web")
    );
    let crio = inspect(
        &images(),
        &beside(serde_json::json!({
            "io.container.manager": "cri-o",
            "io.kubernetes.cri-o.Metadata": "{\"name\":\"web\"}",
            "io.kubernetes.cri-o.Created": "2026-01-02T03:04:05.123+01:00",
            "io.kubernetes.pod.name": "web-pod"
        })),
    )
    .unwrap();
    let c = &crio.container;
    assert_eq!((c.engine.as_str(), c.name.as_str()), ("CRI-O", "web"));
    assert_eq!(c.created, "2026-01-02T03:04:05.123+01:00");
    assert_eq!(c.pod.as_deref(), Some("web-pod"));
}

#[test]
fn what_cannot_be_read_is_named_not_fatal() {
    let mut files = images();
    files.insert("files.img".into(), b"garbage".to_vec());
    files.insert("pagemap-1.img".into(), Vec::new());
    let mut b = beside(serde_json::json!({}));
    b.config_dump = Some(b"{".to_vec());
    b.stats_dump = Some(b"nope".to_vec());
    let i = inspect(&files, &b).unwrap();
    let has = |s: &str| i.problems.iter().any(|p| p.contains(s));
    assert!(has("files.img"), "{:?}", i.problems);
    assert!(has("process 1: memory"), "{:?}", i.problems);
    assert!(has("config.dump"), "{:?}", i.problems);
    assert!(has("stats-dump"), "{:?}", i.problems);
    assert_eq!(i.processes[0].cmdline, None);
    // Without the process tree there is nothing to show.
    files.remove("pstree.img");
    assert!(inspect(&files, &b).is_err());
}

/// The holder's real checkpoint (`tests/fixtures/criu/README.md`).
fn holder() -> (std::path::PathBuf, Beside) {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/criu/holder");
    let read = |name: &str| std::fs::read(dir.join(name)).ok();
    let beside = Beside {
        config_dump: read("config.dump"),
        spec_dump: read("spec.dump"),
        stats_dump: read("stats-dump"),
        root_fs_diff: None,
    };
    (dir, beside)
}

#[test]
fn a_real_checkpoint_is_read_as_criu_wrote_it() {
    let (dir, beside) = holder();
    let source = images::Dir(&dir);
    let i = inspect(&source, &beside).unwrap();
    assert_eq!(i.problems, Vec::<String>::new());
    assert_eq!(i.container.name, "holder");
    assert_eq!(i.container.engine, "containerd");
    let stats = i.statistics.as_ref().unwrap();
    assert_eq!((stats.pages_scanned, stats.pages_written), (48, 33));
    let [holder, sleep] = i.processes.as_slice() else {
        panic!("two processes: {:?}", i.processes);
    };
    assert_eq!(holder.cmdline.as_deref().unwrap(), ["/holder"]);
    assert_eq!(
        sleep.cmdline.as_deref().unwrap(),
        ["tail", "-f", "/dev/null"]
    );
    assert_eq!(sleep.ppid, holder.pid);
    assert!(
        holder
            .environment
            .as_ref()
            .unwrap()
            .contains(&"REVIVE_ROLE=holder".to_string())
    );
    assert_eq!(holder.exe.as_deref(), Some("/holder"));
    let log = holder
        .files
        .iter()
        .find(|f| f.path == "/tmp/holder.log")
        .unwrap();
    assert_eq!((log.fd.as_str(), log.pos), ("3", Some(24)));
    let sockets: Vec<(String, Option<String>, Option<u32>)> = holder
        .sockets
        .iter()
        .map(|s| {
            (
                format!("{} {}", s.protocol.as_deref().unwrap_or(&s.family), s.state),
                s.source.clone(),
                s.source_port,
            )
        })
        .collect();
    assert_eq!(
        sockets,
        [
            ("TCP LISTEN".into(), Some("127.0.0.1".into()), Some(7070)),
            ("UDP CLOSE".into(), Some("127.0.0.1".into()), Some(7071)),
            ("UNIX LISTEN".into(), Some("/tmp/holder.sock".into()), None),
        ]
    );
    // The secret is on the heap and on the stack, and nowhere else.
    let memory = Memory::read(&source, holder.pid).unwrap().unwrap();
    let pattern = search::Pattern::literal(b"revive-secret-fd37c237d46fc8cfb9effb2b").unwrap();
    let mut kinds = Vec::new();
    search::search(&source, &memory, &pattern, 0, &mut |hit| {
        kinds.push(hit.mapping.map(|m| m.kind));
        true
    })
    .unwrap();
    use memory::MappingKind;
    assert_eq!(kinds, [Some(MappingKind::Heap), Some(MappingKind::Stack)]);
}

#[test]
fn two_checkpoints_are_compared_file_by_file_and_page_by_page() {
    let before = images();
    let mut after = images();
    // One byte of the heap's first page changes; the stack's second page is no longer
    // dumped; descriptor 3 now names another file.
    after.get_mut("pages-3.img").unwrap()[10] ^= 1;
    let mut files: Vec<proto::FileEntry> =
        images::all(&after["files.img"], FILES_MAGIC, "files.img").unwrap();
    files[2] = reg(3, "/tmp/other", 0);
    after.insert("files.img".into(), write(FILES_MAGIC, &files));
    after.insert(
        "pagemap-1.img".into(),
        memory::tests::pagemap(
            3,
            &[
                memory::tests::entry(0x10000, 1, None),
                memory::tests::entry(0x11000, 1, Some(1)),
                memory::tests::entry(0x12000, 1, None),
                memory::tests::entry(0x7f1000, 1, None),
            ],
        ),
    );
    let b = beside(serde_json::json!({}));
    let (ia, ib) = (inspect(&before, &b).unwrap(), inspect(&after, &b).unwrap());
    let mut d = diff::compare(&ia, &ib);
    assert_eq!(d.opened, ["1: 3 REG /tmp/other"]);
    assert_eq!(d.closed, ["1: 3 REG /tmp/log"]);
    assert!(d.started.is_empty() && d.gone.is_empty() && d.mounts_added.is_empty());
    let (ma, mb) = (
        Memory::read(&before, 1).unwrap().unwrap(),
        Memory::read(&after, 1).unwrap().unwrap(),
    );
    let m = diff::compare_memory(&before, &ma, &after, &mb).unwrap();
    assert_eq!(
        (m.compared, m.changed, m.only_before, m.only_after),
        (3, 1, 1, 0)
    );
    assert_eq!(m.ranges, [(0x10000, 0x11000)]);
    d.memory.push(m);
    assert!(!d.is_empty());
    let same = diff::compare(&ia, &ia);
    let m = diff::compare_memory(&before, &ma, &before, &ma).unwrap();
    assert_eq!((m.compared, m.changed), (4, 0));
    assert!(same.is_empty());
}

#[test]
fn a_core_file_holds_registers_notes_and_the_dumped_pages() {
    let (dir, beside) = holder();
    let source = images::Dir(&dir);
    let i = inspect(&source, &beside).unwrap();
    let holder = &i.processes[0];
    let mut core = Vec::new();
    let written = elfcore::write(&source, holder, &mut core).unwrap();
    assert_eq!(written.bytes, core.len() as u64);
    assert_eq!(written.threads, 1);
    let u16_at = |at: usize| u16::from_le_bytes([core[at], core[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(core[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(core[at..at + 8].try_into().unwrap());
    assert_eq!(&core[..4], b"\x7fELF");
    assert_eq!((u16_at(16), u16_at(18)), (4, 62), "ET_CORE, EM_X86_64");
    let phnum = u16_at(56) as usize;
    assert_eq!(phnum, 1 + written.segments);
    // The notes: psinfo, then the thread's status whose rip is the core image's.
    let (notes_at, notes_len) = (u64_at(64 + 8) as usize, u64_at(64 + 32) as usize);
    let mut kinds = Vec::new();
    let mut at = notes_at;
    let mut rip = None;
    while at < notes_at + notes_len {
        let (namesz, descsz, kind) = (u32_at(at) as usize, u32_at(at + 4) as usize, u32_at(at + 8));
        let desc = at + 12 + namesz.next_multiple_of(4);
        if kind == 1 {
            // pr_reg starts 112 bytes into elf_prstatus; rip is its 17th register.
            rip = Some(u64_at(desc + 112 + 16 * 8));
        }
        kinds.push(kind);
        at = desc + descsz.next_multiple_of(4);
    }
    assert_eq!(kinds, [3, 1, 2, 6, 0x4649_4c45]);
    let (_, leader) = images::read_core(&source, holder.pid).unwrap();
    assert_eq!(rip, Some(leader.thread_info.unwrap().gpregs.ip));
    // Every PT_LOAD holds the process's bytes at its address.
    let memory = Memory::read(&source, holder.pid).unwrap().unwrap();
    for n in 1..phnum {
        let ph = 64 + n * 56;
        assert_eq!(u32_at(ph), 1);
        let (offset, vaddr, len) = (u64_at(ph + 8) as usize, u64_at(ph + 16), u64_at(ph + 32));
        let expected = memory
            .read_range(&source, vaddr, vaddr + len)
            .unwrap()
            .unwrap();
        assert_eq!(&core[offset..offset + len as usize], expected.as_slice());
    }
}

#[test]
fn a_core_of_another_architecture_is_refused() {
    let mut files = images();
    let core = proto::CoreEntry {
        mtype: 3,
        tc: Some(proto::TaskCoreEntry {
            task_state: 1,
            comm: "sh".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    files.insert("core-1.img".into(), write(images::CORE_MAGIC, &[core]));
    let view = ProcessView::new(1, 0, "sh");
    let err = elfcore::write(&files, &view, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("x86_64 cores only"), "{err}");
}
