//! CRIU image files.
//!
//! An image file starts with magic numbers (CRIU's common "service" magic, then the image's
//! own), followed by records: a little-endian u32 length and a protobuf message.

use prost::Message;

pub mod files;
pub mod images;
pub mod memory;
pub mod proto;
pub mod search;

/// The magic CRIU puts before the per-image magic of most images.
pub const COMMON_MAGIC: u32 = 0x5456_4319;
/// The magic CRIU puts before the per-image magic of service images (stats, inventory...).
pub const SERVICE_MAGIC: u32 = 0x5510_5940;
/// The magic of `stats-dump` and `stats-restore`.
pub const STATS_MAGIC: u32 = 0x5709_3306;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("the image is truncated: {0}")]
    Truncated(&'static str),
    #[error("unexpected magic {found:#010x}, expected {expected:#010x}")]
    Magic { found: u32, expected: u32 },
    #[error("record of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("malformed record: {0}")]
    Decode(String),
    #[error("{0} is missing: the checkpoint is incomplete")]
    Missing(String),
    #[error("reading CRIU's images: {0}")]
    Io(String),
}

/// CRIU's `dump_stats_entry` (times in microseconds), generated from its `stats.proto`.
pub use proto::DumpStatsEntry as DumpStats;
/// CRIU's `restore_stats_entry` (times in microseconds).
pub use proto::RestoreStatsEntry as RestoreStats;
/// CRIU's `stats_entry`: what `stats-dump` / `stats-restore` hold.
pub use proto::StatsEntry as Stats;

/// Parses a `stats-dump` or `stats-restore` image.
pub fn parse_stats(data: &[u8]) -> Result<Stats, ImageError> {
    match images::records(data, STATS_MAGIC, "stats")?.first() {
        Some(record) => Stats::decode(*record).map_err(|e| ImageError::Decode(e.to_string())),
        None => Err(ImageError::Truncated("record length")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stats-dump written by CRIU 4.2.1 (through runc) on this project's test node.
    const STATS_DUMP: &[u8] = &[
        0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57, 0x22, 0x00, 0x00, 0x00, 0x0a, 0x20, 0x08,
        0x8a, 0x03, 0x10, 0xc0, 0xc5, 0x06, 0x18, 0xb4, 0x02, 0x20, 0x44, 0x28, 0x2f, 0x30, 0x00,
        0x38, 0x21, 0x40, 0x00, 0x48, 0x00, 0x50, 0x08, 0x58, 0x08, 0x60, 0x00, 0x68, 0x00, 0x70,
        0x00,
    ];

    #[test]
    fn real_stats_dump_parses() {
        let stats = parse_stats(STATS_DUMP).unwrap();
        let dump = stats.dump.unwrap();
        assert_eq!(dump.freezing_time, 394);
        assert_eq!(dump.frozen_time, 107_200);
        assert_eq!(dump.memdump_time, 308);
        assert_eq!(dump.memwrite_time, 68);
        assert_eq!(dump.pages_scanned, 47);
        assert_eq!(dump.pages_written, 33);
        assert!(stats.restore.is_none());
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        assert!(matches!(parse_stats(&[]), Err(ImageError::Truncated(_))));
        assert!(matches!(
            parse_stats(&STATS_DUMP[..10]),
            Err(ImageError::Truncated(_))
        ));
        assert!(matches!(
            parse_stats(&STATS_DUMP[..20]),
            Err(ImageError::Truncated("record"))
        ));
        let mut wrong = STATS_DUMP.to_vec();
        wrong[4] = 0;
        assert!(matches!(parse_stats(&wrong), Err(ImageError::Magic { .. })));
        let mut huge = STATS_DUMP.to_vec();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse_stats(&huge), Err(ImageError::TooLarge(_))));
        let mut garbage = STATS_DUMP.to_vec();
        garbage[12] = 0xff;
        assert!(parse_stats(&garbage).is_err());
        // Every prefix and every single-byte corruption is handled without panicking.
        for n in 0..STATS_DUMP.len() {
            let _ = parse_stats(&STATS_DUMP[..n]);
            for b in [0x00, 0x7f, 0x80, 0xff] {
                let mut c = STATS_DUMP.to_vec();
                c[n] = b;
                let _ = parse_stats(&c);
            }
        }
    }
}
