//! Peer discovery and the choice of a replica. A peer named by host name is
//! resolved again every [`REFRESH`] and calls go round-robin over every address
//! it has now (the DNS name of a headless Service has one per ready pod): an
//! address that appears starts getting calls, one that disappears (a pod
//! scaled away or no longer ready) stops getting them, at the next resolution.
//!
//! A call that cannot reach its replica moves on to the next one: any call
//! whose connection could not be made (nothing was sent), and an idempotent
//! read whose connection broke. A write whose connection broke may have
//! happened and is never sent again. When no replica is left the call fails as
//! `Unavailable`, which the gateway answers as a plain 503, and the name is
//! resolved again at once (at most every [`RETRY`]) instead of at the next
//! refresh, so replacements of replicas that all died get calls within a second.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use async_trait::async_trait;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tonic::{
    Status,
    body::Body,
    transport::{Channel, Endpoint},
};
use tower::{Service, ServiceExt};

use super::{BoxError, is_idempotent_read};
use crate::{Error, Result};

/// How often a peer's name is resolved again. Kubernetes DNS answers carry a
/// 5 s TTL, so a removed pod stops getting calls within about 10 s, inside its
/// lame-duck period (preStop sleep plus `DOUYIN_SHUTDOWN_DELAY_SECS`).
pub const REFRESH: Duration = Duration::from_secs(5);

/// How often a name that does not resolve yet, or whose every address
/// refused, is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// How long a call waits for a name that has never resolved.
const FIRST_RESOLUTION: Duration = Duration::from_secs(2);

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
pub fn remote_channel(url: &str, connect_timeout: Duration) -> Result<Replicas> {
    remote_channel_with(url, connect_timeout, Arc::new(SystemResolver), REFRESH)
}

/// A lazily connected channel to `url`. IP literals and `localhost` get one
/// connection; other names are resolved through `resolver` every `refresh`
/// and calls spread over every address.
pub fn remote_channel_with(
    url: &str,
    connect_timeout: Duration,
    resolver: Arc<dyn Resolver>,
    refresh: Duration,
) -> Result<Replicas> {
    let bad = |e: &dyn std::fmt::Display| Error::internal(format!("peer endpoint {url:?}: {e}"));
    let uri: http::Uri = url.parse().map_err(|e| bad(&e))?;
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_owned();
    let port = uri.port_u16().unwrap_or(50051);
    let template = Endpoint::from_shared(url.to_owned()).map_err(|e| bad(&e))?;
    let endpoints = Endpoints { template: tune(template, connect_timeout), connect_timeout };
    let replicas = Replicas { set: Arc::new(ReplicaSet::default()) };
    if host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" {
        let only = endpoints.template.connect_lazy();
        *replicas.set.members.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(vec![(None, only)]);
        return Ok(replicas);
    }
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    tokio::spawn(follow(Arc::downgrade(&replicas.set), resolver, host, port, scheme, endpoints, refresh));
    Ok(replicas)
}

fn tune(endpoint: Endpoint, connect_timeout: Duration) -> Endpoint {
    endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
}

struct Endpoints {
    template: Endpoint,
    connect_timeout: Duration,
}

impl Endpoints {
    /// A channel to one address that names the peer (`:authority`) as configured.
    fn to(&self, scheme: &str, addr: SocketAddr) -> Option<Channel> {
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}")).ok()?;
        Some(tune(endpoint, self.connect_timeout).origin(self.template.uri().clone()).connect_lazy())
    }
}

/// Resolves `host` until the last client of `set` is dropped.
async fn follow(
    set: Weak<ReplicaSet>,
    resolver: Arc<dyn Resolver>,
    host: String,
    port: u16,
    scheme: String,
    endpoints: Endpoints,
    refresh: Duration,
) {
    // Kept apart from the set, which is only held while it is updated.
    let Some(stale) = set.upgrade().map(|set| set.stale.clone()) else { return };
    loop {
        let resolved = resolver.resolve(&host, port).await;
        let Some(set) = set.upgrade() else { return };
        let known = match resolved {
            Ok(addrs) => set.update(&host, addrs, |addr| endpoints.to(&scheme, addr)),
            // Kept as they are: a DNS hiccup must not drop every peer.
            Err(error) => {
                tracing::debug!(%error, %host, "peer name does not resolve");
                set.len()
            }
        };
        drop(set);
        let wait = if known == 0 { RETRY.min(refresh) } else { refresh };
        // Early when a call found no replica reachable, but never within RETRY
        // of the last resolution (a permit given meanwhile is kept).
        let early = async {
            tokio::time::sleep(RETRY.min(wait)).await;
            stale.notified().await;
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = early => {}
        }
    }
}

type Members = Arc<Vec<(Option<SocketAddr>, Channel)>>;

#[derive(Default)]
struct ReplicaSet {
    members: RwLock<Members>,
    next: AtomicUsize,
    /// Wakes the resolution loop when no member could be reached.
    stale: Arc<Notify>,
}

impl ReplicaSet {
    fn snapshot(&self) -> Members {
        self.members.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Keeps the channels of addresses still resolved, opens new ones, drops
    /// the rest (their in-flight calls finish). Returns how many there are.
    fn update(&self, host: &str, addrs: Vec<SocketAddr>, open: impl Fn(SocketAddr) -> Option<Channel>) -> usize {
        let old = self.snapshot();
        let mut kept: HashMap<SocketAddr, Channel> =
            old.iter().filter_map(|(addr, channel)| addr.map(|a| (a, channel.clone()))).collect();
        let mut now: Vec<SocketAddr> = addrs;
        now.sort();
        now.dedup();
        if now.iter().copied().eq(old.iter().filter_map(|(a, _)| *a)) {
            return now.len();
        }
        let added: Vec<_> = now.iter().filter(|a| !kept.contains_key(a)).collect();
        let removed: Vec<_> = kept.keys().filter(|a| !now.contains(a)).copied().collect();
        tracing::info!(%host, ?added, ?removed, addresses = now.len(), "peer addresses changed");
        let members: Vec<_> =
            now.iter().filter_map(|addr| Some((Some(*addr), kept.remove(addr).or_else(|| open(*addr))?))).collect();
        let len = members.len();
        *self.members.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(members);
        len
    }
}

/// The replicas of one peer; calls go round-robin and move on to the next
/// replica when one cannot be reached (see the module documentation).
#[derive(Clone)]
pub struct Replicas {
    set: Arc<ReplicaSet>,
}

impl Service<http::Request<Body>> for Replicas {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let set = self.set.clone();
        Box::pin(async move {
            // A name not resolved yet (a process just started) gets a moment.
            let waited = std::time::Instant::now();
            let mut members = set.snapshot();
            while members.is_empty() && waited.elapsed() < FIRST_RESOLUTION {
                tokio::time::sleep(Duration::from_millis(20)).await;
                members = set.snapshot();
            }
            let start = set.next.fetch_add(1, Ordering::Relaxed);
            call_replicas(members, start, req, &set.stale).await
        })
    }
}

async fn call_replicas(
    members: Members,
    start: usize,
    req: http::Request<Body>,
    stale: &Notify,
) -> Result<http::Response<Body>, BoxError> {
    let pick = |i: usize| members[(start + i) % members.len()].clone();
    let path = req.uri().path().to_owned();
    // Uploads stream their body: it is never held to be sent twice.
    if members.len() == 1 || (!members.is_empty() && path.ends_with("/Publish")) {
        let result = pick(0).1.oneshot(req).await;
        if result.as_ref().is_err_and(|e| never_sent(e)) {
            stale.notify_one();
        }
        return Ok(result?);
    }
    if members.is_empty() {
        stale.notify_one();
        return Err(unavailable());
    }
    let read = is_idempotent_read(&path);
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map_err(|e| Status::internal(format!("request body: {e}")))?.to_bytes();
    let mut last: Option<tonic::transport::Error> = None;
    for i in 0..members.len() {
        let (addr, channel) = pick(i);
        let req = http::Request::from_parts(parts.clone(), Body::new(http_body_util::Full::new(bytes.clone())));
        match channel.oneshot(req).await {
            Ok(response) => return Ok(response),
            Err(error) if read || never_sent(&error) => {
                tracing::debug!(%error, ?addr, %path, "replica unreachable; trying the next one");
                last = Some(error);
            }
            Err(error) => {
                tracing::warn!(%error, ?addr, %path, "connection broke under a write; not sending it again");
                return Err(unavailable());
            }
        }
    }
    if let Some(error) = last {
        tracing::warn!(%error, %path, "no replica could be reached");
    }
    stale.notify_one();
    Err(unavailable())
}

fn unavailable() -> BoxError {
    Status::unavailable("service temporarily unavailable").into()
}

/// Whether the call failed before anything reached the peer: the connection
/// could not be made (refused, timed out, unreachable).
fn never_sent(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>()
            || error.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = error.source();
    }
    false
}
