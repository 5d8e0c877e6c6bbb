//! Routes 1, 5 and 6, over real HTTP: publish, feed paging, publish lists,
//! covers, and every refused upload leaving no row and no object behind. With
//! `DOUYIN_TEST_S3_ENDPOINT` set (see `.ci/s3.sh`) every app here keeps its
//! media in a real S3-API server, otherwise in a local directory; either way
//! the gateway serves it at /media (see the media suite; tests against S3 itself are in the s3 suite), and URLs are
//! presigned only for a configured public S3 endpoint.

use crate::common;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    path::Path,
    time::{Duration, Instant},
};

use crate::common::{TestApp, assert_refused, sample_mp4, split::Split};
use douyin_kit::{
    Config, Role,
    db::Db,
    storage::{self, ObjectStore},
};
use futures::StreamExt;
use serde_json::Value;
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn s3_endpoint() -> Option<String> {
    std::env::var("DOUYIN_TEST_S3_ENDPOINT").ok().filter(|v| !v.is_empty())
}

async fn ffmpeg_present() -> bool {
    tokio::process::Command::new("ffmpeg")
        .arg("-version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// An app whose video role finds no ffmpeg (default covers, fast publishes).
async fn spawn_without_ffmpeg() -> TestApp {
    TestApp::spawn_with(|c| c.ffmpeg_path = "/nonexistent/ffmpeg".into()).await
}

/// Sends a multipart publish with the given fields, in order.
async fn publish_fields(app: &TestApp, fields: Vec<(&str, Field)>) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new();
    for (name, field) in fields {
        form = match field {
            Field::Text(text) => form.text(name.to_owned(), text),
            Field::File(bytes) => form.part(
                name.to_owned(),
                reqwest::multipart::Part::bytes(bytes).file_name("clip.mp4").mime_str("video/mp4").unwrap(),
            ),
        };
    }
    let response = app.http.post(app.url("/douyin/publish/action/")).multipart(form).send().await.unwrap();
    (response.status().as_u16(), common::json(response).await)
}

enum Field {
    Text(String),
    File(Vec<u8>),
}

type Fields = Vec<(&'static str, Field)>;

fn text(s: &str) -> Field {
    Field::Text(s.to_owned())
}

#[track_caller]
fn assert_ok(reply: &Value) {
    assert_eq!(reply["status_code"], 0, "{reply}");
}

async fn feed(app: &TestApp, query: &[(&str, &str)]) -> Value {
    let reply = app.get("/douyin/feed/", query).await;
    assert_ok(&reply);
    assert!(reply["video_list"].is_array() && reply["next_time"].is_i64(), "{reply}");
    reply
}

async fn publish_list(app: &TestApp, user_id: i64, token: Option<&str>) -> Vec<Value> {
    let id = user_id.to_string();
    let mut query = vec![("user_id", id.as_str())];
    if let Some(token) = token {
        query.push(("token", token));
    }
    let reply = app.get("/douyin/publish/list/", &query).await;
    assert_ok(&reply);
    reply["video_list"].as_array().unwrap().clone()
}

fn ids(videos: &Value) -> Vec<i64> {
    videos.as_array().unwrap().iter().map(|v| v["id"].as_i64().unwrap()).collect()
}

fn titles(videos: &[Value]) -> Vec<&str> {
    videos.iter().map(|v| v["title"].as_str().unwrap()).collect()
}

/// Every documented key of a Video and of its author, with the right types.
#[track_caller]
fn assert_video_shape(video: &Value) {
    let keys: BTreeSet<&str> = video.as_object().unwrap().keys().map(String::as_str).collect();
    let expected = ["author", "comment_count", "cover_url", "favorite_count", "id", "is_favorite", "play_url", "title"];
    assert_eq!(keys, expected.into_iter().collect(), "{video}");
    for key in ["id", "favorite_count", "comment_count"] {
        assert!(video[key].is_i64(), "{key} in {video}");
    }
    assert!(video["is_favorite"].is_boolean());
    for key in ["play_url", "cover_url"] {
        let url = video[key].as_str().unwrap();
        assert!(url.starts_with("http://") || url.starts_with("https://"), "{key} = {url:?}");
    }
    let author = &video["author"];
    for key in ["follow_count", "follower_count", "total_favorited", "work_count", "favorite_count", "id"] {
        assert!(author[key].is_i64(), "{key} in {author}");
    }
    assert!(author["is_follow"].is_boolean() && author["name"].is_string() && author["signature"].is_string());
}

/// The store behind an app (the same directory or bucket), for listing objects.
async fn store_of(config: &Config) -> std::sync::Arc<dyn ObjectStore> {
    storage::from_config(config).await.unwrap()
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries.map(|e| e.unwrap()).map(|e| if e.file_type().unwrap().is_dir() { count_files(&e.path()) } else { 1 }).sum()
}

/// What a refused request must leave unchanged.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    feed: Vec<i64>,
    lists: Vec<Vec<i64>>,
    work_counts: Vec<i64>,
    objects: BTreeSet<String>,
    tmp_files: usize,
}

async fn snapshot(app: &TestApp, users: &[(i64, String)]) -> Snapshot {
    let mut lists = Vec::new();
    let mut work_counts = Vec::new();
    for (id, token) in users {
        lists.push(publish_list(app, *id, None).await.iter().map(|v| v["id"].as_i64().unwrap()).collect());
        let info = app.get("/douyin/user/", &[("user_id", &id.to_string()), ("token", token)]).await;
        work_counts.push(info["user"]["work_count"].as_i64().unwrap());
    }
    Snapshot {
        feed: ids(&feed(app, &[]).await["video_list"]),
        lists,
        work_counts,
        objects: store_of(&app.config).await.list("").await.unwrap().into_iter().collect(),
        tmp_files: count_files(&app.config.data_dir.join("tmp")),
    }
}

/// Polls (a removal after a cancelled upload runs in the background) until the
/// state equals `before`, then asserts it.
async fn assert_unchanged(app: &TestApp, users: &[(i64, String)], before: &Snapshot, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = snapshot(app, users).await;
        if now == *before {
            return;
        }
        if Instant::now() > deadline {
            assert_eq!(now, *before, "{what} changed the state");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn publish_feed_and_publish_list_across_users() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.register("alice").await;
    let (bob, bob_token) = app.register("bob").await;
    let (carol, _) = app.register("carol").await;
    let sample = sample_mp4();
    for (token, title) in [(&alice_token, "alice one"), (&bob_token, "bob one"), (&alice_token, "alice two")] {
        assert_ok(&app.publish(token, title, sample.clone()).await);
    }

    // Anonymous feed: everything, newest first.
    let page = feed(&app, &[]).await;
    let videos = page["video_list"].as_array().unwrap();
    assert_eq!(titles(videos), ["alice two", "bob one", "alice one"]);
    let authors: Vec<i64> = videos.iter().map(|v| v["author"]["id"].as_i64().unwrap()).collect();
    assert_eq!(authors, [alice, bob, alice]);
    videos.iter().for_each(assert_video_shape);
    assert_eq!(videos[0]["author"]["name"], "alice");
    assert_eq!(videos[0]["author"]["work_count"], 2);
    assert_eq!(videos[1]["author"]["work_count"], 1);
    assert!(videos.iter().all(|v| v["is_favorite"] == false && v["favorite_count"] == 0 && v["comment_count"] == 0));

    // The play URL serves the uploaded bytes.
    let played = app.http.get(videos[0]["play_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(played.status(), 200);
    assert_eq!(played.bytes().await.unwrap().as_ref(), sample.as_slice());

    // With a token: same page, flags relative to the caller.
    let mine = feed(&app, &[("token", &bob_token)]).await;
    assert_eq!(ids(&mine["video_list"]), ids(&page["video_list"]));
    assert!(mine["video_list"].as_array().unwrap().iter().all(|v| v["author"]["is_follow"] == false));
    let bearer =
        common::json(app.http.get(app.url("/douyin/feed")).bearer_auth(&alice_token).send().await.unwrap()).await;
    assert_eq!(ids(&bearer["video_list"]), ids(&page["video_list"]));

    // Publish lists are the named user's, whoever asks.
    let list = publish_list(&app, alice, Some(&bob_token)).await;
    assert_eq!(titles(&list), ["alice two", "alice one"]);
    assert!(list.iter().all(|v| v["author"]["id"] == alice));
    list.iter().for_each(assert_video_shape);
    assert_eq!(titles(&publish_list(&app, bob, None).await), ["bob one"]);
    assert_eq!(titles(&publish_list(&app, bob, Some(&alice_token)).await), ["bob one"]);
    assert!(publish_list(&app, carol, None).await.is_empty(), "an existing user without videos");

    let me = app.get("/douyin/user/", &[("token", &alice_token)]).await;
    assert_eq!(me["user"]["work_count"], 2, "{me}");
    app.stop().await;
}

#[tokio::test]
async fn publish_takes_its_parameters_from_anywhere() {
    let app = spawn_without_ffmpeg().await;
    let (alice, token) = app.register("alice").await;
    // File first, then the title; token as a Bearer header.
    let form = reqwest::multipart::Form::new()
        .part("data", reqwest::multipart::Part::bytes(sample_mp4()).file_name("x.bin"))
        .text("title", "file first");
    let response =
        app.http.post(app.url("/douyin/publish/action")).bearer_auth(&token).multipart(form).send().await.unwrap();
    assert_ok(&common::json(response).await);
    // Token and title in the query string, as the mobile client sends them.
    let form = reqwest::multipart::Form::new().part("data", reqwest::multipart::Part::bytes(sample_mp4()));
    let response = app
        .http
        .post(app.url("/douyin/publish/action/"))
        .query(&[("token", token.as_str()), ("title", "in the query")])
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_ok(&common::json(response).await);
    assert_eq!(titles(&publish_list(&app, alice, None).await), ["in the query", "file first"]);
    app.stop().await;
}

#[tokio::test]
async fn feed_pages_by_next_time_without_skips_or_repeats() {
    // 35 uploads at once from one address by two users: past the caps.
    let app = TestApp::spawn_with(|c| {
        c.ffmpeg_path = "/nonexistent/ffmpeg".into();
        c.uploads_max_per_user = 0;
        c.uploads_max_per_address = 0;
    })
    .await;
    let users = [app.register("alice").await, app.register("bob").await];
    let sample = sample_mp4();
    let started_ms = douyin_kit::db::now_ms();
    let replies: Vec<Value> = futures::stream::iter(0..70)
        .map(|i| {
            let (_, token) = &users[i % 2];
            let sample = sample.clone();
            let app = &app;
            async move { app.publish(token, &format!("clip {i}"), sample).await }
        })
        .buffer_unordered(35)
        .collect()
        .await;
    replies.iter().for_each(assert_ok);

    // Publish times as stored, to check order and report how close they are.
    let db = Db::connect(&app.config).await.unwrap();
    let published: BTreeMap<i64, i64> = sqlx::query("SELECT id, published_at_ms FROM videos")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
        .collect();
    db.close().await;
    assert_eq!(published.len(), 70);
    let seconds: BTreeSet<i64> = published.values().map(|ms| ms / 1000).collect();
    println!(
        "70 videos published in {} ms, spanning {} distinct second(s)",
        published.values().max().unwrap() - published.values().min().unwrap(),
        seconds.len()
    );

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut latest: Option<String> = None;
    let last_next_time = loop {
        assert!(pages.len() < 10, "paging does not end: {pages:?}");
        let mut query = Vec::new();
        if let Some(latest) = &latest {
            query.push(("latest_time", latest.as_str()));
        }
        let page = feed(&app, &query).await;
        let page_ids = ids(&page["video_list"]);
        let next_time = page["next_time"].as_i64().unwrap();
        if page_ids.is_empty() {
            break next_time;
        }
        assert_eq!(next_time, published[page_ids.last().unwrap()], "next_time is the oldest video's time in ms");
        pages.push(page_ids.len());
        seen.extend(page_ids);
        latest = Some(next_time.to_string());
    };
    assert_eq!(pages, [30, 30, 10]);
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!((seen.len(), unique.len()), (70, 70), "every video exactly once");
    let times: Vec<i64> = seen.iter().map(|id| published[id]).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "newest first across pages");
    assert!(last_next_time >= started_ms, "an empty page's next_time is now");

    // latest_time in seconds: strictly before that second.
    let newest_second = published.values().max().unwrap() / 1000;
    let page = feed(&app, &[("latest_time", &(newest_second + 1).to_string())]).await;
    assert_eq!(ids(&page["video_list"]), seen[..30]);
    let page = feed(&app, &[("latest_time", &newest_second.to_string())]).await;
    let expected: Vec<i64> = seen.iter().copied().filter(|id| published[id] < newest_second * 1000).take(30).collect();
    assert_eq!(ids(&page["video_list"]), expected);
    app.stop().await;
}

/// The feed's pages (ids, authors with their counts and follow flags, the
/// viewer's likes) as the API shows them, paged by `next_time` to the end.
async fn all_pages(app: &TestApp, token: Option<&str>) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut latest: Option<String> = None;
    loop {
        let mut query = Vec::new();
        if let Some(token) = token {
            query.push(("token", token));
        }
        if let Some(latest) = &latest {
            query.push(("latest_time", latest.as_str()));
        }
        let page = feed(app, &query).await;
        if page["video_list"].as_array().unwrap().is_empty() {
            return pages;
        }
        latest = Some(page["next_time"].as_i64().unwrap().to_string());
        pages.push(page["video_list"].clone());
        assert!(pages.len() < 10, "paging does not end");
    }
}

#[tokio::test]
async fn feed_pages_are_the_same_with_a_warm_a_cold_or_a_flushed_cache() {
    let app = TestApp::spawn_with(|c| {
        c.ffmpeg_path = "/nonexistent/ffmpeg".into();
        c.uploads_max_per_user = 0;
        c.uploads_max_per_address = 0;
    })
    .await;
    let mut flusher = crate::interaction::Flusher::new(&app).await;
    let users = [app.register("cache-alice").await, app.register("cache-bob").await];
    let (alice, bob) = (&users[0], &users[1]);
    for i in 0..35 {
        assert_ok(&app.publish(&users[i % 2].1, &format!("cached {i}"), sample_mp4()).await);
    }
    let newest = ids(&feed(&app, &[]).await["video_list"])[0];
    let like = [("token", bob.1.as_str()), ("video_id", &newest.to_string()), ("action_type", "1")];
    assert_ok(&app.post_query("/douyin/favorite/action/", &like).await);
    let follow = [("token", bob.1.as_str()), ("to_user_id", &alice.0.to_string()), ("action_type", "1")];
    assert_ok(&app.post_query("/douyin/relation/action/", &follow).await);

    // Cold after the flush, then warm, for anonymous and signed-in readers.
    flusher.flush().await;
    let cold = (all_pages(&app, None).await, all_pages(&app, Some(&bob.1)).await);
    assert_eq!(cold.0.iter().map(|p| p.as_array().unwrap().len()).collect::<Vec<_>>(), [30, 5]);
    let signed = &cold.1[0][0];
    assert_eq!((signed["id"].as_i64(), &signed["is_favorite"]), (Some(newest), &Value::Bool(true)), "{signed}");
    assert_eq!(signed["author"]["is_follow"], signed["author"]["id"] == alice.0, "{signed}");
    for _ in 0..2 {
        assert_eq!((all_pages(&app, None).await, all_pages(&app, Some(&bob.1)).await), cold, "warm pages");
    }

    // With the viewer's likes and follows cached: a change shows in the very
    // next page, and the pages are as before once it is undone.
    for (action, on) in [("2", false), ("1", true)] {
        let like = [("token", bob.1.as_str()), ("video_id", &newest.to_string()), ("action_type", action)];
        assert_ok(&app.post_query("/douyin/favorite/action/", &like).await);
        let page = feed(&app, &[("token", bob.1.as_str())]).await;
        let first = &page["video_list"][0];
        assert_eq!((first["id"].as_i64(), &first["is_favorite"]), (Some(newest), &Value::Bool(on)), "{first}");
        let follow = [("token", bob.1.as_str()), ("to_user_id", &alice.0.to_string()), ("action_type", action)];
        assert_ok(&app.post_query("/douyin/relation/action/", &follow).await);
        let page = feed(&app, &[("token", bob.1.as_str())]).await;
        for video in page["video_list"].as_array().unwrap() {
            let author = &video["author"];
            assert_eq!(author["is_follow"], on && author["id"] == alice.0, "{video}");
        }
    }
    assert_eq!(all_pages(&app, Some(&bob.1)).await, cold.1, "after the flags were changed back");

    // Flushed at any moment while pages are read and videos published: every
    // video is in the feed once its publish answered, and the pages are the
    // database's.
    let mut published = ids(&feed(&app, &[]).await["video_list"]);
    for round in 0..6 {
        if round % 2 == 0 {
            flusher.flush().await;
        }
        let reply = app.publish(&alice.1, &format!("fresh {round}"), sample_mp4()).await;
        assert_ok(&reply);
        if round % 3 == 1 {
            flusher.flush().await;
        }
        let page = ids(&feed(&app, &[]).await["video_list"]);
        assert!(page[0] > published[0], "round {round}: the new video is not first: {page:?}");
        assert_eq!(page[1..], published[..29], "round {round}");
        published = page;
    }
    let warm = all_pages(&app, Some(&bob.1)).await;
    flusher.flush().await;
    assert_eq!(all_pages(&app, Some(&bob.1)).await, warm, "after a last flush");
    assert_eq!(warm.iter().map(|p| p.as_array().unwrap().len()).sum::<usize>(), 41);
    app.stop().await;
}

#[tokio::test]
async fn covers_are_first_frames_when_ffmpeg_runs() {
    let app = TestApp::spawn().await;
    let (alice, token) = app.register("alice").await;
    assert_ok(&app.publish(&token, "with a cover", sample_mp4()).await);
    let video = publish_list(&app, alice, None).await.remove(0);
    let cover_url = video["cover_url"].as_str().unwrap();
    if ffmpeg_present().await {
        assert!(cover_url.contains("covers/"), "an extracted cover: {cover_url}");
        let cover = app.http.get(cover_url).send().await.unwrap();
        assert_eq!(cover.status(), 200);
        assert_eq!(cover.headers()["content-type"], "image/jpeg");
        let bytes = cover.bytes().await.unwrap();
        assert!(bytes.len() > 100 && bytes.starts_with(&[0xFF, 0xD8, 0xFF]), "not a JPEG");
        assert!(bytes.ends_with(&[0xFF, 0xD9]), "JPEG without its end marker");
    } else {
        println!("note: ffmpeg -version failed; the first-frame JPEG check is skipped");
        assert!(cover_url.ends_with("/static/cover.jpg"), "{cover_url}");
    }

    // Laid out as an MP4 (ftyp, moov, mdat) but not decodable: accepted, with
    // the default cover.
    let mut broken = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec();
    broken.extend_from_slice(b"\x00\x00\x00\x10moov\x00\x00\x00\x08free");
    broken.extend_from_slice(&(4096u32 + 8).to_be_bytes());
    broken.extend_from_slice(b"mdat");
    broken.extend(std::iter::repeat_n(0x5Au8, 4096));
    assert_ok(&app.publish(&token, "undecodable", broken).await);
    // Bytes that only start like one are refused: a ZIP behind an ftyp box.
    let mut zip = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec();
    zip.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x08\x00");
    zip.extend(std::iter::repeat_n(0x5Au8, 4096));
    assert_refused(&app.publish(&token, "zip", zip).await, "well-formed");
    let video = publish_list(&app, alice, None).await.remove(0);
    assert_eq!(video["title"], "undecodable");
    assert_eq!(video["cover_url"], format!("{}/static/cover.jpg", app.base));
    app.stop().await;
}

#[tokio::test]
async fn the_default_cover_is_served_without_ffmpeg() {
    let app = spawn_without_ffmpeg().await;
    let (alice, token) = app.register("alice").await;
    assert_ok(&app.publish(&token, "no ffmpeg", sample_mp4()).await);
    let video = publish_list(&app, alice, None).await.remove(0);
    let cover_url = video["cover_url"].as_str().unwrap();
    assert_eq!(cover_url, format!("{}/static/cover.jpg", app.base));
    let cover = app.http.get(cover_url).send().await.unwrap();
    assert_eq!(cover.status(), 200);
    assert_eq!(cover.headers()["content-type"], "image/jpeg");
    assert!(cover.bytes().await.unwrap().starts_with(&[0xFF, 0xD8]));
    // Only the video itself was stored.
    let objects = store_of(&app.config).await.list("").await.unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(objects[0].starts_with("videos/"));
    app.stop().await;
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing() {
    let app = spawn_without_ffmpeg().await;
    let alice = app.register("alice").await;
    let token = alice.1.clone();
    let users = [alice.clone()];
    assert_ok(&app.publish(&token, "the only video", sample_mp4()).await);
    let before = snapshot(&app, &users).await;
    assert_eq!(before.feed.len(), 1);
    assert_eq!(before.objects.len(), 1);

    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec();
    png.extend(std::iter::repeat_n(0u8, 2048));
    let mut text_file = b"this is plain text pretending to be clip.mp4\n".repeat(50);
    text_file.truncate(2000);
    let mp4 = sample_mp4;
    let cases: Vec<(&str, Fields, &str)> = vec![
        ("a PNG", vec![("token", text(&token)), ("title", text("png")), ("data", Field::File(png))], "not a video"),
        (
            "text",
            vec![("token", text(&token)), ("title", text("txt")), ("data", Field::File(text_file))],
            "not a video",
        ),
        (
            "an empty file",
            vec![("token", text(&token)), ("title", text("empty")), ("data", Field::File(vec![]))],
            "empty",
        ),
        ("no data", vec![("token", text(&token)), ("title", text("no data"))], "data"),
        ("no title", vec![("token", text(&token)), ("data", Field::File(mp4()))], "title"),
        ("an empty title", vec![("token", text(&token)), ("title", text("")), ("data", Field::File(mp4()))], "title"),
        ("a blank title", vec![("token", text(&token)), ("title", text("   ")), ("data", Field::File(mp4()))], "title"),
        (
            "101 characters",
            vec![("token", text(&token)), ("title", text(&"x".repeat(101))), ("data", Field::File(mp4()))],
            "100 characters",
        ),
        (
            "101 CJK characters",
            vec![("token", text(&token)), ("title", text(&"字".repeat(101))), ("data", Field::File(mp4()))],
            "100 characters",
        ),
        ("NUL", vec![("token", text(&token)), ("title", text("nul\0here")), ("data", Field::File(mp4()))], "title"),
        (
            "a bad token",
            vec![("token", text("not-a-jwt")), ("title", text("t")), ("data", Field::File(mp4()))],
            "token",
        ),
        ("no token", vec![("title", text("anonymous")), ("data", Field::File(mp4()))], "token"),
        (
            "data twice",
            vec![
                ("token", text(&token)),
                ("title", text("twice")),
                ("data", Field::File(mp4())),
                ("data", Field::File(mp4())),
            ],
            "once",
        ),
    ];
    for (what, fields, needle) in cases {
        let (status, reply) = publish_fields(&app, fields).await;
        assert_eq!(status, 200, "{what}: {reply}");
        assert_refused(&reply, needle);
        if what == "a bad token" {
            assert_eq!(reply["status_code"], 401, "{reply}");
        }
        assert_unchanged(&app, &users, &before, what).await;
    }

    // Not multipart at all.
    let reply = app.post_form("/douyin/publish/action/", &[("token", &token), ("title", "form")]).await;
    assert_refused(&reply, "multipart");
    let reply = app.post_json("/douyin/publish/action/", serde_json::json!({"token": token, "title": "json"})).await;
    assert_refused(&reply, "multipart");
    assert_unchanged(&app, &users, &before, "a body that is not multipart").await;

    // A title with path characters is text: stored and returned as sent,
    // while the object key is generated.
    for title in ["../../etc/passwd", "..\\..\\boot.ini", "a/b/../c?x=1#frag", &"字".repeat(100)] {
        assert_ok(&app.publish(&token, title, sample_mp4()).await);
        let newest = publish_list(&app, alice.0, None).await.remove(0);
        assert_eq!(newest["title"], title);
    }
    let objects = store_of(&app.config).await.list("").await.unwrap();
    assert_eq!(objects.len(), 5);
    for key in &objects {
        let name = key.strip_prefix("videos/").unwrap_or_else(|| panic!("{key}"));
        let (stem, ext) = name.split_once('.').unwrap();
        assert!(stem.len() == 32 && stem.bytes().all(|b| b.is_ascii_hexdigit()) && ext == "mp4", "{key}");
    }
    if s3_endpoint().is_none() {
        assert!(!app.config.data_dir.join("etc").exists());
        assert_eq!(count_files(&app.config.data_dir.join("media")), 5);
    }
    app.stop().await;
}

#[tokio::test]
async fn oversize_uploads_get_413_in_json() {
    let app = TestApp::spawn_with(|c| {
        c.max_upload_bytes = 4096;
        c.ffmpeg_path = "/nonexistent/ffmpeg".into();
    })
    .await;
    let alice = app.register("alice").await;
    let users = [alice.clone()];
    let small = include_bytes!("../../../video/demo/demo2.mp4").to_vec();
    assert!(small.len() <= 4096);
    assert_ok(&app.publish(&alice.1, "under the limit", small).await);
    let before = snapshot(&app, &users).await;

    let just_over = {
        let mut v = sample_mp4();
        v.truncate(4097);
        v
    };
    let far_over = {
        let mut v = sample_mp4();
        v.resize(3 << 20, 0);
        v
    };
    for (what, data) in [("one byte over", just_over), ("over the body limit too", far_over)] {
        let (status, reply) = publish_fields(
            &app,
            vec![("token", text(&alice.1)), ("title", text("too big")), ("data", Field::File(data))],
        )
        .await;
        assert_eq!(status, 413, "{what}: {reply}");
        assert_eq!(reply["status_code"], 413, "{what}: {reply}");
        assert!(reply["status_msg"].as_str().unwrap().contains("limit"), "{reply}");
        assert_unchanged(&app, &users, &before, what).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn feed_and_list_parameters_are_checked() {
    let app = TestApp::spawn().await;
    let (alice, token) = app.register("alice").await;
    let empty = feed(&app, &[]).await;
    assert_eq!(empty["video_list"], serde_json::json!([]));
    let now = douyin_kit::db::now_ms();
    assert!((empty["next_time"].as_i64().unwrap() - now).abs() < 60_000, "{empty}");
    assert_ok(&feed(&app, &[("latest_time", "0")]).await);
    assert_ok(&feed(&app, &[("latest_time", "")]).await);

    for bad in ["abc", "-1", "-1700000000000", "1.5", "1e12", "99999999999999999999"] {
        let reply = app.get("/douyin/feed/", &[("latest_time", bad)]).await;
        assert_refused(&reply, "latest_time");
        assert_eq!(reply["video_list"], serde_json::json!([]), "{reply}");
        assert!(reply["next_time"].is_i64(), "{reply}");
    }
    let reply = app.get("/douyin/feed/", &[("token", "garbage")]).await;
    assert_eq!(reply["status_code"], 401, "{reply}");

    let reply = app.get("/douyin/publish/list/", &[("user_id", "987654")]).await;
    assert_refused(&reply, "does not exist");
    assert_eq!(reply["video_list"], serde_json::json!([]), "{reply}");
    let reply = app.get("/douyin/publish/list/", &[("user_id", "987654"), ("token", &token)]).await;
    assert_refused(&reply, "does not exist");
    for bad in ["0", "-3", "abc", ""] {
        let reply = app.get("/douyin/publish/list/", &[("user_id", bad)]).await;
        assert_refused(&reply, "user_id");
    }
    assert_refused(&app.get("/douyin/publish/list/", &[]).await, "user_id");
    let reply = app.get("/douyin/publish/list/", &[("user_id", &alice.to_string()), ("token", "garbage")]).await;
    assert_eq!(reply["status_code"], 401, "{reply}");
    app.stop().await;
}

/// A multipart publish whose client goes away halfway through the file.
async fn abort_upload(base: &str, token: &str) -> Vec<u8> {
    let addr = base.trim_start_matches("http://");
    let boundary = "douyin-test-boundary-7c1e";
    let data = sample_mp4();
    let mut head = Vec::new();
    for (name, value) in [("token", token), ("title", "aborted halfway")] {
        head.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
        );
    }
    head.extend(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"clip.mp4\"\r\nContent-Type: video/mp4\r\n\r\n")
            .bytes(),
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let full_len = head.len() + data.len() + tail.len();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /douyin/publish/action/ HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {full_len}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&head).await.unwrap();
    stream.write_all(&data[..data.len() / 2]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    response
}

/// Waits until no upload is in progress (the video role removes its temporary
/// directory when a publish ends, however it ends).
async fn uploads_settled(data_dir: &Path) {
    // Generous: on a loaded 2-core machine the cancelled call can take a while
    // to reach the video role; it settles in milliseconds when the machine is idle.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_files(&data_dir.join("tmp")) > 0
        || std::fs::read_dir(data_dir.join("tmp")).is_ok_and(|mut d| d.next().is_some())
    {
        assert!(Instant::now() < deadline, "an upload is still in progress: {:?}", list_tree(&data_dir.join("tmp")));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_aborted_upload_leaves_nothing() {
    let app = spawn_without_ffmpeg().await;
    let alice = app.register("alice").await;
    let users = [alice.clone()];
    let before = snapshot(&app, &users).await;
    let response = abort_upload(&app.base, &alice.1).await;
    let response = String::from_utf8_lossy(&response);
    assert!(!response.contains("\"status_code\":0"), "{response}");
    uploads_settled(&app.config.data_dir).await;
    assert_unchanged(&app, &users, &before, "an aborted upload").await;
    app.stop().await;
}

/// The same, with the gateway and the video role in two servers talking gRPC
/// over TCP: a cancelled upload must not reach the video role as a complete one.
#[tokio::test]
async fn an_aborted_upload_across_a_grpc_hop_leaves_nothing() {
    let roles = [Role::User, Role::Video, Role::Counter, Role::Interaction];
    let split = Split::start(&roles, |c| {
        c.ffmpeg_path = "/nonexistent/ffmpeg".into();
        // Bounds how long an upload whose sender went away can linger: idle
        // uploads give up after 2 s, and upload directories older than the 4 s
        // upload deadline are swept.
        c.upload_idle_timeout_secs = 2;
        c.upload_timeout_secs = 4;
    })
    .await;
    let (base, http) = (&split.base, &split.http);

    let reply = common::json(
        http.post(format!("{base}/douyin/user/register/?username=hop&password=secret123")).send().await.unwrap(),
    )
    .await;
    assert_ok(&reply);
    let (user_id, token) = (reply["user_id"].as_i64().unwrap(), reply["token"].as_str().unwrap().to_owned());
    let list_url = format!("{base}/douyin/publish/list/?user_id={user_id}");
    let store = store_of(&split.config).await;

    for _ in 0..3 {
        abort_upload(base, &token).await;
        uploads_settled(&split.config.data_dir).await;
        let list = common::json(http.get(&list_url).send().await.unwrap()).await;
        assert_eq!(list["video_list"], serde_json::json!([]), "a truncated upload was published: {list}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !store.list("").await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "objects left behind: {:?}", store.list("").await.unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A complete upload across the hop still works.
    let form = reqwest::multipart::Form::new()
        .text("token", token.clone())
        .text("title", "whole")
        .part("data", reqwest::multipart::Part::bytes(sample_mp4()).file_name("clip.mp4"));
    let reply =
        common::json(http.post(format!("{base}/douyin/publish/action/")).multipart(form).send().await.unwrap()).await;
    assert_ok(&reply);
    let list = common::json(http.get(&list_url).send().await.unwrap()).await;
    assert_eq!(list["video_list"][0]["title"], "whole", "{list}");
    let played = http.get(list["video_list"][0]["play_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(played.bytes().await.unwrap().as_ref(), sample_mp4().as_slice());

    split.stop().await;
}

/// The video role's own contract: a publish stream counts only with its end
/// marker, so a caller that goes away mid-upload never publishes half a file.
#[tokio::test]
async fn a_publish_stream_without_its_end_marker_is_discarded() {
    use douyin_proto::video::{
        PublishChunk, PublishEnd, PublishHeader, publish_chunk::Part, video_service_client::VideoServiceClient,
    };
    let app = spawn_without_ffmpeg().await;
    let alice = app.register("alice").await;
    let users = [alice.clone()];
    let before = snapshot(&app, &users).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc_addr)).unwrap();
    let credential = common::service_credential(Role::Video);
    let mut client =
        VideoServiceClient::with_interceptor(channel.connect().await.unwrap(), move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", credential.clone());
            Ok(req)
        });
    let sample = sample_mp4();
    let header =
        || PublishChunk { part: Some(Part::Header(PublishHeader { author_id: alice.0, title: "direct".into() })) };
    let data = |bytes: &[u8]| PublishChunk { part: Some(Part::Data(bytes.to_vec())) };
    let end = |size: usize| PublishChunk { part: Some(Part::End(PublishEnd { size: size as u64 })) };
    let half = &sample[..sample.len() / 2];
    let cut_off: Vec<(&str, Vec<PublishChunk>)> = vec![
        ("no end marker", vec![header(), data(half)]),
        ("a short upload", vec![header(), data(half), end(sample.len())]),
        ("data after the end", vec![header(), data(half), end(half.len()), data(half)]),
    ];
    for (what, chunks) in cut_off {
        let status = client.publish(futures::stream::iter(chunks)).await.expect_err(what);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().contains("upload"), "{what}: {status:?}");
        assert_unchanged(&app, &users, &before, what).await;
    }
    let whole = vec![header(), data(&sample[..100]), data(&sample[100..]), end(sample.len())];
    let id = client.publish(futures::stream::iter(whole)).await.unwrap().into_inner().video_id;
    assert_eq!(ids(&feed(&app, &[]).await["video_list"]), [id]);
    app.stop().await;
}

/// A client that stops sending halfway but keeps the connection open is
/// refused once the upload has been idle too long, and leaves nothing behind.
#[tokio::test]
async fn a_stalled_upload_is_abandoned() {
    let app = TestApp::spawn_with(|c| {
        c.ffmpeg_path = "/nonexistent/ffmpeg".into();
        c.upload_idle_timeout_secs = 1;
    })
    .await;
    let alice = app.register("stalled").await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let boundary = "douyin-stall-boundary";
    let data = sample_mp4();
    let mut head = Vec::new();
    for (name, value) in [("token", alice.1.as_str()), ("title", "stalled")] {
        head.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
        );
    }
    head.extend(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"v.mp4\"\r\n\r\n").bytes(),
    );
    let full_len = head.len() + data.len() + boundary.len() + 8;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /douyin/publish/action/ HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {full_len}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&head).await.unwrap();
    stream.write_all(&data[..data.len() / 2]).await.unwrap();
    // The connection stays open; the server answers on its own.
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut response))
        .await
        .expect("the server answers a stalled upload")
        .unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.contains("stalled"), "{response}");
    assert!(!response.contains("\"status_code\":0"), "{response}");
    uploads_settled(&app.config.data_dir).await;
    let list = app.get("/douyin/publish/list/", &[("user_id", &alice.0.to_string())]).await;
    assert_eq!(list["video_list"], serde_json::json!([]), "{list}");
    app.stop().await;
}

fn list_tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.display().to_string());
            if path.is_dir() {
                out.extend(list_tree(&path));
            }
        }
    }
    out
}
