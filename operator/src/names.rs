//! Names and labels of everything the operator creates for an environment.

use std::collections::BTreeMap;

use kube::api::PatchParams;

pub const FIELD_MANAGER: &str = "douyin-operator";

/// Every write of the operator: a server-side apply that owns the fields it sets.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}
pub const FINALIZER: &str = "douyinenvironments.douyin.rs/cleanup";
pub const MANAGED_BY: &str = "douyin-operator";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Label selector matching every object (PVCs included) of one environment.
pub fn environment_selector(env_name: &str) -> String {
    format!("{LABEL_INSTANCE}={env_name},{LABEL_MANAGED_BY}={MANAGED_BY}")
}

/// Label selector of everything the operator manages, in any environment.
pub fn managed_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY}")
}

/// The Secret holding the generated root and application credentials. It is the
/// only place they exist; the application's Secret is derived from it.
pub fn credentials_secret(env_name: &str) -> String {
    format!("{env_name}-douyin-credentials")
}

/// The three backends an environment can provision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    Mysql,
    Redis,
    Minio,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Mysql, Backend::Redis, Backend::Minio];

    /// `app.kubernetes.io/name`, and the suffix of its objects' names.
    pub fn key(self) -> &'static str {
        match self {
            Backend::Mysql => "mysql",
            Backend::Redis => "redis",
            Backend::Minio => "minio",
        }
    }

    pub fn component(self) -> &'static str {
        match self {
            Backend::Mysql => "database",
            Backend::Redis => "cache",
            Backend::Minio => "object-storage",
        }
    }

    pub fn port(self) -> i32 {
        match self {
            Backend::Mysql => 3306,
            Backend::Redis => 6379,
            Backend::Minio => 9000,
        }
    }

    pub fn port_name(self) -> &'static str {
        match self {
            Backend::Mysql => "mysql",
            Backend::Redis => "redis",
            Backend::Minio => "s3",
        }
    }

    /// Where the data volume is mounted in the container.
    pub fn data_path(self) -> &'static str {
        match self {
            Backend::Mysql => "/var/lib/mysql",
            Backend::Redis | Backend::Minio => "/data",
        }
    }

    /// The status condition reporting this backend.
    pub fn condition_type(self) -> &'static str {
        match self {
            Backend::Mysql => "MysqlReady",
            Backend::Redis => "RedisReady",
            Backend::Minio => "MinioReady",
        }
    }

    /// StatefulSet and client Service name.
    pub fn object_name(self, env_name: &str) -> String {
        format!("{env_name}-{}", self.key())
    }

    /// Headless Service giving the pods stable DNS names.
    pub fn headless_name(self, env_name: &str) -> String {
        format!("{env_name}-{}-headless", self.key())
    }

    /// In-cluster DNS name of the client Service.
    pub fn host(self, env_name: &str, namespace: &str) -> String {
        format!("{}.{namespace}.svc", self.object_name(env_name))
    }

    /// Labels on every object of this backend.
    pub fn labels(self, env_name: &str) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels(env_name);
        labels.insert(LABEL_COMPONENT.into(), self.component().into());
        labels.insert(LABEL_PART_OF.into(), "douyin".into());
        labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
        labels
    }

    /// The subset of labels a Service or StatefulSet selects pods by.
    pub fn selector_labels(self, env_name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_string(), self.key().to_string()),
            (LABEL_INSTANCE.to_string(), env_name.to_string()),
        ])
    }
}

/// The Job that creates the MinIO bucket and the application's access key.
pub fn bucket_job(env_name: &str) -> String {
    format!("{env_name}-minio-bucket")
}

/// Labels on objects that belong to the environment but to no single backend.
pub fn environment_labels(env_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_INSTANCE.to_string(), env_name.to_string()),
        (LABEL_PART_OF.to_string(), "douyin".to_string()),
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_objects_are_named_after_the_environment() {
        assert_eq!(Backend::Mysql.object_name("dev"), "dev-mysql");
        assert_eq!(Backend::Redis.headless_name("dev"), "dev-redis-headless");
        assert_eq!(Backend::Minio.host("dev", "shop"), "dev-minio.shop.svc");
        assert_eq!(credentials_secret("dev"), "dev-douyin-credentials");
    }

    #[test]
    fn labels_include_the_selector_and_the_manager() {
        let labels = Backend::Redis.labels("dev");
        for (k, v) in Backend::Redis.selector_labels("dev") {
            assert_eq!(labels.get(&k), Some(&v));
        }
        assert_eq!(labels[LABEL_MANAGED_BY], "douyin-operator");
        assert_eq!(labels[LABEL_COMPONENT], "cache");
        assert_eq!(
            environment_selector("dev"),
            "app.kubernetes.io/instance=dev,app.kubernetes.io/managed-by=douyin-operator"
        );
    }
}
