//! Gzip for checkpoint image layers: compressed where the data compresses, stored where it
//! does not, so that containerd unpacks a layer of incompressible memory at the speed of a
//! copy.
//!
//! Most of a checkpoint is CRIU's page images, and a process's memory is often close to
//! random. At its fastest level, miniz_oxide (flate2's default backend) codes such data as
//! Huffman-coded literals, a little larger than the input, which Go's compress/flate inflates
//! far more slowly than stored blocks: containerd 2.1 applied a 256 MiB random layer in 2.5 s
//! written that way and in 0.4 s as stored blocks (docs/design.md, "The layer's gzip"). Higher
//! levels do fall back to stored blocks, but only after searching the random data for
//! matches, four to five times slower than level 1.
//!
//! So [`GzipWriter`] looks at each MiB before compressing it. When its bytes are close to
//! uniformly distributed (over [`STORE_ABOVE_BITS`] bits of entropy per byte) it goes into
//! stored blocks, written here (RFC 1951, 3.2.4); otherwise deflate compresses it at its
//! fastest level. Before a stored run, deflate is flushed with a full flush, which
//! byte-aligns its output and empties its dictionary, so that nothing it writes later refers
//! back across the stored bytes it never saw. The output is one gzip member (RFC 1952)
//! holding one deflate stream, which every gzip reader reads.

use std::io::{self, Write};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// How much input is judged, and compressed, at a time.
pub const CHUNK: usize = 1 << 20;

/// A chunk whose bytes carry more entropy than this, in bits per byte, is stored: deflate
/// would not make it meaningfully smaller (8 is uniformly random).
pub const STORE_ABOVE_BITS: f64 = 7.5;

/// Output buffer of one deflate call.
const OUT_CAPACITY: usize = 256 << 10;

/// Most bytes in one stored block.
const STORED_BLOCK: usize = u16::MAX as usize;

/// A gzip header: deflate, no flags, no time, no extra fields, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A gzip encoder that stores incompressible chunks; see the module's documentation.
/// [`GzipWriter::finish`] ends the stream: dropped without it, the output is cut short.
pub struct GzipWriter<W: Write> {
    inner: W,
    /// Raw deflate; the gzip header and trailer are written here.
    compress: Compress,
    crc: Crc,
    /// Input not yet judged, less than [`CHUNK`].
    pending: Vec<u8>,
    out: Vec<u8>,
    /// Whether deflate took input since its last full flush.
    deflating: bool,
    stored_bytes: u64,
}

impl<W: Write> GzipWriter<W> {
    /// Starts a gzip stream on `inner` (its header is written now).
    pub fn new(mut inner: W) -> io::Result<GzipWriter<W>> {
        inner.write_all(&HEADER)?;
        Ok(GzipWriter {
            inner,
            compress: Compress::new(Compression::fast(), false),
            crc: Crc::new(),
            pending: Vec::with_capacity(CHUNK),
            out: Vec::with_capacity(OUT_CAPACITY),
            deflating: false,
            stored_bytes: 0,
        })
    }

    /// How many input bytes went into stored blocks so far.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }

    /// Ends the deflate stream, writes the gzip trailer (CRC-32 and size) and returns the
    /// writer.
    pub fn finish(mut self) -> io::Result<W> {
        let rest = std::mem::take(&mut self.pending);
        self.chunk(&rest)?;
        // The final block: after stored blocks, deflate is byte-aligned and empty, so its
        // final (empty) block follows them directly.
        self.deflate(&[], FlushCompress::Finish)?;
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Compresses or stores `input`, as its entropy says.
    fn chunk(&mut self, input: &[u8]) -> io::Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        self.crc.update(input);
        if entropy_bits(input) <= STORE_ABOVE_BITS {
            self.deflating = true;
            return self.deflate(input, FlushCompress::None);
        }
        if self.deflating {
            self.deflate(&[], FlushCompress::Full)?;
            self.deflating = false;
        }
        for block in input.chunks(STORED_BLOCK) {
            let len = block.len() as u16;
            // BFINAL 0, BTYPE 00, padded to the byte; then LEN and its complement.
            let mut head = [0u8; 5];
            head[1..3].copy_from_slice(&len.to_le_bytes());
            head[3..5].copy_from_slice(&(!len).to_le_bytes());
            self.inner.write_all(&head)?;
            self.inner.write_all(block)?;
        }
        self.stored_bytes += input.len() as u64;
        Ok(())
    }

    /// Runs deflate over all of `input` with `flush`, writing everything it gives.
    fn deflate(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        let finishing = matches!(flush, FlushCompress::Finish);
        loop {
            self.out.clear();
            let before = self.compress.total_in();
            let status = self
                .compress
                .compress_vec(input, &mut self.out, flush)
                .map_err(io::Error::other)?;
            input = &input[(self.compress.total_in() - before) as usize..];
            self.inner.write_all(&self.out)?;
            let room_left = self.out.len() < self.out.capacity();
            match status {
                Status::StreamEnd => return Ok(()),
                _ if !finishing && input.is_empty() && room_left => return Ok(()),
                Status::BufError if input.is_empty() && room_left => {
                    return Err(io::Error::other("deflate made no progress"));
                }
                _ => {}
            }
        }
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..take]);
        if self.pending.len() == CHUNK {
            let chunk = std::mem::take(&mut self.pending);
            let result = self.chunk(&chunk);
            self.pending = chunk;
            self.pending.clear();
            result?;
        }
        Ok(take)
    }

    /// Flushes the writer underneath; input short of a chunk waits for more.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The Shannon entropy of the bytes of `data`, in bits per byte (0 to 8).
pub fn entropy_bits(data: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Bytes that look random (xorshift), reproducibly.
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn gzip(data: &[u8], write_size: usize) -> (Vec<u8>, u64) {
        let mut writer = GzipWriter::new(Vec::new()).unwrap();
        for piece in data.chunks(write_size.max(1)) {
            writer.write_all(piece).unwrap();
        }
        let stored = writer.stored_bytes();
        (writer.finish().unwrap(), stored)
    }

    /// What flate2's decoder (one member, checksum checked) reads back.
    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let read = flate2::read::GzDecoder::new(data).read_to_end(&mut out);
        read.map(|_| out).expect("gzip reads back")
    }

    #[test]
    fn entropy_tells_noise_from_text_and_zeros() {
        assert!(entropy_bits(&noise(CHUNK, 1)) > 7.99);
        assert_eq!(entropy_bits(&vec![0; CHUNK]), 0.0);
        let text = include_bytes!("gzip.rs").repeat(8);
        assert!(entropy_bits(&text) < 6.0);
    }

    #[test]
    fn noise_is_stored_and_zeros_are_compressed() {
        let random = noise(3 * CHUNK + 12345, 7);
        let (gz, stored) = gzip(&random, 64 << 10);
        // Stored before the last, partial chunk, which finish() judges.
        assert_eq!(stored, 3 * CHUNK as u64);
        // Stored blocks cost 5 bytes per 64 KiB, plus the gzip header and trailer.
        assert!(
            gz.len() < random.len() + random.len() / 1000,
            "{}",
            gz.len()
        );
        assert_eq!(gunzip(&gz), random);

        let zeros = vec![0; 3 * CHUNK];
        let (gz, stored) = gzip(&zeros, CHUNK);
        assert_eq!(stored, 0);
        assert!(gz.len() < zeros.len() / 100, "{}", gz.len());
        assert_eq!(gunzip(&gz), zeros);
    }

    #[test]
    fn mixed_data_switching_levels_reads_back_exactly() {
        let mut data = Vec::new();
        for i in 0..7u64 {
            match i % 3 {
                0 => data.extend(noise(CHUNK + 1000 * i as usize, i + 1)),
                1 => data.extend(std::iter::repeat_n(i as u8, CHUNK / 2)),
                _ => data.extend(include_bytes!("gzip.rs").repeat(40)),
            }
        }
        for write_size in [1, 4095, CHUNK, 5 * CHUNK] {
            let input = if write_size == 1 {
                &data[..CHUNK + 77]
            } else {
                &data[..]
            };
            let (gz, stored) = gzip(input, write_size);
            assert!(stored >= CHUNK as u64, "{write_size}: {stored}");
            if write_size > 1 {
                assert!(gz.len() < input.len() - CHUNK, "{write_size}: {}", gz.len());
            }
            // Never more than stored blocks' overhead over the input.
            assert!(
                gz.len() < input.len() + input.len() / 1000 + 64,
                "{write_size}: {}",
                gz.len()
            );
            assert_eq!(gunzip(&gz), input, "write size {write_size}");
        }
    }

    /// Text, a stored MiB of noise, the same text: deflate never saw the noise, so had it
    /// kept its history it would code the second text as references to the first, which a
    /// reader would resolve into the noise.
    #[test]
    fn a_stored_run_cuts_deflate_history() {
        let text: Vec<u8> = include_bytes!("gzip.rs")
            .iter()
            .copied()
            .cycle()
            .take(CHUNK)
            .collect();
        let mut data = text.clone();
        data.extend(noise(CHUNK, 5));
        data.extend(&text);
        let (gz, stored) = gzip(&data, CHUNK);
        assert_eq!(stored, CHUNK as u64);
        assert!(gz.len() < 2 * CHUNK, "{}", gz.len());
        assert_eq!(gunzip(&gz), data);
    }

    #[test]
    fn an_empty_stream_is_a_valid_gzip() {
        let (gz, stored) = gzip(&[], 1);
        assert_eq!(stored, 0);
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert!(gunzip(&gz).is_empty());
    }

    /// GNU gzip, when the machine has it, reads what this writes (one member, no trailing
    /// garbage).
    #[test]
    fn gnu_gzip_reads_it() {
        let Ok(mut child) = std::process::Command::new("gzip")
            .args(["-dc"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("!!! SKIPPED: no gzip on this machine's PATH !!!");
            return;
        };
        let mut data = noise(CHUNK + 5, 3);
        data.extend(vec![9; CHUNK]);
        let (gz, _) = gzip(&data, 10_000);
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&gz));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, data);
    }
}
