//! The options containerd attaches to CreateTask and Checkpoint (the shim's `options`
//! module): a protobuf `Any` whose type is one of those the shim knows (or not), whose
//! value is raw bytes or, for CRI's wrapper, TOML text in a valid message.
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use containerd_shim_protos::api::CheckpointTaskRequest;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_revive_v2::error::Error;
use containerd_shim_revive_v2::options;
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
        // Options are refused as invalid, with a message saying why.
        Err(Error::InvalidArgument(msg)) => assert!(!msg.is_empty()),
        Err(other) => panic!("options refused as something else than invalid: {other:?}"),
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
