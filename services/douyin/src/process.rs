//! One process: the roles it hosts and the listeners it serves.

use std::{
    collections::HashSet,
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
    health::{self, Probe, Readiness, probe},
    pubsub,
    shutdown::Shutdown,
    storage,
};
use futures::future::BoxFuture;
use tokio::net::TcpListener;

/// Every service's migrations, applied in this order.
fn migrations() -> [&'static douyin_kit::db::ServiceMigrations; 6] {
    [
        &douyin_kit::stats::MIGRATIONS,
        &douyin_user::MIGRATIONS,
        &douyin_video::MIGRATIONS,
        &douyin_interaction::MIGRATIONS,
        &douyin_relation::MIGRATIONS,
        &douyin_chat::MIGRATIONS,
    ]
}

/// `douyin-<role>` for one role, `douyin` for several.
pub fn service_name(roles: &[Role]) -> String {
    match roles {
        [one] => format!("douyin-{one}"),
        _ => "douyin".to_owned(),
    }
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
    let generation = douyin_kit::stats::new_generation(db.pool()).await.context("writing the new generation")?;
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
            douyin_video::seed_demo_content(&self.db, storage).await?;
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
    tasks: Vec<BoxFuture<'static, anyhow::Result<()>>>,
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

/// Opens the backends the roles need and binds every listener, so that when
/// this returns the process accepts connections.
pub async fn start(config: Config, roles: &[Role], shutdown: Shutdown) -> anyhow::Result<Running> {
    let service_key = service_key(&config, roles)?;
    let config = Arc::new(config);
    let hosted: HashSet<Role> = roles.iter().copied().filter(|r| *r != Role::Api).collect();
    let serves_api = roles.contains(&Role::Api);

    let db = if hosted.is_empty() { None } else { Some(Db::connect(&config).await.context("database")?) };
    if let Some(db) = &db {
        douyin_kit::metrics::watch_pool(db);
    }
    let cache = cache::from_config(&config).await.context("cache")?;
    let pubsub = pubsub::from_config(&config).await.context("pub/sub")?;
    let needs_storage = hosted.contains(&Role::Video) || serves_api;
    let storage =
        if needs_storage { Some(storage::from_config(&config).await.context("object storage")?) } else { None };
    let tokens = if hosted.contains(&Role::User) || serves_api {
        Some(Tokens::from_config(&config).context("JWT key")?)
    } else {
        None
    };

    let grpc_listen = config.grpc_listen(roles);
    let local = LocalServers::default();
    let clients = grpc::clients(&config, roles, &local, service_key.as_ref()).context("peer clients")?;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    health::report_alive(&reporter).await;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(health_service);
    let mut probes: Vec<(Role, Vec<Probe>)> = Vec::new();
    // Each role checks the tables it reads and writes; Redis is reported but
    // decides no readiness: every role degrades without it (counts from the
    // database, no live push, per-process rate limits).
    let db_probe = |db: &Db, tables: &[&'static str]| -> Vec<Probe> {
        tables
            .iter()
            .map(|table| {
                let (db, table) = (db.clone(), *table);
                probe(format!("database table {table}"), move || {
                    let db = db.clone();
                    async move { db.check_table(table).await }
                })
            })
            .collect()
    };
    let cache_probe = {
        let cache = cache.clone();
        probe("redis", move || {
            let cache = cache.clone();
            async move { cache.ping().await }
        })
        .optional()
    };

    if let Some(db) = &db {
        for role in roles {
            match role {
                Role::User => {
                    let server = douyin_user::server(db.clone(), tokens.clone().expect("tokens"), clients.clone());
                    local.register(Role::User, server.clone());
                    routes.add_service(server);
                    probes.push((Role::User, db_probe(db, &["users", "user_stats"])));
                }
                Role::Video => {
                    let storage = storage.clone().expect("storage");
                    let settings = douyin_video::VideoSettings {
                        max_upload_bytes: config.max_upload_bytes,
                        tmp_dir: config.data_dir.join("tmp"),
                        ffmpeg: config.ffmpeg_path.clone(),
                        cover_timeout: std::time::Duration::from_secs(config.cover_timeout_secs),
                        upload_idle_timeout: std::time::Duration::from_secs(config.upload_idle_timeout_secs.max(1)),
                        upload_deadline: std::time::Duration::from_secs(config.upload_timeout_secs.max(1)),
                    };
                    if !douyin_video::ffmpeg_available(&config.ffmpeg_path).await {
                        tracing::info!("ffmpeg not found; new videos get the default cover");
                    }
                    let server = douyin_video::server(db.clone(), storage.clone(), clients.clone(), settings);
                    local.register(Role::Video, server.clone());
                    routes.add_service(server);
                    let storage_probe = probe("object storage", move || {
                        let storage = storage.clone();
                        async move { storage.ping().await }
                    });
                    let mut checks = db_probe(db, &["videos", "video_stats"]);
                    checks.push(storage_probe);
                    probes.push((Role::Video, checks));
                }
                Role::Interaction => {
                    let server = douyin_interaction::server(db.clone(), clients.clone(), &config.sensitive_words);
                    local.register(Role::Interaction, server.clone());
                    routes.add_service(server);
                    probes.push((Role::Interaction, db_probe(db, &["favorites", "comments"])));
                }
                Role::Relation => {
                    let server = douyin_relation::server(db.clone(), clients.clone());
                    local.register(Role::Relation, server.clone());
                    routes.add_service(server);
                    probes.push((Role::Relation, db_probe(db, &["follows"])));
                }
                Role::Chat => {
                    let server = douyin_chat::server(db.clone(), clients.clone(), pubsub.clone());
                    local.register(Role::Chat, server.clone());
                    routes.add_service(server);
                    let mut checks = db_probe(db, &["messages"]);
                    checks.push(cache_probe.clone());
                    probes.push((Role::Chat, checks));
                }
                Role::Counter => {
                    let server = douyin_counter::server(db.clone(), cache.clone());
                    local.register(Role::Counter, server.clone());
                    routes.add_service(server);
                    let mut checks = db_probe(db, &["user_stats", "video_stats"]);
                    checks.push(cache_probe.clone());
                    probes.push((Role::Counter, checks));
                }
                Role::Api => {}
            }
        }
    }
    if serves_api {
        probes.push((Role::Api, vec![cache_probe.clone()]));
    }

    // Migrations and demo content. When the database does not answer yet, this
    // goes on in the background and the roles report NOT_SERVING until it is done.
    let prepared = Arc::new(AtomicBool::new(db.is_none()));
    if let Some(db) = &db {
        let seed_storage = storage.clone().filter(|_| hosted.contains(&Role::Video) && config.demo_content());
        let prepare =
            Prepare { db: db.clone(), migrate: config.migrate, storage: seed_storage, done: prepared.clone() };
        match prepare.run_once().await {
            Ok(()) => {}
            Err(error @ (douyin_kit::Error::Unavailable(_) | douyin_kit::Error::Busy(_))) => {
                tracing::warn!(%error, "database not reachable yet; preparing it in the background");
                tokio::spawn(prepare.retry(shutdown.clone()));
            }
            Err(error) => return Err(error).context("preparing the database"),
        }
        let flag = prepared.clone();
        let prepared_probe = probe("migrations", move || {
            let done = flag.load(Ordering::Acquire);
            async move {
                if done { Ok(()) } else { Err(douyin_kit::Error::Unavailable("database not prepared yet".into())) }
            }
        });
        for (_, role_probes) in probes.iter_mut().filter(|(role, _)| *role != Role::Api) {
            role_probes.push(prepared_probe.clone());
        }
    }

    let readiness = Readiness::default();
    let mut tasks: Vec<BoxFuture<'static, anyhow::Result<()>>> = Vec::new();
    tasks.push(Box::pin({
        let (readiness, shutdown) = (readiness.clone(), shutdown.clone());
        let interval = std::time::Duration::from_secs(config.health_interval_secs.max(1));
        async move {
            health::watch(Some(reporter), probes, readiness, interval, shutdown).await;
            Ok(())
        }
    }));

    let mut grpc_addr = None;
    if let Some(addr) = grpc_listen {
        let listener = bind(addr, "gRPC").await?;
        grpc_addr = Some(listener.local_addr()?);
        let routes = routes.routes();
        let shutdown = shutdown.clone();
        let key = service_key.clone().unwrap_or_else(|| {
            tracing::info!("DOUYIN_SERVICE_SECRET is not set: the gRPC listener answers health checks only");
            grpc::ServiceKey::random()
        });
        tasks.push(Box::pin(async move { Ok(grpc::serve(routes, listener, key, shutdown).await?) }));
    }

    let mut http_addr = None;
    if serves_api {
        let listener = bind(config.http_addr, "HTTP").await?;
        http_addr = Some(listener.local_addr()?);
        let router = douyin_api::router(douyin_api::Gateway {
            config: config.clone(),
            clients: clients.clone(),
            tokens: tokens.clone().expect("tokens"),
            pubsub: pubsub.clone(),
            cache: cache.clone(),
            media: storage.clone(),
            readiness: readiness.clone(),
            shutdown: shutdown.clone(),
        });
        let shutdown = shutdown.clone();
        tasks.push(Box::pin(async move { Ok(douyin_api::serve(router, listener, shutdown).await?) }));
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
    Ok(Running { http_addr, grpc_addr, admin_addr, cache, tasks, shutdown, grace: config.shutdown_grace() })
}

/// The admin listener: liveness, readiness and metrics.
async fn admin(listener: TcpListener, readiness: Readiness, shutdown: Shutdown) -> anyhow::Result<()> {
    use axum::{Router, http::StatusCode, routing::get};
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(douyin_kit::metrics::handler))
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
