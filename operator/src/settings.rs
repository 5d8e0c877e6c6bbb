//! Where the application finds each backend: the provisioned instance, or an
//! external one named inline or in a Secret.
//!
//! Pure: the Secrets the spec refers to are read beforehand (`referenced_secrets`)
//! and passed in as a lookup, so the controller and `render` share this code.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::builders::Environment;
use crate::builders::secret::{self as secrets, AppSettings, S3Settings};
use crate::crd::{DouyinEnvironmentSpec, ExternalRedisSpec, ExternalUrlSpec, SecretKeyRef};
use crate::credentials::Credentials;
use crate::names::Backend;

/// A key of a Secret in the environment's namespace: `lookup(secret, key)`.
pub trait SecretLookup {
    fn value(&self, secret: &str, key: &str) -> Option<String>;
}

/// Secrets read from the API server, by name (absent ones are missing).
impl SecretLookup for BTreeMap<String, Secret> {
    fn value(&self, secret: &str, key: &str) -> Option<String> {
        self.get(secret).and_then(|s| secret_text(s, key))
    }
}

/// The Secrets an enabled external backend names, each once, in spec order.
pub fn referenced_secrets(spec: &DouyinEnvironmentSpec) -> Vec<String> {
    let mut names = Vec::new();
    let mut add = |name: &str| {
        if !names.iter().any(|n: &String| n == name) {
            names.push(name.to_string());
        }
    };
    let url_refs = [(spec.mysql.enabled, &spec.mysql.external), (spec.mysql.enabled, &spec.mysql.read_replica)];
    let redis_ref = spec.redis.external.as_ref().filter(|e| e.url.is_none() && e.cluster_nodes.is_none());
    let references = url_refs
        .into_iter()
        .filter_map(|(enabled, external)| match external {
            Some(ExternalUrlSpec { url: None, secret_ref: Some(reference) }) if enabled => Some(reference),
            _ => None,
        })
        .chain(redis_ref.filter(|_| spec.redis.enabled).and_then(|e| e.secret_ref.as_ref()));
    for reference in references {
        add(&reference.name);
    }
    if let (true, Some(external)) = (spec.minio.enabled, &spec.minio.external) {
        add(&external.secret_ref.name);
    }
    names
}

/// What the application's Secret holds, and per backend (in `Backend::ALL` order)
/// why an external instance's settings could not be read.
pub fn app_settings(
    e: &Environment<'_>,
    credentials: &Credentials,
    lookup: &impl SecretLookup,
) -> (AppSettings, [Option<String>; 3]) {
    let mut settings = AppSettings::default();
    let mut problems: [Option<String>; 3] = Default::default();
    let spec = e.spec;
    if spec.mysql.enabled {
        settings.database_url = match &spec.mysql.external {
            None => Some(secrets::provisioned_database_url(e, credentials)),
            Some(external) => {
                let problem = &mut problems[Backend::Mysql as usize];
                external_url(lookup, &external.url, &external.secret_ref, secrets::DATABASE_URL, problem)
            }
        };
        settings.database_read_url = spec.mysql.read_replica.as_ref().and_then(|replica| {
            let problem = &mut problems[Backend::Mysql as usize];
            external_url(lookup, &replica.url, &replica.secret_ref, secrets::DATABASE_READ_URL, problem)
        });
    }
    if spec.redis.enabled {
        let problem = &mut problems[Backend::Redis as usize];
        match &spec.redis.external {
            None => settings.redis_url = Some(secrets::provisioned_redis_url(e, credentials)),
            Some(external) if external.is_cluster() => {
                settings.redis_cluster_nodes = cluster_nodes(lookup, external, problem);
            }
            Some(external) => {
                settings.redis_url =
                    external_url(lookup, &external.url, &external.secret_ref, secrets::REDIS_URL, problem);
            }
        }
    }
    if spec.minio.enabled {
        settings.s3 = match &spec.minio.external {
            None => Some(secrets::provisioned_s3(e, credentials)),
            Some(external) => {
                let name = &external.secret_ref.name;
                match (lookup.value(name, secrets::S3_ACCESS_KEY), lookup.value(name, secrets::S3_SECRET_KEY)) {
                    (Some(access_key), Some(secret_key)) => Some(S3Settings {
                        endpoint: external.url.clone(),
                        bucket: spec.minio.bucket.clone(),
                        region: spec.minio.region.clone(),
                        access_key,
                        secret_key,
                    }),
                    _ => {
                        problems[Backend::Minio as usize] = Some(format!(
                            "Secret {name:?} must hold {} and {}",
                            secrets::S3_ACCESS_KEY,
                            secrets::S3_SECRET_KEY
                        ));
                        None
                    }
                }
            }
        };
    }
    (settings, problems)
}

/// The URL of an external MySQL or Redis, inline or from a Secret.
fn external_url(
    lookup: &impl SecretLookup,
    url: &Option<String>,
    secret_ref: &Option<SecretKeyRef>,
    default_key: &str,
    problem: &mut Option<String>,
) -> Option<String> {
    if let Some(url) = url {
        return Some(url.clone());
    }
    let reference = secret_ref.as_ref()?;
    let key = reference.key.as_deref().unwrap_or(default_key);
    let value = lookup.value(&reference.name, key);
    if value.is_none() {
        *problem = Some(format!("Secret {:?} has no key {key:?}", reference.name));
    }
    value
}

/// A Redis Cluster's nodes, comma-separated as `DOUYIN_REDIS_CLUSTER_NODES` takes
/// them: the listed `clusterNodes` (checked by the CRD), or a Secret key's list as
/// it stands there (the application reads it, as it reads a URL from a Secret).
fn cluster_nodes(
    lookup: &impl SecretLookup,
    external: &ExternalRedisSpec,
    problem: &mut Option<String>,
) -> Option<String> {
    match &external.cluster_nodes {
        Some(nodes) => Some(nodes.join(",")),
        None => external_url(lookup, &None, &external.secret_ref, secrets::REDIS_CLUSTER_NODES, problem),
    }
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ExternalS3Spec, SecretNameRef};

    #[test]
    fn referenced_secrets_are_those_of_enabled_external_backends() {
        let mut spec = DouyinEnvironmentSpec::default();
        assert!(referenced_secrets(&spec).is_empty());
        spec.mysql.external =
            Some(ExternalUrlSpec { url: None, secret_ref: Some(SecretKeyRef { name: "shared".into(), key: None }) });
        spec.redis.external = Some(ExternalRedisSpec {
            secret_ref: Some(SecretKeyRef { name: "shared".into(), key: None }),
            ..Default::default()
        });
        spec.minio.external =
            Some(ExternalS3Spec { url: "https://s3.example".into(), secret_ref: SecretNameRef { name: "s3".into() } });
        assert_eq!(referenced_secrets(&spec), ["shared", "s3"]);
        spec.minio.enabled = false;
        assert_eq!(referenced_secrets(&spec), ["shared"]);
    }

    #[test]
    fn a_read_replica_from_a_secret_becomes_the_read_url_key() {
        let mut spec = DouyinEnvironmentSpec::default();
        spec.mysql.read_replica =
            Some(ExternalUrlSpec { url: None, secret_ref: Some(SecretKeyRef { name: "replica".into(), key: None }) });
        assert_eq!(referenced_secrets(&spec), ["replica"]);
        let env = crate::builders::tests::test_env(spec);
        let e = Environment::new(&env).unwrap();
        let credentials = Credentials::fill_missing(None, |n| "x".repeat(n));
        let mut secrets = BTreeMap::new();
        let (settings, problems) = app_settings(&e, &credentials, &secrets);
        assert_eq!(settings.database_read_url, None);
        assert!(problems[Backend::Mysql as usize].as_deref().unwrap().contains("DOUYIN_DATABASE_READ_URL"));
        let data =
            [(secrets::DATABASE_READ_URL.to_string(), k8s_openapi::ByteString(b"mysql://r:3306/douyin".to_vec()))];
        secrets.insert("replica".to_string(), Secret { data: Some(data.into()), ..Default::default() });
        let (settings, problems) = app_settings(&e, &credentials, &secrets);
        assert_eq!(settings.database_read_url.as_deref(), Some("mysql://r:3306/douyin"));
        assert_eq!(problems[Backend::Mysql as usize], None);
        assert!(settings.database_url.is_some(), "the primary stays the provisioned one");
    }

    fn secret(key: &str, value: &str) -> Secret {
        let data = [(key.to_string(), k8s_openapi::ByteString(value.as_bytes().to_vec()))];
        Secret { data: Some(data.into()), ..Default::default() }
    }

    #[test]
    fn cluster_nodes_become_the_cluster_key_in_place_of_the_redis_url() {
        let mut spec = DouyinEnvironmentSpec::default();
        spec.redis.external = Some(ExternalRedisSpec {
            cluster_nodes: Some(vec!["redis://c0:6379".into(), "redis://c1:6379".into(), "rediss://c2:6380".into()]),
            ..Default::default()
        });
        assert!(referenced_secrets(&spec).is_empty());
        let env = crate::builders::tests::test_env(spec);
        let e = Environment::new(&env).unwrap();
        let credentials = Credentials::fill_missing(None, |n| "x".repeat(n));
        let (settings, problems) = app_settings(&e, &credentials, &BTreeMap::new());
        assert_eq!(problems, [None, None, None]);
        assert_eq!(settings.redis_url, None);
        assert_eq!(settings.redis_cluster_nodes.as_deref(), Some("redis://c0:6379,redis://c1:6379,rediss://c2:6380"));
        let data = settings.to_data();
        assert!(!data.contains_key(secrets::REDIS_URL));
        assert_eq!(data[secrets::REDIS_CLUSTER_NODES].0, b"redis://c0:6379,redis://c1:6379,rediss://c2:6380");
    }

    #[test]
    fn a_cluster_secret_holds_the_node_list() {
        let mut spec = DouyinEnvironmentSpec::default();
        spec.redis.external = Some(ExternalRedisSpec {
            secret_ref: Some(SecretKeyRef { name: "cache".into(), key: None }),
            cluster: true,
            ..Default::default()
        });
        assert_eq!(referenced_secrets(&spec), ["cache"]);
        let env = crate::builders::tests::test_env(spec);
        let e = Environment::new(&env).unwrap();
        let credentials = Credentials::fill_missing(None, |n| "x".repeat(n));
        let redis = Backend::Redis as usize;

        let mut secrets = BTreeMap::new();
        let (settings, problems) = app_settings(&e, &credentials, &secrets);
        assert_eq!((settings.redis_url, settings.redis_cluster_nodes), (None, None));
        assert!(problems[redis].as_deref().unwrap().contains("DOUYIN_REDIS_CLUSTER_NODES"), "{problems:?}");

        // The key a single Redis would use is not read for a cluster.
        secrets.insert("cache".into(), secret(secrets::REDIS_URL, "redis://one:6379"));
        assert!(app_settings(&e, &credentials, &secrets).1[redis].is_some());

        secrets.insert("cache".into(), secret(secrets::REDIS_CLUSTER_NODES, "redis://:pw@c0:6379,redis://:pw@c1:6379"));
        let (settings, problems) = app_settings(&e, &credentials, &secrets);
        assert_eq!(problems[redis], None);
        assert_eq!(settings.redis_url, None);
        assert_eq!(settings.redis_cluster_nodes.as_deref(), Some("redis://:pw@c0:6379,redis://:pw@c1:6379"));
        let data = settings.to_data();
        assert!(data.contains_key(secrets::REDIS_CLUSTER_NODES) && !data.contains_key(secrets::REDIS_URL));
    }

    #[test]
    fn a_single_redis_from_a_secret_is_still_the_redis_url() {
        let mut spec = DouyinEnvironmentSpec::default();
        spec.redis.external = Some(ExternalRedisSpec {
            secret_ref: Some(SecretKeyRef { name: "cache".into(), key: None }),
            ..Default::default()
        });
        let env = crate::builders::tests::test_env(spec);
        let e = Environment::new(&env).unwrap();
        let credentials = Credentials::fill_missing(None, |n| "x".repeat(n));
        let secrets = BTreeMap::from([("cache".to_string(), secret(secrets::REDIS_URL, "redis://one:6379/0"))]);
        let (settings, problems) = app_settings(&e, &credentials, &secrets);
        assert_eq!(problems, [None, None, None]);
        assert_eq!(settings.redis_url.as_deref(), Some("redis://one:6379/0"));
        assert_eq!(settings.redis_cluster_nodes, None);
    }
}
