//! `/media/{key}`: videos and covers streamed from the object store (a local
//! directory or S3), with `Range` (206/416), `HEAD`, `ETag`/`If-None-Match`,
//! `Last-Modified`/`If-Modified-Since` and `If-Range`. Bodies are streamed
//! chunk by chunk from the store; nothing holds a whole object in memory.

use std::sync::Arc;

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use douyin_kit::{
    Error,
    storage::{ObjectInfo, ObjectStore, valid_key},
};

use crate::{
    ranges::{self, Wanted},
    reply::{Empty, refuse},
};

/// Keys are generated once per upload and never rewritten, so caches may keep
/// a copy for a day (and revalidate with the entity tag after).
const CACHE_CONTROL: &str = "public, max-age=86400";

/// Answers one GET or HEAD of `key`.
pub async fn serve(store: Arc<dyn ObjectStore>, method: Method, headers: HeaderMap, key: String) -> Response {
    let response = respond(store.as_ref(), &method, &headers, &key).await;
    nosniff(response)
}

async fn respond(store: &dyn ObjectStore, method: &Method, headers: &HeaderMap, key: &str) -> Response {
    if !valid_key(key) {
        return crate::web::not_found();
    }
    let info = match store.info(key).await {
        Ok(Some(info)) => info,
        Ok(None) => return crate::web::not_found(),
        Err(error) => return unavailable(error),
    };
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let mut head = HeaderMap::new();
    validators(&mut head, &info, key);

    // If-None-Match decides when present; If-Modified-Since only without it.
    let unchanged = match header(header::IF_NONE_MATCH) {
        Some(tags) => ranges::none_match(tags, info.etag.as_deref()),
        None => header(header::IF_MODIFIED_SINCE).is_some_and(|date| ranges::not_modified_since(date, info.modified)),
    };
    if unchanged {
        head.remove(header::CONTENT_TYPE);
        return (StatusCode::NOT_MODIFIED, head).into_response();
    }

    // Ranges are defined for GET only, and apply only to the representation
    // an If-Range names.
    let range = header(header::RANGE).filter(|_| *method == Method::GET).filter(|_| {
        header(header::IF_RANGE).is_none_or(|cond| ranges::if_range_holds(cond, info.etag.as_deref(), info.modified))
    });
    let (status, first, len) = match ranges::wanted(range, info.len) {
        Wanted::Whole => (StatusCode::OK, 0, info.len),
        Wanted::Part { first, last } => {
            let range = format!("bytes {first}-{last}/{}", info.len);
            head.insert(header::CONTENT_RANGE, HeaderValue::from_str(&range).expect("ASCII"));
            (StatusCode::PARTIAL_CONTENT, first, last - first + 1)
        }
        Wanted::Unsatisfiable => {
            let range = format!("bytes */{}", info.len);
            head.insert(header::CONTENT_RANGE, HeaderValue::from_str(&range).expect("ASCII"));
            head.remove(header::CONTENT_TYPE);
            head.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return (StatusCode::RANGE_NOT_SATISFIABLE, head).into_response();
        }
    };
    head.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if *method == Method::HEAD {
        return (status, head).into_response();
    }
    match store.read(key, first, len).await {
        Ok(stream) => (status, head, Body::from_stream(stream)).into_response(),
        Err(error) => unavailable(error),
    }
}

/// Type, validators and caching headers every successful answer carries.
fn validators(head: &mut HeaderMap, info: &ObjectInfo, key: &str) {
    let content_type = info
        .content_type
        .clone()
        .filter(|t| !t.is_empty() && t != "application/octet-stream" && t != "binary/octet-stream")
        .unwrap_or_else(|| mime_guess::from_path(key).first_or_octet_stream().to_string());
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        head.insert(header::CONTENT_TYPE, value);
    }
    head.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    head.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    if let Some(value) = info.etag.as_deref().and_then(|t| HeaderValue::from_str(t).ok()) {
        head.insert(header::ETAG, value);
    }
    if let Some(modified) = info.modified
        && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        head.insert(header::LAST_MODIFIED, value);
    }
}

/// The store did not answer: 503 in the contract's shape.
fn unavailable(error: Error) -> Response {
    let mut response = refuse::<Empty>(error);
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// Media is never to be content-sniffed by browsers (an uploaded "video"
/// could otherwise run as HTML from the site's origin).
pub fn nosniff(mut response: Response) -> Response {
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
