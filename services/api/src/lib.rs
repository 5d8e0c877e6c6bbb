//! The api role: the HTTP gateway that speaks the app contract, serves media
//! and the web client, and pushes chat messages over WebSocket.

mod auth;
mod media;
mod observe;
mod openapi;
mod params;
mod ranges;
mod ratelimit;
mod refusals;
mod reply;
mod routes;
mod server;
mod uploads;
mod web;
mod ws;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderMap, header},
    routing::MethodRouter,
};
use douyin_kit::{
    Config, Error, Result, auth::Tokens, cache::Cache, grpc::Clients, health::Readiness, pubsub::PubSub,
    shutdown::Shutdown,
};

pub use params::Params;
pub use reply::{Urls, month_day};

/// Everything a request handler needs, built once per process.
#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    clients: Clients,
    tokens: Tokens,
    accounts: Arc<auth::Accounts>,
    hub: Arc<ws::Hub>,
    readiness: Readiness,
    limits: Arc<ratelimit::Limits>,
    uploads: Arc<uploads::Uploads>,
}

/// Whether a route needs a signed-in user.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    User,
    Anyone,
}

impl AppState {
    /// Base URL for media and image links: `DOUYIN_PUBLIC_URL`, else the
    /// request's forwarded or Host header.
    pub fn urls(&self, headers: &HeaderMap) -> Urls {
        if let Some(url) = self.config.public_url.as_deref().filter(|u| !u.is_empty()) {
            return Urls { base: url.trim_end_matches('/').to_owned() };
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let proto = header("x-forwarded-proto").filter(|p| *p == "https" || *p == "http").unwrap_or("http");
        let host = header("x-forwarded-host")
            .or_else(|| header(header::HOST.as_str()))
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
            .unwrap_or("localhost");
        Urls { base: format!("{proto}://{host}") }
    }

    /// Notes the account of a token the user role just issued.
    pub fn issued(&self, token: &str) {
        auth::issued(&self.tokens, &self.accounts, token);
    }

    /// The calling user: 0 when anonymous (only allowed with `Need::Anyone`).
    /// A token that is present but invalid is always refused. A signed-in
    /// call counts against the user's rate limit, wherever the token came.
    pub async fn viewer(&self, params: &Params, headers: &HeaderMap, need: Need) -> Result<i64> {
        match auth::token(params, headers) {
            Some(token) => {
                let user_id = auth::verify(&self.tokens, &self.accounts, &self.clients, token).await?;
                self.limits.user_call(user_id).await?;
                Ok(user_id)
            }
            None if need == Need::Anyone => Ok(0),
            None => Err(Error::Unauthenticated("token is required; sign in first".into())),
        }
    }
}

/// What the gateway is built from.
pub struct Gateway {
    pub config: Arc<Config>,
    pub clients: Clients,
    pub tokens: Tokens,
    /// The bus chat messages are pushed on.
    pub pubsub: Arc<dyn PubSub>,
    /// Rate-limit counters (Redis when configured, shared across replicas).
    pub cache: Arc<dyn Cache>,
    /// The object store served at `/media/…`.
    pub media: Option<Arc<dyn douyin_kit::storage::ObjectStore>>,
    pub readiness: Readiness,
    pub shutdown: Shutdown,
}

/// The gateway's router with what its listener needs.
pub struct App {
    router: Router,
    limits: Arc<ratelimit::Limits>,
    settings: server::Settings,
}

/// Builds the gateway's router.
pub fn router(gateway: Gateway) -> App {
    let Gateway { config, clients, tokens, pubsub, cache, media, readiness, shutdown } = gateway;
    let hub = ws::Hub::start(pubsub, clients.chat.clone(), shutdown);
    let state = AppState {
        config: config.clone(),
        clients,
        tokens,
        accounts: Arc::default(),
        hub,
        readiness,
        limits: Arc::new(ratelimit::Limits::new(&config, cache)),
        uploads: uploads::Uploads::new(&config),
    };
    let upload_limit = usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX).saturating_add(1 << 20);
    let mut app = Router::new();
    for (path, route) in routes::all() {
        app = both_slashes(app, path, route);
    }
    app = both_slashes(
        app,
        routes::path::PUBLISH,
        axum::routing::post(routes::video::publish)
            .get(routes::video::publish)
            .layer(DefaultBodyLimit::max(upload_limit)),
    );
    app = app.route("/openapi.json", axum::routing::get(openapi::serve));
    // Metrics are served on the admin listener only, never on this public port.
    app = app.merge(web::routes(media));
    let limits = state.limits.clone();
    let router = app
        .layer(DefaultBodyLimit::max(usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), ratelimit::enforce))
        .layer(axum::middleware::from_fn(refusals::shape))
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state);
    App { router, limits, settings: server::Settings::new(&config) }
}

fn both_slashes(app: Router<AppState>, path: &str, route: MethodRouter<AppState>) -> Router<AppState> {
    app.route(path, route.clone()).route(path.trim_end_matches('/'), route)
}

/// Serves the gateway on `listener` until shutdown (header and idle
/// timeouts, connection limits: see [`server`]), then drains in-flight
/// requests.
pub async fn serve(app: App, listener: tokio::net::TcpListener, shutdown: Shutdown) -> Result<()> {
    server::serve(app.router, listener, app.settings, app.limits, shutdown).await
}
