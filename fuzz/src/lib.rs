//! What revive's fuzz targets share: a sandbox to extract hostile archives into, with the
//! checks that nothing escaped it, and archives built from the fuzzer's bytes with the
//! `arbitrary` crate, full of the names and entries an attacker would write.
//!
//! The targets themselves are in `fuzz_targets/`; `scripts/fuzz.sh` builds and runs them.

pub mod archive;
pub mod sandbox;

use std::io::{self, Read};

/// A reader that hands out at most `chunk` bytes per call (at least one), so parsers meet
/// the short reads that pipes and decompressors give.
pub struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl<'a> Chunked<'a> {
    pub fn new(data: &'a [u8], chunk: usize) -> Self {
        Chunked {
            data,
            chunk: chunk.max(1),
        }
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len());
        let (now, rest) = self.data.split_at(n);
        buf[..n].copy_from_slice(now);
        self.data = rest;
        Ok(n)
    }
}
