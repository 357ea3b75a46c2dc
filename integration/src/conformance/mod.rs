//! containerd's own client integration tests (`integration/client`) run against a shim, in a
//! node, side by side for several runtimes (`make conformance`).
//!
//! Four pieces:
//!
//! - **the suite** ([`ensure_suite`]): the test binary, built from the sources of exactly the
//!   node's containerd version, one of two ways ([`SuiteSource`]):
//!   - a flavour whose containerd is a peer built from its Go module ([`crate::peers`]; lts
//!     and latest) gets the suite from that module at the peer's version: its source, taken
//!     from the peers' Go module cache (where the peer's build left it with its
//!     dependencies, so nothing is downloaded twice), is copied somewhere writable and built
//!     on the host with the host's Go toolchain, as containerd's Makefile builds its
//!     integration tests (`go test -c ./integration/client`, cgo on, no build tags; without
//!     the `-race` its CI adds on amd64, like the Debian-built suites);
//!   - a flavour with Debian's containerd (stable) gets it from Debian's sources, built with
//!     Debian's Go toolchain in GOPATH mode (`GO111MODULE=off`) against Debian's Go packages
//!     under `/usr/share/gocode`, as Debian builds containerd. It is built in a *builder*: an
//!     overlay over the node's own root filesystem (so the same Debian release) into which
//!     apt installs golang-go and `golang-github-containerd-containerd-dev` pinned to the
//!     node's containerd version; those packages stay out of the node roots (about 3 GB, and
//!     debootstrap cannot resolve them). containerd 2.x's package ships
//!     `integration/client`; 1.7's leaves `integration/` out, so for 1.7 Debian's
//!     `containerd` source package of the node's exact version is fetched and patched as
//!     Debian builds it.
//!
//!   The binary (plus `runc-fp`, the failpoint wrapper around runc that two tests run as
//!   their runtime binary, and the test list) is cached on the host per flavour and
//!   containerd version, with digests checked on every use and `complete.json` written last;
//!   the builder is removed.
//! - **the registry** ([`Registry::start`]): the tests pull `ghcr.io/containerd/busybox:1.36`
//!   and friends by name. Debian's docker-registry serves them on 127.0.0.1:443 in the node
//!   with a certificate from a throw-away test CA (openssl) that the node trusts
//!   (update-ca-certificates); `/etc/hosts` points the registry names at 127.0.0.1, and the
//!   images, built here ([`served_images`]), are pushed under the expected names with skopeo.
//! - **the runner** ([`run_test`]): one test per invocation of the test binary, with a timeout
//!   each, in a pid and mount namespace of its own so that whatever a test leaves behind
//!   (its containerd, shims, containers, mounts) dies with it. The binary starts its own
//!   containerd (`/var/lib/containerd-test`, as upstream CI does), which must not sit on the
//!   node's overlay root (overlayfs cannot be an upper layer), so `/var/lib` is a tmpfs in that
//!   namespace with the node's own entries bound back in.
//! - **the report** ([`render_markdown`]): test by test, one column per runtime, with the
//!   reason for every failure and skip, and the differences listed first.

use std::path::PathBuf;
use std::time::Duration;

use crate::rootfs;

pub mod registry;
mod report;
mod runner;
mod suite;

pub use registry::*;
pub use report::*;
pub use runner::*;
pub use suite::*;

pub use crate::bench::{REVIVE_V2, RUNC_V2};

/// Bumped whenever the way the suite is built changes, so cached builds are redone.
const BUILD_VERSION: u32 = 1;

/// Bumped whenever the way the suite is built from containerd's Go module changes
/// ([`build_suite_from_module`]), so those cached builds are redone.
const MODULE_BUILD_VERSION: u32 = 1;

/// Where the suite is built and kept inside a node (below the node's /share).
const NODE_DIR: &str = "/share/conformance";

/// Per-test timeout unless told otherwise. The slowest passing tests take about 45 s
/// (TestContainerExecLargeOutputWithTTY, TestRestartMonitor); the rest a second or so.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where built suites and fetched sources are cached: `$REVIVE_CONFORMANCE_CACHE`, else
/// `conformance` beside the node root cache (`/var/cache/revive/conformance`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("REVIVE_CONFORMANCE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| rootfs::cache_dir().with_file_name("conformance"))
}
