//! The parsers that read bytes Flotilla does not control — from a LAN client or a dropped file —
//! into typed values, with no I/O: a firmware file ([`image`]), MQTT packets and topic trees
//! ([`mqtt`]), an HTTP `Range` header ([`range`]).
//!
//! None of them may panic, loop or allocate without bound, whatever the bytes: every length is
//! checked before it is used and every error names what was wrong. Each has a fuzz target in
//! `fuzz/` (see `docs/testing.md`); this crate is kept small so those build quickly.

pub mod image;
pub mod mqtt;
pub mod range;
