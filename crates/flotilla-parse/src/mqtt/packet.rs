//! MQTT 3.1.1 packets as the embedded broker reads and writes them: a decoder for what clients
//! send and encoders for what the broker answers.
//!
//! The decoder never panics: every length is checked before it is used, and a packet that breaks
//! the specification is a [`Malformed`] error, after which the broker closes the connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a packet could not be read. The connection that sent it is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

/// A client's Last Will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
}

/// CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol level: 4 for MQTT 3.1.1 (protocol name "MQTT"), 3 for MQTT 3.1 ("MQIsdp").
    pub level: u8,
    /// Whether the protocol name and level go together (`MQTT` 4 or `MQIsdp` 3); a CONNECT with a
    /// known name and another level is answered CONNACK 1 (MQTT 3.1.1, 3.1.2.2).
    pub supported: bool,
    pub client_id: String,
    pub clean_session: bool,
    /// Seconds; 0 turns the keep-alive check off.
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub will: Option<Will>,
}

/// PUBLISH, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub packet_id: u16,
    pub payload: Bytes,
}

/// A packet a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe { packet_id: u16, filters: Vec<(String, u8)> },
    Unsubscribe { packet_id: u16, filters: Vec<String> },
    PingReq,
    Disconnect,
}

/// Takes one whole packet off the front of `buf`: `Ok(None)` when more bytes are needed.
/// A packet whose remaining length exceeds `max` is refused before it is buffered.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Packet>, Malformed> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let mut len: usize = 0;
    let mut shift = 0;
    let mut header = 1;
    loop {
        let Some(&b) = buf.get(header) else { return Ok(None) };
        header += 1;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(Malformed("remaining length longer than 4 bytes"));
        }
    }
    if len > max {
        return Err(Malformed("packet larger than the broker accepts"));
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    buf.advance(header);
    let body = buf.split_to(len).freeze();
    parse(first, body).map(Some)
}

fn parse(first: u8, mut body: Bytes) -> Result<Packet, Malformed> {
    let flags = first & 0x0f;
    let packet = match first >> 4 {
        1 if flags == 0 => Packet::Connect(Box::new(connect(&mut body)?)),
        3 => Packet::Publish(publish(flags, &mut body)?),
        4 if flags == 0 => Packet::PubAck(u16_of(&mut body)?),
        5 if flags == 0 => Packet::PubRec(u16_of(&mut body)?),
        6 if flags == 2 => Packet::PubRel(u16_of(&mut body)?),
        7 if flags == 0 => Packet::PubComp(u16_of(&mut body)?),
        8 if flags == 2 => {
            let packet_id = u16_of(&mut body)?;
            let mut filters = Vec::new();
            while body.has_remaining() {
                let filter = string(&mut body)?;
                let qos = u8_of(&mut body)?;
                if qos > 2 {
                    return Err(Malformed("SUBSCRIBE asks for a QoS above 2"));
                }
                filters.push((filter, qos));
            }
            if filters.is_empty() {
                return Err(Malformed("SUBSCRIBE without a topic filter"));
            }
            return Ok(Packet::Subscribe { packet_id, filters });
        }
        10 if flags == 2 => {
            let packet_id = u16_of(&mut body)?;
            let mut filters = Vec::new();
            while body.has_remaining() {
                filters.push(string(&mut body)?);
            }
            if filters.is_empty() {
                return Err(Malformed("UNSUBSCRIBE without a topic filter"));
            }
            return Ok(Packet::Unsubscribe { packet_id, filters });
        }
        12 if flags == 0 => Packet::PingReq,
        14 if flags == 0 => Packet::Disconnect,
        2 | 9 | 11 | 13 => return Err(Malformed("a packet only a server sends")),
        0 | 15 => return Err(Malformed("reserved packet type")),
        _ => return Err(Malformed("wrong fixed-header flags")),
    };
    if body.has_remaining() {
        return Err(Malformed("bytes after the end of the packet"));
    }
    Ok(packet)
}

fn connect(body: &mut Bytes) -> Result<Connect, Malformed> {
    let protocol = string(body)?;
    let level = u8_of(body)?;
    let supported = match protocol.as_str() {
        "MQTT" => level == 4,
        "MQIsdp" => level == 3,
        _ => return Err(Malformed("not an MQTT CONNECT (protocol name)")),
    };
    let flags = u8_of(body)?;
    if flags & 0x01 != 0 {
        return Err(Malformed("CONNECT reserved flag set"));
    }
    let keep_alive = u16_of(body)?;
    let client_id = string(body)?;
    let will_qos = (flags >> 3) & 0x03;
    let will = if flags & 0x04 != 0 {
        if will_qos > 2 {
            return Err(Malformed("will QoS above 2"));
        }
        let topic = string(body)?;
        let payload = binary(body)?;
        Some(Will { topic, payload, qos: will_qos, retain: flags & 0x20 != 0 })
    } else {
        if will_qos != 0 || flags & 0x20 != 0 {
            return Err(Malformed("will QoS or retain without a will"));
        }
        None
    };
    let username = if flags & 0x80 != 0 { Some(string(body)?) } else { None };
    let password = if flags & 0x40 != 0 { Some(binary(body)?) } else { None };
    Ok(Connect { level, supported, client_id, clean_session: flags & 0x02 != 0, keep_alive, username, password, will })
}

fn publish(flags: u8, body: &mut Bytes) -> Result<Publish, Malformed> {
    let qos = (flags >> 1) & 0x03;
    if qos == 3 {
        return Err(Malformed("PUBLISH with QoS 3"));
    }
    let topic = string(body)?;
    let packet_id = if qos > 0 { u16_of(body)? } else { 0 };
    if qos > 0 && packet_id == 0 {
        return Err(Malformed("PUBLISH with packet id 0"));
    }
    let payload = body.split_off(0);
    Ok(Publish { topic, qos, retain: flags & 0x01 != 0, packet_id, payload })
}

fn u8_of(body: &mut Bytes) -> Result<u8, Malformed> {
    if body.remaining() < 1 {
        return Err(Malformed("packet ends early"));
    }
    Ok(body.get_u8())
}

fn u16_of(body: &mut Bytes) -> Result<u16, Malformed> {
    if body.remaining() < 2 {
        return Err(Malformed("packet ends early"));
    }
    Ok(body.get_u16())
}

fn binary(body: &mut Bytes) -> Result<Bytes, Malformed> {
    let len = usize::from(u16_of(body)?);
    if body.remaining() < len {
        return Err(Malformed("string longer than the packet"));
    }
    Ok(body.split_to(len))
}

fn string(body: &mut Bytes) -> Result<String, Malformed> {
    let bytes = binary(body)?;
    let s = std::str::from_utf8(&bytes).map_err(|_| Malformed("string is not UTF-8"))?;
    if s.contains('\0') {
        return Err(Malformed("string contains NUL"));
    }
    Ok(s.to_owned())
}

// ---- what the broker writes -------------------------------------------------------------------

/// CONNACK return codes.
pub mod connack {
    pub const ACCEPTED: u8 = 0;
    pub const BAD_PROTOCOL: u8 = 1;
    pub const BAD_CLIENT_ID: u8 = 2;
    pub const BAD_LOGIN: u8 = 4;
    pub const NOT_AUTHORIZED: u8 = 5;
}

fn put_len(out: &mut BytesMut, mut len: usize) {
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if len == 0 {
            break;
        }
    }
}

pub fn connack(code: u8) -> Bytes {
    Bytes::copy_from_slice(&[0x20, 2, 0, code])
}

/// PUBACK (4), PUBREC (5), PUBREL (6, flags 2), PUBCOMP (7) or UNSUBACK (11).
pub fn ack(kind: u8, packet_id: u16) -> Bytes {
    let first = (kind << 4) | if kind == 6 { 2 } else { 0 };
    let id = packet_id.to_be_bytes();
    Bytes::copy_from_slice(&[first, 2, id[0], id[1]])
}

pub fn suback(packet_id: u16, granted: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + granted.len() + 2);
    out.put_u8(0x90);
    put_len(&mut out, 2 + granted.len());
    out.put_u16(packet_id);
    out.put_slice(granted);
    out.freeze()
}

pub fn pingresp() -> Bytes {
    Bytes::from_static(&[0xd0, 0])
}

/// The header of a PUBLISH (everything before its payload) into `out`.
pub fn publish_header(out: &mut BytesMut, topic: &str, qos: u8, retain: bool, packet_id: u16, payload_len: usize) {
    out.put_u8(0x30 | (qos << 1) | u8::from(retain));
    let len = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload_len;
    put_len(out, len);
    // Topics are checked to be at most 65,535 bytes before they are accepted.
    out.put_u16(u16::try_from(topic.len()).unwrap_or(u16::MAX));
    out.put_slice(topic.as_bytes());
    if qos > 0 {
        out.put_u16(packet_id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn frame(first: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u8(first);
        put_len(&mut b, body.len());
        b.put_slice(body);
        b
    }

    #[test]
    fn a_packet_is_taken_only_when_whole() {
        let mut whole = frame(0x30, b"\x00\x03a/bhello");
        let mut part = BytesMut::from(&whole[..5]);
        assert_eq!(decode(&mut part, 1024), Ok(None));
        let p = decode(&mut whole, 1024).unwrap().unwrap();
        assert_eq!(
            p,
            Packet::Publish(Publish {
                topic: "a/b".into(),
                qos: 0,
                retain: false,
                packet_id: 0,
                payload: Bytes::from_static(b"hello")
            })
        );
        assert!(whole.is_empty());
    }

    #[test]
    fn the_remaining_length_uses_up_to_four_bytes() {
        for len in [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
            let mut b = BytesMut::new();
            put_len(&mut b, len);
            let mut full = BytesMut::from(&[0xc0][..]);
            full.extend_from_slice(&b);
            full.extend(std::iter::repeat_n(0, len));
            // PINGREQ with a body is malformed, but its length must be read right first.
            let r = decode(&mut full, usize::MAX);
            if len == 0 {
                assert_eq!(r, Ok(Some(Packet::PingReq)));
            } else {
                assert_eq!(r, Err(Malformed("bytes after the end of the packet")), "{len}");
            }
        }
        let mut five = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert!(decode(&mut five, usize::MAX).is_err());
    }

    #[test]
    fn bad_packets_are_errors_not_panics() {
        let cases: &[(u8, &[u8])] = &[
            (0x10, b""),                 // CONNECT with nothing
            (0x10, b"\x00\x04MQTT\x04"), // ends early
            (0x10, b"\x00\x04HTTP\x04\x02\x00\x3c\x00\x00"),
            (0x10, b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x00"), // reserved flag
            (0x30, b"\x00\x09a/b"),                          // topic longer than the packet
            (0x32, b"\x00\x03a/b\x00\x00"),                  // QoS 1 with packet id 0
            (0x36, b"\x00\x03a/b\x00\x01"),                  // QoS 3
            (0x80, b"\x00\x01\x00\x01a\x00"),                // SUBSCRIBE with flags 0
            (0x82, b"\x00\x01"),                             // SUBSCRIBE without filters
            (0x82, b"\x00\x01\x00\x01a\x03"),                // QoS 3
            (0x82, b"\x00\x01\x00\x02\xff\xfe\x00"),         // not UTF-8
            (0x20, b"\x00\x00"),                             // CONNACK from a client
            (0xf0, b""),
            (0xe0, b"\x00"),
        ];
        for (first, body) in cases {
            let mut b = frame(*first, body);
            assert!(decode(&mut b, 1 << 20).is_err(), "{first:#x} {body:?}");
        }
        let mut big = frame(0x30, &[0; 100]);
        assert_eq!(decode(&mut big, 99), Err(Malformed("packet larger than the broker accepts")));
    }

    #[test]
    fn connect_with_login_and_will() {
        let mut body = Vec::new();
        body.extend_from_slice(b"\x00\x04MQTT\x04");
        body.push(0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02);
        body.extend_from_slice(&30u16.to_be_bytes());
        for s in [&b"dev"[..], b"will/dev", b"gone", b"user", b"pw"] {
            body.extend_from_slice(&(s.len() as u16).to_be_bytes());
            body.extend_from_slice(s);
        }
        let Packet::Connect(c) = decode(&mut frame(0x10, &body), 1024).unwrap().unwrap() else { panic!() };
        assert_eq!(c.client_id, "dev");
        assert_eq!(c.keep_alive, 30);
        assert!(c.clean_session);
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
        let w = c.will.unwrap();
        assert_eq!((w.topic.as_str(), &w.payload[..], w.qos, w.retain), ("will/dev", &b"gone"[..], 1, true));
    }

    #[test]
    fn publish_header_round_trips() {
        let mut out = BytesMut::new();
        publish_header(&mut out, "a/b", 1, true, 7, 3);
        out.put_slice(b"xyz");
        let Packet::Publish(p) = decode(&mut out, 1024).unwrap().unwrap() else { panic!() };
        assert_eq!((p.topic.as_str(), p.qos, p.retain, p.packet_id, &p.payload[..]), ("a/b", 1, true, 7, &b"xyz"[..]));
    }
}
