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

/// Types media is served as: what uploads are stored as (videos and their
/// covers) and the images the gateway ships.
const MEDIA_TYPES: [&str; 6] = ["video/mp4", "video/quicktime", "video/webm", "image/jpeg", "image/png", "image/webp"];

/// The one fixed type an object is served as: the stored type or, without one,
/// the key's extension, when it is a media type; anything else is an opaque
/// download (`application/octet-stream`, with `nosniff`), never HTML or script.
fn media_type(stored: Option<&str>, key: &str) -> &'static str {
    let known = |t: Option<String>| t.and_then(|t| MEDIA_TYPES.into_iter().find(|m| *m == t));
    let stored = stored.map(|t| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    known(stored)
        .or_else(|| known(mime_guess::from_path(key).first().map(|m| m.essence_str().to_owned())))
        .unwrap_or("application/octet-stream")
}

/// Type, validators and caching headers every successful answer carries.
fn validators(head: &mut HeaderMap, info: &ObjectInfo, key: &str) {
    head.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type(info.content_type.as_deref(), key)));
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

#[cfg(test)]
mod tests {
    use super::media_type;

    #[test]
    fn media_is_served_only_as_a_media_type() {
        assert_eq!(media_type(Some("video/mp4"), "videos/1.mp4"), "video/mp4");
        assert_eq!(media_type(Some("Video/WebM; codecs=vp9"), "videos/1.webm"), "video/webm");
        // Without a stored type (local files, S3's octet-stream), by extension.
        assert_eq!(media_type(None, "covers/1.jpg"), "image/jpeg");
        assert_eq!(media_type(Some("binary/octet-stream"), "videos/1.mov"), "video/quicktime");
        // Never a type a browser would render or run.
        assert_eq!(media_type(Some("text/html"), "videos/x.html"), "application/octet-stream");
        assert_eq!(media_type(None, "a.svg"), "application/octet-stream");
        assert_eq!(media_type(Some("application/javascript"), "videos/1.mp4"), "video/mp4");
    }
}
