//! Roles that are down: the counter is a cache in front of the stats tables
//! and the chat role only decorates the friend list, so without them reads
//! answer from the database and writes that committed answer success.

use std::time::Duration;

use douyin_kit::Role;
use serde_json::Value;

use super::figure;
use crate::common::{self, sample_mp4, split::Split};

/// The gateway of a [`Split`], spoken to over HTTP.
struct Gateway<'a> {
    split: &'a Split,
}

impl Gateway<'_> {
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = format!("{}{path}", self.split.base);
        common::json(self.split.http.get(url).query(query).send().await.unwrap()).await
    }

    async fn post(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = format!("{}{path}", self.split.base);
        common::json(self.split.http.post(url).query(query).send().await.unwrap()).await
    }

    async fn register(&self, name: &str) -> (i64, String) {
        let reply = self.post("/douyin/user/register/", &[("username", name), ("password", "secret123")]).await;
        assert_eq!(reply["status_code"], 0, "register {name}: {reply}");
        (reply["user_id"].as_i64().unwrap(), reply["token"].as_str().unwrap().to_owned())
    }

    async fn publish(&self, token: &str) -> Value {
        let form = reqwest::multipart::Form::new()
            .text("token", token.to_owned())
            .text("title", "while the counter is down")
            .part("data", reqwest::multipart::Part::bytes(sample_mp4()).file_name("clip.mp4"));
        let url = format!("{}/douyin/publish/action/", self.split.base);
        common::json(self.split.http.post(url).multipart(form).send().await.unwrap()).await
    }
}

/// An endpoint where nothing listens: a role that is down.
fn dead_endpoint() -> String {
    format!("http://127.0.0.1:{}", common::free_port())
}

#[track_caller]
fn ok(what: &str, reply: &Value) {
    assert_eq!(reply["status_code"], 0, "{what}: {reply}");
}

#[tokio::test]
async fn reads_answer_from_the_stats_tables_while_the_counter_is_down() {
    let roles = [Role::User, Role::Video, Role::Interaction, Role::Relation, Role::Chat];
    let split = Split::start(&roles, |c| {
        c.counter_endpoint = Some(dead_endpoint());
        c.ffmpeg_path = "/nonexistent/ffmpeg".into();
    })
    .await;
    let gw = Gateway { split: &split };
    let (author, author_token) = gw.register("stats_author").await;
    let (fan, fan_token) = gw.register("stats_fan").await;
    ok("publish", &gw.publish(&author_token).await);
    let feed = gw.get("/douyin/feed/", &[]).await;
    ok("feed", &feed);
    let video_id = feed["video_list"][0]["id"].as_i64().expect("the published video is in the feed").to_string();
    let (author_s, fan_s) = (author.to_string(), fan.to_string());
    let like = [("token", fan_token.as_str()), ("video_id", &video_id), ("action_type", "1")];
    ok("like", &gw.post("/douyin/favorite/action/", &like).await);
    let comment =
        [("token", fan_token.as_str()), ("video_id", &video_id), ("action_type", "1"), ("comment_text", "counted")];
    let commented = gw.post("/douyin/comment/action/", &comment).await;
    ok("comment", &commented);
    assert_eq!(commented["comment"]["user"]["id"], fan, "{commented}");
    let follow = [("token", fan_token.as_str()), ("to_user_id", &author_s), ("action_type", "1")];
    ok("follow", &gw.post("/douyin/relation/action/", &follow).await);

    // Every count as the rows say, with no counter to ask.
    let feed = gw.get("/douyin/feed/", &[("token", &fan_token)]).await;
    ok("feed", &feed);
    let video = &feed["video_list"][0];
    assert_eq!(
        (&video["favorite_count"], &video["comment_count"], &video["is_favorite"]),
        (&1.into(), &1.into(), &true.into())
    );
    let user = &video["author"];
    assert_eq!(
        (&user["follower_count"], &user["total_favorited"], &user["work_count"]),
        (&1.into(), &1.into(), &1.into())
    );
    let info = gw.get("/douyin/user/", &[("token", &fan_token), ("user_id", &fan_s)]).await;
    ok("user info", &info);
    assert_eq!((&info["user"]["follow_count"], &info["user"]["favorite_count"]), (&1.into(), &1.into()), "{info}");
    let lists: [(&str, &str, &str, &str); 6] = [
        ("/douyin/publish/list/", "user_id", &author_s, "video_list"),
        ("/douyin/favorite/list/", "user_id", &fan_s, "video_list"),
        ("/douyin/comment/list/", "video_id", &video_id, "comment_list"),
        ("/douyin/relation/follow/list/", "user_id", &fan_s, "user_list"),
        ("/douyin/relation/follower/list/", "user_id", &author_s, "user_list"),
        ("/douyin/relation/friend/list/", "user_id", &fan_s, "user_list"),
    ];
    for (path, key, value, field) in lists {
        let list = gw.get(path, &[("token", &fan_token), (key, value)]).await;
        ok(path, &list);
        let items = list[field].as_array().unwrap();
        if path.ends_with("/friend/list/") {
            assert!(items.is_empty(), "not friends yet: {list}");
            continue;
        }
        assert_eq!(items.len(), 1, "{path}: {list}");
        let counted = match path {
            "/douyin/comment/list/" => &items[0]["user"]["favorite_count"],
            "/douyin/relation/follow/list/" => &items[0]["follower_count"],
            "/douyin/relation/follower/list/" => &items[0]["follow_count"],
            _ => &items[0]["favorite_count"],
        };
        assert_eq!(counted, 1, "{path}: {list}");
    }
    figure("fault", "counter-down reads answered");
    split.stop().await;
}

#[tokio::test]
async fn friends_are_listed_without_their_latest_message_while_chat_is_down() {
    let roles = [Role::User, Role::Video, Role::Interaction, Role::Relation, Role::Counter];
    let split = Split::start(&roles, |c| c.chat_endpoint = Some(dead_endpoint())).await;
    let gw = Gateway { split: &split };
    let (alice, alice_token) = gw.register("friend_alice").await;
    let (bob, bob_token) = gw.register("friend_bob").await;
    for (token, to) in [(&alice_token, bob), (&bob_token, alice)] {
        let follow = [("token", token.as_str()), ("to_user_id", &to.to_string()), ("action_type", "1")];
        ok("follow", &gw.post("/douyin/relation/action/", &follow).await);
    }
    let started = std::time::Instant::now();
    let friends =
        gw.get("/douyin/relation/friend/list/", &[("token", &alice_token), ("user_id", &alice.to_string())]).await;
    ok("friend list", &friends);
    let list = friends["user_list"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{friends}");
    assert_eq!(
        (&list[0]["id"], &list[0]["name"], &list[0]["message"]),
        (&bob.into(), &"friend_bob".into(), &"".into())
    );
    assert!(started.elapsed() < Duration::from_secs(3), "answered without waiting on chat: {:?}", started.elapsed());
    figure("fault", "chat-down friend list answered");
    split.stop().await;
}

/// An endpoint that accepts connections and never answers: a role that hangs.
async fn hanging_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (format!("http://{addr}"), task)
}

/// A write whose transaction committed is answered as done, whatever the
/// work after the commit (cache refresh, the answer's decoration) meets: one
/// request, one success, one row.
#[tokio::test]
async fn committed_writes_answer_success_while_the_counter_hangs() {
    let (hanging, listener) = hanging_endpoint().await;
    let roles = [Role::User, Role::Video, Role::Interaction, Role::Relation, Role::Chat];
    let split = Split::start(&roles, |c| {
        c.counter_endpoint = Some(hanging);
        c.ffmpeg_path = "/nonexistent/ffmpeg".into();
    })
    .await;
    let gw = Gateway { split: &split };
    let (author, author_token) = gw.register("hang_author").await;
    let (_, fan_token) = gw.register("hang_fan").await;
    ok("publish", &gw.publish(&author_token).await);
    let video_id = gw.get("/douyin/publish/list/", &[("user_id", &author.to_string())]).await["video_list"][0]["id"]
        .as_i64()
        .expect("the published video is listed")
        .to_string();
    let author_s = author.to_string();
    let writes: [(&str, Vec<(&str, &str)>); 3] = [
        ("/douyin/comment/action/", vec![("action_type", "1"), ("video_id", &video_id), ("comment_text", "once")]),
        ("/douyin/favorite/action/", vec![("action_type", "1"), ("video_id", &video_id)]),
        ("/douyin/relation/action/", vec![("action_type", "1"), ("to_user_id", &author_s)]),
    ];
    let mut refused = 0;
    for (path, params) in &writes {
        let mut query = params.clone();
        query.push(("token", &fan_token));
        let reply = gw.post(path, &query).await;
        if reply["status_code"] != 0 {
            refused += 1;
            eprintln!("{path}: {reply}");
        }
    }
    let comments = gw.get("/douyin/comment/list/", &[("video_id", &video_id)]).await;
    ok("comment list", &comments);
    assert_eq!(comments["comment_list"].as_array().unwrap().len(), 1, "{comments}");
    assert_eq!(refused, 0, "committed writes answered as failures");
    let feed = gw.get("/douyin/feed/", &[]).await;
    assert_eq!(
        (&feed["video_list"][0]["favorite_count"], &feed["video_list"][0]["comment_count"]),
        (&1.into(), &1.into())
    );
    figure("fault", "counter-hanging writes answered");
    split.stop().await;
    listener.abort();
}
