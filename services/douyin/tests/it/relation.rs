//! Routes 11–16 and the live-push WebSocket, over real HTTP: follows, friend
//! lists with the latest message, chat polling, refusals, and push across two
//! gateway processes sharing one Redis.

use crate::common;

use std::time::Duration;

use crate::common::{TestApp, assert_refused};
use douyin_kit::{Config, Role, shutdown};
use futures::StreamExt;
use serde_json::Value;
use tokio::{net::TcpStream, time::Instant};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest},
};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a pushed message may take to arrive.
const PUSH_DEADLINE: Duration = Duration::from_secs(1);

async fn follow(app: &TestApp, token: &str, to: i64, action: &str) -> Value {
    app.post_query(
        "/douyin/relation/action/",
        &[("token", token), ("to_user_id", &to.to_string()), ("action_type", action)],
    )
    .await
}

#[track_caller]
fn assert_ok(reply: &Value) {
    assert_eq!(reply["status_code"], 0, "{reply}");
}

pub(crate) async fn send(app: &TestApp, token: &str, to: i64, content: &str) -> Value {
    app.post_query(
        "/douyin/message/action/",
        &[("token", token), ("to_user_id", &to.to_string()), ("action_type", "1"), ("content", content)],
    )
    .await
}

/// The user list of route 12, 13 or 14 for `user_id`, as seen by `token`.
async fn list(app: &TestApp, which: &str, user_id: i64, token: Option<&str>) -> Vec<Value> {
    let user_id = user_id.to_string();
    let mut query = vec![("user_id", user_id.as_str())];
    if let Some(token) = token {
        query.push(("token", token));
    }
    let reply = app.get(&format!("/douyin/relation/{which}/list/"), &query).await;
    assert_ok(&reply);
    reply["user_list"].as_array().unwrap_or_else(|| panic!("user_list is an array: {reply}")).clone()
}

fn ids(users: &[Value]) -> Vec<i64> {
    users.iter().map(|u| u["id"].as_i64().unwrap()).collect()
}

async fn user(app: &TestApp, token: &str, id: i64) -> Value {
    let reply = app.get("/douyin/user/", &[("token", token), ("user_id", &id.to_string())]).await;
    assert_ok(&reply);
    reply["user"].clone()
}

/// Route 15: the messages after `pre_msg_time` (None: the whole conversation).
async fn chat(app: &TestApp, token: &str, peer: i64, pre_msg_time: Option<i64>) -> Vec<Value> {
    let peer = peer.to_string();
    let time = pre_msg_time.map(|t| t.to_string());
    let mut query = vec![("token", token), ("to_user_id", peer.as_str())];
    if let Some(time) = &time {
        query.push(("pre_msg_time", time));
    }
    let reply = app.get("/douyin/message/chat/", &query).await;
    assert_ok(&reply);
    reply["message_list"].as_array().unwrap_or_else(|| panic!("message_list is an array: {reply}")).clone()
}

fn now_ms() -> i64 {
    douyin_kit::db::now_ms()
}

#[tokio::test]
async fn mutual_follows_are_friends_with_the_latest_message() {
    let app = TestApp::spawn().await;
    let (a, ta) = app.register("amy").await;
    let (b, tb) = app.register("ben").await;
    let (c, tc) = app.register("cat").await;

    assert_ok(&follow(&app, &ta, b, "1").await);
    assert!(list(&app, "friend", a, Some(&ta)).await.is_empty(), "one-way follow is no friendship");
    assert!(list(&app, "friend", b, Some(&tb)).await.is_empty());

    assert_ok(&follow(&app, &tb, a, "1").await);
    let friends_of_a = list(&app, "friend", a, Some(&ta)).await;
    assert_eq!(ids(&friends_of_a), [b]);
    let friend = &friends_of_a[0];
    // Every User key at top level, plus message and msgType.
    for key in ["follow_count", "follower_count"] {
        assert_eq!(friend[key], 1, "{key} in {friend}");
    }
    for key in ["total_favorited", "work_count", "favorite_count"] {
        assert_eq!(friend[key], 0, "{key} in {friend}");
    }
    assert_eq!(friend["name"], "ben");
    assert_eq!(friend["is_follow"], true);
    assert!(friend["avatar"].as_str().is_some_and(|s| !s.is_empty()), "{friend}");
    assert!(friend["background_image"].as_str().is_some_and(|s| !s.is_empty()), "{friend}");
    assert_eq!(friend["signature"], "");
    assert_eq!(friend["message"], "", "no message yet: {friend}");
    assert_eq!(friend["msgType"], 0);
    assert_eq!(ids(&list(&app, "friend", b, Some(&tb)).await), [a]);

    // The latest message, and whether the requester sent (1) or received (0) it.
    assert_ok(&send(&app, &ta, b, "hello ben").await);
    let latest = |users: Vec<Value>| (users[0]["message"].clone(), users[0]["msgType"].clone());
    assert_eq!(latest(list(&app, "friend", a, Some(&ta)).await), ("hello ben".into(), 1.into()));
    assert_eq!(latest(list(&app, "friend", b, Some(&tb)).await), ("hello ben".into(), 0.into()));
    assert_ok(&send(&app, &tb, a, "hi amy").await);
    assert_eq!(latest(list(&app, "friend", a, Some(&ta)).await), ("hi amy".into(), 0.into()));
    assert_eq!(latest(list(&app, "friend", b, Some(&tb)).await), ("hi amy".into(), 1.into()));

    // Messaging someone does not make them a friend; each friend gets the
    // message of their own conversation.
    assert_ok(&send(&app, &tc, a, "who are you").await);
    assert_ok(&follow(&app, &ta, c, "1").await);
    assert_ok(&follow(&app, &tc, a, "1").await);
    let friends_of_a = list(&app, "friend", a, Some(&ta)).await;
    assert_eq!(friends_of_a.len(), 2, "{friends_of_a:?}");
    for friend in &friends_of_a {
        let expected = if friend["id"] == b { "hi amy" } else { "who are you" };
        assert_eq!(friend["message"], expected, "{friend}");
        assert_eq!(friend["msgType"], 0, "{friend}");
    }

    // Another user's friends (and so their messages) are private.
    let other = app.get("/douyin/relation/friend/list/", &[("token", &tc), ("user_id", &a.to_string())]).await;
    assert_refused(&other, "friends");
    let anonymous = app.get("/douyin/relation/friend/list/", &[("user_id", &a.to_string())]).await;
    assert_refused(&anonymous, "token");

    // Unfollowing, from either side, ends the friendship.
    assert_ok(&follow(&app, &ta, b, "2").await);
    assert_eq!(ids(&list(&app, "friend", a, Some(&ta)).await), [c]);
    assert_eq!(ids(&list(&app, "friend", b, Some(&tb)).await), Vec::<i64>::new());
    assert_ok(&follow(&app, &tc, a, "2").await);
    assert!(list(&app, "friend", a, Some(&ta)).await.is_empty());
    assert!(list(&app, "friend", c, Some(&tc)).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn follow_lists_belong_to_user_id_with_is_follow_of_the_caller() {
    let app = TestApp::spawn().await;
    let (a, ta) = app.register("ann").await;
    let (b, tb) = app.register("bob").await;
    let (c, tc) = app.register("cid").await;
    let (v, tv) = app.register("viewer").await;
    assert_ok(&follow(&app, &ta, b, "1").await);
    assert_ok(&follow(&app, &ta, c, "1").await);
    assert_ok(&follow(&app, &tb, c, "1").await);
    assert_ok(&follow(&app, &tv, c, "1").await);

    // a's follow list, not the viewer's, with is_follow relative to the viewer.
    let follows = list(&app, "follow", a, Some(&tv)).await;
    assert_eq!(ids(&follows), [c, b], "most recent first");
    assert_eq!(follows[0]["is_follow"], true, "viewer follows c");
    assert_eq!(follows[1]["is_follow"], false, "viewer does not follow b");
    assert_eq!(follows[0]["follower_count"], 3);
    assert_eq!(follows[1]["follower_count"], 1);

    // c's followers as seen by a: a follows b, not v, and never flags itself.
    let followers = list(&app, "follower", c, Some(&ta)).await;
    assert_eq!(ids(&followers), [v, b, a]);
    let flags: Vec<&Value> = followers.iter().map(|u| &u["is_follow"]).collect();
    assert_eq!(flags, [&Value::Bool(false), &Value::Bool(true), &Value::Bool(false)]);
    assert_eq!(followers[2]["follow_count"], 2);

    // Anonymous callers see every flag false.
    for (which, id) in [("follow", a), ("follower", c)] {
        let users = list(&app, which, id, None).await;
        assert!(!users.is_empty());
        assert!(users.iter().all(|u| u["is_follow"] == false), "{users:?}");
    }
    // Empty lists are arrays; unknown users are refused.
    assert!(list(&app, "follow", c, Some(&tc)).await.is_empty());
    assert!(list(&app, "follower", a, None).await.is_empty());
    for which in ["follow", "follower"] {
        let reply = app.get(&format!("/douyin/relation/{which}/list/"), &[("user_id", "987654")]).await;
        assert_refused(&reply, "does not exist");
        let reply = app.get(&format!("/douyin/relation/{which}/list/"), &[("token", &ta)]).await;
        assert_refused(&reply, "user_id");
    }

    // The profile agrees with the lists.
    let profile = user(&app, &tb, c).await;
    assert_eq!((profile["follower_count"].as_i64(), profile["is_follow"].as_bool()), (Some(3), Some(true)));
    let profile = user(&app, &tc, a).await;
    assert_eq!((profile["follow_count"].as_i64(), profile["is_follow"].as_bool()), (Some(2), Some(false)));
    app.stop().await;
}

#[tokio::test]
async fn follow_and_unfollow_are_idempotent() {
    let app = TestApp::spawn().await;
    let (a, ta) = app.register("idem-a").await;
    let (b, tb) = app.register("idem-b").await;
    let counts = |u: Value| (u["follow_count"].as_i64().unwrap(), u["follower_count"].as_i64().unwrap());

    assert_ok(&follow(&app, &ta, b, "2").await);
    assert_eq!(counts(user(&app, &ta, a).await), (0, 0), "unfollowing a stranger changes nothing");
    for _ in 0..3 {
        assert_ok(&follow(&app, &ta, b, "1").await);
    }
    assert_eq!(counts(user(&app, &ta, a).await), (1, 0));
    assert_eq!(counts(user(&app, &ta, b).await), (0, 1));
    assert_eq!(ids(&list(&app, "follower", b, None).await), [a]);
    for _ in 0..3 {
        assert_ok(&follow(&app, &ta, b, "2").await);
    }
    assert_eq!(counts(user(&app, &tb, a).await), (0, 0));
    assert_eq!(counts(user(&app, &tb, b).await), (0, 0));
    assert!(list(&app, "follower", b, None).await.is_empty());
    app.stop().await;
}

/// Deletes every cached key of this app (the database keeps the truth).
async fn flush_cache(config: &Config) {
    if !config.redis_cluster_nodes.is_empty() {
        use douyin_kit::cache::Cache;
        let cache = douyin_kit::cache::RedisClusterCache::connect(&config.redis_cluster_nodes, &config.redis_prefix);
        return cache.unwrap().clear().await.unwrap();
    }
    let Some(url) = &config.redis_url else { return };
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}*", config.redis_prefix)).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_follow_toggles_keep_counts_equal_to_rows() {
    let app = TestApp::spawn().await;
    let (star, star_token) = app.register("star").await;
    let mut fans = Vec::new();
    for i in 0..5 {
        fans.push(app.register(&format!("fan{i}")).await);
    }
    // 30 toggles at once: each fan follows and unfollows the star several
    // times, and the star follows some fans back.
    let toggles = (0..30).map(|k| {
        let (fan, fan_token) = &fans[k % fans.len()];
        let action = if (k / fans.len()) % 2 == 0 { "1" } else { "2" };
        let (token, to) = if k % 7 == 3 { (star_token.as_str(), *fan) } else { (fan_token.as_str(), star) };
        follow(&app, token, to, action)
    });
    for reply in futures::future::join_all(toggles).await {
        assert_ok(&reply);
    }

    let check = || async {
        let followers = list(&app, "follower", star, None).await;
        let followees = list(&app, "follow", star, None).await;
        let star_user = user(&app, &star_token, star).await;
        assert_eq!(star_user["follower_count"], followers.len(), "star followers: {followers:?}");
        assert_eq!(star_user["follow_count"], followees.len(), "star follows: {followees:?}");
        for (fan, token) in &fans {
            let fan_user = user(&app, token, *fan).await;
            let follows = list(&app, "follow", *fan, None).await;
            let followed_by = list(&app, "follower", *fan, None).await;
            assert_eq!(fan_user["follow_count"], follows.len(), "{fan_user}");
            assert_eq!(fan_user["follower_count"], followed_by.len(), "{fan_user}");
            assert_eq!(ids(&follows).contains(&star), ids(&followers).contains(fan));
        }
    };
    check().await;
    // Counts also survive the loss of the cache.
    flush_cache(&app.config).await;
    check().await;
    app.stop().await;
}

/// Asserts the shape of a message list: create_time in ms, strictly
/// increasing (so oldest first).
#[track_caller]
fn assert_ordered(messages: &[Value]) {
    let started = now_ms() - 600_000;
    let mut previous = 0;
    for m in messages {
        let time = m["create_time"].as_i64().unwrap();
        assert!(time > started && time < now_ms() + 60_000, "create_time {time} is Unix ms: {m}");
        assert!(time > previous, "strictly increasing: {messages:?}");
        previous = time;
        for key in ["id", "to_user_id", "from_user_id"] {
            assert!(m[key].as_i64().is_some_and(|v| v > 0), "{key} in {m}");
        }
    }
}

#[tokio::test]
async fn polling_with_the_newest_time_receives_every_message_once() {
    let app = TestApp::spawn().await;
    let (a, ta) = app.register("poll-a").await;
    let (b, tb) = app.register("poll-b").await;
    let (c, tc) = app.register("poll-c").await;
    assert!(chat(&app, &tb, a, None).await.is_empty());

    // Five messages in a tight loop, the receiver polling after each with the
    // newest create_time it holds.
    let mut held: Vec<Value> = Vec::new();
    let mut newest = 0;
    for i in 0..5 {
        assert_ok(&send(&app, &ta, b, &format!("tight {i}")).await);
        let fresh = chat(&app, &tb, a, Some(newest)).await;
        assert_ordered(&fresh);
        if let Some(last) = fresh.last() {
            newest = last["create_time"].as_i64().unwrap();
        }
        held.extend(fresh);
    }
    let contents: Vec<&str> = held.iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["tight 0", "tight 1", "tight 2", "tight 3", "tight 4"]);
    assert!(held.iter().all(|m| m["from_user_id"] == a && m["to_user_id"] == b));
    assert!(chat(&app, &tb, a, Some(newest)).await.is_empty(), "nothing newer");

    // Both directions, sent as fast as possible while the receiver polls:
    // each message arrives exactly once and in order.
    let sender = async {
        for i in 0..10 {
            let (token, to) = if i % 2 == 0 { (&ta, b) } else { (&tb, a) };
            assert_ok(&send(&app, token, to, &format!("both {i}")).await);
        }
    };
    let poller = async {
        let mut got: Vec<Value> = Vec::new();
        let mut newest = newest;
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < 10 && Instant::now() < deadline {
            let fresh = chat(&app, &ta, b, Some(newest)).await;
            if let Some(last) = fresh.last() {
                newest = last["create_time"].as_i64().unwrap();
            }
            got.extend(fresh);
            tokio::task::yield_now().await;
        }
        got
    };
    let ((), got) = tokio::join!(sender, poller);
    let contents: Vec<String> = got.iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("both {i}")).collect();
    assert_eq!(contents, expected);
    for (i, m) in got.iter().enumerate() {
        let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
        assert_eq!((m["from_user_id"].as_i64(), m["to_user_id"].as_i64()), (Some(from), Some(to)), "{m}");
    }

    // Both sides sending at once while the receiver polls: nothing is missed
    // or repeated.
    let newest = got.last().unwrap()["create_time"].as_i64().unwrap();
    let burst = async |token: &str, to: i64, tag: &str| {
        let contents: Vec<String> = (0..8).map(|i| format!("{tag} {i}")).collect();
        let sends = contents.iter().map(|content| send(&app, token, to, content));
        for reply in futures::future::join_all(sends).await {
            assert_ok(&reply);
        }
    };
    let poller = async {
        let mut got: Vec<Value> = Vec::new();
        let mut newest = newest;
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < 16 && Instant::now() < deadline {
            let fresh = chat(&app, &tb, a, Some(newest)).await;
            assert_ordered(&fresh);
            if let Some(last) = fresh.last() {
                newest = last["create_time"].as_i64().unwrap();
            }
            got.extend(fresh);
            tokio::task::yield_now().await;
        }
        got
    };
    let ((), (), burst_got) = tokio::join!(burst(&ta, b, "from a"), burst(&tb, a, "from b"), poller);
    assert_ordered(&burst_got);
    let mut contents: Vec<String> = burst_got.iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect();
    contents.sort();
    let mut expected: Vec<String> = (0..8).flat_map(|i| [format!("from a {i}"), format!("from b {i}")]).collect();
    expected.sort();
    assert_eq!(contents, expected, "each message exactly once");
    assert!(chat(&app, &tb, a, Some(burst_got.last().unwrap()["create_time"].as_i64().unwrap())).await.is_empty());

    // The whole conversation, from either side, without or with pre_msg_time 0.
    let whole = chat(&app, &ta, b, None).await;
    assert_eq!(whole.len(), 31);
    assert_ordered(&whole);
    assert_eq!(chat(&app, &tb, a, Some(0)).await, whole);
    assert_eq!(whole[..5], held[..]);
    // Only messages strictly newer than pre_msg_time.
    let middle = whole[7]["create_time"].as_i64().unwrap();
    assert_eq!(chat(&app, &tb, a, Some(middle)).await, whole[8..]);
    // Another conversation is separate.
    assert!(chat(&app, &tc, a, None).await.is_empty());
    assert_ok(&send(&app, &tc, a, "private").await);
    assert_eq!(chat(&app, &ta, c, None).await.len(), 1);
    assert_eq!(chat(&app, &ta, b, None).await.len(), 31);
    let refused = app
        .get("/douyin/message/chat/", &[("token", &ta), ("to_user_id", &b.to_string()), ("pre_msg_time", "soon")])
        .await;
    assert_refused(&refused, "pre_msg_time");
    app.stop().await;
}

/// The app's database, opened directly (to stage what another replica wrote).
async fn database(config: &Config) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url =
        config.database_url.clone().unwrap_or_else(|| format!("sqlite://{}/douyin.db", config.data_dir.display()));
    sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap()
}

/// Stores a message from `from` to `to` as another chat process would have,
/// without the chat role of `config`'s app knowing.
async fn store_message(config: &Config, from: i64, to: i64, content: &str, create_time: i64) {
    let db = database(config).await;
    sqlx::query(
        "INSERT INTO messages (lo_user, hi_user, from_user_id, to_user_id, content, create_time) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(from.min(to))
    .bind(from.max(to))
    .bind(from)
    .bind(to)
    .bind(content)
    .bind(create_time)
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
}

#[tokio::test]
async fn a_replica_with_its_clock_ahead_does_not_hide_later_messages() {
    let app = TestApp::spawn().await;
    let (a, ta) = app.register("skew-a").await;
    let (b, tb) = app.register("skew-b").await;
    // Another chat replica, its clock 5 s ahead, stored a message.
    let ahead = now_ms() + 5_000;
    store_message(&app.config, a, b, "from the future", ahead).await;

    let held = chat(&app, &tb, a, None).await;
    assert_eq!(held.len(), 1);
    assert_ok(&send(&app, &ta, b, "sent after").await);
    let fresh = chat(&app, &tb, a, Some(ahead)).await;
    assert_eq!(fresh.len(), 1, "a poller holding the newest message still gets the next one");
    assert_eq!(fresh[0]["content"], "sent after");
    assert!(fresh[0]["create_time"].as_i64().unwrap() > ahead);
    app.stop().await;
}

#[tokio::test]
async fn bad_messages_and_follows_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (a, ta) = app.register("ref-a").await;
    let (b, tb) = app.register("ref-b").await;
    let to_b = b.to_string();
    let to_a = a.to_string();
    let message = async |to: &str, action: &str, content: String| {
        app.post_form(
            "/douyin/message/action/",
            &[("token", &ta), ("to_user_id", to), ("action_type", action), ("content", &content)],
        )
        .await
    };
    assert_refused(&message(&to_b, "1", String::new()).await, "content");
    assert_refused(&message(&to_b, "1", "   ".into()).await, "content");
    assert_refused(&message(&to_b, "1", "x".repeat(1001)).await, "1000");
    assert_refused(&message(&to_b, "1", "好".repeat(1001)).await, "1000");
    assert_refused(&message(&to_a, "1", "hi me".into()).await, "yourself");
    assert_refused(&message("987654", "1", "hi?".into()).await, "does not exist");
    assert_refused(&message("0", "1", "hi?".into()).await, "to_user_id");
    assert_refused(&message("abc", "1", "hi?".into()).await, "to_user_id");
    assert_refused(&message(&to_b, "2", "hi".into()).await, "action_type");
    assert_refused(&message(&to_b, "", "hi".into()).await, "action_type");
    let missing =
        app.post_query("/douyin/message/action/", &[("token", &ta), ("to_user_id", &to_b), ("action_type", "1")]).await;
    assert_refused(&missing, "content");
    let anonymous = app
        .post_query("/douyin/message/action/", &[("to_user_id", &to_b), ("action_type", "1"), ("content", "x")])
        .await;
    assert_refused(&anonymous, "token");
    assert!(chat(&app, &ta, b, None).await.is_empty(), "refusals store nothing");

    // 1000 characters (not bytes) are accepted.
    assert_ok(&message(&to_b, "1", "好".repeat(1000)).await);
    assert_ok(&message(&to_b, "1", "x".repeat(1000)).await);
    let stored = chat(&app, &tb, a, None).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["content"], "好".repeat(1000));

    let relation = async |to: &str, action: &str| {
        app.post_query("/douyin/relation/action/", &[("token", &ta), ("to_user_id", to), ("action_type", action)]).await
    };
    assert_refused(&relation(&to_a, "1").await, "yourself");
    assert_refused(&relation("987654", "1").await, "does not exist");
    assert_refused(&relation("-3", "1").await, "to_user_id");
    assert_refused(&relation("", "1").await, "to_user_id");
    for bad in ["0", "3", "", "follow"] {
        assert_refused(&relation(&to_b, bad).await, "action_type");
    }
    let anonymous = app.post_query("/douyin/relation/action/", &[("to_user_id", &to_b), ("action_type", "1")]).await;
    assert_refused(&anonymous, "token");
    let me = user(&app, &ta, a).await;
    assert_eq!((me["follow_count"].as_i64(), me["follower_count"].as_i64()), (Some(0), Some(0)));
    assert!(list(&app, "follow", a, None).await.is_empty(), "refusals store nothing");
    app.stop().await;
}

fn ws_url(base: &str) -> String {
    format!("{}/douyin/message/ws/", base.replacen("http://", "ws://", 1))
}

/// Opens a push socket with `?token=`.
pub(crate) async fn connect(base: &str, token: &str) -> Socket {
    connect_query(base, &format!("token={token}")).await
}

/// Opens a push socket with this query string.
async fn connect_query(base: &str, query: &str) -> Socket {
    let (socket, response) =
        tokio_tungstenite::connect_async(format!("{}?{query}", ws_url(base))).await.expect("WebSocket opens");
    assert_eq!(response.status(), 101);
    socket
}

/// The contents of the frames `socket` receives until it has been quiet for `quiet`.
pub(crate) async fn pushes_until_quiet(socket: &mut Socket, quiet: Duration) -> Vec<String> {
    let mut contents = Vec::new();
    while let Ok(frame) = tokio::time::timeout(quiet, socket.next()).await {
        match frame.expect("the socket stays open").expect("a readable frame") {
            Message::Text(text) => {
                let message: Value = serde_json::from_str(&text).expect("push frames are JSON");
                contents.push(message["content"].as_str().unwrap_or_default().to_owned());
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    contents
}

/// Opens a push socket with `Authorization: Bearer`.
async fn connect_bearer(base: &str, token: &str) -> Socket {
    let mut request = ws_url(base).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.expect("WebSocket opens").0
}

/// The next pushed message on `socket`, waiting at most until `deadline`.
pub(crate) async fn next_push(socket: &mut Socket, deadline: Instant) -> Value {
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a pushed message arrives before the deadline")
            .expect("the socket stays open")
            .expect("a readable frame");
        match frame {
            Message::Text(text) => {
                return serde_json::from_str(&text).expect("push frames are JSON");
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Sends `content` from `token` to `to` through `app`, then returns the stored
/// message (as route 15 shows it).
async fn send_and_fetch(app: &TestApp, token: &str, to: i64, content: &str) -> Value {
    assert_ok(&send(app, token, to, content).await);
    let stored = chat(app, token, to, None).await;
    let last = stored.last().unwrap().clone();
    assert_eq!(last["content"], content);
    last
}

#[tokio::test]
async fn websocket_pushes_each_message_to_recipient_and_sender_sessions() {
    let app = TestApp::spawn().await;
    let (a, ta) = app.register("ws-a").await;
    let (b, tb) = app.register("ws-b").await;
    let (c, tc) = app.register("ws-c").await;
    let mut b_socket = connect(&app.base, &tb).await;
    let mut a_first = connect_bearer(&app.base, &ta).await;
    let mut a_second = connect(&app.base, &ta).await;
    let mut c_socket = connect(&app.base, &tc).await;

    let sent_at = Instant::now();
    let stored = send_and_fetch(&app, &ta, b, "live hello").await;
    let deadline = sent_at + PUSH_DEADLINE;
    // The recipient and both sessions of the sender get the same Message object.
    for socket in [&mut b_socket, &mut a_first, &mut a_second] {
        assert_eq!(next_push(socket, deadline).await, stored);
    }
    assert_eq!(stored["from_user_id"], a);

    // The reply reaches a's sessions and b's; c, a bystander, gets only what is
    // addressed to c (so the first message c sees is this one).
    let sent_at = Instant::now();
    let reply = send_and_fetch(&app, &tb, a, "live reply").await;
    let deadline = sent_at + PUSH_DEADLINE;
    for socket in [&mut a_first, &mut a_second, &mut b_socket] {
        assert_eq!(next_push(socket, deadline).await, reply);
    }
    let sent_at = Instant::now();
    let to_c = send_and_fetch(&app, &tb, c, "hello c").await;
    assert_eq!(next_push(&mut c_socket, sent_at + PUSH_DEADLINE).await, to_c);

    // A closed session does not stop delivery to the others.
    a_first.close(None).await.unwrap();
    let sent_at = Instant::now();
    let again = send_and_fetch(&app, &tb, a, "after close").await;
    assert_eq!(next_push(&mut a_second, sent_at + PUSH_DEADLINE).await, again);
    app.stop().await;
}

#[tokio::test]
async fn a_session_reconnecting_with_since_is_sent_what_it_missed_once() {
    let app = TestApp::spawn().await;
    let (a, ta) = app.register("since-a").await;
    let (b, tb) = app.register("since-b").await;
    let (c, tc) = app.register("since-c").await;
    let mut socket = connect(&app.base, &tb).await;
    let first = send_and_fetch(&app, &ta, b, "seen live").await;
    assert_eq!(next_push(&mut socket, Instant::now() + PUSH_DEADLINE).await, first);
    socket.close(None).await.unwrap();

    // While b is away: messages to b from two people, and one b sends itself.
    for (token, to, content) in [(&ta, b, "missed 1"), (&tc, b, "missed 2"), (&tb, a, "sent elsewhere")] {
        assert_ok(&send(&app, token, to, content).await);
    }
    let since = first["create_time"].as_i64().unwrap();
    let mut back = connect_query(&app.base, &format!("token={tb}&since={since}")).await;
    let live = send_and_fetch(&app, &ta, b, "live again").await;
    let received = pushes_until_quiet(&mut back, Duration::from_millis(800)).await;
    let mut sorted = received.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["live again", "missed 1", "missed 2", "sent elsewhere"],
        "each once, nothing older: {received:?}"
    );
    assert_eq!(live["from_user_id"], a);

    // Without since, a session gets only what comes after it opens.
    let mut plain = connect(&app.base, &tc).await;
    assert!(pushes_until_quiet(&mut plain, Duration::from_millis(300)).await.is_empty());
    let stored = send_and_fetch(&app, &tb, c, "to c").await;
    assert_eq!(next_push(&mut plain, Instant::now() + PUSH_DEADLINE).await, stored);

    // A since that is not a time is refused before the upgrade.
    match tokio_tungstenite::connect_async(format!("{}?token={tb}&since=yesterday", ws_url(&app.base))).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!("a bad since should be refused: {:?}", other.map(|_| ())),
    }
    app.stop().await;
}

#[tokio::test]
async fn websocket_upgrade_with_a_bad_token_is_refused() {
    let app = TestApp::spawn().await;
    let (_, token) = app.register("ws-bad").await;
    let url = ws_url(&app.base);
    let attempts =
        [format!("{url}?token=garbage"), format!("{url}?token={}x", token), url.clone(), format!("{url}?token=")];
    for attempt in attempts {
        match tokio_tungstenite::connect_async(attempt.as_str()).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{attempt}");
                let body = response.body().as_deref().unwrap_or_default();
                let body: Value = serde_json::from_slice(body).expect("a JSON refusal");
                assert_eq!(body["status_code"], 401, "{attempt}: {body}");
                assert!(body["status_msg"].as_str().is_some_and(|m| m.contains("token")), "{body}");
            }
            Err(other) => panic!("{attempt}: expected an HTTP refusal, got {other}"),
            Ok(_) => panic!("{attempt}: the upgrade should be refused"),
        }
    }
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("authorization", "Bearer not.a.jwt".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("a bad Bearer token should be refused: {:?}", other.map(|_| ())),
    }
    app.stop().await;
}

/// A second gateway process (every role) on the first app's database, Redis
/// prefix and JWT key.
struct Replica {
    base: String,
    trigger: shutdown::ShutdownTrigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    async fn start(config: &Config) -> Replica {
        let (trigger, stop) = shutdown::channel();
        let running = douyin::start(config.clone(), &Role::ALL, stop).await.expect("replica starts");
        let base = format!("http://{}", running.http_addr.unwrap());
        Replica { base, trigger, task: tokio::spawn(running.wait()) }
    }

    async fn stop(self) {
        self.trigger.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_REDIS_URL (a Redis server) or DOUYIN_TEST_REDIS_CLUSTER"]
async fn a_message_sent_through_one_gateway_reaches_a_socket_on_another() {
    common::needs_redis();
    let first = TestApp::spawn_with(|c| {
        // Both processes sign and verify with the same key.
        c.jwt_secret = Some("a-secret-shared-by-both-replicas-0123456789".into());
    })
    .await;
    let second = Replica::start(&first.config).await;
    let (a, ta) = first.register("replica-a").await;
    let (b, tb) = first.register("replica-b").await;

    // a listens on the first gateway; b sends through the second.
    let mut a_socket = connect(&first.base, &ta).await;
    let mut b_socket = connect(&second.base, &tb).await;
    let sent_at = Instant::now();
    let reply = first
        .http
        .post(format!("{}/douyin/message/action/", second.base))
        .query(&[("token", tb.as_str()), ("to_user_id", &a.to_string()), ("action_type", "1"), ("content", "across")])
        .send()
        .await
        .unwrap();
    assert_ok(&common::json(reply).await);
    let pushed = next_push(&mut a_socket, sent_at + PUSH_DEADLINE).await;
    assert_eq!((pushed["content"].as_str(), pushed["from_user_id"].as_i64()), (Some("across"), Some(b)));
    assert_eq!(
        next_push(&mut b_socket, sent_at + PUSH_DEADLINE).await,
        pushed,
        "sender's session on the other replica"
    );
    let stored = chat(&first, &ta, b, None).await;
    assert_eq!(stored, std::slice::from_ref(&pushed));

    // And back: sent through the first, received on the second.
    let sent_at = Instant::now();
    let back = send_and_fetch(&first, &ta, b, "and back").await;
    assert_eq!(next_push(&mut b_socket, sent_at + PUSH_DEADLINE).await, back);
    assert_eq!(next_push(&mut a_socket, sent_at + PUSH_DEADLINE).await, back);

    second.stop().await;
    first.stop().await;
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_REDIS_URL (a Redis server)"]
async fn a_message_a_killed_chat_process_stored_but_never_published_is_pushed_once_chat_starts_again() {
    common::needs("DOUYIN_TEST_REDIS_URL");
    let first = TestApp::spawn_with(|c| {
        c.jwt_secret = Some("a-secret-shared-by-both-replicas-0123456789".into());
    })
    .await;
    let (a, _) = first.register("killed-chat-a").await;
    let (b, tb) = first.register("killed-chat-b").await;
    let mut b_socket = connect(&first.base, &tb).await;

    // A chat process stored this message and was killed before its push
    // went out: the row is there, no session was sent it.
    store_message(&first.config, a, b, "stored before the kill", now_ms()).await;
    assert!(pushes_until_quiet(&mut b_socket, Duration::from_millis(500)).await.is_empty());

    // Its replacement starts: b's open session is sent the message, once.
    let replacement = Replica::start(&first.config).await;
    let pushed = next_push(&mut b_socket, Instant::now() + PUSH_DEADLINE).await;
    assert_eq!(pushed["content"], "stored before the kill");
    assert!(pushes_until_quiet(&mut b_socket, Duration::from_millis(500)).await.is_empty(), "sent once");
    replacement.stop().await;
    first.stop().await;
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_REDIS_URL (a Redis server)"]
async fn a_catch_up_longer_than_a_page_and_a_session_queue_pushes_every_message_once() {
    common::needs("DOUYIN_TEST_REDIS_URL");
    let first = TestApp::spawn_with(|c| {
        c.jwt_secret = Some("a-secret-shared-by-both-replicas-0123456789".into());
    })
    .await;
    let (a, _) = first.register("long-gap-a").await;
    let (b, tb) = first.register("long-gap-b").await;
    let mut b_socket = connect(&first.base, &tb).await;

    // A killed chat process stored more messages than one catch-up read
    // brings (500) and a session queues (256), none of them published.
    let db = database(&first.config).await;
    let stored = 700;
    let start = now_ms();
    for n in 0..stored {
        sqlx::query(
            "INSERT INTO messages (lo_user, hi_user, from_user_id, to_user_id, content, create_time) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(a.min(b))
        .bind(a.max(b))
        .bind(a)
        .bind(b)
        .bind(format!("gap message {n}"))
        .bind(start + n)
        .execute(&db)
        .await
        .unwrap();
    }
    db.close().await;

    // Its replacement starts: b's session is sent every one of them, once.
    let replacement = Replica::start(&first.config).await;
    let first_push = next_push(&mut b_socket, Instant::now() + PUSH_DEADLINE * 5).await;
    let mut pushed = vec![first_push["content"].as_str().unwrap().to_owned()];
    pushed.extend(pushes_until_quiet(&mut b_socket, Duration::from_millis(1500)).await);
    let distinct: std::collections::HashSet<&String> = pushed.iter().collect();
    assert_eq!(distinct.len(), stored as usize, "every stored message reaches the session");
    assert_eq!(pushed.len(), stored as usize, "each of them once");
    replacement.stop().await;
    first.stop().await;
}
