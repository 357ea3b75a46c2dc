//! The `revive` command line: its commands and options (clap), and what each runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::format::Format;
use crate::inspect::human;
use crate::{build, convert, inspect, push, write};

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

fn run(cli: Cli) -> Result<()> {
    let Command::Image(command) = cli.command;
    match command {
        ImageCommand::Build {
            archive,
            reference,
            output,
            format,
        } => {
            let built = build::build(&archive, &reference, &output, format)?;
            let s = &built.summary;
            println!(
                "built {reference} ({}, format {}) from {}: container {}, base image {}, \
                 {} CRIU images ({}), rootfs diff {}",
                built.written.digest,
                format.name(),
                archive.display(),
                if s.container.is_empty() {
                    "(unnamed)"
                } else {
                    &s.container
                },
                s.base_image.as_deref().unwrap_or("(not recorded)"),
                s.criu_images,
                human(s.criu_bytes),
                s.rootfs_diff_bytes.map_or("none".into(), human),
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
            let s = &converted.summary;
            println!(
                "converted {} into {reference} ({}, format {}): container {}, base image {}, \
                 {} CRIU images ({}), rootfs diff {}",
                converted.source,
                converted.written.digest,
                format.name(),
                s.container,
                s.base_image.as_deref().unwrap_or("(not recorded)"),
                s.criu_images,
                human(s.criu_bytes),
                s.rootfs_diff_bytes.map_or("none".into(), human),
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

/// The `revive` command: parses the command line, runs it, reports an error on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("revive: {e:#}");
            ExitCode::FAILURE
        }
    }
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
