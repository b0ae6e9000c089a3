//! The MAC of a LAN neighbour, for devices whose records carry none (ArduinoOTA's `_arduino._tcp`,
//! Tasmota's `_http._tcp`): one empty UDP datagram to the device makes the kernel resolve its
//! address (ARP), and the kernel's neighbour table (`/proc/net/arp`) then names its MAC. Works on
//! the laptop's own segment — where a technician's devices are; across a router there is no
//! answer, and the device stays unlisted until a probe or a check-in says more.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use flotilla_proto::device::normalize_mac;

/// How long to wait for the neighbour table to learn the address.
pub const WAIT: Duration = Duration::from_millis(1500);

/// The MAC of `ip` in a `/proc/net/arp` table, if the entry is complete (flag 0x2).
pub fn lookup(table: &str, ip: Ipv4Addr) -> Option<String> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [addr, _hw_type, flags, mac, ..] = cols.as_slice() else { return None };
        let complete = u32::from_str_radix(flags.trim_start_matches("0x"), 16).is_ok_and(|f| f & 0x2 != 0);
        (complete && addr.parse::<Ipv4Addr>().ok() == Some(ip) && *mac != "00:00:00:00:00:00")
            .then(|| normalize_mac(mac))
            .flatten()
    })
}

/// Resolves the MAC of the neighbour `ip` (poking it once on `port`); `None` when it is not on
/// this segment, not answering, or the platform has no `/proc/net/arp`.
pub async fn mac_of(ip: IpAddr, port: u16) -> Option<String> {
    let IpAddr::V4(v4) = ip else { return None };
    if v4.is_loopback() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
        return None;
    }
    let read = || std::fs::read_to_string("/proc/net/arp").ok().and_then(|t| lookup(&t, v4));
    if let Some(mac) = read() {
        return Some(mac);
    }
    // An empty datagram: ArduinoOTA ignores it, any other listener too; the kernel resolves the
    // address to send it.
    let socket = tokio::net::UdpSocket::bind(("0.0.0.0", 0)).await.ok()?;
    let _ = socket.send_to(&[], SocketAddr::new(ip, port.max(1))).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(mac) = read() {
            return Some(mac);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_tables_are_read_for_complete_entries_only() {
        let table = "IP address       HW type     Flags       HW address            Mask     Device\n\
                     10.213.3.2       0x1         0x2         0A:5B:1c:2d:3e:4f     *        flo-a\n\
                     10.213.3.9       0x1         0x0         00:00:00:00:00:00     *        flo-a\n";
        assert_eq!(lookup(table, Ipv4Addr::new(10, 213, 3, 2)).as_deref(), Some("0a:5b:1c:2d:3e:4f"));
        assert_eq!(lookup(table, Ipv4Addr::new(10, 213, 3, 9)), None, "incomplete");
        assert_eq!(lookup(table, Ipv4Addr::new(10, 213, 3, 7)), None, "absent");
        assert_eq!(lookup("garbage\nmore garbage", Ipv4Addr::new(10, 0, 0, 1)), None);
    }
}
