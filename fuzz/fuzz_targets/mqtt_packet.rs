//! Whatever a client sends the embedded broker: the decoder takes whole packets off the front of
//! the buffer, asks for more bytes, or refuses; never panics, never takes more than it was given.
#![no_main]

use bytes::BytesMut;
use flotilla_parse::mqtt::packet::{Packet, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the largest packet accepted, as the broker does (CONNECT and others).
    let max = if data.first().is_some_and(|b| b & 1 == 1) { 16 * 1024 } else { 320 * 1024 };
    let mut buf = BytesMut::from(data.get(1..).unwrap_or_default());
    loop {
        let before = buf.len();
        match decode(&mut buf, max) {
            Ok(Some(p)) => {
                assert!(buf.len() < before, "a packet consumes bytes");
                if let Packet::Publish(publish) = &p {
                    assert!(publish.payload.len() <= max);
                    assert!(publish.qos <= 2);
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "waiting for more consumes nothing");
                break;
            }
            Err(_) => break,
        }
    }
});
