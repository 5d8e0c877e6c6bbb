//! Media at /media, over real HTTP, for the store the environment gives: a
//! local directory, or with `DOUYIN_TEST_S3_ENDPOINT` set (see `.ci/s3.sh`) a
//! real S3-API server whose objects the gateway streams (no public S3
//! endpoint is configured, so nothing is presigned). Ranges as RFC 9110 says,
//! HEAD, validators and 304s, `nosniff`, and a big object streamed without
//! being held in memory.

use crate::common;

use std::time::SystemTime;

use crate::common::{TestApp, sample_mp4};
use douyin_kit::storage;
use futures::StreamExt;
use reqwest::Response;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[track_caller]
fn assert_ok(reply: &Value) {
    assert_eq!(reply["status_code"], 0, "{reply}");
}

async fn publish_list(app: &TestApp, user_id: i64) -> Vec<Value> {
    let reply = app.get("/douyin/publish/list/", &[("user_id", &user_id.to_string())]).await;
    assert_ok(&reply);
    reply["video_list"].as_array().unwrap().clone()
}

/// Publishes the sample video and returns its play URL.
pub(crate) async fn published_sample(app: &TestApp, name: &str) -> String {
    let (user, token) = app.register(name).await;
    assert_ok(&app.publish(&token, "media", sample_mp4()).await);
    publish_list(app, user).await.remove(0)["play_url"].as_str().unwrap().to_owned()
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or_else(|| panic!("no {name} header"))
}

/// A raw HTTP/1.1 GET, so paths reach the server exactly as written.
async fn raw_get(app: &TestApp, path: &str) -> (u16, Vec<u8>) {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
}

#[tokio::test]
async fn media_is_served_with_ranges_and_types() {
    let app = TestApp::spawn().await;
    let (alice, token) = app.register("alice").await;
    let sample = sample_mp4();
    assert_ok(&app.publish(&token, "ranges", sample.clone()).await);
    let video = publish_list(&app, alice).await.remove(0);
    let play_url = video["play_url"].as_str().unwrap().to_owned();
    // No public S3 endpoint: the gateway serves the media, S3 or local.
    assert!(play_url.starts_with(&format!("{}/media/videos/", app.base)), "{play_url}");
    let cover_url = video["cover_url"].as_str().unwrap();
    assert!(
        cover_url.starts_with(&format!("{}/media/covers/", app.base)) || cover_url.ends_with("/static/cover.jpg"),
        "{cover_url}"
    );
    let len = sample.len();

    let whole = app.http.get(&play_url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "video/mp4");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["content-length"], len.to_string().as_str());
    assert_eq!(whole.headers()["x-content-type-options"], "nosniff");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), sample.as_slice());

    let ranges =
        [("bytes=0-99", 0, 100), ("bytes=100-", 100, len), ("bytes=-50", len - 50, len), ("bytes=10-10", 10, 11)];
    for (range, start, end) in ranges {
        let part = app.http.get(&play_url).header("range", range).send().await.unwrap();
        assert_eq!(part.status(), 206, "{range}");
        assert_eq!(part.headers()["content-type"], "video/mp4", "{range}");
        let content_range = part.headers()["content-range"].to_str().unwrap().to_owned();
        assert_eq!(content_range, format!("bytes {start}-{}/{len}", end - 1), "{range}");
        assert_eq!(part.bytes().await.unwrap().as_ref(), &sample[start..end], "{range}");
    }
    for bad in [format!("bytes={len}-"), format!("bytes={}-{}", len + 10, len + 20), "bytes=-0".to_owned()] {
        let refused = app.http.get(&play_url).header("range", &bad).send().await.unwrap();
        assert_eq!(refused.status(), 416, "{bad}");
        assert_eq!(refused.headers()["content-range"], format!("bytes */{len}").as_str(), "{bad}");
        assert_eq!(refused.headers()["x-content-type-options"], "nosniff", "{bad}");
    }

    // Missing media answers the contract's JSON 404.
    let missing = app.http.get(app.url("/media/videos/0123456789abcdef0123456789abcdef.mp4")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-content-type-options"], "nosniff");
    assert_ne!(common::json(missing).await["status_code"], 0);

    // Nothing outside the media directory is reachable through /media.
    let secret = std::fs::read(app.config.data_dir.join("jwt.key")).unwrap();
    let escapes = [
        "/media/../jwt.key",
        "/media/%2e%2e/jwt.key",
        "/media/..%2fjwt.key",
        "/media/videos/..%2f..%2fjwt.key",
        "/media/videos/%2e%2e/%2e%2e/jwt.key",
        "/media/..%5cjwt.key",
        "/media/%2fetc%2fpasswd",
        "/media//etc/passwd",
        "/media/videos/../../douyin.db",
        "/media/../../../../etc/passwd",
    ];
    for path in escapes {
        let (status, body) = raw_get(&app, path).await;
        assert_ne!(status, 200, "{path}");
        assert!((400..500).contains(&status), "{path}: {status}");
        let body = String::from_utf8_lossy(&body);
        assert!(!body.contains(String::from_utf8_lossy(&secret).as_ref()), "{path} leaked the key");
        assert!(!body.contains("root:"), "{path} leaked /etc/passwd");
        assert!(!body.contains("SQLite format"), "{path} leaked the database");
    }
    app.stop().await;
}

#[tokio::test]
async fn ranges_follow_rfc_9110() {
    let app = TestApp::spawn().await;
    let play_url = published_sample(&app, "ranges").await;
    let sample = sample_mp4();
    let len = sample.len();
    let get = |range: String| {
        let request = app.http.get(&play_url).header("range", range);
        async move { request.send().await.unwrap() }
    };

    // A suffix longer than the file: the whole file, as a part.
    for range in [format!("bytes=-{}", len + 1), format!("bytes=-{}", len * 10), format!("bytes=-{len}")] {
        let part = get(range.clone()).await;
        assert_eq!(part.status(), 206, "{range}");
        assert_eq!(header(&part, "content-range"), format!("bytes 0-{}/{len}", len - 1), "{range}");
        assert_eq!(part.bytes().await.unwrap().as_ref(), sample.as_slice(), "{range}");
    }
    // A last position past the end is cut to the end.
    let part = get(format!("bytes={}-{}", len - 10, len + 1000)).await;
    assert_eq!(part.status(), 206);
    assert_eq!(header(&part, "content-range"), format!("bytes {}-{}/{len}", len - 10, len - 1));
    assert_eq!(part.bytes().await.unwrap().as_ref(), &sample[len - 10..]);

    // Unknown units and invalid syntax are ignored: 200 and the whole file.
    for range in
        ["items=0-10", "bytes=abc", "bytes=10-5", "bytes=--5", "bytes=+1-2", "bytes 0-10", "bytes=", "bytes=0-1;x"]
    {
        let whole = get(range.to_owned()).await;
        assert_eq!(whole.status(), 200, "{range}");
        assert!(whole.headers().get("content-range").is_none(), "{range}");
        assert_eq!(header(&whole, "x-content-type-options"), "nosniff");
        assert_eq!(whole.bytes().await.unwrap().as_ref(), sample.as_slice(), "{range}");
    }

    // Several ranges: the whole file, never 416, even when none is satisfiable.
    for range in [
        "bytes=0-9,20-29".to_owned(),
        "bytes=0-9, 5-14".to_owned(),
        format!("bytes={len}-,{}-", len + 5),
        format!("bytes=-5,{}-{}", len + 1, len + 2),
    ] {
        let whole = get(range.clone()).await;
        assert_eq!(whole.status(), 200, "{range}");
        assert_eq!(whole.bytes().await.unwrap().as_ref(), sample.as_slice(), "{range}");
    }

    // One range wholly past the end: 416 naming the length.
    let refused = get(format!("bytes={}-", len + 1)).await;
    assert_eq!(refused.status(), 416);
    assert_eq!(header(&refused, "content-range"), format!("bytes */{len}"));
    app.stop().await;
}

#[tokio::test]
async fn head_validators_and_not_modified() {
    let app = TestApp::spawn().await;
    let play_url = published_sample(&app, "validators").await;
    let len = sample_mp4().len();

    let whole = app.http.get(&play_url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    let etag = header(&whole, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "{etag}");
    let modified = header(&whole, "last-modified").to_owned();
    let modified_at = httpdate::parse_http_date(&modified).expect("an HTTP date");
    assert!(modified_at <= SystemTime::now() + std::time::Duration::from_secs(5));
    assert!(header(&whole, "cache-control").contains("max-age"));

    // HEAD: the same headers, no body.
    let head = app.http.head(&play_url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    for name in ["content-type", "content-length", "accept-ranges", "etag", "last-modified", "x-content-type-options"] {
        assert_eq!(head.headers().get(name), whole.headers().get(name), "{name}");
    }
    assert_eq!(header(&head, "content-length"), len.to_string());
    assert!(head.bytes().await.unwrap().is_empty());

    // If-None-Match with the tag (or a list holding it, or *): 304, no body.
    for condition in [etag.clone(), format!("\"other\", {etag}"), format!("W/{etag}"), "*".to_owned()] {
        for request in [app.http.get(&play_url), app.http.head(&play_url)] {
            let unchanged = request.header("if-none-match", &condition).send().await.unwrap();
            assert_eq!(unchanged.status(), 304, "{condition}");
            assert_eq!(header(&unchanged, "etag"), etag);
            assert_eq!(header(&unchanged, "x-content-type-options"), "nosniff");
            assert!(unchanged.bytes().await.unwrap().is_empty());
        }
    }
    let changed = app.http.get(&play_url).header("if-none-match", "\"something-else\"").send().await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.bytes().await.unwrap().len(), len);

    // If-Modified-Since: 304 from the Last-Modified date on; ignored next to If-None-Match.
    let since = app.http.get(&play_url).header("if-modified-since", &modified).send().await.unwrap();
    assert_eq!(since.status(), 304);
    let older = httpdate::fmt_http_date(modified_at - std::time::Duration::from_secs(3600));
    let since = app.http.get(&play_url).header("if-modified-since", &older).send().await.unwrap();
    assert_eq!(since.status(), 200);
    let both = app
        .http
        .get(&play_url)
        .header("if-modified-since", &modified)
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 200);

    // If-Range: the range only for the named representation.
    for (condition, status) in [(etag.clone(), 206), (modified.clone(), 206), ("\"stale\"".to_owned(), 200)] {
        let reply = app.http.get(&play_url).header("range", "bytes=0-9").header("if-range", &condition).send().await;
        assert_eq!(reply.unwrap().status(), status, "If-Range {condition}");
    }
    // Range is defined for GET only: HEAD describes the whole file.
    let head = app.http.head(&play_url).header("range", "bytes=0-9").send().await.unwrap();
    assert_eq!(head.status(), 200);
    app.stop().await;
}

/// Byte `i` of the big test object.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 12)) as u8
}

/// Resident memory of this process, bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
}

#[tokio::test]
async fn a_big_object_is_streamed_not_held_in_memory() {
    const SIZE: u64 = 96 * 1024 * 1024;
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.mp4");
    {
        let mut out = tokio::fs::File::create(&file).await.unwrap();
        let mut chunk = Vec::with_capacity(1 << 20);
        for start in (0..SIZE).step_by(1 << 20) {
            chunk.clear();
            chunk.extend((start..start + (1 << 20)).map(pattern));
            out.write_all(&chunk).await.unwrap();
        }
        out.flush().await.unwrap();
    }
    let key = format!("videos/{}.mp4", uuid::Uuid::new_v4().simple());
    let store = storage::from_config(&app.config).await.unwrap();
    store.put_file(&key, &file, "video/mp4").await.unwrap();
    let url = app.url(&format!("/media/{key}"));

    let before = resident_bytes();
    let response = app.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-length"), SIZE.to_string());
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    // A gateway that read the object whole before answering would hold all
    // 96 MiB by now; a streaming one holds a few buffers.
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 40 * 1024 * 1024, "resident memory grew by {} MiB before the first chunk", grown >> 20);
    let mut offset = 0u64;
    let mut check = |bytes: &[u8]| {
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(*b, pattern(offset + i as u64), "byte {}", offset + i as u64);
        }
        offset += bytes.len() as u64;
    };
    check(&first);
    while let Some(chunk) = body.next().await {
        check(&chunk.unwrap());
    }
    assert_eq!(offset, SIZE);

    // A range deep inside it.
    let start = 70 * 1024 * 1024 + 12_345;
    let part = app.http.get(&url).header("range", format!("bytes={start}-{}", start + 99)).send().await.unwrap();
    assert_eq!(part.status(), 206);
    let bytes = part.bytes().await.unwrap();
    assert_eq!(bytes.iter().copied().collect::<Vec<u8>>(), (start..start + 100).map(pattern).collect::<Vec<u8>>());
    store.delete(&key).await.unwrap();
    app.stop().await;
}
