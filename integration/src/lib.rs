//! revive's node harness: real containerd, runc and CRIU in isolated namespaces, for the
//! end-to-end tests and for entering a node by hand (`revive-node shell`).
//!
//! A node is a Debian root filesystem (built once by debootstrap and cached, see [`rootfs`])
//! under a private overlay, entered with its own mount, pid, cgroup, network, UTS and IPC
//! namespaces ([`init`]); [`node::Node`] starts one, runs commands inside, and tears it down
//! leaving nothing on the host.

pub mod bench;
pub mod cgroup;
pub mod checkpoint_image;
pub mod cluster;
pub mod conformance;
pub mod containerd;
pub mod copies;
pub mod crafted;
pub mod cri;
pub mod crictl;
pub mod ctr;
pub mod forensics;
pub mod guest;
pub mod harness;
pub mod host;
pub mod image;
pub mod init;
pub mod kubelet;
pub mod lifecycle;
pub mod mounts;
pub mod node;
pub mod options;
pub mod peers;
pub mod podman;
pub mod privilege;
pub mod rootfs;
pub mod scenario;
pub mod snapshotter;
pub mod tool;

pub use image::{Image, ImageBuilder};
pub use node::{Node, NodeOptions, on_node};
pub use rootfs::Flavour;
