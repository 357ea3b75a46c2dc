//! The tar metadata entries read before the member they describe: GNU long names and PAX
//! extended headers, bounded before they are read.

use std::io::{self, Read};

/// Largest PAX extended header accepted (path, link path, times, xattrs of one entry).
pub(super) const MAX_PAX_BYTES: u64 = 1 << 20;

/// GNU and PAX metadata read before the member it describes.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) long_name: Option<Vec<u8>>,
    pub(super) long_link: Option<Vec<u8>>,
    pub(super) pax: Option<Pax>,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// The PAX records this extractor uses (and the CLI's archive reader).
#[derive(Debug, Default)]
pub struct Pax {
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub mtime: Option<i64>,
    pub sparse: bool,
}

fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Why a PAX extended header was refused: the archive is malformed (or was written by a
/// tool that does not follow POSIX's pax format), so write it again with GNU tar or Go's
/// archive/tar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaxError {
    /// No space ends a record's length within its first 21 bytes.
    #[error("a PAX record has no length")]
    NoLength,
    /// A record's length is not a decimal number.
    #[error("a PAX record has an invalid length")]
    InvalidLength,
    /// A record's length runs past the header, or its record does not end with a newline.
    #[error("a PAX record's length does not match its content")]
    LengthMismatch,
    /// A record is not `<key>=<value>`.
    #[error("a PAX record has no `=`")]
    NoEquals,
    /// A numeric record (`size`, `uid`, `gid`, `mtime`) holds something else.
    #[error("the PAX {0} is not a number")]
    NotANumber(&'static str),
}

/// Parses PAX extended header records: `<length> <key>=<value>\n`, the length counting the
/// whole record.
pub fn parse_pax(data: &[u8]) -> Result<Pax, PaxError> {
    let mut pax = Pax::default();
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .take(21)
            .position(|b| *b == b' ')
            .ok_or(PaxError::NoLength)?;
        let len = parse_decimal(&rest[..space])
            .and_then(|l| usize::try_from(l).ok())
            .ok_or(PaxError::InvalidLength)?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(PaxError::LengthMismatch);
        }
        let record = &rest[space + 1..len - 1];
        rest = &rest[len..];
        let equals = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or(PaxError::NoEquals)?;
        let (key, value) = (&record[..equals], &record[equals + 1..]);
        let number = |what: &'static str| parse_decimal(value).ok_or(PaxError::NotANumber(what));
        // An empty value removes the key: the header's field applies.
        if value.is_empty() {
            continue;
        }
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => pax.size = Some(number("size")?),
            b"uid" => pax.uid = Some(number("uid")?),
            b"gid" => pax.gid = Some(number("gid")?),
            b"mtime" => {
                // Seconds, maybe negative, maybe with a fraction: keep whole seconds.
                let whole = value.split(|b| *b == b'.').next().unwrap_or_default();
                let (negative, digits) = match whole.strip_prefix(b"-") {
                    Some(digits) => (true, digits),
                    None => (false, whole),
                };
                let seconds = parse_decimal(digits)
                    .and_then(|s| i64::try_from(s).ok())
                    .ok_or(PaxError::NotANumber("mtime"))?;
                pax.mtime = Some(if negative { -seconds } else { seconds });
            }
            k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
            _ => {}
        }
    }
    Ok(pax)
}

/// Reads an entry's data of `size` bytes (already bounded by the caller) whole.
pub(super) fn read_bounded(reader: &mut impl Read, size: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    reader.take(size).read_to_end(&mut data)?;
    if (data.len() as u64) < size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the archive ends inside this entry",
        ));
    }
    Ok(data)
}
