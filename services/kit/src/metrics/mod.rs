//! The process's metrics, served at `/metrics` on the admin port in the
//! OpenMetrics text format. Names and labels follow the OpenTelemetry semantic
//! conventions with the unit in the name: requests, errors and latency per HTTP
//! route and per RPC (latency histograms carry the trace id of a sampled span
//! as an exemplar), cache hits and misses, the build; the backends in [`deps`]
//! (database pool, Redis, S3) and the gateway's edge in [`edge`] (WebSocket
//! push, uploads, rate limits).
//!
//! One registry per process: every role hosted in it reports here, so a
//! process that runs several roles exposes them all on one endpoint.

mod deps;
mod edge;

use std::{sync::LazyLock, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, exemplar::HistogramWithExemplars, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

pub use deps::{POOL_ACQUIRE_TARGET, PoolWaitLayer, pool_timeout, redis_call, replica_fallback, s3_call, watch_pool};
pub use edge::{
    LIMITS as RATE_LIMITS, UploadGuard, WebSocketGuard, push_dropped, pushed, rate_limited, upload_bytes,
    upload_refused,
};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
}

/// The exemplar of a latency observation: the trace it was part of.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TraceLabels {
    trace_id: String,
}

type Latency<L> = Family<L, HistogramWithExemplars<TraceLabels>, fn() -> HistogramWithExemplars<TraceLabels>>;

/// Bucket bounds for latencies, in seconds: 0.25 ms, 0.5 ms, 1 ms … 16.384 s
/// (powers of two), fine enough for a feed answered in a few milliseconds and
/// wide enough for a slow upload.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    (0..17).map(|i| 0.000_25 * f64::from(1u32 << i))
}

fn latency_histogram() -> HistogramWithExemplars<TraceLabels> {
    HistogramWithExemplars::new(latency_buckets())
}

/// The trace id of the current span, when it is sampled (exported).
fn current_trace() -> Option<TraceLabels> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| TraceLabels { trace_id: sc.trace_id().to_string() })
}

struct Metrics {
    registry: Registry,
    http_requests: Family<RouteLabels, Counter>,
    http_errors: Family<RouteLabels, Counter>,
    http_duration: Latency<RouteLabels>,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_errors: Family<RpcLabels, Counter>,
    rpc_duration: Latency<RpcLabels>,
    cache_hits: Family<CacheLabels, Counter>,
    cache_misses: Family<CacheLabels, Counter>,
    build_info: Family<BuildLabels, Gauge>,
    deps: deps::Deps,
    edge: edge::Edge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let http_requests = Family::<RouteLabels, Counter>::default();
        let http_errors = Family::<RouteLabels, Counter>::default();
        let http_duration: Latency<RouteLabels> = Family::new_with_constructor(latency_histogram);
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        let rpc_errors = Family::<RpcLabels, Counter>::default();
        let rpc_duration: Latency<RpcLabels> = Family::new_with_constructor(latency_histogram);
        let cache_hits = Family::<CacheLabels, Counter>::default();
        let cache_misses = Family::<CacheLabels, Counter>::default();
        let build_info = Family::<BuildLabels, Gauge>::default();

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
        registry.register("douyin_build_info", "The running build: version and commit (value 1)", build_info.clone());
        let deps = deps::Deps::new(&mut registry);
        let edge = edge::Edge::new(&mut registry);

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
            build_info,
            deps,
            edge,
        }
    }
}

/// Counts one answered HTTP request (`route` is the matched route pattern).
/// Call it inside the request's span: a sampled trace becomes the exemplar.
pub fn http_request(route: &str, method: &str, error: bool, elapsed: Duration) {
    let labels = RouteLabels { http_route: route.to_owned(), http_request_method: method.to_owned() };
    let m = &*METRICS;
    m.http_requests.get_or_create(&labels).inc();
    if error {
        m.http_errors.get_or_create(&labels).inc();
    }
    m.http_duration.get_or_create(&labels).observe(elapsed.as_secs_f64(), current_trace(), None);
}

/// Counts one served gRPC call; inside its span, like [`http_request`].
pub fn rpc_request(service: &str, method: &str, error: bool, elapsed: Duration) {
    let labels = RpcLabels { rpc_service: service.to_owned(), rpc_method: method.to_owned() };
    let m = &*METRICS;
    m.rpc_requests.get_or_create(&labels).inc();
    if error {
        m.rpc_errors.get_or_create(&labels).inc();
    }
    m.rpc_duration.get_or_create(&labels).observe(elapsed.as_secs_f64(), current_trace(), None);
}

/// Counts lookups in the named cache.
pub fn cache_lookups(cache: &str, hits: u64, misses: u64) {
    let labels = CacheLabels { cache: cache.to_owned() };
    let m = &*METRICS;
    m.cache_hits.get_or_create(&labels).inc_by(hits);
    m.cache_misses.get_or_create(&labels).inc_by(misses);
}

/// Reports the running build (`douyin_build_info{version, commit} 1`).
pub fn build_info(version: &str, commit: &str) {
    let labels = BuildLabels { version: version.to_owned(), commit: commit.to_owned() };
    METRICS.build_info.get_or_create(&labels).set(1);
}

/// Every metric in the OpenMetrics text format.
pub fn render() -> String {
    let m = &*METRICS;
    m.deps.refresh_pool();
    let mut out = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &m.registry) {
        tracing::warn!(%error, "could not encode metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counted_requests() {
        http_request("/douyin/feed/", "GET", false, Duration::from_millis(3));
        http_request("/douyin/feed/", "GET", true, Duration::from_millis(3));
        cache_lookups("counts", 2, 1);
        build_info("1.2.3", "abc123");
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
        assert!(text.contains(r#"douyin_build_info{version="1.2.3",commit="abc123"} 1"#), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn latency_buckets_run_from_a_quarter_millisecond_to_sixteen_seconds() {
        let bounds: Vec<f64> = latency_buckets().collect();
        assert_eq!(bounds.first(), Some(&0.000_25));
        assert_eq!(bounds.last(), Some(&16.384));
        // Every bound of the former 1 ms … 16 s set is still one (alert thresholds name them).
        for i in 0..15 {
            let old = 0.001 * f64::from(1u32 << i);
            assert!(bounds.iter().any(|b| (b - old).abs() < 1e-12), "{old}");
        }
        http_request("/buckets", "GET", false, Duration::from_micros(300));
        let text = render();
        let bucket = |le: &str| {
            let le = format!(r#"le="{le}""#);
            let line = text.lines().find(|l| l.contains(r#"http_route="/buckets""#) && l.contains(&le));
            line.unwrap_or_else(|| panic!("no bucket {le}: {text}")).rsplit(' ').next().unwrap().to_owned()
        };
        assert_eq!(bucket("0.00025"), "0");
        assert_eq!(bucket("0.0005"), "1");
        assert_eq!(bucket("16.384"), "1");
    }

    #[test]
    fn a_sampled_span_becomes_the_exemplar() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let trace_id = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            span.in_scope(|| {
                rpc_request("exemplar.Service", "Call", false, Duration::from_millis(2));
                current_trace().expect("a sampled span").trace_id
            })
        });
        assert_eq!(trace_id.len(), 32);
        let text = render();
        let line = text
            .lines()
            .find(|l| l.contains(r#"rpc_service="exemplar.Service""#) && l.contains(r#"le="0.002""#))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains(&format!(r#"# {{trace_id="{trace_id}"}} 0.002"#)), "{line}");
        // Outside any span there is none.
        assert!(current_trace().is_none());
    }
}
