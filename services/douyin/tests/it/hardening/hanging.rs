//! A Redis that hangs (SIGSTOP: connections accepted, nothing answered):
//! requests that never need it do not wait for it, those that do wait a
//! bounded few hundred milliseconds until the breaker skips it, and the rate
//! limits go on in the process.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::{RedisServer, favorite_count, figure};
use crate::common::{self, TestApp, sample_mp4};

/// The status and the time a GET of `path` took.
async fn timed(http: &reqwest::Client, url: String) -> (StatusCode, Duration) {
    let started = Instant::now();
    let response = http.get(&url).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status();
    let _ = response.bytes().await;
    (status, started.elapsed())
}

#[tokio::test]
#[ignore = "needs redis-server on PATH (a Redis it starts, pauses and resumes)"]
async fn a_hanging_redis_costs_requests_at_most_a_bounded_wait() {
    let port = common::free_port();
    let redis = RedisServer::start(port).await;
    let app = TestApp::spawn_with(|c| {
        c.redis_url = Some(format!("redis://127.0.0.1:{port}"));
        c.rate_limit_ip_per_sec = 1;
        c.rate_limit_ip_burst = 40;
    })
    .await;
    let (_, token) = app.register("hang_author").await;
    assert_eq!(app.publish(&token, "hanging", sample_mp4()).await["status_code"], 0);
    let video_id = app.get("/douyin/feed/", &[]).await["video_list"][0]["id"].as_i64().unwrap();
    let like = [("token", token.as_str()), ("video_id", &video_id.to_string()), ("action_type", "1")];
    assert_eq!(app.post_query("/douyin/favorite/action/", &like).await["status_code"], 0);

    redis.signal("-STOP");
    // Nothing Redis serves: no wait at all.
    for path in ["/", "/healthz", "/static/avatar.png"] {
        let (status, took) = timed(&app.http, app.url(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(took < Duration::from_millis(250), "{path} waited {took:?} for a hanging Redis");
    }
    // The first reads pay the call timeout until the breaker opens; after
    // that the feed answers from the database without waiting.
    let (status, took) = timed(&app.http, app.url("/douyin/feed/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(took < Duration::from_secs(3), "first feed with Redis hanging took {took:?}");
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(favorite_count(&app, video_id).await, Some(1), "counts from the database");
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_millis(800), "feed with Redis hanging: {slowest:?}");
    figure("hanging-redis-feed-ms", slowest.as_millis());

    // The rate limit holds in the process while Redis cannot count.
    let flooder = common::client_from("127.0.0.3");
    let mut limited = 0;
    for _ in 0..60 {
        let reply = flooder.get(app.url("/douyin/feed/")).send().await.unwrap();
        limited += usize::from(reply.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(limited >= 15, "{limited} of 60 requests over a burst of 40 were limited");

    redis.signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.cache.ping().await.is_err() {
        assert!(Instant::now() < deadline, "Redis calls did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let feed: Value = app.get("/douyin/feed/", &[]).await;
    assert_eq!(feed["status_code"], 0, "{feed}");
    assert_eq!(favorite_count(&app, video_id).await, Some(1));
    figure("fault", "redis-hanging bounded");
    app.stop().await;
    redis.stop();
}
