//! The node's connection URI (`pubkey@host:port`) that sellers open channels to: parsed from
//! `magma-connection-uri` or derived from `getinfo`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UriHost {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    /// A Tor v3 onion service name, `*.onion`.
    Tor(String),
    Dns(String),
}

impl fmt::Display for UriHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriHost::Ipv4(ip) => write!(f, "{ip}"),
            UriHost::Ipv6(ip) => write!(f, "[{ip}]"),
            UriHost::Tor(name) | UriHost::Dns(name) => f.write_str(name),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionUri {
    pub pubkey: String,
    pub host: UriHost,
    pub port: u16,
}

impl fmt::Display for ConnectionUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.pubkey, self.host, self.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("must be pubkey@host:port, got {0:?}")]
    Shape(String),
    #[error("the node id must be 66 hex characters starting with 02 or 03, got {0:?}")]
    Pubkey(String),
    #[error("the port must be a number from 1 to 65535, got {0:?}")]
    Port(String),
    #[error("{0:?} is not an IPv4 or [IPv6] address, a DNS name or a .onion name")]
    Host(String),
    #[error(
        "no address sellers can reach: getinfo announces {announced} and binds {bound}; announce a public address (announce-addr) or set magma-connection-uri=pubkey@host:port"
    )]
    Unreachable { announced: String, bound: String },
}

/// Where the URI in use came from, for `magma-status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriSource {
    Option,
    Announced,
    Binding,
}

impl UriSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UriSource::Option => "magma-connection-uri",
            UriSource::Announced => "announced address",
            UriSource::Binding => "bound address",
        }
    }
}

pub fn valid_pubkey(s: &str) -> bool {
    s.len() == 66
        && (s.starts_with("02") || s.starts_with("03"))
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ConnectionUri {
    pub fn parse(raw: &str) -> Result<ConnectionUri, UriError> {
        let (pubkey, hostport) = raw
            .split_once('@')
            .ok_or_else(|| UriError::Shape(raw.to_string()))?;
        if !valid_pubkey(pubkey) {
            return Err(UriError::Pubkey(pubkey.to_string()));
        }
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| UriError::Shape(raw.to_string()))?;
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(UriError::Port(port.to_string())),
        };
        Ok(ConnectionUri {
            pubkey: pubkey.to_string(),
            host: parse_host(host)?,
            port,
        })
    }

    fn new(pubkey: &str, host: UriHost, port: u16) -> ConnectionUri {
        ConnectionUri {
            pubkey: pubkey.to_string(),
            host,
            port,
        }
    }
}

fn parse_host(host: &str) -> Result<UriHost, UriError> {
    let bad = || UriError::Host(host.to_string());
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse().map(UriHost::Ipv6).map_err(|_| bad());
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(UriHost::Ipv4(ip));
    }
    let lower = host.to_ascii_lowercase();
    if let Some(name) = lower.strip_suffix(".onion") {
        let base32 = |b: u8| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b);
        return if name.len() == 56 && name.bytes().all(base32) {
            Ok(UriHost::Tor(lower))
        } else {
            Err(bad())
        };
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() <= 253 && host.contains('.') && host.split('.').all(label_ok) {
        // All-numeric names would be mistyped IPv4 addresses.
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(bad());
        }
        return Ok(UriHost::Dns(lower));
    }
    Err(bad())
}

/// The parts of `getinfo` the URI is derived from.
#[derive(Clone, Debug, Deserialize)]
pub struct GetinfoAddresses {
    pub id: String,
    #[serde(default)]
    pub address: Vec<NodeAddress>,
    #[serde(default)]
    pub binding: Vec<NodeAddress>,
    pub network: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
}

impl NodeAddress {
    fn describe(&self) -> String {
        match (&self.address, self.port) {
            (Some(a), Some(p)) if self.kind == "ipv6" => format!("[{a}]:{p}"),
            (Some(a), Some(p)) => format!("{a}:{p}"),
            (Some(a), None) => a.clone(),
            _ => self.kind.clone(),
        }
    }

    /// The host this address offers, if it is one a seller could use. On regtest every address
    /// counts, since sellers there are local test nodes.
    fn usable_host(&self, any_ip: bool) -> Option<(u8, UriHost)> {
        let addr = self.address.as_deref()?;
        match self.kind.as_str() {
            "ipv4" => {
                let ip: Ipv4Addr = addr.parse().ok()?;
                (any_ip || is_public(IpAddr::V4(ip))).then_some((0, UriHost::Ipv4(ip)))
            }
            "ipv6" => {
                let ip: Ipv6Addr = addr.parse().ok()?;
                (any_ip || is_public(IpAddr::V6(ip))).then_some((1, UriHost::Ipv6(ip)))
            }
            "dns" => match parse_host(addr).ok()? {
                host @ UriHost::Dns(_) => Some((2, host)),
                _ => None,
            },
            "torv3" => match parse_host(addr).ok()? {
                host @ UriHost::Tor(_) => Some((3, host)),
                _ => None,
            },
            // torv2 is dead; websocket and anything newer are not for channel opens.
            _ => None,
        }
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// The URI to give sellers: the operator's override, else the best announced address (IPv4,
/// then IPv6, DNS, Tor), else a public bound address.
pub fn resolve(
    configured: Option<&ConnectionUri>,
    info: &GetinfoAddresses,
) -> Result<(ConnectionUri, UriSource), UriError> {
    if let Some(uri) = configured {
        return Ok((uri.clone(), UriSource::Option));
    }
    let any_ip = info.network == "regtest";
    let best = |list: &[NodeAddress]| {
        list.iter()
            .filter_map(|a| a.usable_host(any_ip).map(|(rank, h)| (rank, h, a.port)))
            .min_by_key(|(rank, _, _)| *rank)
            .map(|(_, host, port)| (host, port.unwrap_or(9735)))
    };
    if let Some((host, port)) = best(&info.address) {
        return Ok((
            ConnectionUri::new(&info.id, host, port),
            UriSource::Announced,
        ));
    }
    if let Some((host, port)) = best(&info.binding).filter(|(h, _)| !matches!(h, UriHost::Dns(_))) {
        return Ok((ConnectionUri::new(&info.id, host, port), UriSource::Binding));
    }
    let list = |l: &[NodeAddress]| {
        if l.is_empty() {
            "nothing".to_string()
        } else {
            l.iter()
                .map(NodeAddress::describe)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    Err(UriError::Unreachable {
        announced: list(&info.address),
        bound: list(&info.binding),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "03d4869a84dcae5fc1412ebf8b14e70b06d565849883d55a299bd7eba46e2fcdf5";
    const ONION: &str = "vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion";

    fn info(
        network: &str,
        address: serde_json::Value,
        binding: serde_json::Value,
    ) -> GetinfoAddresses {
        serde_json::from_value(
            json!({"id": ID, "network": network, "address": address, "binding": binding}),
        )
        .unwrap()
    }

    #[test]
    fn the_fixture_getinfo_gives_its_regtest_address() {
        let raw = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/cln/getinfo.json"
        ))
        .unwrap();
        let info: GetinfoAddresses = serde_json::from_str(&raw).unwrap();
        let (uri, source) = resolve(None, &info).unwrap();
        assert_eq!(uri.to_string(), format!("{ID}@127.0.0.1:19846"));
        assert_eq!(source, UriSource::Announced);
    }

    #[test]
    fn derivation_table() {
        type Case = (
            &'static str,
            serde_json::Value,
            serde_json::Value,
            Result<(String, UriSource), &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "bitcoin",
                json!([{"type":"ipv4","address":"203.0.114.7","port":9735}]),
                json!([]),
                Ok((format!("{ID}@203.0.114.7:9735"), UriSource::Announced)),
            ),
            (
                "bitcoin",
                json!([{"type":"ipv6","address":"2a01:4f8::1","port":9736}]),
                json!([]),
                Ok((format!("{ID}@[2a01:4f8::1]:9736"), UriSource::Announced)),
            ),
            (
                "bitcoin",
                json!([{"type":"torv3","address":ONION,"port":9735}]),
                json!([]),
                Ok((format!("{ID}@{ONION}:9735"), UriSource::Announced)),
            ),
            (
                "bitcoin",
                json!([{"type":"dns","address":"node.example.net","port":9735}]),
                json!([]),
                Ok((format!("{ID}@node.example.net:9735"), UriSource::Announced)),
            ),
            // IPv4 is preferred over Tor and DNS whatever the order.
            (
                "bitcoin",
                json!([{"type":"torv3","address":ONION,"port":9735},{"type":"dns","address":"n.example.net","port":1},{"type":"ipv4","address":"8.8.4.4","port":9735}]),
                json!([]),
                Ok((format!("{ID}@8.8.4.4:9735"), UriSource::Announced)),
            ),
            // Nothing announced, but bound to a public address.
            (
                "bitcoin",
                json!([]),
                json!([{"type":"ipv4","address":"8.8.8.8","port":9735}]),
                Ok((format!("{ID}@8.8.8.8:9735"), UriSource::Binding)),
            ),
            // Private and loopback addresses are not reachable on a real network.
            (
                "bitcoin",
                json!([{"type":"ipv4","address":"192.168.1.5","port":9735}]),
                json!([{"type":"ipv4","address":"127.0.0.1","port":9735}]),
                Err("announces 192.168.1.5:9735 and binds 127.0.0.1:9735"),
            ),
            (
                "signet",
                json!([]),
                json!([{"type":"ipv6","address":"::1","port":9735}]),
                Err("announces nothing and binds [::1]:9735"),
            ),
            (
                "bitcoin",
                json!([]),
                json!([]),
                Err("announces nothing and binds nothing"),
            ),
            // On regtest the sellers are local too.
            (
                "regtest",
                json!([]),
                json!([{"type":"ipv4","address":"127.0.0.1","port":19846}]),
                Ok((format!("{ID}@127.0.0.1:19846"), UriSource::Binding)),
            ),
        ];
        for (network, address, binding, want) in cases {
            let got = resolve(None, &info(network, address.clone(), binding))
                .map(|(u, s)| (u.to_string(), s));
            match want {
                Ok(w) => assert_eq!(got.unwrap(), w, "{address}"),
                Err(words) => {
                    let text = got.unwrap_err().to_string();
                    assert!(text.contains(words), "{text}");
                    assert!(text.contains("magma-connection-uri"), "{text}");
                }
            }
        }
    }

    #[test]
    fn the_override_wins() {
        let over = ConnectionUri::parse(&format!("{ID}@[2001:db9::5]:9999")).unwrap();
        let (uri, source) = resolve(
            Some(&over),
            &info(
                "bitcoin",
                json!([{"type":"ipv4","address":"8.8.8.8","port":9735}]),
                json!([]),
            ),
        )
        .unwrap();
        assert_eq!(uri, over);
        assert_eq!(source, UriSource::Option);
        assert_eq!(uri.to_string(), format!("{ID}@[2001:db9::5]:9999"));
    }

    #[test]
    fn parse_rules() {
        for ok in [
            format!("{ID}@1.2.3.4:9735"),
            format!("{ID}@[::1]:9735"),
            format!("{ID}@{ONION}:9735"),
            format!("{ID}@node.example.net:9735"),
        ] {
            let uri = ConnectionUri::parse(&ok).unwrap();
            assert_eq!(uri.to_string(), ok);
        }
        let bad = [
            (ID.to_string(), "pubkey@host:port"),
            (format!("{ID}@1.2.3.4"), "pubkey@host:port"),
            (format!("{ID}@1.2.3.4:0"), "port"),
            (format!("{ID}@1.2.3.4:70000"), "port"),
            (format!("04{}@1.2.3.4:9735", &ID[2..]), "node id"),
            ("zz@1.2.3.4:9735".to_string(), "node id"),
            (format!("{ID}@::1:9735"), "not an IPv4"),
            (format!("{ID}@short.onion:9735"), "not an IPv4"),
            (format!("{ID}@localhost:9735"), "not an IPv4"),
            (format!("{ID}@1.2.3:9735"), "not an IPv4"),
        ];
        for (raw, words) in bad {
            let text = ConnectionUri::parse(&raw).unwrap_err().to_string();
            assert!(text.contains(words), "{raw}: {text}");
        }
    }
}
