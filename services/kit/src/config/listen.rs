//! The gRPC listen address: `host:port`, or a bare port (`50051` or `:50051`)
//! whose host depends on the process (loopback under `serve all`, every
//! interface for split roles).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// An address as given.
    Socket(SocketAddr),
    /// A port on the process's default host.
    Port(u16),
}

impl ListenAddr {
    /// The address to bind: `default_host` for a bare port.
    pub fn resolve(self, default_host: IpAddr) -> SocketAddr {
        match self {
            ListenAddr::Socket(addr) => addr,
            ListenAddr::Port(port) => SocketAddr::new(default_host, port),
        }
    }

    /// Loopback, where `serve all` binds a bare port.
    pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    /// Every interface, where split roles bind a bare port.
    pub const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> Self {
        ListenAddr::Socket(addr)
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if let Ok(port) = raw.strip_prefix(':').unwrap_or(raw).parse::<u16>() {
            return Ok(ListenAddr::Port(port));
        }
        raw.parse::<SocketAddr>()
            .map(ListenAddr::Socket)
            .map_err(|_| format!("{raw:?} is neither host:port nor a port"))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Socket(addr) => write!(f, "{addr}"),
            ListenAddr::Port(port) => write!(f, ":{port}"),
        }
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ListenAddr;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("host:port or a port")
            }
            fn visit_str<E: de::Error>(self, raw: &str) -> Result<ListenAddr, E> {
                raw.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, port: u64) -> Result<ListenAddr, E> {
                u16::try_from(port).map(ListenAddr::Port).map_err(|_| E::custom(format!("port {port} is too large")))
            }
            fn visit_i64<E: de::Error>(self, port: i64) -> Result<ListenAddr, E> {
                u16::try_from(port).map(ListenAddr::Port).map_err(|_| E::custom(format!("port {port} is out of range")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_bare_ports_parse() {
        let socket: SocketAddr = "10.1.2.3:7000".parse().unwrap();
        assert_eq!("10.1.2.3:7000".parse::<ListenAddr>().unwrap(), ListenAddr::Socket(socket));
        assert_eq!("[::1]:7000".parse::<ListenAddr>().unwrap().resolve(ListenAddr::ANY).port(), 7000);
        assert_eq!("50051".parse::<ListenAddr>().unwrap(), ListenAddr::Port(50051));
        assert_eq!(
            ":50051".parse::<ListenAddr>().unwrap().resolve(ListenAddr::LOOPBACK),
            "127.0.0.1:50051".parse().unwrap()
        );
        assert!("localhost".parse::<ListenAddr>().is_err());
        assert!("99999".parse::<ListenAddr>().is_err());
    }
}
