//! The process's metrics, served at `/metrics` in the Prometheus (OpenMetrics)
//! text format: requests, errors and latency per HTTP route and per RPC, the
//! database pool, and cache hits and misses.
//!
//! One registry per process: every role hosted in it reports here, so a
//! process that runs several roles exposes them all on one endpoint.

use std::{
    sync::{LazyLock, Mutex},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use crate::db::Db;

/// The media type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    http_route: String,
    http_request_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc_service: String,
    rpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: String,
}

type Latency = Family<RouteLabels, Histogram, fn() -> Histogram>;
type RpcLatency = Family<RpcLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

struct Metrics {
    registry: Registry,
    http_requests: Family<RouteLabels, Counter>,
    http_errors: Family<RouteLabels, Counter>,
    http_duration: Latency,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_errors: Family<RpcLabels, Counter>,
    rpc_duration: RpcLatency,
    cache_hits: Family<CacheLabels, Counter>,
    cache_misses: Family<CacheLabels, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The pool whose gauges are reported (the last one opened for a role).
static POOL: LazyLock<Mutex<Option<Db>>> = LazyLock::new(Mutex::default);

impl Metrics {
    fn new() -> Self {
        let http_requests = Family::<RouteLabels, Counter>::default();
        let http_errors = Family::<RouteLabels, Counter>::default();
        let http_duration: Latency = Family::new_with_constructor(latency_histogram);
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        let rpc_errors = Family::<RpcLabels, Counter>::default();
        let rpc_duration: RpcLatency = Family::new_with_constructor(latency_histogram);
        let cache_hits = Family::<CacheLabels, Counter>::default();
        let cache_misses = Family::<CacheLabels, Counter>::default();

        let mut registry = Registry::default();
        registry.register("douyin_http_server_requests", "HTTP requests by route", http_requests.clone());
        registry.register(
            "douyin_http_server_errors",
            "HTTP requests answered with a non-zero app status_code or a 5xx status",
            http_errors.clone(),
        );
        registry.register_with_unit(
            "douyin_http_server_request_duration",
            "Time to answer an HTTP request",
            Unit::Seconds,
            http_duration.clone(),
        );
        registry.register("douyin_rpc_server_requests", "gRPC calls served by method", rpc_requests.clone());
        registry.register("douyin_rpc_server_errors", "gRPC calls answered with a non-OK status", rpc_errors.clone());
        registry.register_with_unit(
            "douyin_rpc_server_duration",
            "Time to answer a gRPC call",
            Unit::Seconds,
            rpc_duration.clone(),
        );
        registry.register("douyin_cache_hits", "Cache lookups answered from the cache", cache_hits.clone());
        registry.register("douyin_cache_misses", "Cache lookups that went to the database", cache_misses.clone());
        registry.register_collector(Box::new(PoolGauges));

        Metrics {
            registry,
            http_requests,
            http_errors,
            http_duration,
            rpc_requests,
            rpc_errors,
            rpc_duration,
            cache_hits,
            cache_misses,
        }
    }
}

/// Counts one answered HTTP request (`route` is the matched route pattern).
pub fn http_request(route: &str, method: &str, error: bool, elapsed: Duration) {
    let labels = RouteLabels { http_route: route.to_owned(), http_request_method: method.to_owned() };
    let m = &*METRICS;
    m.http_requests.get_or_create(&labels).inc();
    if error {
        m.http_errors.get_or_create(&labels).inc();
    }
    m.http_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
}

/// Counts one served gRPC call.
pub fn rpc_request(service: &str, method: &str, error: bool, elapsed: Duration) {
    let labels = RpcLabels { rpc_service: service.to_owned(), rpc_method: method.to_owned() };
    let m = &*METRICS;
    m.rpc_requests.get_or_create(&labels).inc();
    if error {
        m.rpc_errors.get_or_create(&labels).inc();
    }
    m.rpc_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
}

/// Counts lookups in the named cache.
pub fn cache_lookups(cache: &str, hits: u64, misses: u64) {
    let labels = CacheLabels { cache: cache.to_owned() };
    let m = &*METRICS;
    m.cache_hits.get_or_create(&labels).inc_by(hits);
    m.cache_misses.get_or_create(&labels).inc_by(misses);
}

/// Reports `db`'s pool size and idle connections from now on.
pub fn watch_pool(db: &Db) {
    *POOL.lock().unwrap_or_else(|e| e.into_inner()) = Some(db.clone());
}

/// Every metric in the OpenMetrics text format.
pub fn render() -> String {
    let mut out = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry) {
        tracing::warn!(%error, "could not encode metrics");
    }
    out
}

/// `GET /metrics`.
pub async fn handler() -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], render()).into_response()
}

#[derive(Debug)]
struct PoolGauges;

impl Collector for PoolGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(db) = POOL.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Ok(());
        };
        let pool = db.pool();
        let gauges = [
            ("douyin_db_pool_size", "Open database connections", i64::from(pool.size())),
            ("douyin_db_pool_idle", "Idle database connections", i64::try_from(pool.num_idle()).unwrap_or(i64::MAX)),
            ("douyin_db_pool_max", "Most connections the pool opens", i64::from(pool.options().get_max_connections())),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counted_requests() {
        http_request("/douyin/feed/", "GET", false, Duration::from_millis(3));
        http_request("/douyin/feed/", "GET", true, Duration::from_millis(3));
        cache_lookups("counts", 2, 1);
        let text = render();
        assert!(
            text.contains(
                r#"douyin_http_server_requests_total{http_route="/douyin/feed/",http_request_method="GET"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"douyin_http_server_errors_total{http_route="/douyin/feed/",http_request_method="GET"} 1"#)
        );
        assert!(text.contains("# TYPE douyin_http_server_request_duration_seconds histogram"), "{text}");
        assert!(text.contains(r#"douyin_cache_hits_total{cache="counts"} 2"#));
        assert!(text.ends_with("# EOF\n"));
    }
}
