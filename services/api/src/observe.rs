//! A server span and the request metrics for every HTTP request: the route
//! pattern (never the raw path), the method, the HTTP status and the app's own
//! `status_code`, which [`crate::reply`] leaves on the response.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use tracing::{Instrument, field::Empty};

/// The app `status_code` a response carries in its body (0 = success).
#[derive(Clone, Copy, Debug)]
pub struct AppStatus(pub i32);

/// Methods kept as they are in labels; any other is `_OTHER` (bounded labels).
fn method_label(method: &http::Method) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    KNOWN.into_iter().find(|m| *m == method.as_str()).unwrap_or("_OTHER")
}

pub async fn observe(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = method_label(request.method());
    let span = tracing::info_span!(
        "http request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.route = %route,
        http.request.method = method,
        http.response.status_code = Empty,
        app.status_code = Empty,
        otel.status_code = Empty,
    );
    douyin_kit::telemetry::continue_trace(&span, request.headers());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    let app = response.extensions().get::<AppStatus>().map(|s| s.0);
    span.record("http.response.status_code", status.as_u16());
    if let Some(code) = app {
        span.record("app.status_code", code);
    }
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    let error = app.is_some_and(|code| code != 0) || status.is_server_error();
    // Inside the span, so a sampled trace becomes the latency exemplar.
    span.in_scope(|| douyin_kit::metrics::http_request(&route, method, error, started.elapsed()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_a_label() {
        assert_eq!(method_label(&http::Method::GET), "GET");
        assert_eq!(method_label(&http::Method::from_bytes(b"BREW").unwrap()), "_OTHER");
    }
}
