//! `revive`: build, convert and inspect checkpoint images, as OCI image archives (files),
//! with no daemon. See `revive --help` and docs/checkpoint-images.md, "The revive CLI".
//!
//! The library holds everything; the `revive` binary only calls [`command::main`]. The fuzz
//! targets use [`layout`] (the reader of OCI image archives) from here.

pub mod build;
pub mod command;
pub mod convert;
pub mod decompress;
pub mod forensics;
pub mod format;
pub mod inspect;
pub mod interrupt;
pub mod layout;
pub mod migrate;
pub mod opened;
pub mod push;
pub mod write;

#[cfg(test)]
mod tests;
