//! Probes as Kubernetes asks them: liveness (gRPC service `liveness`, admin and
//! gateway `/healthz`) never depends on a backend, readiness (the overall and
//! per-role gRPC services, `/readyz`) does; metrics live on the admin port only.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{TestApp, send_json};
use serde_json::Value;

/// A MySQL address where nothing listens: the database is down from the start.
const UNREACHABLE_DATABASE: &str = "mysql://root@127.0.0.1:9/douyin";

async fn status(http: &reqwest::Client, url: String) -> u16 {
    http.get(&url).send().await.map(|r| r.status().as_u16()).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// SERVING (true) or NOT_SERVING (false) for `service`; panics when the
/// service is unknown or the server does not answer.
async fn serving(app: &TestApp, service: &str) -> bool {
    let addr = format!("http://{}", app.grpc_addr);
    douyin::health_check(&addr, service).await.unwrap_or_else(|e| panic!("health of {service:?}: {e:#}"))
}

/// Waits until the admin port's `/readyz` answers 200; returns the admin base URL.
async fn ready(app: &TestApp) -> String {
    let admin = format!("http://{}", app.admin_addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&app.http, format!("{admin}/readyz")).await != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin
}

#[tokio::test]
async fn liveness_holds_while_the_database_is_down_and_readiness_does_not() {
    let app = TestApp::spawn_with(|c| c.database_url = Some(UNREACHABLE_DATABASE.into())).await;
    let admin = format!("http://{}", app.admin_addr);

    // The overall status starts SERVING in tonic-health; it turns once the
    // first round of dependency checks has found the database down.
    let deadline = Instant::now() + Duration::from_secs(30);
    while serving(&app, "").await {
        assert!(Instant::now() < deadline, "the overall status never reported the database outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several health rounds (1 s apart): liveness stays up through each.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(serving(&app, douyin_kit::health::LIVENESS).await, "gRPC liveness must stay SERVING");
        assert!(!serving(&app, "douyin.user.v1.UserService").await, "a role without its database is not ready");
        assert!(!serving(&app, "").await, "the process is not ready");
        assert_eq!(status(&app.http, format!("{admin}/healthz")).await, 200, "admin /healthz");
        assert_eq!(status(&app.http, format!("{admin}/readyz")).await, 503, "admin /readyz");
        assert_eq!(status(&app.http, app.url("/healthz")).await, 200, "gateway /healthz");
        assert_eq!(status(&app.http, app.url("/readyz")).await, 503, "gateway /readyz");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    app.stop().await;
}

/// After SIGTERM every readiness signal turns before any listener stops
/// accepting: callers that still resolve the pod keep getting answers.
#[tokio::test]
async fn a_lame_duck_reports_not_serving_and_still_serves() {
    let app = TestApp::spawn().await;
    let admin = ready(&app).await;
    app.lame_duck();
    let deadline = Instant::now() + Duration::from_secs(5);
    while serving(&app, "douyin.user.v1.UserService").await {
        assert!(Instant::now() < deadline, "a lame duck still reports SERVING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!serving(&app, "").await, "the process is not ready");
    assert!(serving(&app, douyin_kit::health::LIVENESS).await, "a lame duck is alive");
    assert_eq!(status(&app.http, format!("{admin}/readyz")).await, 503, "admin /readyz");
    assert_eq!(status(&app.http, app.url("/readyz")).await, 503, "gateway /readyz");
    // New connections are accepted and answered, on both listeners.
    let fresh = reqwest::Client::new();
    let feed: Value = send_json(fresh.get(app.url("/douyin/feed/"))).await;
    assert_eq!(feed["status_code"], 0, "{feed}");
    app.stop().await;
}

#[tokio::test]
async fn a_healthy_process_is_live_and_ready() {
    let app = TestApp::spawn().await;
    ready(&app).await;
    assert!(serving(&app, douyin_kit::health::LIVENESS).await);
    assert!(serving(&app, "").await);
    assert!(serving(&app, "douyin.video.v1.VideoService").await);
    app.stop().await;
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_port_only() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/douyin/feed/", &[]).await["status_code"], 0);
    for path in ["/metrics", "/metrics/"] {
        let public = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(public.status(), 404, "{path} on the public port");
        let reply: Value = common::json(public).await;
        assert_ne!(reply["status_code"], 0, "{reply}");
    }
    let admin = app.http.get(format!("http://{}/metrics", app.admin_addr)).send().await.unwrap();
    assert_eq!(admin.status(), 200);
    let text = admin.text().await.unwrap();
    assert!(text.contains("douyin_http_server_requests_total"), "gateway metrics on the admin port");
    app.stop().await;
}

/// A role whose table is gone is not ready, and the admin `/readyz` says
/// which role and which table; the other roles and liveness stay up.
#[tokio::test]
async fn a_role_without_its_table_is_not_ready_and_the_admin_port_names_it() {
    let app = TestApp::spawn().await;
    let admin = ready(&app).await;
    let db = douyin_kit::db::Db::connect(&app.config).await.unwrap();
    sqlx::query("DROP TABLE messages").execute(db.pool()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let response = app.http.get(format!("{admin}/readyz")).send().await.unwrap();
        let (code, body) = (response.status().as_u16(), response.text().await.unwrap());
        if code == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "still ready without the messages table: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.starts_with("not ready"), "{body}");
    assert!(body.lines().any(|l| l.starts_with("chat: database table messages: ")), "{body}");
    assert!(!body.contains("user:"), "the user role's tables are there: {body}");
    assert!(!serving(&app, "douyin.chat.v1.ChatService").await, "chat without its table");
    assert!(serving(&app, "douyin.user.v1.UserService").await, "the user role has its tables");
    assert!(serving(&app, douyin_kit::health::LIVENESS).await, "liveness never asks the database");
    assert_eq!(status(&app.http, format!("{admin}/healthz")).await, 200);
    let public = app.http.get(app.url("/readyz")).send().await.unwrap().text().await.unwrap();
    assert!(!public.contains("messages"), "the public port does not name dependencies: {public}");
    db.close().await;
    app.stop().await;
}
