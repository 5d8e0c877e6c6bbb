//! The operator process: controller plus the health and metrics server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kube::Client;
use prometheus_client::registry::Registry;
use tracing::info;

use crate::controller::{self, Context, Scope};
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::{Error, Result};

pub struct Config {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub http_addr: SocketAddr,
    /// Every namespace (one `Scope::Cluster`), or one controller per namespace
    /// served, each watching only its namespace (so a Role there is enough).
    pub scopes: Vec<Scope>,
}

/// Runs until SIGTERM or Ctrl-C: in-flight reconciles finish, readiness turns off,
/// then the HTTP server stops.
pub async fn run(config: Config) -> Result<()> {
    let client = Client::try_default().await?;
    let mut registry = Registry::default();
    let metrics = Metrics::default().register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(config.http_addr).await.map_err(Error::Http)?;
    info!(addr = %config.http_addr, "serving /healthz, /readyz and /metrics");
    let app = http::router(HttpState { registry: Arc::new(registry), ready: ready.clone() });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let ctx = Arc::new(Context::new(client, metrics));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let result = run_controllers(ctx, config.scopes, stopped, ready.clone()).await;
    ready.store(false, Ordering::Relaxed);
    server.abort();
    result
}

/// One controller per scope, sharing `ctx`, until `stopped` turns true; `ready`
/// turns true once every controller has its watches.
pub async fn run_controllers(
    ctx: Arc<Context>,
    scopes: Vec<Scope>,
    stopped: tokio::sync::watch::Receiver<bool>,
    ready: Arc<AtomicBool>,
) -> Result<()> {
    let controllers = scopes.len();
    let started = Arc::new(AtomicUsize::new(0));
    let runs = scopes.into_iter().map(|scope| {
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let (started, ready) = (started.clone(), ready.clone());
        controller::run(ctx.clone(), scope, shutdown, move || {
            if started.fetch_add(1, Ordering::Relaxed) + 1 == controllers {
                ready.store(true, Ordering::Relaxed);
            }
        })
    });
    futures::future::try_join_all(runs).await.map(drop)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    info!("shutting down");
}
