//! The defaults of a `DouyinEnvironmentSpec`: the same values serde fills in and
//! the CRD schema declares (so the API server stores them in each resource).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{
    DEFAULT_BUCKET, DEFAULT_MC_IMAGE, DEFAULT_MINIO_IMAGE, DEFAULT_MYSQL_IMAGE, DEFAULT_REDIS_IMAGE, DEFAULT_REGION,
    MinioSpec, MysqlSpec, RedisSpec, StorageSpec,
};

pub(super) fn enabled() -> bool {
    true
}
pub(super) fn one() -> i32 {
    1
}
pub(super) fn mysql_image() -> String {
    DEFAULT_MYSQL_IMAGE.into()
}
pub(super) fn redis_image() -> String {
    DEFAULT_REDIS_IMAGE.into()
}
pub(super) fn minio_image() -> String {
    DEFAULT_MINIO_IMAGE.into()
}
pub(super) fn mc_image() -> String {
    DEFAULT_MC_IMAGE.into()
}
pub(super) fn bucket() -> String {
    DEFAULT_BUCKET.into()
}
pub(super) fn region() -> String {
    DEFAULT_REGION.into()
}
pub(super) fn storage(size: &str) -> StorageSpec {
    StorageSpec { size: size.into(), storage_class_name: None }
}
pub(super) fn mysql_storage() -> StorageSpec {
    storage("10Gi")
}
pub(super) fn redis_storage() -> StorageSpec {
    storage("1Gi")
}
pub(super) fn minio_storage() -> StorageSpec {
    storage("20Gi")
}

pub(super) fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
        pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
    };
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
        limits: Some(quantities(&[("memory", memory_limit)])),
        ..Default::default()
    }
}
pub(super) fn mysql_resources() -> ResourceRequirements {
    resources("250m", "512Mi", "1Gi")
}
pub(super) fn redis_resources() -> ResourceRequirements {
    resources("50m", "64Mi", "256Mi")
}
pub(super) fn minio_resources() -> ResourceRequirements {
    resources("100m", "256Mi", "1Gi")
}
/// Resources of the short-lived bucket setup Job.
pub fn job_resources() -> ResourceRequirements {
    resources("10m", "32Mi", "128Mi")
}

impl Default for MysqlSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            image: mysql_image(),
            replicas: 1,
            storage: mysql_storage(),
            resources: mysql_resources(),
            external: None,
            read_replica: None,
        }
    }
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            image: redis_image(),
            replicas: 1,
            storage: redis_storage(),
            resources: redis_resources(),
            external: None,
        }
    }
}

impl Default for MinioSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            image: minio_image(),
            client_image: mc_image(),
            replicas: 1,
            bucket: bucket(),
            region: region(),
            storage: minio_storage(),
            resources: minio_resources(),
            external: None,
        }
    }
}
