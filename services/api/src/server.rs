//! The gateway's HTTP listener: HTTP/1.1 and h2c connections with a deadline
//! for a request's headers, an idle timeout, a maximum number of connections
//! (in total, and per client address except trusted proxies), and every new
//! connection counted against its address's rate limit. A connection over a
//! limit gets a short JSON refusal and is closed, so idle or header-dripping
//! sockets cannot crowd out anyone else.

mod conn;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::Router;
use douyin_kit::{Config, Error, Result, shutdown::Shutdown};
use tokio::{io::AsyncWriteExt, net::TcpStream, task::JoinSet};

use crate::ratelimit::Limits;

/// File descriptors kept for everything but client connections (database
/// and Redis pools, peers, media files).
const RESERVED_FDS: u64 = 256;

/// The listener's limits.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_per_address: usize,
}

impl Settings {
    pub fn new(config: &Config) -> Self {
        let limit = |n: u32| if n == 0 { usize::MAX } else { n as usize };
        let mut max_connections = limit(config.http_max_connections);
        if let Some(fds) = open_files_limit() {
            let room = usize::try_from(fds.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
            if room < max_connections {
                tracing::warn!(
                    configured = config.http_max_connections,
                    open_files = fds,
                    allowed = room,
                    "DOUYIN_HTTP_MAX_CONNECTIONS lowered to fit the open-files limit"
                );
                max_connections = room;
            }
        }
        Self {
            header_timeout: Duration::from_secs(config.http_header_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(config.http_idle_timeout_secs.max(1)),
            max_connections,
            max_per_address: limit(config.http_max_connections_per_address),
        }
    }
}

/// The soft limit on open files of this process (Linux), if known.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<String, usize>,
}

/// Open connections, counted against the limits.
struct Connections {
    settings: Settings,
    open: Mutex<Open>,
}

/// One admitted connection; dropping it (when the socket closes, also after
/// a WebSocket upgrade) gives its place back.
pub struct Admitted {
    connections: Arc<Connections>,
    /// `None` for a trusted proxy, whose connections carry many clients.
    address: Option<String>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.connections.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(address) = &self.address
            && let Some(n) = open.by_address.get_mut(address)
        {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(address);
            }
        }
    }
}

impl Connections {
    fn admit(self: &Arc<Self>, address: Option<String>) -> std::result::Result<Admitted, &'static str> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.total >= self.settings.max_connections {
            return Err("this server has as many connections as it takes; retry shortly");
        }
        if let Some(address) = &address {
            let n = open.by_address.entry(address.clone()).or_default();
            if *n >= self.settings.max_per_address {
                return Err("too many connections from this address; close idle ones and retry");
            }
            *n += 1;
        }
        open.total += 1;
        Ok(Admitted { connections: self.clone(), address })
    }
}

/// Serves `router` on `listener` until shutdown, then stops accepting, asks
/// every connection to finish and waits for them (the process bounds the wait).
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    settings: Settings,
    limits: Arc<Limits>,
    shutdown: Shutdown,
) -> Result<()> {
    let connections = Arc::new(Connections { settings, open: Mutex::default() });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    let stopping = shutdown.wait();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            () = &mut stopping => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let trusted = limits.is_trusted_proxy(peer.ip());
                let address = (!trusted).then(|| crate::ratelimit::ClientAddr(Some(peer.ip())).key());
                match connections.admit(address.clone()) {
                    Ok(admitted) => {
                        let (router, limits, stopped) = (router.clone(), limits.clone(), stopped.clone());
                        tasks.spawn(async move {
                            if let Some(address) = address
                                && let Err(message) = limits.connection(&address).await
                            {
                                return refuse(tcp, peer.ip(), 429, &message).await;
                            }
                            conn::run(router, tcp, peer, admitted, settings, stopped).await;
                        });
                    }
                    Err(message) => {
                        douyin_kit::metrics::rate_limited("connections");
                        tasks.spawn(refuse(tcp, peer.ip(), 503, message));
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    Ok::<(), Error>(())
}

/// Answers a connection that is over a limit with one JSON refusal and
/// closes it, without reading its request.
async fn refuse(mut tcp: TcpStream, ip: IpAddr, status: u16, message: &str) {
    tracing::debug!(%ip, status, message, "connection refused");
    let reason = if status == 429 { "Too Many Requests" } else { "Service Unavailable" };
    let body = serde_json::json!({ "status_code": status, "status_msg": message }).to_string();
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}
