//! Request limits at the gateway: rate limits per client address and per
//! signed-in user, tighter windows for register/login (per address, against
//! credential stuffing) and publish (per user), a cap on header size and a
//! deadline per request.
//!
//! Counters are fixed windows in the cache (`Cache::hit`): Redis when it is
//! configured, so every gateway replica counts together, in-process otherwise.
//! A cache that does not answer lets requests through (logged) rather than
//! refusing everyone: the limits protect the service, they are not its truth.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json,
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use douyin_kit::{Config, Error, cache::Cache};

use crate::{AppState, Params, reply::Envelope};

/// Header bytes (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// One limit: at most `limit` requests per `window` for each key.
#[derive(Clone, Copy, Debug)]
struct Rule {
    name: &'static str,
    limit: u32,
    window: Duration,
}

/// The configured limits over a shared cache. A limit of 0 is off.
pub struct Limits {
    cache: Arc<dyn Cache>,
    ip: Rule,
    user: Rule,
    auth: Rule,
    publish: Rule,
    request_timeout: Duration,
    /// Peers (proxies, ingress controllers) whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<Network>,
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

impl Limits {
    pub fn new(config: &Config, cache: Arc<dyn Cache>) -> Self {
        Self {
            cache,
            ip: Rule { name: "ip", limit: config.rate_limit_ip_per_sec, window: SECOND },
            user: Rule { name: "user", limit: config.rate_limit_user_per_sec, window: SECOND },
            auth: Rule { name: "auth", limit: config.rate_limit_auth_per_min, window: MINUTE },
            publish: Rule { name: "publish", limit: config.rate_limit_publish_per_min, window: MINUTE },
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            trusted_proxies: config.trusted_proxies.iter().filter_map(|n| Network::parse(n)).collect(),
        }
    }

    /// Counts one request of `who` under `rule`; `Some(time left)` when over.
    async fn over(&self, rule: Rule, who: &str) -> Option<Duration> {
        if rule.limit == 0 {
            return None;
        }
        let key = format!("rl:{}:{who}", rule.name);
        match self.cache.hit(&key, rule.window).await {
            Ok((count, left)) if count > u64::from(rule.limit) => Some(left),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, rule = rule.name, "rate limit not checked: cache unavailable");
                None
            }
        }
    }

    /// The publish limit of `user_id`, for a publish whose token arrived in
    /// the multipart body (known only once the body is read).
    async fn publish_over(&self, user_id: i64) -> Option<Duration> {
        self.over(self.publish, &user_id.to_string()).await
    }
}

/// Handed to the publish route when its token was not visible up front: the
/// route asks it once it knows the author; the time left comes back to the
/// middleware for `Retry-After`.
#[derive(Clone)]
pub struct PublishQuota {
    limits: Arc<Limits>,
    refused: Arc<Mutex<Option<Duration>>>,
}

impl PublishQuota {
    /// Counts one publish of `user_id`; refused beyond the limit.
    pub async fn admit(&self, user_id: i64) -> douyin_kit::Result<()> {
        match self.limits.publish_over(user_id).await {
            None => Ok(()),
            Some(left) => {
                *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(left);
                Err(Error::RateLimited(too_many("publishes from this user", left)))
            }
        }
    }
}

fn too_many(what: &str, left: Duration) -> String {
    format!("too many {what}; retry in {} s", retry_secs(left))
}

/// Whole seconds until the window ends, at least 1.
fn retry_secs(left: Duration) -> u64 {
    left.as_millis().div_ceil(1000).max(1) as u64
}

/// The contract's JSON shape with a non-business HTTP status.
fn refusal(status: StatusCode, status_code: i32, message: String) -> Response {
    let body = Envelope { status_code, status_msg: message, body: crate::reply::Empty {} };
    crate::reply::with_charset((status, Json(body)).into_response())
}

fn limited(what: &str, left: Duration) -> Response {
    let mut response = refusal(StatusCode::TOO_MANY_REQUESTS, 429, too_many(what, left));
    set_retry_after(&mut response, left);
    response
}

fn set_retry_after(response: &mut Response, left: Duration) {
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_secs(left)));
}

/// An address or a CIDR block (`10.0.0.0/8`, `fd00::/8`, `192.168.1.7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u32,
}

impl Network {
    fn parse(text: &str) -> Option<Network> {
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

    fn contains(&self, ip: IpAddr) -> bool {
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
fn client_ip(request: &Request, trusted: &[Network]) -> Option<IpAddr> {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())?;
    forwarded_client(peer, request.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()), trusted)
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

#[derive(PartialEq, Eq)]
enum Kind {
    Auth,
    Publish,
    WebSocket,
    Other,
}

fn kind(path: &str) -> Kind {
    match path.trim_end_matches('/') {
        "/douyin/user/register" | "/douyin/user/login" => Kind::Auth,
        "/douyin/publish/action" => Kind::Publish,
        "/douyin/message/ws" => Kind::WebSocket,
        _ => Kind::Other,
    }
}

/// The middleware: header size, rate limits, then the handler under the
/// request deadline (uploads and WebSocket upgrades excepted).
pub async fn enforce(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let header_bytes: usize = request.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if header_bytes > MAX_HEADER_BYTES {
        let message = format!("request headers are larger than {MAX_HEADER_BYTES} bytes");
        return refusal(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, 431, message);
    }
    let limits = state.limits.clone();
    let kind = kind(request.uri().path());
    let ip = client_ip(&request, &limits.trusted_proxies).map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    if let Some(left) = limits.over(limits.ip, &ip).await {
        return limited("requests from this address", left);
    }
    if kind == Kind::Auth
        && let Some(left) = limits.over(limits.auth, &ip).await
    {
        return limited("sign-in attempts from this address", left);
    }
    // The user, when the token is in the query string or the Authorization
    // header (the mobile client's way); a forged token counts only per address.
    let params = Params::from_query(request.uri().query());
    let user = crate::auth::token(&params, request.headers()).and_then(|t| state.tokens.verify(t).ok());
    let mut quota = None;
    if let Some(user_id) = user {
        if let Some(left) = limits.over(limits.user, &user_id.to_string()).await {
            return limited("requests from this user", left);
        }
        if kind == Kind::Publish
            && let Some(left) = limits.publish_over(user_id).await
        {
            return limited("publishes from this user", left);
        }
    } else if kind == Kind::Publish {
        let gate = PublishQuota { limits: limits.clone(), refused: Arc::default() };
        request.extensions_mut().insert(gate.clone());
        quota = Some(gate);
    }
    let mut response = if matches!(kind, Kind::Publish | Kind::WebSocket) || limits.request_timeout.is_zero() {
        next.run(request).await
    } else {
        match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                let secs = limits.request_timeout.as_secs();
                return refusal(StatusCode::SERVICE_UNAVAILABLE, 503, format!("request took longer than {secs} s"));
            }
        }
    };
    if let Some(left) = quota.and_then(|q| *q.refused.lock().unwrap_or_else(|e| e.into_inner())) {
        set_retry_after(&mut response, left);
    }
    response
}

#[cfg(test)]
mod tests {
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

    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_secs(Duration::from_secs(60)), 60);
    }

    #[test]
    fn routes_are_classified_with_or_without_the_slash() {
        assert!(kind("/douyin/user/login") == Kind::Auth);
        assert!(kind("/douyin/user/register/") == Kind::Auth);
        assert!(kind("/douyin/publish/action/") == Kind::Publish);
        assert!(kind("/douyin/user/") == Kind::Other);
    }

    #[tokio::test]
    async fn a_window_refuses_beyond_its_limit_and_zero_is_off() {
        let cache: Arc<dyn Cache> = Arc::new(douyin_kit::cache::MemoryCache::default());
        let config = Config { rate_limit_ip_per_sec: 3, rate_limit_user_per_sec: 0, ..Config::default() };
        let limits = Limits::new(&config, cache);
        for _ in 0..3 {
            assert!(limits.over(limits.ip, "a").await.is_none());
        }
        let left = limits.over(limits.ip, "a").await.expect("fourth refused");
        assert!(left <= SECOND);
        assert!(limits.over(limits.ip, "b").await.is_none(), "another address is counted apart");
        for _ in 0..100 {
            assert!(limits.over(limits.user, "1").await.is_none());
        }
    }
}
