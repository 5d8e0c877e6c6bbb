//! The backends as a client sees them: the database pool (connections used,
//! idle and allowed, acquire wait time and timeouts), Redis commands and S3
//! calls (latency and errors by operation).

use std::{
    sync::{LazyLock, Mutex},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::layer::{Context, Layer};

use super::{METRICS, latency_buckets};
use crate::db::Db;

/// The target of the event sqlx's pool emits after each acquire (at TRACE,
/// see [`crate::db`]), carrying `acquired_after_secs`.
pub const POOL_ACQUIRE_TARGET: &str = "sqlx::pool::acquire";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    db_client_connection_state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    db_system_name: &'static str,
    db_operation_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct S3Labels {
    rpc_method: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

pub(super) struct Deps {
    connections: Family<ConnectionLabels, Gauge>,
    connections_max: Gauge,
    acquire_timeouts: Counter,
    replica_fallbacks: Counter,
    acquire_wait: Histogram,
    redis_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    redis_errors: Family<OperationLabels, Counter>,
    s3_duration: Family<S3Labels, Histogram, fn() -> Histogram>,
    s3_errors: Family<S3Labels, Counter>,
}

/// The pool whose connections are reported (the one opened for the process's roles).
static POOL: LazyLock<Mutex<Option<Db>>> = LazyLock::new(Mutex::default);

impl Deps {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let connections = Family::<ConnectionLabels, Gauge>::default();
        let connections_max = Gauge::default();
        let acquire_timeouts = Counter::default();
        let replica_fallbacks = Counter::default();
        let acquire_wait = histogram();
        let redis_duration: Family<OperationLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(histogram);
        let redis_errors = Family::<OperationLabels, Counter>::default();
        let s3_duration: Family<S3Labels, Histogram, fn() -> Histogram> = Family::new_with_constructor(histogram);
        let s3_errors = Family::<S3Labels, Counter>::default();

        registry.register(
            "douyin_db_client_connection_count",
            "Database connections open, by state (used, idle)",
            connections.clone(),
        );
        registry.register(
            "douyin_db_client_connection_max",
            "Most connections the pool opens",
            connections_max.clone(),
        );
        registry.register(
            "douyin_db_client_connection_timeouts",
            "Statements that found no connection within the acquire timeout",
            acquire_timeouts.clone(),
        );
        registry.register(
            "douyin_db_replica_fallbacks",
            "Lag-tolerant reads the read replica failed, answered by the primary",
            replica_fallbacks.clone(),
        );
        registry.register_with_unit(
            "douyin_db_client_connection_wait_time",
            "Time to obtain a connection from the pool",
            Unit::Seconds,
            acquire_wait.clone(),
        );
        registry.register_with_unit(
            "douyin_db_client_operation_duration",
            "Time of a Redis command or pipeline, by operation",
            Unit::Seconds,
            redis_duration.clone(),
        );
        registry.register(
            "douyin_db_client_operation_errors",
            "Redis commands or pipelines that failed, by operation",
            redis_errors.clone(),
        );
        registry.register_with_unit(
            "douyin_s3_client_operation_duration",
            "Time of an S3 call, by operation",
            Unit::Seconds,
            s3_duration.clone(),
        );
        registry.register(
            "douyin_s3_client_operation_errors",
            "S3 calls that failed (a missing object is no failure), by operation",
            s3_errors.clone(),
        );
        Deps {
            connections,
            connections_max,
            acquire_timeouts,
            replica_fallbacks,
            acquire_wait,
            redis_duration,
            redis_errors,
            s3_duration,
            s3_errors,
        }
    }

    /// Reads the watched pool's connection counts into the gauges.
    pub(super) fn refresh_pool(&self) {
        let Some(db) = POOL.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return;
        };
        let pool = db.pool();
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        let open = i64::from(pool.size());
        let state = |s| ConnectionLabels { db_client_connection_state: s };
        self.connections.get_or_create(&state("idle")).set(idle);
        self.connections.get_or_create(&state("used")).set((open - idle).max(0));
        self.connections_max.set(i64::from(pool.options().get_max_connections()));
    }
}

/// Reports `db`'s connections from now on.
pub fn watch_pool(db: &Db) {
    *POOL.lock().unwrap_or_else(|e| e.into_inner()) = Some(db.clone());
}

/// Counts a statement that found no pool connection in time.
pub fn pool_timeout() {
    METRICS.deps.acquire_timeouts.inc();
}

/// Counts a read the replica failed that the primary answered instead.
pub fn replica_fallback() {
    METRICS.deps.replica_fallbacks.inc();
}

/// Records one Redis command (`operation` is its name, `PIPELINE` or `MULTI`).
pub fn redis_call(operation: &str, ok: bool, elapsed: Duration) {
    let labels = OperationLabels { db_system_name: "redis", db_operation_name: operation.to_owned() };
    let deps = &METRICS.deps;
    deps.redis_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    // The errors series exists (at 0) from an operation's first call on.
    let errors = deps.redis_errors.get_or_create(&labels);
    if !ok {
        errors.inc();
    }
}

/// Records one S3 call (`operation` as S3 names it: `PutObject`, `GetObject` …).
pub fn s3_call(operation: &'static str, ok: bool, elapsed: Duration) {
    let labels = S3Labels { rpc_method: operation };
    let deps = &METRICS.deps;
    deps.s3_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    let errors = deps.s3_errors.get_or_create(&labels);
    if !ok {
        errors.inc();
    }
}

/// Turns sqlx's per-acquire events into the wait-time histogram. Give it a
/// filter that passes [`POOL_ACQUIRE_TARGET`] at TRACE and nothing else.
pub struct PoolWaitLayer;

struct AcquiredAfter(Option<f64>);

impl Visit for AcquiredAfter {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "acquired_after_secs" {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber> Layer<S> for PoolWaitLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != POOL_ACQUIRE_TARGET {
            return;
        }
        let mut fields = AcquiredAfter(None);
        event.record(&mut fields);
        if let Some(secs) = fields.0.filter(|s| s.is_finite() && *s >= 0.0) {
            METRICS.deps.acquire_wait.observe(secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.split(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    }

    #[test]
    fn acquire_events_become_wait_times() {
        use tracing_subscriber::layer::SubscriberExt;
        let count = "douyin_db_client_connection_wait_time_seconds_count";
        let before = sample(&super::super::render(), count);
        let subscriber = tracing_subscriber::registry().with(PoolWaitLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "sqlx::pool::acquire", acquired_after_secs = 0.003_f64, "acquired connection");
            tracing::trace!(target: "other", acquired_after_secs = 0.003_f64, "not the pool");
        });
        assert_eq!(sample(&super::super::render(), count), before + 1.0);
    }

    #[tokio::test]
    async fn the_watched_pool_reports_used_and_idle_connections() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::Config { data_dir: dir.path().into(), database_max_connections: 3, ..Default::default() };
        let db = Db::connect(&config).await.unwrap();
        watch_pool(&db);
        let held = db.pool().acquire().await.unwrap();
        let text = super::super::render();
        assert_eq!(sample(&text, r#"douyin_db_client_connection_count{db_client_connection_state="used"}"#), 1.0);
        assert_eq!(sample(&text, "douyin_db_client_connection_max"), 3.0);
        drop(held);
    }

    #[test]
    fn calls_and_failures_are_counted_by_operation() {
        redis_call("MGET", true, Duration::from_millis(1));
        redis_call("EVALSHA", false, Duration::from_millis(1));
        s3_call("PutObject", false, Duration::from_millis(5));
        let text = super::super::render();
        let redis = r#"{db_system_name="redis",db_operation_name="EVALSHA"}"#;
        assert!(sample(&text, &format!("douyin_db_client_operation_errors_total{redis}")) >= 1.0, "{text}");
        assert!(sample(&text, &format!("douyin_db_client_operation_duration_seconds_count{redis}")) >= 1.0);
        assert!(sample(&text, r#"douyin_s3_client_operation_errors_total{rpc_method="PutObject"}"#) >= 1.0);
        // An operation that never failed reports 0 errors, not nothing.
        assert!(
            text.contains(
                r#"douyin_db_client_operation_errors_total{db_system_name="redis",db_operation_name="MGET"} 0"#
            ),
            "{text}"
        );
    }
}
