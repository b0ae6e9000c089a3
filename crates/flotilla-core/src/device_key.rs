//! [`DeviceKey`]: a device's MAC (or id) where a check-in reads it, its bytes kept inline.

use std::fmt;
use std::hash::{Hash, Hasher};

use hashbrown::Equivalent;

/// Bytes a key keeps inline: a normalised MAC (`aa:bb:cc:dd:ee:ff`) takes 17.
const INLINE: usize = 23;

/// A device's MAC as the key of a per-device map (looked up with a `&str`), or its id where a
/// check-in compares it.
///
/// A `String` keeps its bytes in an allocation of their own: finding one device among thousands
/// then costs a cache miss more than the table's own (the key's heap bytes, after the bucket),
/// on every check-in and in every map it reads. A normalised MAC is 17 bytes, so it is kept in
/// the bucket itself, as is any id of up to [`INLINE`] bytes; anything longer is kept on the
/// heap, so nothing is ever refused or cut.
///
/// It hashes as its `str` does and is [`Equivalent`] to it, so `map.get(mac)` with a `&str`
/// finds it.
#[derive(Clone)]
pub(crate) enum DeviceKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl DeviceKey {
    fn as_bytes(&self) -> &[u8] {
        match self {
            DeviceKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            DeviceKey::Heap(s) => s.as_bytes(),
        }
    }

    /// Is this `s`? (Bytes compared, no UTF-8 check.)
    pub(crate) fn is(&self, s: &str) -> bool {
        self.as_bytes() == s.as_bytes()
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            DeviceKey::Heap(s) => s,
            // Always whole UTF-8: the bytes were copied from a `str`, never cut.
            DeviceKey::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
        }
    }
}

impl From<&str> for DeviceKey {
    fn from(s: &str) -> DeviceKey {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                DeviceKey::Inline { len, bytes }
            }
            _ => DeviceKey::Heap(s.into()),
        }
    }
}

impl From<String> for DeviceKey {
    fn from(s: String) -> DeviceKey {
        DeviceKey::from(s.as_str())
    }
}

/// A map of keys is read with a `&str`: compared byte for byte, with no UTF-8 check (a lookup
/// compares a key or two on every check-in, in every map it reads).
impl Equivalent<DeviceKey> for str {
    fn equivalent(&self, key: &DeviceKey) -> bool {
        key.is(self)
    }
}

impl PartialEq for DeviceKey {
    fn eq(&self, other: &DeviceKey) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for DeviceKey {}

impl Hash for DeviceKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::DeviceMap;

    #[test]
    fn a_mac_is_kept_inline_and_anything_longer_on_the_heap_whole() {
        let mac = DeviceKey::from("aa:bb:cc:dd:ee:ff");
        assert!(matches!(mac, DeviceKey::Inline { len: 17, .. }));
        assert_eq!(mac.as_str(), "aa:bb:cc:dd:ee:ff");
        let exactly = "x".repeat(INLINE);
        assert!(matches!(DeviceKey::from(exactly.as_str()), DeviceKey::Inline { .. }));
        assert_eq!(DeviceKey::from(exactly.as_str()).as_str(), exactly);
        let long = "é".repeat(20); // 40 bytes, multi-byte characters
        let key = DeviceKey::from(long.as_str());
        assert!(matches!(key, DeviceKey::Heap(_)));
        assert_eq!(key.as_str(), long);
        assert_eq!(DeviceKey::from("").as_str(), "");
        assert!(DeviceKey::from("dev-1").is("dev-1") && !DeviceKey::from("dev-1").is("dev-"));
        assert!(key.is(&long) && !key.is(&long[..38]));
        // A multi-byte character that ends exactly at the inline limit stays whole.
        let edge = format!("{}é", "x".repeat(INLINE - 2));
        assert_eq!(DeviceKey::from(edge.as_str()).as_str(), edge);
    }

    #[test]
    fn a_map_finds_keys_by_str_as_it_stored_them() {
        let mut map: DeviceMap<DeviceKey, u32> = DeviceMap::default();
        let long = "y".repeat(40);
        map.insert("aa:bb:cc:dd:ee:ff".into(), 1);
        map.insert(DeviceKey::from(long.as_str()), 2);
        map.insert("aa:bb:cc:dd:ee:0f".into(), 3);
        assert_eq!(map.get("aa:bb:cc:dd:ee:ff"), Some(&1));
        assert_eq!(map.get(long.as_str()), Some(&2));
        assert_eq!(map.get("aa:bb:cc:dd:ee:0f"), Some(&3));
        assert_eq!(map.get("aa:bb:cc:dd:ee:fe"), None);
        // The inline bytes past the MAC are not part of it: a prefix is another key.
        assert_eq!(map.get("aa:bb:cc:dd:ee:f"), None);
        assert!(
            matches!(map.entry_ref("aa:bb:cc:dd:ee:ff"), hashbrown::hash_map::EntryRef::Occupied(o) if *o.get() == 1)
        );
        // The inventory's insert of a new device: looked up by `&str`, stored as a key.
        let hashbrown::hash_map::EntryRef::Vacant(v) = map.entry_ref("02:00:00:00:00:01") else {
            unreachable!("a key never inserted was found")
        };
        v.insert_with_key(DeviceKey::from("02:00:00:00:00:01"), 4);
        assert_eq!(map.get("02:00:00:00:00:01"), Some(&4));
        assert_eq!(map.remove("aa:bb:cc:dd:ee:ff"), Some(1));
        assert_eq!(map.len(), 3);
        assert_eq!(format!("{}", DeviceKey::from("ab")), "ab");
        assert_eq!(format!("{:?}", DeviceKey::from("ab")), "\"ab\"");
    }
}
