//! Routes 2–4 and the transport rules, over real HTTP.

use crate::common;

use crate::common::{TestApp, assert_refused, split::Split};
use base64::Engine;
use douyin_kit::Role;
use serde_json::json;

#[tokio::test]
async fn register_login_and_info() {
    let app = TestApp::spawn().await;
    let (id, token) = app.register("alice").await;
    assert!(id > 0);

    let login = app.post_query("/douyin/user/login/", &[("username", "alice"), ("password", "secret123")]).await;
    assert_eq!(login["status_code"], 0, "{login}");
    assert_eq!(login["user_id"], id);
    assert!(login["token"].as_str().unwrap().len() > 20);

    let me = app.get("/douyin/user/", &[("token", &token)]).await;
    assert_eq!(me["status_code"], 0, "{me}");
    let user = &me["user"];
    assert_eq!(user["id"], id);
    assert_eq!(user["name"], "alice");
    for key in ["follow_count", "follower_count", "total_favorited", "work_count", "favorite_count"] {
        assert_eq!(user[key], 0, "{key} in {user}");
    }
    assert_eq!(user["is_follow"], false);
    assert!(user["avatar"].as_str().unwrap().starts_with("http://"));
    assert!(user["background_image"].as_str().unwrap().starts_with("http://"));
    assert_eq!(user["signature"], "");

    // Another user's profile by user_id.
    let (bob, _) = app.register("bob").await;
    let other = app.get("/douyin/user/", &[("user_id", &bob.to_string()), ("token", &token)]).await;
    assert_eq!(other["user"]["id"], bob);
    assert_eq!(other["user"]["name"], "bob");
    app.stop().await;
}

#[tokio::test]
async fn parameters_arrive_in_every_encoding() {
    let app = TestApp::spawn().await;
    let form = app.post_form("/douyin/user/register/", &[("username", "form-user"), ("password", "secret123")]).await;
    assert_eq!(form["status_code"], 0, "{form}");
    let json_body =
        app.post_json("/douyin/user/register/", json!({"username": "json-user", "password": "secret123"})).await;
    assert_eq!(json_body["status_code"], 0, "{json_body}");
    let multipart = reqwest::multipart::Form::new().text("username", "multi-user").text("password", "secret123");
    let response = app.http.post(app.url("/douyin/user/register/")).multipart(multipart).send().await.unwrap();
    let multipart = common::json(response).await;
    assert_eq!(multipart["status_code"], 0, "{multipart}");

    // Without the trailing slash, answered directly.
    let login = app.post_form("/douyin/user/login", &[("username", "form-user"), ("password", "secret123")]).await;
    assert_eq!(login["status_code"], 0, "{login}");
    let token = login["token"].as_str().unwrap();

    // Bearer token.
    let response = app.http.get(app.url("/douyin/user/")).bearer_auth(token).send().await.unwrap();
    let me = common::json(response).await;
    assert_eq!(me["user"]["name"], "form-user", "{me}");

    // First value wins.
    let first = app
        .post_query("/douyin/user/login/?username=json-user", &[("username", "nobody"), ("password", "secret123")])
        .await;
    assert_eq!(first["status_code"], 0, "{first}");
    assert_eq!(first["user_id"], json_body["user_id"]);
    app.stop().await;
}

#[tokio::test]
async fn bad_credentials_are_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    app.register("carol").await;
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![("username", "carol".into()), ("password", "secret123".into())], "taken"),
        (vec![("username", "".into()), ("password", "secret123".into())], "username"),
        (vec![("username", "x".repeat(33)), ("password", "secret123".into())], "username"),
        (vec![("username", "dave".into()), ("password", "12345".into())], "password"),
        (vec![("username", "dave".into()), ("password", "p".repeat(33))], "password"),
        (vec![("password", "secret123".into())], "username"),
        (vec![("username", "dave".into())], "password"),
    ];
    for (params, needle) in cases {
        let query: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = app.post_query("/douyin/user/register/", &query).await;
        assert_refused(&reply, needle);
        assert_eq!(reply["user_id"], 0, "{reply}");
        assert_eq!(reply["token"], "", "{reply}");
    }
    // 1 and 32 characters are fine.
    app.post_query("/douyin/user/register/", &[("username", "e"), ("password", "secret")]).await;
    let edge =
        app.post_query("/douyin/user/register/", &[("username", &"z".repeat(32)), ("password", &"p".repeat(32))]).await;
    assert_eq!(edge["status_code"], 0, "{edge}");

    let wrong = app.post_query("/douyin/user/login/", &[("username", "carol"), ("password", "wrong-pass")]).await;
    assert_refused(&wrong, "incorrect");
    assert_eq!(wrong["token"], "");
    let unknown = app.post_query("/douyin/user/login/", &[("username", "nobody"), ("password", "secret123")]).await;
    assert_refused(&unknown, "incorrect");
    assert_eq!(unknown["user_id"], 0);
    assert_eq!(wrong["status_msg"], unknown["status_msg"], "unknown and wrong look the same");

    let missing_user = app.get("/douyin/user/", &[("user_id", "99999")]).await;
    assert_refused(&missing_user, "token");
    app.stop().await;
}

fn forge(claims: serde_json::Value, header: serde_json::Value, key: &[u8]) -> String {
    use jsonwebtoken::{EncodingKey, Header};
    let _ = header;
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
}

#[tokio::test]
async fn forged_and_broken_tokens_are_refused_everywhere() {
    let app = TestApp::spawn().await;
    let (id, token) = app.register("erin").await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = jsonwebtoken::get_current_timestamp();
    let payload = token.split('.').nth(1).unwrap();
    let claims = |sub: i64, exp: u64, nbf: u64| json!({"sub": sub.to_string(), "iss": "douyin", "iat": now, "nbf": nbf, "exp": exp});
    let key = std::fs::read(app.config.data_dir.join("jwt.key")).unwrap();
    let bad_tokens = vec![
        ("alg none", format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), payload)),
        ("wrong key", forge(claims(id, now + 600, now), json!({}), b"not-the-key-not-the-key-not-the-k")),
        ("expired", forge(claims(id, now - 600, now - 1200), json!({}), &key)),
        ("not yet valid", forge(claims(id, now + 6000, now + 3000), json!({}), &key)),
        ("unknown user", forge(claims(987_654, now + 600, now), json!({}), &key)),
        ("truncated", token[..token.len() - 5].to_owned()),
        ("garbage", "garbage".to_owned()),
    ];
    let routes: &[(&str, &[(&str, &str)])] = &[
        ("/douyin/user/", &[]),
        ("/douyin/favorite/action/", &[("video_id", "1"), ("action_type", "1")]),
        ("/douyin/comment/action/", &[("video_id", "1"), ("action_type", "1"), ("comment_text", "hi")]),
        ("/douyin/relation/action/", &[("to_user_id", "1"), ("action_type", "1")]),
        ("/douyin/relation/friend/list/", &[("user_id", "1")]),
        ("/douyin/message/chat/", &[("to_user_id", "1")]),
        ("/douyin/message/action/", &[("to_user_id", "1"), ("action_type", "1"), ("content", "hi")]),
        ("/douyin/feed/", &[]),
        ("/douyin/publish/list/", &[("user_id", "1")]),
    ];
    for (what, bad) in &bad_tokens {
        for (route, params) in routes {
            let mut query: Vec<(&str, &str)> = params.to_vec();
            query.push(("token", bad));
            let reply = app.post_query(route, &query).await;
            assert_eq!(reply["status_code"], 401, "{what} on {route}: {reply}");
        }
    }
    // Missing token: refused where a user is needed, anonymous elsewhere.
    let reply = app.post_query("/douyin/favorite/action/", &[("video_id", "1"), ("action_type", "1")]).await;
    assert_refused(&reply, "token");
    let feed = app.get("/douyin/feed/", &[]).await;
    assert_eq!(feed["status_code"], 0, "{feed}");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_make_one_user() {
    let app = TestApp::spawn().await;
    let attempts =
        (0..20).map(|_| app.post_query("/douyin/user/register/", &[("username", "race"), ("password", "secret123")]));
    let replies = futures::future::join_all(attempts).await;
    let winners: Vec<_> = replies.iter().filter(|r| r["status_code"] == 0).collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    for loser in replies.iter().filter(|r| r["status_code"] != 0) {
        assert_refused(loser, "taken");
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_oversized_bodies_answer_in_json() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 4096).await;
    let response = app.http.get(app.url("/douyin/nothing/here/")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body = common::json(response).await;
    assert_ne!(body["status_code"], 0);

    let big = "x".repeat(10_000);
    let response = app
        .http
        .post(app.url("/douyin/user/register/"))
        .form(&[("username", "big"), ("password", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body = common::json(response).await;
    assert_eq!(body["status_code"], 413, "{body}");
    app.stop().await;
}

/// The same scenario with the gateway and the user role in two servers on two
/// ports, talking gRPC over TCP.
#[tokio::test]
async fn auth_across_a_real_grpc_hop() {
    let split = Split::start(&[Role::User, Role::Counter, Role::Relation], |_| {}).await;
    let (base, http) = (&split.base, &split.http);

    let reply = common::json(
        http.post(format!("{base}/douyin/user/register/?username=hop&password=secret123")).send().await.unwrap(),
    )
    .await;
    assert_eq!(reply["status_code"], 0, "{reply}");
    let token = reply["token"].as_str().unwrap().to_owned();
    let taken = common::json(
        http.post(format!("{base}/douyin/user/register/?username=hop&password=secret123")).send().await.unwrap(),
    )
    .await;
    assert_refused(&taken, "taken");
    let wrong = common::json(
        http.post(format!("{base}/douyin/user/login/?username=hop&password=wrong-pass")).send().await.unwrap(),
    )
    .await;
    assert_refused(&wrong, "incorrect");
    let me = common::json(http.get(format!("{base}/douyin/user/?token={token}")).send().await.unwrap()).await;
    assert_eq!(me["user"]["name"], "hop", "{me}");
    let forged = common::json(http.get(format!("{base}/douyin/user/?token={}x", token)).send().await.unwrap()).await;
    assert_eq!(forged["status_code"], 401);

    split.stop().await;
}
