//! The client's address, believed from `X-Forwarded-For` only when the TCP peer is a trusted proxy.
//!
//! `TRUSTED_PROXIES` lists the networks of the proxies in front of a service (for the gateway: a
//! load balancer or ingress, if any; for the user-service: the gateway). When the peer is not in
//! one, the header is ignored: anyone could have written it. When it is, the client is the
//! rightmost address of the header that is not itself a trusted proxy (every proxy appends the
//! address it saw; entries further left were written by whoever connected to the first proxy, and
//! may be forged).
use std::{fmt, net::IpAddr, str::FromStr};

use ::http::HeaderMap;

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        let (address, prefix) = match value.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (value, None),
        };
        let address: IpAddr =
            address.parse().map_err(|_| format!("{value:?} is not an IP address or a CIDR network"))?;
        let address = address.to_canonical();
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= max)
                .ok_or_else(|| format!("{value:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { address, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// The trusted proxy networks; empty (the default) trusts no one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    pub fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(address))
    }

    /// The client address for a request from TCP peer `peer` carrying `headers`.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect::<Vec<_>>();
        let mut client = peer;
        for entry in entries.iter().rev() {
            // Whatever follows an unreadable entry is unknown: the last address known stands.
            let Some(address) = parse_entry(entry) else { break };
            client = address;
            if !self.trusts(address) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`, `[2001:db8::1]:80`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|socket| socket.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

impl FromStr for TrustedProxies {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        value
            .split(',')
            .map(str::trim)
            .filter(|network| !network.is_empty())
            .map(Network::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(value: &str) -> IpAddr {
        value.parse().unwrap()
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn networks_parse_and_match_by_prefix() {
        let network: Network = "10.1.0.0/16".parse().unwrap();
        assert!(network.contains(ip("10.1.200.3")));
        assert!(!network.contains(ip("10.2.0.1")));
        assert!(network.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped IPv6 is the IPv4 address");
        let single: Network = "127.0.0.1".parse().unwrap();
        assert!(single.contains(ip("127.0.0.1")) && !single.contains(ip("127.0.0.2")));
        let v6: Network = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let everything: Network = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains(ip("203.0.113.1")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "fd00::/129", "localhost", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_list_is_comma_separated_and_empty_trusts_no_one() {
        let proxies: TrustedProxies = " 127.0.0.1/32, 10.0.0.0/8 ,".parse().unwrap();
        assert!(proxies.trusts(ip("10.9.9.9")) && proxies.trusts(ip("127.0.0.1")));
        assert!(!TrustedProxies::default().trusts(ip("127.0.0.1")));
        assert!("10.0.0.0/8, nonsense".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_the_header_says() {
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        assert_eq!(proxies.client_address(ip("198.51.100.7"), &forwarded("203.0.113.1")), ip("198.51.100.7"));
        assert_eq!(TrustedProxies::default().client_address(ip("10.0.0.1"), &forwarded("1.2.3.4")), ip("10.0.0.1"));
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_entry() {
        let proxies: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let headers = forwarded("6.6.6.6, 198.51.100.7, 10.0.0.5");
        assert_eq!(
            proxies.client_address(ip("10.0.0.2"), &headers),
            ip("198.51.100.7"),
            "the forged 6.6.6.6 is ignored"
        );
        assert_eq!(proxies.client_address(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"), "no header: the proxy");
        assert_eq!(proxies.client_address(ip("10.0.0.2"), &forwarded("10.0.0.9")), ip("10.0.0.9"));
        assert_eq!(proxies.client_address(ip("10.0.0.2"), &forwarded("garbage, 10.0.0.9")), ip("10.0.0.9"));
        assert_eq!(proxies.client_address(ip("10.0.0.2"), &forwarded("[2001:db8::1]:443")), ip("2001:db8::1"));
    }
}
