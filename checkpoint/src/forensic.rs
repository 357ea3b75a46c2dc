//! What a checkpoint shows about the container it was taken of, read without restoring it:
//! the container (`config.dump`, `spec.dump`), CRIU's statistics, every process (tree,
//! command line, environment, directories, credentials, capabilities, seccomp mode, open
//! files, sockets, memory mappings) and the container's mounts. `revive inspect` renders
//! it; the images are hostile and read through the bounded decoders of [`crate::criu`].
//!
//! A part that cannot be read (a process whose arguments lie in pages the checkpoint does
//! not hold, a damaged optional image) is left empty and named in
//! [`Inspection::problems`]; what every restore needs (the process tree, the task cores) is
//! an error.

use std::collections::BTreeMap;

use serde::Serialize;

pub mod diff;
pub mod elfcore;

use crate::archive::{self, ContainerConfig};
use crate::criu::files::{self, FileTable, OpenFile, Socket};
use crate::criu::images::{self, Creds, PSTREE_MAGIC, Source};
use crate::criu::memory::{Mapping, Memory};
use crate::criu::{self, DumpStats, ImageError, proto};

/// The container a checkpoint was taken of, as its engine recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Container {
    pub id: String,
    /// The container's name: Kubernetes' container name where the engine recorded one.
    pub name: String,
    /// The engine's own name for it (`config.dump`'s).
    pub engine_name: String,
    pub image: String,
    pub image_id: String,
    pub runtime: String,
    /// Podman or CRI-O, by the spec's `io.container.manager` annotation (or CRI-O's own
    /// annotations), else containerd.
    pub engine: String,
    pub created: String,
    pub checkpointed: String,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// The spec's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Sizes in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sizes {
    /// CRIU's images, memory pages included.
    pub checkpoint: u64,
    pub memory_pages: u64,
    pub root_fs_diff: Option<u64>,
}

/// One thread's privilege, as a restore would set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadView {
    pub tid: u32,
    pub creds: Creds,
    /// none, strict or filter.
    pub seccomp: String,
}

/// A process's memory at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryView {
    /// Bytes of pages in this checkpoint, in a parent checkpoint, and left for a lazy
    /// restore.
    pub present: u64,
    pub mappings: Vec<MappingView>,
}

/// A mapping with its file's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingView {
    #[serde(flatten)]
    pub mapping: Mapping,
    pub path: Option<String>,
}

/// One process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessView {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub comm: String,
    pub zombie: bool,
    /// A zombie's wait status, as the kernel keeps it for its parent (CRIU's `exit_code`):
    /// the signal that ended it in the low 7 bits, else its exit code shifted left by 8.
    pub wait_status: Option<u32>,
    /// `None` where the checkpoint does not hold the pages they lie in.
    pub cmdline: Option<Vec<String>>,
    pub environment: Option<Vec<String>>,
    pub cwd: Option<String>,
    pub root: Option<String>,
    pub exe: Option<String>,
    pub threads: Vec<ThreadView>,
    pub files: Vec<OpenFile>,
    pub sockets: Vec<Socket>,
    pub memory: Option<MemoryView>,
}

impl ProcessView {
    /// Process `pid` of `ppid`, named `comm`, with nothing known about it yet.
    pub fn new(pid: u32, ppid: u32, comm: &str) -> ProcessView {
        ProcessView {
            pid,
            ppid,
            pgid: pid,
            sid: pid,
            comm: comm.into(),
            zombie: false,
            wait_status: None,
            cmdline: None,
            environment: None,
            cwd: None,
            root: None,
            exe: None,
            threads: Vec::new(),
            files: Vec::new(),
            sockets: Vec::new(),
            memory: None,
        }
    }
}

/// A mount of the container's spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecMount {
    pub destination: String,
    #[serde(rename = "type")]
    pub fstype: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Everything `revive inspect` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    pub container: Container,
    pub sizes: Sizes,
    pub statistics: Option<DumpStats>,
    pub processes: Vec<ProcessView>,
    pub mounts: Vec<SpecMount>,
    /// What could not be read, and why.
    pub problems: Vec<String>,
}

/// The files beside CRIU's images, as far as they exist.
#[derive(Debug, Default)]
pub struct Beside {
    pub config_dump: Option<Vec<u8>>,
    pub spec_dump: Option<Vec<u8>>,
    /// `stats-dump` beside the images or among them.
    pub stats_dump: Option<Vec<u8>>,
    pub root_fs_diff: Option<u64>,
}

fn string_at(value: &serde_json::Value, key: &str) -> Option<String> {
    value.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

/// The container from `config.dump` and the spec's annotations.
fn container(beside: &Beside, problems: &mut Vec<String>) -> (Container, Vec<SpecMount>) {
    let mut c = Container::default();
    let mut config_json = serde_json::Value::Null;
    if let Some(data) = &beside.config_dump {
        match archive::parse_config(data) {
            Ok(ContainerConfig {
                id,
                name,
                rootfs_image,
                rootfs_image_ref,
                rootfs_image_name,
                runtime,
            }) => {
                c.id = id;
                c.engine_name = name;
                c.image = if rootfs_image_name.is_empty() {
                    rootfs_image
                } else {
                    rootfs_image_name
                };
                c.image_id = rootfs_image_ref;
                c.runtime = runtime;
                config_json = serde_json::from_slice(data).unwrap_or_default();
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    c.created = string_at(&config_json, "createdTime").unwrap_or_default();
    c.checkpointed = string_at(&config_json, "checkpointedTime").unwrap_or_default();
    let mut mounts = Vec::new();
    if let Some(data) = &beside.spec_dump {
        match archive::parse_spec(data) {
            Ok(spec) => {
                if let Some(a) = spec.get("annotations").and_then(|a| a.as_object()) {
                    c.annotations = a
                        .iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect();
                }
                mounts = spec
                    .get("mounts")
                    .and_then(|m| m.as_array())
                    .map(|ms| {
                        ms.iter()
                            .map(|m| SpecMount {
                                destination: string_at(m, "destination").unwrap_or_default(),
                                fstype: string_at(m, "type").unwrap_or_default(),
                                source: string_at(m, "source").unwrap_or_default(),
                                options: m
                                    .get("options")
                                    .and_then(|o| o.as_array())
                                    .map(|o| {
                                        o.iter()
                                            .filter_map(|s| s.as_str().map(str::to_string))
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    let a = &c.annotations;
    let get = |k: &str| a.get(k).cloned();
    let manager = a.get("io.container.manager").map(String::as_str);
    if manager == Some("libpod") {
        c.engine = "Podman".into();
        c.name = c.engine_name.clone();
    } else if manager == Some("cri-o") || a.keys().any(|k| k.starts_with("io.kubernetes.cri-o.")) {
        c.engine = "CRI-O".into();
        c.pod = get("io.kubernetes.pod.name");
        c.namespace = get("io.kubernetes.pod.namespace");
        c.name = get("io.kubernetes.cri-o.Metadata")
            .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
            .and_then(|m| string_at(&m, "name"))
            .unwrap_or_else(|| c.engine_name.clone());
        if let Some(created) = get("io.kubernetes.cri-o.Created") {
            c.created = created;
        }
    } else {
        c.engine = "containerd".into();
        c.pod = get("io.kubernetes.cri.sandbox-name");
        c.namespace = get("io.kubernetes.cri.sandbox-namespace");
        c.name = get("io.kubernetes.cri.container-name").unwrap_or_else(|| c.engine_name.clone());
    }
    (c, mounts)
}

fn seccomp_mode(mode: u32) -> String {
    match mode {
        0 => "none",
        1 => "strict",
        2 => "filter",
        _ => "unknown",
    }
    .into()
}

/// Reads what a checkpoint shows: CRIU's images from `source`, the rest from `beside`.
pub fn inspect(source: &dyn Source, beside: &Beside) -> Result<Inspection, ImageError> {
    let mut problems = Vec::new();
    let (container, mounts) = container(beside, &mut problems);
    let checkpoint = images::read(source)?;
    let tree: Vec<proto::PstreeEntry> = images::all(
        &source
            .read("pstree.img")?
            .ok_or_else(|| ImageError::Missing("pstree.img".into()))?,
        PSTREE_MAGIC,
        "pstree.img",
    )?;
    let table = FileTable::read(source).unwrap_or_else(|e| {
        problems.push(format!("files.img: {e}"));
        FileTable::default()
    });
    let mut processes = Vec::with_capacity(checkpoint.processes.len());
    for (p, entry) in checkpoint.processes.iter().zip(&tree) {
        let mut view = ProcessView {
            pgid: entry.pgid,
            sid: entry.sid,
            zombie: p.zombie,
            threads: p
                .threads
                .iter()
                .map(|t| ThreadView {
                    tid: t.tid,
                    creds: t.creds.clone(),
                    seccomp: seccomp_mode(t.seccomp.mode),
                })
                .collect(),
            ..ProcessView::new(p.pid, p.ppid, &p.comm)
        };
        if p.zombie {
            view.wait_status = images::read_core(source, p.pid)
                .ok()
                .and_then(|(_, core)| core.tc.map(|tc| tc.exit_code));
            processes.push(view);
            continue;
        }
        let mut note = |what: &str, e: ImageError| {
            problems.push(format!("process {}: {what}: {e}", p.pid));
        };
        match images::read_core(source, p.pid)
            .and_then(|(_, core)| files::read(source, &table, p.pid, &core))
        {
            Ok(f) => {
                for file in &f.files {
                    match file.fd.as_str() {
                        "cwd" => view.cwd = Some(file.path.clone()),
                        "root" => view.root = Some(file.path.clone()),
                        _ => {}
                    }
                }
                view.files = f.files;
                view.sockets = f.sockets;
            }
            Err(e) => note("open files", e),
        }
        match Memory::read(source, p.pid) {
            Ok(Some(memory)) => {
                view.exe = table.path(memory.exe_file_id).map(str::to_string);
                match memory.strings(source, memory.args) {
                    Ok(args) => view.cmdline = args,
                    Err(e) => note("command line", e),
                }
                match memory.strings(source, memory.env) {
                    Ok(env) => view.environment = env,
                    Err(e) => note("environment", e),
                }
                view.memory = Some(MemoryView {
                    present: memory.present_bytes(),
                    mappings: memory
                        .mappings
                        .iter()
                        .map(|m| MappingView {
                            mapping: m.clone(),
                            path: m.file_id.and_then(|id| table.path(id)).map(str::to_string),
                        })
                        .collect(),
                });
            }
            Ok(None) => {}
            Err(e) => note("memory", e),
        }
        processes.push(view);
    }
    let mut sizes = Sizes {
        root_fs_diff: beside.root_fs_diff,
        ..Sizes::default()
    };
    for name in source.names()? {
        let size = source.size(&name)?.unwrap_or(0);
        sizes.checkpoint = sizes.checkpoint.saturating_add(size);
        if name.starts_with("pages-") && name.ends_with(".img") {
            sizes.memory_pages = sizes.memory_pages.saturating_add(size);
        }
    }
    let stats = match &beside.stats_dump {
        Some(data) => Some(data.clone()),
        None => source.read("stats-dump")?,
    };
    let statistics = stats.and_then(|data| match criu::parse_stats(&data) {
        Ok(stats) => stats.dump,
        Err(e) => {
            problems.push(format!("stats-dump: {e}"));
            None
        }
    });
    Ok(Inspection {
        container,
        sizes,
        statistics,
        processes,
        mounts,
        problems,
    })
}

#[cfg(test)]
mod tests;
