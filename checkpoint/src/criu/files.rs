//! What a checkpoint's processes had open: every file descriptor (`fdinfo-ID.img`, whose
//! files are described in `files.img`), the working and root directories (`fs-PID.img`),
//! and the sockets among the descriptors.
//!
//! Invariants: every id a record names is looked up, never indexed; a descriptor whose file
//! `files.img` lacks is shown as such rather than dropped; counts are bounded by the image
//! reader.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::images::{FILES_MAGIC, FS_MAGIC, Source, all, one};
use super::{ImageError, proto};

pub const FDINFO_MAGIC: u32 = 0x5621_3732;
pub const IDS_MAGIC: u32 = 0x5443_2030;

/// One open file of a process: a descriptor, or its working or root directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenFile {
    /// The descriptor, or `cwd` or `root`.
    pub fd: String,
    /// CRIU's file type: REG, PIPE, FIFO, INETSK, UNIXSK, EVENTFD, TTY, ...
    pub kind: String,
    /// The path (a file's, from the mount namespace's root), or what stands for one
    /// (`pipe[ID]`, `socket:[INODE]`, `anon_inode:[eventfd]`, ...).
    pub path: String,
    /// The file offset, for a regular file.
    pub pos: Option<u64>,
    /// The open flags (O_*), for a descriptor.
    pub flags: Option<u32>,
    /// The file's mode and size at the checkpoint, where CRIU records them.
    pub mode: Option<u32>,
    pub size: Option<u64>,
}

/// One socket of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    pub fd: u32,
    /// INET, INET6, UNIX, PACKET or NETLINK.
    pub family: String,
    /// STREAM, DGRAM, SEQPACKET, RAW, ...
    #[serde(rename = "type")]
    pub sock_type: String,
    /// TCP, UDP, UDPLITE, ICMP, ... for an inet socket.
    pub protocol: Option<String>,
    /// The kernel's state name (LISTEN, ESTABLISHED, CLOSE, ...).
    pub state: String,
    pub inode: u32,
    /// Local and remote address (an IP address, or a unix socket's path).
    pub source: Option<String>,
    pub source_port: Option<u32>,
    pub destination: Option<String>,
    pub destination_port: Option<u32>,
    /// The peer's inode, for a connected unix socket.
    pub peer: Option<u32>,
    pub send_buffer: u32,
    pub receive_buffer: u32,
}

/// A process's open files and sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Files {
    pub files: Vec<OpenFile>,
    pub sockets: Vec<Socket>,
}

/// `files.img`, by file id.
#[derive(Default)]
pub struct FileTable(BTreeMap<u32, proto::FileEntry>);

impl FileTable {
    pub fn read(source: &dyn Source) -> Result<FileTable, ImageError> {
        let Some(data) = source.read("files.img")? else {
            return Ok(FileTable(BTreeMap::new()));
        };
        let entries: Vec<proto::FileEntry> = all(&data, FILES_MAGIC, "files.img")?;
        Ok(FileTable(entries.into_iter().map(|e| (e.id, e)).collect()))
    }

    /// A regular file's path, by id.
    pub fn path(&self, id: u32) -> Option<&str> {
        self.0
            .get(&id)
            .and_then(|e| e.reg.as_ref())
            .map(|r| r.name.as_str())
    }
}

/// The `files_id` of process `pid`: from its core's ids, else `ids-PID.img`.
fn files_id(source: &dyn Source, pid: u32, core: &proto::CoreEntry) -> Result<u32, ImageError> {
    if let Some(ids) = &core.ids {
        return Ok(ids.files_id);
    }
    let name = format!("ids-{pid}.img");
    let data = source
        .read(&name)?
        .ok_or_else(|| ImageError::Missing(name.clone()))?;
    let ids: proto::TaskKobjIdsEntry = one(&data, IDS_MAGIC, &name)?;
    Ok(ids.files_id)
}

/// The open files and sockets of process `pid`, whose task core is `core`.
pub fn read(
    source: &dyn Source,
    table: &FileTable,
    pid: u32,
    core: &proto::CoreEntry,
) -> Result<Files, ImageError> {
    let mut out = Files::default();
    let files_id = files_id(source, pid, core)?;
    let name = format!("fdinfo-{files_id}.img");
    if let Some(data) = source.read(&name)? {
        let fds: Vec<proto::FdinfoEntry> = all(&data, FDINFO_MAGIC, &name)?;
        for fd in fds {
            let entry = table.0.get(&fd.id);
            out.files
                .push(describe(&fd.fd.to_string(), entry, Some(fd.flags)));
            if let Some(socket) = entry.and_then(|e| socket(fd.fd, e)) {
                out.sockets.push(socket);
            }
        }
    }
    let fs_name = format!("fs-{pid}.img");
    if let Some(data) = source.read(&fs_name)? {
        let fs: proto::FsEntry = one(&data, FS_MAGIC, &fs_name)?;
        out.files
            .push(describe("cwd", table.0.get(&fs.cwd_id), None));
        out.files
            .push(describe("root", table.0.get(&fs.root_id), None));
    }
    Ok(out)
}

fn type_name(kind: i32) -> String {
    proto::FdTypes::try_from(kind)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| format!("TYPE{kind}"))
}

fn describe(fd: &str, entry: Option<&proto::FileEntry>, flags: Option<u32>) -> OpenFile {
    let Some(e) = entry else {
        return OpenFile {
            fd: fd.into(),
            kind: "UND".into(),
            path: "(not in files.img)".into(),
            pos: None,
            flags,
            mode: None,
            size: None,
        };
    };
    let kind = type_name(e.r#type);
    let (path, pos, mode, size) = if let Some(reg) = &e.reg {
        (reg.name.clone(), Some(reg.pos), reg.mode, reg.size)
    } else if let Some(p) = &e.pipe {
        (format!("pipe[{}]", p.pipe_id), None, None, None)
    } else if let Some(f) = &e.fifo {
        (format!("fifo[{}]", f.pipe_id), None, None, None)
    } else if let Some(u) = &e.usk {
        (format!("socket:[{}]", u.ino), None, None, None)
    } else if let Some(i) = &e.isk {
        (format!("socket:[{}]", i.ino), None, None, None)
    } else if let Some(p) = &e.psk {
        (format!("socket:[{}]", p.id), None, None, None)
    } else if let Some(n) = &e.nlsk {
        (format!("socket:[{}]", n.ino), None, None, None)
    } else if let Some(t) = &e.tty {
        (format!("tty[{}]", t.tty_info_id), None, None, None)
    } else if let Some(m) = &e.memfd {
        (format!("memfd:{}", m.inode_id), Some(m.pos), None, None)
    } else {
        let anon = match kind.as_str() {
            "EVENTFD" => "eventfd",
            "EVENTPOLL" => "[eventpoll]",
            "SIGNALFD" => "[signalfd]",
            "TIMERFD" => "[timerfd]",
            "INOTIFY" => "inotify",
            "FANOTIFY" => "[fanotify]",
            "PIDFD" => "[pidfd]",
            "BPFMAP" => "bpf-map",
            _ => "",
        };
        let path = if anon.is_empty() {
            format!("{kind}.{}", e.id)
        } else {
            format!("anon_inode:{anon}")
        };
        (path, None, None, None)
    };
    OpenFile {
        fd: fd.into(),
        kind,
        path,
        pos,
        flags,
        mode,
        size,
    }
}

/// The kernel's TCP state names (`include/net/tcp_states.h`); unix sockets use them too.
const TCP_STATES: &[(u32, &str)] = &[
    (1, "ESTABLISHED"),
    (2, "SYN_SENT"),
    (3, "SYN_RECV"),
    (4, "FIN_WAIT1"),
    (5, "FIN_WAIT2"),
    (6, "TIME_WAIT"),
    (7, "CLOSE"),
    (8, "CLOSE_WAIT"),
    (9, "LAST_ACK"),
    (10, "LISTEN"),
    (11, "CLOSING"),
    (12, "NEW_SYN_RECV"),
];

/// Socket types (SOCK_*).
const SOCK_TYPES: &[(u32, &str)] = &[
    (1, "STREAM"),
    (2, "DGRAM"),
    (3, "RAW"),
    (4, "RDM"),
    (5, "SEQPACKET"),
    (10, "PACKET"),
];

/// IP protocols (IPPROTO_*).
const IP_PROTOCOLS: &[(u32, &str)] = &[
    (0, "IP"),
    (1, "ICMP"),
    (6, "TCP"),
    (17, "UDP"),
    (58, "ICMPV6"),
    (132, "SCTP"),
    (136, "UDPLITE"),
    (255, "RAW"),
];

/// `n`'s name in `table`, else `unknown` and the number.
fn name_in(table: &[(u32, &str)], n: u32, unknown: &str) -> String {
    table
        .iter()
        .find(|(k, _)| *k == n)
        .map_or_else(|| format!("{unknown}{n}"), |(_, name)| (*name).to_string())
}

pub fn tcp_state(state: u32) -> String {
    name_in(TCP_STATES, state, "STATE")
}

fn sock_type(t: u32) -> String {
    name_in(SOCK_TYPES, t, "TYPE")
}

fn ip_protocol(p: u32) -> String {
    name_in(IP_PROTOCOLS, p, "PROTO")
}

/// An address as CRIU stores it: the kernel's bytes, in 32-bit words in host order.
fn address(family: u32, words: &[u32]) -> Option<String> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match (family, bytes.len()) {
        (2, 4) => Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()),
        (10, 16) => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            Some(Ipv6Addr::from(b).to_string())
        }
        _ => None,
    }
}

/// A unix socket's name: a path, or an abstract name shown as `@name`.
fn unix_name(name: &[u8]) -> Option<String> {
    let name = name.strip_suffix(&[0]).unwrap_or(name);
    match name.split_first() {
        None => None,
        Some((0, rest)) => Some(format!("@{}", String::from_utf8_lossy(rest))),
        Some(_) => Some(String::from_utf8_lossy(name).into_owned()),
    }
}

impl Socket {
    /// A socket of `family` with no addresses, protocol or state yet.
    fn of(
        fd: u32,
        family: &str,
        sock_type: String,
        inode: u32,
        opts: &proto::SkOptsEntry,
    ) -> Socket {
        Socket {
            fd,
            family: family.into(),
            sock_type,
            protocol: None,
            state: String::new(),
            inode,
            source: None,
            source_port: None,
            destination: None,
            destination_port: None,
            peer: None,
            send_buffer: opts.so_sndbuf,
            receive_buffer: opts.so_rcvbuf,
        }
    }
}

fn socket(fd: u32, e: &proto::FileEntry) -> Option<Socket> {
    if let Some(i) = &e.isk {
        let family = if i.family == 10 { "INET6" } else { "INET" };
        return Some(Socket {
            protocol: Some(ip_protocol(i.proto)),
            state: tcp_state(i.state),
            source: address(i.family, &i.src_addr),
            source_port: Some(i.src_port),
            destination: address(i.family, &i.dst_addr),
            destination_port: Some(i.dst_port),
            ..Socket::of(fd, family, sock_type(i.r#type), i.ino, &i.opts)
        });
    }
    if let Some(u) = &e.usk {
        return Some(Socket {
            state: tcp_state(u.state),
            source: unix_name(&u.name),
            peer: (u.peer != 0).then_some(u.peer),
            ..Socket::of(fd, "UNIX", sock_type(u.r#type), u.ino, &u.opts)
        });
    }
    if let Some(p) = &e.psk {
        return Some(Socket {
            protocol: Some(format!("{:#06x}", p.protocol)),
            ..Socket::of(fd, "PACKET", sock_type(p.r#type), p.id, &p.opts)
        });
    }
    e.nlsk.as_ref().map(|n| Socket {
        protocol: Some(n.protocol.to_string()),
        state: tcp_state(n.state),
        ..Socket::of(fd, "NETLINK", "RAW".into(), n.ino, &n.opts)
    })
}
