//! Generates the protobuf and gRPC code from the `.proto` files in `vendor/` (upstream's own,
//! unchanged; see the `SOURCE.md` files there).
//!
//! The descriptors are produced by `protox` (a pure-Rust protobuf compiler),
//! so building this crate needs no `protoc` binary. What is compiled follows
//! the crate's features: the option messages always, containerd's services
//! with `services`, CRI's `runtime.v1` with `cri`.

/// Option messages that travel in `google.protobuf.Any`: prost messages only, no gRPC.
const OPTIONS: &[&str] = &[
    "types/runc/options/oci.proto",
    "containerd/runtime/linux/runctypes/runc.proto",
    "containerd/pkg/runtimeoptions/v1/api.proto",
];

/// containerd's services (feature `services`): messages, clients and servers.
const SERVICES: &[&str] = &[
    "types/mount.proto",
    "types/descriptor.proto",
    "services/snapshots/v1/snapshots.proto",
    "services/tasks/v1/tasks.proto",
    "services/images/v1/images.proto",
    "services/content/v1/content.proto",
    "services/transfer/v1/transfer.proto",
    "services/leases/v1/leases.proto",
    "types/transfer/registry.proto",
    "types/transfer/imagestore.proto",
];

/// CRI (feature `cri`): messages and a client.
const CRI: &[&str] = &["cri/runtime/v1/api.proto"];

/// The include directories, in which the paths above are looked up. containerd's API module
/// (`vendor/containerd/api`) is a root of its own because its files import one another by
/// paths relative to it (`types/mount.proto`).
const INCLUDES: &[&str] = &["vendor/containerd/api", "vendor"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for include in INCLUDES {
        println!("cargo:rerun-if-changed={include}");
    }

    compile(OPTIONS, false, false)?;
    if std::env::var_os("CARGO_FEATURE_SERVICES").is_some() {
        compile(SERVICES, true, true)?;
    }
    if std::env::var_os("CARGO_FEATURE_CRI").is_some() {
        compile(CRI, false, true)?;
    }
    Ok(())
}

/// Compiles `protos` (paths below [`INCLUDES`]) into `OUT_DIR`, one Rust file per package.
fn compile(protos: &[&str], server: bool, client: bool) -> Result<(), Box<dyn std::error::Error>> {
    // protox resolves google/protobuf/*.proto from its built-in copies; the
    // generated code refers to them through prost-types.
    let fds = protox::compile(protos, INCLUDES)?;

    // Type names let messages be packed into `google.protobuf.Any` (e.g. in
    // containerd events) via `prost::Name`.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();

    tonic_prost_build::configure()
        .build_server(server)
        .build_client(client)
        .emit_rerun_if_changed(false)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
