//! Generates the decoders of CRIU's image files from CRIU's own `.proto` files in
//! `proto/vendor/criu` (see `SOURCE.md` there). `protox` compiles them, so no `protoc` is needed.

use std::path::Path;

/// The images the restore check reads (and what they import), CRIU's statistics, the
/// processes' roots and open files (`fs-*.img`, `files.img`, `fdinfo-*.img`), and their
/// memory (`mm-*.img`, `pagemap-*.img`), which `revive inspect` and `revive memgrep` read.
const PROTOS: &[&str] = &[
    "core.proto",
    "pstree.proto",
    "inventory.proto",
    "seccomp.proto",
    "mnt.proto",
    "userns.proto",
    "cgroup.proto",
    "stats.proto",
    "fs.proto",
    "fdinfo.proto",
    "mm.proto",
    "pagemap.proto",
];

/// Messages that are also written out as JSON (`stats-dump.json` beside a checkpoint).
const SERIALIZED: &[&str] = &[".stats_entry", ".dump_stats_entry", ".restore_stats_entry"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let include = Path::new("../proto/vendor/criu");
    println!("cargo:rerun-if-changed={}", include.display());
    let fds = protox::compile(PROTOS, [include])?;
    let mut config = prost_build::Config::new();
    for message in SERIALIZED {
        config.type_attribute(message, "#[derive(serde::Serialize)]");
    }
    config.compile_fds(fds)?;
    Ok(())
}
