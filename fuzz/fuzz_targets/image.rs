//! Any file dropped on the firmware view: ESP32 and ESP8266 images, and gzips of them. The
//! parser must answer an image or a one-line error, never panic, and keep to its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// A small inflate limit keeps each run fast; the limit itself is what is tested.
const LIMIT: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    match flotilla_parse::image::inspect_with_limit(data, LIMIT) {
        Ok(info) => {
            // What it reports holds together.
            assert_eq!(info.sha256.len(), 64);
            assert!(info.size <= LIMIT.max(data.len() as u64));
            if let Some(gz) = &info.gzip {
                assert_eq!(gz.size, data.len() as u64);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
