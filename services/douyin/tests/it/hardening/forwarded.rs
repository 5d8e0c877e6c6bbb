//! Forwarded headers (`X-Forwarded-Host`, `-Proto`) are believed only from
//! trusted proxies: from anyone else they would point every link of a reply
//! (play_url, cover_url, avatar) at another host, which a shared cache keeps
//! for everyone.

use serde_json::Value;

use crate::common::{TestApp, client_from, send_json};

/// The avatar link of `user_id` in a reply to a request that claims to come
/// through `https://evil.example`.
async fn avatar(app: &TestApp, client: &reqwest::Client, user_id: i64, token: &str) -> String {
    let reply: Value = send_json(
        client
            .get(app.url("/douyin/user/"))
            .query(&[("user_id", user_id.to_string()), ("token", token.to_owned())])
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-proto", "https")
            .header("forwarded", "host=evil.example;proto=https"),
    )
    .await;
    assert_eq!(reply["status_code"], 0, "{reply}");
    reply["user"]["avatar"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn forwarded_host_and_proto_are_believed_only_from_trusted_proxies() {
    let app = TestApp::spawn_with(|c| c.trusted_proxies = vec!["127.0.7.0/24".into()]).await;
    let (id, token) = app.register("forwarded").await;

    let direct = avatar(&app, &client_from("127.0.0.1"), id, &token).await;
    assert!(!direct.contains("evil.example"), "a client chose the host of the links: {direct}");
    assert!(direct.starts_with("http://127.0.0.1:"), "links name the Host the client used: {direct}");

    let proxied = avatar(&app, &client_from("127.0.7.1"), id, &token).await;
    assert!(proxied.starts_with("https://evil.example/"), "a trusted proxy names the public origin: {proxied}");
    app.stop().await;
}
