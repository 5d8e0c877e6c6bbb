//! Everything the gateway serves besides the API: media from the object store
//! (see `media`), default images, the web client, health, and the JSON 404
//! for unknown routes.

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use douyin_kit::{Error, storage::ObjectStore};
use rust_embed::RustEmbed;

use crate::{
    AppState,
    reply::{Empty, refuse},
};

#[derive(RustEmbed)]
#[folder = "web/"]
struct WebClient;

const STATIC: &[(&str, &str, &[u8])] = &[
    ("cover.jpg", "image/jpeg", include_bytes!("../static/cover.jpg")),
    ("avatar.png", "image/png", include_bytes!("../static/avatar.png")),
    ("background.jpg", "image/jpeg", include_bytes!("../static/background.jpg")),
];

pub fn routes(media: Option<Arc<dyn ObjectStore>>) -> Router<AppState> {
    let mut router = Router::new()
        .route("/static/{file}", get(static_file))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .fallback(fallback);
    if let Some(store) = media {
        // GET also answers HEAD (the handler sends no body for it).
        let serve = get(
            move |method: axum::http::Method, headers: axum::http::HeaderMap, path: axum::extract::Path<String>| {
                crate::media::serve(store.clone(), method, headers, path.0)
            },
        );
        router = router.route("/media/{*key}", serve);
    }
    router
}

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match STATIC.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
            ],
            *bytes,
        )
            .into_response(),
        None => not_found(),
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

pub(crate) fn not_found() -> Response {
    let mut response = refuse::<Empty>(Error::not_found("no such route"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// The web client's files; anything else is the contract's JSON 404.
async fn fallback(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match WebClient::get(path) {
        Some(file) if !path.starts_with("douyin/") => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            ([(header::CONTENT_TYPE, mime.as_ref().to_owned())], file.data.into_owned()).into_response()
        }
        _ => not_found(),
    }
}
