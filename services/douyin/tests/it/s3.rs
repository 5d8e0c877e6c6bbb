//! The S3 store against a real S3-API server (`DOUYIN_TEST_S3_ENDPOINT`, see
//! `.ci/s3.sh`): the shared store suite, and URLs presigned for a configured
//! public endpoint, by the store and through the app.

use douyin_kit::{
    Config,
    storage::{self, ObjectStore, S3Store},
};

use crate::{
    common::{TestApp, needs, sample_mp4},
    media::published_sample,
};

const NEEDS_S3: &str = "DOUYIN_TEST_S3_ENDPOINT";

/// A configuration for an S3Store of its own bucket on the test server.
fn s3_config(endpoint: &str) -> Config {
    Config {
        s3_endpoint: Some(endpoint.to_owned()),
        s3_bucket: format!("douyin-kit-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        s3_access_key: std::env::var("DOUYIN_TEST_S3_ACCESS_KEY").ok(),
        s3_secret_key: std::env::var("DOUYIN_TEST_S3_SECRET_KEY").ok(),
        ..Config::default()
    }
}

/// The other spelling of a loopback endpoint, which reaches the same server
/// under a different Host (and so a different signature).
fn other_host(endpoint: &str) -> String {
    let public = if endpoint.contains("127.0.0.1") {
        endpoint.replace("127.0.0.1", "localhost")
    } else {
        endpoint.replace("localhost", "127.0.0.1")
    };
    assert_ne!(public, endpoint, "the test needs a 127.0.0.1 or localhost endpoint");
    public
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_S3_ENDPOINT (an S3-API server, see .ci/s3.sh)"]
async fn s3_store_passes_the_shared_suite() {
    let endpoint = needs(NEEDS_S3);
    let config = s3_config(&endpoint);
    let store = S3Store::new(&config, &endpoint).await.unwrap();
    store.ensure_bucket().await.expect("bucket created");
    store.ensure_bucket().await.expect("an existing bucket is fine");
    store.ping().await.unwrap();
    storage::suite::stores_and_deletes(&store).await;
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_S3_ENDPOINT (an S3-API server, see .ci/s3.sh)"]
async fn presigned_urls_use_the_public_endpoint() {
    let endpoint = needs(NEEDS_S3);
    let public = other_host(&endpoint);
    let mut config = s3_config(&endpoint);
    config.s3_public_endpoint = Some(public.clone());
    config.s3_presign_secs = 600;
    let store = S3Store::new(&config, &endpoint).await.unwrap();
    store.ensure_bucket().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clip.mp4");
    let sample = sample_mp4();
    std::fs::write(&file, &sample).unwrap();
    let key = format!("videos/{}.mp4", uuid::Uuid::new_v4().simple());
    store.put_file(&key, &file, "video/mp4").await.unwrap();

    let url = store.public_url(&key).await.unwrap();
    let prefix = format!("{}/{}/{key}?", public.trim_end_matches('/'), config.s3_bucket);
    assert!(url.starts_with(&prefix), "{url} should start with {prefix}");
    assert!(url.contains("X-Amz-Expires=600"), "{url}");
    let http = reqwest::Client::new();
    let whole = http.get(&url).send().await.unwrap();
    assert_eq!(whole.status(), 200, "{url}");
    assert_eq!(whole.headers()["content-type"], "video/mp4");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), sample.as_slice());
    let part = http.get(&url).header("range", "bytes=4-11").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &sample[4..12]);

    // Without a public endpoint nothing is presigned: the gateway serves the object.
    let plain = S3Store::new(&s3_config(&endpoint), &endpoint).await.unwrap();
    let url = plain.public_url(&key).await.unwrap();
    assert_eq!(url, format!("/media/{key}"));
    store.delete(&key).await.unwrap();
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_S3_ENDPOINT (an S3-API server, see .ci/s3.sh)"]
async fn with_a_public_s3_endpoint_urls_are_presigned() {
    let endpoint = needs(NEEDS_S3);
    let public = other_host(&endpoint);
    let app = TestApp::spawn_with(|c| c.s3_public_endpoint = Some(public.clone())).await;
    let play_url = published_sample(&app, "presigned").await;
    assert!(play_url.starts_with(&format!("{}/", public.trim_end_matches('/'))), "{play_url}");
    assert!(play_url.contains("X-Amz-Signature="), "{play_url}");
    let sample = sample_mp4();
    let whole = app.http.get(&play_url).send().await.unwrap();
    assert_eq!(whole.status(), 200, "{play_url}");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), sample.as_slice());
    let part = app.http.get(&play_url).header("range", "bytes=4-11").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &sample[4..12]);
    app.stop().await;
}
