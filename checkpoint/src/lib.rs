//! Checkpoint formats shared by revive's programs. Everything here parses untrusted input:
//! a checkpoint may come from anywhere, so parsers bound what they read and fail with an
//! error, never a panic.

pub mod archive;
pub mod criu;
pub mod criulog;
pub mod extract;
pub mod forensic;
pub mod gzip;
pub mod handoff;
pub mod needs;
pub mod oci;
pub mod privilege;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod utc;
