//! The client factory's balancing, end to end over real connections: a peer
//! name with several addresses gets calls on every one, an address removed
//! from the name stops getting calls (while its server still answers, as a
//! terminating pod does) and a new one starts getting them, each within a few
//! re-resolutions.
//!
//! A replica that cannot be reached is skipped for any call whose connection
//! was never made and for reads whose connection broke; a write whose
//! connection broke is not sent again.
//!
//! `calls_follow_the_addresses_a_name_resolves_to` swaps the resolver for a
//! list the test edits. `the_system_resolver_is_followed_through_a_hosts_file`
//! runs the production resolver against a hosts file; it needs a private
//! /etc/hosts (`.ci/resolve.sh` runs it under `unshare -m` with the file
//! bind-mounted and `DOUYIN_TEST_HOSTS_FILE` naming it) and is ignored otherwise.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use douyin_kit::grpc::{self, REFRESH, Replicas as Channel, Resolver};
use douyin_proto::health::{HealthCheckRequest, health_client::HealthClient};

/// A gRPC server that names itself in every response (`x-peer` metadata).
async fn peer(addr: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let name = http::HeaderValue::from_str(&addr.to_string()).unwrap();
    let tag = tower::util::MapResponseLayer::new(move |mut response: http::Response<tonic::body::Body>| {
        response.headers_mut().insert("x-peer", name.clone());
        response
    });
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(tonic::transport::Server::builder().layer(tag).add_service(health).serve_with_incoming(incoming));
    addr
}

/// Which peer answered one call.
async fn call(channel: &Channel) -> SocketAddr {
    let reply = HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await.unwrap();
    reply.metadata().get("x-peer").unwrap().to_str().unwrap().parse().unwrap()
}

/// Calls per peer over `n` calls.
async fn spread(channel: &Channel, n: usize) -> BTreeMap<SocketAddr, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts.entry(call(channel).await).or_default() += 1;
    }
    counts
}

/// Polls until `n` consecutive calls land exactly on `expected` (every one
/// of them, nothing else); the deadline allows a few re-resolutions.
async fn settle_on(
    channel: &Channel,
    expected: &BTreeSet<SocketAddr>,
    refresh: Duration,
) -> BTreeMap<SocketAddr, usize> {
    let deadline = Instant::now() + refresh * 4 + Duration::from_secs(10);
    loop {
        let counts = spread(channel, 20 * expected.len()).await;
        if counts.keys().copied().collect::<BTreeSet<_>>() == *expected {
            return counts;
        }
        assert!(Instant::now() < deadline, "calls still go to {counts:?}, expected exactly {expected:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The scenario, for any way of changing what the name resolves to.
async fn follows_resolution(channel: Channel, peers: [SocketAddr; 4], set: impl Fn(&[SocketAddr]), refresh: Duration) {
    let [a, b, c, d] = peers;
    set(&[a, b, c]);
    let all: BTreeSet<SocketAddr> = [a, b, c].into();
    settle_on(&channel, &all, refresh).await;
    // Spread over all three: with 300 calls each gets far more than a tenth.
    let counts = spread(&channel, 300).await;
    assert_eq!(counts.keys().copied().collect::<BTreeSet<_>>(), all, "{counts:?}");
    assert!(counts.values().all(|n| *n >= 30), "uneven spread: {counts:?}");

    // b leaves the name but keeps answering (a pod that is terminating).
    set(&[a, c]);
    settle_on(&channel, &[a, c].into(), refresh).await;
    let counts = spread(&channel, 200).await;
    assert!(!counts.contains_key(&b), "a removed address still gets calls: {counts:?}");

    // d joins.
    set(&[a, c, d]);
    let counts = settle_on(&channel, &[a, c, d].into(), refresh).await;
    assert!(!counts.contains_key(&b), "{counts:?}");
}

/// Addresses the test sets by hand.
#[derive(Default)]
struct Listed(Mutex<Vec<SocketAddr>>);

#[async_trait]
impl Resolver for Listed {
    async fn resolve(&self, _host: &str, _port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(self.0.lock().unwrap().clone())
    }
}

#[tokio::test]
async fn calls_follow_the_addresses_a_name_resolves_to() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let peers = [peer(loopback).await, peer(loopback).await, peer(loopback).await, peer(loopback).await];
    let resolver = Arc::new(Listed::default());
    let refresh = Duration::from_millis(200);
    let channel = grpc::remote_channel_with(
        "http://user.douyin.svc.cluster.local:50051",
        Duration::from_secs(1),
        resolver.clone(),
        refresh,
    )
    .unwrap();
    follows_resolution(channel, peers, |addrs| *resolver.0.lock().unwrap() = addrs.to_vec(), refresh).await;
}

/// A headless Service of a large Deployment: every pod gets calls, and
/// scaling down by half takes the other half out at once.
#[tokio::test]
async fn many_addresses_all_get_calls() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut peers = Vec::new();
    for _ in 0..32 {
        peers.push(peer(loopback).await);
    }
    let resolver = Arc::new(Listed::default());
    *resolver.0.lock().unwrap() = peers.clone();
    let refresh = Duration::from_millis(200);
    let channel =
        grpc::remote_channel_with("http://video.douyin:50051", Duration::from_secs(1), resolver.clone(), refresh)
            .unwrap();
    settle_on(&channel, &peers.iter().copied().collect(), refresh).await;
    *resolver.0.lock().unwrap() = peers[..16].to_vec();
    settle_on(&channel, &peers[..16].iter().copied().collect(), refresh).await;
}

/// An address where nothing listens (a killed pod still in DNS).
async fn refusing() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Accepts connections, reads what the client sends first, then drops them:
/// a pod killed while calls were on the wire. Counts the connections.
async fn breaking() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(50), socket.read(&mut buf)).await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn an_unreachable_replica_is_skipped_and_a_broken_write_is_not_sent_again() {
    use douyin_proto::user::{GetUsersRequest, user_service_client::UserServiceClient};
    let good = peer("127.0.0.1:0".parse().unwrap()).await;
    let resolver = Arc::new(Listed::default());
    *resolver.0.lock().unwrap() = vec![good, refusing().await];
    let channel =
        grpc::remote_channel_with("http://user.douyin:50051", Duration::from_secs(1), resolver.clone(), REFRESH)
            .unwrap();
    settle_on(&channel, &[good].into(), REFRESH).await;
    // Health checks are not on the list of reads: they stand for writes. A
    // refused connection sent nothing, so every call moves on and succeeds.
    assert_eq!(spread(&channel, 40).await, [(good, 40)].into());

    let (broken, accepted) = breaking().await;
    *resolver.0.lock().unwrap() = vec![good, broken];
    let channel =
        grpc::remote_channel_with("http://user.douyin:50051", Duration::from_secs(1), resolver.clone(), REFRESH)
            .unwrap();
    // Reads whose connection broke are sent to the other replica: the health
    // server answers Unimplemented for the user service, never Unavailable.
    for _ in 0..20 {
        let status = UserServiceClient::new(channel.clone())
            .get_users(GetUsersRequest { ids: vec![1], ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    }
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) > 0, "the broken replica was never tried");
    // Writes whose connection broke may have happened: they fail, once each.
    let (mut failed, mut answered) = (0, 0);
    for _ in 0..20 {
        match HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await {
            Ok(_) => answered += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                failed += 1;
            }
        }
    }
    assert!(failed > 0 && answered > 0, "{failed} failed, {answered} answered");
}

#[tokio::test]
async fn when_every_replica_refuses_the_name_is_resolved_again_at_once() {
    // Both pods of a role died; their replacements are in DNS long before the
    // next periodic refresh (ten minutes here) would find them.
    let resolver = Arc::new(Listed::default());
    *resolver.0.lock().unwrap() = vec![refusing().await, refusing().await];
    let channel = grpc::remote_channel_with(
        "http://user.douyin:50051",
        Duration::from_secs(1),
        resolver.clone(),
        Duration::from_secs(600),
    )
    .unwrap();
    let check = || {
        let mut client = HealthClient::new(channel.clone());
        async move { client.check(HealthCheckRequest { service: String::new() }).await }
    };
    let status = check().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let replacement = peer("127.0.0.1:0".parse().unwrap()).await;
    *resolver.0.lock().unwrap() = vec![replacement];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match check().await {
            Ok(reply) => {
                assert_eq!(reply.metadata().get("x-peer").unwrap().to_str().unwrap(), replacement.to_string());
                break;
            }
            Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
        }
        assert!(Instant::now() < deadline, "the replacement got no call: the name was not resolved again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_HOSTS_FILE bind-mounted over /etc/hosts (run by .ci/resolve.sh)"]
async fn the_system_resolver_is_followed_through_a_hosts_file() {
    let hosts = std::env::var("DOUYIN_TEST_HOSTS_FILE")
        .expect("DOUYIN_TEST_HOSTS_FILE names the file bind-mounted over /etc/hosts");
    const NAME: &str = "user.douyin-balance.test";
    // One port on four loopback addresses, as pods of a headless Service have.
    let first = peer("127.0.0.2:0".parse().unwrap()).await;
    let port = first.port();
    let mut peers = [first; 4];
    for (i, slot) in peers.iter_mut().enumerate().skip(1) {
        *slot = peer(SocketAddr::from(([127, 0, 0, 2 + i as u8], port))).await;
    }
    // Rewritten in place: the bind mount follows the file, not its name.
    let set = |addrs: &[SocketAddr]| {
        let mut text = String::from("127.0.0.1 localhost\n");
        for addr in addrs {
            text.push_str(&format!("{} {NAME}\n", addr.ip()));
        }
        let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(&hosts).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    };
    set(&[]);
    let url = format!("http://{NAME}:{port}");
    // The production channel: system resolver, production refresh interval.
    let channel = grpc::remote_channel(&url, Duration::from_secs(1)).unwrap();
    let started = Instant::now();
    follows_resolution(channel, peers, set, REFRESH).await;
    println!("resolve-figure: hosts-file scenario took {:?} (refresh {REFRESH:?})", started.elapsed());
}
