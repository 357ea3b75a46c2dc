//! Generates the gRPC code from the `.proto` files in `proto/`.
//!
//! The descriptors are produced by `protox` (a pure-Rust protobuf compiler),
//! so building this crate needs no `protoc` binary.

use std::path::Path;

/// Files to compile, relative to the `proto/` include directory.
const PROTOS: &[&str] = &[
    "containerd/types/mount.proto",
    "containerd/types/descriptor.proto",
    "containerd/services/snapshots/v1/snapshots.proto",
    "containerd/services/tasks/v1/tasks.proto",
    "containerd/services/images/v1/images.proto",
    "containerd/services/content/v1/content.proto",
    "containerd/runc/options/oci.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let include = Path::new("proto");
    println!("cargo:rerun-if-changed={}", include.display());

    // protox resolves google/protobuf/*.proto from its built-in copies; the
    // generated code refers to them through prost-types.
    let fds = protox::compile(PROTOS, [include])?;

    // Type names let messages be packed into `google.protobuf.Any` (e.g. in
    // containerd events) via `prost::Name`.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .emit_rerun_if_changed(false)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
