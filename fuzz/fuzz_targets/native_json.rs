//! The native protocol's JSON from devices (check-in, report, MQTT status and presence): any
//! bytes are read into the types or refused, never a panic; what is read writes back and reads
//! again to the same value.
#![no_main]

use flotilla_proto::native::{CheckRequest, OtaStatus, Presence, ReportRequest};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let text = serde_json::to_vec(&v).expect("a value read writes back");
        let again: T = serde_json::from_slice(&text).expect("what was written reads again");
        assert_eq!(v, again);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<CheckRequest>(data);
    round_trip::<ReportRequest>(data);
    round_trip::<OtaStatus>(data);
    round_trip::<Presence>(data);
});
