//! Topic filters and topics from clients: validation, and the subscription and retained trees
//! checked against a plain reading of MQTT 3.1.1 §4.7 on every input.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use flotilla_parse::mqtt::topics::{Message, Retained, Subscriptions, valid_filter, valid_topic};
use libfuzzer_sys::fuzz_target;

/// The specification, level by level, with nothing clever.
fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let (f, t): (Vec<&str>, Vec<&str>) = (filter.split('/').collect(), topic.split('/').collect());
    for (i, level) in f.iter().enumerate() {
        match *level {
            "#" => return true,
            "+" if i < t.len() => {}
            l if t.get(i) == Some(&l) => {}
            _ => return false,
        }
    }
    f.len() == t.len()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Lines: filters, then (after an empty line) topics.
    let mut parts = text.splitn(2, "\n\n");
    let filters: Vec<&str> = parts.next().unwrap_or_default().lines().take(16).collect();
    let topics: Vec<&str> = parts.next().unwrap_or_default().lines().take(16).collect();
    let mut subs = Subscriptions::default();
    let mut retained = Retained::default();
    let valid: Vec<&str> = filters.iter().copied().filter(|f| valid_filter(f)).collect();
    for (i, f) in valid.iter().enumerate() {
        subs.add(f, i as u64, 1);
    }
    for t in topics.iter().filter(|t| valid_topic(t)) {
        assert!(!t.contains(['+', '#']));
        let mut got = Vec::new();
        subs.matches(t, &mut got);
        let mut got: Vec<u64> = got.into_iter().map(|(c, _)| c).collect();
        got.sort_unstable();
        got.dedup();
        let want: Vec<u64> = (0..valid.len() as u64).filter(|&i| matches(valid[i as usize], t)).collect();
        assert_eq!(got, want, "subscribers of {t:?} among {valid:?}");
        retained.set(Arc::new(Message {
            topic: (*t).to_owned(),
            payload: Bytes::from_static(b"x"),
            qos: 1,
            from: None,
            device: None,
        }));
    }
    for f in &valid {
        let mut found = Vec::new();
        retained.matching(f, &mut found);
        for m in &found {
            assert!(matches(f, &m.topic), "{f:?} returned retained {:?}", m.topic);
        }
    }
    for (i, f) in valid.iter().enumerate() {
        subs.remove(f, i as u64);
    }
    for t in topics.iter().filter(|t| valid_topic(t)) {
        let mut got = Vec::new();
        subs.matches(t, &mut got);
        assert!(got.is_empty(), "nothing left after every filter was removed");
    }
});
