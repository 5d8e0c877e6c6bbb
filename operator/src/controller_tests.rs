//! The whole controller against the fake API server: what it watches, and that a
//! Secret deleted by hand is put back at once (not at the next resync).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{reflector, watcher};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::controller::{self, Scope};
use crate::crd::{DouyinEnvironment, DouyinEnvironmentSpec};
use crate::fixtures::{FakeApiServer, NS, ScriptedWatch, env_path, secret_path};
use crate::names::FINALIZER;

fn environment(name: &str) -> DouyinEnvironment {
    let mut env = DouyinEnvironment::new(name, DouyinEnvironmentSpec::default());
    env.metadata.namespace = Some(NS.into());
    env.metadata.uid = Some(format!("uid-{name}"));
    env.metadata.generation = Some(1);
    env.metadata.resource_version = Some("1".into());
    env.metadata.finalizers = Some(vec![FINALIZER.into()]);
    env
}

/// Runs the controller until `done` says what it waited for was seen (or 20 s
/// passed, which fails the test), then shuts it down and returns the server.
async fn run_until(
    mut server: FakeApiServer,
    scope: Scope,
    done: impl Fn(&[String]) -> bool,
) -> (Vec<String>, FakeApiServer) {
    let (observer, mut seen) = mpsc::unbounded_channel();
    server.observer = Some(observer);
    let (ctx, task) = server.start();
    let (stop, stopped) = oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(ctx, scope, async { stopped.await.unwrap_or(()) }, || {}));
    let mut lines = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = seen.recv().await {
            lines.push(line);
            if done(&lines) {
                return;
            }
        }
    })
    .await;
    stop.send(()).expect("controller running");
    controller.await.expect("controller task").expect("controller ran");
    let server = tokio::time::timeout(Duration::from_secs(10), task).await.expect("client released").expect("no panic");
    assert!(waited.is_ok(), "timed out; requests so far: {lines:#?}");
    (lines, server)
}

fn count(lines: &[String], wanted: &str) -> usize {
    lines.iter().filter(|l| *l == wanted).count()
}

#[tokio::test]
async fn a_deleted_app_secret_is_restored_at_once() {
    let env = environment("dev");
    let mut server = FakeApiServer::with(&env);
    let app_secret = format!("APPLY {}", secret_path("dev-douyin-backends"));
    let first_status = format!("APPLY {}/status", env_path("dev"));
    // After the first reconcile, the app Secret is deleted by hand.
    let owner = json!([{ "apiVersion": "douyin.rs/v1alpha1", "kind": "DouyinEnvironment", "name": "dev",
                         "uid": "uid-dev", "controller": true, "blockOwnerDeletion": true }]);
    server.scripted_watch = Some(ScriptedWatch {
        resource: "secrets".into(),
        after: first_status,
        events: vec![json!({ "type": "DELETED", "object": {
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": { "name": "dev-douyin-backends", "namespace": NS, "resourceVersion": "7",
                          "labels": { "app.kubernetes.io/managed-by": "douyin-operator" }, "ownerReferences": owner } } })],
        deletes: vec![secret_path("dev-douyin-backends")],
    });

    let (lines, server) = run_until(server, Scope::Namespace(NS.into()), |lines| count(lines, &app_secret) >= 2).await;
    assert_eq!(count(&lines, &app_secret), 2, "{lines:#?}");
    let restored: Secret = server.get(&secret_path("dev-douyin-backends")).expect("the Secret is back");
    assert!(restored.data.unwrap().contains_key("DOUYIN_DATABASE_URL"));
}

#[tokio::test]
async fn the_controller_watches_environments_and_what_they_own() {
    for (scope, prefix) in [(Scope::Namespace(NS.into()), format!("/namespaces/{NS}")), (Scope::Cluster, String::new())]
    {
        let watches = [
            format!("WATCH /apis/douyin.rs/v1alpha1{prefix}/douyinenvironments"),
            format!("WATCH /apis/apps/v1{prefix}/statefulsets"),
            format!("WATCH /apis/batch/v1{prefix}/jobs"),
            format!("WATCH /api/v1{prefix}/secrets"),
        ];
        let (lines, server) =
            run_until(FakeApiServer::default(), scope, |lines| watches.iter().all(|w| lines.contains(w))).await;
        let namespaced = !prefix.is_empty();
        assert!(server.calls.iter().all(|c| c.namespaced == namespaced), "{:?}", server.calls);
        assert!(lines.iter().all(|l| !l.starts_with("APPLY")), "no environment, nothing applied: {lines:?}");
    }
}

#[tokio::test]
async fn failures_of_deleted_environments_are_forgotten() {
    let (reader, mut writer) = reflector::store::<DouyinEnvironment>();
    let ctx = crate::fixtures::offline_context();
    let (dev, gone) = (environment("dev"), environment("gone"));
    writer.apply_watcher_event(&watcher::Event::Apply(dev.clone()));
    ctx.next_backoff("shop/dev");
    ctx.next_backoff("shop/gone");
    ctx.next_backoff("shop/vanished");

    ctx.next_backoff("elsewhere/prod");
    let scope = Scope::Namespace(NS.into());

    ctx.prune_failures(&watcher::Event::Delete(gone), &reader, &scope);
    assert_eq!(ctx.failing(), ["elsewhere/prod", "shop/dev", "shop/vanished"]);
    // A relist: whatever of its namespace the store no longer holds is forgotten;
    // another namespace's controller keeps its own.
    ctx.prune_failures(&watcher::Event::InitDone, &reader, &scope);
    assert_eq!(ctx.failing(), ["elsewhere/prod", "shop/dev"]);
    ctx.prune_failures(&watcher::Event::Apply(dev), &reader, &scope);
    assert_eq!(ctx.failing(), ["elsewhere/prod", "shop/dev"]);
    ctx.prune_failures(&watcher::Event::InitDone, &reader, &Scope::Cluster);
    assert_eq!(ctx.failing(), ["shop/dev"]);
}

#[tokio::test]
async fn one_controller_per_served_namespace_each_watching_only_its_own() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (observer, mut seen) = mpsc::unbounded_channel();
    let server = FakeApiServer { observer: Some(observer), ..FakeApiServer::default() };
    let (ctx, task) = server.start();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let ready = Arc::new(AtomicBool::new(false));
    let scopes = Scope::parse_list("shop,staging");
    let controllers = tokio::spawn(crate::manager::run_controllers(ctx, scopes, stopped, ready.clone()));

    let wanted: Vec<String> = ["shop", "staging"]
        .iter()
        .flat_map(|ns| {
            [
                format!("WATCH /apis/douyin.rs/v1alpha1/namespaces/{ns}/douyinenvironments"),
                format!("WATCH /api/v1/namespaces/{ns}/secrets"),
            ]
        })
        .collect();
    let mut lines = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = seen.recv().await {
            lines.push(line);
            if wanted.iter().all(|w| lines.contains(w)) {
                return;
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out: {lines:#?}");
    assert!(ready.load(Ordering::Relaxed), "ready once both controllers watch");
    stop.send(true).unwrap();
    controllers.await.unwrap().expect("controllers stop cleanly");
    let server = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    assert!(server.calls.iter().all(|c| c.namespaced), "nothing cluster-wide: {:?}", server.calls);
}
