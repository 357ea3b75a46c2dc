//! revive-node: start a test node by hand, enter it, or build its root filesystem.
//!
//! `revive-node shell --flavour next` starts a node (containerd, revive-snapshotter, the
//! revive shim installed) and opens a shell inside; leaving the shell tears the node down.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use revive_integration::{Flavour, Node, host, init, rootfs, scenario};

#[derive(Parser)]
#[command(
    name = "revive-node",
    version,
    about = "revive's test nodes: real containerd, runc and CRIU in namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a node and open a shell inside it; the node is torn down when the shell exits.
    Shell {
        #[arg(long, value_enum, default_value_t = Flavour::Lts)]
        flavour: Flavour,
        /// Command to run instead of an interactive shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Build (or verify) the cached root filesystems.
    Rootfs {
        #[arg(long, value_enum)]
        flavour: Option<Flavour>,
    },
    /// Run a container, checkpoint it, restore it, and show that its memory survived.
    Demo {
        #[arg(long, value_enum, default_value_t = Flavour::Lts)]
        flavour: Flavour,
        /// containerd runtime to run the container with (the Go shim: io.containerd.runc.v2).
        #[arg(long, default_value = "io.containerd.revive.v2")]
        runtime: String,
    },
    /// Internal: become a node (used by the harness).
    #[command(name = "__launch", hide = true)]
    Launch { spec: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Launch { spec } => match init::launch(&spec) {
            Ok(code) => return ExitCode::from(code.clamp(0, 255) as u8),
            Err(err) => Err(err),
        },
        Cmd::Shell { flavour, command } => shell(flavour, command),
        Cmd::Rootfs { flavour } => build_roots(flavour),
        Cmd::Demo { flavour, runtime } => demo(flavour, &runtime),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("revive-node: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_roots(flavour: Option<Flavour>) -> Result<()> {
    host::require_root()?;
    let flavours = flavour
        .map(|f| vec![f])
        .unwrap_or_else(|| Flavour::ALL.to_vec());
    for flavour in flavours {
        let root = rootfs::ensure(flavour)?;
        println!(
            "{flavour}: {} ({})",
            root.path.display(),
            rootfs::versions_line(&root.completion.versions)
        );
    }
    Ok(())
}

fn shell(flavour: Flavour, command: Vec<String>) -> Result<()> {
    let node = Node::start(flavour, "shell")?;
    node.import_image(&revive_integration::Image::busybox(&node.rootfs().path)?)?;
    eprintln!(
        "revive-node: node {} is up ({}); busybox image: {}; logs: {}",
        node.name(),
        rootfs::versions_line(&node.rootfs().completion.versions),
        revive_integration::image::BUSYBOX,
        node.logs_dir().display()
    );
    let args = if command.is_empty() {
        vec!["bash".to_string(), "-l".to_string()]
    } else {
        command
    };
    let status = node
        .command(&args)
        .stdin(std::process::Stdio::inherit())
        .status()?;
    let left = node.stop()?;
    if !left.is_empty() {
        anyhow::bail!("the node left things behind: {left:?}");
    }
    if !status.success() {
        anyhow::bail!("{} exited with {status}", args.join(" "));
    }
    Ok(())
}

fn demo(flavour: Flavour, runtime: &str) -> Result<()> {
    let node = Node::start(flavour, "demo")?;
    println!(
        "==> node {} is up: {}",
        node.name(),
        rootfs::versions_line(&node.rootfs().completion.versions)
    );
    let report = scenario::checkpoint_restore_counter(&node, runtime, "demo", &mut |step| {
        println!("==> {step}")
    })?;
    println!("{report}");
    if runtime == revive_integration::checkpoint_image::REVIVE {
        println!(
            "==> and a checkpoint made by stock containerd, as a checkpoint image: `ctr run` \
             of it on revive-snapshotter restores it"
        );
        let images = revive_integration::checkpoint_image::ctr_run_restores(&node, &mut |step| {
            println!("==> {step}")
        })?;
        println!(
            "==> checkpointed at {}; restored from {} checkpoint images, each continuing",
            images.checkpointed,
            images.restored.len()
        );
    }
    let left = node.stop()?;
    if !left.is_empty() {
        anyhow::bail!("the node left things behind: {left:?}");
    }
    println!("==> node stopped; nothing left behind");
    Ok(())
}
