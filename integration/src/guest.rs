//! A cgroup v2 machine for end-to-end tests: a QEMU guest booting Debian trixie with systemd
//! as init, where containerd 2.3 runs as kubeadm configures it (systemd cgroup driver for
//! runc, revive and crun), which the host (cgroup v1 hybrid) cannot offer.
//!
//! - [`image`]: the guest's kernel, initramfs and root disk, built once by debootstrap and
//!   cached like the node roots, verified on every use;
//! - [`job`]: what one boot runs: the job disk (containerd and runc from the project's Go
//!   module builds, the project's binaries, configuration, test images, scratch space) and
//!   its script;
//! - [`vm`]: boots QEMU (software emulation: the host's KVM cannot run stock kernels) with a
//!   hard timeout, collects the results the guest writes to its second serial port, retries
//!   once when the guest kernel oopses, and leaves nothing behind;
//! - [`driver`] and [`containers`]: the scenarios `revive-guest` runs inside the guest, and
//!   [`report`] what they send back.

pub mod containers;
pub mod driver;
pub mod image;
pub mod job;
pub mod report;
pub mod vm;

pub use image::GuestImage;
pub use report::ScenarioResult;
pub use vm::Outcome;
