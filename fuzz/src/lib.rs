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

/// Most files, and bytes per file, [`image_files`] takes from one input.
const MAX_IMAGE_FILES: usize = 64;
const MAX_IMAGE_FILE: u64 = 1 << 20;

/// The files of a tar, by base name: a directory of CRIU images as the image decoders read
/// it. What does not read as a tar ends the list.
pub fn image_files(data: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(data);
    let Ok(entries) = archive.entries() else {
        return out;
    };
    for entry in entries.take(MAX_IMAGE_FILES) {
        let Ok(entry) = entry else { break };
        let Ok(path) = entry.path() else { continue };
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let mut bytes = Vec::new();
        if entry.take(MAX_IMAGE_FILE).read_to_end(&mut bytes).is_err() {
            break;
        }
        out.insert(name, bytes);
    }
    out
}
