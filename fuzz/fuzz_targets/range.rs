//! `Range` headers of firmware downloads: any header and length give the whole file, one range
//! inside it, or 416 — never a range outside the file.
#![no_main]

use flotilla_parse::range::{RangeDecision, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len_bytes, header)) = data.split_first_chunk::<8>() else { return };
    let Ok(header) = std::str::from_utf8(header) else { return };
    let len = u64::from_le_bytes(*len_bytes) % (64 << 20);
    match parse_range(header, len) {
        RangeDecision::Partial { start, end_inclusive } => {
            assert!(start <= end_inclusive && end_inclusive < len, "{header:?} on {len}: {start}-{end_inclusive}");
        }
        RangeDecision::Full | RangeDecision::Unsatisfiable => {}
    }
});
