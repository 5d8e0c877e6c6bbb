//! Idle and header-dripping sockets cannot lock anyone out: connections past
//! the per-address cap are refused at once, a request's headers must arrive
//! within the header timeout, a connection that moves nothing is closed after
//! the idle timeout, and new connections count against a rate per address.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use super::figure;
use crate::common::{TestApp, client_from, send_json};

fn gateway(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().unwrap()
}

async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// How the server ended `stream`, waiting at most `within`: `None` while it
/// is still open, else what it wrote before closing ("" for nothing).
async fn ended_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut buf = [0u8; 1024];
    let mut said = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&said).into_owned()),
            Ok(Ok(n)) => said.extend_from_slice(&buf[..n]),
        }
    }
}

async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    ended_within(stream, within).await.is_some()
}

#[tokio::test]
async fn idle_and_dripping_sockets_do_not_stop_a_legitimate_request() {
    let app = TestApp::spawn_with(|c| {
        c.http_max_connections_per_address = 8;
        c.http_header_timeout_secs = 1;
        c.http_idle_timeout_secs = 3;
    })
    .await;
    let to = gateway(&app);

    // Idle sockets: 40 from one address, of which 8 are admitted.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(connect_from("127.0.0.2", to).await);
    }
    // Header drippers from another address: a byte every 200 ms, forever.
    let mut drippers = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from("127.0.0.3", to).await;
        s.write_all(b"GET /douyin/feed/ HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        drippers.push(s);
    }
    // Drips until the server has closed every one (a write then fails), at
    // most 10 s; returns how long that took.
    let drip = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut open = drippers;
        for _ in 0..50 {
            let mut alive = 0;
            for s in &mut open {
                if s.write_all(b"x").await.is_ok() {
                    alive += 1;
                }
            }
            if alive == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (open, started.elapsed())
    });

    // A legitimate client from a third address is answered at once.
    let started = tokio::time::Instant::now();
    let reply: serde_json::Value = send_json(client_from("127.0.0.4").get(app.url("/douyin/feed/"))).await;
    assert_eq!(reply["status_code"], 0, "{reply}");
    assert!(started.elapsed() < Duration::from_secs(2), "answered in {:?}", started.elapsed());

    // Past the per-address cap, sockets are refused at once; the admitted
    // ones never send a request and are closed at the header timeout.
    let (mut refused, mut timed_out) = (0, 0);
    for s in &mut idle {
        match ended_within(s, Duration::from_secs(5)).await {
            Some(said) if said.starts_with("HTTP/1.1 503") && said.contains("from this address") => refused += 1,
            Some(said) if said.is_empty() => timed_out += 1,
            other => panic!("an idle socket: {other:?}"),
        }
    }
    assert_eq!((refused, timed_out), (32, 8), "connections past the per-address cap, then the admitted ones");
    // Drippers never finish their headers: closed at the header timeout too.
    let (mut drippers, dripped) = drip.await.unwrap();
    assert!(dripped < Duration::from_secs(5), "header drippers kept open for {dripped:?}");
    for s in &mut drippers {
        assert!(closed_within(s, Duration::from_secs(1)).await, "a header dripper outlived the header timeout");
    }
    figure("connections-refused", format!("{}/{}", refused + 8 + drippers.len(), 40 + drippers.len()));
    app.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_only_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.http_header_timeout_secs = 1;
        c.http_idle_timeout_secs = 3;
    })
    .await;
    let mut s = connect_from("127.0.0.5", gateway(&app)).await;
    s.write_all(b"GET /douyin/feed/ HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    // Between requests the header timeout does not apply: the connection
    // outlives it and still serves a second request.
    assert!(!closed_within(&mut s, Duration::from_millis(2000)).await, "closed before the idle timeout");
    s.write_all(b"GET /douyin/feed/ HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Then, with nothing moving, it is closed.
    let started = tokio::time::Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(6)).await, "never closed while idle");
    assert!(started.elapsed() >= Duration::from_millis(2500), "closed after {:?}", started.elapsed());
    app.stop().await;
}

#[tokio::test]
async fn new_connections_count_against_the_address_rate() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_connections_per_sec = 1;
        c.rate_limit_connections_burst = 10;
    })
    .await;
    let to = gateway(&app);
    let mut connections = Vec::new();
    for _ in 0..20 {
        connections.push(connect_from("127.0.0.6", to).await);
    }
    let mut refused = 0;
    for mut s in connections {
        let mut buf = [0u8; 512];
        // Connections alone, no request: a refused one is told so at once.
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await
            && String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 429")
        {
            refused += 1;
        }
    }
    assert!(refused >= 9, "{refused} of 20 connections refused at a burst of 10");
    // Another address is not affected.
    let reply: serde_json::Value = send_json(client_from("127.0.0.7").get(app.url("/douyin/feed/"))).await;
    assert_eq!(reply["status_code"], 0, "{reply}");
    app.stop().await;
}
