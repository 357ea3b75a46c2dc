//! The option messages containerd attaches to CreateTask and Checkpoint, in every form a
//! containerd version or client sends them:
//!
//! - `containerd.runc.v1.Options` / `CheckpointOptions`: ctr and the client library for
//!   runtimes named `io.containerd.runc*`, every runtime on containerd 2.x, and CRI for
//!   runtime type io.containerd.runc.v2;
//! - `containerd.linux.runc.CreateOptions` / `CheckpointOptions`: containerd 1.7's client for
//!   any other runtime name (ours), e.g. `WithShimCgroup`, `WithRestoreImagePath`,
//!   `WithCheckpointImagePath`;
//! - CRI's `runtimeoptions.v1.Options`: the handler's `options` table as TOML text, for
//!   runtime types CRI does not know.

use std::path::{Path, PathBuf};

use containerd_shim_protos::api::CheckpointTaskRequest;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim::oci::{CheckpointOptions, Options};

use crate::error::{Error, Result};

// containerd 1.7's legacy options and CRI's wrapper, generated from containerd's own
// `.proto` files (`proto/vendor/containerd/SOURCE.md`).
use revive_proto::runc::{RUNC_CHECKPOINT_OPTIONS, RUNC_OPTIONS};
use revive_proto::runctypes::{
    CHECKPOINT_OPTIONS as LEGACY_CHECKPOINT_OPTIONS, CREATE_OPTIONS as LEGACY_CREATE_OPTIONS,
    CheckpointOptions as LegacyCheckpointOptions, CreateOptions as LegacyCreateOptions,
};
use revive_proto::runtimeoptions::v1::{OPTIONS as CRI_OPTIONS, Options as CriRuntimeOptions};

/// The handler's `options` table in containerd's CRI config (the names runc.v1.Options
/// fields have there).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TomlOptions {
    binary_name: String,
    root: String,
    systemd_cgroup: bool,
    no_pivot_root: bool,
    no_new_keyring: bool,
    io_uid: u32,
    io_gid: u32,
    criu_image_path: String,
    criu_work_path: String,
    shim_cgroup: String,
}

/// CRIU switches that checkpoint and restore share (runc's flags of the same names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CriuFlags {
    pub open_tcp: bool,
    pub external_unix_sockets: bool,
    pub terminal: bool,
    pub file_locks: bool,
    pub empty_namespaces: Vec<String>,
    pub cgroups_mode: String,
}

impl CriuFlags {
    /// The runtime's arguments for these switches.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (on, flag) in [
            (self.open_tcp, "--tcp-established"),
            (self.external_unix_sockets, "--ext-unix-sk"),
            (self.terminal, "--shell-job"),
            (self.file_locks, "--file-locks"),
        ] {
            if on {
                args.push(flag.to_string());
            }
        }
        for ns in &self.empty_namespaces {
            args.push("--empty-ns".into());
            args.push(ns.clone());
        }
        // The Go shim ignores cgroups_mode; revive passes it on.
        if !self.cgroups_mode.is_empty() {
            args.push("--manage-cgroups-mode".into());
            args.push(self.cgroups_mode.clone());
        }
        args
    }
}

/// Task creation options: the runtime's, and the CRIU switches for a restore (only
/// containerd 1.7's legacy CreateOptions carries those).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOptions {
    pub runtime: Options,
    pub restore: CriuFlags,
}

fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or_default()
}

fn is_empty(any: Option<&Any>) -> bool {
    any.is_none_or(|any| any.type_url.is_empty() && any.value.is_empty())
}

fn invalid(type_name: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("invalid {type_name}: {e}"))
}

/// CreateTask's (and `start`'s) runtime options, whichever form containerd sent.
pub fn parse_options(any: Option<&Any>) -> Result<CreateOptions> {
    let Some(any) = any.filter(|a| !is_empty(Some(a))) else {
        return Ok(CreateOptions::default());
    };
    let runtime = match type_name(any) {
        RUNC_OPTIONS => {
            Options::parse_from_bytes(&any.value).map_err(|e| invalid(RUNC_OPTIONS, e))?
        }
        LEGACY_CREATE_OPTIONS => {
            let legacy = <LegacyCreateOptions as prost::Message>::decode(any.value.as_slice())
                .map_err(|e| invalid(LEGACY_CREATE_OPTIONS, e))?;
            return Ok(CreateOptions {
                runtime: Options {
                    no_pivot_root: legacy.no_pivot_root,
                    no_new_keyring: legacy.no_new_keyring,
                    shim_cgroup: legacy.shim_cgroup,
                    io_uid: legacy.io_uid,
                    io_gid: legacy.io_gid,
                    criu_work_path: legacy.criu_work_path,
                    criu_image_path: legacy.criu_image_path,
                    ..Default::default()
                },
                restore: CriuFlags {
                    open_tcp: legacy.open_tcp,
                    external_unix_sockets: legacy.external_unix_sockets,
                    terminal: legacy.terminal,
                    file_locks: legacy.file_locks,
                    empty_namespaces: legacy.empty_namespaces,
                    cgroups_mode: legacy.cgroups_mode,
                },
            });
        }
        CRI_OPTIONS => {
            let wrapper = <CriRuntimeOptions as prost::Message>::decode(any.value.as_slice())
                .map_err(|e| invalid(CRI_OPTIONS, e))?;
            // `config_body` is `bytes` in CRI's proto; the TOML text in it must be UTF-8.
            let body =
                std::str::from_utf8(&wrapper.config_body).map_err(|e| invalid(CRI_OPTIONS, e))?;
            let toml: TomlOptions = toml::from_str(body).map_err(|e| {
                Error::InvalidArgument(format!(
                    "invalid runtime options in containerd's CRI config: {e}"
                ))
            })?;
            Options {
                binary_name: toml.binary_name,
                root: toml.root,
                systemd_cgroup: toml.systemd_cgroup,
                no_pivot_root: toml.no_pivot_root,
                no_new_keyring: toml.no_new_keyring,
                io_uid: toml.io_uid,
                io_gid: toml.io_gid,
                criu_image_path: toml.criu_image_path,
                criu_work_path: toml.criu_work_path,
                shim_cgroup: toml.shim_cgroup,
                ..Default::default()
            }
        }
        _ => {
            return Err(Error::InvalidArgument(format!(
                "unsupported runtime options type {:?}: expected {RUNC_OPTIONS}, \
                 {LEGACY_CREATE_OPTIONS} or {CRI_OPTIONS}",
                any.type_url
            )));
        }
    };
    Ok(CreateOptions {
        runtime,
        restore: CriuFlags::default(),
    })
}

/// The options as a `containerd.runc.v1.Options` Any, the one form the `containerd-shim`
/// crate reads at `start` (for the shim's cgroup and OOM score), or None when `any` is in
/// that form already, empty, or not understood (CreateTask reports those).
pub fn as_runc_options(any: &Any) -> Option<Any> {
    if type_name(any) == RUNC_OPTIONS || is_empty(Some(any)) {
        return None;
    }
    let options = parse_options(Some(any)).ok()?.runtime;
    Some(Any {
        type_url: RUNC_OPTIONS.into(),
        value: options.write_to_bytes().ok()?,
        ..Default::default()
    })
}

/// What a Checkpoint request asks for.
#[derive(Debug, Clone, Default)]
pub struct CheckpointConfig {
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub exit: bool,
    pub criu: CriuFlags,
}

impl CheckpointConfig {
    /// The runtime's `checkpoint` arguments, as containerd's Go shim passes them (and
    /// cgroups_mode, which it ignores).
    pub fn args(&self, id: &str, work: &Path) -> Vec<String> {
        let mut args = vec![
            "checkpoint".to_string(),
            "--image-path".to_string(),
            self.image_path.to_string_lossy().into_owned(),
            "--work-path".to_string(),
            work.to_string_lossy().into_owned(),
        ];
        if !self.exit {
            args.push("--leave-running".into());
        }
        args.extend(self.criu.args());
        args.push(id.to_string());
        args
    }
}

/// A Checkpoint request's configuration: its options (`containerd.runc.v1.CheckpointOptions`
/// from containerd 2.x for every runtime, containerd 1.7's legacy CheckpointOptions from its
/// client for ours; CRI on 2.x sends none for runtime types it does not know), and the image
/// path from the options or else the request.
pub fn checkpoint_config(req: &CheckpointTaskRequest) -> Result<CheckpointConfig> {
    let mut options = CheckpointOptions::default();
    if let Some(any) = req.options.as_ref()
        && !is_empty(Some(any))
    {
        options = match type_name(any) {
            RUNC_CHECKPOINT_OPTIONS => CheckpointOptions::parse_from_bytes(&any.value)
                .map_err(|e| invalid(RUNC_CHECKPOINT_OPTIONS, e))?,
            LEGACY_CHECKPOINT_OPTIONS => {
                let legacy =
                    <LegacyCheckpointOptions as prost::Message>::decode(any.value.as_slice())
                        .map_err(|e| invalid(LEGACY_CHECKPOINT_OPTIONS, e))?;
                CheckpointOptions {
                    exit: legacy.exit,
                    open_tcp: legacy.open_tcp,
                    external_unix_sockets: legacy.external_unix_sockets,
                    terminal: legacy.terminal,
                    file_locks: legacy.file_locks,
                    empty_namespaces: legacy.empty_namespaces,
                    cgroups_mode: legacy.cgroups_mode,
                    image_path: legacy.image_path,
                    work_path: legacy.work_path,
                    ..Default::default()
                }
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unsupported checkpoint options type {:?}: expected \
                     {RUNC_CHECKPOINT_OPTIONS} or {LEGACY_CHECKPOINT_OPTIONS}",
                    any.type_url
                )));
            }
        };
    }
    let image = if options.image_path.is_empty() {
        req.path.clone()
    } else {
        options.image_path.clone()
    };
    if image.is_empty() {
        return Err(Error::InvalidArgument(
            "checkpoint without an image path".into(),
        ));
    }
    Ok(CheckpointConfig {
        image_path: PathBuf::from(image),
        work_path: (!options.work_path.is_empty()).then(|| PathBuf::from(&options.work_path)),
        exit: options.exit,
        criu: CriuFlags {
            open_tcp: options.open_tcp,
            external_unix_sockets: options.external_unix_sockets,
            terminal: options.terminal,
            file_locks: options.file_locks,
            empty_namespaces: options.empty_namespaces,
            cgroups_mode: options.cgroups_mode,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::MessageField;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any {
            type_url: type_url.into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn runc_options_with_or_without_prefix() {
        assert_eq!(parse_options(None).unwrap(), CreateOptions::default());
        let opts = Options {
            binary_name: "crun".into(),
            ..Default::default()
        };
        let plain = any(RUNC_OPTIONS, opts.write_to_bytes().unwrap());
        assert_eq!(
            parse_options(Some(&plain)).unwrap().runtime.binary_name,
            "crun"
        );
        let prefixed = any(
            "type.googleapis.com/containerd.runc.v1.Options",
            plain.value.clone(),
        );
        assert_eq!(
            parse_options(Some(&prefixed)).unwrap().runtime.binary_name,
            "crun"
        );
        assert!(as_runc_options(&plain).is_none());
        let other = any("containerd.other.v1.Options", plain.value);
        let err = parse_options(Some(&other)).unwrap_err().to_string();
        assert!(err.contains("unsupported runtime options"), "{err}");
        assert!(as_runc_options(&other).is_none());
    }

    #[test]
    fn legacy_create_options_of_containerd_1_7() {
        let legacy = LegacyCreateOptions {
            shim_cgroup: "/containerd/shim".into(),
            criu_image_path: "/ck".into(),
            io_uid: 7,
            open_tcp: true,
            empty_namespaces: vec!["network".into()],
            ..Default::default()
        };
        let sent = any(
            "containerd.linux.runc.CreateOptions",
            prost::Message::encode_to_vec(&legacy),
        );
        let options = parse_options(Some(&sent)).unwrap();
        assert_eq!(options.runtime.shim_cgroup, "/containerd/shim");
        assert_eq!(options.runtime.criu_image_path, "/ck");
        assert_eq!(options.runtime.io_uid, 7);
        assert_eq!(
            options.restore.args(),
            ["--tcp-established", "--empty-ns", "network"]
        );
        // The crate reads the shim cgroup at `start` from a runc.v1.Options only.
        let converted = as_runc_options(&sent).unwrap();
        let back = Options::parse_from_bytes(&converted.value).unwrap();
        assert_eq!(back.shim_cgroup, "/containerd/shim");
        assert!(parse_options(Some(&any(LEGACY_CREATE_OPTIONS, vec![0xff]))).is_err());
    }

    #[test]
    fn cri_runtime_options_carry_toml() {
        let wrapper = CriRuntimeOptions {
            type_url: String::new(),
            config_path: String::new(),
            config_body: "BinaryName = \"crun\"\nSystemdCgroup = true\nIoUid = 7\n".into(),
        };
        let sent = any(CRI_OPTIONS, prost::Message::encode_to_vec(&wrapper));
        let options = parse_options(Some(&sent)).unwrap().runtime;
        assert_eq!(
            (
                options.binary_name.as_str(),
                options.systemd_cgroup,
                options.io_uid
            ),
            ("crun", true, 7)
        );
        let bad = CriRuntimeOptions {
            config_body: "BinaryName = [".into(),
            ..wrapper
        };
        let sent = any(CRI_OPTIONS, prost::Message::encode_to_vec(&bad));
        let err = parse_options(Some(&sent)).unwrap_err().to_string();
        assert!(err.contains("CRI config"), "{err}");
        let not_utf8 = CriRuntimeOptions {
            config_body: vec![b'a', 0xff],
            ..Default::default()
        };
        let sent = any(CRI_OPTIONS, prost::Message::encode_to_vec(&not_utf8));
        let err = parse_options(Some(&sent)).unwrap_err().to_string();
        assert!(err.contains(CRI_OPTIONS), "{err}");
    }

    fn request(options: Option<Any>, path: &str) -> CheckpointTaskRequest {
        CheckpointTaskRequest {
            id: "c1".into(),
            path: path.into(),
            options: MessageField::from_option(options),
            ..Default::default()
        }
    }

    #[test]
    fn checkpoint_image_path_comes_from_options_else_request() {
        let config = checkpoint_config(&request(None, "/tmp/ck")).unwrap();
        assert_eq!(config.image_path, PathBuf::from("/tmp/ck"));
        assert!(!config.exit);
        let options = CheckpointOptions {
            exit: true,
            image_path: "/mine".into(),
            work_path: "/w".into(),
            terminal: true,
            ..Default::default()
        };
        let sent = any(RUNC_CHECKPOINT_OPTIONS, options.write_to_bytes().unwrap());
        let config = checkpoint_config(&request(Some(sent), "/tmp/ck")).unwrap();
        assert_eq!(config.image_path, PathBuf::from("/mine"));
        assert_eq!(config.work_path, Some(PathBuf::from("/w")));
        assert!(config.exit && config.criu.terminal);
        assert!(checkpoint_config(&request(None, "")).is_err());
    }

    #[test]
    fn legacy_checkpoint_options_of_containerd_1_7() {
        let legacy = LegacyCheckpointOptions {
            exit: true,
            image_path: "/ck".into(),
            work_path: "/w".into(),
            file_locks: true,
            cgroups_mode: "soft".into(),
            ..Default::default()
        };
        let sent = any(
            "containerd.linux.runc.CheckpointOptions",
            prost::Message::encode_to_vec(&legacy),
        );
        let config = checkpoint_config(&request(Some(sent), "")).unwrap();
        assert_eq!(config.image_path, PathBuf::from("/ck"));
        assert_eq!(config.work_path, Some(PathBuf::from("/w")));
        assert!(config.exit);
        assert_eq!(
            config.criu.args(),
            ["--file-locks", "--manage-cgroups-mode", "soft"]
        );
        let other = any("containerd.other.CheckpointOptions", vec![]);
        assert!(checkpoint_config(&request(Some(other), "/ck")).is_err());
    }

    #[test]
    fn checkpoint_args_follow_the_options() {
        let config = CheckpointConfig {
            image_path: "/ck".into(),
            criu: CriuFlags {
                open_tcp: true,
                terminal: true,
                empty_namespaces: vec!["network".into()],
                cgroups_mode: "soft".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let args = config.args("c1", Path::new("/work"));
        assert_eq!(
            args,
            [
                "checkpoint",
                "--image-path",
                "/ck",
                "--work-path",
                "/work",
                "--leave-running",
                "--tcp-established",
                "--shell-job",
                "--empty-ns",
                "network",
                "--manage-cgroups-mode",
                "soft",
                "c1"
            ]
        );
        let exit = CheckpointConfig {
            image_path: "/ck".into(),
            exit: true,
            ..Default::default()
        };
        assert!(
            !exit
                .args("c1", Path::new("/w"))
                .contains(&"--leave-running".to_string())
        );
    }
}
