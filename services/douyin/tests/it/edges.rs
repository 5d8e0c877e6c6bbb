//! Contract edges real clients hit: duplicated JSON keys, bodies that cannot
//! be parsed, refusals outside the routes (405, 414, 431), long lists, chat
//! with an unknown or own id, and ids sent in float notation.

use crate::common::{TestApp, assert_refused, json};
use reqwest::{StatusCode, header::CONTENT_TYPE};
use serde_json::{Value, json};

/// The app's database, opened directly (to stage long lists quickly).
async fn database(config: &douyin_kit::Config) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url =
        config.database_url.clone().unwrap_or_else(|| format!("sqlite://{}/douyin.db", config.data_dir.display()));
    sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap()
}

/// Runs `INSERT INTO {table} ({columns}) VALUES …` for `rows`, in batches.
async fn insert(db: &sqlx::AnyPool, table: &str, columns: &str, rows: Vec<Vec<String>>) {
    for batch in rows.chunks(200) {
        let values: Vec<String> = batch.iter().map(|row| format!("({})", row.join(", "))).collect();
        let sql = format!("INSERT INTO {table} ({columns}) VALUES {}", values.join(", "));
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(db).await.unwrap();
    }
}

fn quoted(text: &str) -> String {
    format!("'{text}'")
}

#[tokio::test]
async fn the_first_of_duplicated_json_keys_wins() {
    let app = TestApp::spawn().await;
    let body = r#"{"username": "dup_first", "username": "dup_second", "password": "secret123", "password": "x"}"#;
    let response = app
        .http
        .post(app.url("/douyin/user/register/"))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let registered = json(response).await;
    assert_eq!(registered["status_code"], 0, "{registered}");
    let login = app.post_form("/douyin/user/login/", &[("username", "dup_first"), ("password", "secret123")]).await;
    assert_eq!(login["status_code"], 0, "the first username and password were used: {login}");
    let second = app.post_form("/douyin/user/login/", &[("username", "dup_second"), ("password", "secret123")]).await;
    assert_ne!(second["status_code"], 0, "{second}");
    app.stop().await;
}

/// Every route with keys besides the status, and those keys' empty values.
fn routes_and_keys() -> Vec<(&'static str, Vec<(&'static str, Value)>)> {
    let user = || json!({"id": 0, "name": "", "follow_count": 0, "is_follow": false});
    vec![
        ("/douyin/feed/", vec![("video_list", json!([])), ("next_time", json!(0))]),
        ("/douyin/user/register/", vec![("user_id", json!(0)), ("token", json!(""))]),
        ("/douyin/user/login/", vec![("user_id", json!(0)), ("token", json!(""))]),
        ("/douyin/user/", vec![("user", user())]),
        ("/douyin/publish/list/", vec![("video_list", json!([]))]),
        ("/douyin/favorite/list/", vec![("video_list", json!([]))]),
        ("/douyin/comment/action/", vec![("comment", json!({"id": 0, "content": "", "create_date": ""}))]),
        ("/douyin/comment/list/", vec![("comment_list", json!([]))]),
        ("/douyin/relation/follow/list/", vec![("user_list", json!([]))]),
        ("/douyin/relation/follower/list/", vec![("user_list", json!([]))]),
        ("/douyin/relation/friend/list/", vec![("user_list", json!([]))]),
        ("/douyin/message/chat/", vec![("message_list", json!([]))]),
        ("/douyin/favorite/action/", vec![]),
        ("/douyin/relation/action/", vec![]),
        ("/douyin/message/action/", vec![]),
    ]
}

#[track_caller]
fn assert_keys(reply: &Value, keys: &[(&str, Value)], what: &str) {
    assert_ne!(reply["status_code"], 0, "{what}: {reply}");
    for (key, empty) in keys {
        match empty {
            Value::Object(fields) => {
                for (field, value) in fields {
                    assert_eq!(&reply[key][field], value, "{what}: {key}.{field} in {reply}");
                }
            }
            value => assert_eq!(&reply[key], value, "{what}: {key} in {reply}"),
        }
    }
}

#[tokio::test]
async fn refusals_of_unreadable_bodies_carry_the_routes_keys() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 4096).await;
    let bodies: [(&str, &str, &[u8]); 4] = [
        ("bad JSON", "application/json", b"{\"user_id\": "),
        ("a JSON array", "application/json", b"[1, 2, 3]"),
        ("broken multipart", "multipart/form-data; boundary=XyZ", b"--XyZ\r\nContent-Disposition: form-da"),
        ("multipart without a boundary", "multipart/form-data", b"user_id=1"),
    ];
    let mut checked = 0;
    for (path, keys) in routes_and_keys() {
        for (what, content_type, body) in bodies {
            let response = app
                .http
                .post(app.url(path))
                .header(CONTENT_TYPE, content_type)
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path} with {what}");
            let reply = json(response).await;
            assert_keys(&reply, &keys, &format!("{path} with {what}"));
            assert_eq!(reply["status_code"], 400, "{path} with {what}: {reply}");
            checked += 1;
        }
        // Over the body limit: 413, still with the route's keys.
        let big = vec![b'a'; 10_000];
        let response = app
            .http
            .post(app.url(path))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert_keys(&json(response).await, &keys, &format!("{path} over the body limit"));
    }
    assert_eq!(checked, 60);
    app.stop().await;
}

#[tokio::test]
async fn refusals_outside_the_routes_are_json_in_the_contracts_shape() {
    let app = TestApp::spawn().await;
    let response = app.http.delete(app.url("/douyin/feed/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("POST"), "Allow: {allow}");
    let reply = json(response).await;
    assert_eq!(reply["status_code"], 405);
    assert_refused(&reply, "DELETE");

    let long = format!("/douyin/feed/?pad={}", "a".repeat(40_000));
    let response = app.http.get(app.url(&long)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(json(response).await["status_code"], 414);

    let response = app.http.get(app.url("/douyin/feed/")).header("x-pad", "b".repeat(40_000)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(json(response).await["status_code"], 431);

    // The longest message the contract allows still fits in a query string.
    let (_, token) = app.register("long_writer").await;
    let (peer, _) = app.register("long_reader").await;
    let content = "😀".repeat(1000);
    let sent = app
        .post_query(
            "/douyin/message/action/",
            &[("token", &token), ("to_user_id", &peer.to_string()), ("action_type", "1"), ("content", &content)],
        )
        .await;
    assert_eq!(sent["status_code"], 0, "{sent}");
    app.stop().await;
}

#[tokio::test]
async fn lists_are_never_cut() {
    let app = TestApp::spawn().await;
    let (author, _) = app.register("prolific").await;
    let (fan, fan_token) = app.register("devoted").await;
    let db = database(&app.config).await;
    let videos: Vec<Vec<String>> = (0..520)
        .map(|i| {
            let at = 1_600_000_000_000_i64 + i;
            vec![author.to_string(), quoted(&format!("v{i}")), quoted(&format!("videos/v{i}.mp4")), at.to_string()]
        })
        .collect();
    insert(&db, "videos", "author_id, title, play_key, published_at_ms", videos).await;
    let list = app.get("/douyin/publish/list/", &[("user_id", &author.to_string())]).await;
    assert_eq!(list["video_list"].as_array().unwrap().len(), 520, "every video of the author");
    assert_eq!(list["video_list"][0]["title"], "v519", "newest first");

    let ids: Vec<i64> = list["video_list"].as_array().unwrap().iter().map(|v| v["id"].as_i64().unwrap()).collect();
    let likes = ids.iter().map(|id| vec![fan.to_string(), id.to_string(), (1_700_000_000_000 + id).to_string()]);
    insert(&db, "favorites", "user_id, video_id, created_at_ms", likes.collect()).await;
    let liked = app.get("/douyin/favorite/list/", &[("user_id", &fan.to_string()), ("token", &fan_token)]).await;
    assert_eq!(liked["video_list"].as_array().unwrap().len(), 520, "every liked video");
    assert_eq!(liked["video_list"][0]["is_favorite"], true);

    let users: Vec<Vec<String>> = (0..510)
        .map(|i| vec![quoted(&format!("crowd{i}")), quoted("x"), quoted(&format!("crowd{i}")), "1".into()])
        .collect();
    insert(&db, "users", "username, password_hash, name, created_at_ms", users).await;
    let crowd: Vec<i64> = {
        use sqlx::Row;
        let rows = sqlx::query("SELECT id FROM users WHERE username LIKE 'crowd%'").fetch_all(&db).await.unwrap();
        rows.iter().map(|r| r.try_get::<i64, _>(0).unwrap()).collect()
    };
    let follows = |pairs: &mut dyn Iterator<Item = (i64, i64)>| -> Vec<Vec<String>> {
        pairs.enumerate().map(|(i, (a, b))| vec![a.to_string(), b.to_string(), (1_000 + i).to_string()]).collect()
    };
    insert(&db, "follows", "follower_id, followee_id, created_at_ms", follows(&mut crowd.iter().map(|c| (*c, author))))
        .await;
    insert(&db, "follows", "follower_id, followee_id, created_at_ms", follows(&mut crowd.iter().map(|c| (fan, *c))))
        .await;
    let followers = app.get("/douyin/relation/follower/list/", &[("user_id", &author.to_string())]).await;
    assert_eq!(followers["user_list"].as_array().unwrap().len(), 510, "every follower");
    let followees = app.get("/douyin/relation/follow/list/", &[("user_id", &fan.to_string())]).await;
    assert_eq!(followees["user_list"].as_array().unwrap().len(), 510, "everyone followed");
    db.close().await;
    app.stop().await;
}

#[tokio::test]
async fn the_chat_history_is_the_whole_conversation_oldest_first() {
    let app = TestApp::spawn().await;
    let (a, ta) = app.register("talkative_a").await;
    let (b, _) = app.register("talkative_b").await;
    let db = database(&app.config).await;
    let (lo, hi) = (a.min(b), a.max(b));
    let rows = (1..=5_200_i64)
        .map(|t| {
            let (from, to) = if t % 2 == 0 { (a, b) } else { (b, a) };
            [lo, hi, from, to].iter().map(i64::to_string).chain([quoted(&format!("m{t}")), t.to_string()]).collect()
        })
        .collect();
    insert(&db, "messages", "lo_user, hi_user, from_user_id, to_user_id, content, create_time", rows).await;
    db.close().await;
    let history = app.get("/douyin/message/chat/", &[("token", &ta), ("to_user_id", &b.to_string())]).await;
    let list = history["message_list"].as_array().unwrap();
    assert_eq!(list.len(), 5_200, "the whole conversation");
    assert_eq!(list[0]["content"], "m1");
    assert_eq!(list[5_199]["content"], "m5200", "the newest message is there");
    let after = app
        .get("/douyin/message/chat/", &[("token", &ta), ("to_user_id", &b.to_string()), ("pre_msg_time", "5190")])
        .await;
    assert_eq!(after["message_list"].as_array().unwrap().len(), 10);
    app.stop().await;
}

#[tokio::test]
async fn chat_with_oneself_or_an_unknown_user_is_refused_as_sending_is() {
    let app = TestApp::spawn().await;
    let (me, token) = app.register("lonely").await;
    for (peer, needle) in [(me.to_string(), "yourself"), ("987654".to_owned(), "does not exist")] {
        let sent = app
            .post_query(
                "/douyin/message/action/",
                &[("token", &token), ("to_user_id", &peer), ("action_type", "1"), ("content", "hi")],
            )
            .await;
        assert_refused(&sent, needle);
        let history = app.get("/douyin/message/chat/", &[("token", &token), ("to_user_id", &peer)]).await;
        assert_refused(&history, if needle == "yourself" { "your own id" } else { needle });
        assert_eq!(history["status_code"], sent["status_code"], "refused as message/action refuses: {history}");
        assert_eq!(history["message_list"], json!([]));
    }
    app.stop().await;
}

#[tokio::test]
async fn ids_in_float_notation_are_accepted_when_integral() {
    let app = TestApp::spawn().await;
    let (_, token) = app.register("float_viewer").await;
    let db = database(&app.config).await;
    let users = [1_000_000_i64, 1_234_567]
        .iter()
        .map(|id| vec![id.to_string(), quoted(&format!("u{id}")), quoted("x"), quoted(&format!("u{id}")), "1".into()])
        .collect();
    insert(&db, "users", "id, username, password_hash, name, created_at_ms", users).await;
    db.close().await;
    for (raw, id) in [("1e+06", 1_000_000), ("1.234567e+06", 1_234_567), ("1234567.0", 1_234_567)] {
        let user = app.get("/douyin/user/", &[("token", &token), ("user_id", raw)]).await;
        assert_eq!(user["status_code"], 0, "{raw}: {user}");
        assert_eq!(user["user"]["id"], id, "{raw}");
        let list = app.get("/douyin/publish/list/", &[("user_id", raw)]).await;
        assert_eq!(list["status_code"], 0, "{raw}: {list}");
        let followed = app
            .post_query("/douyin/relation/action/", &[("token", &token), ("to_user_id", raw), ("action_type", "1")])
            .await;
        assert_eq!(followed["status_code"], 0, "{raw}: {followed}");
    }
    let by_json = app.post_json("/douyin/user/", json!({"token": token, "user_id": 1.234567e6})).await;
    assert_eq!(by_json["user"]["id"], 1_234_567, "{by_json}");
    for raw in ["1.2345675e+06", "1e-1", "1.5"] {
        let user = app.get("/douyin/user/", &[("token", &token), ("user_id", raw)]).await;
        assert_refused(&user, "user_id");
        let list = app.get("/douyin/publish/list/", &[("user_id", raw)]).await;
        assert_refused(&list, "user_id");
    }
    app.stop().await;
}
