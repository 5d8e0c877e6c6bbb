//! Provisioning and removing one backend: its Services, StatefulSet and, for MinIO,
//! the bucket Job.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::info;

use crate::builders::{self, Environment, minio, mysql, redis};
use crate::crd::StorageSpec;
use crate::events::Events;
use crate::names::{self, Backend, apply_params};
use crate::status::{BackendState, Setup};
use crate::{Result, quantity};

/// What one provisioned backend runs on: applied in this order by the controller
/// and printed by `render`. The bucket Job is separate: it is created only once
/// MinIO is ready.
pub struct BackendObjects {
    /// Headless Service (stable pod DNS), then the client Service.
    pub services: [Service; 2],
    pub statefulset: StatefulSet,
}

pub fn backend_objects(e: &Environment, backend: Backend, storage: &StorageSpec) -> BackendObjects {
    let statefulset = match backend {
        Backend::Mysql => mysql::statefulset(e, storage),
        Backend::Redis => redis::statefulset(e, storage),
        Backend::Minio => minio::statefulset(e, storage),
    };
    BackendObjects {
        services: [builders::headless_service(e, backend), builders::client_service(e, backend)],
        statefulset,
    }
}

/// Applies a backend's Services and StatefulSet (and MinIO's bucket Job) and reads
/// back how far it got.
pub async fn provision(
    e: &Environment<'_>,
    client: &Client,
    events: &Events,
    backend: Backend,
) -> Result<BackendState> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &e.namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &e.namespace);
    let name = backend.object_name(&e.name);

    let spec = e.spec.backend(backend);
    let wanted = spec.storage;
    let existing = statefulsets.get_opt(&name).await?;
    let (storage, storage_drift) = match existing.as_ref().and_then(builders::existing_storage) {
        None => (wanted.clone(), None),
        Some(current) => {
            let drift = storage_drift(backend, &current, wanted);
            (current, drift)
        }
    };

    let objects = backend_objects(e, backend, &storage);
    for service in objects.services {
        let service_name = service.name_any();
        services.patch(&service_name, &apply_params(), &Patch::Apply(service)).await?;
    }
    let applied = statefulsets.patch(&name, &apply_params(), &Patch::Apply(objects.statefulset)).await?;

    let replicas = spec.replicas;
    let ready_replicas = applied.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    let rolling_out = rolling_out(&applied);
    let setup = if backend != Backend::Minio {
        Setup::NotNeeded
    } else if replicas > 0 && ready_replicas >= replicas && !rolling_out {
        bucket_setup(e, client, events).await?
    } else {
        Setup::Pending
    };
    Ok(BackendState::Provisioned { replicas, ready_replicas, rolling_out, storage_drift, setup })
}

/// Whether the StatefulSet controller is still working on the latest spec: it has
/// not observed the current generation, or pods still run an older revision.
pub fn rolling_out(sts: &StatefulSet) -> bool {
    // A StatefulSet not yet seen by its controller is new: "Provisioning" says it better.
    let Some(status) = sts.status.as_ref() else {
        return false;
    };
    let unobserved = match (sts.metadata.generation, status.observed_generation) {
        (Some(generation), Some(observed)) => observed < generation,
        _ => false,
    };
    let old_revision = match (&status.current_revision, &status.update_revision) {
        (Some(current), Some(update)) => current != update,
        _ => false,
    };
    unobserved || old_revision
}

/// Why the spec's storage cannot be applied to the existing claim template, if it differs.
pub fn storage_drift(backend: Backend, current: &StorageSpec, wanted: &StorageSpec) -> Option<String> {
    let class = |s: &StorageSpec| s.storage_class_name.clone().unwrap_or_else(|| "default".into());
    let size_differs = !quantity::same(&current.size, &wanted.size);
    let class_differs = wanted.storage_class_name.is_some() && current.storage_class_name != wanted.storage_class_name;
    (size_differs || class_differs).then(|| {
        format!(
            "spec.{key}.storage asks for {} ({}) but the volume was created as {} ({}); a StatefulSet's \
             volume claim template cannot change, so the change is not applied",
            wanted.size,
            class(wanted),
            current.size,
            class(current),
            key = backend.key(),
        )
    })
}

/// Creates the bucket Job once, and reports how it went.
async fn bucket_setup(e: &Environment<'_>, client: &Client, events: &Events) -> Result<Setup> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &e.namespace);
    let name = names::bucket_job(&e.name);
    let job = match jobs.get_opt(&name).await? {
        Some(job) => job,
        None => {
            let job = jobs.patch(&name, &apply_params(), &Patch::Apply(minio::bucket_job(e))).await?;
            let note =
                format!("created Job {name} for bucket {:?} and the application's access key", e.spec.minio.bucket);
            events.publish(e, EventType::Normal, "BucketJobCreated", "Provision", note).await;
            job
        }
    };
    Ok(match minio::job_outcome(&job) {
        Some(true) => Setup::Done,
        Some(false) => Setup::Failed,
        None => Setup::Pending,
    })
}

/// How far removing a backend got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Nothing of it runs any more (or nothing ever did).
    Done,
    /// Its StatefulSet still owns volume claims (created with `whenDeleted: Delete`):
    /// switched to `Retain`, deleted once the StatefulSet controller let go of them.
    ReleasingClaims,
}

/// Removes a backend that was provisioned before and no longer is (disabled, or
/// switched to an external instance): its StatefulSet, Services and bucket Job.
/// Its volume claims and credentials stay, whatever `deletionPolicy` says: that
/// policy is about deleting the environment. Re-enabling the backend finds its data.
pub async fn remove(e: &Environment<'_>, client: &Client, events: &Events, backend: Backend) -> Result<Removal> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &e.namespace);
    let name = backend.object_name(&e.name);
    let Some(existing) = statefulsets.get_opt(&name).await? else {
        return Ok(Removal::Done);
    };
    let ours = existing.owner_references().iter().any(|o| o.uid == e.owner.uid);
    if !ours {
        return Ok(Removal::Done);
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &e.namespace);
    let selector = format!("{},{}={}", names::environment_selector(&e.name), names::LABEL_NAME, backend.key());
    let owned_claims: Vec<String> = claims
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|claim| existing.uid().is_some_and(|uid| claim.owner_references().iter().any(|o| o.uid == uid)))
        .map(|claim| claim.name_any())
        .collect();
    if !owned_claims.is_empty() {
        let policy = existing.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
        if policy.and_then(|p| p.when_deleted.as_deref()) != Some("Retain") {
            let retain = json!({ "spec": { "persistentVolumeClaimRetentionPolicy": { "whenDeleted": "Retain" } } });
            statefulsets.patch(&name, &PatchParams::default(), &Patch::Merge(retain)).await?;
        }
        info!(environment = %e.name, backend = backend.key(), claims = ?owned_claims,
            "waiting for the StatefulSet to release its volume claims before removing it");
        return Ok(Removal::ReleasingClaims);
    }
    info!(environment = %e.name, backend = backend.key(), "removing a backend that is no longer provisioned");
    let services: Api<Service> = Api::namespaced(client.clone(), &e.namespace);
    ignore_not_found(statefulsets.delete(&name, &DeleteParams::default()).await.map(drop))?;
    ignore_not_found(services.delete(&backend.headless_name(&e.name), &DeleteParams::default()).await.map(drop))?;
    ignore_not_found(services.delete(&name, &DeleteParams::default()).await.map(drop))?;
    if backend == Backend::Minio {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &e.namespace);
        let job = names::bucket_job(&e.name);
        ignore_not_found(jobs.delete(&job, &DeleteParams::background()).await.map(drop))?;
    }
    events
        .publish(
            e,
            EventType::Normal,
            "BackendRemoved",
            "Remove",
            format!(
                "removed {name} (spec.{key} is no longer provisioned); its volume claims and credentials are kept",
                key = backend.key()
            ),
        )
        .await;
    Ok(Removal::Done)
}

fn ignore_not_found(result: kube::Result<()>) -> Result<()> {
    match result {
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;

    #[test]
    fn a_statefulset_rolls_out_until_the_new_revision_is_current() {
        let mut sts = StatefulSet::default();
        sts.metadata.generation = Some(2);
        sts.status = Some(StatefulSetStatus { observed_generation: Some(1), ..Default::default() });
        assert!(rolling_out(&sts));
        sts.status = Some(StatefulSetStatus {
            observed_generation: Some(2),
            current_revision: Some("dev-mysql-1".into()),
            update_revision: Some("dev-mysql-2".into()),
            ..Default::default()
        });
        assert!(rolling_out(&sts));
        sts.status = Some(StatefulSetStatus {
            observed_generation: Some(2),
            current_revision: Some("dev-mysql-2".into()),
            update_revision: Some("dev-mysql-2".into()),
            ..Default::default()
        });
        assert!(!rolling_out(&sts));
    }

    #[test]
    fn storage_drift_ignores_spelling_and_an_unset_class() {
        let current = StorageSpec { size: "1Gi".into(), storage_class_name: Some("standard".into()) };
        let same = StorageSpec { size: "1024Mi".into(), storage_class_name: None };
        assert_eq!(storage_drift(Backend::Redis, &current, &same), None);
    }

    #[test]
    fn storage_drift_reports_size_and_class_changes() {
        let current = StorageSpec { size: "10Gi".into(), storage_class_name: None };
        let bigger = StorageSpec { size: "20Gi".into(), storage_class_name: None };
        let message = storage_drift(Backend::Mysql, &current, &bigger).unwrap();
        assert!(message.contains("spec.mysql.storage asks for 20Gi"), "{message}");
        let other_class = StorageSpec { size: "10Gi".into(), storage_class_name: Some("fast".into()) };
        assert!(storage_drift(Backend::Mysql, &current, &other_class).is_some());
    }
}
