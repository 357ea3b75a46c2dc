//! Archives and layers as they come: a plain tar, gzip or zstd (Podman's `--export` writes
//! zstd by default), told apart by their first bytes rather than by a file name or a media
//! type.

use std::io::{self, BufRead, Read};

use revive_checkpoint::oci::Compression;

/// `reader`'s content, decompressed as its first bytes say, and which compression that was.
/// Concatenated gzip members and zstd frames are read as one stream.
pub fn decompressed<'a, R: BufRead + 'a>(
    mut reader: R,
) -> io::Result<(Box<dyn Read + 'a>, Compression)> {
    let compression = Compression::of_magic(reader.fill_buf()?);
    let stream: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    };
    Ok((stream, compression))
}
