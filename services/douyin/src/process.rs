//! One process: the roles it hosts and the listeners it serves.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use douyin_kit::{
    Config, Role,
    auth::Tokens,
    cache,
    db::Db,
    grpc::{self, LocalServers},
    health::{self, Readiness, probe},
    host::{self, Host, RoleContext},
    pubsub,
    shutdown::Shutdown,
    storage,
};
use futures::future::BoxFuture;
use tokio::net::TcpListener;

/// Every service's migrations, applied in this order.
fn migrations() -> [&'static douyin_kit::db::ServiceMigrations; 6] {
    [
        &douyin_counts::stats::MIGRATIONS,
        &douyin_user::MIGRATIONS,
        &douyin_video::MIGRATIONS,
        &douyin_interaction::MIGRATIONS,
        &douyin_relation::MIGRATIONS,
        &douyin_chat::MIGRATIONS,
    ]
}

/// `douyin-<role>` for one role, `douyin` for several: the name a process
/// signs its calls and reports its traces with.
pub fn service_name(roles: &[Role]) -> String {
    grpc::issuer(roles)
}

/// Applies every pending migration.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let db = Db::connect(config).await.context("connecting to the database")?;
    db.migrate(&migrations()).await.context("migrating")?;
    douyin_user::fill_name_keys(&db).await.context("filling account name skeletons")?;
    tracing::info!("migrations applied");
    db.close().await;
    Ok(())
}

/// Migrates, then gives the database a new generation (after a restore):
/// caches filled from its contents before are never read again.
pub async fn new_generation(config: &Config) -> anyhow::Result<String> {
    let db = Db::connect(config).await.context("connecting to the database")?;
    db.migrate(&migrations()).await.context("migrating")?;
    let generation = douyin_kit::cache::generation::renew(db.pool()).await.context("writing the new generation")?;
    tracing::info!(%generation, "database generation renewed");
    db.close().await;
    Ok(generation)
}

/// Brings the database to the current schema and seeds demo content.
struct Prepare {
    db: Db,
    migrate: bool,
    storage: Option<Arc<dyn douyin_kit::storage::ObjectStore>>,
    done: Arc<AtomicBool>,
}

impl Prepare {
    async fn run_once(&self) -> douyin_kit::Result<()> {
        self.db.ping().await?;
        if self.migrate {
            self.db.migrate(&migrations()).await?;
            douyin_user::fill_name_keys(&self.db).await?;
        }
        if let Some(storage) = &self.storage {
            douyin_video::seed_demo_content(&self.db, storage, douyin_user::demo_account(&self.db)).await?;
        }
        self.done.store(true, Ordering::Release);
        Ok(())
    }

    async fn retry(self, shutdown: Shutdown) {
        let mut delay = Duration::from_secs(1);
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.clone().wait() => return,
            }
            match self.run_once().await {
                Ok(()) => {
                    tracing::info!("database prepared");
                    return;
                }
                Err(error) => tracing::warn!(%error, "database still not prepared"),
            }
            delay = (delay * 2).min(Duration::from_secs(15));
        }
    }
}

/// A started process.
pub struct Running {
    pub http_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    /// The cache this process opened (tests flush it to prove nothing depends on it).
    pub cache: Arc<dyn cache::Cache>,
    tasks: Vec<Task>,
    shutdown: Shutdown,
    grace: std::time::Duration,
}

impl Running {
    /// Serves until shutdown, then waits (at most the grace period) for
    /// in-flight requests to finish.
    pub async fn wait(self) -> anyhow::Result<()> {
        let Running { tasks, shutdown, grace, .. } = self;
        let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
        let all = futures::future::join_all(handles);
        tokio::pin!(all);
        tokio::select! {
            results = &mut all => {
                for result in results {
                    result.context("server task panicked")??;
                }
                return Ok(());
            }
            () = shutdown.wait() => {}
        }
        match tokio::time::timeout(grace, all).await {
            Ok(results) => {
                for result in results {
                    result.context("server task panicked")??;
                }
                tracing::info!("drained; exiting");
            }
            Err(_) => tracing::warn!("grace period over; exiting with requests still in flight"),
        }
        Ok(())
    }
}

/// The key of service credentials. Required when a role is called from or
/// calls another process; `serve all` runs without one.
fn service_key(config: &Config, roles: &[Role]) -> anyhow::Result<Option<grpc::ServiceKey>> {
    let all_in_one = Role::ALL.iter().all(|r| roles.contains(r));
    match config.service_secret.as_deref().filter(|s| !s.is_empty()) {
        Some(secret) => Ok(Some(grpc::ServiceKey::new(secret.as_bytes())?)),
        None if all_in_one => Ok(None),
        None => anyhow::bail!(
            "DOUYIN_SERVICE_SECRET is not set: roles in separate processes authenticate every call with it \
             (the same secret of at least {} bytes in every process)",
            grpc::MIN_SECRET_LEN
        ),
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("binding the {what} listener on {addr}"))
}

/// The backends a process opens: only what its roles need.
struct Backends {
    db: Option<Db>,
    cache: Arc<dyn cache::Cache>,
    pubsub: Arc<dyn pubsub::PubSub>,
    storage: Option<Arc<dyn storage::ObjectStore>>,
    tokens: Option<Tokens>,
}

impl Backends {
    async fn open(config: &Config, roles: &[Role]) -> anyhow::Result<Self> {
        let needs = |need: fn(Role) -> bool| roles.iter().any(|role| need(*role));
        let db = if needs(Role::needs_database) { Some(Db::connect(config).await.context("database")?) } else { None };
        if let Some(db) = &db {
            douyin_kit::metrics::watch_pool(db);
        }
        let cache = cache::from_config(config).await.context("cache")?;
        let pubsub = pubsub::from_config(config).await.context("pub/sub")?;
        let storage = if needs(Role::needs_storage) {
            Some(storage::from_config(config).await.context("object storage")?)
        } else {
            None
        };
        let tokens =
            if needs(Role::needs_tokens) { Some(Tokens::from_config(config).context("JWT key")?) } else { None };
        Ok(Self { db, cache, pubsub, storage, tokens })
    }
}

/// Builds every gRPC role of `roles` from `ctx` and adds it to `host`.
async fn host_roles(ctx: &RoleContext, roles: &[Role], host: &mut Host) -> anyhow::Result<()> {
    for &role in roles {
        let built = || format!("building the {role} role");
        match role {
            Role::Api => {}
            Role::User => host.add(role, douyin_user::build(ctx).with_context(built)?),
            Role::Video => host.add(role, douyin_video::build(ctx).await.with_context(built)?),
            Role::Interaction => host.add(role, douyin_interaction::build(ctx)),
            Role::Relation => host.add(role, douyin_relation::build(ctx)),
            Role::Chat => host.add(role, douyin_chat::build(ctx)),
            Role::Counter => host.add(role, douyin_counter::build(ctx)),
        }
    }
    Ok(())
}

/// Migrations and demo content. When the database does not answer yet, this
/// goes on in the background and the hosted roles report NOT_SERVING until it
/// is done.
async fn prepare(ctx: &RoleContext, roles: &[Role], host: &mut Host) -> anyhow::Result<()> {
    let config = &ctx.config;
    let seeds = roles.contains(&Role::Video) && config.demo_content();
    let done = Arc::new(AtomicBool::new(false));
    let storage = ctx.storage.clone().filter(|_| seeds);
    let prepare = Prepare { db: ctx.db.clone(), migrate: config.migrate, storage, done: done.clone() };
    match prepare.run_once().await {
        Ok(()) => {}
        Err(error @ (douyin_kit::Error::Unavailable(_) | douyin_kit::Error::Busy(_))) => {
            tracing::warn!(%error, "database not reachable yet; preparing it in the background");
            tokio::spawn(prepare.retry(ctx.shutdown.clone()));
        }
        Err(error) => return Err(error).context("preparing the database"),
    }
    host.require_everywhere(&probe("migrations", move || {
        let done = done.load(Ordering::Acquire);
        async move {
            if done { Ok(()) } else { Err(douyin_kit::Error::Unavailable("database not prepared yet".into())) }
        }
    }));
    Ok(())
}

type Task = BoxFuture<'static, anyhow::Result<()>>;

/// Binds the gRPC listener of the hosted roles. Without a service key it
/// answers health checks only.
async fn serve_grpc(
    addr: SocketAddr,
    routes: tonic::service::Routes,
    key: Option<grpc::ServiceKey>,
    shutdown: Shutdown,
) -> anyhow::Result<(SocketAddr, Task)> {
    let listener = bind(addr, "gRPC").await?;
    let addr = listener.local_addr()?;
    let key = key.unwrap_or_else(|| {
        tracing::info!("DOUYIN_SERVICE_SECRET is not set: the gRPC listener answers health checks only");
        grpc::ServiceKey::random()
    });
    Ok((addr, Box::pin(async move { Ok(grpc::serve(routes, listener, key, shutdown).await?) })))
}

/// Binds the gateway's HTTP listener.
async fn serve_gateway(gateway: douyin_api::Gateway) -> anyhow::Result<(SocketAddr, Task)> {
    let listener = bind(gateway.config.http_addr, "HTTP").await?;
    let addr = listener.local_addr()?;
    let shutdown = gateway.shutdown.clone();
    let router = douyin_api::router(gateway);
    Ok((addr, Box::pin(async move { Ok(douyin_api::serve(router, listener, shutdown).await?) })))
}

/// Opens the backends the roles need and binds every listener, so that when
/// this returns the process accepts connections.
pub async fn start(config: Config, roles: &[Role], shutdown: Shutdown) -> anyhow::Result<Running> {
    let service_key = service_key(&config, roles)?;
    let config = Arc::new(config);
    let backends = Backends::open(&config, roles).await?;
    let local = LocalServers::default();
    let clients = grpc::clients(&config, roles, &local, service_key.as_ref()).context("peer clients")?;
    let (mut host, reporter) = Host::new(local);
    health::report_alive(&reporter).await;
    if let Some(db) = &backends.db {
        let ctx = RoleContext {
            config: config.clone(),
            db: db.clone(),
            cache: backends.cache.clone(),
            pubsub: backends.pubsub.clone(),
            storage: backends.storage.clone(),
            tokens: backends.tokens.clone(),
            clients: clients.clone(),
            shutdown: shutdown.clone(),
        };
        host_roles(&ctx, roles, &mut host).await?;
        prepare(&ctx, roles, &mut host).await?;
    }
    let serves_api = roles.contains(&Role::Api);
    if serves_api {
        host.add_probes(Role::Api, vec![host::cache_probe(&backends.cache)]);
    }
    let (routes, probes) = host.finish();

    let readiness = Readiness::default();
    let mut tasks: Vec<Task> = Vec::new();
    tasks.push(Box::pin({
        let (readiness, shutdown) = (readiness.clone(), shutdown.clone());
        let interval = std::time::Duration::from_secs(config.health_interval_secs.max(1));
        async move {
            health::watch(Some(reporter), probes, readiness, interval, shutdown).await;
            Ok(())
        }
    }));

    let mut grpc_addr = None;
    if let Some(addr) = config.grpc_listen(roles) {
        let (addr, task) = serve_grpc(addr, routes, service_key, shutdown.clone()).await?;
        grpc_addr = Some(addr);
        tasks.push(task);
    }

    let mut http_addr = None;
    if serves_api {
        let (addr, task) = serve_gateway(douyin_api::Gateway {
            config: config.clone(),
            clients,
            tokens: backends.tokens.clone().context("the gateway needs token keys")?,
            pubsub: backends.pubsub.clone(),
            cache: backends.cache.clone(),
            media: backends.storage.clone(),
            readiness: readiness.clone(),
            shutdown: shutdown.clone(),
        })
        .await?;
        http_addr = Some(addr);
        tasks.push(task);
    }

    let admin = bind(config.admin_addr, "admin").await?;
    let admin_addr = admin.local_addr()?;
    tasks.push(Box::pin(crate::process::admin(admin, readiness, shutdown.clone())));

    tracing::info!(
        roles = %roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(","),
        http = ?http_addr,
        grpc = ?grpc_addr,
        admin = %admin_addr,
        "douyin started"
    );
    let cache = backends.cache;
    Ok(Running { http_addr, grpc_addr, admin_addr, cache, tasks, shutdown, grace: config.shutdown_grace() })
}

/// The admin listener: liveness, readiness and metrics.
async fn admin(listener: TcpListener, readiness: Readiness, shutdown: Shutdown) -> anyhow::Result<()> {
    use axum::{Router, http::StatusCode, routing::get};
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|| async {
                ([(axum::http::header::CONTENT_TYPE, douyin_kit::metrics::CONTENT_TYPE)], douyin_kit::metrics::render())
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let status = if readiness.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                let report = readiness.report();
                async move { (status, report) }
            }),
        );
    axum::serve(listener, app).with_graceful_shutdown(shutdown.wait()).await?;
    Ok(())
}

/// One gRPC health check.
pub async fn health_check(addr: &str, service: &str) -> anyhow::Result<bool> {
    use douyin_proto::health::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let channel = tonic::transport::Endpoint::from_shared(addr.to_owned())?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(3))
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let reply = HealthClient::new(channel).check(HealthCheckRequest { service: service.to_owned() }).await?;
    let status = reply.into_inner().status();
    println!("{}", status.as_str_name());
    Ok(status == ServingStatus::Serving)
}
