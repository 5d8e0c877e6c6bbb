//! The reconciler against a fake API server: which requests it sends, in which
//! order, and what it leaves behind.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;

use crate::builders::secret as app_keys;
use crate::controller::{error_policy, reconcile};
use crate::crd::{DeletionPolicy, DouyinEnvironment, DouyinEnvironmentSpec, ExternalUrlSpec, Phase, SecretKeyRef};
use crate::fixtures::{
    FakeApiServer, NS, env_path, job_path, pvc_collection, secret_path, serve, service_path, sts_path,
};
use crate::names::FINALIZER;

fn environment(spec: DouyinEnvironmentSpec) -> DouyinEnvironment {
    let mut env = DouyinEnvironment::new("dev", spec);
    env.metadata.namespace = Some(NS.into());
    env.metadata.uid = Some("uid-dev".into());
    env.metadata.generation = Some(1);
    env
}

fn finalized(mut env: DouyinEnvironment) -> DouyinEnvironment {
    env.metadata.finalizers = Some(vec![FINALIZER.into()]);
    env
}

fn deleting(mut env: DouyinEnvironment) -> DouyinEnvironment {
    env.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    env
}

/// The requests a valid reconcile sends for one provisioned backend.
fn backend_requests(key: &str) -> Vec<String> {
    vec![
        format!("GET {}", sts_path(&format!("dev-{key}"))),
        format!("APPLY {}", service_path(&format!("dev-{key}-headless"))),
        format!("APPLY {}", service_path(&format!("dev-{key}"))),
        format!("APPLY {}", sts_path(&format!("dev-{key}"))),
    ]
}

/// A new environment: no credentials yet, so the claims are looked at first.
fn secret_requests() -> Vec<String> {
    vec![
        format!("GET {}", secret_path("dev-douyin-credentials")),
        format!("LIST {}", pvc_collection()),
        format!("APPLY {}", secret_path("dev-douyin-credentials")),
        format!("APPLY {}", secret_path("dev-douyin-backends")),
    ]
}

fn ready_statefulset(name: &str) -> StatefulSet {
    StatefulSet {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: None,
        status: Some(StatefulSetStatus { replicas: 1, ready_replicas: Some(1), ..Default::default() }),
    }
}

fn stored_env(server: &FakeApiServer) -> DouyinEnvironment {
    server.get(&env_path("dev")).expect("environment stored")
}

fn condition<'a>(env: &'a DouyinEnvironment, type_: &str) -> &'a Condition {
    let status = env.status.as_ref().expect("status written");
    status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition"))
}

fn secret_data(server: &FakeApiServer, name: &str) -> Vec<(String, String)> {
    let secret: Secret = server.get(&secret_path(name)).expect("secret stored");
    let data = secret.data.unwrap_or_default();
    data.into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect()
}

async fn reconcile_once(server: FakeApiServer, env: DouyinEnvironment) -> (Action, FakeApiServer) {
    let (result, server) = serve(server, |ctx| reconcile(Arc::new(env), ctx)).await;
    (result.expect("reconcile succeeds"), server)
}

#[tokio::test]
async fn a_new_environment_first_gets_the_finalizer() {
    let env = environment(DouyinEnvironmentSpec::default());
    let (action, server) = reconcile_once(FakeApiServer::with(&env), env).await;
    assert_eq!(server.requests, [format!("JSONPATCH {}", env_path("dev"))]);
    assert_eq!(action, Action::await_change());
    assert_eq!(stored_env(&server).metadata.finalizers, Some(vec![FINALIZER.to_string()]));
}

#[tokio::test]
async fn a_new_environment_gets_secrets_services_and_statefulsets() {
    let env = finalized(environment(DouyinEnvironmentSpec::default()));
    let (action, server) = reconcile_once(FakeApiServer::with(&env), env).await;

    let mut expected = secret_requests();
    for key in ["mysql", "redis", "minio"] {
        expected.extend(backend_requests(key));
    }
    expected.push(format!("APPLY {}/status", env_path("dev")));
    assert_eq!(server.requests, expected);
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));

    let keys: Vec<_> = secret_data(&server, "dev-douyin-backends").into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            app_keys::DATABASE_URL,
            app_keys::REDIS_URL,
            app_keys::S3_ACCESS_KEY,
            app_keys::S3_BUCKET,
            app_keys::S3_ENDPOINT,
            app_keys::S3_REGION,
            app_keys::S3_SECRET_KEY
        ]
    );
    let sts: StatefulSet = server.get(&sts_path("dev-mysql")).unwrap();
    assert_eq!(sts.metadata.owner_references.unwrap()[0].uid, "uid-dev");

    let stored = stored_env(&server);
    let status = stored.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.secret_name.as_deref(), Some("dev-douyin-backends"));
    assert_eq!(condition(&stored, "Ready").status, "False");
    assert_eq!(condition(&stored, "MysqlReady").reason, "Provisioning");
    assert_eq!(condition(&stored, "Degraded").status, "False");
    let reasons: Vec<_> = server.events.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["CredentialsGenerated"]);
    assert!(server.events[0]["note"].as_str().unwrap().contains("mysql, redis, minio"));
}

#[tokio::test]
async fn a_second_reconcile_keeps_the_secret_values() {
    let env = finalized(environment(DouyinEnvironmentSpec::default()));
    let (_, server) = reconcile_once(FakeApiServer::with(&env), env.clone()).await;
    let first_app = secret_data(&server, "dev-douyin-backends");
    let first_credentials = secret_data(&server, "dev-douyin-credentials");

    let (_, server) = reconcile_once(server, env).await;
    assert_eq!(secret_data(&server, "dev-douyin-backends"), first_app);
    assert_eq!(secret_data(&server, "dev-douyin-credentials"), first_credentials);
}

#[tokio::test]
async fn ready_statefulsets_flip_status_to_ready() {
    let env = finalized(environment(DouyinEnvironmentSpec::default()));
    let mut server = FakeApiServer::with(&env);
    for key in ["mysql", "redis", "minio"] {
        server.insert(sts_path(&format!("dev-{key}")), ready_statefulset(&format!("dev-{key}")));
    }
    let done = Job { status: Some(JobStatus { succeeded: Some(1), ..Default::default() }), ..Default::default() };
    server.insert(job_path("dev-minio-bucket"), done);

    let (action, server) = reconcile_once(server, env).await;
    assert_eq!(
        server.requests.iter().filter(|r| r.contains("/jobs/")).collect::<Vec<_>>(),
        [&format!("GET {}", job_path("dev-minio-bucket"))]
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let stored = stored_env(&server);
    assert_eq!(stored.status.as_ref().unwrap().phase, Some(Phase::Ready));
    for type_ in ["Ready", "MysqlReady", "RedisReady", "MinioReady"] {
        assert_eq!(condition(&stored, type_).status, "True", "{type_}");
    }
}

#[tokio::test]
async fn a_ready_minio_gets_its_bucket_job_once() {
    let env = finalized(environment(DouyinEnvironmentSpec::default()));
    let mut server = FakeApiServer::with(&env);
    server.insert(sts_path("dev-minio"), ready_statefulset("dev-minio"));

    let (_, server) = reconcile_once(server, env.clone()).await;
    let job_requests: Vec<_> = server.requests.iter().filter(|r| r.contains("/jobs/")).cloned().collect();
    assert_eq!(
        job_requests,
        [format!("GET {}", job_path("dev-minio-bucket")), format!("APPLY {}", job_path("dev-minio-bucket"))]
    );
    assert_eq!(condition(&stored_env(&server), "MinioReady").reason, "CreatingBucket");

    let (_, server) = reconcile_once(FakeApiServer { requests: vec![], ..server }, env).await;
    let job_requests: Vec<_> = server.requests.iter().filter(|r| r.contains("/jobs/")).collect();
    assert_eq!(job_requests, [&format!("GET {}", job_path("dev-minio-bucket"))]);
}

#[tokio::test]
async fn a_storage_change_is_reported_not_applied() {
    let env = finalized(environment(DouyinEnvironmentSpec::default()));
    let (_, server) = reconcile_once(FakeApiServer::with(&env), env.clone()).await;

    let mut bigger = env.clone();
    bigger.spec.mysql.storage.size = "50Gi".into();
    bigger.metadata.generation = Some(2);
    let (_, server) = reconcile_once(server, bigger).await;

    let sts: StatefulSet = server.get(&sts_path("dev-mysql")).unwrap();
    let template = &sts.spec.unwrap().volume_claim_templates.unwrap()[0];
    let size = &template.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"];
    assert_eq!(size.0, "10Gi");
    let stored = stored_env(&server);
    let degraded = condition(&stored, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "StorageChangeRejected"));
    assert!(degraded.message.contains("50Gi"), "{}", degraded.message);
    assert_eq!(degraded.observed_generation, Some(2));
}

#[tokio::test]
async fn an_invalid_spec_sets_degraded_instead_of_failing() {
    let mut spec = DouyinEnvironmentSpec::default();
    spec.redis.image = "redis:latest".into();
    let env = finalized(environment(spec));
    let (action, server) = reconcile_once(FakeApiServer::with(&env), env).await;

    assert_eq!(server.requests, [format!("APPLY {}/status", env_path("dev"))]);
    assert_eq!(action, Action::await_change());
    let stored = stored_env(&server);
    assert_eq!(stored.status.as_ref().unwrap().phase, Some(Phase::Degraded));
    let degraded = condition(&stored, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "UnpinnedImage"));
    assert_eq!(condition(&stored, "Ready").reason, "InvalidSpec");
    let event = &server.events[..];
    assert_eq!(event.len(), 1, "{event:?}");
    assert_eq!((event[0]["type"].as_str(), event[0]["reason"].as_str()), (Some("Warning"), Some("UnpinnedImage")));
    assert!(event[0]["note"].as_str().unwrap().contains("spec.redis.image"));
}

#[tokio::test]
async fn an_external_database_comes_from_its_secret() {
    let mut spec = DouyinEnvironmentSpec::default();
    spec.mysql.external = Some(ExternalUrlSpec {
        url: None,
        secret_ref: Some(SecretKeyRef { name: "shared-db".into(), key: Some("url".into()) }),
    });
    let env = finalized(environment(spec));
    let mut server = FakeApiServer::with(&env);
    let external = Secret {
        data: Some(
            [("url".to_string(), k8s_openapi::ByteString(b"mysql://app:pw@db.shared:3306/douyin".to_vec()))].into(),
        ),
        ..Default::default()
    };
    server.insert(secret_path("shared-db"), external);

    let (_, server) = reconcile_once(server, env).await;
    assert!(server.requests.contains(&format!("GET {}", secret_path("shared-db"))));
    assert!(!server.requests.contains(&format!("APPLY {}", sts_path("dev-mysql"))));
    let data = secret_data(&server, "dev-douyin-backends");
    assert!(data.contains(&(app_keys::DATABASE_URL.into(), "mysql://app:pw@db.shared:3306/douyin".into())));
    assert_eq!(condition(&stored_env(&server), "MysqlReady").reason, "External");
}

#[tokio::test]
async fn deletion_with_delete_policy_removes_the_volume_claims() {
    let spec = DouyinEnvironmentSpec { deletion_policy: DeletionPolicy::Delete, ..Default::default() };
    let env = deleting(finalized(environment(spec)));
    let (action, server) = reconcile_once(FakeApiServer::with(&env), env).await;
    assert_eq!(server.requests, [format!("DELETE {}", pvc_collection()), format!("JSONPATCH {}", env_path("dev")),]);
    assert_eq!(action, Action::await_change());
    assert_eq!(stored_env(&server).metadata.finalizers, Some(vec![]));
}

#[tokio::test]
async fn deletion_with_retain_policy_keeps_the_credentials() {
    let env = finalized(environment(DouyinEnvironmentSpec::default()));
    let (_, server) = reconcile_once(FakeApiServer::with(&env), env.clone()).await;
    let credentials = secret_data(&server, "dev-douyin-credentials");

    let server = FakeApiServer { requests: vec![], ..server };
    let (_, server) = reconcile_once(server, deleting(env)).await;
    assert_eq!(
        server.requests,
        [format!("MERGE {}", secret_path("dev-douyin-credentials")), format!("JSONPATCH {}", env_path("dev"))]
    );
    let kept: Secret = server.get(&secret_path("dev-douyin-credentials")).unwrap();
    assert_eq!(kept.metadata.owner_references, None);
    assert_eq!(secret_data(&server, "dev-douyin-credentials"), credentials);
}

#[tokio::test]
async fn api_errors_back_off_exponentially() {
    let env = Arc::new(finalized(environment(DouyinEnvironmentSpec::default())));
    let server = FakeApiServer { fail_everything: true, ..FakeApiServer::with(&env) };
    let (actions, server) = serve(server, |ctx| async move {
        let mut actions = Vec::new();
        for _ in 0..3 {
            let error = reconcile(env.clone(), ctx.clone()).await.expect_err("the API fails");
            actions.push(error_policy(env.clone(), &error, ctx.clone()));
        }
        actions
    })
    .await;
    let expected: Vec<_> = [5, 10, 20].map(|s| Action::requeue(Duration::from_secs(s))).into();
    assert_eq!(actions, expected);
    assert_eq!(server.requests.len(), 3, "each attempt stops at the first failure");
}
