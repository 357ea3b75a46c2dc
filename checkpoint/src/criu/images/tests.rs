use super::*;

pub(crate) fn creds(uid: u32, caps: u64) -> proto::CredsEntry {
    let words = |set: u64| vec![set as u32, (set >> 32) as u32];
    proto::CredsEntry {
        uid,
        gid: uid,
        euid: uid,
        egid: uid,
        suid: uid,
        sgid: uid,
        fsuid: uid,
        fsgid: uid,
        cap_inh: vec![0, 0],
        cap_prm: words(caps),
        cap_eff: words(caps),
        cap_bnd: words(caps),
        cap_amb: vec![0, 0],
        secbits: 0,
        groups: vec![10],
        no_new_privs: Some(1),
        ..Default::default()
    }
}

pub(crate) fn core(leader: bool, creds: proto::CredsEntry) -> Vec<u8> {
    let entry = proto::CoreEntry {
        mtype: 1,
        tc: leader.then(|| proto::TaskCoreEntry {
            task_state: 1,
            comm: "sh".into(),
            oom_score_adj: Some(-5),
            loginuid: Some(u32::MAX),
            rlimits: Some(proto::TaskRlimitsEntry {
                rlimits: vec![proto::RlimitEntry { cur: 1, max: 2 }],
            }),
            ..Default::default()
        }),
        thread_core: Some(proto::ThreadCoreEntry {
            creds: Some(creds),
            seccomp_mode: Some(2),
            seccomp_filter: Some(1),
            sched_nice: Some(-3),
            ..Default::default()
        }),
        ..Default::default()
    };
    write(CORE_MAGIC, &[entry])
}

/// The images of one process (pid 1, threads 1 and 2) with two seccomp filters and a
/// read-only sysfs.
pub(crate) fn images() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    files.insert(
        "inventory.img".into(),
        write(
            INVENTORY_MAGIC,
            &[proto::InventoryEntry {
                img_version: 2,
                ..Default::default()
            }],
        ),
    );
    files.insert(
        "pstree.img".into(),
        write(
            PSTREE_MAGIC,
            &[proto::PstreeEntry {
                pid: 1,
                ppid: 0,
                pgid: 1,
                sid: 1,
                threads: vec![1, 2],
            }],
        ),
    );
    files.insert("core-1.img".into(), core(true, creds(0, 0x3ff)));
    files.insert("core-2.img".into(), core(false, creds(0, 1 << 40)));
    files.insert(
        "seccomp.img".into(),
        write(
            SECCOMP_MAGIC,
            &[proto::SeccompEntry {
                seccomp_filters: vec![
                    proto::SeccompFilter {
                        filter: vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f],
                        prev: None,
                        flags: None,
                    },
                    proto::SeccompFilter {
                        filter: vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f],
                        prev: Some(0),
                        flags: Some(1),
                    },
                ],
            }],
        ),
    );
    files.insert(
        "mountpoints-12.img".into(),
        write(
            MNTS_MAGIC,
            &[proto::MntEntry {
                fstype: 2,
                mnt_id: 30,
                parent_mnt_id: 29,
                flags: 0x1,
                root: "/".into(),
                mountpoint: "/sys/".into(),
                source: "sysfs".into(),
                options: "".into(),
                ..Default::default()
            }],
        ),
    );
    files
}

#[test]
fn a_process_with_two_threads_decodes() {
    let ck = read(&images()).unwrap();
    assert_eq!(ck.processes.len(), 1);
    let p = &ck.processes[0];
    assert_eq!((p.pid, p.comm.as_str(), p.zombie), (1, "sh", false));
    assert_eq!(p.oom_score_adj, Some(-5));
    assert_eq!(p.rlimits, vec![Rlimit { soft: 1, hard: 2 }]);
    assert_eq!(p.threads.len(), 2);
    assert_eq!(p.threads[0].creds.caps.permitted, 0x3ff);
    assert_eq!(p.threads[1].creds.caps.effective, 1 << 40);
    assert_eq!(p.threads[1].creds.groups, vec![10]);
    assert!(p.threads[1].creds.no_new_privs);
    assert_eq!(
        p.threads[1].seccomp,
        Seccomp {
            mode: 2,
            filter: Some(1)
        }
    );
    assert_eq!(p.threads[0].sched_nice, -3);
    assert_eq!(ck.mounts.len(), 1);
    assert_eq!(ck.mounts[0].mountpoint, "/sys");
    assert_eq!(ck.mounts[0].fstype, "sysfs");
    assert!(ck.mounts[0].read_only());
    assert_eq!(ck.filter_chain(1).unwrap().len(), 2);
    assert!(ck.host_images.is_empty());
}

/// A zombie as CRIU dumps it (`dump_one_zombie`): a task core with its state and no thread
/// core, and a pstree entry whose thread id was never set (here 0; garbage in real images).
#[test]
fn a_zombie_is_read_from_its_task_core_alone() {
    let mut files = images();
    let mut tree: Vec<proto::PstreeEntry> = records(&files["pstree.img"], PSTREE_MAGIC, "pstree")
        .unwrap()
        .into_iter()
        .map(|r| decode(r, "pstree").unwrap())
        .collect();
    tree.push(proto::PstreeEntry {
        pid: 7,
        ppid: 1,
        pgid: 1,
        sid: 1,
        threads: vec![0],
    });
    files.insert("pstree.img".into(), write(PSTREE_MAGIC, &tree));
    let zombie = proto::CoreEntry {
        mtype: 1,
        tc: Some(proto::TaskCoreEntry {
            task_state: TASK_DEAD,
            comm: "sleep".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    files.insert("core-7.img".into(), write(CORE_MAGIC, &[zombie]));
    let ck = read(&files).unwrap();
    assert_eq!(ck.processes.len(), 2);
    let z = &ck.processes[1];
    assert_eq!(
        (z.pid, z.ppid, z.comm.as_str(), z.zombie),
        (7, 1, "sleep", true)
    );
    assert!(z.threads.is_empty());
    assert!(!ck.processes[0].zombie);
}

#[test]
fn legacy_and_per_task_seccomp_fields_are_moved_as_criu_does() {
    let mut files = images();
    let mut core: proto::CoreEntry = decode(
        records(&files["core-1.img"], CORE_MAGIC, "core").unwrap()[0],
        "core",
    )
    .unwrap();
    core.tc.as_mut().unwrap().old_seccomp_mode = Some(0);
    files.insert("core-1.img".into(), write(CORE_MAGIC, &[core]));
    let ck = read(&files).unwrap();
    assert_eq!(ck.processes[0].threads[0].seccomp.mode, 0);
    assert_eq!(ck.processes[0].threads[1].seccomp.mode, 2);
}

#[test]
fn what_criu_would_act_on_but_cannot_be_read_is_an_error() {
    let without = |name: &str| {
        let mut files = images();
        files.remove(name);
        read(&files).unwrap_err()
    };
    assert_eq!(
        without("core-2.img"),
        ImageError::Missing("core-2.img".into())
    );
    assert_eq!(
        without("pstree.img"),
        ImageError::Missing("pstree.img".into())
    );
    assert_eq!(
        without("inventory.img"),
        ImageError::Missing("inventory.img".into())
    );

    let mut files = images();
    files.insert(
        "core-2.img".into(),
        core(false, proto::CredsEntry::default()),
    );
    let mut no_creds: proto::CoreEntry = decode(
        records(&files["core-2.img"], CORE_MAGIC, "core").unwrap()[0],
        "core",
    )
    .unwrap();
    no_creds.thread_core.as_mut().unwrap().creds = None;
    files.insert("core-2.img".into(), write(CORE_MAGIC, &[no_creds]));
    assert!(
        read(&files)
            .unwrap_err()
            .to_string()
            .contains("no credentials")
    );

    let mut files = images();
    files.insert("creds-1.img".into(), vec![]);
    assert!(read(&files).unwrap_err().to_string().contains("legacy"));

    let mut files = images();
    let mut wide = creds(0, 0);
    wide.cap_eff = vec![0, 0, 1];
    files.insert("core-2.img".into(), core(false, wide));
    assert!(read(&files).unwrap_err().to_string().contains("past 63"));

    let mut files = images();
    files.insert(
        "core-1.img".into(),
        write(PSTREE_MAGIC, &[proto::PstreeEntry::default()]),
    );
    assert!(matches!(read(&files), Err(ImageError::Magic { .. })));
}

#[test]
fn host_images_are_reported() {
    let mut files = images();
    files.insert("apparmor.img".into(), vec![]);
    files.insert("binfmt-misc-3.img".into(), vec![]);
    let ck = read(&files).unwrap();
    assert_eq!(ck.host_images, vec!["apparmor.img", "binfmt-misc-3.img"]);
}

#[test]
fn a_looping_or_dangling_filter_chain_is_an_error() {
    let mut ck = read(&images()).unwrap();
    ck.seccomp_filters[0].prev = Some(1);
    assert!(ck.filter_chain(1).unwrap_err().to_string().contains("loop"));
    assert!(ck.filter_chain(7).is_err());
}

#[test]
fn framing_is_bounded() {
    let data = write(PSTREE_MAGIC, &[proto::PstreeEntry::default()]);
    assert_eq!(records(&data, PSTREE_MAGIC, "p").unwrap().len(), 1);
    for n in 0..data.len() {
        let _ = records(&data[..n], PSTREE_MAGIC, "p");
    }
    let mut huge = data.clone();
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        records(&huge, PSTREE_MAGIC, "p"),
        Err(ImageError::TooLarge(_))
    ));
}

#[test]
fn a_directory_is_read_without_following_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in images() {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    assert_eq!(read_dir(dir.path()).unwrap().processes.len(), 1);
    std::fs::remove_file(dir.path().join("core-2.img")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("core-2.img")).unwrap();
    assert!(read_dir(dir.path()).is_err());
}

#[test]
fn the_root_directory_s_mode_is_read_from_the_first_process() {
    let pstree = write(
        PSTREE_MAGIC,
        &[proto::PstreeEntry {
            pid: 7,
            ppid: 0,
            pgid: 7,
            sid: 7,
            ..Default::default()
        }],
    );
    let reg = |id: u32, name: &str, mode: u32| proto::FileEntry {
        r#type: proto::FdTypes::Reg as i32,
        id,
        reg: Some(proto::RegFileEntry {
            id,
            name: name.into(),
            mode: Some(mode),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut images: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    images.insert("pstree.img".into(), pstree);
    assert_eq!(
        root_mode(&images).unwrap(),
        None,
        "no fs-7.img, no files.img"
    );
    images.insert(
        "fs-7.img".into(),
        write(
            FS_MAGIC,
            &[proto::FsEntry {
                cwd_id: 3,
                root_id: 4,
                umask: Some(0o22),
            }],
        ),
    );
    images.insert(
        "files.img".into(),
        write(
            FILES_MAGIC,
            &[reg(3, "root", 0o40700), reg(4, ".", 0o40555)],
        ),
    );
    assert_eq!(root_mode(&images).unwrap(), Some(0o40555));
    images.insert(
        "files.img".into(),
        write(FILES_MAGIC, &[reg(3, "root", 0o40700)]),
    );
    assert_eq!(root_mode(&images).unwrap(), None);
    images.insert(
        "fs-7.img".into(),
        write(CORE_MAGIC, &[proto::FsEntry::default()]),
    );
    assert!(root_mode(&images).is_err(), "a wrong magic is an error");
}
