//! Test harness: starts the real app on port 0 with its own database (a fresh
//! SQLite file, or a fresh MySQL schema when `DOUYIN_TEST_DATABASE_URL` names a
//! server), its own Redis key prefix when `DOUYIN_TEST_REDIS_URL` is set, and
//! its own bucket when `DOUYIN_TEST_S3_ENDPOINT` is set. Talks to it over HTTP.
#![allow(dead_code)]

pub mod process;
pub mod split;

use std::{net::SocketAddr, time::Duration};

use douyin_kit::{Config, Role, shutdown};
use serde_json::Value;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub config: Config,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The app's cache (Redis under the test's prefix, or the in-process one).
    pub cache: std::sync::Arc<dyn douyin_kit::cache::Cache>,
    trigger: shutdown::ShutdownTrigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data_dir: tempfile::TempDir,
    schema: Option<(String, String)>,
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The value of `key` for a test marked `#[ignore = "needs …"]`: run without
/// what it needs, such a test fails instead of passing having checked nothing.
pub fn needs(key: &str) -> String {
    env(key).unwrap_or_else(|| panic!("{key} is not set; this test needs it (see its #[ignore] reason)"))
}

/// For a test that needs a Redis: one (`DOUYIN_TEST_REDIS_URL`) or a Redis
/// Cluster (`DOUYIN_TEST_REDIS_CLUSTER`).
pub fn needs_redis() {
    if env("DOUYIN_TEST_REDIS_CLUSTER").is_none() {
        needs("DOUYIN_TEST_REDIS_URL");
    }
}

/// The service secret every test server shares (a deployment has one).
pub const SERVICE_SECRET: &str = "test-service-secret-0123456789abcdef0123";

/// `authorization` metadata with a credential for calls to `role`, as a
/// process of the deployment signs them.
pub fn service_credential(role: Role) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
    let key = douyin_kit::grpc::ServiceKey::new(SERVICE_SECRET.as_bytes()).unwrap();
    format!("Bearer {}", key.mint("douyin-api", role).unwrap()).parse().unwrap()
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address here),
/// as clients behind different addresses or a proxy do.
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().ok())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A port free at the time of asking, given to no other test of this process,
/// and below the kernel's ephemeral range (32768 and up), where the local ports
/// of outgoing connections (to MariaDB, Redis, a peer) come from: a port that
/// `bind(0)` returned can be taken by such a connection before the process
/// that was meant to listen on it starts.
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for attempt in 0u32.. {
        let port = 20_000 + (std::collections::hash_map::RandomState::new().hash_one(attempt) % 12_000) as u16;
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    unreachable!("the loop above ends by returning")
}

/// A configuration with every listener on port 0 and fresh backends.
pub async fn test_config(data_dir: &std::path::Path) -> (Config, Option<(String, String)>) {
    let mut config = Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        demo_content: Some(false),
        service_secret: Some(SERVICE_SECRET.into()),
        health_interval_secs: 1,
        shutdown_grace_secs: 5,
        rate_limit_ip_per_sec: 0,
        rate_limit_user_per_sec: 0,
        rate_limit_register_per_min: 0,
        rate_limit_publish_per_min: 0,
        rate_limit_connections_per_sec: 0,
        ..Config::default()
    };
    let mut schema = None;
    if let Some(server) = env("DOUYIN_TEST_DATABASE_URL") {
        let name = format!("douyin_test_{}", uuid::Uuid::new_v4().simple());
        create_schema(&server, &name).await;
        config.database_url = Some(format!("{}/{name}", server.trim_end_matches('/')));
        schema = Some((server, name));
    }
    if let Some(redis) = env("DOUYIN_TEST_REDIS_URL") {
        config.redis_url = Some(redis);
        config.redis_prefix = format!("douyin-test-{}", uuid::Uuid::new_v4().simple());
    }
    // A Redis Cluster in place of one Redis (`.ci/redis-cluster.sh`).
    if let Some(nodes) = env("DOUYIN_TEST_REDIS_CLUSTER") {
        config.redis_url = None;
        config.redis_cluster_nodes = nodes.split(',').map(|n| n.trim().to_owned()).collect();
        config.redis_prefix = format!("douyin-test-{}", uuid::Uuid::new_v4().simple());
    }
    if let Some(endpoint) = env("DOUYIN_TEST_S3_ENDPOINT") {
        config.s3_endpoint = Some(endpoint);
        config.s3_bucket = format!("douyin-test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        config.s3_access_key = env("DOUYIN_TEST_S3_ACCESS_KEY");
        config.s3_secret_key = env("DOUYIN_TEST_S3_SECRET_KEY");
    }
    (config, schema)
}

async fn admin_pool(server: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new().max_connections(1).connect(server).await.expect("test MySQL server")
}

pub async fn create_schema(server: &str, name: &str) {
    let pool = admin_pool(server).await;
    let sql = format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.expect("create test schema");
    pool.close().await;
}

pub async fn drop_schema(server: &str, name: &str) {
    let pool = admin_pool(server).await;
    let sql = format!("DROP DATABASE IF EXISTS `{name}`");
    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
    pool.close().await;
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let data_dir = tempfile::tempdir().unwrap();
        let (mut config, schema) = test_config(data_dir.path()).await;
        adjust(&mut config);
        let (trigger, stop) = shutdown::channel();
        let running = douyin::start(config.clone(), &Role::ALL, stop).await.expect("app starts");
        let base = format!("http://{}", running.http_addr.unwrap());
        let grpc_addr = running.grpc_addr.unwrap();
        let admin_addr = running.admin_addr;
        let cache = running.cache.clone();
        let task = tokio::spawn(running.wait());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        TestApp { base, http, config, grpc_addr, admin_addr, cache, trigger, task, _data_dir: data_dir, schema }
    }

    /// Starts the lame-duck period of a SIGTERM: NOT_SERVING, still serving.
    #[allow(dead_code)] // not every suite stops in two steps
    pub fn lame_duck(&self) {
        self.trigger.lame_duck();
    }

    /// Stops the app and drops its schema.
    pub async fn stop(self) {
        self.trigger.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        if let Some((server, name)) = &self.schema {
            drop_schema(server, name).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = self.http.get(self.url(path)).query(query).send().await.unwrap();
        json(response).await
    }

    /// POST with the parameters in the query string, as the mobile client does.
    pub async fn post_query(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = self.http.post(self.url(path)).query(query).send().await.unwrap();
        json(response).await
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let response = self.http.post(self.url(path)).form(form).send().await.unwrap();
        json(response).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(self.url(path)).json(&body).send().await.unwrap();
        json(response).await
    }

    /// Registers `name` (password `secret123`) and returns (user_id, token).
    pub async fn register(&self, name: &str) -> (i64, String) {
        let reply = self.post_query("/douyin/user/register/", &[("username", name), ("password", "secret123")]).await;
        assert_eq!(reply["status_code"], 0, "register {name}: {reply}");
        (reply["user_id"].as_i64().unwrap(), reply["token"].as_str().unwrap().to_owned())
    }

    /// Publishes `bytes` as `title` and asserts success.
    pub async fn publish(&self, token: &str, title: &str, bytes: Vec<u8>) -> Value {
        let form = reqwest::multipart::Form::new()
            .text("token", token.to_owned())
            .text("title", title.to_owned())
            .part("data", reqwest::multipart::Part::bytes(bytes).file_name("clip.mp4").mime_str("video/mp4").unwrap());
        let response = self.http.post(self.url("/douyin/publish/action/")).multipart(form).send().await.unwrap();
        json(response).await
    }
}

/// Sends `request` and reads its answer as JSON, whatever its headers say.
pub async fn send_json(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

pub async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_owned()).unwrap_or_default();
    let text = response.text().await.unwrap();
    assert_eq!(content_type, "application/json; charset=utf-8", "{status}: {text}");
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {e}: {text}"));
    assert!(value["status_code"].is_i64(), "status_code missing: {text}");
    assert!(value["status_msg"].is_string(), "status_msg missing: {text}");
    value
}

/// A small but real MP4: the demo video shipped with the video role.
pub fn sample_mp4() -> Vec<u8> {
    include_bytes!("../../../../video/demo/demo1.mp4").to_vec()
}

/// Asserts a refusal whose message mentions `needle`.
#[track_caller]
pub fn assert_refused(reply: &Value, needle: &str) {
    assert_ne!(reply["status_code"], 0, "expected a refusal: {reply}");
    let msg = reply["status_msg"].as_str().unwrap_or_default().to_lowercase();
    assert!(msg.contains(&needle.to_lowercase()), "message {msg:?} should mention {needle:?}");
}
