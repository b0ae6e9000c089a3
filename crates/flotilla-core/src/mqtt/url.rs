//! Broker URLs: `mqtt://[user[:password]@]host[:port]` (plain TCP, port 1883 by default) and
//! `mqtts://…` (TLS, port 8883). User and password may be percent-encoded (`%40` for `@`).
//!
//! Errors say which part is wrong and never repeat the password.

use std::fmt;

use super::MqttError;

/// Default port of `mqtt://`.
pub const DEFAULT_PORT: u16 = 1883;
/// Default port of `mqtts://`.
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// A parsed broker URL. `Display` and `Debug` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `mqtts://`: connect with TLS.
    pub tls: bool,
    /// Host name or IP address; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl BrokerUrl {
    /// The whole URL with user and password (percent-encoded), for a client that must log in;
    /// never for logs (`Display` leaves the password out).
    pub fn with_credentials(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let info = match (&self.username, &self.password) {
            (Some(u), Some(p)) => format!("{}:{}@", encode(u), encode(p)),
            (Some(u), None) => format!("{}@", encode(u)),
            (None, _) => String::new(),
        };
        format!("{scheme}://{info}{}", self.authority())
    }

    /// `host:port` as a socket address string (IPv6 in brackets), for connecting and for logs.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        match &self.username {
            Some(user) => write!(f, "{scheme}://{user}@{}", self.authority()),
            None => write!(f, "{scheme}://{}", self.authority()),
        }
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerUrl")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Parses a broker URL; see the module doc for the accepted form.
pub fn parse_url(url: &str) -> Result<BrokerUrl, MqttError> {
    let bad = |msg: String| MqttError::InvalidUrl(msg);
    let url = url.trim();
    if url.is_empty() {
        return Err(bad("empty; write mqtt://host:port".into()));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad(format!("no scheme in {:?}; write mqtt://host:port or mqtts://host:port", redact(url))));
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" => false,
        "mqtts" => true,
        other => return Err(bad(format!("unsupported scheme {other:?}; use mqtt:// or mqtts://"))),
    };
    // The user info ends at the last `@`, so a password with a raw `@`, `/` or `?` still parses
    // and never ends up in an error message about the rest.
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    // Everything after `host:port` must be empty (a lone `/` is tolerated).
    let (hostport, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !tail.is_empty() && tail != "/" {
        return Err(bad(format!("unexpected {tail:?} after the host; a broker URL has no path or query")));
    }
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, pass) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let user = percent_decode(user).ok_or_else(|| bad("the user name has a bad %-escape".into()))?;
            if user.is_empty() {
                return Err(bad("empty user name before '@'".into()));
            }
            let pass = match pass {
                Some(p) => Some(percent_decode(p).ok_or_else(|| bad("the password has a bad %-escape".into()))?),
                None => None,
            };
            (Some(user), pass)
        }
    };
    let (host, port) = split_host_port(hostport).map_err(bad)?;
    let port = match port {
        Some(p) => p,
        None if tls => DEFAULT_TLS_PORT,
        None => DEFAULT_PORT,
    };
    Ok(BrokerUrl { tls, host, port, username, password })
}

/// Splits `host[:port]` / `[v6][:port]`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err(format!("missing ']' in {s:?}"));
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{v6:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| format!("unexpected {p:?} after ']'"))?),
        };
        (v6, port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if !host.contains(':') && !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("port {p:?} is not a number from 1 to 65535")),
            Ok(n) => Some(n),
        },
    };
    Ok((host.to_owned(), port))
}

/// Decodes `%XX` escapes; `None` on a bad escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with any password replaced, for error messages about URLs that did not parse.
fn redact(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((info, host)) => match info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ok(url: &str) -> BrokerUrl {
        parse_url(url).unwrap()
    }

    #[test]
    fn credentials_round_trip_percent_encoded() {
        let mut u = ok("mqtt://10.0.0.2:1883");
        u.username = Some("flo".into());
        u.password = Some("a/b:c@d %".into());
        let full = u.with_credentials();
        assert_eq!(full, "mqtt://flo:a%2Fb%3Ac%40d%20%25@10.0.0.2:1883");
        assert_eq!(ok(&full), u, "parses back to the same credentials");
        assert_eq!(u.to_string(), "mqtt://flo@10.0.0.2:1883", "Display keeps the password out");
        u.password = None;
        assert_eq!(u.with_credentials(), "mqtt://flo@10.0.0.2:1883");
    }
    fn err(url: &str) -> String {
        parse_url(url).unwrap_err().to_string()
    }

    #[test]
    fn schemes_and_default_ports() {
        let u = ok("mqtt://broker.lan");
        assert_eq!((u.tls, u.host.as_str(), u.port, u.username, u.password), (false, "broker.lan", 1883, None, None));
        let u = ok("mqtts://broker.lan");
        assert_eq!((u.tls, u.port), (true, 8883));
        let u = ok("  MQTT://10.0.0.2:1884/ ");
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "10.0.0.2", 1884));
    }

    #[test]
    fn credentials_are_split_and_percent_decoded() {
        let u = ok("mqtt://fleet:p%40ss%3Aword@host:1883");
        assert_eq!(u.username.as_deref(), Some("fleet"));
        assert_eq!(u.password.as_deref(), Some("p@ss:word"));
        let u = ok("mqtt://fleet@host");
        assert_eq!((u.username.as_deref(), u.password), (Some("fleet"), None));
        // A raw `@` in the password still works: the last `@` ends the user info.
        let u = ok("mqtt://fleet:a@b@host");
        assert_eq!(u.password.as_deref(), Some("a@b"));
        assert_eq!(u.host, "host");
    }

    #[test]
    fn ipv6_hosts() {
        let u = ok("mqtt://[::1]:1999");
        assert_eq!((u.host.as_str(), u.port), ("::1", 1999));
        assert_eq!(u.authority(), "[::1]:1999");
        assert_eq!(ok("mqtts://[fe80::1]").port, 8883);
        assert!(err("mqtt://[::1").contains("']'"));
        assert!(err("mqtt://[nope]:1").contains("IPv6"));
    }

    #[test]
    fn bad_urls_get_clear_errors() {
        assert!(err("").contains("empty"));
        assert!(err("broker.lan:1883").contains("no scheme"));
        assert!(err("http://broker.lan").contains("unsupported scheme \"http\""));
        assert!(err("ws://broker.lan").contains("use mqtt:// or mqtts://"));
        assert!(err("mqtt://").contains("no host"));
        assert!(err("mqtt://:1883").contains("no host"));
        assert!(err("mqtt://host:0").contains("port \"0\""));
        assert!(err("mqtt://host:99999").contains("port \"99999\""));
        assert!(err("mqtt://host:abc").contains("port \"abc\""));
        assert!(err("mqtt://host/topic").contains("no path"));
        assert!(err("mqtt://host?x=1").contains("no path"));
        assert!(err("mqtt://bad host").contains("not a host name"));
        assert!(err("mqtt://@host").contains("empty user name"));
        assert!(err("mqtt://u:%zz@host").contains("bad %-escape"));
    }

    #[test]
    fn passwords_never_show() {
        let u = ok("mqtt://fleet:hunter2@host");
        assert_eq!(u.to_string(), "mqtt://fleet@host:1883");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert!(!err("fleet:hunter2@host").contains("hunter2"));
        assert!(!err("mqtt://fleet:hunter2@host/x").contains("hunter2"));
        assert!(!err("mqtt://fleet:hunter2@bad host").contains("hunter2"));
        assert!(!err("mqtt://fleet:hun/ter2@host/x").contains("ter2"));
        assert_eq!(ok("mqtt://fleet:hun/ter?2@host").password.as_deref(), Some("hun/ter?2"));
    }
}
