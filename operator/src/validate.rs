//! Checks of a spec that the schema cannot express. A spec that fails them is
//! reported in status (condition `Degraded`) and nothing is applied until it changes.

use crate::crd::{DouyinEnvironmentSpec, ExternalRedisSpec, MAX_CLUSTER_NODES, SecretKeyRef, StorageSpec};
use crate::names::{self, Backend};
use crate::quantity;

/// Why a spec was refused: a CamelCase reason for the condition and a message
/// naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSpec {
    pub reason: &'static str,
    pub message: String,
}

/// Every problem with the spec, the first one's reason leading.
pub fn validate(env_name: &str, spec: &DouyinEnvironmentSpec) -> Result<(), InvalidSpec> {
    let mut problems: Vec<(&'static str, String)> = Vec::new();

    if let Some(name) = &spec.secret_name {
        if !is_dns_subdomain(name) {
            problems.push(("InvalidSecretName", format!("spec.secretName {name:?} is not a valid Secret name")));
        } else if *name == names::credentials_secret(env_name) {
            problems.push((
                "InvalidSecretName",
                format!("spec.secretName {name:?} is the operator's own credentials Secret"),
            ));
        }
    }

    let mysql = &spec.mysql;
    check_backend(&mut problems, Backend::Mysql, mysql.enabled, mysql.external.is_some(), mysql.replicas);
    if let Some(replica) = &mysql.read_replica {
        if mysql.enabled {
            check_url_source(&mut problems, "spec.mysql.readReplica", &replica.url, &replica.secret_ref, &["mysql"]);
        } else {
            problems
                .push(("InvalidReadReplica", "spec.mysql.readReplica is set but spec.mysql.enabled is false".into()));
        }
    }
    if mysql.enabled {
        match &mysql.external {
            Some(external) => {
                check_url_source(&mut problems, "spec.mysql.external", &external.url, &external.secret_ref, &["mysql"])
            }
            None => {
                check_image(&mut problems, "spec.mysql.image", &mysql.image);
                check_storage(&mut problems, "spec.mysql.storage", &mysql.storage);
            }
        }
    }

    let redis = &spec.redis;
    check_backend(&mut problems, Backend::Redis, redis.enabled, redis.external.is_some(), redis.replicas);
    if redis.enabled {
        match &redis.external {
            Some(external) => check_external_redis(&mut problems, external),
            None => {
                check_image(&mut problems, "spec.redis.image", &redis.image);
                check_storage(&mut problems, "spec.redis.storage", &redis.storage);
            }
        }
    }

    let minio = &spec.minio;
    check_backend(&mut problems, Backend::Minio, minio.enabled, minio.external.is_some(), minio.replicas);
    if minio.enabled {
        if !is_bucket_name(&minio.bucket) {
            problems
                .push(("InvalidBucket", format!("spec.minio.bucket {:?} is not a valid S3 bucket name", minio.bucket)));
        }
        if minio.region.trim().is_empty() {
            problems.push(("InvalidRegion", "spec.minio.region is empty".into()));
        }
        match &minio.external {
            Some(external) => {
                if scheme(&external.url).is_none_or(|s| s != "http" && s != "https") {
                    problems.push((
                        "InvalidExternal",
                        format!("spec.minio.external.url {:?} is not an http(s) URL", external.url),
                    ));
                }
                if !is_dns_subdomain(&external.secret_ref.name) {
                    problems
                        .push(("InvalidExternal", "spec.minio.external.secretRef.name is not a Secret name".into()));
                }
            }
            None => {
                check_image(&mut problems, "spec.minio.image", &minio.image);
                check_image(&mut problems, "spec.minio.clientImage", &minio.client_image);
                check_storage(&mut problems, "spec.minio.storage", &minio.storage);
            }
        }
    }

    match problems.first() {
        None => Ok(()),
        Some((reason, _)) => Err(InvalidSpec {
            reason,
            message: problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; "),
        }),
    }
}

fn check_backend(
    problems: &mut Vec<(&'static str, String)>,
    backend: Backend,
    enabled: bool,
    external: bool,
    replicas: i32,
) {
    let key = backend.key();
    if !enabled && external {
        problems.push(("InvalidExternal", format!("spec.{key}.external is set but spec.{key}.enabled is false")));
    }
    if !(0..=1).contains(&replicas) {
        problems.push(("InvalidReplicas", format!("spec.{key}.replicas must be 0 or 1, not {replicas}")));
    }
}

/// An external backend or replica named by exactly one of `url` (with one of
/// `schemes`) and `secretRef`.
fn check_url_source(
    problems: &mut Vec<(&'static str, String)>,
    field: &str,
    url: &Option<String>,
    secret_ref: &Option<SecretKeyRef>,
    schemes: &[&str],
) {
    let reason = if field.ends_with("readReplica") { "InvalidReadReplica" } else { "InvalidExternal" };
    match (url, secret_ref) {
        (Some(_), Some(_)) | (None, None) => {
            problems.push((reason, format!("{field} needs exactly one of url and secretRef")))
        }
        (Some(url), None) => {
            if !scheme(url).is_some_and(|s| schemes.contains(&s)) {
                problems.push((reason, format!("{field}.url must start with {}://", schemes.join(":// or "))));
            }
        }
        (None, Some(reference)) => {
            if !is_dns_subdomain(&reference.name) {
                problems.push((reason, format!("{field}.secretRef.name is not a Secret name")));
            }
        }
    }
}

/// An external Redis: one URL, a Secret key, or a Redis Cluster's nodes.
fn check_external_redis(problems: &mut Vec<(&'static str, String)>, external: &ExternalRedisSpec) {
    let field = "spec.redis.external";
    let forms = [external.url.is_some(), external.secret_ref.is_some(), external.cluster_nodes.is_some()];
    if forms.iter().filter(|set| **set).count() != 1 {
        problems.push(("InvalidExternal", format!("{field} needs exactly one of url, secretRef and clusterNodes")));
        return;
    }
    if external.cluster && external.secret_ref.is_none() {
        problems.push((
            "InvalidExternal",
            format!("{field}.cluster reads the node list from secretRef; set secretRef, or list clusterNodes without cluster"),
        ));
    }
    if let Some(nodes) = &external.cluster_nodes {
        if !(1..=MAX_CLUSTER_NODES).contains(&nodes.len()) {
            problems.push(("InvalidExternal", format!("{field}.clusterNodes lists 1 to {MAX_CLUSTER_NODES} nodes")));
        }
        if !nodes.iter().all(|n| scheme(n).is_some_and(|s| s == "redis" || s == "rediss")) {
            problems.push((
                "InvalidExternal",
                format!("{field}.clusterNodes: every node must start with redis:// or rediss://"),
            ));
        }
        if nodes.iter().any(|n| n.contains(|c: char| c == ',' || c.is_whitespace())) {
            problems.push((
                "InvalidExternal",
                format!("{field}.clusterNodes: a node is one URL, without commas or spaces"),
            ));
        }
        return;
    }
    check_url_source(problems, field, &external.url, &external.secret_ref, &["redis", "rediss"]);
}

fn check_image(problems: &mut Vec<(&'static str, String)>, field: &str, image: &str) {
    if !is_pinned(image) {
        problems.push(("UnpinnedImage", format!("{field} {image:?} must name a tag other than latest, or a digest")));
    }
}

fn check_storage(problems: &mut Vec<(&'static str, String)>, field: &str, storage: &StorageSpec) {
    if !quantity::parse(&storage.size).is_some_and(|bytes| bytes >= 1.0) {
        problems.push(("InvalidStorageSize", format!("{field}.size {:?} is not a positive size", storage.size)));
    }
    if let Some(class) = &storage.storage_class_name
        && !is_dns_subdomain(class)
    {
        problems.push(("InvalidStorageClass", format!("{field}.storageClassName {class:?} is not a valid name")));
    }
}

/// An image reference with a digest, or a tag other than `latest`.
pub fn is_pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((repo, tag)) => !repo.is_empty() && !tag.is_empty() && tag != "latest",
        None => false,
    }
}

fn scheme(url: &str) -> Option<&str> {
    url.split_once("://").map(|(scheme, _)| scheme).filter(|s| !s.is_empty())
}

/// RFC 1123 subdomain, as Kubernetes requires of object names.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ExternalRedisSpec, ExternalS3Spec, ExternalUrlSpec, SecretNameRef};
    use serde::Deserialize;

    #[test]
    fn the_default_spec_is_valid() {
        assert_eq!(validate("dev", &DouyinEnvironmentSpec::default()), Ok(()));
    }

    #[test]
    fn images_must_be_pinned() {
        assert!(is_pinned("mariadb:11.4.4"));
        assert!(is_pinned("registry.local:5000/redis:7.4.2"));
        assert!(is_pinned("redis@sha256:0123abcd"));
        assert!(!is_pinned("mariadb"));
        assert!(!is_pinned("mariadb:latest"));
        assert!(!is_pinned("registry.local:5000/redis"));

        let mut spec = DouyinEnvironmentSpec::default();
        spec.redis.image = "redis:latest".into();
        let err = validate("dev", &spec).unwrap_err();
        assert_eq!(err.reason, "UnpinnedImage");
        assert!(err.message.contains("spec.redis.image"), "{}", err.message);
    }

    #[test]
    fn external_needs_exactly_one_source() {
        let mut spec = DouyinEnvironmentSpec::default();
        spec.mysql.external = Some(ExternalUrlSpec {
            url: Some("mysql://u:p@db:3306/douyin".into()),
            secret_ref: Some(SecretKeyRef { name: "db".into(), key: None }),
        });
        assert_eq!(validate("dev", &spec).unwrap_err().reason, "InvalidExternal");

        spec.mysql.external = Some(ExternalUrlSpec { url: Some("postgres://db/douyin".into()), secret_ref: None });
        assert_eq!(validate("dev", &spec).unwrap_err().reason, "InvalidExternal");

        spec.mysql.external =
            Some(ExternalUrlSpec { url: Some("mysql://u:p@db:3306/douyin".into()), secret_ref: None });
        assert_eq!(validate("dev", &spec), Ok(()));
    }

    #[test]
    fn external_on_a_disabled_backend_is_a_contradiction() {
        let mut spec = DouyinEnvironmentSpec::default();
        spec.minio.enabled = false;
        spec.minio.external =
            Some(ExternalS3Spec { url: "https://s3.example".into(), secret_ref: SecretNameRef { name: "s3".into() } });
        let err = validate("dev", &spec).unwrap_err();
        assert_eq!(err.reason, "InvalidExternal");
        assert!(err.message.contains("spec.minio.enabled is false"));
    }

    #[test]
    fn every_problem_is_listed() {
        let mut spec = DouyinEnvironmentSpec::default();
        spec.mysql.storage.size = "lots".into();
        spec.redis.replicas = 3;
        spec.secret_name = Some("Not_A_Name".into());
        let err = validate("dev", &spec).unwrap_err();
        assert_eq!(err.reason, "InvalidSecretName");
        assert!(err.message.contains("spec.mysql.storage.size"));
        assert!(err.message.contains("spec.redis.replicas"));
    }

    #[test]
    fn the_credentials_secret_name_is_reserved() {
        let spec = DouyinEnvironmentSpec { secret_name: Some("dev-douyin-credentials".into()), ..Default::default() };
        assert_eq!(validate("dev", &spec).unwrap_err().reason, "InvalidSecretName");
    }

    #[test]
    fn disabled_backends_are_not_checked_further() {
        let mut spec = DouyinEnvironmentSpec::default();
        spec.redis.enabled = false;
        spec.redis.image = "redis".into();
        assert_eq!(validate("dev", &spec), Ok(()));
    }

    #[test]
    fn the_example_environments_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("k8s/examples exists") {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for document in serde_yaml::Deserializer::from_str(&text) {
                let value = serde_yaml::Value::deserialize(document).unwrap();
                if value.get("kind").and_then(|k| k.as_str()) != Some("DouyinEnvironment") {
                    continue;
                }
                let env: crate::DouyinEnvironment = serde_yaml::from_value(value).unwrap();
                let name = env.metadata.name.clone().unwrap();
                assert_eq!(validate(&name, &env.spec), Ok(()), "{}", path.display());
                checked += 1;
            }
        }
        assert!(checked > 0, "no DouyinEnvironment in {}", dir.display());
    }

    fn cluster(nodes: &[&str]) -> Option<ExternalRedisSpec> {
        Some(ExternalRedisSpec {
            cluster_nodes: Some(nodes.iter().map(|n| n.to_string()).collect()),
            ..Default::default()
        })
    }

    #[test]
    fn an_external_redis_cluster_lists_its_nodes() {
        let mut spec = DouyinEnvironmentSpec::default();
        spec.redis.external = cluster(&["redis://c0:6379", "rediss://c1:6380"]);
        assert_eq!(validate("dev", &spec), Ok(()));

        for (nodes, expected) in [
            (&[][..], "clusterNodes lists 1 to 64 nodes"),
            (&["redis://c0:6379", "c1:6379"][..], "every node must start with redis:// or rediss://"),
            (&["redis://c0:6379,redis://c1:6379"][..], "without commas or spaces"),
        ] {
            spec.redis.external = cluster(nodes);
            let err = validate("dev", &spec).unwrap_err();
            assert_eq!(err.reason, "InvalidExternal");
            assert!(err.message.contains(expected), "{nodes:?}: {}", err.message);
        }
        let many: Vec<String> = (0..=MAX_CLUSTER_NODES).map(|i| format!("redis://c{i}:6379")).collect();
        spec.redis.external = cluster(&many.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(validate("dev", &spec).unwrap_err().message.contains("1 to 64"));
    }

    #[test]
    fn an_external_redis_is_one_of_url_secret_and_nodes() {
        let mut spec = DouyinEnvironmentSpec::default();
        let secret_ref = Some(SecretKeyRef { name: "cache".into(), key: None });
        spec.redis.external =
            Some(ExternalRedisSpec { url: Some("redis://one:6379".into()), ..cluster(&["redis://c0:6379"]).unwrap() });
        assert!(validate("dev", &spec).unwrap_err().message.contains("exactly one of url, secretRef and clusterNodes"));
        spec.redis.external = Some(ExternalRedisSpec::default());
        assert!(validate("dev", &spec).unwrap_err().message.contains("exactly one of url, secretRef and clusterNodes"));
        spec.redis.external = Some(ExternalRedisSpec { cluster: true, ..cluster(&["redis://c0:6379"]).unwrap() });
        assert!(validate("dev", &spec).unwrap_err().message.contains("cluster reads the node list from secretRef"));
        spec.redis.external =
            Some(ExternalRedisSpec { cluster: true, secret_ref: secret_ref.clone(), ..Default::default() });
        assert_eq!(validate("dev", &spec), Ok(()));
        spec.redis.external = Some(ExternalRedisSpec { secret_ref, ..Default::default() });
        assert_eq!(validate("dev", &spec), Ok(()));
        spec.redis.external = Some(ExternalRedisSpec { url: Some("http://one:6379".into()), ..Default::default() });
        assert!(
            validate("dev", &spec).unwrap_err().message.contains("spec.redis.external.url must start with redis://")
        );
    }

    #[test]
    fn a_read_replica_is_a_mysql_url_of_an_enabled_database() {
        let mut spec = DouyinEnvironmentSpec::default();
        spec.mysql.read_replica =
            Some(ExternalUrlSpec { url: Some("mysql://u:p@r:3306/douyin".into()), secret_ref: None });
        assert_eq!(validate("dev", &spec), Ok(()));
        spec.mysql.read_replica = Some(ExternalUrlSpec { url: Some("postgres://r/douyin".into()), secret_ref: None });
        let err = validate("dev", &spec).unwrap_err();
        assert_eq!(err.reason, "InvalidReadReplica");
        assert!(err.message.contains("spec.mysql.readReplica.url must start with mysql://"), "{}", err.message);
        spec.mysql.read_replica = Some(ExternalUrlSpec::default());
        assert!(validate("dev", &spec).unwrap_err().message.contains("spec.mysql.readReplica needs exactly one"));
        spec.mysql.read_replica =
            Some(ExternalUrlSpec { url: Some("mysql://u:p@r:3306/douyin".into()), secret_ref: None });
        spec.mysql.enabled = false;
        let err = validate("dev", &spec).unwrap_err();
        assert!(
            err.message.contains("spec.mysql.readReplica is set but spec.mysql.enabled is false"),
            "{}",
            err.message
        );
    }
}
