//! The gateway's edge metrics move when what they count happens: WebSocket
//! sessions and pushed messages, upload bytes and refusals, rate-limit
//! refusals. The registry is the process's, shared by the suites running
//! beside these, so each check compares before and after its own action.

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    common::{TestApp, sample_mp4},
    otlp::parse_metrics,
};

async fn metrics(app: &TestApp) -> HashMap<String, f64> {
    let text = app.http.get(format!("http://{}/metrics", app.admin_addr)).send().await.unwrap().text().await.unwrap();
    parse_metrics(&text)
}

fn value(metrics: &HashMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or_default()
}

async fn publish(app: &TestApp, token: &str, title: Option<&str>) -> Value {
    let mut form = reqwest::multipart::Form::new().text("token", token.to_owned());
    if let Some(title) = title {
        form = form.text("title", title.to_owned());
    }
    let form = form.part("data", reqwest::multipart::Part::bytes(sample_mp4()).file_name("v.mp4"));
    let response = app.http.post(app.url("/douyin/publish/action/")).multipart(form).send().await.unwrap();
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_push_session_is_counted_open_and_each_message_written_to_it() {
    let app = TestApp::spawn().await;
    let (_, ta) = app.register("metrics-ws-a").await;
    let (b, _) = app.register("metrics-ws-b").await;
    let sessions = "douyin_websocket_server_active_sessions";
    let pushed = "douyin_websocket_server_pushed_messages_total";
    let before = metrics(&app).await;

    let url = format!("{}/douyin/message/ws/?token={ta}", app.base.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket opens");
    let sent = app
        .post_query(
            "/douyin/message/action/",
            &[("token", &ta), ("to_user_id", &b.to_string()), ("action_type", "1"), ("content", "counted")],
        )
        .await;
    assert_eq!(sent["status_code"], 0, "{sent}");
    // The sender's own session gets the message.
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(text) = frame {
            assert!(text.contains("counted"), "{text}");
            break;
        }
    }
    let during = metrics(&app).await;
    assert!(value(&during, sessions) >= 1.0, "an open session is counted: {during:?}");
    assert!(value(&during, pushed) >= value(&before, pushed) + 1.0, "the pushed message is counted");
    socket.close(None).await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn upload_bytes_and_refusals_are_counted() {
    let app = TestApp::spawn().await;
    let (_, token) = app.register("metrics-uploader").await;
    let bytes = "douyin_upload_received_bytes_total";
    let untitled = r#"douyin_upload_refusals_total{reason="invalid_argument"}"#;
    let unauthenticated = r#"douyin_upload_refusals_total{reason="unauthenticated"}"#;
    let before = metrics(&app).await;

    assert_eq!(publish(&app, &token, Some("counted upload")).await["status_code"], 0);
    let after = metrics(&app).await;
    assert!(value(&after, bytes) >= value(&before, bytes) + sample_mp4().len() as f64, "{after:?}");
    assert!(after.contains_key("douyin_upload_active_requests"));

    assert_eq!(publish(&app, &token, None).await["status_code"], 400);
    assert_eq!(publish(&app, "not-a-token", Some("x")).await["status_code"], 401);
    let refused = metrics(&app).await;
    assert!(value(&refused, untitled) >= value(&before, untitled) + 1.0, "{refused:?}");
    assert!(value(&refused, unauthenticated) >= value(&before, unauthenticated) + 1.0, "{refused:?}");
    app.stop().await;
}

#[tokio::test]
async fn rate_limit_refusals_are_counted_by_limit() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_register_per_min = 1;
        c.rate_limit_register_burst = 1;
    })
    .await;
    let series = r#"douyin_rate_limit_refusals_total{limit="register"}"#;
    let before = metrics(&app).await;
    let register = |name: &'static str| {
        app.http.post(app.url("/douyin/user/register/")).form(&[("username", name), ("password", "secret123")]).send()
    };
    assert_eq!(register("metrics-limited-1").await.unwrap().status(), StatusCode::OK);
    assert_eq!(register("metrics-limited-2").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    let after = metrics(&app).await;
    assert!(value(&after, series) >= value(&before, series) + 1.0, "{after:?}");
    app.stop().await;
}
