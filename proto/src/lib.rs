//! Generated protocol code (filled in by the snapshotter work).
