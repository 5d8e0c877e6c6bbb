//! Pure functions from an environment to the objects the operator applies.
//!
//! Nothing here talks to the API server: each builder takes the environment (and
//! what the reconciler already read) and returns a complete object, so each one is
//! unit-tested on its own.

pub mod minio;
pub mod mysql;
pub mod redis;
pub mod secret;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ObjectReference, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::Error;
use crate::crd::{DouyinEnvironment, DouyinEnvironmentSpec, StorageSpec};
use crate::names::{self, Backend};

/// Name of the data volume claim template (and so of the PVCs: `data-<sts>-0`).
pub const DATA_VOLUME: &str = "data";

/// The parts of a `DouyinEnvironment` every builder needs.
#[derive(Clone, Debug)]
pub struct Environment<'a> {
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
    pub spec: &'a DouyinEnvironmentSpec,
    pub secret_name: String,
}

impl<'a> Environment<'a> {
    pub fn new(env: &'a DouyinEnvironment) -> Result<Self, Error> {
        let namespace = env.namespace().ok_or(Error::MissingObjectKey("metadata.namespace"))?;
        let owner = env.controller_owner_ref(&()).ok_or(Error::MissingObjectKey("metadata.uid"))?;
        Ok(Self { name: env.name_any(), namespace, owner, spec: &env.spec, secret_name: env.secret_name() })
    }

    /// Metadata of an object owned (and garbage-collected) with the environment.
    pub fn metadata(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner.clone()]),
            ..Default::default()
        }
    }

    pub fn credentials_secret(&self) -> String {
        names::credentials_secret(&self.name)
    }

    /// The environment, as Events refer to it.
    pub fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.owner.api_version.clone()),
            kind: Some(self.owner.kind.clone()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.owner.uid.clone()),
            ..Default::default()
        }
    }
}

/// Headless Service: stable DNS for the StatefulSet's pods, ready or not.
pub fn headless_service(env: &Environment, backend: Backend) -> Service {
    Service {
        metadata: env.metadata(backend.headless_name(&env.name), backend.labels(&env.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(backend.selector_labels(&env.name)),
            ports: Some(vec![service_port(backend.port_name(), backend.port())]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Client Service: the address the application's Secret points at.
pub fn client_service(env: &Environment, backend: Backend) -> Service {
    Service {
        metadata: env.metadata(backend.object_name(&env.name), backend.labels(&env.name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(backend.selector_labels(&env.name)),
            ports: Some(vec![service_port(backend.port_name(), backend.port())]),
            ..Default::default()
        }),
        status: None,
    }
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// What differs between the three backends' StatefulSets.
pub struct PodPlan {
    pub container: Container,
    pub replicas: i32,
    /// The user the image's process runs as; also the volume's group.
    pub user: i64,
    pub termination_grace_seconds: i64,
}

/// A one-pod StatefulSet with one data volume claim. `storage` is what the claim
/// template asks for: the spec's on creation, the existing one after that.
///
/// The StatefulSet never deletes its claims (`whenDeleted: Retain`): deleting the
/// StatefulSet (a backend disabled or made external) keeps the data, and deleting
/// the environment with `deletionPolicy: Delete` deletes the claims in the
/// finalizer, by label.
pub fn statefulset(env: &Environment, backend: Backend, storage: &StorageSpec, plan: PodPlan) -> StatefulSet {
    let labels = backend.labels(&env.name);
    StatefulSet {
        metadata: env.metadata(backend.object_name(&env.name), labels.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(plan.replicas),
            service_name: Some(backend.headless_name(&env.name)),
            selector: LabelSelector { match_labels: Some(backend.selector_labels(&env.name)), ..Default::default() },
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".into()),
                when_scaled: Some("Retain".into()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..Default::default() }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(pod_security(plan.user)),
                    termination_grace_period_seconds: Some(plan.termination_grace_seconds),
                    containers: vec![plan.container],
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![volume_claim_template(storage, labels)]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The claim template. Its labels reach the PVCs, which is how the finalizer finds
/// them when `deletionPolicy` is `Delete`.
pub fn volume_claim_template(storage: &StorageSpec, labels: BTreeMap<String, String>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(DATA_VOLUME.into()), labels: Some(labels), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(storage.size.clone()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The storage an existing StatefulSet's claim template asks for.
pub fn existing_storage(sts: &StatefulSet) -> Option<StorageSpec> {
    let template = sts
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some(DATA_VOLUME))?;
    let spec = template.spec.as_ref()?;
    let size = spec.resources.as_ref()?.requests.as_ref()?.get("storage")?.0.clone();
    Some(StorageSpec { size, storage_class_name: spec.storage_class_name.clone() })
}

/// A container skeleton: image, port, data mount, resources and a locked-down
/// security context.
pub fn container(backend: Backend, image: &str, resources: &ResourceRequirements) -> Container {
    Container {
        name: backend.key().into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![ContainerPort {
            name: Some(backend.port_name().into()),
            container_port: backend.port(),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        volume_mounts: Some(vec![VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: backend.data_path().into(),
            ..Default::default()
        }]),
        resources: Some(resources.clone()),
        security_context: Some(container_security()),
        ..Default::default()
    }
}

/// An environment variable read from a key of a Secret.
pub fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.into(), key: key.into(), optional: Some(false) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() }
}

/// A probe with the timings every backend shares.
pub fn probe(initial_delay: i32, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

/// Pod-level security: non-root, the image's own user, default seccomp.
pub fn pod_security(user: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        fs_group: Some(user),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// Container-level security: no privilege escalation, no capabilities.
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::DouyinEnvironmentSpec;

    /// A namespaced environment with a uid, as the API server would return it.
    pub fn test_env(spec: DouyinEnvironmentSpec) -> DouyinEnvironment {
        let mut env = DouyinEnvironment::new("dev", spec);
        env.metadata.namespace = Some("shop".into());
        env.metadata.uid = Some("uid-dev".into());
        env.metadata.generation = Some(1);
        env
    }

    #[test]
    fn objects_are_owned_by_the_environment() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let svc = client_service(&e, Backend::Mysql);
        let owner = &svc.metadata.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "DouyinEnvironment");
        assert_eq!(owner.api_version, "douyin.rs/v1alpha1");
        assert_eq!(owner.uid, "uid-dev");
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn an_environment_without_namespace_is_refused() {
        let mut env = test_env(DouyinEnvironmentSpec::default());
        env.metadata.namespace = None;
        assert!(Environment::new(&env).is_err());
    }

    #[test]
    fn headless_and_client_services_select_the_same_pods() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let headless = headless_service(&e, Backend::Redis).spec.unwrap();
        let client = client_service(&e, Backend::Redis).spec.unwrap();
        assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
        assert_eq!(client.cluster_ip, None);
        assert_eq!(headless.selector, client.selector);
        assert_eq!(client.ports.unwrap()[0].port, 6379);
    }

    #[test]
    fn claim_template_round_trips_through_existing_storage() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let storage = StorageSpec { size: "3Gi".into(), storage_class_name: Some("fast".into()) };
        let sts = mysql::statefulset(&e, &storage);
        assert_eq!(existing_storage(&sts), Some(storage));
        let template = &sts.spec.unwrap().volume_claim_templates.unwrap()[0];
        assert_eq!(template.metadata.labels.as_ref().unwrap()[names::LABEL_INSTANCE], "dev");
    }

    #[test]
    fn statefulsets_never_delete_their_claims_whatever_the_deletion_policy() {
        let spec = DouyinEnvironmentSpec { deletion_policy: crate::crd::DeletionPolicy::Delete, ..Default::default() };
        let env = test_env(spec);
        let e = Environment::new(&env).unwrap();
        let sts = redis::statefulset(&e, &e.spec.redis.storage).spec.unwrap();
        let policy = sts.persistent_volume_claim_retention_policy.unwrap();
        assert_eq!(policy.when_deleted.as_deref(), Some("Retain"));
        assert_eq!(policy.when_scaled.as_deref(), Some("Retain"));
    }
}
