//! The settings the three backends share, read the same way for each:
//! `spec.backend(b)`.

use super::{DouyinEnvironmentSpec, StorageSpec};
use crate::names::Backend;

/// One backend's part of the spec, whichever backend it is.
#[derive(Clone, Copy, Debug)]
pub struct BackendSpec<'a> {
    pub enabled: bool,
    /// An existing instance is used instead of one the operator provisions.
    pub external: bool,
    pub replicas: i32,
    /// What its volume claim template asks for when it is first created.
    pub storage: &'a StorageSpec,
}

impl DouyinEnvironmentSpec {
    pub fn backend(&self, backend: Backend) -> BackendSpec<'_> {
        match backend {
            Backend::Mysql => BackendSpec {
                enabled: self.mysql.enabled,
                external: self.mysql.external.is_some(),
                replicas: self.mysql.replicas,
                storage: &self.mysql.storage,
            },
            Backend::Redis => BackendSpec {
                enabled: self.redis.enabled,
                external: self.redis.external.is_some(),
                replicas: self.redis.replicas,
                storage: &self.redis.storage,
            },
            Backend::Minio => BackendSpec {
                enabled: self.minio.enabled,
                external: self.minio.external.is_some(),
                replicas: self.minio.replicas,
                storage: &self.minio.storage,
            },
        }
    }
}
