//! The mesh: every role its own OS process of the `douyin` binary on free ports,
//! against MariaDB, Redis and S3 (from the DOUYIN_TEST_* variables set by
//! `.ci/mesh.sh`, which runs these ignored tests).

use crate::common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::process::{Proc, Processes, owned};

/// A mesh of seven processes with its own schema, Redis prefix and bucket.
struct Mesh {
    procs: Processes,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    schema: Option<(String, String)>,
}

impl Mesh {
    async fn start() -> Mesh {
        for needed in ["DOUYIN_TEST_DATABASE_URL", "DOUYIN_TEST_REDIS_URL", "DOUYIN_TEST_S3_ENDPOINT"] {
            common::needs(needed);
        }
        let dir = tempfile::tempdir().unwrap();
        let (config, schema) = common::test_config(dir.path()).await;
        let mut env = owned(&[
            ("DOUYIN_DATA_DIR", &dir.path().display().to_string()),
            ("DOUYIN_JWT_SECRET", "mesh-test-secret-0123456789abcdef0123456789"),
            ("DOUYIN_DEMO_CONTENT", "false"),
            ("DOUYIN_HEALTH_INTERVAL_SECS", "1"),
            ("DOUYIN_RPC_TIMEOUT_MS", "2000"),
            ("DOUYIN_SHUTDOWN_GRACE_SECS", "15"),
            ("DOUYIN_REDIS_PREFIX", &config.redis_prefix),
            ("DOUYIN_S3_BUCKET", &config.s3_bucket),
            ("DOUYIN_RATE_LIMIT_IP_PER_SEC", "0"),
            ("DOUYIN_RATE_LIMIT_USER_PER_SEC", "0"),
            ("DOUYIN_RATE_LIMIT_REGISTER_PER_MIN", "0"),
            ("DOUYIN_RATE_LIMIT_PUBLISH_PER_MIN", "0"),
            ("DOUYIN_RATE_LIMIT_CONNECTIONS_PER_SEC", "0"),
        ]);
        let optional = [
            ("DOUYIN_DATABASE_URL", config.database_url.clone()),
            ("DOUYIN_REDIS_URL", config.redis_url.clone()),
            ("DOUYIN_S3_ENDPOINT", config.s3_endpoint.clone()),
            ("DOUYIN_S3_ACCESS_KEY", config.s3_access_key.clone()),
            ("DOUYIN_S3_SECRET_KEY", config.s3_secret_key.clone()),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                env.push((key.into(), value));
            }
        }
        let procs = Processes::start(&env).await;
        let (base, http) = (procs.base(), procs.http.clone());
        eprintln!("mesh: {} processes", procs.procs.len());
        for p in &procs.procs {
            eprintln!(
                "  {:<12} pid {:<7} grpc 127.0.0.1:{:<5} admin 127.0.0.1:{}{}",
                p.role,
                p.child.id(),
                p.grpc,
                p.admin,
                if p.role == "api" { format!(" http 127.0.0.1:{}", p.http) } else { String::new() }
            );
        }
        eprintln!(
            "  backends: database {}, redis {}, storage {}",
            if config.database_url.is_some() { "MariaDB" } else { "SQLite" },
            if config.redis_url.is_some() { "Redis" } else { "in-process" },
            if config.s3_endpoint.is_some() { "S3" } else { "local files" },
        );
        Mesh { procs, base, http, _dir: dir, schema }
    }

    fn proc(&mut self, role: &str) -> &mut Proc {
        self.procs.get_mut(role)
    }

    /// How many calls of `method` the role's process has served.
    async fn served(&self, role: &str, method: &str) -> f64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.procs.get(role).admin);
        let text = self.http.get(url).send().await.unwrap().text().await.unwrap();
        let series = format!(r#"douyin_rpc_server_requests_total{{rpc_service="{method}}}"#);
        crate::otlp::parse_metrics(&text).get(&series).copied().unwrap_or_default()
    }

    async fn stop(mut self) {
        self.procs.procs.clear();
        if let Some((server, name)) = self.schema.take() {
            common::drop_schema(&server, &name).await;
        }
    }
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn call(&self, method: &str, path: &str, query: &[(&str, String)]) -> Value {
        let url = format!("{}{path}", self.base);
        let request = if method == "GET" { self.http.get(url) } else { self.http.post(url) };
        common::json(request.query(query).send().await.unwrap()).await
    }
}

/// Replaces values that differ between runs (ids, times, tokens, URLs) by
/// their kind, keeping everything a client compares: counts, flags, texts.
fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let volatile = k == "id"
                        || k.ends_with("_id")
                        || k == "token"
                        || k == "create_time"
                        || k == "next_time"
                        || k == "create_date"
                        || k.ends_with("_url")
                        || k == "avatar"
                        || k == "background_image";
                    let v = if volatile {
                        json!(match v {
                            Value::Number(_) => "<number>",
                            Value::String(s) if s.is_empty() => "",
                            Value::String(_) => "<string>",
                            _ => "<other>",
                        })
                    } else {
                        normalize(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// The whole app scenario over HTTP; returns each step's normalized response.
async fn scenario(base: &str, http: &reqwest::Client) -> Vec<(String, Value)> {
    let c = Client { base: base.to_owned(), http: http.clone() };
    let mut transcript = Vec::new();
    let mut record = |step: &str, v: &Value| {
        assert_eq!(v["status_code"], 0, "{step}: {v}");
        transcript.push((step.to_owned(), normalize(v)));
    };
    let reg_a = c
        .call("POST", "/douyin/user/register/", &[("username", "mesh-a".into()), ("password", "secret123".into())])
        .await;
    record("register a", &reg_a);
    let reg_b = c
        .call("POST", "/douyin/user/register/", &[("username", "mesh-b".into()), ("password", "secret123".into())])
        .await;
    record("register b", &reg_b);
    let a = reg_a["user_id"].as_i64().unwrap().to_string();
    let b = reg_b["user_id"].as_i64().unwrap().to_string();
    let login =
        c.call("POST", "/douyin/user/login/", &[("username", "mesh-a".into()), ("password", "secret123".into())]).await;
    record("login a", &login);
    let ta = login["token"].as_str().unwrap().to_owned();
    let tb = reg_b["token"].as_str().unwrap().to_owned();

    let form = reqwest::multipart::Form::new()
        .text("token", ta.clone())
        .text("title", "mesh video")
        .part("data", reqwest::multipart::Part::bytes(common::sample_mp4()).file_name("v.mp4"));
    let published =
        common::json(http.post(format!("{base}/douyin/publish/action/")).multipart(form).send().await.unwrap()).await;
    record("publish", &published);

    let feed = c.call("GET", "/douyin/feed/", &[("token", tb.clone())]).await;
    record("feed", &feed);
    let video = &feed["video_list"][0];
    let video_id = video["id"].as_i64().unwrap().to_string();
    for key in ["cover_url", "play_url"] {
        let url = video[key].as_str().unwrap();
        let response = http.get(url).send().await.unwrap();
        assert!(response.status().is_success(), "{key} {url}: {}", response.status());
        assert!(!response.bytes().await.unwrap().is_empty());
    }

    record(
        "like",
        &c.call(
            "POST",
            "/douyin/favorite/action/",
            &[("token", tb.clone()), ("video_id", video_id.clone()), ("action_type", "1".into())],
        )
        .await,
    );
    record(
        "favorite list",
        &c.call("GET", "/douyin/favorite/list/", &[("token", tb.clone()), ("user_id", b.clone())]).await,
    );
    record(
        "comment",
        &c.call(
            "POST",
            "/douyin/comment/action/",
            &[
                ("token", tb.clone()),
                ("video_id", video_id.clone()),
                ("action_type", "1".into()),
                ("comment_text", "nice one".into()),
            ],
        )
        .await,
    );
    record(
        "comment list",
        &c.call("GET", "/douyin/comment/list/", &[("token", ta.clone()), ("video_id", video_id.clone())]).await,
    );
    record(
        "follow a->b",
        &c.call(
            "POST",
            "/douyin/relation/action/",
            &[("token", ta.clone()), ("to_user_id", b.clone()), ("action_type", "1".into())],
        )
        .await,
    );
    record(
        "follow b->a",
        &c.call(
            "POST",
            "/douyin/relation/action/",
            &[("token", tb.clone()), ("to_user_id", a.clone()), ("action_type", "1".into())],
        )
        .await,
    );
    record(
        "follow list",
        &c.call("GET", "/douyin/relation/follow/list/", &[("token", ta.clone()), ("user_id", a.clone())]).await,
    );
    record(
        "follower list",
        &c.call("GET", "/douyin/relation/follower/list/", &[("token", ta.clone()), ("user_id", a.clone())]).await,
    );
    record(
        "send",
        &c.call(
            "POST",
            "/douyin/message/action/",
            &[
                ("token", ta.clone()),
                ("to_user_id", b.clone()),
                ("action_type", "1".into()),
                ("content", "hello b".into()),
            ],
        )
        .await,
    );
    let chat = c.call("GET", "/douyin/message/chat/", &[("token", tb.clone()), ("to_user_id", a.clone())]).await;
    record("chat", &chat);
    let newest = chat["message_list"][0]["create_time"].as_i64().unwrap().to_string();
    let polled = c
        .call(
            "GET",
            "/douyin/message/chat/",
            &[("token", tb.clone()), ("to_user_id", a.clone()), ("pre_msg_time", newest)],
        )
        .await;
    assert_eq!(polled["message_list"], json!([]), "poll with the newest time returns nothing new");
    record("poll", &polled);
    record(
        "friends",
        &c.call("GET", "/douyin/relation/friend/list/", &[("token", ta.clone()), ("user_id", a.clone())]).await,
    );
    let info = c.call("GET", "/douyin/user/", &[("token", tb.clone()), ("user_id", a.clone())]).await;
    assert_eq!(info["user"]["work_count"], 1, "{info}");
    assert_eq!(info["user"]["total_favorited"], 1, "{info}");
    assert_eq!(info["user"]["follower_count"], 1, "{info}");
    assert_eq!(info["user"]["is_follow"], true, "{info}");
    record("user info", &info);
    transcript
}

#[tokio::test]
#[ignore = "needs MariaDB, Redis and S3 for seven processes (run by .ci/mesh.sh)"]
async fn mesh_runs_the_app_like_serve_all() {
    let mesh = Mesh::start().await;
    let meshed = scenario(&mesh.base, &mesh.http).await;

    // A warm anonymous page is one call: the authors' profiles the video role
    // was given before are kept (a profile never changes), and the counts are
    // read from the counter's cache.
    let client = Client { base: mesh.base.clone(), http: mesh.http.clone() };
    let asked = [
        ("user", r#"douyin.user.v1.UserService",rpc_method="GetUsers""#),
        ("counter", r#"douyin.counter.v1.CounterService",rpc_method="Counts""#),
    ];
    let page = client.call("GET", "/douyin/feed/", &[]).await;
    assert!(page["video_list"].as_array().is_some_and(|v| !v.is_empty()), "{page}");
    let mut before = Vec::new();
    for (role, method) in asked {
        let served = mesh.served(role, method).await;
        assert!(served > 0.0, "{role} reports no {method} calls though the scenario made some");
        before.push(served);
    }
    for _ in 0..3 {
        let again = client.call("GET", "/douyin/feed/", &[]).await;
        assert_eq!(normalize(&again), normalize(&page), "{again}");
    }
    for ((role, method), before) in asked.into_iter().zip(before) {
        assert_eq!(mesh.served(role, method).await, before, "{role} was asked {method} for a warm anonymous page");
    }

    // The same scenario on `serve all` with embedded defaults.
    let dir = tempfile::tempdir().unwrap();
    let all = Proc::spawn_free(
        "all",
        &owned(&[
            ("DOUYIN_DATA_DIR", &dir.path().display().to_string()),
            ("DOUYIN_DEMO_CONTENT", "false"),
            ("DOUYIN_HEALTH_INTERVAL_SECS", "1"),
            ("DOUYIN_RATE_LIMIT_REGISTER_PER_MIN", "0"),
        ]),
    );
    all.ready(&mesh.http).await;
    let embedded = scenario(&all.base(), &mesh.http).await;
    eprintln!("serve all (SQLite, in-process cache, local files): pid {} http 127.0.0.1:{}", all.child.id(), all.http);
    for ((step, m), (_, e)) in meshed.iter().zip(&embedded) {
        assert_eq!(m, e, "step {step} differs between the mesh and serve all");
    }
    assert_eq!(meshed.len(), embedded.len());
    drop(all);
    mesh.stop().await;
}

#[tokio::test]
#[ignore = "needs MariaDB, Redis and S3 for seven processes (run by .ci/mesh.sh)"]
async fn a_dead_peer_is_refused_cleanly_and_recovers() {
    let mut mesh = Mesh::start().await;
    let c = Client { base: mesh.base.clone(), http: mesh.http.clone() };
    let reg = c
        .call("POST", "/douyin/user/register/", &[("username", "kill-a".into()), ("password", "secret123".into())])
        .await;
    let token = reg["token"].as_str().unwrap().to_owned();
    let reg_b = c
        .call("POST", "/douyin/user/register/", &[("username", "kill-b".into()), ("password", "secret123".into())])
        .await;
    let b = reg_b["user_id"].as_i64().unwrap().to_string();
    // Known to the gateway before the user role goes away.
    assert_eq!(c.call("GET", "/douyin/user/", &[("token", token.clone())]).await["status_code"], 0);

    let user = mesh.proc("user");
    let _ = user.child.kill();
    let _ = user.child.wait();

    let started = Instant::now();
    let info = c.call("GET", "/douyin/user/", &[("token", token.clone())]).await;
    let elapsed = started.elapsed();
    assert_eq!(info["status_code"], 503, "{info}");
    assert_eq!(info["status_msg"], "service temporarily unavailable");
    assert!(elapsed < Duration::from_secs(5), "refused within the deadline, took {elapsed:?}");
    let login =
        c.call("POST", "/douyin/user/login/", &[("username", "kill-a".into()), ("password", "secret123".into())]).await;
    assert_eq!(login["status_code"], 503, "{login}");
    assert!(!login.to_string().contains("127.0.0.1"), "no address leaks: {login}");
    // Routes that do not need the user role keep working.
    let chat = c.call("GET", "/douyin/message/chat/", &[("token", token.clone()), ("to_user_id", b.clone())]).await;
    assert_eq!(chat["status_code"], 0, "{chat}");

    mesh.proc("user").restart();
    mesh.procs.get("user").ready(&mesh.http).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = c.call("GET", "/douyin/user/", &[("token", token.clone())]).await;
        if info["status_code"] == 0 {
            assert_eq!(info["user"]["name"], "kill-a");
            break;
        }
        assert!(Instant::now() < deadline, "gateway did not recover: {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mesh.stop().await;
}

#[tokio::test]
#[ignore = "needs MariaDB, Redis and S3 for seven processes (run by .ci/mesh.sh)"]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut mesh = Mesh::start().await;
    let c = Client { base: mesh.base.clone(), http: mesh.http.clone() };
    let reg = c
        .call("POST", "/douyin/user/register/", &[("username", "drain".into()), ("password", "secret123".into())])
        .await;
    let token = reg["token"].as_str().unwrap().to_owned();

    // A slow upload: the body trickles in while the video role is told to stop.
    let mut video_bytes = common::sample_mp4();
    video_bytes.extend(std::iter::repeat_n(0u8, 64 * 1024));
    let chunks: Vec<Vec<u8>> = video_bytes.chunks(8 * 1024).map(<[u8]>::to_vec).collect();
    let stream = futures::stream::iter(chunks).then(|chunk| async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok::<_, std::io::Error>(chunk)
    });
    use futures::StreamExt;
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream)).file_name("slow.mp4");
    let form = reqwest::multipart::Form::new().text("token", token.clone()).text("title", "drained").part("data", part);
    let upload = tokio::spawn(mesh.http.post(format!("{}/douyin/publish/action/", mesh.base)).multipart(form).send());
    tokio::time::sleep(Duration::from_millis(400)).await;
    mesh.proc("video").signal("TERM");
    let reply = common::json(upload.await.unwrap().unwrap()).await;
    assert_eq!(reply["status_code"], 0, "in-flight publish completes: {reply}");
    let video = mesh.proc("video");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = video.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "video role did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    mesh.stop().await;
}

#[tokio::test]
async fn unreachable_database_reports_not_serving() {
    let dir = tempfile::tempdir().unwrap();
    let dead_port = common::free_port();
    let env = owned(&[
        ("DOUYIN_DATA_DIR", &dir.path().display().to_string()),
        ("DOUYIN_DATABASE_URL", &format!("mysql://root@127.0.0.1:{dead_port}/douyin")),
        ("DOUYIN_HEALTH_INTERVAL_SECS", "1"),
    ]);
    let user = Proc::spawn_free("user", &env);
    let addr = format!("http://127.0.0.1:{}", user.grpc);
    let deadline = Instant::now() + Duration::from_secs(30);
    let serving = loop {
        match douyin::health_check(&addr, "douyin.user.v1.UserService").await {
            Ok(serving) => break serving,
            Err(_) => {
                assert!(Instant::now() < deadline, "health endpoint did not answer");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(!serving, "a role without its database must not be SERVING");
    drop(user);
}
