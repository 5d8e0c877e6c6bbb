//! Abuse and fault suite: forged tokens, injection and traversal, object-level
//! authorization, Redis and database outages (floods against the rate limits
//! are in `limits.rs`).
//! Each test prints `hardening-figure: <name> <value>` lines that
//! `.ci/hardening.sh` sums into its closing line. Service-to-service
//! authentication is in `hardening/services.rs`, tokens bound to accounts in
//! `hardening/accounts.rs`, names and the word filter in `hardening/names.rs`,
//! uploads in `hardening/uploads.rs`, connections in `hardening/connections.rs`,
//! roles that are down in `hardening/degraded.rs`, a hanging Redis in
//! `hardening/hanging.rs`.

mod accounts;
mod connections;
mod degraded;
mod forwarded;
mod hanging;
mod names;
mod services;
mod uploads;

use crate::common;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use crate::common::{TestApp, sample_mp4, send_json};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "hardening-test-secret-0123456789abcdef";

fn figure(name: &str, value: impl std::fmt::Display) {
    println!("hardening-figure: {name} {value}");
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn claims(sub: i64, nbf: u64, exp: u64) -> Value {
    json!({ "sub": sub.to_string(), "iss": "douyin", "iat": nbf, "nbf": nbf, "exp": exp })
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RS256 token over `claims` signed with a fresh RSA key, and that key's
/// public PEM, from `openssl` (None when it is not installed).
fn rs256(claims: &Value) -> Option<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().ok()?;
    let private = dir.path().join("k.pem");
    let public = dir.path().join("p.pem");
    let ok =
        |args: &[&str]| std::process::Command::new("openssl").args(args).output().is_ok_and(|o| o.status.success());
    let (p, q) = (private.to_str()?, public.to_str()?);
    if !ok(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p]) {
        return None;
    }
    if !ok(&["pkey", "-in", p, "-pubout", "-out", q]) {
        return None;
    }
    let input = format!("{}.{}", b64(br#"{"alg":"RS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
    let data = dir.path().join("input");
    std::fs::write(&data, &input).ok()?;
    let out = std::process::Command::new("openssl").args(["dgst", "-sha256", "-sign", p]).arg(&data).output().ok()?;
    out.status.success().then_some(())?;
    Some((format!("{input}.{}", b64(&out.stdout)), std::fs::read(&public).ok()?))
}

/// Every kind of token the gateway must refuse, named.
fn forged_tokens(user_id: i64, valid: &str) -> Vec<(&'static str, String)> {
    let right = EncodingKey::from_secret(SECRET.as_bytes());
    let t = now();
    let mut tokens = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(claims(user_id, t, t + 3600).to_string().as_bytes())
            ),
        ),
        (
            "HS256 wrong key",
            sign(Algorithm::HS256, &EncodingKey::from_secret(b"not-the-server-key"), claims(user_id, t, t + 3600)),
        ),
        ("HS512 right key", sign(Algorithm::HS512, &right, claims(user_id, t, t + 3600))),
        ("expired", sign(Algorithm::HS256, &right, claims(user_id, t - 7200, t - 3600))),
        ("not yet valid", sign(Algorithm::HS256, &right, claims(user_id, t + 3600, t + 7200))),
        ("truncated", valid[..valid.len() - 6].to_owned()),
        ("payload swapped", {
            let parts: Vec<&str> = valid.split('.').collect();
            format!("{}.{}.{}", parts[0], b64(claims(user_id + 1, t, t + 3600).to_string().as_bytes()), parts[2])
        }),
        ("nonexistent user", sign(Algorithm::HS256, &right, claims(987_654_321, t, t + 3600))),
        ("garbage", "a.b.c".to_owned()),
    ];
    if let Some((token, public)) = rs256(&claims(user_id, t, t + 3600)) {
        tokens.push(("RS256 fresh key", token));
        tokens.push((
            "HS256 public key as secret",
            sign(Algorithm::HS256, &EncodingKey::from_secret(&public), claims(user_id, t, t + 3600)),
        ));
    } else {
        eprintln!("openssl not found: RS256 confusion tokens skipped");
    }
    tokens
}

/// Routes and the parameters that make them otherwise valid.
fn token_routes(video_id: i64, user_id: i64, comment_id: i64) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let v = video_id.to_string();
    let u = user_id.to_string();
    vec![
        ("/douyin/user/", vec![]),
        ("/douyin/favorite/action/", vec![("video_id", v.clone()), ("action_type", "1".into())]),
        (
            "/douyin/comment/action/",
            vec![("video_id", v.clone()), ("action_type", "1".into()), ("comment_text", "hi".into())],
        ),
        (
            "/douyin/comment/action/",
            vec![("video_id", v.clone()), ("action_type", "2".into()), ("comment_id", comment_id.to_string())],
        ),
        ("/douyin/relation/action/", vec![("to_user_id", u.clone()), ("action_type", "1".into())]),
        ("/douyin/relation/friend/list/", vec![("user_id", u.clone())]),
        ("/douyin/message/chat/", vec![("to_user_id", u.clone())]),
        (
            "/douyin/message/action/",
            vec![("to_user_id", u.clone()), ("action_type", "1".into()), ("content", "hi".into())],
        ),
        // Optional-token routes refuse a token that is present but invalid.
        ("/douyin/feed/", vec![]),
        ("/douyin/publish/list/", vec![("user_id", u.clone())]),
        ("/douyin/favorite/list/", vec![("user_id", u.clone())]),
        ("/douyin/comment/list/", vec![("video_id", v)]),
        ("/douyin/relation/follow/list/", vec![("user_id", u.clone())]),
        ("/douyin/relation/follower/list/", vec![("user_id", u)]),
        ("/douyin/rank/videos/", vec![]),
        ("/douyin/rank/users/", vec![]),
    ]
}

const LEAK_MARKERS: &[&str] = &[
    "SELECT",
    "INSERT INTO",
    "sqlx",
    "sqlite",
    "mysql",
    "panicked",
    "backtrace",
    ".rs:",
    "/home/",
    "/tmp/",
    "/work/",
    "/root/",
    "127.0.0.1:",
    "tonic",
    "root:x:",
];

/// Any internal detail in a response, by marker: in the status message of a
/// JSON body (the rest echoes stored text and public URLs), anywhere else.
fn leak(body: &str) -> Option<&'static str> {
    let text = match serde_json::from_str::<Value>(body) {
        Ok(json) => json["status_msg"].as_str().unwrap_or_default().to_owned(),
        Err(_) => body.to_owned(),
    };
    LEAK_MARKERS.iter().copied().find(|m| text.contains(m))
}

/// Sends a request and returns (HTTP status, body text, leak marker).
async fn probe(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let response = request.send().await.expect("the gateway answers");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn forged_tokens_are_refused_on_every_route_that_reads_one() {
    let app = TestApp::spawn_with(|c| c.jwt_secret = Some(SECRET.into())).await;
    let (alice, alice_token) = app.register("forge_alice").await;
    let (bob, _) = app.register("forge_bob").await;
    let published = app.publish(&alice_token, "forgery target", sample_mp4()).await;
    assert_eq!(published["status_code"], 0, "{published}");
    let video_id = app.get("/douyin/publish/list/", &[("user_id", &alice.to_string())]).await["video_list"][0]["id"]
        .as_i64()
        .unwrap();
    let comment = app
        .post_query(
            "/douyin/comment/action/",
            &[
                ("token", &alice_token),
                ("video_id", &video_id.to_string()),
                ("action_type", "1"),
                ("comment_text", "mine"),
            ],
        )
        .await;
    let comment_id = comment["comment"]["id"].as_i64().unwrap();

    let tokens = forged_tokens(alice, &alice_token);
    let routes = token_routes(video_id, bob, comment_id);
    let (mut refused, mut total) = (0, 0);
    for (kind, token) in &tokens {
        for (path, params) in &routes {
            for bearer in [false, true] {
                let mut request = app.http.post(app.url(path)).query(params);
                request = if bearer { request.bearer_auth(token) } else { request.query(&[("token", token)]) };
                let (status, body) = probe(request).await;
                let reply: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                total += 1;
                if status == StatusCode::OK && reply["status_code"] == 401 && leak(&body).is_none() {
                    refused += 1;
                } else {
                    eprintln!("NOT refused: {kind} on {path} (bearer {bearer}): {status} {body}");
                }
            }
        }
        // Publish: the token in the multipart body.
        let form = reqwest::multipart::Form::new()
            .text("token", token.clone())
            .text("title", "forged")
            .part("data", reqwest::multipart::Part::bytes(sample_mp4()).file_name("a.mp4"));
        let (status, body) = probe(app.http.post(app.url("/douyin/publish/action/")).multipart(form)).await;
        total += 1;
        if status == StatusCode::OK && body.contains("\"status_code\":401") {
            refused += 1;
        } else {
            eprintln!("NOT refused: {kind} on publish: {status} {body}");
        }
        // WebSocket: refused before the upgrade.
        let (status, _) = probe(app.http.get(app.url("/douyin/message/ws/")).query(&[("token", token)])).await;
        total += 1;
        if status == StatusCode::UNAUTHORIZED {
            refused += 1;
        } else {
            eprintln!("NOT refused: {kind} on ws: {status}");
        }
    }
    // Nothing was changed by any of them.
    let list = app.get("/douyin/comment/list/", &[("video_id", &video_id.to_string())]).await;
    assert_eq!(list["comment_list"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        app.get("/douyin/publish/list/", &[("user_id", &alice.to_string())]).await["video_list"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The genuine token still works.
    assert_eq!(app.get("/douyin/user/", &[("token", &alice_token)]).await["status_code"], 0);
    figure("forged", format!("{refused}/{total}"));
    assert_eq!(refused, total, "every forged token must be refused");
    app.stop().await;
}

/// Texts that must be stored and returned exactly.
fn hostile_texts() -> Vec<String> {
    vec![
        "' OR '1'='1".into(),
        "\"; DROP TABLE users; --".into(),
        "1; SELECT * FROM users WHERE 'a' LIKE '%".into(),
        "\\' \\\" \\\\ %_ `backtick`".into(),
        "\u{202E}evil\u{200F}txt\u{202C}".into(),
        "👩‍👩‍👧‍👦🔥🇨🇳".into(),
        "e\u{301}\u{308}a\u{30A}\u{20DD}".into(),
        "<script>alert(1)</script>&amp;".into(),
        "../../etc/passwd".into(),
        "line\r\nbreak\ttab".into(),
        "\u{FEFF}bom\u{200B}zero width".into(),
    ]
}

#[tokio::test]
async fn hostile_text_round_trips_and_nothing_leaks() {
    let app = TestApp::spawn().await;
    let mut leaks = 0;
    let mut checked = 0;
    let mut check = |what: &str, status: StatusCode, body: &str| {
        checked += 1;
        assert!(!status.is_server_error(), "{what}: {status} {body}");
        if let Some(marker) = leak(body) {
            leaks += 1;
            eprintln!("LEAK {marker:?} in {what}: {body}");
        }
    };
    let (alice, token) = app.register("text_alice").await;
    let (bob, _) = app.register("text_bob").await;

    for text in hostile_texts() {
        // Usernames (1-32 characters): refused when they carry control or
        // format characters, else stored and returned in their NFKC form.
        let name: String = text.chars().take(32).collect();
        let (status, body) = probe(
            app.http
                .post(app.url("/douyin/user/register/"))
                .form(&[("username", name.as_str()), ("password", "secret123")]),
        )
        .await;
        check("register", status, &body);
        let reply: Value = serde_json::from_str(&body).unwrap();
        if reply["status_code"] == 0 {
            let info = app.get("/douyin/user/", &[("token", reply["token"].as_str().unwrap())]).await;
            let stored = douyin_kit::text::nfkc(&name);
            assert_eq!(info["user"]["name"].as_str(), Some(stored.as_str()), "username {name:?}");
        }
        // Titles.
        let published = app.publish(&token, &text, sample_mp4()).await;
        check("publish", StatusCode::OK, &published.to_string());
        let list = app.get("/douyin/publish/list/", &[("user_id", &alice.to_string())]).await;
        let videos = list["video_list"].as_array().unwrap();
        if published["status_code"] == 0 {
            assert!(videos.iter().any(|v| v["title"].as_str() == Some(text.as_str())), "title {text:?} in {list}");
        }
        let video_id = videos[0]["id"].as_i64().unwrap().to_string();
        // Comments, as a form body.
        let (status, body) = probe(app.http.post(app.url("/douyin/comment/action/")).form(&[
            ("token", token.as_str()),
            ("video_id", &video_id),
            ("action_type", "1"),
            ("comment_text", &text),
        ]))
        .await;
        check("comment", status, &body);
        let comments = app.get("/douyin/comment/list/", &[("video_id", &video_id)]).await;
        assert!(
            comments["comment_list"].as_array().unwrap().iter().any(|c| c["content"].as_str() == Some(text.as_str())),
            "comment {text:?} in {comments}"
        );
        // Messages, as JSON.
        let sent = app
            .post_json(
                "/douyin/message/action/",
                json!({"token": token, "to_user_id": bob, "action_type": 1, "content": text}),
            )
            .await;
        assert_eq!(sent["status_code"], 0, "{sent}");
        let chat = app.get("/douyin/message/chat/", &[("token", &token), ("to_user_id", &bob.to_string())]).await;
        assert_eq!(chat["message_list"].as_array().unwrap().last().unwrap()["content"].as_str(), Some(text.as_str()));
    }

    // NUL and traversal in titles: refused or stored exactly, never an error.
    for title in ["a\0b", "../../../../etc/passwd\0.mp4", "..\\..\\windows"] {
        let published = app.publish(&token, title, sample_mp4()).await;
        check("publish title", StatusCode::OK, &published.to_string());
        if published["status_code"] == 0 {
            let list = app.get("/douyin/publish/list/", &[("user_id", &alice.to_string())]).await;
            assert!(list["video_list"].as_array().unwrap().iter().any(|v| v["title"].as_str() == Some(title)));
        }
    }
    // Traversal in media and static paths.
    for path in [
        "/media/../../../../etc/passwd",
        "/media/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/media/..%2f..%2f..%2fetc%2fpasswd",
        "/media/videos/%00.mp4",
        "/media/videos/a%00b",
        "/static/..%2f..%2fCargo.toml",
        "/douyin/../../etc/passwd",
    ] {
        let (status, body) = probe(app.http.get(app.url(path))).await;
        check(path, status, &body);
        assert!(status.is_client_error(), "{path}: {status}");
    }
    // Huge, negative and malformed numbers in every numeric parameter.
    for value in [
        "-1",
        "0",
        "-9223372036854775808",
        "9223372036854775807",
        "99999999999999999999999",
        "1e30",
        "0x10",
        " 7 ",
        "NaN",
        "%00",
    ] {
        for (path, key) in [
            ("/douyin/feed/", "latest_time"),
            ("/douyin/user/", "user_id"),
            ("/douyin/publish/list/", "user_id"),
            ("/douyin/favorite/action/", "video_id"),
            ("/douyin/favorite/list/", "user_id"),
            ("/douyin/comment/action/", "comment_id"),
            ("/douyin/comment/list/", "video_id"),
            ("/douyin/relation/action/", "to_user_id"),
            ("/douyin/relation/follow/list/", "user_id"),
            ("/douyin/message/chat/", "pre_msg_time"),
            ("/douyin/message/action/", "to_user_id"),
            ("/douyin/rank/videos/", "limit"),
        ] {
            let params =
                [("token", token.as_str()), ("action_type", "2"), ("video_id", "1"), ("to_user_id", "1"), (key, value)];
            let mut query: Vec<(&str, &str)> = params.iter().copied().filter(|(k, _)| *k != key).collect();
            query.insert(0, (key, value));
            let (status, body) = probe(app.http.post(app.url(path)).query(&query)).await;
            check(path, status, &body);
            assert_eq!(status, StatusCode::OK, "{path} {key}={value}: {body}");
        }
    }
    figure("leaks", leaks);
    figure("leak-checked", checked);
    assert_eq!(leaks, 0);
    app.stop().await;
}

#[tokio::test]
async fn users_cannot_act_on_each_others_objects() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.register("owner_alice").await;
    let (_, bob_token) = app.register("owner_bob").await;
    app.publish(&alice_token, "owned", sample_mp4()).await;
    let video_id =
        app.get("/douyin/publish/list/", &[("user_id", &alice.to_string())]).await["video_list"][0]["id"].to_string();
    let comment = app
        .post_query(
            "/douyin/comment/action/",
            &[("token", &alice_token), ("video_id", &video_id), ("action_type", "1"), ("comment_text", "alice's")],
        )
        .await;
    let comment_id = comment["comment"]["id"].to_string();

    let deleted = app
        .post_query(
            "/douyin/comment/action/",
            &[("token", &bob_token), ("video_id", &video_id), ("action_type", "2"), ("comment_id", &comment_id)],
        )
        .await;
    assert_eq!(deleted["status_code"], 403, "{deleted}");
    let list = app.get("/douyin/comment/list/", &[("video_id", &video_id)]).await;
    assert_eq!(list["comment_list"][0]["id"].to_string(), comment_id);

    let friends =
        app.get("/douyin/relation/friend/list/", &[("token", &bob_token), ("user_id", &alice.to_string())]).await;
    assert_ne!(friends["status_code"], 0, "{friends}");
    assert_eq!(friends["user_list"], json!([]));
    app.stop().await;
}

struct RedisServer {
    child: std::process::Child,
}

impl RedisServer {
    /// A redis-server on `port`, once it accepts connections.
    async fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        RedisServer { child }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP or SIGCONT: a Redis that hangs (connections accepted, nothing
    /// answered), then recovers.
    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The video's favorite count as the feed shows it.
async fn favorite_count(app: &TestApp, video_id: i64) -> Option<i64> {
    let feed = app.get("/douyin/feed/", &[]).await;
    feed["video_list"].as_array()?.iter().find(|v| v["id"] == video_id)?["favorite_count"].as_i64()
}

/// A request during an outage: answered, not a server error, no leak.
fn clean(status: StatusCode, body: &str) -> bool {
    status == StatusCode::OK && serde_json::from_str::<Value>(body).is_ok() && leak(body).is_none()
}

#[tokio::test]
#[ignore = "needs redis-server on PATH (a Redis it starts and stops)"]
async fn a_stored_message_is_a_sent_message_while_redis_is_down() {
    let port = common::free_port();
    let redis = RedisServer::start(port).await;
    let app = TestApp::spawn_with(|c| c.redis_url = Some(format!("redis://127.0.0.1:{port}"))).await;
    let (alice_id, alice) = app.register("push_alice").await;
    let (bob, bob_token) = app.register("push_bob").await;
    let send = |content: &str| {
        app.http.post(app.url("/douyin/message/action/")).query(&[
            ("token", alice.as_str()),
            ("to_user_id", &bob.to_string()),
            ("action_type", "1"),
            ("content", content),
        ])
    };
    let reply: Value = send_json(send("before")).await;
    assert_eq!(reply["status_code"], 0, "{reply}");

    // Live push goes through Redis; the message row does not. Once it is
    // stored the send has succeeded, whatever happens to the push: with Redis
    // hanging and with it gone.
    redis.signal("-STOP");
    let (status, body) = probe(send("hanging")).await;
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, reply["status_code"].as_i64()), (StatusCode::OK, Some(0)), "send, Redis hanging: {body}");
    redis.signal("-CONT");
    redis.stop();
    let (status, body) = probe(send("during")).await;
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, reply["status_code"].as_i64()), (StatusCode::OK, Some(0)), "send, Redis gone: {body}");
    let history =
        app.get("/douyin/message/chat/", &[("token", bob_token.as_str()), ("to_user_id", &alice_id.to_string())]).await;
    let contents: Vec<&str> =
        history["message_list"].as_array().unwrap().iter().filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(contents, ["before", "hanging", "during"], "{history}");
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs redis-server on PATH (a Redis it starts and stops)"]
async fn a_message_stored_while_redis_is_away_is_pushed_once_it_is_back() {
    use crate::relation::{connect, pushes_until_quiet, send};
    let port = common::free_port();
    let redis = RedisServer::start(port).await;
    let app = TestApp::spawn_with(|c| c.redis_url = Some(format!("redis://127.0.0.1:{port}"))).await;
    let (_, alice) = app.register("away_alice").await;
    let (bob, bob_token) = app.register("away_bob").await;
    let mut socket = connect(&app.base, &bob_token).await;
    assert_eq!(send(&app, &alice, bob, "before").await["status_code"], 0);
    assert_eq!(pushes_until_quiet(&mut socket, Duration::from_millis(500)).await, ["before"]);

    // Redis goes away: the message is stored, its push cannot be published,
    // and this gateway's subscription is gone too.
    redis.stop();
    assert_eq!(send(&app, &alice, bob, "while away").await["status_code"], 0);
    let redis = RedisServer::start(port).await;
    // Once Redis is back the session is sent what it missed, once, and live
    // pushes go on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut received = Vec::new();
    while !received.iter().any(|c| c == "while away") && tokio::time::Instant::now() < deadline {
        received.extend(pushes_until_quiet(&mut socket, Duration::from_millis(200)).await);
    }
    assert_eq!(received, ["while away"], "the stored message reaches the open session once Redis is back");
    let live_deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(send(&app, &alice, bob, "after").await["status_code"], 0);
        let more = pushes_until_quiet(&mut socket, Duration::from_millis(1500)).await;
        if !more.is_empty() {
            assert!(more.iter().all(|c| c == "after"), "nothing twice: {more:?}");
            break;
        }
        // The publisher's connection may still be reconnecting: that push is
        // caught up later, so try until one arrives live.
        assert!(tokio::time::Instant::now() < live_deadline, "live pushes resume");
    }
    figure("push catch-up after a Redis restart", "1/1 stored message delivered once");
    redis.stop();
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs redis-server on PATH (a Redis it starts and stops)"]
async fn redis_stopped_mid_run_then_counts_are_exact() {
    let port = common::free_port();
    let redis = RedisServer::start(port).await;
    let app = TestApp::spawn_with(|c| {
        c.redis_url = Some(format!("redis://127.0.0.1:{port}"));
        c.rate_limit_ip_per_sec = 10_000;
        c.rate_limit_user_per_sec = 10_000;
    })
    .await;
    let (_, author) = app.register("redis_author").await;
    app.publish(&author, "counted", sample_mp4()).await;
    let video_id = app.get("/douyin/feed/", &[]).await["video_list"][0]["id"].as_i64().unwrap();
    let mut likers = Vec::new();
    for i in 0..6 {
        likers.push(app.register(&format!("redis_fan{i}")).await.1);
    }
    let like = |token: &str, action: &str| {
        app.http.post(app.url("/douyin/favorite/action/")).query(&[
            ("token", token),
            ("video_id", &video_id.to_string()),
            ("action_type", action),
        ])
    };
    let mut liked = 0;
    for token in &likers[..3] {
        let reply: Value = send_json(like(token, "1")).await;
        assert_eq!(reply["status_code"], 0);
        liked += 1;
    }
    assert_eq!(favorite_count(&app, video_id).await, Some(liked));

    redis.stop();
    let mut answered = 0;
    for token in &likers[3..] {
        let (status, body) = probe(like(token, "1")).await;
        assert!(clean(status, &body), "like during the outage: {status} {body}");
        if serde_json::from_str::<Value>(&body).unwrap()["status_code"] == 0 {
            liked += 1;
        }
        answered += 1;
    }
    for path in ["/douyin/feed/", "/douyin/rank/videos/", "/douyin/rank/users/"] {
        let (status, body) = probe(app.http.get(app.url(path))).await;
        assert!(clean(status, &body), "{path} during the outage: {status} {body}");
        answered += 1;
    }
    let (status, body) = probe(app.http.get(app.url("/douyin/user/")).query(&[("token", &author)])).await;
    assert!(clean(status, &body), "user info during the outage: {status} {body}");

    let redis = RedisServer::start(port).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if favorite_count(&app, video_id).await == Some(liked) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counts did not come back exact: want {liked}, got {:?}",
            favorite_count(&app, video_id).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And they keep counting exactly.
    let reply: Value = send_json(like(&likers[0], "2")).await;
    assert_eq!(reply["status_code"], 0);
    assert_eq!(favorite_count(&app, video_id).await, Some(liked - 1));
    figure("fault", format!("redis-stopped answered={answered}"));
    app.stop().await;
    redis.stop();
}

/// A TCP proxy that can cut every connection and refuse new ones.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = tokio::sync::watch::channel(false);
        let cut = Arc::new(cut);
        let sender = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *sender.borrow() {
                    continue; // dropped: connection closed at once
                }
                let upstream = upstream.clone();
                let mut cut = sender.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Proxy { addr, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_DATABASE_URL (a MariaDB server)"]
async fn database_cut_mid_run_then_recovers_without_restart() {
    let server = common::needs("DOUYIN_TEST_DATABASE_URL");
    // mysql://user@host:port → host:port
    let authority = server.split("://").nth(1).unwrap().split('/').next().unwrap();
    let upstream = authority.rsplit('@').next().unwrap().to_owned();
    let proxy = Proxy::start(upstream.clone()).await;
    let proxied = proxy.addr.to_string();
    let app = TestApp::spawn_with(|c| {
        let direct = c.database_url.clone().unwrap();
        c.database_url = Some(direct.replacen(&upstream, &proxied, 1));
        c.rpc_timeout_ms = 3000;
    })
    .await;
    let (alice, token) = app.register("db_alice").await;

    proxy.set_cut(true);
    let mut refusals = 0;
    for i in 0..4 {
        let started = tokio::time::Instant::now();
        let (status, body) = probe(
            app.http
                .post(app.url("/douyin/user/register/"))
                .form(&[("username", format!("db_cut{i}").as_str()), ("password", "secret123")]),
        )
        .await;
        assert!(clean(status, &body), "register during the cut: {status} {body}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        assert_ne!(reply["status_code"], 0, "nothing can be stored while the database is cut: {body}");
        assert!(started.elapsed() < Duration::from_secs(20), "refused in bounded time");
        let (status, body) =
            probe(app.http.get(app.url("/douyin/publish/list/")).query(&[("user_id", alice.to_string())])).await;
        assert!(clean(status, &body), "list during the cut: {status} {body}");
        refusals += 1;
    }

    proxy.set_cut(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reply =
            app.post_form("/douyin/user/register/", &[("username", "db_back"), ("password", "secret123")]).await;
        if reply["status_code"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no recovery: {reply}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(app.get("/douyin/user/", &[("token", &token)]).await["user"]["id"], alice);
    figure("fault", format!("database-cut refusals={refusals}"));
    app.stop().await;
}
