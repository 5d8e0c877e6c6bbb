//! Refusals made before or around a route, in the contract's JSON shape like
//! 404 and 413: a request line or headers too large (414, 431) and a method
//! the route does not answer (405, with its `Allow` header kept).
//!
//! Hyper answers alone (empty body) only past its own parser limits: a target
//! over 64 KiB or more than 100 header fields.

use axum::{
    Json,
    extract::Request,
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    observe::AppStatus,
    reply::{Empty, Envelope, with_charset},
};

/// Bytes of the request target (path and query) a request may carry: room
/// for the longest message the contract allows percent-encoded in the query.
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// Header bytes (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The contract's JSON shape with a non-business HTTP status.
pub fn refusal(status: StatusCode, message: String) -> Response {
    let code = i32::from(status.as_u16());
    let body = Envelope { status_code: code, status_msg: message, body: Empty {} };
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(AppStatus(code));
    with_charset(response)
}

/// The middleware: size checks first, then the route; a bodiless 405 from the
/// router gets the JSON body.
pub async fn shape(request: Request, next: Next) -> Response {
    let target = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return refusal(StatusCode::URI_TOO_LONG, format!("the request URI is longer than {MAX_URI_BYTES} bytes"));
    }
    let header_bytes: usize = request.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if header_bytes > MAX_HEADER_BYTES {
        let message = format!("request headers are larger than {MAX_HEADER_BYTES} bytes");
        return refusal(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, message);
    }
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED || response.headers().contains_key(header::CONTENT_TYPE) {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let allowed = allow.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let message = if allowed.is_empty() {
        format!("method {method} is not allowed on this route")
    } else {
        format!("method {method} is not allowed on this route; use {allowed}")
    };
    let mut shaped = refusal(StatusCode::METHOD_NOT_ALLOWED, message);
    if let Some(allow) = allow {
        shaped.headers_mut().insert(header::ALLOW, allow);
    }
    shaped
}
