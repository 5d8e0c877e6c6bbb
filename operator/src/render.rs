//! `douyin-operator render`: every object the operator would create for an
//! environment, as a YAML stream, without a cluster (GitOps review, `kubectl diff`).
//!
//! The objects come from the builders the controller applies. What only the
//! cluster knows is replaced by values that say so:
//! - generated credentials are `GENERATED-<key>` (the operator generates the real
//!   ones once and keeps them; `--secrets omit` leaves both Secrets out);
//! - values read from a Secret the spec names (external backends) are
//!   `FROM-SECRET-<secret>.<key>`;
//! - the owner reference's uid is the resource's `metadata.uid` when the input has
//!   one (`kubectl get denv dev -o yaml | douyin-operator render -f -`), else
//!   [`PLACEHOLDER_UID`].
//!
//! Volume claim templates use the spec's storage (the controller keeps an existing
//! StatefulSet's), and MinIO's bucket Job is included (the controller creates it
//! once MinIO is ready).

use serde::Deserialize;
use serde_json::Value;

use crate::backends::backend_objects;
use crate::builders::secret as secrets;
use crate::builders::{Environment, minio};
use crate::crd::DouyinEnvironment;
use crate::credentials::Credentials;
use crate::names::Backend;
use crate::settings::{self, SecretLookup};
use crate::validate;

pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// What to do with the two Secrets, whose contents only the cluster knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SecretsMode {
    /// Print them with placeholder values.
    #[default]
    Placeholder,
    /// Leave them out (e.g. for `kubectl diff`, which would show every value).
    Omit,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot parse the input as YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("document {index}: not a valid DouyinEnvironment: {source}")]
    NotAnEnvironment { index: usize, source: serde_yaml::Error },
    #[error("the input holds no DouyinEnvironment (apiVersion douyin.rs/v1alpha1)")]
    NoEnvironment,
    #[error("DouyinEnvironment {name:?} has no metadata.namespace; set it or pass --namespace")]
    NoNamespace { name: String },
    #[error("DouyinEnvironment {name:?} has no metadata.name")]
    NoName { name: String },
    #[error("DouyinEnvironment {name:?} would be refused ({reason}): {message}")]
    Invalid { name: String, reason: &'static str, message: String },
}

struct FromSecret;

impl SecretLookup for FromSecret {
    fn value(&self, secret: &str, key: &str) -> Option<String> {
        Some(format!("FROM-SECRET-{secret}.{key}"))
    }
}

/// The DouyinEnvironments of a YAML stream (other kinds are skipped), with the
/// namespace filled in from `namespace` where the document has none.
pub fn parse(text: &str, namespace: Option<&str>) -> Result<Vec<DouyinEnvironment>, RenderError> {
    let mut found = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(document)?;
        let is_env = value.get("kind").and_then(|k| k.as_str()) == Some("DouyinEnvironment")
            && value.get("apiVersion").and_then(|k| k.as_str()) == Some("douyin.rs/v1alpha1");
        if !is_env {
            continue;
        }
        let mut env: DouyinEnvironment =
            serde_yaml::from_value(value).map_err(|source| RenderError::NotAnEnvironment { index, source })?;
        let name = env.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(RenderError::NoName { name });
        }
        if env.metadata.namespace.as_deref().unwrap_or_default().is_empty() {
            match namespace {
                Some(ns) => env.metadata.namespace = Some(ns.into()),
                None => return Err(RenderError::NoNamespace { name }),
            }
        }
        found.push(env);
    }
    if found.is_empty() {
        return Err(RenderError::NoEnvironment);
    }
    Ok(found)
}

/// Every object the operator creates for `env`, in the order it applies them.
pub fn objects(env: &DouyinEnvironment, mode: SecretsMode) -> Result<Vec<Value>, RenderError> {
    let mut env = env.clone();
    let name = env.metadata.name.clone().unwrap_or_default();
    if let Err(invalid) = validate::validate(&name, &env.spec) {
        return Err(RenderError::Invalid { name, reason: invalid.reason, message: invalid.message });
    }
    if env.metadata.uid.as_deref().unwrap_or_default().is_empty() {
        env.metadata.uid = Some(PLACEHOLDER_UID.into());
    }
    let e = Environment::new(&env).map_err(|_| RenderError::NoNamespace { name: name.clone() })?;
    let mut out = Vec::new();
    let credentials = Credentials::placeholders();
    if mode == SecretsMode::Placeholder {
        let (settings, _) = settings::app_settings(&e, &credentials, &FromSecret);
        out.push(json(&secrets::credentials_secret(&e, &credentials)));
        out.push(json(&secrets::app_secret(&e, &settings)));
    }
    for backend in Backend::ALL {
        let spec = e.spec.backend(backend);
        if !spec.enabled || spec.external {
            continue;
        }
        let objects = backend_objects(&e, backend, spec.storage);
        for service in &objects.services {
            out.push(json(service));
        }
        out.push(json(&objects.statefulset));
        if backend == Backend::Minio {
            out.push(json(&minio::bucket_job(&e)));
        }
    }
    Ok(out)
}

/// The objects as one YAML stream, each document introduced by `---`.
pub fn to_yaml(env: &DouyinEnvironment, objects: &[Value]) -> Result<String, RenderError> {
    let mut text = format!(
        "# Objects the douyin-operator creates for DouyinEnvironment {}/{}.\n\
         # GENERATED-* values stand for credentials the operator generates once in the cluster;\n\
         # FROM-SECRET-<secret>.<key> for values it reads from a Secret the spec names.\n",
        env.metadata.namespace.as_deref().unwrap_or_default(),
        env.metadata.name.as_deref().unwrap_or_default(),
    );
    for object in objects {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(object)?);
    }
    Ok(text)
}

/// Any Kubernetes object the builders return, as JSON.
fn json<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("Kubernetes objects serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;

    const DEV: &str = include_str!("../../k8s/examples/dev-environment.yaml");
    const STAGING: &str = include_str!("../../k8s/examples/staging-external.yaml");

    fn kinds_and_names(objects: &[Value]) -> Vec<String> {
        objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
            .collect()
    }

    #[test]
    fn the_dev_example_renders_every_backend() {
        let envs = parse(DEV, None).unwrap();
        let objects = objects(&envs[0], SecretsMode::Placeholder).unwrap();
        assert_eq!(
            kinds_and_names(&objects),
            [
                "Secret/dev-douyin-credentials",
                "Secret/dev-douyin-backends",
                "Service/dev-mysql-headless",
                "Service/dev-mysql",
                "StatefulSet/dev-mysql",
                "Service/dev-redis-headless",
                "Service/dev-redis",
                "StatefulSet/dev-redis",
                "Service/dev-minio-headless",
                "Service/dev-minio",
                "StatefulSet/dev-minio",
                "Job/dev-minio-bucket",
            ]
        );
        for object in &objects {
            assert_eq!(object["metadata"]["namespace"], "douyin");
            assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], PLACEHOLDER_UID);
            assert!(object["apiVersion"].is_string());
        }
    }

    #[test]
    fn secrets_carry_placeholders_never_real_values() {
        let envs = parse(DEV, None).unwrap();
        let objects = objects(&envs[0], SecretsMode::Placeholder).unwrap();
        let app: k8s_openapi::api::core::v1::Secret = serde_json::from_value(objects[1].clone()).unwrap();
        let url = String::from_utf8(app.data.unwrap()[secrets::DATABASE_URL].0.clone()).unwrap();
        assert_eq!(url, "mysql://douyin:GENERATED-mysql-password@dev-mysql.douyin.svc:3306/douyin");
        let omitted = super::objects(&envs[0], SecretsMode::Omit).unwrap();
        assert!(omitted.iter().all(|o| o["kind"] != "Secret"));
    }

    #[test]
    fn external_values_name_their_secret() {
        let envs = parse(STAGING, None).unwrap();
        let objects = objects(&envs[0], SecretsMode::Placeholder).unwrap();
        let names = kinds_and_names(&objects);
        assert!(!names.iter().any(|n| n.contains("mysql")), "{names:?}");
        let app: k8s_openapi::api::core::v1::Secret = serde_json::from_value(objects[1].clone()).unwrap();
        let url = String::from_utf8(app.data.unwrap()[secrets::DATABASE_URL].0.clone()).unwrap();
        assert_eq!(url, "FROM-SECRET-staging-db.DOUYIN_DATABASE_URL");
    }

    #[test]
    fn an_external_redis_cluster_renders_its_nodes_and_no_redis() {
        let text = "apiVersion: douyin.rs/v1alpha1\nkind: DouyinEnvironment\nmetadata: {name: big, namespace: x}\nspec:\n  redis:\n    external:\n      clusterNodes: [redis://c0:6379, redis://c1:6379]\n";
        let envs = parse(text, None).unwrap();
        let objects = objects(&envs[0], SecretsMode::Placeholder).unwrap();
        assert!(!kinds_and_names(&objects).iter().any(|n| n.contains("redis")));
        let app: k8s_openapi::api::core::v1::Secret = serde_json::from_value(objects[1].clone()).unwrap();
        let data = app.data.unwrap();
        assert_eq!(data[secrets::REDIS_CLUSTER_NODES].0, b"redis://c0:6379,redis://c1:6379");
        assert!(!data.contains_key(secrets::REDIS_URL));
    }

    #[test]
    fn the_input_uid_and_namespace_flag_are_used() {
        let text = "apiVersion: douyin.rs/v1alpha1\nkind: DouyinEnvironment\nmetadata:\n  name: pr-7\n  uid: abc-123\nspec: {}\n";
        assert!(matches!(parse(text, None), Err(RenderError::NoNamespace { .. })));
        let envs = parse(text, Some("previews")).unwrap();
        let objects = objects(&envs[0], SecretsMode::Omit).unwrap();
        assert_eq!(objects[0]["metadata"]["namespace"], "previews");
        assert_eq!(objects[0]["metadata"]["ownerReferences"][0]["uid"], "abc-123");
        assert_eq!(objects[0]["metadata"]["labels"][names::LABEL_INSTANCE], "pr-7");
    }

    #[test]
    fn an_invalid_spec_is_refused_like_the_controller_refuses_it() {
        let text = "apiVersion: douyin.rs/v1alpha1\nkind: DouyinEnvironment\nmetadata: {name: dev, namespace: x}\nspec:\n  redis: {image: redis}\n";
        let envs = parse(text, None).unwrap();
        match objects(&envs[0], SecretsMode::Placeholder) {
            Err(RenderError::Invalid { reason, .. }) => assert_eq!(reason, "UnpinnedImage"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(matches!(parse("kind: Secret\napiVersion: v1\n", None), Err(RenderError::NoEnvironment)));
    }

    #[test]
    fn the_stream_parses_back_into_the_same_objects() {
        let envs = parse(DEV, None).unwrap();
        let objects = objects(&envs[0], SecretsMode::Placeholder).unwrap();
        let text = to_yaml(&envs[0], &objects).unwrap();
        let back: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
            .collect();
        assert_eq!(back, objects);
    }
}
