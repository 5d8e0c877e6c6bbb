//! One pass over an environment: make the cluster match its spec and report what
//! was found. Every write is a server-side apply with the `douyin-operator` field
//! manager; every object carries the environment as its controlling owner.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::backends::{provision, remove};
use crate::builders::Environment;
use crate::builders::secret as secrets;
use crate::controller::Context;
use crate::crd::{DeletionPolicy, DouyinEnvironment, DouyinEnvironmentStatus, Phase};
use crate::credentials::{Credentials, random_token};
use crate::names::{self, Backend, FIELD_MANAGER};
use crate::settings::app_settings;
use crate::status::{self, BackendState};
use crate::{Result, validate};

/// How often a settled environment is looked at again (drift in objects the
/// operator does not watch, such as Services and Secrets).
pub const RESYNC: Duration = Duration::from_secs(300);
/// How soon an environment that is not ready yet is looked at again; changes to
/// its StatefulSets and Job trigger a reconcile sooner.
pub const NOT_READY_RECHECK: Duration = Duration::from_secs(30);

pub(crate) fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Brings the environment's objects in line with its spec, then writes status.
pub async fn apply(env: &DouyinEnvironment, ctx: &Context) -> Result<Action> {
    let e = Environment::new(env)?;
    let client = ctx.client.clone();
    let environments: Api<DouyinEnvironment> = Api::namespaced(client.clone(), &e.namespace);
    let generation = env.meta().generation;

    if let Err(invalid) = validate::validate(&e.name, &env.spec) {
        warn!(environment = %e.name, reason = invalid.reason, message = %invalid.message, "spec refused");
        let status = status::invalid(env.status.as_ref(), generation, &invalid, Timestamp::now());
        write_status(&environments, &e.name, &status).await?;
        // Nothing to retry until the spec changes.
        return Ok(Action::await_change());
    }

    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &e.namespace);
    let existing = secret_api.get_opt(&e.credentials_secret()).await?;
    let credentials = Credentials::fill_missing(existing.as_ref().and_then(|s| s.data.as_ref()), random_token);
    secret_api
        .patch(&e.credentials_secret(), &apply_params(), &Patch::Apply(secrets::credentials_secret(&e, &credentials)))
        .await?;

    let (settings, problems) = app_settings(&e, &credentials, &secret_api).await?;
    secret_api.patch(&e.secret_name, &apply_params(), &Patch::Apply(secrets::app_secret(&e, &settings))).await?;

    let mut observed = Vec::with_capacity(3);
    for backend in Backend::ALL {
        let state = match source(&e, backend) {
            Source::Provisioned => provision(&e, ctx, backend).await?,
            Source::Disabled => {
                remove(&e, ctx, backend).await?;
                BackendState::Disabled
            }
            Source::External => {
                remove(&e, ctx, backend).await?;
                BackendState::External { problem: problems[backend as usize].clone() }
            }
        };
        observed.push((backend, state));
    }
    let observed: status::Observed = observed.try_into().expect("one state per backend");

    let status = status::reconciled(env.status.as_ref(), generation, &e.secret_name, &observed, Timestamp::now());
    write_status(&environments, &e.name, &status).await?;
    Ok(match status.phase {
        Some(Phase::Ready) => Action::requeue(RESYNC),
        _ => Action::requeue(NOT_READY_RECHECK),
    })
}

/// Cleans up what owner references do not: PVCs (per `deletionPolicy`) and, when
/// they are retained, the credentials that open them.
pub async fn cleanup(env: &DouyinEnvironment, ctx: &Context) -> Result<Action> {
    let name = env.name_any();
    let namespace = env.namespace().ok_or(crate::Error::MissingObjectKey("metadata.namespace"))?;
    match env.spec.deletion_policy {
        DeletionPolicy::Delete => {
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
            let selector = names::environment_selector(&name);
            pvcs.delete_collection(&DeleteParams::background(), &ListParams::default().labels(&selector)).await?;
            info!(environment = %name, %namespace, "deleted the environment's volume claims");
        }
        DeletionPolicy::Retain => {
            // Keep the credentials with the data: release them from garbage collection,
            // so an environment re-created under the same name opens the same volumes.
            let secret_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
            let release = Patch::Merge(json!({ "metadata": { "ownerReferences": null } }));
            match secret_api.patch(&names::credentials_secret(&name), &PatchParams::default(), &release).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            info!(environment = %name, %namespace, "kept the environment's volume claims and credentials");
        }
    }
    Ok(Action::await_change())
}

async fn write_status(api: &Api<DouyinEnvironment>, name: &str, status: &DouyinEnvironmentStatus) -> Result<()> {
    let patch = Patch::Apply(json!({
        "apiVersion": DouyinEnvironment::api_version(&()),
        "kind": DouyinEnvironment::kind(&()),
        "status": status,
    }));
    api.patch_status(name, &apply_params(), &patch).await?;
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Disabled,
    External,
    Provisioned,
}

fn source(e: &Environment, backend: Backend) -> Source {
    let spec = e.spec;
    let (enabled, external) = match backend {
        Backend::Mysql => (spec.mysql.enabled, spec.mysql.external.is_some()),
        Backend::Redis => (spec.redis.enabled, spec.redis.external.is_some()),
        Backend::Minio => (spec.minio.enabled, spec.minio.external.is_some()),
    };
    match (enabled, external) {
        (false, _) => Source::Disabled,
        (true, true) => Source::External,
        (true, false) => Source::Provisioned,
    }
}
