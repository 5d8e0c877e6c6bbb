//! Data safety against the fake API server: credentials are never regenerated
//! while their data exists, and disabling a backend never deletes its claims.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::controller::Action;
use serde_json::Value;

use crate::controller::{error_policy, reconcile};
use crate::crd::{DeletionPolicy, DouyinEnvironment, DouyinEnvironmentSpec, Phase};
use crate::fixtures::{FakeApiServer, NS, env_path, pvc_collection, pvc_path, secret_path, serve, sts_path};
use crate::names::{Backend, FINALIZER};

fn environment(spec: DouyinEnvironmentSpec) -> DouyinEnvironment {
    let mut env = DouyinEnvironment::new("dev", spec);
    env.metadata.namespace = Some(NS.into());
    env.metadata.uid = Some("uid-dev".into());
    env.metadata.generation = Some(1);
    env.metadata.finalizers = Some(vec![FINALIZER.into()]);
    env
}

async fn reconcile_once(server: FakeApiServer, env: DouyinEnvironment) -> (Action, FakeApiServer) {
    let (result, server) = serve(server, |ctx| reconcile(Arc::new(env), ctx)).await;
    (result.expect("reconcile succeeds"), server)
}

/// A fresh request log, same objects.
fn again(server: FakeApiServer) -> FakeApiServer {
    FakeApiServer { requests: vec![], events: vec![], calls: vec![], ..server }
}

/// The claim the StatefulSet controller makes for a backend's pod 0.
fn claim(backend: Backend, owner_uid: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(format!("data-dev-{}-0", backend.key())),
            namespace: Some(NS.into()),
            labels: Some(backend.labels("dev")),
            owner_references: owner_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "StatefulSet".into(),
                    name: backend.object_name("dev"),
                    uid: uid.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn stored_env(server: &FakeApiServer) -> DouyinEnvironment {
    server.get(&env_path("dev")).expect("environment stored")
}

fn condition(env: &DouyinEnvironment, type_: &str) -> (String, String, String) {
    let c = env.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn event_reasons(server: &FakeApiServer) -> Vec<(String, String)> {
    let text = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
    server.events.iter().map(|e| (text(e, "type"), text(e, "reason"))).collect()
}

#[tokio::test]
async fn a_deleted_credentials_secret_with_data_is_reported_not_regenerated() {
    let env = environment(DouyinEnvironmentSpec::default());
    let (_, server) = reconcile_once(FakeApiServer::with(&env), env.clone()).await;
    let original: Secret = server.get(&secret_path("dev-douyin-credentials")).unwrap();
    let app_before: Secret = server.get(&secret_path("dev-douyin-backends")).unwrap();

    let mut server = again(server);
    server.objects.remove(&secret_path("dev-douyin-credentials"));
    server.insert(pvc_path("data-dev-mysql-0"), claim(Backend::Mysql, None));
    let (action, server) = reconcile_once(server, env.clone()).await;

    assert_eq!(
        server.requests,
        [
            format!("GET {}", secret_path("dev-douyin-credentials")),
            format!("LIST {}", pvc_collection()),
            format!("APPLY {}/status", env_path("dev")),
        ],
        "nothing is generated or applied"
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    assert!(server.get::<Secret>(&secret_path("dev-douyin-credentials")).is_none());
    let app_after: Secret = server.get(&secret_path("dev-douyin-backends")).unwrap();
    assert_eq!(app_after.data, app_before.data, "the app keeps the passwords that open its data");

    let stored = stored_env(&server);
    assert_eq!(stored.status.as_ref().unwrap().phase, Some(Phase::Degraded));
    let (ready, ready_reason, _) = condition(&stored, "Ready");
    assert_eq!((ready.as_str(), ready_reason.as_str()), ("False", "CredentialsLost"));
    let (degraded, reason, message) = condition(&stored, "Degraded");
    assert_eq!((degraded.as_str(), reason.as_str()), ("True", "CredentialsLost"));
    assert!(message.contains("data-dev-mysql-0"), "{message}");
    assert!(message.contains("restore the Secret from a backup"), "{message}");
    let delete = "kubectl -n shop delete pvc -l app.kubernetes.io/instance=dev,app.kubernetes.io/managed-by=douyin-operator,app.kubernetes.io/name=mysql";
    assert!(message.contains(delete), "{message}");
    assert_eq!(event_reasons(&server), [("Warning".to_string(), "CredentialsLost".to_string())]);

    // The same refusal again publishes no second Event.
    let mut refused = env.clone();
    refused.status = stored.status.clone();
    let (_, server) = reconcile_once(again(server), refused.clone()).await;
    assert!(server.events.is_empty());

    // Restored from a backup: the environment goes on with the same values.
    let mut server = again(server);
    server.insert(secret_path("dev-douyin-credentials"), original.clone());
    let (_, server) = reconcile_once(server, refused).await;
    let kept: Secret = server.get(&secret_path("dev-douyin-credentials")).unwrap();
    assert_eq!(kept.data, original.data);
    assert_eq!(condition(&stored_env(&server), "Degraded").0, "False");
}

#[tokio::test]
async fn missing_keys_of_a_backend_without_data_are_generated() {
    let env = environment(DouyinEnvironmentSpec::default());
    let (_, server) = reconcile_once(FakeApiServer::with(&env), env.clone()).await;
    let mut server = again(server);
    let mut credentials: Secret = server.get(&secret_path("dev-douyin-credentials")).unwrap();
    let data = credentials.data.as_mut().unwrap();
    let mysql_password = data["mysql-password"].clone();
    data.remove("redis-password");
    server.insert(secret_path("dev-douyin-credentials"), credentials);
    server.insert(pvc_path("data-dev-mysql-0"), claim(Backend::Mysql, None));

    let (_, server) = reconcile_once(server, env).await;
    let after: Secret = server.get(&secret_path("dev-douyin-credentials")).unwrap();
    let data = after.data.unwrap();
    assert_eq!(data["mysql-password"], mysql_password);
    assert_eq!(data["redis-password"].0.len(), 32, "Redis has no data yet: a new password is fine");
    assert_eq!(condition(&stored_env(&server), "Degraded").0, "False");
    assert!(event_reasons(&server).contains(&("Normal".into(), "CredentialsGenerated".into())));
}

#[tokio::test]
async fn disabling_a_backend_keeps_its_claims_even_with_delete_policy() {
    let spec = DouyinEnvironmentSpec { deletion_policy: DeletionPolicy::Delete, ..Default::default() };
    let env = environment(spec);
    let (_, server) = reconcile_once(FakeApiServer::with(&env), env.clone()).await;
    let sts: StatefulSet = server.get(&sts_path("dev-redis")).unwrap();
    let policy = sts.spec.unwrap().persistent_volume_claim_retention_policy.unwrap();
    assert_eq!(policy.when_deleted.as_deref(), Some("Retain"));

    let mut server = again(server);
    server.insert(pvc_path("data-dev-redis-0"), claim(Backend::Redis, None));
    let mut disabled = env.clone();
    disabled.spec.redis.enabled = false;
    disabled.metadata.generation = Some(2);
    let (_, server) = reconcile_once(server, disabled).await;

    let redis: Vec<_> =
        server.requests.iter().filter(|r| r.contains("redis") || r.contains("persistentvolumeclaims")).collect();
    assert_eq!(
        redis,
        [
            &format!("GET {}", sts_path("dev-redis")),
            &format!("LIST {}", pvc_collection()),
            &format!("DELETE {}", sts_path("dev-redis")),
            &format!("DELETE /api/v1/namespaces/{NS}/services/dev-redis-headless"),
            &format!("DELETE /api/v1/namespaces/{NS}/services/dev-redis"),
        ]
    );
    assert!(server.get::<PersistentVolumeClaim>(&pvc_path("data-dev-redis-0")).is_some());
    assert!(
        server
            .get::<Secret>(&secret_path("dev-douyin-credentials"))
            .unwrap()
            .data
            .unwrap()
            .contains_key("redis-password")
    );
    assert_eq!(condition(&stored_env(&server), "RedisReady").1, "Disabled");
    assert!(event_reasons(&server).contains(&("Normal".into(), "BackendRemoved".into())));
}

#[tokio::test]
async fn a_statefulset_owning_its_claims_is_switched_to_retain_before_it_is_removed() {
    let env = environment(DouyinEnvironmentSpec::default());
    let mut server = FakeApiServer::with(&env);
    // Made by an operator that let the StatefulSet delete its claims.
    let legacy = StatefulSet {
        metadata: ObjectMeta {
            name: Some("dev-redis".into()),
            uid: Some("uid-sts".into()),
            owner_references: Some(vec![OwnerReference { uid: "uid-dev".into(), ..Default::default() }]),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Delete".into()),
                when_scaled: Some("Retain".into()),
            }),
            ..Default::default()
        }),
        status: None,
    };
    server.insert(sts_path("dev-redis"), legacy);
    server.insert(pvc_path("data-dev-redis-0"), claim(Backend::Redis, Some("uid-sts")));
    let credentials = crate::credentials::Credentials::fill_missing(None, crate::credentials::random_token);
    server.insert(
        secret_path("dev-douyin-credentials"),
        Secret { data: Some(credentials.to_data()), ..Default::default() },
    );
    let mut disabled = env.clone();
    disabled.spec.redis.enabled = false;

    let (action, server) = reconcile_once(server, disabled.clone()).await;
    assert!(server.requests.contains(&format!("MERGE {}", sts_path("dev-redis"))));
    assert!(!server.requests.contains(&format!("DELETE {}", sts_path("dev-redis"))), "not while it owns the claim");
    let sts: StatefulSet = server.get(&sts_path("dev-redis")).unwrap();
    let policy = sts.spec.unwrap().persistent_volume_claim_retention_policy.unwrap();
    assert_eq!(policy.when_deleted.as_deref(), Some("Retain"));
    assert_eq!(condition(&stored_env(&server), "RedisReady").1, "Removing");
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));

    // The StatefulSet controller released the claim: now the StatefulSet goes.
    let mut server = again(server);
    server.insert(pvc_path("data-dev-redis-0"), claim(Backend::Redis, None));
    let (_, server) = reconcile_once(server, disabled).await;
    assert!(server.requests.contains(&format!("DELETE {}", sts_path("dev-redis"))));
    assert!(server.get::<PersistentVolumeClaim>(&pvc_path("data-dev-redis-0")).is_some());
}

#[tokio::test]
async fn deleting_with_delete_policy_removes_only_this_environments_claims() {
    let spec = DouyinEnvironmentSpec { deletion_policy: DeletionPolicy::Delete, ..Default::default() };
    let mut env = environment(spec);
    env.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let mut server = FakeApiServer::with(&env);
    server.insert(pvc_path("data-dev-mysql-0"), claim(Backend::Mysql, None));
    server.insert(pvc_path("data-dev-redis-0"), claim(Backend::Redis, None));
    let mut other = claim(Backend::Mysql, None);
    other.metadata.name = Some("data-prod-mysql-0".into());
    other.metadata.labels = Some(Backend::Mysql.labels("prod"));
    server.insert(pvc_path("data-prod-mysql-0"), other);

    let (_, server) = reconcile_once(server, env).await;
    assert!(server.get::<PersistentVolumeClaim>(&pvc_path("data-dev-mysql-0")).is_none());
    assert!(server.get::<PersistentVolumeClaim>(&pvc_path("data-dev-redis-0")).is_none());
    assert!(server.get::<PersistentVolumeClaim>(&pvc_path("data-prod-mysql-0")).is_some());
    assert_eq!(event_reasons(&server), [("Normal".to_string(), "VolumeClaimsDeleted".to_string())]);
}

#[tokio::test]
async fn a_success_forgets_the_failures_of_its_environment() {
    let env = Arc::new(environment(DouyinEnvironmentSpec::default()));
    let server = FakeApiServer { fail_everything: true, ..FakeApiServer::with(&env) };
    let (failing, server) = serve(server, |ctx| {
        let env = env.clone();
        async move {
            let error = reconcile(env.clone(), ctx.clone()).await.expect_err("the API fails");
            error_policy(env, &error, ctx.clone());
            ctx.failing()
        }
    })
    .await;
    assert_eq!(failing, ["shop/dev"]);

    let server = FakeApiServer { fail_everything: false, ..again(server) };
    let (failing, _) = serve(server, |ctx| {
        let env = env.clone();
        async move {
            ctx.next_backoff("shop/dev");
            reconcile(env, ctx.clone()).await.expect("reconcile succeeds");
            ctx.failing()
        }
    })
    .await;
    assert!(failing.is_empty(), "{failing:?}");
}

#[tokio::test]
async fn disabling_minio_removes_its_bucket_job_too() {
    let env = environment(DouyinEnvironmentSpec::default());
    let mut server = FakeApiServer::with(&env);
    let ready = StatefulSet {
        metadata: ObjectMeta { name: Some("dev-minio".into()), ..Default::default() },
        spec: None,
        status: Some(k8s_openapi::api::apps::v1::StatefulSetStatus {
            replicas: 1,
            ready_replicas: Some(1),
            ..Default::default()
        }),
    };
    server.insert(sts_path("dev-minio"), ready);
    let (_, server) = reconcile_once(server, env.clone()).await;
    assert!(server.objects.contains_key(&crate::fixtures::job_path("dev-minio-bucket")));

    let mut disabled = env;
    disabled.spec.minio.enabled = false;
    let (_, server) = reconcile_once(again(server), disabled).await;
    assert!(server.requests.contains(&format!("DELETE {}", crate::fixtures::job_path("dev-minio-bucket"))));
    assert!(!server.objects.contains_key(&crate::fixtures::job_path("dev-minio-bucket")));
    assert!(!server.objects.contains_key(&sts_path("dev-minio")));
}

#[tokio::test]
async fn a_repeated_event_is_counted_in_a_series() {
    let env = environment(DouyinEnvironmentSpec::default());
    let (_, server) = serve(FakeApiServer::with(&env), |ctx| async move {
        let e = crate::builders::Environment::new(&env).unwrap();
        for _ in 0..2 {
            ctx.events
                .publish(&e, kube::runtime::events::EventType::Warning, "CredentialsLost", "Provision", "same".into())
                .await;
        }
    })
    .await;
    assert_eq!(server.events.len(), 2);
    assert_eq!(server.events[0]["regarding"]["name"], "dev");
    assert_eq!(server.events[0]["reportingController"], "douyin-operator");
    assert_eq!(server.events[1]["series"]["count"], 2, "{}", server.events[1]);
    let verbs: Vec<_> = server.calls.iter().map(|c| c.verb.as_str()).collect();
    assert_eq!(verbs, ["create", "patch"]);
}
