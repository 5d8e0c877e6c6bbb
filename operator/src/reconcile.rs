//! One pass over an environment: make the cluster match its spec and report what
//! was found. Every write is a server-side apply with the `douyin-operator` field
//! manager; every object carries the environment as its controlling owner.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::backends::{Removal, provision, remove};
use crate::builders::Environment;
use crate::builders::secret as secrets;
use crate::crd::{DeletionPolicy, DouyinEnvironment, DouyinEnvironmentStatus, Phase};
use crate::credentials::{self, Credentials, random_token};
use crate::events::Events;
use crate::names::{self, Backend, apply_params};
use crate::status::{self, BackendState};
use crate::{Result, guard, settings, validate};

/// How often a settled environment is looked at again (drift in objects the
/// operator does not watch, such as Services and external Secrets).
pub const RESYNC: Duration = Duration::from_secs(300);
/// How soon an environment that is not ready yet is looked at again; changes to
/// its StatefulSets and Job trigger a reconcile sooner.
pub const NOT_READY_RECHECK: Duration = Duration::from_secs(30);

/// Brings the environment's objects in line with its spec, then writes status.
pub async fn apply(env: &DouyinEnvironment, client: &Client, events: &Events) -> Result<Action> {
    let e = Environment::new(env)?;
    let client = client.clone();
    let environments: Api<DouyinEnvironment> = Api::namespaced(client.clone(), &e.namespace);
    let generation = env.meta().generation;

    if let Err(invalid) = validate::validate(&e.name, &env.spec) {
        warn!(environment = %e.name, reason = invalid.reason, message = %invalid.message, "spec refused");
        let status = status::invalid(env.status.as_ref(), generation, &invalid, Timestamp::now());
        let newly = degraded_reason(env) != Some(invalid.reason);
        write_status(&environments, &e.name, &status).await?;
        if newly {
            events.publish(&e, EventType::Warning, invalid.reason, "Validate", invalid.message.clone()).await;
        }
        // Nothing to retry until the spec changes.
        return Ok(Action::await_change());
    }

    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &e.namespace);
    let existing = secret_api.get_opt(&e.credentials_secret()).await?;
    let existing_data = existing.as_ref().and_then(|s| s.data.as_ref());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &e.namespace);
    let lost = guard::lost_credentials(&e, &claims, existing_data).await?;
    if !lost.is_empty() {
        let refusal = lost.refusal(&e);
        warn!(environment = %e.name, message = %refusal.message, "credentials lost while their data exists");
        let newly = degraded_reason(env) != Some(refusal.reason);
        let status = status::refused(env.status.as_ref(), generation, &refusal, Timestamp::now());
        write_status(&environments, &e.name, &status).await?;
        if newly {
            events.publish(&e, EventType::Warning, refusal.reason, "Provision", refusal.message).await;
        }
        // The Secret watch brings a restored Secret back at once; the recheck is a fallback.
        return Ok(Action::requeue(NOT_READY_RECHECK));
    }
    let generated = credentials::missing_for(existing_data);
    let credentials = Credentials::fill_missing(existing_data, random_token);
    secret_api
        .patch(&e.credentials_secret(), &apply_params(), &Patch::Apply(secrets::credentials_secret(&e, &credentials)))
        .await?;
    if !generated.is_empty() {
        let which: Vec<_> = generated.iter().map(|b| b.key()).collect();
        let note = format!("generated credentials for {} in Secret {}", which.join(", "), e.credentials_secret());
        events.publish(&e, EventType::Normal, "CredentialsGenerated", "Provision", note).await;
    }

    let mut referenced = BTreeMap::new();
    for name in settings::referenced_secrets(e.spec) {
        if let Some(secret) = secret_api.get_opt(&name).await? {
            referenced.insert(name, secret);
        }
    }
    let (settings, problems) = settings::app_settings(&e, &credentials, &referenced);
    secret_api.patch(&e.secret_name, &apply_params(), &Patch::Apply(secrets::app_secret(&e, &settings))).await?;

    let mut observed = Vec::with_capacity(3);
    for backend in Backend::ALL {
        let state = match source(&e, backend) {
            Source::Provisioned => provision(&e, &client, events, backend).await?,
            Source::Disabled => match remove(&e, &client, events, backend).await? {
                Removal::Done => BackendState::Disabled,
                Removal::ReleasingClaims => BackendState::Removing,
            },
            Source::External => match remove(&e, &client, events, backend).await? {
                Removal::Done => BackendState::External { problem: problems[backend as usize].clone() },
                Removal::ReleasingClaims => BackendState::Removing,
            },
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

/// The reason of the `Degraded` condition the environment shows now, if it is true:
/// an Event is published when a refusal starts, not on every retry.
fn degraded_reason(env: &DouyinEnvironment) -> Option<&str> {
    let conditions = &env.status.as_ref()?.conditions;
    let degraded = conditions.iter().find(|c| c.type_ == status::DEGRADED && c.status == "True")?;
    Some(degraded.reason.as_str())
}

/// Cleans up what owner references do not, when the environment is deleted: PVCs
/// (per `deletionPolicy`) and, when they are retained, the credentials that open them.
///
/// `Delete`: every claim of the environment (disabled backends' too) is deleted; the
/// credentials Secret goes with the environment (garbage collection).
/// `Retain`: claims stay, and the credentials Secret is released from the
/// environment so it stays too; re-creating the environment under the same name
/// opens the same volumes with the same passwords.
pub async fn cleanup(env: &DouyinEnvironment, client: &Client, events: &Events) -> Result<Action> {
    let name = env.name_any();
    let namespace = env.namespace().ok_or(crate::Error::MissingObjectKey("metadata.namespace"))?;
    let reference = env.object_ref(&());
    match env.spec.deletion_policy {
        DeletionPolicy::Delete => {
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
            let selector = names::environment_selector(&name);
            pvcs.delete_collection(&DeleteParams::background(), &ListParams::default().labels(&selector)).await?;
            info!(environment = %name, %namespace, "deleted the environment's volume claims");
            let note = format!("deletionPolicy Delete: deleted the volume claims labelled {selector}");
            events.publish_to(&reference, EventType::Normal, "VolumeClaimsDeleted", "Delete", note).await;
        }
        DeletionPolicy::Retain => {
            // Keep the credentials with the data: release them from garbage collection,
            // so an environment re-created under the same name opens the same volumes.
            let secret_api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            let release = Patch::Merge(json!({ "metadata": { "ownerReferences": null } }));
            match secret_api.patch(&names::credentials_secret(&name), &PatchParams::default(), &release).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            info!(environment = %name, %namespace, "kept the environment's volume claims and credentials");
            let note = format!(
                "deletionPolicy Retain: kept the volume claims and Secret {}",
                names::credentials_secret(&name)
            );
            events.publish_to(&reference, EventType::Normal, "DataRetained", "Delete", note).await;
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
    let spec = e.spec.backend(backend);
    match (spec.enabled, spec.external) {
        (false, _) => Source::Disabled,
        (true, true) => Source::External,
        (true, false) => Source::Provisioned,
    }
}
