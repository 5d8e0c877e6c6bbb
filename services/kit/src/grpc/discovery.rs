//! Peer discovery. A peer named by host name is resolved again every
//! [`REFRESH`] and calls are balanced over every address it has now (the DNS
//! name of a headless Service has one per ready pod): an address that appears
//! starts getting calls, one that disappears (a pod scaled away or no longer
//! ready) stops getting them, at the next resolution.

use std::{collections::HashSet, net::SocketAddr, sync::Arc, time::Duration};

use async_trait::async_trait;
use tonic::transport::{Channel, Endpoint, channel::Change};

use crate::{Error, Result};

/// How often a peer's name is resolved again. Kubernetes DNS answers carry a
/// 5 s TTL, so a removed pod stops getting calls within about 10 s; its
/// connections outlive it only that long, well inside the pod's grace period.
pub const REFRESH: Duration = Duration::from_secs(5);

/// How often a name that does not resolve yet is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Turns a peer's host name into the addresses it has now.
#[async_trait]
pub trait Resolver: Send + Sync + 'static {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo`: /etc/hosts, then DNS as nsswitch.conf
/// says), asked anew each time: nothing is cached in the process.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// A lazily connected channel to `url`, through the system resolver.
pub fn remote_channel(url: &str, connect_timeout: Duration) -> Result<Channel> {
    remote_channel_with(url, connect_timeout, Arc::new(SystemResolver), REFRESH)
}

/// A lazily connected channel to `url`. IP literals and `localhost` get one
/// connection; other names are resolved through `resolver` every `refresh`
/// and calls balanced over every address.
pub fn remote_channel_with(
    url: &str,
    connect_timeout: Duration,
    resolver: Arc<dyn Resolver>,
    refresh: Duration,
) -> Result<Channel> {
    let uri: http::Uri = url.parse().map_err(|e| Error::internal(format!("peer endpoint {url:?}: {e}")))?;
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_owned();
    let port = uri.port_u16().unwrap_or(50051);
    let tune = move |endpoint: Endpoint| {
        endpoint
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
    };
    let template = tune(
        Endpoint::from_shared(url.to_owned()).map_err(|e| Error::internal(format!("peer endpoint {url:?}: {e}")))?,
    );
    if host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" {
        return Ok(template.connect_lazy());
    }
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    tokio::spawn(async move {
        let mut known: HashSet<SocketAddr> = HashSet::new();
        loop {
            match resolver.resolve(&host, port).await {
                Ok(addrs) => {
                    let now: HashSet<SocketAddr> = addrs.into_iter().collect();
                    let added: Vec<SocketAddr> = now.difference(&known).copied().collect();
                    let removed: Vec<SocketAddr> = known.difference(&now).copied().collect();
                    if !added.is_empty() || !removed.is_empty() {
                        tracing::info!(%host, ?added, ?removed, addresses = now.len(), "peer addresses changed");
                    }
                    for addr in added {
                        let Ok(endpoint) = Endpoint::from_shared(format!("{scheme}://{addr}")) else {
                            continue;
                        };
                        // Calls go to the address but name the peer (`:authority`) as configured.
                        let endpoint = tune(endpoint).origin(template.uri().clone());
                        if changes.send(Change::Insert(addr, endpoint)).await.is_err() {
                            return;
                        }
                    }
                    for addr in removed {
                        if changes.send(Change::Remove(addr)).await.is_err() {
                            return;
                        }
                    }
                    known = now;
                }
                // Kept as they are: a DNS hiccup must not drop every peer.
                Err(error) => tracing::debug!(%error, %host, "peer name does not resolve"),
            }
            if changes.is_closed() {
                return;
            }
            tokio::time::sleep(if known.is_empty() { RETRY.min(refresh) } else { refresh }).await;
        }
    });
    Ok(channel)
}
