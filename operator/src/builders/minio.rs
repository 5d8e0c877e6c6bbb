//! MinIO: S3-compatible object storage, plus the Job that creates the bucket and
//! the application's own access key (so the application never holds root keys).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ContainerPort, EmptyDirVolumeSource, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Environment, PodPlan, container, container_security, plain_env, pod_security, probe, secret_env};
use crate::crd::StorageSpec;
use crate::credentials::{MINIO_ROOT_PASSWORD, MINIO_ROOT_USER, S3_ACCESS_KEY, S3_SECRET_KEY};
use crate::names::{self, Backend, LABEL_COMPONENT};

/// The MinIO images run as any user; this one owns the volume through `fsGroup`.
const MINIO_UID: i64 = 1000;

pub fn statefulset(env: &Environment, storage: &StorageSpec) -> StatefulSet {
    let spec = &env.spec.minio;
    let secret = env.credentials_secret();
    let mut container = container(Backend::Minio, &spec.image, &spec.resources);
    container.args =
        Some(["server", "/data", "--address", ":9000", "--console-address", ":9001"].map(String::from).to_vec());
    container.env = Some(vec![
        secret_env("MINIO_ROOT_USER", &secret, MINIO_ROOT_USER),
        secret_env("MINIO_ROOT_PASSWORD", &secret, MINIO_ROOT_PASSWORD),
        plain_env("MINIO_SITE_REGION", &spec.region),
    ]);
    if let Some(ports) = container.ports.as_mut() {
        ports.push(ContainerPort {
            name: Some("console".into()),
            container_port: 9001,
            protocol: Some("TCP".into()),
            ..Default::default()
        });
    }
    container.readiness_probe = Some(http_probe("/minio/health/ready", probe(5, 10, 3)));
    container.liveness_probe = Some(http_probe("/minio/health/live", probe(30, 20, 6)));
    super::statefulset(
        env,
        Backend::Minio,
        storage,
        PodPlan { container, replicas: spec.replicas, user: MINIO_UID, termination_grace_seconds: 30 },
    )
}

fn http_probe(path: &str, timings: Probe) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("s3".into()),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        ..timings
    }
}

/// Idempotent: safe to run again after a failure or against an existing bucket.
const BUCKET_SCRIPT: &str = r#"set -eu
until mc alias set env "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null; do
  echo "waiting for $MINIO_URL"; sleep 2
done
mc mb --ignore-existing --region "$BUCKET_REGION" "env/$BUCKET"
mc admin user add env "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
mc admin policy attach env readwrite --user "$S3_ACCESS_KEY" \
  || mc admin user info env "$S3_ACCESS_KEY" | grep -q readwrite
echo "bucket $BUCKET ready"
"#;

/// Creates the bucket and the application's access key. Created once the MinIO
/// StatefulSet is ready, and never updated (a Job's template is immutable).
pub fn bucket_job(env: &Environment) -> Job {
    let spec = &env.spec.minio;
    let secret = env.credentials_secret();
    let mut labels = Backend::Minio.labels(&env.name);
    labels.insert(LABEL_COMPONENT.into(), "bucket-setup".into());
    let minio_url = format!("http://{}:{}", Backend::Minio.host(&env.name, &env.namespace), Backend::Minio.port());
    let mut mc = super::container(Backend::Minio, &spec.client_image, &crate::crd::job_resources());
    mc.name = "mc".into();
    mc.ports = None;
    mc.command = Some(vec!["/bin/sh".into(), "-c".into(), BUCKET_SCRIPT.into()]);
    mc.env = Some(vec![
        plain_env("MINIO_URL", &minio_url),
        plain_env("BUCKET", &spec.bucket),
        plain_env("BUCKET_REGION", &spec.region),
        plain_env("MC_CONFIG_DIR", "/tmp/mc"),
        secret_env("MINIO_ROOT_USER", &secret, MINIO_ROOT_USER),
        secret_env("MINIO_ROOT_PASSWORD", &secret, MINIO_ROOT_PASSWORD),
        secret_env("S3_ACCESS_KEY", &secret, S3_ACCESS_KEY),
        secret_env("S3_SECRET_KEY", &secret, S3_SECRET_KEY),
    ]);
    mc.volume_mounts = Some(vec![VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() }]);
    mc.security_context = Some(container_security());
    Job {
        metadata: env.metadata(names::bucket_job(&env.name), labels.clone()),
        spec: Some(JobSpec {
            backoff_limit: Some(6),
            active_deadline_seconds: Some(600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("OnFailure".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(pod_security(MINIO_UID)),
                    containers: vec![mc],
                    volumes: Some(vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Whether the Job finished: `Some(true)` succeeded, `Some(false)` failed for good.
pub fn job_outcome(job: &Job) -> Option<bool> {
    let status = job.status.as_ref()?;
    if status.succeeded.unwrap_or(0) > 0 {
        return Some(true);
    }
    let failed = status.conditions.iter().flatten().any(|c| c.type_ == "Failed" && c.status == "True");
    failed.then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::tests::test_env;
    use crate::crd::DouyinEnvironmentSpec;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use std::collections::BTreeMap;

    /// The keys a pod template reads from `secret`.
    fn secret_keys_read(job: &Job, secret: &str) -> BTreeMap<String, String> {
        let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        pod.into_iter()
            .flat_map(|p| p.containers.iter())
            .flat_map(|c| c.env.iter().flatten())
            .filter_map(|v| {
                let selector = v.value_from.as_ref()?.secret_key_ref.as_ref()?;
                (selector.name == secret).then(|| (v.name.clone(), selector.key.clone()))
            })
            .collect()
    }

    #[test]
    fn serves_s3_with_http_health_probes() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let spec = statefulset(&e, &e.spec.minio.storage).spec.unwrap();
        let c = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("minio/minio:RELEASE.2025-04-22T22-12-26Z"));
        let ready = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(ready.path.as_deref(), Some("/minio/health/ready"));
        assert_eq!(c.ports.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn bucket_job_uses_the_pinned_client_and_the_generated_keys() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let job = bucket_job(&e);
        assert_eq!(job.metadata.name.as_deref(), Some("dev-minio-bucket"));
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.containers[0].image.as_deref(), Some("minio/mc:RELEASE.2025-04-16T18-13-26Z"));
        let keys = secret_keys_read(&job, "dev-douyin-credentials");
        assert_eq!(keys["S3_ACCESS_KEY"], S3_ACCESS_KEY);
        assert_eq!(keys["MINIO_ROOT_PASSWORD"], MINIO_ROOT_PASSWORD);
        let url = pod.containers[0].env.as_ref().unwrap().iter().find(|v| v.name == "MINIO_URL").unwrap();
        assert_eq!(url.value.as_deref(), Some("http://dev-minio.shop.svc:9000"));
    }

    #[test]
    fn job_outcome_reads_succeeded_and_failed() {
        let mut job = Job::default();
        assert_eq!(job_outcome(&job), None);
        job.status = Some(JobStatus { succeeded: Some(1), ..Default::default() });
        assert_eq!(job_outcome(&job), Some(true));
        job.status = Some(JobStatus {
            conditions: Some(vec![JobCondition {
                type_: "Failed".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(job_outcome(&job), Some(false));
    }
}
