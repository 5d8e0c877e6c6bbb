//! Spans and metrics for gRPC: a server span per incoming call (continuing
//! the caller's trace) and a client span per outgoing call.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use tracing::{Instrument, Span, field::Empty};

use crate::Role;

/// `(service, method)` of a gRPC path `/pkg.Service/Method`.
fn split_path(path: &str) -> (&str, &str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    (parts.next().unwrap_or_default(), parts.next().unwrap_or_default())
}

const HEALTH: &str = "grpc.health.v1.Health";

/// The `grpc-status` a response carries in its headers (errors are sent as
/// trailers-only responses; a success reports its status in the trailers).
fn header_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// The span of one call of `service`/`method`, named and kind as given (the
/// span name must be a literal, hence a macro); its status fields are
/// recorded by [`record_code`].
macro_rules! rpc_span {
    ($name:literal, $kind:literal, $service:expr, $method:expr) => {{
        let (service, method) = ($service, $method);
        tracing::info_span!(
            $name,
            otel.name = %format!("{service}/{method}"),
            otel.kind = $kind,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
        )
    }};
}

/// Records a call's gRPC status code on its span (non-zero: an error).
fn record_code(span: &Span, code: i32) {
    span.record("rpc.grpc.status_code", code);
    if code != 0 {
        span.record("otel.status_code", "error");
    }
}

/// A span per outgoing call; the caller enters it to inject the trace
/// context and instruments the call with it.
pub fn client_span(path: &str) -> Span {
    let (service, method) = split_path(path);
    rpc_span!("grpc client", "client", service, method)
}

/// Records how an outgoing call ended on its client span.
pub fn record_client_outcome<B>(span: &Span, result: &Result<http::Response<B>, tonic::Status>) {
    let code = match result {
        Ok(response) => header_status(response.headers()).unwrap_or(0),
        Err(status) => status.code() as i32,
    };
    record_code(span, code);
}

/// The span of a call to a handler of this process (see `grpc::InProcess`),
/// a child of the caller's span.
pub fn hosted_span(path: &str) -> Span {
    let (service, method) = split_path(path);
    rpc_span!("grpc server", "server", service, method)
}

/// Records how a call to a handler of this process ended: on its span and in
/// the per-RPC metrics, as [`GrpcServerLayer`] does for a call that came over
/// the network.
pub fn record_hosted(span: &Span, path: &str, error: Option<&tonic::Status>, elapsed: std::time::Duration) {
    let code = error.map_or(0, |status| status.code() as i32);
    record_code(span, code);
    let (service, method) = split_path(path);
    span.in_scope(|| crate::metrics::rpc_request(service, method, code != 0, elapsed));
}

/// A server span around every gRPC call, child of the caller's span when the
/// metadata carries a trace context, plus the per-RPC request, error and
/// latency metrics. Health checks are counted but not traced.
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

impl<S, B, R> tower::Service<http::Request<B>> for GrpcServerSpan<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (service, method) = split_path(req.uri().path());
        let (service, method) = (service.to_owned(), method.to_owned());
        let span = if service == HEALTH {
            Span::none()
        } else {
            let span = rpc_span!("grpc server", "server", &service, &method);
            super::continue_trace(&span, req.headers());
            span
        };
        let started = Instant::now();
        let deadline = crate::deadline::from_headers(req.headers());
        let call = span.in_scope(|| self.inner.call(req));
        Box::pin(async move {
            let result = crate::deadline::scope(deadline, call.instrument(span.clone())).await;
            let code = match &result {
                Ok(response) => header_status(response.headers()).unwrap_or(0),
                Err(_) => 2,
            };
            record_code(&span, code);
            // Paths no service answers are counted together (bounded labels).
            let known = code != 12 && (service == HEALTH || Role::GRPC.iter().any(|r| r.grpc_service() == service));
            let (service, method) = if known { (service.as_str(), method.as_str()) } else { ("other", "other") };
            span.in_scope(|| crate::metrics::rpc_request(service, method, code != 0, started.elapsed()));
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(split_path("/douyin.video.v1.VideoService/Feed"), ("douyin.video.v1.VideoService", "Feed"));
        assert_eq!(split_path("/"), ("", ""));
    }
}
