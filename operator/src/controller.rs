//! The controller loop: watches `DouyinEnvironment`s (filtered to spec, deletion and
//! finalizer changes, so status writes do not loop) and the StatefulSets, Jobs and
//! Secrets they own, and runs each reconcile through the cleanup finalizer.
//!
//! Secrets are watched as metadata only (labelled `managed-by: douyin-operator`): a
//! Secret deleted by hand triggers its environment's reconcile at once, and the
//! watch never carries Secret contents.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::crd::DouyinEnvironment;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::names::{FINALIZER, managed_selector};
use crate::{Error, Result, reconcile};

/// First retry after a failed reconcile; doubles per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub metrics: Metrics,
    pub events: Events,
    /// Consecutive failures per environment (`namespace/name`), for backoff. An
    /// entry goes on success and when its environment is gone.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, metrics: Metrics) -> Self {
        let events = Events::new(client.clone());
        Self { client, metrics, events, failures: Mutex::default() }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A poisoned lock only means a panic elsewhere; the counts are still usable.
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures();
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        backoff_delay(*count)
    }

    fn reset_backoff(&self, key: &str) {
        self.failures().remove(key);
    }

    /// Environments with failures on record (`namespace/name`).
    pub fn failing(&self) -> Vec<String> {
        let mut keys: Vec<_> = self.failures().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Forgets what the watch of `scope` says is gone: a deleted environment, and
    /// after a relist every environment of the scope the store no longer holds
    /// (other scopes' controllers share the context and keep theirs).
    pub fn prune_failures(
        &self,
        event: &watcher::Event<DouyinEnvironment>,
        store: &Store<DouyinEnvironment>,
        scope: &Scope,
    ) {
        match event {
            watcher::Event::Delete(env) => self.reset_backoff(&object_key(env)),
            watcher::Event::InitDone => self.failures().retain(|key, _| {
                let (namespace, name) = key.split_once('/').unwrap_or_default();
                !scope.covers(namespace) || store.get(&ObjectRef::new(name).within(namespace)).is_some()
            }),
            _ => {}
        }
    }
}

/// Exponential backoff: 5 s, 10 s, 20 s, … capped at five minutes.
pub fn backoff_delay(consecutive_failures: u32) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_MAX)
}

fn object_key(env: &DouyinEnvironment) -> String {
    format!("{}/{}", env.namespace().unwrap_or_default(), env.name_any())
}

/// Reconciles one environment: adds the finalizer, applies, or cleans up on deletion.
pub async fn reconcile(env: Arc<DouyinEnvironment>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start_reconcile();
    let key = object_key(&env);
    let namespace = env.namespace().ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let api: Api<DouyinEnvironment> = Api::namespaced(ctx.client.clone(), &namespace);
    let span = info_span!("reconcile", environment = %key, generation = env.meta().generation);
    let action = finalizer(&api, FINALIZER, env, |event| async {
        match event {
            Finalizer::Apply(env) => reconcile::apply(&env, &ctx.client, &ctx.events).await,
            Finalizer::Cleanup(env) => reconcile::cleanup(&env, &ctx.client, &ctx.events).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.reset_backoff(&key);
    Ok(action)
}

/// A failed reconcile is retried with exponential backoff per environment.
pub fn error_policy(env: Arc<DouyinEnvironment>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = object_key(&env);
    let delay = ctx.next_backoff(&key);
    warn!(environment = %key, error = %error, retry_in = ?delay, "reconcile failed");
    ctx.metrics.reconcile_failed(error);
    Action::requeue(delay)
}

/// Which namespaces the controller watches.
#[derive(Clone, Debug, Default)]
pub enum Scope {
    #[default]
    Cluster,
    Namespace(String),
}

impl Scope {
    /// `""` is every namespace; `"a,b"` is one scope per namespace (duplicates and
    /// blanks dropped).
    pub fn parse_list(namespaces: &str) -> Vec<Scope> {
        let mut scopes: Vec<Scope> = Vec::new();
        for ns in namespaces.split(',').map(str::trim).filter(|ns| !ns.is_empty()) {
            if !scopes.iter().any(|s| matches!(s, Scope::Namespace(n) if n == ns)) {
                scopes.push(Scope::Namespace(ns.to_string()));
            }
        }
        if scopes.is_empty() {
            scopes.push(Scope::Cluster);
        }
        scopes
    }

    pub fn covers(&self, namespace: &str) -> bool {
        match self {
            Scope::Cluster => true,
            Scope::Namespace(ns) => ns == namespace,
        }
    }

    fn api<K>(&self, client: Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match self {
            Scope::Cluster => Api::all(client),
            Scope::Namespace(ns) => Api::namespaced(client, ns),
        }
    }
}

/// Runs the controller until `shutdown` resolves; `on_started` is called once the
/// CRD answered and the watches are set up.
pub async fn run(
    ctx: Arc<Context>,
    scope: Scope,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    on_started: impl FnOnce(),
) -> Result<()> {
    let client = ctx.client.clone();
    let environments: Api<DouyinEnvironment> = scope.api(client.clone());
    environments.list(&ListParams::default().limit(1)).await.map_err(Error::CrdNotInstalled)?;

    let (reader, writer) = reflector::store();
    let store = reader.clone();
    let pruning = ctx.clone();
    let pruned_scope = scope.clone();
    let triggers = watcher(environments, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .inspect_ok(move |event| pruning.prune_failures(event, &store, &pruned_scope))
        .applied_objects()
        // Spec changes bump the generation (deletion does too); finalizer edits do not.
        .predicate_filter(predicates::generation.combine(predicates::finalizers), Default::default());
    let owned = watcher::Config::default().labels(&managed_selector()).any_semantic();

    info!(?scope, "controller started");
    on_started();
    Controller::for_stream(triggers, reader)
        .owns(scope.api::<StatefulSet>(client.clone()), owned.clone())
        .owns(scope.api::<Job>(client.clone()), owned.clone())
        .owns_stream(watcher(scope.api::<PartialObjectMeta<Secret>>(client), owned).default_backoff().touched_objects())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(environment = %object.name, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile did not complete"),
            }
        })
        .await;
    info!("controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_parse_into_one_scope_each() {
        assert!(matches!(Scope::parse_list("").as_slice(), [Scope::Cluster]));
        assert!(matches!(Scope::parse_list(" , ").as_slice(), [Scope::Cluster]));
        let scopes = Scope::parse_list("douyin, staging,douyin");
        let names: Vec<_> = scopes
            .iter()
            .map(|s| match s {
                Scope::Namespace(ns) => ns.as_str(),
                Scope::Cluster => "*",
            })
            .collect();
        assert_eq!(names, ["douyin", "staging"]);
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let delays: Vec<_> = (1..=8).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_MAX);
    }
}
