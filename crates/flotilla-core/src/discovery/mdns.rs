//! Advertises the device server as `_flotilla._tcp.local.` so Flotilla-client firmware can find it
//! without a configured address. TXT: `api` (path of the device API), `fp` (site key id, for
//! pinning), `v` (engine version), and with the site certificate `tls` (the HTTPS port, when
//! HTTPS is on) and `fps` (SHA-256 of the certificate's public key, hex: pin it).
//!
//! mdns-sd runs its own thread; [`Advertiser::stop`] unregisters (a goodbye packet) and ends it.

use mdns_sd::{ServiceDaemon, ServiceInfo};

use crate::error::{CoreError, Result};

/// The service type Flotilla advertises.
pub const SERVICE_TYPE: &str = "_flotilla._tcp.local.";

/// A running mDNS advertisement.
pub struct Advertiser {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertiser").field("fullname", &self.fullname).finish_non_exhaustive()
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or_else(|| "flotilla".into())
}

impl Advertiser {
    /// Advertises the device server on `port` on every interface with an address.
    pub fn start(port: u16, key_id: &str) -> Result<Advertiser> {
        Advertiser::start_with(port, key_id, &[])
    }

    /// [`Advertiser::start`] with more TXT properties (`tls`: the HTTPS port, `fps`: SHA-256 of
    /// the site certificate's public key).
    pub fn start_with(port: u16, key_id: &str, extra: &[(&str, String)]) -> Result<Advertiser> {
        let err = |what: &str, e: mdns_sd::Error| {
            CoreError::io(format!("mDNS: {what}"), std::io::Error::other(e.to_string()))
        };
        let daemon = ServiceDaemon::new().map_err(|e| err("cannot start", e))?;
        let host = host_name();
        let instance = format!("Flotilla on {host}");
        let mut props = vec![("api", "/api/v1"), ("fp", key_id), ("v", env!("CARGO_PKG_VERSION"))];
        props.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let info = ServiceInfo::new(SERVICE_TYPE, &instance, &format!("{host}.local."), "", port, &props[..])
            .map_err(|e| err("bad service description", e))?
            .enable_addr_auto();
        let fullname = info.get_fullname().to_owned();
        daemon.register(info).map_err(|e| err("cannot register", e))?;
        Ok(Advertiser { daemon, fullname })
    }

    /// The advertised instance name.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// Says goodbye and stops the mDNS thread.
    pub fn stop(self) {
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}
