//! The `revive` command line: its commands and options (clap), and what each runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::format::Format;
use crate::inspect::human;
use crate::{build, convert, forensics, inspect, migrate, push, write};

#[derive(Parser)]
#[command(
    name = "revive",
    version,
    about = "Build, convert and inspect checkpoint images (OCI image archives; no daemon needed)",
    long_about = "Build, convert and inspect checkpoint images.\n\n\
        A checkpoint image is an OCI image whose single layer holds a checkpoint archive \
        (CRIU's images in checkpoint/, config.dump, spec.dump, rootfs-diff.tar, ...). \
        Created as a container on revive-snapshotter with the revive runtime (ctr run, or a \
        Kubernetes pod on RuntimeClass revive), it is restored instead of started.\n\n\
        revive works on OCI image archives, the files `ctr images export` writes and \
        `ctr images import` reads. Its output holds every memory page of the checkpointed \
        container: it is written 0600, and should be kept and moved as a secret."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checkpoint images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Show what a checkpoint holds: its container, processes, files, sockets and mounts
    #[command(long_about = "Show what a checkpoint holds, without restoring it.\n\n\
        CHECKPOINT is a checkpoint archive (kubelet's, crictl's, CRI-O's, Podman's or \
        checkpointctl's; plain, gzip or zstd), an OCI image archive holding a checkpoint \
        image, or containerd's own checkpoint exported with `ctr images export`. Shown: the \
        container (name, id, image, runtime, engine, pod, times, annotations), sizes, CRIU's \
        dump statistics, every process (tree, command line, environment, working and root \
        directory, executable, credentials, capabilities and seccomp mode of every thread, \
        open files with their positions, sockets with addresses, ports and states, memory \
        mappings) and the container's mounts. Compressed input is decompressed into an \
        unnamed temporary file in $TMPDIR, gone when revive exits.\n\n\
        Example:\n  revive inspect /var/lib/kubelet/checkpoints/checkpoint-web.tar")]
    Inspect {
        /// The checkpoint archive or image archive
        #[arg(value_name = "CHECKPOINT")]
        checkpoint: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Write an ELF core file of a checkpoint's process, for gdb
    #[command(
        long_about = "Write an ELF core file of one process of a checkpoint, as the \
        kernel would have written it at the checkpoint, without restoring it.\n\n\
        The core holds every thread's registers, the command line, the auxiliary vector, \
        which files the process mapped, and every memory page the checkpoint holds. Open it \
        beside the program's binary: `gdb PROGRAM CORE` shows the threads' backtraces and \
        reads the process's variables (pages CRIU did not dump, such as a file's untouched \
        pages, gdb reads from the binary). x86_64 processes only. OUTPUT is a new file, \
        0600: it holds the process's memory.\n\n\
        Example:\n  revive core checkpoint.tar --pid 1 -o app.core && gdb ./app app.core"
    )]
    Core {
        /// The checkpoint archive or image archive
        #[arg(value_name = "CHECKPOINT")]
        checkpoint: PathBuf,
        /// The process (its pid in the checkpoint; default: the first that is not a zombie)
        #[arg(short, long)]
        pid: Option<u32>,
        /// Where to write the core (a new file)
        #[arg(short, long, value_name = "CORE")]
        output: PathBuf,
    },
    /// Compare two checkpoints of the same container
    #[command(long_about = "Compare two checkpoints of the same container, without \
        restoring them.\n\n\
        Shown: processes started or gone, files opened or closed (by descriptor and path), \
        sockets opened or closed, mounts added or removed, and for every process in both, \
        how many of its memory pages changed, with their address ranges, and how many were \
        dumped in one checkpoint only. Exits 0 when they do not differ, 1 when they do.\n\n\
        Example:\n  revive diff checkpoint-1.tar checkpoint-2.tar")]
    Diff {
        /// The earlier checkpoint
        #[arg(value_name = "BEFORE")]
        before: PathBuf,
        /// The later checkpoint
        #[arg(value_name = "AFTER")]
        after: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Search a checkpoint's process memory for a string, bytes or a regular expression
    #[command(
        long_about = "Search a checkpoint's process memory, without restoring it.\n\n\
        Every page of every process CRIU dumped (or of --pid's) is searched for PATTERN: a \
        string, bytes in hex (--hex) or a regular expression (--regex, on bytes). Each match \
        is printed with its process, its address, the mapping it lies in (file, [heap], \
        [stack] or anonymous, with its range and permissions) and --context bytes around \
        it, non-printable ones as \\xNN. --dump writes the pages of the mapping holding an \
        address to a file instead. Exits 1 when nothing matches, as grep does.\n\n\
        Examples:\n  revive memgrep checkpoint.tar 'password='\n  \
        revive memgrep checkpoint.tar --regex 'AKIA[0-9A-Z]{16}' --json\n  \
        revive memgrep checkpoint.tar --pid 1 --dump 0x7ffd5a1c0000 -o stack.bin"
    )]
    Memgrep {
        /// The checkpoint archive or image archive
        #[arg(value_name = "CHECKPOINT")]
        checkpoint: PathBuf,
        /// What to look for
        #[arg(value_name = "PATTERN", required_unless_present = "dump")]
        pattern: Option<String>,
        /// PATTERN is a regular expression
        #[arg(long, conflicts_with = "hex")]
        regex: bool,
        /// PATTERN is bytes in hex, e.g. 7f454c46
        #[arg(long)]
        hex: bool,
        /// Only this process (its pid in the checkpoint)
        #[arg(short, long)]
        pid: Option<u32>,
        /// Bytes of context shown on each side of a match
        #[arg(short = 'C', long, default_value_t = 32)]
        context: usize,
        /// Stop after this many matches
        #[arg(short = 'm', long, default_value_t = 1000)]
        max_count: usize,
        /// Print one JSON object per match
        #[arg(long)]
        json: bool,
        /// Write the pages of the mapping holding this address (hex) to --output
        #[arg(long, value_name = "ADDRESS", requires_all = ["pid", "output"], conflicts_with = "pattern")]
        dump: Option<String>,
        /// Where --dump writes (a new file, 0600)
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Move a running pod to another node through a registry
    #[command(
        long_about = "Move a running pod to another node through a registry.\n\n\
        Every container of POD is checkpointed through the API server (the kubelet's \
        checkpoint API behind nodes/proxy); an agent pod on the pod's node (AGENT_IMAGE, an \
        image with the revive binary, in namespace revive-system) makes each archive a \
        checkpoint image and pushes it to REPOSITORY through that node's containerd; a copy \
        of the pod on --to, on RuntimeClass revive, restores from them; once the copy is \
        ready, POD is deleted. A failure on the way leaves POD running and removes what was \
        made. What the pod does after its checkpoint is not moved. The API server is reached \
        with kubectl and your kubeconfig.\n\n\
        Example:\n  \
        revive migrate web --to node-b --registry registry.example/checkpoints \\\n    \
        --agent-image registry.example/revive/agent:0.1"
    )]
    Migrate {
        /// The pod to move
        pod: String,
        /// Its namespace
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// The node to move it to (with --save, default: the node it is on)
        #[arg(long, value_name = "NODE", required_unless_present = "save")]
        to: Option<String>,
        /// Park the pod instead: write the copy's manifest to FILE and delete the pod, which
        /// `kubectl create -f FILE` brings back restored (say, after the node's reboot)
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
        /// Where the checkpoint images go (images REPOSITORY/<pod>-<container>:<time>)
        #[arg(long, value_name = "REPOSITORY")]
        registry: String,
        /// An image with the revive binary, for the agent pod on the pod's node
        #[arg(long, value_name = "IMAGE")]
        agent_image: String,
        /// The new pod's name (default: the pod's, with -m1, -m2, ...)
        #[arg(long)]
        name: Option<String>,
        /// The kubectl to run
        #[arg(long, default_value = "kubectl")]
        kubectl: String,
        /// The longest any step may take, in seconds
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// What the agent pod of `revive migrate` runs on a node
    #[command(subcommand)]
    Agent(AgentCommand),
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Build a checkpoint image (CRI-O's format) of each archive and push it through containerd
    Push {
        /// ARCHIVE=REF pairs: a checkpoint archive and where to push its image
        #[arg(value_name = "ARCHIVE=REF", required = true)]
        pairs: Vec<String>,
        /// Remove each archive once its image is pushed (it holds every memory page)
        #[arg(long)]
        remove_archives: bool,
        /// containerd's socket
        #[arg(long, default_value = push::DEFAULT_SOCKET)]
        containerd_socket: PathBuf,
        /// The registry hosts configuration containerd reads for the push
        #[arg(long, default_value = push::DEFAULT_HOSTS_DIR)]
        hosts_dir: PathBuf,
    },
    /// Remove checkpoint archives of a move that was undone
    Discard {
        /// Checkpoint archives in the kubelet's checkpoint directory
        #[arg(value_name = "ARCHIVE", required = true)]
        archives: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build a checkpoint image from a checkpoint archive
    #[command(long_about = "Build a checkpoint image from a checkpoint archive.\n\n\
        ARCHIVE is a checkpoint archive as kubelet (through CRI), CRI-O, Podman or \
        checkpointctl write it: a tar, plain, gzip or zstd (Podman's --export default), with checkpoint/, \
        config.dump and spec.dump at its root. It is validated first with the rules \
        revive-snapshotter applies before restoring (a hostile or incomplete archive is \
        refused with the reason); then OUT gets an OCI image archive named REF whose single \
        gzip layer holds exactly the archive's entries (as `buildah add CONTAINER ARCHIVE /` \
        makes it), with an image config without a command and the annotations of --format \
        taken from config.dump.\n\n\
        Example:\n  \
        revive image build /var/lib/kubelet/checkpoints/checkpoint-web_default-app-*.tar \\\n    \
        registry.example/checkpoints/app:1 -o app.tar\n  \
        ctr images import --snapshotter revive app.tar")]
    Build {
        /// The checkpoint archive (tar, tar.gz or tar.zst)
        archive: PathBuf,
        /// The image's name, e.g. registry.example/checkpoints/app:1
        #[arg(value_name = "REF")]
        reference: String,
        /// Where to write the OCI image archive (replaced if it exists)
        #[arg(short, long, value_name = "OUT.tar")]
        output: PathBuf,
        /// Which annotations name the image a checkpoint: criu (org.criu.checkpoint.*, on an
        /// index; checkpointctl), cri-o (io.kubernetes.cri-o.annotations.checkpoint.*, on the
        /// manifest) or podman (io.podman.annotations.checkpoint.*, on the manifest)
        #[arg(long, value_enum, default_value = "criu")]
        format: Format,
    },
    /// Convert containerd's own checkpoint (ctr container checkpoint) into a checkpoint image
    #[command(
        long_about = "Convert containerd's own checkpoint into a checkpoint image.\n\n\
        NATIVE is the export of a checkpoint made by `ctr container checkpoint --task --rw \
        ID REF` (`ctr images export --local --skip-manifest-json NATIVE.tar REF`; without \
        --skip-manifest-json, containerd 2.x's ctr fails on a checkpoint, and without --local \
        it can leave the file truncated). No client can create a container from such an image; the checkpoint image written to OUT can be (ctr run on \
        revive-snapshotter with the revive runtime, or a pod on RuntimeClass revive). It \
        holds CRIU's images in checkpoint/, the container's spec as spec.dump, the rw layer \
        as rootfs-diff.tar and a config.dump naming the base image (the one the checkpoint \
        names, or --base-image), which must be present where it is restored.\n\n\
        Example:\n  \
        ctr container checkpoint --task --rw app native/app:1\n  \
        ctr images export --local --skip-manifest-json native.tar native/app:1\n  \
        revive image convert native.tar registry.example/checkpoints/app:1 -o app.tar\n  \
        ctr images import --snapshotter revive app.tar"
    )]
    Convert {
        /// `ctr images export` of a containerd checkpoint
        #[arg(value_name = "NATIVE.tar")]
        native: PathBuf,
        /// The new image's name
        #[arg(value_name = "REF")]
        reference: String,
        /// Where to write the OCI image archive (replaced if it exists)
        #[arg(short, long, value_name = "OUT.tar")]
        output: PathBuf,
        /// Which annotations name the image a checkpoint (see `revive image build --help`)
        #[arg(long, value_enum, default_value = "criu")]
        format: Format,
        /// The base image to restore on, instead of the one the checkpoint names
        #[arg(long, value_name = "IMAGE")]
        base_image: Option<String>,
        /// The container's name in config.dump, instead of the one its spec gives
        #[arg(long)]
        name: Option<String>,
    },
    /// Tell whether an image archive is a checkpoint image, and what it holds
    #[command(
        long_about = "Tell whether an image archive is a checkpoint image, and what it \
        holds.\n\n\
        For each image in IMAGE (an OCI image archive, as `ctr images export` writes it): \
        whether it is a checkpoint image, by its annotations (which format, on the index or \
        the manifest) and by its layer's content; the container's name, the base image, the \
        runtime, CRIU's images (count and size), the rootfs diff; or, for containerd's own \
        checkpoint, what it holds and how to convert it. Every blob is checked against its \
        digest."
    )]
    Inspect {
        /// The OCI image archive
        #[arg(value_name = "IMAGE.tar")]
        image: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Push an image archive to a registry through containerd
    #[command(long_about = "Push an image archive to a registry through containerd.

        IMAGE is an OCI image archive holding one image (as revive image build writes it).         Its blobs are written into containerd's content store under a lease, and         containerd's transfer service pushes the image as REF with containerd's own registry         client: the registry's trust, mirrors and credentials come from the hosts         configuration (--hosts-dir, one hosts.toml per registry, as CRI's config_path) and         the system's certificates. Nothing of the image is left in containerd afterwards.         Needs containerd 1.7 or later (its transfer service) and root.

        Example:
          revive image build checkpoint.tar registry.example/checkpoints/app:1 -o app.tar
          revive image push app.tar registry.example/checkpoints/app:1")]
    Push {
        /// The OCI image archive
        #[arg(value_name = "IMAGE.tar")]
        image: PathBuf,
        /// Where to push it, e.g. registry.example/checkpoints/app:1
        #[arg(value_name = "REF")]
        reference: String,
        /// containerd's socket
        #[arg(long, default_value = push::DEFAULT_SOCKET)]
        containerd_socket: PathBuf,
        /// The containerd namespace the image passes through
        #[arg(long, default_value = push::DEFAULT_NAMESPACE)]
        namespace: String,
        /// The registry hosts configuration containerd reads for the push
        #[arg(long, default_value = push::DEFAULT_HOSTS_DIR)]
        hosts_dir: PathBuf,
    },
}

/// Says so when a checkpoint image just written is of a privileged container: only a
/// container granted as much may restore it.
fn note_if_privileged(summary: &build::Summary) {
    if let Some(p) = summary.privilege.as_ref().filter(|p| p.privileged) {
        eprintln!(
            "note: this is a checkpoint of a privileged container; revive restores it only \
             into a container that grants at least: {}",
            p.needs.join("; ")
        );
    }
}

/// `revive memgrep`: true if anything matched.
fn run_memgrep(
    checkpoint: &std::path::Path,
    pattern: &str,
    (regex, hex): (bool, bool),
    grep: (Option<u32>, usize, usize),
    json: bool,
) -> Result<bool> {
    use revive_checkpoint::criu::search::Pattern;
    let compiled = if regex {
        Pattern::regex(pattern)?
    } else if hex {
        Pattern::hex(pattern)?
    } else {
        Pattern::literal(pattern.as_bytes())?
    };
    let (pid, context, max) = grep;
    let stdout = std::io::stdout();
    let (found, searched) = forensics::memgrep(
        checkpoint,
        &forensics::Grep {
            pattern: &compiled,
            pid,
            context,
            max,
        },
        json,
        &mut stdout.lock(),
    )?;
    eprintln!("{found} match(es) in {} of memory", human(searched));
    Ok(found > 0)
}

fn run(cli: Cli) -> Result<()> {
    let command = match cli.command {
        Command::Image(command) => command,
        Command::Inspect { checkpoint, json } => {
            let report = forensics::inspect(&checkpoint)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", forensics::render(&report));
            }
            return Ok(());
        }
        Command::Core {
            checkpoint,
            pid,
            output,
        } => {
            let (process, written) = forensics::core(&checkpoint, pid, &output)?;
            eprintln!(
                "wrote {} ({}): process {} ({}), {} thread(s), {} memory segment(s)",
                output.display(),
                human(written.bytes),
                process.pid,
                process.comm,
                written.threads,
                written.segments
            );
            return Ok(());
        }
        Command::Diff {
            before,
            after,
            json,
        } => {
            let d = forensics::diff(&before, &after)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", forensics::render_diff(&d));
            }
            return if d.is_empty() {
                Ok(())
            } else {
                Err(ExitOne.into())
            };
        }
        Command::Memgrep {
            checkpoint,
            pattern,
            regex,
            hex,
            pid,
            context,
            max_count,
            json,
            dump,
            output,
        } => {
            if let (Some(address), Some(pid), Some(output)) = (dump, pid, output) {
                let digits = address.trim_start_matches("0x");
                let address = u64::from_str_radix(digits, 16)
                    .with_context(|| format!("--dump {address}: not a hex address"))?;
                let m = forensics::dump_mapping(&checkpoint, pid, address, &output)?;
                eprintln!(
                    "wrote {:x}-{:x} {} ({}) of process {pid} to {}",
                    m.start,
                    m.end,
                    m.perms,
                    human(m.end - m.start),
                    output.display()
                );
                return Ok(());
            }
            let pattern = pattern.context("give a PATTERN to search for")?;
            if !run_memgrep(
                &checkpoint,
                &pattern,
                (regex, hex),
                (pid, context, max_count),
                json,
            )? {
                return Err(ExitOne.into());
            }
            return Ok(());
        }
        Command::Migrate {
            pod,
            namespace,
            to,
            registry,
            agent_image,
            name,
            kubectl,
            timeout,
            save,
        } => {
            let moved = migrate::migrate(&migrate::Migration {
                namespace,
                pod: pod.clone(),
                target: to,
                save: save.clone(),
                repository: registry,
                agent_image,
                new_name: name,
                kubectl,
                timeout: std::time::Duration::from_secs(timeout),
            })?;
            let (checkpointed, pushed) =
                (moved.checkpointed.as_secs_f64(), moved.pushed.as_secs_f64());
            let images = moved.images.join(", ");
            match save {
                Some(save) => println!(
                    "saved {pod} from {}: checkpointed in {checkpointed:.1} s, images pushed in \
                     {pushed:.1} s ({images}); `kubectl create -f {}` restores it as {}",
                    moved.source_node,
                    save.display(),
                    moved.new_pod
                ),
                None => println!(
                    "moved {pod} from {} to {} as {}: checkpointed in {checkpointed:.1} s, \
                     images pushed in {pushed:.1} s ({images}), restored in {:.1} s",
                    moved.source_node,
                    moved.target_node,
                    moved.new_pod,
                    moved.restored.as_secs_f64()
                ),
            }
            return Ok(());
        }
        Command::Agent(AgentCommand::Push {
            pairs,
            remove_archives,
            containerd_socket,
            hosts_dir,
        }) => {
            let containerd = push::Containerd {
                socket: containerd_socket,
                namespace: push::DEFAULT_NAMESPACE.to_string(),
                hosts_dir,
            };
            return agent_push(&pairs, remove_archives, &containerd);
        }
        Command::Agent(AgentCommand::Discard { archives }) => {
            for archive in &archives {
                migrate::kubelet_archive(archive)?;
            }
            remove_archives(&archives);
            return Ok(());
        }
    };
    match command {
        ImageCommand::Build {
            archive,
            reference,
            output,
            format,
        } => {
            let built = build::build(&archive, &reference, &output, format)?;
            println!(
                "built {reference} ({}, format {}) from {}: {}",
                built.written.digest,
                format.name(),
                archive.display(),
                describe(&built.summary)
            );
            print_written(&built.written);
            note_if_privileged(&built.summary);
        }
        ImageCommand::Convert {
            native,
            reference,
            output,
            format,
            base_image,
            name,
        } => {
            let options = convert::ConvertOptions { base_image, name };
            let converted = convert::convert(&native, &reference, &output, format, &options)?;
            for warning in &converted.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "converted {} into {reference} ({}, format {}): {}",
                converted.source,
                converted.written.digest,
                format.name(),
                describe(&converted.summary)
            );
            print_written(&converted.written);
            note_if_privileged(&converted.summary);
        }
        ImageCommand::Push {
            image,
            reference,
            containerd_socket,
            namespace,
            hosts_dir,
        } => {
            let containerd = push::Containerd {
                socket: containerd_socket,
                namespace,
                hosts_dir,
            };
            let digest = push::push(&image, &reference, &containerd)?;
            println!("pushed {reference} ({digest}) from {}", image.display());
        }
        ImageCommand::Inspect { image, json } => {
            let report = inspect::inspect(&image)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", inspect::render(&report));
            }
        }
    }
    Ok(())
}

/// Builds a checkpoint image of each `ARCHIVE=REF` pair (CRI-O's format) and pushes it
/// through containerd. With `remove`, every archive is removed at the end, pushed or not:
/// each holds every memory page of its container, and a failed move checkpoints again.
fn agent_push(pairs: &[String], remove: bool, containerd: &push::Containerd) -> Result<()> {
    let pairs = pairs
        .iter()
        .map(|pair| {
            let (archive, reference) = pair
                .split_once('=')
                .with_context(|| format!("{pair:?} is not ARCHIVE=REF"))?;
            let archive = PathBuf::from(archive);
            migrate::kubelet_archive(&archive)?;
            Ok((archive, reference))
        })
        .collect::<Result<Vec<_>>>()?;
    let archives: Vec<PathBuf> = pairs.iter().map(|(a, _)| a.clone()).collect();
    if remove {
        // Deleting the agent pod must not leave the archives behind.
        crate::interrupt::remove_on_signal(&archives)?;
    }
    let pushed = (|| {
        let work = tempfile::Builder::new()
            .prefix("revive-agent-")
            .tempdir_in(std::env::current_dir()?)?;
        for (archive, reference) in &pairs {
            let out = work.path().join("image.tar");
            build::build(archive, reference, &out, Format::CriO)?;
            let digest = push::push(&out, reference, containerd)?;
            std::fs::remove_file(&out)?;
            println!("pushed {reference} ({digest}) from {}", archive.display());
        }
        Ok(())
    })();
    if remove {
        remove_archives(&archives);
    }
    pushed
}

/// Removes `archives`, saying which could not be.
fn remove_archives(archives: &[PathBuf]) {
    for archive in archives {
        if let Err(e) = std::fs::remove_file(archive)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("revive: could not remove {}: {e}", archive.display());
        }
    }
}

/// The `revive` command: parses the command line, runs it, reports an error on stderr.
/// `revive memgrep` found nothing, or `revive diff` found a difference: exit 1, as grep and
/// diff do.
#[derive(Debug, thiserror::Error)]
#[error("exit 1")]
struct ExitOne;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // memgrep exits as grep does (0 on a match, 1 on none, 2 on an error), diff as diff
    // does (0 the same, 1 different, 2 an error).
    let failed = if matches!(cli.command, Command::Memgrep { .. } | Command::Diff { .. }) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<ExitOne>() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("revive: {e:#}");
            failed
        }
    }
}

/// "container web, base image busybox:1, 12 CRIU images (64.0 MiB), rootfs diff 4.0 KiB".
fn describe(s: &build::Summary) -> String {
    format!(
        "container {}, base image {}, {} CRIU images ({}), rootfs diff {}",
        if s.container.is_empty() {
            "(unnamed)"
        } else {
            &s.container
        },
        s.base_image.as_deref().unwrap_or("(not recorded)"),
        s.criu_images,
        human(s.criu_bytes),
        s.rootfs_diff_bytes.map_or("none".into(), human),
    )
}

/// Where an image was written, and how to import it where `ctr run` restores it.
fn print_written(written: &write::Written) {
    println!(
        "wrote {} (layer {}); import it with `ctr images import --snapshotter revive {}`",
        written.path.display(),
        human(written.layer_size),
        written.path.display()
    );
}
