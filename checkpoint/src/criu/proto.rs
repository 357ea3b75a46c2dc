//! Decoders of CRIU's image records, generated at build time from CRIU's own `.proto` files
//! (`proto/vendor/criu`, see `SOURCE.md` there).

#![allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    non_camel_case_types,
    unused_qualifications
)]

include!(concat!(env!("OUT_DIR"), "/_.rs"));
