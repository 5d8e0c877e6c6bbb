//! Where the application finds each backend: the provisioned instance, or an
//! external one named inline or in a Secret.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::Result;
use crate::builders::Environment;
use crate::builders::secret::{self as secrets, AppSettings, S3Settings};
use crate::crd::ExternalUrlSpec;
use crate::credentials::Credentials;
use crate::names::Backend;

/// What the application's Secret holds, and per backend (in `Backend::ALL` order)
/// why an external instance's settings could not be read.
pub async fn app_settings(
    e: &Environment<'_>,
    credentials: &Credentials,
    secret_api: &Api<Secret>,
) -> Result<(AppSettings, [Option<String>; 3])> {
    let mut settings = AppSettings::default();
    let mut problems: [Option<String>; 3] = Default::default();
    let spec = e.spec;
    if spec.mysql.enabled {
        settings.database_url = match &spec.mysql.external {
            None => Some(secrets::provisioned_database_url(e, credentials)),
            Some(external) => {
                external_url(secret_api, external, secrets::DATABASE_URL, &mut problems[Backend::Mysql as usize])
                    .await?
            }
        };
    }
    if spec.redis.enabled {
        settings.redis_url = match &spec.redis.external {
            None => Some(secrets::provisioned_redis_url(e, credentials)),
            Some(external) => {
                external_url(secret_api, external, secrets::REDIS_URL, &mut problems[Backend::Redis as usize]).await?
            }
        };
    }
    if spec.minio.enabled {
        settings.s3 = match &spec.minio.external {
            None => Some(secrets::provisioned_s3(e, credentials)),
            Some(external) => {
                let name = &external.secret_ref.name;
                let found = secret_api.get_opt(name).await?;
                let key = |k: &str| found.as_ref().and_then(|s| secret_text(s, k));
                match (key(secrets::S3_ACCESS_KEY), key(secrets::S3_SECRET_KEY)) {
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
    Ok((settings, problems))
}

/// The URL of an external MySQL or Redis, inline or from a Secret.
async fn external_url(
    secret_api: &Api<Secret>,
    external: &ExternalUrlSpec,
    default_key: &str,
    problem: &mut Option<String>,
) -> Result<Option<String>> {
    if let Some(url) = &external.url {
        return Ok(Some(url.clone()));
    }
    let Some(reference) = &external.secret_ref else {
        return Ok(None);
    };
    let key = reference.key.as_deref().unwrap_or(default_key);
    let value = secret_api.get_opt(&reference.name).await?.and_then(|s| secret_text(&s, key));
    if value.is_none() {
        *problem = Some(format!("Secret {:?} has no key {key:?}", reference.name));
    }
    Ok(value)
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok().filter(|v| !v.is_empty())
}
