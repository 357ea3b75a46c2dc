//! The options containerd attaches to CreateTask and Checkpoint (`shim/src/options.rs`):
//! a protobuf `Any` whose type is one of those the shim knows (or not), whose value is
//! raw bytes or, for CRI's wrapper, TOML text in a valid message.
//!
//! The shim is a binary crate, so its options module is compiled here on its own, beside a
//! stand-in for the one thing it takes from its crate (`error::{Error, Result}`).
#![no_main]

#[allow(dead_code)]
#[path = "../../shim/src/options.rs"]
mod options;

/// Stand-in for the shim's `error`.
mod error {
    #[derive(Debug)]
    pub enum Error {
        InvalidArgument(String),
    }

    pub type Result<T> = std::result::Result<T, Error>;
}

use std::path::Path;

use arbitrary::Arbitrary;
use containerd_shim_protos::api::CheckpointTaskRequest;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum TypeUrl {
    RuncOptions,
    RuncCheckpointOptions,
    LegacyCreateOptions,
    LegacyCheckpointOptions,
    Cri,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Raw(Vec<u8>),
    /// CRI's runtimeoptions.v1.Options with this TOML as its config_body (field 3).
    CriToml(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    type_url: TypeUrl,
    /// `type.googleapis.com/` before the name, as containerd writes it.
    prefixed: bool,
    value: Value,
    path: String,
}

fuzz_target!(|input: Input| {
    let name = match &input.type_url {
        TypeUrl::RuncOptions => "containerd.runc.v1.Options",
        TypeUrl::RuncCheckpointOptions => "containerd.runc.v1.CheckpointOptions",
        TypeUrl::LegacyCreateOptions => "containerd.linux.runc.CreateOptions",
        TypeUrl::LegacyCheckpointOptions => "containerd.linux.runc.CheckpointOptions",
        TypeUrl::Cri => "runtimeoptions.v1.Options",
        TypeUrl::Other(other) => other,
    };
    let type_url = if input.prefixed {
        format!("type.googleapis.com/{name}")
    } else {
        name.to_string()
    };
    let value = match &input.value {
        Value::Raw(raw) => raw.clone(),
        Value::CriToml(toml) => {
            let mut buf = Vec::new();
            prost::encoding::string::encode(3, toml, &mut buf);
            buf
        }
    };
    let any = Any {
        type_url,
        value,
        ..Default::default()
    };

    match options::parse_options(Some(&any)) {
        Ok(create) => {
            let _ = create.restore.args();
        }
        Err(error::Error::InvalidArgument(msg)) => assert!(!msg.is_empty()),
    }
    let _ = options::as_runc_options(&any);
    let request = CheckpointTaskRequest {
        path: input.path.clone(),
        options: Some(any).into(),
        ..Default::default()
    };
    if let Ok(config) = options::checkpoint_config(&request) {
        let _ = config.args("id", Path::new("/work"));
    }
});
