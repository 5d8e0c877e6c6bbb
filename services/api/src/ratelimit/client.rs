//! Who a request comes from: the connection's peer, or the client named by
//! `X-Forwarded-For` behind a trusted proxy; and the bucket an address counts
//! in (IPv6 by /64, the block one subscriber gets).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};

/// An address or a CIDR block (`10.0.0.0/8`, `fd00::/8`, `192.168.1.7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u32,
}

impl Network {
    pub fn parse(text: &str) -> Option<Network> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, Some(prefix.parse::<u32>().ok()?)),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            tracing::warn!(network = text, "ignoring a trusted proxy with an invalid prefix");
            return None;
        }
        Some(Network { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            other => other,
        };
        let ((net, net_len), (candidate, len)) = (bits(self.addr), bits(ip));
        if net_len != len {
            return false;
        }
        if self.prefix == 0 {
            return true;
        }
        let mask = u128::MAX << (128 - self.prefix);
        net & mask == candidate & mask
    }
}

/// The client's address: the connection's peer, unless that peer is a trusted
/// proxy — then the nearest address in `X-Forwarded-For` that is not one.
/// Untrusted peers cannot choose their own bucket with a forged header.
pub fn client_ip(request: &Request, trusted: &[Network]) -> Option<IpAddr> {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())?;
    forwarded_client(peer, request.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()), trusted)
}

/// Whether the connection comes from a trusted proxy, the only peer whose
/// forwarded headers (`X-Forwarded-For`, `-Host`, `-Proto`) are believed.
pub fn from_trusted_proxy(request: &Request, trusted: &[Network]) -> bool {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(addr)| trusted.iter().any(|n| n.contains(addr.ip())))
}

fn forwarded_client<'a>(peer: IpAddr, forwarded: impl Iterator<Item = &'a str>, trusted: &[Network]) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<IpAddr> =
        forwarded.flat_map(|v| v.split(',')).filter_map(|hop| hop.trim().parse::<IpAddr>().ok()).collect();
    Some(hops.into_iter().rev().find(|ip| !is_trusted(*ip)).unwrap_or(peer))
}

/// The rate-limit key of an address: IPv4 (also IPv4-mapped IPv6) as is,
/// IPv6 by its /64 prefix, since one subscriber holds a whole /64.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_behind_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted = vec![Network::parse("10.0.0.0/8").unwrap(), Network::parse("192.168.1.7").unwrap()];
        // An untrusted peer cannot pick its bucket with a forged header.
        assert_eq!(forwarded_client(ip("203.0.113.9"), ["1.2.3.4"].into_iter(), &trusted), Some(ip("203.0.113.9")));
        // Behind the ingress: the nearest untrusted hop is the client.
        assert_eq!(
            forwarded_client(ip("10.1.2.3"), ["1.2.3.4, 198.51.100.2, 10.9.9.9"].into_iter(), &trusted),
            Some(ip("198.51.100.2"))
        );
        assert_eq!(forwarded_client(ip("192.168.1.7"), std::iter::empty(), &trusted), Some(ip("192.168.1.7")));
        assert_eq!(
            forwarded_client(ip("::ffff:10.0.0.1"), ["2001:db8::1"].into_iter(), &trusted),
            Some(ip("2001:db8::1"))
        );
        assert!(Network::parse("10.0.0.0/33").is_none());
        assert!(Network::parse("not-an-ip").is_none());
        assert!(Network::parse("::/0").unwrap().contains(ip("2001:db8::5")));
        assert!(!Network::parse("10.0.0.0/8").unwrap().contains(ip("11.0.0.1")));
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix() {
        let key = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(key("::ffff:198.51.100.7"), "198.51.100.7");
        assert_eq!(key("198.51.100.7"), "198.51.100.7");
        assert_ne!(key("198.51.100.7"), key("198.51.100.8"));
    }
}
