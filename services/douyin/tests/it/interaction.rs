//! Routes 7–10 (likes, comments) and the rankings, over real HTTP: exact
//! counts under concurrency and across cache flushes, refusals, list shapes.

use crate::common;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::common::{TestApp, assert_refused};
use douyin_kit::cache::{Cache, RedisCache, suite};
use serde_json::Value;

/// Publishing many videos is faster without covers; covers are not what
/// these tests are about.
async fn spawn() -> TestApp {
    TestApp::spawn_with(|c| c.ffmpeg_path = "douyin-test-no-ffmpeg".into()).await
}

fn ok(reply: &Value) {
    assert_eq!(reply["status_code"], 0, "{reply}");
}

async fn register_many(app: &TestApp, prefix: &str, n: usize) -> Vec<(i64, String)> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let mut users = Vec::with_capacity(n);
    for chunk in names.chunks(10) {
        users.extend(futures::future::join_all(chunk.iter().map(|name| app.register(name))).await);
    }
    users
}

/// Publishes `titles` in order; returns their ids in the same order.
async fn publish_many(app: &TestApp, author: &(i64, String), titles: &[String]) -> Vec<i64> {
    for title in titles {
        ok(&app.publish(&author.1, title, common::sample_mp4()).await);
    }
    let list = app.get("/douyin/publish/list/", &[("user_id", &author.0.to_string())]).await;
    ok(&list);
    let by_title: HashMap<&str, i64> = list["video_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["title"].as_str().unwrap(), v["id"].as_i64().unwrap()))
        .collect();
    titles.iter().map(|t| by_title[t.as_str()]).collect()
}

async fn favorite(app: &TestApp, token: &str, video_id: i64, action: &str) -> Value {
    app.post_query(
        "/douyin/favorite/action/",
        &[("token", token), ("video_id", &video_id.to_string()), ("action_type", action)],
    )
    .await
}

async fn user(app: &TestApp, token: &str, user_id: i64) -> Value {
    let reply = app.get("/douyin/user/", &[("token", token), ("user_id", &user_id.to_string())]).await;
    ok(&reply);
    reply["user"].clone()
}

/// The favorite list of `user_id` as seen by `token` (anonymous when None).
async fn favorites(app: &TestApp, user_id: i64, token: Option<&str>) -> Vec<Value> {
    let id = user_id.to_string();
    let mut query = vec![("user_id", id.as_str())];
    if let Some(token) = token {
        query.push(("token", token));
    }
    let reply = app.get("/douyin/favorite/list/", &query).await;
    ok(&reply);
    reply["video_list"].as_array().unwrap_or_else(|| panic!("video_list must be an array: {reply}")).clone()
}

/// One video as its author's publish list shows it.
async fn video(app: &TestApp, author_id: i64, video_id: i64) -> Value {
    let list = app.get("/douyin/publish/list/", &[("user_id", &author_id.to_string())]).await;
    ok(&list);
    list["video_list"].as_array().unwrap().iter().find(|v| v["id"] == video_id).cloned().expect("video listed")
}

fn ids(videos: &[Value]) -> Vec<i64> {
    videos.iter().map(|v| v["id"].as_i64().unwrap()).collect()
}

// ------------------------------------------------------------ cache flushes

/// Deletes every key of the app's cache at once, as `FLUSHALL` would: with
/// Redis through a client of the test's own (only this test's prefix, so
/// parallel tests keep theirs), otherwise through the in-process cache.
pub(crate) enum Flusher {
    Redis(redis::aio::MultiplexedConnection, String),
    Memory(Arc<dyn Cache>),
}

const DELETE_PREFIX: &str = r"
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do redis.call('DEL', key) end
until cursor == '0'
return 0
";

impl Flusher {
    pub(crate) async fn new(app: &TestApp) -> Self {
        match &app.config.redis_url {
            Some(url) => {
                let client = redis::Client::open(url.as_str()).unwrap();
                let conn = client.get_multiplexed_async_connection().await.unwrap();
                Flusher::Redis(conn, format!("{}:*", app.config.redis_prefix))
            }
            None => Flusher::Memory(app.cache.clone()),
        }
    }

    pub(crate) async fn flush(&mut self) {
        match self {
            Flusher::Redis(conn, pattern) => {
                let _: i64 = redis::Script::new(DELETE_PREFIX).arg(pattern.as_str()).invoke_async(conn).await.unwrap();
            }
            Flusher::Memory(cache) => cache.clear().await.unwrap(),
        }
    }
}

// ------------------------------------------------------------ concurrent likes

const CLIENTS: usize = 50;
const TOGGLES: usize = 20;

/// Client `i`'s `j`-th action: strictly alternating, odd clients starting
/// with an unlike (a no-op), so odd clients end liked and even ones not.
fn action(i: usize, j: usize) -> &'static str {
    if (i + j).is_multiple_of(2) { "1" } else { "2" }
}

/// Checks every count the toggle run touched against the like rows, read
/// through each user's favorite list.
async fn assert_toggle_counts(app: &TestApp, author: &(i64, String), video_id: i64, clients: &[(i64, String)]) {
    let mut rows = 0;
    let mut likers = 0;
    for (i, (id, token)) in clients.iter().enumerate() {
        let list = favorites(app, *id, Some(token)).await;
        let expected = usize::from(action(i, TOGGLES - 1) == "1");
        assert_eq!(ids(&list), vec![video_id; expected], "favorite list of client {i}");
        if let Some(v) = list.first() {
            assert_eq!(v["is_favorite"], true, "{v}");
        }
        rows += list.len() as i64;
        likers += expected as i64;
        let info = user(app, token, *id).await;
        assert_eq!(info["favorite_count"], list.len() as i64, "favorite_count of client {i}: {info}");
    }
    assert_eq!(rows, likers);
    assert_eq!(likers, (CLIENTS / 2) as i64);
    let v = video(app, author.0, video_id).await;
    assert_eq!(v["favorite_count"], rows, "{v}");
    let info = user(app, &author.1, author.0).await;
    assert_eq!(info["total_favorited"], rows, "{info}");
    let top = app.get("/douyin/rank/videos/", &[("limit", "1")]).await;
    ok(&top);
    assert_eq!(ids(top["video_list"].as_array().unwrap()), vec![video_id], "{top}");
    assert_eq!(top["video_list"][0]["favorite_count"], rows, "{top}");
}

/// 50 clients toggle like/unlike on one video 20 times each while readers
/// fill the cache; with `flush`, the cache is also flushed throughout.
async fn toggle_run(flush: bool) {
    let app = spawn().await;
    // The author is one of the 50 clients: self-likes move two counts of one row.
    let clients = register_many(&app, "toggler", CLIENTS).await;
    let author = clients[0].clone();
    let video_id = publish_many(&app, &author, &["contested".to_owned()]).await[0];

    let done = Arc::new(AtomicBool::new(false));
    let readers = {
        let (app, done, author) = (&app, done.clone(), author.clone());
        async move {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                let v = video(app, author.0, video_id).await;
                let count = v["favorite_count"].as_i64().unwrap();
                assert!((0..=CLIENTS as i64).contains(&count), "{v}");
                user(app, &author.1, author.0).await;
                app.get("/douyin/rank/videos/", &[]).await;
                reads += 1;
            }
            reads
        }
    };
    let flusher = {
        let (app, done) = (&app, done.clone());
        async move {
            let mut flushes = 0;
            if flush {
                let mut flusher = Flusher::new(app).await;
                let mut tick = tokio::time::interval(Duration::from_millis(15));
                while !done.load(Ordering::Relaxed) {
                    tick.tick().await;
                    flusher.flush().await;
                    flushes += 1;
                }
            }
            flushes
        }
    };
    let togglers = async {
        let runs = clients.iter().enumerate().map(|(i, (_, token))| {
            let app = &app;
            async move {
                for j in 0..TOGGLES {
                    let reply = favorite(app, token, video_id, action(i, j)).await;
                    assert_eq!(reply["status_code"], 0, "client {i} action {j}: {reply}");
                }
            }
        });
        futures::future::join_all(runs).await;
        done.store(true, Ordering::Relaxed);
    };
    let ((), reads, flushes) = tokio::join!(togglers, readers, flusher);
    assert!(reads > 0);
    assert!(!flush || flushes > 0);

    assert_toggle_counts(&app, &author, video_id, &clients).await;
    Flusher::new(&app).await.flush().await;
    assert_toggle_counts(&app, &author, video_id, &clients).await;
    app.stop().await;
}

#[tokio::test]
async fn concurrent_like_toggles_keep_every_count_exact() {
    toggle_run(false).await;
}

#[tokio::test]
async fn cache_flushed_during_concurrent_toggles_changes_no_count() {
    toggle_run(true).await;
}

// ------------------------------------------------------------ likes

/// 40 users like and unlike 8 videos of 4 authors all at once, so likes
/// are written many to a transaction; one liker's account is deleted under
/// its token first. Its likes are refused and leave no row; every other
/// like counts: each video's `favorite_count`, each author's
/// `total_favorited`, each liker's `favorite_count` and list match the likes
/// made, before and after the cache is flushed.
#[tokio::test]
async fn likes_of_many_users_at_once_keep_every_count_exact() {
    const LIKERS: usize = 40;
    const GONE: usize = 7;
    let app = spawn().await;
    let authors = register_many(&app, "batchauthor", 4).await;
    let mut videos: Vec<(i64, usize)> = Vec::new();
    for (a, author) in authors.iter().enumerate() {
        let titles = [format!("clip {a} one"), format!("clip {a} two")];
        videos.extend(publish_many(&app, author, &titles).await.into_iter().map(|id| (id, a)));
    }
    let likers = register_many(&app, "batchliker", LIKERS).await;
    // Liker `i` likes every video `j` with (i + j) % 4 != 0, then unlikes
    // video i % 8 (a no-op when it never liked it) and likes it again when
    // i is odd.
    let liked = |i: usize, j: usize| {
        let first = !(i + j).is_multiple_of(4);
        if j == i % videos.len() { i % 2 == 1 } else { first }
    };
    let db = douyin_kit::db::Db::connect(&app.config).await.unwrap();
    let gone = likers[GONE].0;
    user(&app, &likers[GONE].1, gone).await;
    sqlx::query("DELETE FROM users WHERE id = ?").bind(gone).execute(db.pool()).await.unwrap();

    let runs = likers.iter().enumerate().map(|(i, (_, token))| {
        let (app, videos) = (&app, &videos);
        async move {
            let mut replies = Vec::new();
            for (j, (video_id, _)) in videos.iter().enumerate() {
                if !(i + j).is_multiple_of(4) {
                    replies.push(favorite(app, token, *video_id, "1").await);
                }
            }
            let (again, _) = videos[i % videos.len()];
            replies.push(favorite(app, token, again, "2").await);
            if i % 2 == 1 {
                replies.push(favorite(app, token, again, "1").await);
            }
            replies
        }
    });
    for (i, replies) in futures::future::join_all(runs).await.into_iter().enumerate() {
        for reply in replies {
            if i == GONE {
                assert_ne!(reply["status_code"], 0, "a deleted account's like must be refused: {reply}");
            } else {
                ok(&reply);
            }
        }
    }
    let left: i64 = sqlx::Row::try_get(
        &sqlx::query("SELECT COUNT(*) FROM favorites WHERE user_id = ?").bind(gone).fetch_one(db.pool()).await.unwrap(),
        0,
    )
    .unwrap();
    assert_eq!(left, 0, "a deleted account's likes leave no row");

    for round in ["warm", "after a flush"] {
        let counted = |i: usize, j: usize| i != GONE && liked(i, j);
        for (j, (video_id, a)) in videos.iter().enumerate() {
            let expected = (0..LIKERS).filter(|i| counted(*i, j)).count() as i64;
            let v = video(&app, authors[*a].0, *video_id).await;
            assert_eq!(v["favorite_count"], expected, "{round}: video {j}: {v}");
        }
        for (a, author) in authors.iter().enumerate() {
            let expected = (0..LIKERS)
                .map(|i| videos.iter().enumerate().filter(|(j, (_, by))| *by == a && counted(i, *j)).count() as i64)
                .sum::<i64>();
            let info = user(&app, &author.1, author.0).await;
            assert_eq!(info["total_favorited"], expected, "{round}: author {a}: {info}");
        }
        for (i, (id, token)) in likers.iter().enumerate().filter(|(i, _)| *i != GONE) {
            let expected: HashSet<i64> =
                videos.iter().enumerate().filter(|(j, _)| counted(i, *j)).map(|(_, (v, _))| *v).collect();
            let list = favorites(&app, *id, Some(token)).await;
            assert_eq!(ids(&list).into_iter().collect::<HashSet<_>>(), expected, "{round}: liker {i}'s list");
            let info = user(&app, token, *id).await;
            assert_eq!(info["favorite_count"], expected.len() as i64, "{round}: liker {i}: {info}");
        }
        Flusher::new(&app).await.flush().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn likes_are_idempotent_and_refused_on_bad_input() {
    let app = spawn().await;
    let author = app.register("author").await;
    let (fan, token) = app.register("fan").await;
    let v = publish_many(&app, &author, &["one".to_owned()]).await[0];

    let check = |likes: i64| {
        let (app, author, token) = (&app, &author, &token);
        async move {
            assert_eq!(video(app, author.0, v).await["favorite_count"], likes);
            assert_eq!(user(app, token, fan).await["favorite_count"], likes);
            assert_eq!(user(app, token, author.0).await["total_favorited"], likes);
            assert_eq!(favorites(app, fan, Some(token)).await.len() as i64, likes);
        }
    };
    ok(&favorite(&app, &token, v, "2").await);
    check(0).await;
    ok(&favorite(&app, &token, v, "1").await);
    ok(&favorite(&app, &token, v, "1").await);
    check(1).await;
    assert_eq!(video(&app, author.0, v).await["is_favorite"], false, "anonymous viewer");

    // Refusals change nothing.
    let missing = favorite(&app, &token, 987_654, "1").await;
    assert_refused(&missing, "video");
    assert_eq!(missing["status_code"], 404, "{missing}");
    assert_refused(&favorite(&app, &token, 987_654, "2").await, "video");
    for bad in ["0", "3", "x", ""] {
        assert_refused(&favorite(&app, &token, v, bad).await, "action_type");
    }
    let vid = v.to_string();
    let no_action = app.post_query("/douyin/favorite/action/", &[("token", &token), ("video_id", &vid)]).await;
    assert_refused(&no_action, "action_type");
    for bad in ["-1", "0", "abc"] {
        let reply = app
            .post_query("/douyin/favorite/action/", &[("token", &token), ("video_id", bad), ("action_type", "2")])
            .await;
        assert_refused(&reply, "video_id");
    }
    let no_video = app.post_query("/douyin/favorite/action/", &[("token", &token), ("action_type", "2")]).await;
    assert_refused(&no_video, "video_id");
    let anonymous = app.post_query("/douyin/favorite/action/", &[("video_id", &vid), ("action_type", "2")]).await;
    assert_refused(&anonymous, "token");
    check(1).await;

    ok(&favorite(&app, &token, v, "2").await);
    ok(&favorite(&app, &token, v, "2").await);
    check(0).await;
    // The form and JSON encodings reach the same route.
    ok(&app
        .post_form("/douyin/favorite/action/", &[("token", &token), ("video_id", &vid), ("action_type", "1")])
        .await);
    check(1).await;
    app.stop().await;
}

#[tokio::test]
async fn favorite_lists_of_0_1_and_40_likes() {
    let app = spawn().await;
    let author = app.register("maker").await;
    let users = register_many(&app, "liker", 3).await;
    let [(none, none_token), (one, one_token), (many, many_token)] = [0, 1, 2].map(|i| users[i].clone());
    let titles: Vec<String> = (0..41).map(|i| format!("clip {i}")).collect();
    let videos = publish_many(&app, &author, &titles).await;

    ok(&favorite(&app, &one_token, videos[5], "1").await);
    for v in &videos[..40] {
        ok(&favorite(&app, &many_token, *v, "1").await);
    }

    // 0 likes: an empty array (also for an anonymous viewer).
    assert!(favorites(&app, none, Some(&none_token)).await.is_empty());
    assert!(favorites(&app, none, None).await.is_empty());
    assert_eq!(user(&app, &none_token, none).await["favorite_count"], 0);

    // 1 like, seen by its owner, by someone else who likes it too, anonymously.
    let list = favorites(&app, one, Some(&one_token)).await;
    assert_eq!(ids(&list), vec![videos[5]]);
    let v = &list[0];
    assert_eq!(v["title"], "clip 5");
    assert_eq!(v["author"]["id"], author.0);
    assert_eq!(v["author"]["name"], "maker");
    assert_eq!(v["favorite_count"], 2, "{v}");
    assert_eq!(v["is_favorite"], true);
    assert_eq!(favorites(&app, one, Some(&many_token)).await[0]["is_favorite"], true);
    assert_eq!(favorites(&app, one, None).await[0]["is_favorite"], false);
    assert_eq!(favorites(&app, one, Some(&author.1)).await[0]["is_favorite"], false);

    // 40 likes: the list of the user named by user_id, whoever asks.
    let expected: HashSet<i64> = videos[..40].iter().copied().collect();
    for (viewer, liked) in [(Some(&many_token), Some(&expected)), (Some(&one_token), None), (None, None)] {
        let list = favorites(&app, many, viewer.map(String::as_str)).await;
        assert_eq!(list.len(), 40);
        assert_eq!(ids(&list).into_iter().collect::<HashSet<_>>(), expected);
        for v in &list {
            let id = v["id"].as_i64().unwrap();
            let mine = match liked {
                Some(set) => set.contains(&id),
                None => viewer.is_some() && id == videos[5],
            };
            assert_eq!(v["is_favorite"], mine, "{v}");
            assert_eq!(v["favorite_count"], if id == videos[5] { 2 } else { 1 }, "{v}");
            assert!(v["play_url"].as_str().unwrap().starts_with("http"));
            assert!(v["cover_url"].as_str().unwrap().starts_with("http"));
        }
    }
    assert_eq!(user(&app, &many_token, many).await["favorite_count"], 40);
    assert_eq!(user(&app, &author.1, author.0).await["total_favorited"], 41);
    assert_eq!(user(&app, &author.1, author.0).await["work_count"], 41);

    // Refusals: no such user, no user_id, a malformed one.
    assert_refused(&app.get("/douyin/favorite/list/", &[("user_id", "987654")]).await, "user");
    assert_refused(&app.get("/douyin/favorite/list/", &[]).await, "user_id");
    assert_refused(&app.get("/douyin/favorite/list/", &[("user_id", "abc")]).await, "user_id");

    // Cost: a warm page of 30 videos with a token is two cache round trips
    // and no SQL: the newest-videos window, then the counts of videos,
    // authors and the viewer together. The video rows and author profiles
    // this process has read, and the viewer's likes and follows at the
    // version of the viewer's counts just read, come from its memory. A like
    // reads the video's author from the row in memory too and writes counts
    // back in three.
    // The counter's repair loop stores rows marked dirty once a second on
    // the same cache, so one sample may include a round of it: the cost of
    // a request is the least of three samples.
    let feed = app.get("/douyin/feed/", &[("token", &many_token)]).await;
    assert_eq!(feed["video_list"].as_array().unwrap().len(), 30);
    let mut feed_commands = u64::MAX;
    for _ in 0..3 {
        let before = app.cache.commands();
        let feed = app.get("/douyin/feed/", &[("token", &many_token)]).await;
        assert_eq!(feed["video_list"].as_array().unwrap().len(), 30);
        feed_commands = feed_commands.min(app.cache.commands() - before);
    }
    let mut like_commands = u64::MAX;
    for video in &videos[38..] {
        let before = app.cache.commands();
        ok(&favorite(&app, &none_token, *video, "1").await);
        like_commands = like_commands.min(app.cache.commands() - before);
    }
    println!("cache commands: feed of 30 = {feed_commands}, like = {like_commands}");
    if app.config.redis_cluster_nodes.is_empty() {
        assert_eq!(feed_commands, 2);
        assert_eq!(like_commands, 3);
    } else {
        // The counts read is one MGET per master holding the page's keys.
        assert!((2..=4).contains(&feed_commands), "{feed_commands} commands for a feed page in a cluster");
        // A Redis Cluster runs each script on the keys of one bucket: the
        // like's counts (video, author, liker) are up to three scripts and its
        // ranking entries (the video's part, the author's and the liker's) up
        // to three, sent in parallel to the masters that hold them, where one
        // Redis runs one script of each. Still one round trip per step.
        assert!((3..=7).contains(&like_commands), "{like_commands} commands for a like in a cluster");
    }
    app.stop().await;
}

// ------------------------------------------------------------ comments

async fn comment(app: &TestApp, token: &str, video_id: i64, text: &str) -> Value {
    app.post_query(
        "/douyin/comment/action/",
        &[("token", token), ("video_id", &video_id.to_string()), ("action_type", "1"), ("comment_text", text)],
    )
    .await
}

async fn delete_comment(app: &TestApp, token: &str, video_id: i64, comment_id: i64) -> Value {
    app.post_query(
        "/douyin/comment/action/",
        &[
            ("token", token),
            ("video_id", &video_id.to_string()),
            ("action_type", "2"),
            ("comment_id", &comment_id.to_string()),
        ],
    )
    .await
}

async fn comments(app: &TestApp, video_id: i64, token: Option<&str>) -> Vec<Value> {
    let id = video_id.to_string();
    let mut query = vec![("video_id", id.as_str())];
    if let Some(token) = token {
        query.push(("token", token));
    }
    let reply = app.get("/douyin/comment/list/", &query).await;
    ok(&reply);
    reply["comment_list"].as_array().unwrap_or_else(|| panic!("comment_list must be an array: {reply}")).clone()
}

fn today() -> HashSet<String> {
    let now = douyin_kit::db::now_ms();
    // Either side of a midnight that passes during the test.
    [now - 60_000, now + 60_000].into_iter().map(douyin_api::month_day).collect()
}

#[tokio::test]
async fn comments_across_users() {
    let app = spawn().await;
    let author = app.register("poster").await;
    let (alice, alice_token) = app.register("alice").await;
    let (_bob, bob_token) = app.register("bob").await;
    let [v, other] = publish_many(&app, &author, &["talk".to_owned(), "quiet".to_owned()]).await[..] else {
        unreachable!()
    };
    assert!(comments(&app, v, None).await.is_empty());

    let first = comment(&app, &alice_token, v, "first!").await;
    ok(&first);
    let c = &first["comment"];
    assert!(c["id"].as_i64().unwrap() > 0);
    assert_eq!(c["content"], "first!");
    assert_eq!(c["user"]["id"], alice);
    assert_eq!(c["user"]["name"], "alice");
    assert!(today().contains(c["create_date"].as_str().unwrap()), "{c}");
    let second = comment(&app, &bob_token, v, "second").await;
    ok(&second);
    let third = comment(&app, &alice_token, v, "third").await;
    ok(&third);

    // Newest first, each with its author and a MM-DD date.
    let list = comments(&app, v, Some(&bob_token)).await;
    let contents: Vec<&str> = list.iter().map(|c| c["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["third", "second", "first!"]);
    assert_eq!(list[1]["user"]["name"], "bob");
    for c in &list {
        assert!(today().contains(c["create_date"].as_str().unwrap()), "{c}");
    }
    assert_eq!(video(&app, author.0, v).await["comment_count"], 3);
    assert!(comments(&app, other, None).await.is_empty());

    // Only the author deletes, and only under the comment's own video.
    let first_id = first["comment"]["id"].as_i64().unwrap();
    let theirs = delete_comment(&app, &bob_token, v, first_id).await;
    assert_refused(&theirs, "author");
    assert_eq!(theirs["status_code"], 403, "{theirs}");
    assert_refused(&delete_comment(&app, &alice_token, other, first_id).await, "does not belong");
    assert_refused(&delete_comment(&app, &alice_token, 987_654, first_id).await, "video");
    assert_eq!(comments(&app, v, None).await.len(), 3);

    // Delete returns the deleted comment; a second delete finds nothing.
    let deleted = delete_comment(&app, &alice_token, v, first_id).await;
    ok(&deleted);
    assert_eq!(deleted["comment"]["id"], first_id);
    assert_eq!(deleted["comment"]["content"], "first!");
    assert_eq!(deleted["comment"]["user"]["id"], alice);
    let again = delete_comment(&app, &alice_token, v, first_id).await;
    assert_refused(&again, "does not exist");
    assert_refused(&delete_comment(&app, &alice_token, v, 987_654).await, "does not exist");
    let contents: Vec<String> =
        comments(&app, v, None).await.iter().map(|c| c["content"].as_str().unwrap().to_owned()).collect();
    assert_eq!(contents, ["third", "second"]);
    assert_eq!(video(&app, author.0, v).await["comment_count"], 2);

    // Length is counted in characters: 0 and 501 refused, 500 CJK accepted.
    assert_refused(&comment(&app, &alice_token, v, "").await, "comment_text");
    assert_refused(&comment(&app, &alice_token, v, "   ").await, "comment_text");
    assert_refused(&comment(&app, &alice_token, v, &"a".repeat(501)).await, "500");
    assert_refused(&comment(&app, &alice_token, v, &"长".repeat(501)).await, "500");
    let long = format!("{}😀", "长".repeat(499));
    let accepted = comment(&app, &alice_token, v, &long).await;
    ok(&accepted);
    assert_eq!(accepted["comment"]["content"], long.as_str());
    assert_eq!(comments(&app, v, None).await[0]["content"], long.as_str());
    let vid = v.to_string();
    let missing = app
        .post_query("/douyin/comment/action/", &[("token", &alice_token), ("video_id", &vid), ("action_type", "1")])
        .await;
    assert_refused(&missing, "comment_text");
    let no_id = app
        .post_query("/douyin/comment/action/", &[("token", &alice_token), ("video_id", &vid), ("action_type", "2")])
        .await;
    assert_refused(&no_id, "comment_id");
    let bad_action = app
        .post_query("/douyin/comment/action/", &[("token", &alice_token), ("video_id", &vid), ("action_type", "3")])
        .await;
    assert_refused(&bad_action, "action_type");
    assert_refused(&comment(&app, &alice_token, 987_654, "hello").await, "video");
    let anonymous = app
        .post_query("/douyin/comment/action/", &[("video_id", &vid), ("action_type", "1"), ("comment_text", "hi")])
        .await;
    assert_refused(&anonymous, "token");
    // The default word list applies.
    assert_refused(&comment(&app, &alice_token, v, "你是傻逼").await, "not allowed");
    assert_refused(&app.get("/douyin/comment/list/", &[("video_id", "987654")]).await, "video");
    assert_refused(&app.get("/douyin/comment/list/", &[]).await, "video_id");

    // Refusals changed nothing; the count survives a flush.
    assert_eq!(video(&app, author.0, v).await["comment_count"], 3);
    Flusher::new(&app).await.flush().await;
    assert_eq!(video(&app, author.0, v).await["comment_count"], 3);
    assert_eq!(comments(&app, v, None).await.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn comments_with_configured_sensitive_words_are_refused() {
    let app = TestApp::spawn_with(|c| {
        c.ffmpeg_path = "douyin-test-no-ffmpeg".into();
        c.sensitive_words = vec!["Spoiler".into(), "剧透".into()];
    })
    .await;
    let author = app.register("critic").await;
    let v = publish_many(&app, &author, &["film".to_owned()]).await[0];
    for text in ["huge SPOILER ahead", "这里有剧透", "spoilers"] {
        let reply = comment(&app, &author.1, v, text).await;
        assert_refused(&reply, "not allowed");
        assert_eq!(reply["status_code"], 400, "{reply}");
    }
    ok(&comment(&app, &author.1, v, "no surprises here").await);
    assert_eq!(video(&app, author.0, v).await["comment_count"], 1);
    assert_eq!(comments(&app, v, None).await.len(), 1);
    app.stop().await;
}

// ------------------------------------------------------------ rankings

async fn follow(app: &TestApp, token: &str, to: i64) {
    let reply = app
        .post_query(
            "/douyin/relation/action/",
            &[("token", token), ("to_user_id", &to.to_string()), ("action_type", "1")],
        )
        .await;
    ok(&reply);
}

async fn rank(app: &TestApp, what: &str, limit: Option<&str>) -> Vec<Value> {
    let mut query = vec![];
    if let Some(limit) = limit {
        query.push(("limit", limit));
    }
    let reply = app.get(&format!("/douyin/rank/{what}/"), &query).await;
    ok(&reply);
    let key = if what == "videos" { "video_list" } else { "user_list" };
    reply[key].as_array().unwrap_or_else(|| panic!("{key} must be an array: {reply}")).clone()
}

#[tokio::test]
async fn rankings_order_limit_and_survive_a_flush() {
    let app = spawn().await;
    let a = app.register("rank-a").await;
    let b = app.register("rank-b").await;
    let c = app.register("rank-c").await;
    let fans = register_many(&app, "rank-fan", 4).await;
    let [a1, a2] = publish_many(&app, &a, &["a1".to_owned(), "a2".to_owned()]).await[..] else { unreachable!() };
    let b1 = publish_many(&app, &b, &["b1".to_owned()]).await[0];
    let c1 = publish_many(&app, &c, &["c1".to_owned()]).await[0];
    let _unliked = publish_many(&app, &c, &["c2".to_owned()]).await[0];
    assert!(rank(&app, "videos", None).await.is_empty());
    assert!(rank(&app, "users", None).await.is_empty());

    // b1: 3 likes, a2 and c1: 2 (a2 is older, so first), a1: 1.
    for (video, likers) in [(b1, 3), (a2, 2), (c1, 2), (a1, 1)] {
        for fan in &fans[..likers] {
            ok(&favorite(&app, &fan.1, video, "1").await);
        }
    }
    // b: 4 followers, a: 2, c: 1.
    for (target, followers) in [(b.0, 4), (a.0, 2), (c.0, 1)] {
        for fan in &fans[..followers] {
            follow(&app, &fan.1, target).await;
        }
    }

    let check = |videos: Vec<i64>, users: Vec<i64>| {
        let (app, fans) = (&app, &fans);
        async move {
            let top = rank(app, "videos", None).await;
            assert_eq!(ids(&top), videos);
            let counts: Vec<i64> = top.iter().map(|v| v["favorite_count"].as_i64().unwrap()).collect();
            assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
            assert_eq!(ids(&rank(app, "videos", Some("2")).await), videos[..2]);
            assert_eq!(ids(&rank(app, "users", None).await), users);
            assert_eq!(ids(&rank(app, "users", Some("1")).await), users[..1]);
            let seen_by_fan = app.get("/douyin/rank/users/", &[("token", &fans[0].1), ("limit", "50")]).await;
            ok(&seen_by_fan);
            for u in seen_by_fan["user_list"].as_array().unwrap() {
                assert_eq!(u["is_follow"], true, "{u}");
            }
            let users_top = rank(app, "users", Some("50")).await;
            let followers: Vec<i64> = users_top.iter().map(|u| u["follower_count"].as_i64().unwrap()).collect();
            assert!(followers.windows(2).all(|w| w[0] >= w[1]), "{followers:?}");
        }
    };
    check(vec![b1, a2, c1, a1], vec![b.0, a.0, c.0]).await;
    let seen_by_fan = app.get("/douyin/rank/videos/", &[("token", &fans[3].1)]).await;
    let flags: Vec<bool> =
        seen_by_fan["video_list"].as_array().unwrap().iter().map(|v| v["is_favorite"].as_bool().unwrap()).collect();
    assert_eq!(flags, [false, false, false, false], "fan 3 liked nothing");

    // Limits outside 1..=50 are refused.
    for bad in ["51", "0", "-3", "ten"] {
        for what in ["videos", "users"] {
            let reply = app.get(&format!("/douyin/rank/{what}/"), &[("limit", bad)]).await;
            assert_refused(&reply, "limit");
        }
    }

    // Lost cache: rebuilt from the database; changes after the flush count.
    let mut flusher = Flusher::new(&app).await;
    flusher.flush().await;
    check(vec![b1, a2, c1, a1], vec![b.0, a.0, c.0]).await;
    flusher.flush().await;
    for fan in &fans[1..3] {
        ok(&favorite(&app, &fan.1, b1, "2").await);
    }
    ok(&favorite(&app, &fans[3].1, c1, "1").await);
    check(vec![c1, a2, a1, b1], vec![b.0, a.0, c.0]).await;
    flusher.flush().await;
    check(vec![c1, a2, a1, b1], vec![b.0, a.0, c.0]).await;
    app.stop().await;
}

// ------------------------------------------------------------ the cache suite

/// The cache behaviour suite against real Redis (the in-process cache runs it
/// in the kit's unit tests).
#[tokio::test]
#[ignore = "needs DOUYIN_TEST_REDIS_URL (a Redis server)"]
async fn redis_cache_passes_the_cache_suite() {
    let url = common::needs("DOUYIN_TEST_REDIS_URL");
    let prefix = format!("douyin-test-suite-{}", uuid::Uuid::new_v4().simple());
    let cache = RedisCache::connect(&url, &prefix).await.unwrap();
    cache.ping().await.unwrap();
    suite::all(&cache).await;
    cache.clear().await.unwrap();
    assert_eq!(cache.get_many_with_epoch(&[]).await.unwrap().0, None);
}
