//! Hosting roles in one process: what a role is built from ([`RoleContext`],
//! the backends the process opened for it) and what a built role is
//! ([`Built`]: its gRPC server, its handlers for callers in the same process,
//! and the checks its readiness depends on).
//! Each role crate has one `build(&RoleContext) -> Result<Built<_>>`; the
//! process adds each built role to its [`Host`].

use std::{convert::Infallible, sync::Arc};

use tonic::{body::Body, server::NamedService};
use tonic_health::server::HealthReporter;
use tower::Service;

use crate::{
    Config, Error, Result, Role,
    auth::Tokens,
    cache::Cache,
    db::Db,
    grpc::{Clients, Handlers, LocalServers},
    health::{Probe, probe},
    pubsub::PubSub,
    shutdown::Shutdown,
    storage::ObjectStore,
};

/// The backends a process opened, handed to each role it hosts.
#[derive(Clone)]
pub struct RoleContext {
    pub config: Arc<Config>,
    pub db: Db,
    pub cache: Arc<dyn Cache>,
    pub pubsub: Arc<dyn PubSub>,
    /// Opened when a hosted role [needs storage](Role::needs_storage).
    pub storage: Option<Arc<dyn ObjectStore>>,
    /// Loaded when a hosted role [needs tokens](Role::needs_tokens).
    pub tokens: Option<Tokens>,
    pub clients: Clients,
    pub shutdown: Shutdown,
}

impl RoleContext {
    /// The object store, which the process opens for every role that needs it.
    pub fn storage(&self) -> Result<Arc<dyn ObjectStore>> {
        self.storage.clone().ok_or_else(|| Error::internal("object storage was not opened for this role"))
    }

    /// The token keys, which the process loads for every role that needs them.
    pub fn tokens(&self) -> Result<Tokens> {
        self.tokens.clone().ok_or_else(|| Error::internal("token keys were not loaded for this role"))
    }

    /// One required check per table: a query on each table the role reads and writes.
    pub fn table_probes(&self, tables: &[&'static str]) -> Vec<Probe> {
        tables
            .iter()
            .map(|table| {
                let (db, table) = (self.db.clone(), *table);
                probe(format!("database table {table}"), move || {
                    let db = db.clone();
                    async move { db.check_table(table).await }
                })
            })
            .collect()
    }

    /// Redis, reported but deciding no readiness: every role degrades without
    /// it (counts from the database, no live push, per-process rate limits).
    pub fn cache_probe(&self) -> Probe {
        cache_probe(&self.cache)
    }
}

/// The optional Redis check of [`RoleContext::cache_probe`].
pub fn cache_probe(cache: &Arc<dyn Cache>) -> Probe {
    let cache = cache.clone();
    probe("redis", move || {
        let cache = cache.clone();
        async move { cache.ping().await }
    })
    .optional()
}

/// A role ready to serve: its tonic server and its readiness checks.
pub struct Built<S> {
    pub server: S,
    /// The handlers `server` serves, called directly by callers in this process.
    pub handlers: Handlers,
    pub probes: Vec<Probe>,
}

/// The gRPC servers and readiness checks of the roles a process hosts.
pub struct Host {
    local: LocalServers,
    routes: tonic::service::RoutesBuilder,
    probes: Vec<(Role, Vec<Probe>)>,
}

impl Host {
    /// Serves what is added on `local` (in-process callers) and on the routes
    /// of the gRPC listener, beside the gRPC health service whose reporter
    /// this returns.
    pub fn new(local: LocalServers) -> (Self, HealthReporter) {
        let (reporter, health) = tonic_health::server::health_reporter();
        let mut routes = tonic::service::RoutesBuilder::default();
        routes.add_service(health);
        (Self { local, routes, probes: Vec::new() }, reporter)
    }

    /// Hosts `role` as `built`.
    pub fn add<S>(&mut self, role: Role, built: Built<S>)
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.local.register(role, built.server.clone(), built.handlers);
        self.routes.add_service(built.server);
        self.probes.push((role, built.probes));
    }

    /// Adds readiness checks of a role that serves no gRPC (the gateway).
    pub fn add_probes(&mut self, role: Role, probes: Vec<Probe>) {
        self.probes.push((role, probes));
    }

    /// Adds `check` to every role hosted so far.
    pub fn require_everywhere(&mut self, check: &Probe) {
        for (_, probes) in &mut self.probes {
            probes.push(check.clone());
        }
    }

    /// The gRPC routes and every role's readiness checks.
    pub fn finish(self) -> (tonic::service::Routes, Vec<(Role, Vec<Probe>)>) {
        (self.routes.routes(), self.probes)
    }
}
