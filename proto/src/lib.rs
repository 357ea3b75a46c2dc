//! Generated protobuf/gRPC code (prost + tonic) for the containerd APIs revive
//! serves or calls.
//!
//! The `.proto` sources live in `proto/proto/` and are compiled by `build.rs`
//! with `protox`, so no `protoc` is needed. Well-known types
//! (`google.protobuf.*`) map to [`prost_types`], re-exported here so users do
//! not need a direct dependency.

pub use prost;
pub use prost_types;
pub use tonic;

/// `containerd.types`: types shared between containerd services.
pub mod types {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/containerd.types.rs"));
}

/// `containerd.services.*`
pub mod services {
    /// `containerd.services.snapshots`
    pub mod snapshots {
        /// `containerd.services.snapshots.v1`: the snapshots service containerd
        /// calls on proxy snapshotter plugins.
        pub mod v1 {
            #![allow(clippy::all, clippy::pedantic, missing_docs)]
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
            #![allow(clippy::all, clippy::pedantic, missing_docs)]
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
            #![allow(clippy::all, clippy::pedantic, missing_docs)]
            include!(concat!(
                env!("OUT_DIR"),
                "/containerd.services.content.v1.rs"
            ));
        }
    }

    /// `containerd.services.tasks`
    pub mod tasks {
        /// `containerd.services.tasks.v1`: the calls of containerd's tasks service that
        /// `ctr` cannot make with every option (see the .proto file).
        pub mod v1 {
            #![allow(clippy::all, clippy::pedantic, missing_docs)]
            include!(concat!(env!("OUT_DIR"), "/containerd.services.tasks.v1.rs"));
        }
    }
}

/// Short path to [`services::content`], e.g. `revive_proto::content::v1`.
pub use services::content;
/// Short path to [`services::images`], e.g. `revive_proto::images::v1`.
pub use services::images;
/// Short path to [`services::snapshots`], e.g. `revive_proto::snapshots::v1`.
pub use services::snapshots;
/// Short path to [`services::tasks`], e.g. `revive_proto::tasks::v1`.
pub use services::tasks;

/// `containerd.runc.v1`: the options of runc shims (and revive), which travel in
/// `google.protobuf.Any` with the type URL [`runc::RUNC_OPTIONS`] or
/// [`runc::RUNC_CHECKPOINT_OPTIONS`].
pub mod runc {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/containerd.runc.v1.rs"));

    /// containerd's type URL for [`Options`] (typeurl registers the bare name).
    pub const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
    /// containerd's type URL for [`CheckpointOptions`].
    pub const RUNC_CHECKPOINT_OPTIONS: &str = "containerd.runc.v1.CheckpointOptions";
}

#[cfg(test)]
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
