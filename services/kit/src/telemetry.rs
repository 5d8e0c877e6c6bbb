//! Logs, traces and trace-context propagation.
//!
//! Logs are JSON lines (or pretty output in a terminal) that carry the
//! `trace_id`/`span_id` of the span they were written in. Traces are exported
//! over OTLP (gRPC or HTTP/protobuf, see `otlp`) when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set, configured by the standard `OTEL_*` variables; spans follow OpenTelemetry semantic conventions
//! (`http.route`, `rpc.method`, `db.operation.name`). W3C trace context travels
//! in gRPC metadata, so one app request is one trace across every role.
//!
//! Exporting never holds up a request: finished spans go to a bounded queue
//! that a background thread sends in batches, dropping spans when the
//! collector cannot keep up or is down.

mod grpc;
mod logs;
mod otlp;
mod redis;
mod sql;

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, Registry, filter::Targets, fmt::format::JsonFields, layer::SubscriberExt, util::SubscriberInitExt,
};

pub use grpc::{GrpcServerLayer, GrpcServerSpan, client_span, hosted_span, record_client_outcome, record_hosted};
pub use otlp::{ExportConfigError, OtlpProtocol};
pub use redis::TracedConnection;

use crate::Config;

/// Log filter when `RUST_LOG` is unset.
const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,h2=warn,tower=warn,hyper=warn,aws=warn,opentelemetry=warn";

/// Keeps the trace pipeline alive; dropping it flushes the spans not yet sent
/// (bounded by the exporter's timeout). Hold it in `main` until the process exits.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("trace export did not shut down cleanly: {error}");
        }
    }
}

/// Installs the global subscriber: logs (JSON, or human-readable on a
/// terminal or with `DOUYIN_LOG_FORMAT=pretty`) filtered by `DOUYIN_LOG` or
/// `RUST_LOG` (default `info`), and when an OTLP endpoint is configured, spans exported under
/// `service.name` = `OTEL_SERVICE_NAME`, else `service_name`.
/// Must run inside the Tokio runtime (the exporter's connection lives there).
/// A second call (tests starting several apps) changes nothing. Refuses export
/// settings that cannot work (an unknown protocol, an https endpoint, a log
/// format or filter that does not parse).
pub fn init(config: &Config, service_name: &str) -> Result<Telemetry, ExportConfigError> {
    use std::io::IsTerminal;
    let json = match config.log_format.as_deref().map(str::trim) {
        Some("json") => true,
        Some("pretty") => false,
        None | Some("") => !std::io::stderr().is_terminal(),
        Some(other) => return Err(ExportConfigError::LogFormat(other.to_owned())),
    };
    let log_filter = log_filter(config)?;
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .event_format(logs::JsonWithTrace)
            .fmt_fields(JsonFields::new())
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(log_filter).boxed()
    };
    let pool_wait = crate::metrics::PoolWaitLayer
        .with_filter(Targets::new().with_target(crate::metrics::POOL_ACQUIRE_TARGET, Level::TRACE))
        .boxed();
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![logs, pool_wait];

    let provider = if export_configured() {
        let protocol = otlp::check()?;
        match tracer_provider(service_name, protocol) {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("traces are not exported: {error}");
                None
            }
        }
    } else {
        None
    };
    if let Some(provider) = &provider {
        let tracer = provider.tracer("douyin");
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer.clone())
                .with_threads(false)
                .with_target(false)
                .with_filter(span_filter())
                .boxed(),
        );
        let system = if config.is_sqlite() { "sqlite" } else { "mysql" };
        // sqlx reports each statement as a DEBUG event; only this layer sees them.
        layers.push(
            sql::SqlSpans::new(tracer, system)
                .with_filter(Targets::new().with_target(sql::TARGET, Level::TRACE))
                .boxed(),
        );
    }
    match tracing_subscriber::registry().with(layers).try_init() {
        Ok(()) => {
            tracing::debug!(service = service_name, traces = provider.is_some(), "telemetry initialised");
            Ok(Telemetry { provider })
        }
        Err(_) => Ok(Telemetry { provider: None }),
    }
}

/// The log filter: `DOUYIN_LOG` (the `log` setting), else `RUST_LOG`, else
/// [`DEFAULT_LOG_FILTER`]. A filter that does not parse refuses the start.
fn log_filter(config: &Config) -> Result<EnvFilter, ExportConfigError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (var, value) = match (config.log.as_deref(), rust_log.as_deref()) {
        (Some(value), _) if !value.trim().is_empty() => ("DOUYIN_LOG", value),
        (_, Some(value)) if !value.trim().is_empty() => ("RUST_LOG", value),
        _ => return Ok(EnvFilter::new(DEFAULT_LOG_FILTER)),
    };
    EnvFilter::builder().parse(value).map_err(|e| ExportConfigError::LogFilter {
        var,
        value: value.to_owned(),
        error: e.to_string(),
    })
}

/// Spans worth a place in a trace: this code's, at INFO and above, without
/// the transport crates' internals.
fn span_filter() -> Targets {
    Targets::new()
        .with_default(Level::INFO)
        .with_target("h2", Level::WARN)
        .with_target("hyper", Level::WARN)
        .with_target("tower", Level::WARN)
        .with_target("tonic", Level::WARN)
        .with_target("opentelemetry", tracing::level_filters::LevelFilter::OFF)
        .with_target(sql::TARGET, Level::WARN)
}

fn env_set(key: &str) -> bool {
    std::env::var(key).is_ok_and(|v| !v.trim().is_empty())
}

/// An endpoint is set and the SDK is not disabled.
fn export_configured() -> bool {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled && (env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// OTLP in `protocol` with a batch processor; endpoint, headers, timeout,
/// batch sizes and sampler come from the standard `OTEL_*` variables.
fn tracer_provider(default_name: &str, protocol: OtlpProtocol) -> Result<SdkTracerProvider, String> {
    let exporter = otlp::exporter(protocol)?;
    let named_by_env = env_set("OTEL_SERVICE_NAME")
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|attrs| attrs.split(',').any(|kv| kv.trim_start().starts_with("service.name=")));
    let mut resource = Resource::builder();
    if !named_by_env {
        resource = resource.with_service_name(default_name.to_owned());
    }
    Ok(SdkTracerProvider::builder().with_resource(resource.build()).with_batch_exporter(exporter).build())
}

/// Reads W3C `traceparent`/`tracestate` from HTTP headers or gRPC metadata.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

/// Writes the current span's trace context into outgoing gRPC metadata
/// (nothing when traces are off).
pub fn inject_context(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace context carried by incoming `headers`,
/// when they carry one. Call before the span is first entered.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(parent);
    }
}

/// The trace and span ids of the current span, when traces are on.
pub fn current_ids() -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt;
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_round_trips_through_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        let mut out = http::HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut out));
        assert_eq!(out["traceparent"], headers["traceparent"]);
    }

    #[test]
    fn nothing_is_injected_without_a_trace() {
        let mut headers = http::HeaderMap::new();
        inject_context(&mut headers);
        assert!(headers.is_empty());
    }
}
