//! Generates the decoders of CRIU's image files from CRIU's own `.proto` files in
//! `proto/proto/criu` (see `SOURCE.md` there). `protox` compiles them, so no `protoc` is needed.

use std::path::Path;

/// The images the restore check reads, and what they import.
const PROTOS: &[&str] = &[
    "core.proto",
    "pstree.proto",
    "inventory.proto",
    "seccomp.proto",
    "mnt.proto",
    "userns.proto",
    "cgroup.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let include = Path::new("../proto/proto/criu");
    println!("cargo:rerun-if-changed={}", include.display());
    let fds = protox::compile(PROTOS, [include])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
