//! The two Secrets of an environment: the credentials (root passwords, the source of
//! truth) and the application's Secret (the `DOUYIN_*` keys the app reads).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::Environment;
use crate::credentials::{Credentials, MYSQL_DATABASE, MYSQL_USER};
use crate::names::{self, Backend};

pub const DATABASE_URL: &str = "DOUYIN_DATABASE_URL";
pub const DATABASE_READ_URL: &str = "DOUYIN_DATABASE_READ_URL";
pub const REDIS_URL: &str = "DOUYIN_REDIS_URL";
pub const REDIS_CLUSTER_NODES: &str = "DOUYIN_REDIS_CLUSTER_NODES";
pub const S3_ENDPOINT: &str = "DOUYIN_S3_ENDPOINT";
pub const S3_BUCKET: &str = "DOUYIN_S3_BUCKET";
pub const S3_REGION: &str = "DOUYIN_S3_REGION";
pub const S3_ACCESS_KEY: &str = "DOUYIN_S3_ACCESS_KEY";
pub const S3_SECRET_KEY: &str = "DOUYIN_S3_SECRET_KEY";

/// The generated credentials. Owned by the environment while it lives; on deletion
/// with `deletionPolicy: Retain` the finalizer releases it together with the PVCs.
pub fn credentials_secret(env: &Environment, credentials: &Credentials) -> Secret {
    Secret {
        metadata: env.metadata(env.credentials_secret(), names::environment_labels(&env.name)),
        type_: Some("Opaque".into()),
        data: Some(credentials.to_data()),
        ..Default::default()
    }
}

/// S3 settings of the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

/// Where the application finds each backend; `None` leaves the key out, so the
/// application falls back to its embedded implementation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppSettings {
    pub database_url: Option<String>,
    /// A read replica of the database, for reads that tolerate lag.
    pub database_read_url: Option<String>,
    pub redis_url: Option<String>,
    /// An external Redis Cluster's nodes, comma-separated, in place of `redis_url`.
    pub redis_cluster_nodes: Option<String>,
    pub s3: Option<S3Settings>,
}

/// `mysql://douyin:<password>@<env>-mysql.<ns>.svc:3306/douyin`
pub fn provisioned_database_url(env: &Environment, credentials: &Credentials) -> String {
    format!(
        "mysql://{MYSQL_USER}:{}@{}:{}/{MYSQL_DATABASE}",
        credentials.mysql_password,
        Backend::Mysql.host(&env.name, &env.namespace),
        Backend::Mysql.port()
    )
}

/// `redis://:<password>@<env>-redis.<ns>.svc:6379/0`
pub fn provisioned_redis_url(env: &Environment, credentials: &Credentials) -> String {
    format!(
        "redis://:{}@{}:{}/0",
        credentials.redis_password,
        Backend::Redis.host(&env.name, &env.namespace),
        Backend::Redis.port()
    )
}

/// The provisioned MinIO, reached with the application's own (non-root) key.
pub fn provisioned_s3(env: &Environment, credentials: &Credentials) -> S3Settings {
    S3Settings {
        endpoint: format!("http://{}:{}", Backend::Minio.host(&env.name, &env.namespace), Backend::Minio.port()),
        bucket: env.spec.minio.bucket.clone(),
        region: env.spec.minio.region.clone(),
        access_key: credentials.s3_access_key.clone(),
        secret_key: credentials.s3_secret_key.clone(),
    }
}

impl AppSettings {
    /// The Secret's data: at most eight `DOUYIN_*` backend keys (a Redis URL or a
    /// Redis Cluster's nodes, never both).
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        let mut data = BTreeMap::new();
        let mut put = |key: &str, value: &str| {
            data.insert(key.to_string(), ByteString(value.as_bytes().to_vec()));
        };
        if let Some(url) = &self.database_url {
            put(DATABASE_URL, url);
        }
        if let Some(url) = &self.database_read_url {
            put(DATABASE_READ_URL, url);
        }
        if let Some(url) = &self.redis_url {
            put(REDIS_URL, url);
        } else if let Some(nodes) = &self.redis_cluster_nodes {
            put(REDIS_CLUSTER_NODES, nodes);
        }
        if let Some(s3) = &self.s3 {
            put(S3_ENDPOINT, &s3.endpoint);
            put(S3_BUCKET, &s3.bucket);
            put(S3_REGION, &s3.region);
            put(S3_ACCESS_KEY, &s3.access_key);
            put(S3_SECRET_KEY, &s3.secret_key);
        }
        data
    }
}

/// The Secret the application loads with `envFrom`.
pub fn app_secret(env: &Environment, settings: &AppSettings) -> Secret {
    Secret {
        metadata: env.metadata(env.secret_name.clone(), names::environment_labels(&env.name)),
        type_: Some("Opaque".into()),
        data: Some(settings.to_data()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::tests::test_env;
    use crate::crd::DouyinEnvironmentSpec;
    use crate::credentials::random_token;

    fn text(secret: &Secret, key: &str) -> String {
        String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
    }

    #[test]
    fn app_secret_holds_exactly_the_seven_backend_keys() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let creds = Credentials::fill_missing(None, random_token);
        let settings = AppSettings {
            database_url: Some(provisioned_database_url(&e, &creds)),
            redis_url: Some(provisioned_redis_url(&e, &creds)),
            s3: Some(provisioned_s3(&e, &creds)),
            ..Default::default()
        };
        let secret = app_secret(&e, &settings);
        assert_eq!(secret.metadata.name.as_deref(), Some("dev-douyin-backends"));
        let keys: Vec<_> = secret.data.as_ref().unwrap().keys().cloned().collect();
        assert_eq!(keys, [DATABASE_URL, REDIS_URL, S3_ACCESS_KEY, S3_BUCKET, S3_ENDPOINT, S3_REGION, S3_SECRET_KEY]);
        assert_eq!(
            text(&secret, DATABASE_URL),
            format!("mysql://douyin:{}@dev-mysql.shop.svc:3306/douyin", creds.mysql_password)
        );
        assert_eq!(text(&secret, REDIS_URL), format!("redis://:{}@dev-redis.shop.svc:6379/0", creds.redis_password));
        assert_eq!(text(&secret, S3_ENDPOINT), "http://dev-minio.shop.svc:9000");
        assert_eq!(text(&secret, S3_BUCKET), "douyin");
        assert_eq!(text(&secret, S3_REGION), "us-east-1");
        assert_eq!(text(&secret, S3_ACCESS_KEY), creds.s3_access_key);
        assert_ne!(text(&secret, S3_ACCESS_KEY), creds.minio_root_user);
    }

    #[test]
    fn disabled_backends_leave_their_keys_out() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let settings = AppSettings { redis_url: Some("redis://cache:6379/0".into()), ..Default::default() };
        let data = app_secret(&e, &settings).data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), [REDIS_URL]);
    }

    #[test]
    fn credentials_secret_is_owned_and_labelled() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let secret = credentials_secret(&e, &Credentials::fill_missing(None, random_token));
        assert_eq!(secret.metadata.name.as_deref(), Some("dev-douyin-credentials"));
        assert_eq!(secret.metadata.owner_references.as_ref().unwrap().len(), 1);
        assert_eq!(secret.metadata.labels.as_ref().unwrap()[names::LABEL_MANAGED_BY], "douyin-operator");
    }
}
