//! The `DouyinEnvironment` custom resource: one environment of the douyin backend.
//!
//! Defaults live in the schema, so the API server stores the pinned images and sizes
//! in each resource at creation time: upgrading the operator never silently changes
//! the database version of an existing environment.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod backend;
mod defaults;
#[macro_use]
mod rules;

pub use backend::BackendSpec;
pub use defaults::job_resources;

pub const DEFAULT_MYSQL_IMAGE: &str = "mariadb:11.4.4";
pub const DEFAULT_REDIS_IMAGE: &str = "redis:7.4.2";
pub const DEFAULT_MINIO_IMAGE: &str = "minio/minio:RELEASE.2025-04-22T22-12-26Z";
pub const DEFAULT_MC_IMAGE: &str = "minio/mc:RELEASE.2025-04-16T18-13-26Z";
pub const DEFAULT_BUCKET: &str = "douyin";
pub const DEFAULT_REGION: &str = "us-east-1";

/// Kubernetes quantity syntax (the same pattern the API server documents).
const QUANTITY_PATTERN: &str = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// One environment (`dev`, `staging`, a preview per branch) of the douyin backend:
/// MySQL, Redis and MinIO, plus the Secret the application reads its backends from.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "douyin.rs",
    version = "v1alpha1",
    kind = "DouyinEnvironment",
    plural = "douyinenvironments",
    shortname = "denv",
    category = "douyin",
    namespaced,
    status = "DouyinEnvironmentStatus",
    derive = "PartialEq",
    doc = "One environment of the douyin backend: MySQL, Redis and MinIO, and the Secret the application reads",
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "MySQL", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"MysqlReady\")].status"}"#,
    printcolumn = r#"{"name": "Redis", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"RedisReady\")].status"}"#,
    printcolumn = r#"{"name": "MinIO", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"MinioReady\")].status"}"#,
    printcolumn = r#"{"name": "Secret", "type": "string", "jsonPath": ".status.secretName"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "priority": 1, "description": "Why the environment is degraded, if it is", "jsonPath": ".status.conditions[?(@.type==\"Degraded\")].reason"}"#,
    printcolumn = r#"{"name": "Message", "type": "string", "priority": 1, "description": "What is not ready yet", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name": "Policy", "type": "string", "priority": 1, "description": "deletionPolicy", "jsonPath": ".spec.deletionPolicy"}"#,
    printcolumn = r#"{"name": "Observed", "type": "integer", "priority": 1, "description": "Generation the status describes", "jsonPath": ".status.observedGeneration"}"#,
    validation = Rule::new("!has(self.spec.secretName) || self.spec.secretName != self.metadata.name + '-douyin-credentials'")
        .message("spec.secretName is the operator's own credentials Secret (<name>-douyin-credentials)")
)]
#[serde(rename_all = "camelCase")]
pub struct DouyinEnvironmentSpec {
    /// Name of the Secret holding the application's backend settings
    /// (`DOUYIN_DATABASE_URL`, `DOUYIN_REDIS_URL` or `DOUYIN_REDIS_CLUSTER_NODES`,
    /// `DOUYIN_S3_*`). Defaults to `<name>-douyin-backends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(dns_subdomain!("self")).message("spec.secretName is not a valid Secret name"))]
    pub secret_name: Option<String>,
    /// What happens to the data when the environment is deleted. `Retain` (the
    /// default) keeps the PersistentVolumeClaims and the credentials Secret, so
    /// re-creating an environment of the same name finds its data again. `Delete`
    /// deletes every claim of the environment, and the credentials with it.
    /// Disabling a backend (or switching it to `external`) never deletes its data,
    /// whatever the policy: its StatefulSet and Services go, its claims and
    /// credentials stay, and enabling it again finds them. Delete a disabled
    /// backend's claims by hand to discard its data.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The relational database (MariaDB, MySQL protocol).
    #[serde(default)]
    pub mysql: MysqlSpec,
    /// Counters, caches, rankings and pub/sub.
    #[serde(default)]
    pub redis: RedisSpec,
    /// S3-compatible object storage for videos and covers.
    #[serde(default)]
    pub minio: MinioSpec,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Deleting the environment keeps its PersistentVolumeClaims and the
    /// credentials Secret that opens them.
    #[default]
    Retain,
    /// Deleting the environment deletes its PersistentVolumeClaims (and the
    /// credentials). Disabling a backend still keeps its claims.
    Delete,
}

/// Size and class of a backend's data volume. Fixed once the StatefulSet exists:
/// a later change is reported in status (condition `Degraded`) and not applied.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, e.g. `10Gi`.
    #[schemars(pattern(QUANTITY_PATTERN), length(max = 64))]
    pub size: String,
    /// StorageClass of the claim; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
}

/// Use an existing MySQL or Redis instead of provisioning one. Set exactly one field.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.secretRef)").message("external or readReplica needs exactly one of url and secretRef"))]
pub struct ExternalUrlSpec {
    /// Connection URL, e.g. `mysql://user:pass@db.example:3306/douyin`.
    /// Prefer `secretRef` for URLs that carry a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub url: Option<String>,
    /// A key of a Secret in the environment's namespace that holds the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct SecretKeyRef {
    /// Secret name, in the environment's namespace.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(dns_subdomain!("self")).message("secretRef.name is not a Secret name"))]
    pub name: String,
    /// Key inside the Secret; defaults to the application's key
    /// (`DOUYIN_DATABASE_URL`, `DOUYIN_DATABASE_READ_URL`, `DOUYIN_REDIS_URL` or
    /// `DOUYIN_REDIS_CLUSTER_NODES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Use an existing S3 service instead of provisioning MinIO.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalS3Spec {
    /// S3 endpoint, e.g. `https://s3.eu-west-1.amazonaws.com`.
    #[schemars(length(max = 4096))]
    pub url: String,
    /// Secret in the environment's namespace with the keys `DOUYIN_S3_ACCESS_KEY`
    /// and `DOUYIN_S3_SECRET_KEY`. The bucket must already exist.
    pub secret_ref: SecretNameRef,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct SecretNameRef {
    /// Secret name, in the environment's namespace.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(dns_subdomain!("self")).message("secretRef.name is not a Secret name"))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.enabled || !has(self.external)").message("spec.mysql.external is set but spec.mysql.enabled is false"),
    validation = Rule::new("!self.enabled || !has(self.external) || !has(self.external.url) || self.external.url.startsWith('mysql://')")
        .message("spec.mysql.external.url must start with mysql://"),
    validation = Rule::new("self.enabled || !has(self.readReplica)").message("spec.mysql.readReplica is set but spec.mysql.enabled is false"),
    validation = Rule::new("!has(self.readReplica) || !has(self.readReplica.url) || self.readReplica.url.startsWith('mysql://')")
        .message("spec.mysql.readReplica.url must start with mysql://"),
    validation = Rule::new(concat!("!self.enabled || has(self.external) || ", pinned!("self.image")))
        .message("spec.mysql.image must name a tag other than latest, or a digest"),
    validation = storage_size_rule!("mysql"),
    validation = storage_class_rule!("mysql"),
)]
pub struct MysqlSpec {
    /// Whether the environment has a database at all. When false the Secret omits
    /// `DOUYIN_DATABASE_URL` and the application uses its embedded SQLite.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// MariaDB image, pinned by tag or digest (`latest` is refused).
    #[serde(default = "defaults::mysql_image")]
    #[schemars(length(max = 1024))]
    pub image: String,
    /// 1 runs the database, 0 pauses it and keeps its volume. The image is not
    /// configured for replication, so more than one is refused.
    #[serde(default = "defaults::one")]
    #[schemars(range(min = 0, max = 1))]
    pub replicas: i32,
    #[serde(default = "defaults::mysql_storage")]
    pub storage: StorageSpec,
    #[serde(default = "defaults::mysql_resources")]
    pub resources: ResourceRequirements,
    /// Use an existing database instead of provisioning one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalUrlSpec>,
    /// A read replica of this database run outside the operator, inline
    /// (`mysql://…`) or from a Secret key: its URL becomes
    /// `DOUYIN_DATABASE_READ_URL`, where reads that tolerate lag go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_replica: Option<ExternalUrlSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.enabled || !has(self.external)").message("spec.redis.external is set but spec.redis.enabled is false"),
    validation = Rule::new("!self.enabled || !has(self.external) || !has(self.external.url) || self.external.url.startsWith('redis://') || self.external.url.startsWith('rediss://')")
        .message("spec.redis.external.url must start with redis:// or rediss://"),
    validation = Rule::new(concat!("!self.enabled || has(self.external) || ", pinned!("self.image")))
        .message("spec.redis.image must name a tag other than latest, or a digest"),
    validation = storage_size_rule!("redis"),
    validation = storage_class_rule!("redis"),
)]
pub struct RedisSpec {
    /// Whether the environment has Redis. When false the Secret omits
    /// `DOUYIN_REDIS_URL` and the application uses its in-process cache and pub/sub.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Redis image, pinned by tag or digest (`latest` is refused).
    #[serde(default = "defaults::redis_image")]
    #[schemars(length(max = 1024))]
    pub image: String,
    /// 1 runs Redis, 0 pauses it. Redis is a cache here; replication is not offered.
    #[serde(default = "defaults::one")]
    #[schemars(range(min = 0, max = 1))]
    pub replicas: i32,
    #[serde(default = "defaults::redis_storage")]
    pub storage: StorageSpec,
    #[serde(default = "defaults::redis_resources")]
    pub resources: ResourceRequirements,
    /// Use an existing Redis, or an existing Redis Cluster, instead of provisioning one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedisSpec>,
}

/// Most seed nodes `clusterNodes` takes; the client learns the rest of the cluster
/// from any one of them.
pub const MAX_CLUSTER_NODES: usize = 64;

/// Use an existing Redis instead of provisioning one: a single Redis (`url` or
/// `secretRef`) or a Redis Cluster (`clusterNodes`, or `secretRef` with
/// `cluster: true`). Set exactly one of `url`, `secretRef` and `clusterNodes`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.url) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) + (has(self.clusterNodes) ? 1 : 0) == 1")
        .message("spec.redis.external needs exactly one of url, secretRef and clusterNodes"),
    validation = Rule::new("!has(self.cluster) || !self.cluster || has(self.secretRef)")
        .message("spec.redis.external.cluster reads the node list from secretRef; set secretRef, or list clusterNodes without cluster"),
)]
pub struct ExternalRedisSpec {
    /// Connection URL of a single Redis, e.g. `redis://:pass@cache.example:6379/0`
    /// (`rediss://` for TLS). Prefer `secretRef` for URLs that carry a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub url: Option<String>,
    /// A key of a Secret in the environment's namespace that holds the URL
    /// (default key `DOUYIN_REDIS_URL`), or with `cluster: true` the cluster's
    /// node list (default key `DOUYIN_REDIS_CLUSTER_NODES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Some nodes of a Redis Cluster, each `redis://host:port` or
    /// `rediss://host:port`: the operator writes them, comma-separated, into
    /// `DOUYIN_REDIS_CLUSTER_NODES` in place of `DOUYIN_REDIS_URL`, and the
    /// application's cluster client learns the other nodes from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.size() >= 1 && self.size() <= 64")
            .message("spec.redis.external.clusterNodes lists 1 to 64 nodes"),
        validation = Rule::new("self.all(n, n.startsWith('redis://') || n.startsWith('rediss://'))")
            .message("spec.redis.external.clusterNodes: every node must start with redis:// or rediss://"),
        validation = Rule::new(r"self.all(n, !n.matches('[,\\s]'))")
            .message("spec.redis.external.clusterNodes: a node is one URL, without commas or spaces"),
    )]
    pub cluster_nodes: Option<Vec<String>>,
    /// With `secretRef`: the Secret's key holds a Redis Cluster's nodes,
    /// comma-separated (`redis://h1:6379,redis://h2:6379`), written into
    /// `DOUYIN_REDIS_CLUSTER_NODES`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster: bool,
}

impl ExternalRedisSpec {
    /// Whether this names a Redis Cluster rather than a single Redis.
    pub fn is_cluster(&self) -> bool {
        self.cluster_nodes.is_some() || self.cluster
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.enabled || !has(self.external)").message("spec.minio.external is set but spec.minio.enabled is false"),
    validation = Rule::new("!self.enabled || !has(self.external) || self.external.url.startsWith('http://') || self.external.url.startsWith('https://')")
        .message("spec.minio.external.url is not an http(s) URL"),
    validation = Rule::new(r"!self.enabled || self.bucket.matches('^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')")
        .message("spec.minio.bucket is not a valid S3 bucket name"),
    validation = Rule::new(r"!self.enabled || self.region.matches('\\S')").message("spec.minio.region is empty"),
    validation = Rule::new(concat!("!self.enabled || has(self.external) || ", pinned!("self.image")))
        .message("spec.minio.image must name a tag other than latest, or a digest"),
    validation = Rule::new(concat!("!self.enabled || has(self.external) || ", pinned!("self.clientImage")))
        .message("spec.minio.clientImage must name a tag other than latest, or a digest"),
    validation = storage_size_rule!("minio"),
    validation = storage_class_rule!("minio"),
)]
pub struct MinioSpec {
    /// Whether the environment has object storage. When false the Secret omits the
    /// `DOUYIN_S3_*` keys and the application stores media in a local directory.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// MinIO server image, pinned by tag or digest (`latest` is refused).
    #[serde(default = "defaults::minio_image")]
    #[schemars(length(max = 1024))]
    pub image: String,
    /// MinIO client image used by the Job that creates the bucket and the
    /// application's access key.
    #[serde(default = "defaults::mc_image")]
    #[schemars(length(max = 1024))]
    pub client_image: String,
    /// 1 runs MinIO, 0 pauses it. Distributed MinIO needs at least four drives
    /// and is not offered.
    #[serde(default = "defaults::one")]
    #[schemars(range(min = 0, max = 1))]
    pub replicas: i32,
    /// Bucket the application stores media in.
    #[serde(default = "defaults::bucket")]
    #[schemars(length(max = 255))]
    pub bucket: String,
    /// Region the S3 client signs requests for.
    #[serde(default = "defaults::region")]
    #[schemars(length(max = 128))]
    pub region: String,
    #[serde(default = "defaults::minio_storage")]
    pub storage: StorageSpec,
    #[serde(default = "defaults::minio_resources")]
    pub resources: ResourceRequirements,
    /// Use an existing S3 service instead of provisioning MinIO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalS3Spec>,
}

/// What the operator last saw of the environment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DouyinEnvironmentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One word summary: Pending, Ready or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The Secret the application should read (`envFrom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// `Ready`, `MysqlReady`, `RedisReady`, `MinioReady` and `Degraded`, one of
    /// each type (a list map keyed by `type`).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Ready,
    Degraded,
}

impl DouyinEnvironment {
    /// The Secret the application reads.
    pub fn secret_name(&self) -> String {
        match &self.spec.secret_name {
            Some(name) => name.clone(),
            None => format!("{}-douyin-backends", kube::ResourceExt::name_any(self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn an_empty_spec_gets_every_backend_with_pinned_images() {
        let spec: DouyinEnvironmentSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec, DouyinEnvironmentSpec::default());
        assert!(spec.mysql.enabled && spec.redis.enabled && spec.minio.enabled);
        assert_eq!(spec.mysql.image, "mariadb:11.4.4");
        assert_eq!(spec.redis.image, "redis:7.4.2");
        assert_eq!(spec.minio.bucket, "douyin");
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
    }

    #[test]
    fn secret_name_defaults_to_the_environment_name() {
        let env = DouyinEnvironment::new("dev", DouyinEnvironmentSpec::default());
        assert_eq!(env.secret_name(), "dev-douyin-backends");
        let named = DouyinEnvironment::new(
            "dev",
            DouyinEnvironmentSpec { secret_name: Some("backends".into()), ..Default::default() },
        );
        assert_eq!(named.secret_name(), "backends");
    }

    #[test]
    fn crd_names_and_printer_columns() {
        let crd = DouyinEnvironment::crd();
        assert_eq!(crd.spec.group, "douyin.rs");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["denv".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let columns: Vec<_> =
            version.additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            columns,
            ["Phase", "MySQL", "Redis", "MinIO", "Secret", "Age", "Reason", "Message", "Policy", "Observed"]
        );
        let wide: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .filter(|c| c.priority == Some(1))
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(wide, ["Reason", "Message", "Policy", "Observed"]);
        assert!(version.subresources.as_ref().unwrap().status.is_some());
    }

    #[test]
    fn conditions_are_a_list_map_keyed_by_type() {
        let crd = serde_json::to_value(DouyinEnvironment::crd()).unwrap();
        let conditions = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
            ["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]));
        let required = conditions["items"]["required"].as_array().unwrap();
        assert!(required.contains(&"type".into()), "a list map key must be required");
    }
}
