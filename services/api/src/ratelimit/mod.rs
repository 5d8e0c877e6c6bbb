//! Rate limits at the gateway, token buckets in the cache (`Cache::take`):
//! Redis when configured, so every replica draws from the same buckets,
//! in-process (bounded) otherwise.
//!
//! - Only the API (`/douyin/…`) is counted: static files, media, the web
//!   client, `/healthz`, `/readyz` and `/metrics` never are.
//! - Per client address (IPv6 by /64), sized for many users behind one
//!   carrier NAT, and per signed-in user wherever the token arrives (query,
//!   form, multipart or JSON body, `Authorization`), checked where the route
//!   verifies it.
//! - New connections per address (trusted proxies excepted), counted by the
//!   listener before a connection is served.
//! - Registration per address; sign-in counts *failed* attempts per account
//!   and per address (see [`signin`]); publishing per user.
//!
//! A cache that does not answer (or that its breaker skips while it fails)
//! is replaced by buckets in this process: the limits hold per replica
//! instead of across replicas until Redis answers again, rather than
//! refusing everyone or letting a flood through.

mod client;
pub mod signin;

use std::{cell::Cell, net::IpAddr, sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::Response,
};
use douyin_kit::{
    Config, Error, Result,
    cache::{Bucket, Cache, MemoryCache, Taken},
};

use crate::{AppState, refusals::refusal};
use client::Network;

/// One limit: a bucket per key under `name`; `None` is off.
#[derive(Clone, Copy, Debug)]
struct Rule {
    name: &'static str,
    bucket: Option<Bucket>,
}

impl Rule {
    fn new(name: &'static str, per_sec: f64, burst: u32) -> Self {
        let bucket = (per_sec > 0.0 && burst > 0).then_some(Bucket { burst, per_sec });
        Self { name, bucket }
    }
}

/// The configured limits over a shared cache.
pub struct Limits {
    cache: Arc<dyn Cache>,
    /// The buckets used while `cache` does not answer.
    local: MemoryCache,
    ip: Rule,
    connections: Rule,
    user: Rule,
    register: Rule,
    publish: Rule,
    signin: signin::Rules,
    request_timeout: Duration,
    /// Peers (proxies, ingress controllers) whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<Network>,
}

impl Limits {
    pub fn new(config: &Config, cache: Arc<dyn Cache>) -> Self {
        let per_min = |n: u32| f64::from(n) / 60.0;
        Self {
            cache,
            local: MemoryCache::default(),
            ip: Rule::new("ip", f64::from(config.rate_limit_ip_per_sec), config.rate_limit_ip_burst),
            connections: Rule::new(
                "connections",
                f64::from(config.rate_limit_connections_per_sec),
                config.rate_limit_connections_burst,
            ),
            user: Rule::new("user", f64::from(config.rate_limit_user_per_sec), config.rate_limit_user_burst),
            register: Rule::new(
                "register",
                per_min(config.rate_limit_register_per_min),
                config.rate_limit_register_burst,
            ),
            publish: Rule::new(
                "publish",
                per_min(config.rate_limit_publish_per_min),
                config.rate_limit_publish_per_min,
            ),
            signin: signin::Rules::new(config),
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            trusted_proxies: config.trusted_proxies.iter().filter_map(|n| Network::parse(n)).collect(),
        }
    }

    /// Takes `cost` from `who`'s bucket of `rule`; `Some(wait)` when refused.
    async fn take(&self, rule: Rule, who: &str, cost: i32) -> Option<Duration> {
        self.take_tokens(rule, who, cost).await.filter(|taken| !taken.allowed).map(|taken| taken.wait)
    }

    /// What taking `cost` from `who`'s bucket of `rule` did; `None` when the
    /// rule is off (or, in neither cache, nothing could be checked).
    async fn take_tokens(&self, rule: Rule, who: &str, cost: i32) -> Option<Taken> {
        let bucket = rule.bucket?;
        let key = format!("rl:{}:{who}", rule.name);
        let taken = match self.cache.take(&key, bucket, cost).await {
            Ok(taken) => taken,
            Err(error) => {
                tracing::debug!(%error, rule = rule.name, "shared rate limit unavailable; limiting in this process");
                match self.local.take(&key, bucket, cost).await {
                    Ok(taken) => taken,
                    Err(error) => {
                        tracing::warn!(%error, rule = rule.name, "rate limit not checked");
                        return None;
                    }
                }
            }
        };
        if !taken.allowed && cost > 0 {
            douyin_kit::metrics::rate_limited(rule.name);
        }
        Some(taken)
    }

    /// Counts one call of a signed-in user.
    pub async fn user_call(&self, user_id: i64) -> Result<()> {
        match self.take(self.user, &user_id.to_string(), 1).await {
            None => Ok(()),
            Some(wait) => Err(limited("requests from this user", wait)),
        }
    }

    /// Whether `peer` is a trusted proxy (its connections carry many clients).
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(peer))
    }

    /// Counts a new connection from `address` (a [`ClientAddr::key`]) in its
    /// address's connection bucket; the refusal's message when over the rate.
    pub async fn connection(&self, address: &str) -> std::result::Result<(), String> {
        match self.take(self.connections, address, 1).await {
            None => Ok(()),
            Some(wait) => Err(format!("too many connections from this address; retry in {} s", retry_secs(wait))),
        }
    }

    /// Counts one publish of `user_id`.
    pub async fn publish(&self, user_id: i64) -> Result<()> {
        match self.take(self.publish, &user_id.to_string(), 1).await {
            None => Ok(()),
            Some(wait) => Err(limited("publishes from this user", wait)),
        }
    }
}

tokio::task_local! {
    /// The longest wait a refusal of this request named, for `Retry-After`.
    static RETRY_AFTER: Cell<Option<Duration>>;
}

/// A rate-limit refusal; its wait becomes the response's `Retry-After`.
fn limited(what: &str, wait: Duration) -> Error {
    let _ = RETRY_AFTER.try_with(|cell| cell.set(Some(cell.get().map_or(wait, |w| w.max(wait)))));
    Error::RateLimited(format!("too many {what}; retry in {} s", retry_secs(wait)))
}

/// Whole seconds until the tokens are there, at least 1.
fn retry_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

fn too_many(what: &str, wait: Duration) -> Response {
    let mut response =
        refusal(StatusCode::TOO_MANY_REQUESTS, format!("too many {what}; retry in {} s", retry_secs(wait)));
    set_retry_after(&mut response, wait);
    response
}

fn set_retry_after(response: &mut Response, wait: Duration) {
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_secs(wait)));
}

/// Where a request counts.
#[derive(PartialEq, Eq, Debug)]
enum Kind {
    /// Not the API: static files, media, the web client, health, metrics.
    Uncounted,
    Register,
    Publish,
    WebSocket,
    Api,
}

fn kind(path: &str) -> Kind {
    if path != "/douyin" && !path.starts_with("/douyin/") {
        return Kind::Uncounted;
    }
    use crate::routes::path::{MESSAGE_WS, PUBLISH, REGISTER};
    let route = path.trim_end_matches('/');
    let is = |known: &str| route == known.trim_end_matches('/');
    if is(REGISTER) {
        Kind::Register
    } else if is(PUBLISH) {
        Kind::Publish
    } else if is(MESSAGE_WS) {
        Kind::WebSocket
    } else {
        Kind::Api
    }
}

/// Headers that name the public origin of a request behind a proxy.
const FORWARDED_ORIGIN: [&str; 3] = ["x-forwarded-host", "x-forwarded-proto", "forwarded"];

/// The client's address, for the routes (sign-in counts failures by it).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    /// The bucket this address counts in (IPv6 by /64), "unknown" without one.
    pub fn key(self) -> String {
        self.0.map_or_else(|| "unknown".to_owned(), client::address_key)
    }
}

/// The middleware: the address's and the route's buckets, then the handler
/// under the request deadline (uploads and WebSocket upgrades excepted).
pub async fn enforce(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let limits = state.limits.clone();
    let kind = kind(request.uri().path());
    let ip = client::client_ip(&request, &limits.trusted_proxies);
    request.extensions_mut().insert(ClientAddr(ip));
    if !client::from_trusted_proxy(&request, &limits.trusted_proxies) {
        // Links in replies (play_url, cover_url, avatar) are built from these
        // when DOUYIN_PUBLIC_URL is unset: only a proxy may name the public
        // host, or anyone could point them elsewhere for a shared cache to keep.
        for name in FORWARDED_ORIGIN {
            request.headers_mut().remove(name);
        }
    }
    if kind != Kind::Uncounted {
        let address = ip.map_or_else(|| "unknown".to_owned(), client::address_key);
        if let Some(wait) = limits.take(limits.ip, &address, 1).await {
            return too_many("requests from this address", wait);
        }
        if kind == Kind::Register
            && let Some(wait) = limits.take(limits.register, &address, 1).await
        {
            return too_many("registrations from this address", wait);
        }
    }
    let unbounded = matches!(kind, Kind::Publish | Kind::WebSocket) || limits.request_timeout.is_zero();
    let timeout = limits.request_timeout;
    RETRY_AFTER
        .scope(Cell::new(None), async move {
            let mut response = if unbounded {
                next.run(request).await
            } else {
                match tokio::time::timeout(timeout, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => {
                        let message = format!("request took longer than {} s", timeout.as_secs());
                        return refusal(StatusCode::SERVICE_UNAVAILABLE, message);
                    }
                }
            };
            if response.status() == StatusCode::TOO_MANY_REQUESTS
                && let Some(wait) = RETRY_AFTER.with(Cell::get)
            {
                set_retry_after(&mut response, wait);
            }
            response
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_is_reported_under_a_known_name() {
        let limits = Limits::new(&Config::default(), Arc::new(douyin_kit::cache::MemoryCache::default()));
        for rule in [
            limits.ip,
            limits.connections,
            limits.user,
            limits.register,
            limits.publish,
            limits.signin.account,
            limits.signin.address,
        ] {
            assert!(douyin_kit::metrics::RATE_LIMITS.contains(&rule.name), "{}", rule.name);
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_secs(Duration::from_secs(60)), 60);
    }

    #[test]
    fn only_the_api_is_counted() {
        assert_eq!(kind("/douyin/user/register/"), Kind::Register);
        assert_eq!(kind("/douyin/user/register"), Kind::Register);
        assert_eq!(kind("/douyin/publish/action/"), Kind::Publish);
        assert_eq!(kind("/douyin/user/"), Kind::Api);
        assert_eq!(kind("/douyin/no/such/route"), Kind::Api);
        for path in ["/", "/index.html", "/app.js", "/static/avatar.png", "/media/videos/a.mp4", "/healthz", "/metrics"]
        {
            assert_eq!(kind(path), Kind::Uncounted, "{path}");
        }
        assert_eq!(kind("/douyinx"), Kind::Uncounted);
    }

    #[tokio::test]
    async fn a_bucket_refuses_past_its_burst_and_zero_is_off() {
        let cache: Arc<dyn Cache> = Arc::new(douyin_kit::cache::MemoryCache::default());
        let config = Config {
            rate_limit_ip_per_sec: 1,
            rate_limit_ip_burst: 3,
            rate_limit_user_per_sec: 0,
            ..Config::default()
        };
        let limits = Limits::new(&config, cache);
        for _ in 0..3 {
            assert!(limits.take(limits.ip, "a", 1).await.is_none());
        }
        let wait = limits.take(limits.ip, "a", 1).await.expect("fourth refused");
        assert!(wait <= Duration::from_secs(1));
        assert!(limits.take(limits.ip, "b", 1).await.is_none(), "another address is counted apart");
        for _ in 0..1000 {
            assert!(limits.user_call(1).await.is_ok());
        }
    }
}
