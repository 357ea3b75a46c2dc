//! Generated protobuf/gRPC code (prost + tonic) for the containerd and CRI APIs
//! revive serves or calls, and for the option messages containerd sends the shim.
//!
//! The `.proto` sources are upstream's, unchanged, in `proto/vendor/` (with their provenance
//! in `SOURCE.md` files); `build.rs` compiles them with `protox`, so no `protoc` is needed. Well-known types
//! (`google.protobuf.*`) map to [`prost_types`], re-exported here so users do
//! not need a direct dependency.
//!
//! Features choose what is compiled: the option messages ([`runc`],
//! [`runctypes`], [`runtimeoptions`]) always; containerd's services with
//! `services` (a default feature); CRI's `runtime.v1` client with `cri`.

pub use prost;
pub use prost_types;
#[cfg(any(feature = "services", feature = "cri"))]
pub use tonic;

/// A gRPC channel to the server on the unix socket `socket` (containerd's), connected at
/// the first call and again after a failure, each attempt bounded by `connect_timeout`.
#[cfg(feature = "services")]
pub fn unix_channel(
    socket: impl Into<std::path::PathBuf>,
    connect_timeout: std::time::Duration,
) -> tonic::transport::Channel {
    let socket = socket.into();
    // The URI is only a placeholder: the connector always dials the socket.
    tonic::transport::Endpoint::from_static("http://[::]:50051")
        .connect_timeout(connect_timeout)
        .connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
}

/// `containerd.types`: types shared between containerd services.
#[cfg(feature = "services")]
pub mod types {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
    include!(concat!(env!("OUT_DIR"), "/containerd.types.rs"));

    /// `containerd.types.transfer`: the sources and destinations of the transfer service
    /// (a registry, the image store), packed in `google.protobuf.Any` under their full
    /// names, with no URL prefix (see [`transfer::type_url`]).
    pub mod transfer {
        #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
        include!(concat!(env!("OUT_DIR"), "/containerd.types.transfer.rs"));

        /// The type URL containerd's transfer service resolves a packed `message` by: its
        /// full protobuf name, as Go's typeurl writes it (a `type.googleapis.com/` prefix
        /// would not be found).
        pub fn type_url<M: prost::Name>() -> String {
            M::full_name()
        }
    }
}

/// `containerd.v1.*`
#[cfg(feature = "services")]
pub mod v1 {
    /// `containerd.v1.types`: a task's status and its processes, as the tasks service
    /// reports them.
    pub mod types {
        #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
        include!(concat!(env!("OUT_DIR"), "/containerd.v1.types.rs"));
    }
}

/// `containerd.services.*`
#[cfg(feature = "services")]
pub mod services {
    /// `containerd.services.snapshots`
    pub mod snapshots {
        /// `containerd.services.snapshots.v1`: the snapshots service containerd
        /// calls on proxy snapshotter plugins.
        pub mod v1 {
            #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
            include!(concat!(
                env!("OUT_DIR"),
                "/containerd.services.snapshots.v1.rs"
            ));
        }
    }

    /// `containerd.services.images`
    pub mod images {
        /// `containerd.services.images.v1`: containerd's image records (name -> target
        /// descriptor), which revive's snapshotter reads to find a checkpoint's base image.
        pub mod v1 {
            #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
            include!(concat!(
                env!("OUT_DIR"),
                "/containerd.services.images.v1.rs"
            ));
        }
    }

    /// `containerd.services.content`
    pub mod content {
        /// `containerd.services.content.v1`: containerd's content store (blobs by digest),
        /// from which revive's snapshotter reads a base image's manifests and layers.
        pub mod v1 {
            #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
            include!(concat!(
                env!("OUT_DIR"),
                "/containerd.services.content.v1.rs"
            ));
        }
    }

    /// `containerd.services.leases`
    pub mod leases {
        /// `containerd.services.leases.v1`: leases, which keep what a client writes into
        /// the content store from the garbage collector until an image refers to it.
        pub mod v1 {
            #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
            include!(concat!(
                env!("OUT_DIR"),
                "/containerd.services.leases.v1.rs"
            ));
        }
    }

    /// `containerd.services.transfer`
    pub mod transfer {
        /// `containerd.services.transfer.v1`: containerd's transfer service, with which
        /// revive pulls and pushes images through containerd's own registry client (its
        /// hosts configuration and trust).
        pub mod v1 {
            #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
            include!(concat!(
                env!("OUT_DIR"),
                "/containerd.services.transfer.v1.rs"
            ));
        }
    }

    /// `containerd.services.tasks`
    pub mod tasks {
        /// `containerd.services.tasks.v1`: containerd's tasks service, which revive calls
        /// for what `ctr` cannot do with every option.
        pub mod v1 {
            #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
            include!(concat!(env!("OUT_DIR"), "/containerd.services.tasks.v1.rs"));
        }
    }
}

/// Short path to [`services::content`], e.g. `revive_proto::content::v1`.
#[cfg(feature = "services")]
pub use services::content;
/// Short path to [`services::images`], e.g. `revive_proto::images::v1`.
#[cfg(feature = "services")]
pub use services::images;
/// Short path to [`services::leases`], e.g. `revive_proto::leases::v1`.
#[cfg(feature = "services")]
pub use services::leases;
/// Short path to [`services::snapshots`], e.g. `revive_proto::snapshots::v1`.
#[cfg(feature = "services")]
pub use services::snapshots;
/// Short path to [`services::tasks`], e.g. `revive_proto::tasks::v1`.
#[cfg(feature = "services")]
pub use services::tasks;
/// Short path to [`services::transfer`], e.g. `revive_proto::transfer::v1`.
#[cfg(feature = "services")]
pub use services::transfer;

/// `containerd.runc.v1`: the options of runc shims (and revive), which travel in
/// `google.protobuf.Any` with the type URL [`runc::RUNC_OPTIONS`] or
/// [`runc::RUNC_CHECKPOINT_OPTIONS`].
pub mod runc {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
    include!(concat!(env!("OUT_DIR"), "/containerd.runc.v1.rs"));

    /// containerd's type URL for [`Options`] (typeurl registers the bare name).
    pub const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
    /// containerd's type URL for [`CheckpointOptions`].
    pub const RUNC_CHECKPOINT_OPTIONS: &str = "containerd.runc.v1.CheckpointOptions";
}

/// `containerd.linux.runc` (containerd 1.7's `runtime/linux/runctypes`): the create and
/// checkpoint options containerd 1.7's client sends runtimes not named `io.containerd.runc*`,
/// with the type URLs [`runctypes::CREATE_OPTIONS`] and [`runctypes::CHECKPOINT_OPTIONS`].
pub mod runctypes {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
    include!(concat!(env!("OUT_DIR"), "/containerd.linux.runc.rs"));

    /// containerd's type URL for [`CreateOptions`].
    pub const CREATE_OPTIONS: &str = "containerd.linux.runc.CreateOptions";
    /// containerd's type URL for [`CheckpointOptions`].
    pub const CHECKPOINT_OPTIONS: &str = "containerd.linux.runc.CheckpointOptions";
}

/// `runtimeoptions.v1`: CRI's wrapper of a runtime handler's `options` table (TOML text in
/// `config_body`) for runtime types CRI does not know.
pub mod runtimeoptions {
    /// `runtimeoptions.v1`
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
        include!(concat!(env!("OUT_DIR"), "/runtimeoptions.v1.rs"));

        /// containerd's type URL for [`Options`].
        pub const OPTIONS: &str = "runtimeoptions.v1.Options";
    }
}

/// The Kubernetes Container Runtime Interface (k8s.io/cri-api, package `runtime.v1`), as
/// the kubelet calls it on containerd's socket: messages and tonic clients
/// ([`cri::v1::runtime_service_client`], [`cri::v1::image_service_client`]).
#[cfg(feature = "cri")]
pub mod cri {
    /// `runtime.v1`
    pub mod v1 {
        // CRI's comments are Go documentation, not rustdoc.
        #![allow(
            clippy::all,
            clippy::pedantic,
            missing_docs,
            unused_qualifications,
            rustdoc::all
        )]
        include!(concat!(env!("OUT_DIR"), "/runtime.v1.rs"));
    }
}

#[cfg(all(test, feature = "services"))]
mod tests {
    use prost::{Message, Name};

    use super::snapshots::v1::{CommitSnapshotRequest, Info, Kind, PrepareSnapshotResponse};
    use super::types::Mount;

    /// Field numbers and wire types must match containerd's. Hand-encode a
    /// message the way containerd would and check that we decode it.
    #[test]
    fn mount_wire_format() {
        // field 1 (type), 2 (source), 3 (target), 4 (options), all
        // length-delimited (wire type 2).
        let bytes = [
            0x0a, 0x07, b'o', b'v', b'e', b'r', b'l', b'a', b'y', // type
            0x12, 0x02, b's', b'1', // source
            0x1a, 0x02, b't', b'1', // target
            0x22, 0x02, b'r', b'o', // options[0]
            0x22, 0x03, b'r', b'w', b'x', // options[1]
        ];
        let m = Mount::decode(&bytes[..]).unwrap();
        assert_eq!(m.r#type, "overlay");
        assert_eq!(m.source, "s1");
        assert_eq!(m.target, "t1");
        assert_eq!(m.options, ["ro", "rwx"]);
        assert_eq!(m.encode_to_vec(), bytes);
    }

    #[test]
    fn commit_parent_is_field_5() {
        let req = CommitSnapshotRequest {
            parent: "p".into(),
            ..Default::default()
        };
        assert_eq!(req.encode_to_vec(), [0x2a, 0x01, b'p']);
    }

    #[test]
    fn info_kind_is_field_3_varint() {
        let info = Info {
            kind: Kind::Committed as i32,
            ..Default::default()
        };
        assert_eq!(info.encode_to_vec(), [0x18, 0x03]);
        assert_eq!(Kind::from_str_name("ACTIVE"), Some(Kind::Active));
    }

    #[test]
    fn fully_qualified_names() {
        assert_eq!(Mount::full_name(), "containerd.types.Mount");
        assert_eq!(
            PrepareSnapshotResponse::full_name(),
            "containerd.services.snapshots.v1.PrepareSnapshotResponse"
        );
    }

    #[test]
    fn grpc_service_name() {
        use super::snapshots::v1::snapshots_server::SERVICE_NAME;
        assert_eq!(SERVICE_NAME, "containerd.services.snapshots.v1.Snapshots");
        use super::content::v1::content_server::SERVICE_NAME as CONTENT;
        assert_eq!(CONTENT, "containerd.services.content.v1.Content");
        use super::images::v1::images_server::SERVICE_NAME as IMAGES;
        assert_eq!(IMAGES, "containerd.services.images.v1.Images");
    }

    /// An image's target is field 3 and a Descriptor's digest field 2, as containerd sends.
    #[test]
    fn image_target_wire_format() {
        use super::images::v1::Image;
        let bytes = [
            0x0a, 0x01, b'n', // name
            0x1a, 0x07, // target, 7 bytes
            0x12, 0x01, b'd', // digest
            0x18, 0x2a, // size 42
            0x0a, 0x00, // media_type ""  (out of order: decoders accept any order)
        ];
        let image = Image::decode(&bytes[..]).unwrap();
        assert_eq!(image.name, "n");
        let target = image.target.unwrap();
        assert_eq!((target.digest.as_str(), target.size), ("d", 42));
    }

    #[test]
    fn read_content_request_fields() {
        use super::content::v1::ReadContentRequest;
        let req = ReadContentRequest {
            digest: "d".into(),
            offset: 1,
            size: 2,
        };
        assert_eq!(
            req.encode_to_vec(),
            [0x0a, 0x01, b'd', 0x10, 0x01, 0x18, 0x02]
        );
    }
}

#[cfg(test)]
mod option_tests {
    use prost::{Message, Name};

    use super::runctypes::{CHECKPOINT_OPTIONS, CREATE_OPTIONS, CheckpointOptions, CreateOptions};
    use super::runtimeoptions::v1::{OPTIONS, Options};

    /// The type URL constants are the messages' protobuf names.
    #[test]
    fn type_urls_are_the_full_names() {
        assert_eq!(CreateOptions::full_name(), CREATE_OPTIONS);
        assert_eq!(CheckpointOptions::full_name(), CHECKPOINT_OPTIONS);
        assert_eq!(Options::full_name(), OPTIONS);
        assert_eq!(super::runc::Options::full_name(), super::runc::RUNC_OPTIONS);
    }

    /// Field numbers and wire types as containerd 1.7 encodes them.
    #[test]
    fn legacy_options_wire_format() {
        // CreateOptions: open_tcp (2) true, shim_cgroup (9) "/s", io_uid (10) 7.
        let bytes = [0x10, 1, 0x4a, 2, b'/', b's', 0x50, 7];
        let create = CreateOptions::decode(&bytes[..]).unwrap();
        assert!(create.open_tcp);
        assert_eq!((create.shim_cgroup.as_str(), create.io_uid), ("/s", 7));
        assert_eq!(create.encode_to_vec(), bytes);
        // CheckpointOptions: exit (1) true, work_path (8) "w", image_path (9) "i".
        let bytes = [0x08, 1, 0x42, 1, b'w', 0x4a, 1, b'i'];
        let checkpoint = CheckpointOptions::decode(&bytes[..]).unwrap();
        assert!(checkpoint.exit);
        assert_eq!(
            (
                checkpoint.work_path.as_str(),
                checkpoint.image_path.as_str()
            ),
            ("w", "i")
        );
        // runtimeoptions.v1.Options: config_body (3) is bytes, so any octets decode.
        let options = Options::decode(&[0x1a, 2, 0xff, b'x'][..]).unwrap();
        assert_eq!(options.config_body, [0xff, b'x']);
    }
}

#[cfg(all(test, feature = "services"))]
mod transfer_tests {
    use super::types::transfer::{ImageStore, OciRegistry, type_url};

    /// containerd registers the transfer types under their Go typeurl names: the full
    /// protobuf names, with no prefix.
    #[test]
    fn transfer_type_urls_are_bare_full_names() {
        assert_eq!(
            type_url::<OciRegistry>(),
            "containerd.types.transfer.OCIRegistry"
        );
        assert_eq!(
            type_url::<ImageStore>(),
            "containerd.types.transfer.ImageStore"
        );
    }
}
