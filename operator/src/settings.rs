//! Where the application finds each backend: the provisioned instance, or an
//! external one named inline or in a Secret.
//!
//! Pure: the Secrets the spec refers to are read beforehand (`referenced_secrets`)
//! and passed in as a lookup, so the controller and `render` share this code.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::builders::Environment;
use crate::builders::secret::{self as secrets, AppSettings, S3Settings};
use crate::crd::{DouyinEnvironmentSpec, ExternalUrlSpec};
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
    for (enabled, external) in [(spec.mysql.enabled, &spec.mysql.external), (spec.redis.enabled, &spec.redis.external)]
    {
        if let (true, Some(ExternalUrlSpec { url: None, secret_ref: Some(reference) })) = (enabled, external) {
            add(&reference.name);
        }
    }
    if let (true, Some(ExternalUrlSpec { url: None, secret_ref: Some(reference) })) =
        (spec.mysql.enabled, &spec.mysql.read_replica)
    {
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
                external_url(lookup, external, secrets::DATABASE_URL, &mut problems[Backend::Mysql as usize])
            }
        };
        settings.database_read_url = spec.mysql.read_replica.as_ref().and_then(|replica| {
            external_url(lookup, replica, secrets::DATABASE_READ_URL, &mut problems[Backend::Mysql as usize])
        });
    }
    if spec.redis.enabled {
        settings.redis_url = match &spec.redis.external {
            None => Some(secrets::provisioned_redis_url(e, credentials)),
            Some(external) => {
                external_url(lookup, external, secrets::REDIS_URL, &mut problems[Backend::Redis as usize])
            }
        };
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
    external: &ExternalUrlSpec,
    default_key: &str,
    problem: &mut Option<String>,
) -> Option<String> {
    if let Some(url) = &external.url {
        return Some(url.clone());
    }
    let reference = external.secret_ref.as_ref()?;
    let key = reference.key.as_deref().unwrap_or(default_key);
    let value = lookup.value(&reference.name, key);
    if value.is_none() {
        *problem = Some(format!("Secret {:?} has no key {key:?}", reference.name));
    }
    value
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ExternalS3Spec, SecretKeyRef, SecretNameRef};

    #[test]
    fn referenced_secrets_are_those_of_enabled_external_backends() {
        let mut spec = DouyinEnvironmentSpec::default();
        assert!(referenced_secrets(&spec).is_empty());
        spec.mysql.external =
            Some(ExternalUrlSpec { url: None, secret_ref: Some(SecretKeyRef { name: "shared".into(), key: None }) });
        spec.redis.external =
            Some(ExternalUrlSpec { url: None, secret_ref: Some(SecretKeyRef { name: "shared".into(), key: None }) });
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
}
