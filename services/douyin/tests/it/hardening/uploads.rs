//! Uploads reach the video role (and its temporary files) only once their
//! uploader is known, and uploads in progress are capped per user, per
//! client address and in total.

use std::{path::Path, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use super::figure;
use crate::common::{TestApp, sample_mp4, send_json};

const BOUNDARY: &str = "douyin-test-boundary";

fn field(name: &str, value: &str) -> Vec<u8> {
    format!("--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").into_bytes()
}

fn file_head() -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"data\"; filename=\"clip.mp4\"\r\n\
         content-type: video/mp4\r\n\r\n"
    )
    .into_bytes()
}

fn end() -> Vec<u8> {
    format!("--{BOUNDARY}--\r\n").into_bytes()
}

/// A publish over a raw connection whose body is sent piece by piece
/// (chunked) while the request is open.
struct Upload {
    tcp: TcpStream,
}

impl Upload {
    async fn open(from: &str, app: &TestApp, query: &[(&str, &str)]) -> Upload {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut tcp = socket.connect(app.base.trim_start_matches("http://").parse().unwrap()).await.unwrap();
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let head = format!(
            "POST /douyin/publish/action/?{} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\
             content-type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n",
            query.join("&")
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        Upload { tcp }
    }

    async fn send(&mut self, bytes: Vec<u8>) {
        // A refused upload may stop reading: later pieces may find it closed.
        let chunk = [format!("{:x}\r\n", bytes.len()).into_bytes(), bytes, b"\r\n".to_vec()].concat();
        let _ = self.tcp.write_all(&chunk).await;
    }

    /// The reply's JSON, which must come within 10 s (the body may still be open).
    async fn reply(&mut self) -> Value {
        let mut said = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = String::from_utf8_lossy(&said).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok());
                if length.is_some_and(|n| body.len() >= n) {
                    return serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
                }
            }
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut buf)).await {
                Err(_) => panic!("no reply before the body ended: {text:?}"),
                Ok(Ok(0) | Err(_)) => panic!("closed without a reply: {text:?}"),
                Ok(Ok(n)) => said.extend_from_slice(&buf[..n]),
            }
        }
    }

    async fn finish(mut self, title: &str) -> Value {
        self.send([sample_mp4(), b"\r\n".to_vec(), field("title", title), end()].concat()).await;
        self.tcp.write_all(b"0\r\n\r\n").await.unwrap();
        self.reply().await
    }
}

/// Uploads the video role has begun to receive (its temporary directories).
fn uploads_on_disk(app: &TestApp) -> usize {
    let dir = app.config.data_dir.join("tmp");
    let count = |dir: &Path| {
        std::fs::read_dir(dir).map(|d| {
            d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("upload-")).count()
        })
    };
    count(&dir).unwrap_or(0)
}

async fn wait_on_disk(app: &TestApp, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while uploads_on_disk(app) < n {
        assert!(tokio::time::Instant::now() < deadline, "{n} uploads never reached the video role");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_file_before_its_token_is_held_in_memory_and_never_reaches_the_disk() {
    let app = TestApp::spawn_with(|c| c.upload_early_data_bytes = 256 * 1024).await;
    let (_, token) = app.register("early_uploader").await;
    let (mut refused, mut total) = (0, 0);

    // Anonymous bytes past the in-memory allowance: refused while the body is still open.
    let mut anonymous = Upload::open("127.0.0.1", &app, &[]).await;
    anonymous.send(file_head()).await;
    for _ in 0..8 {
        anonymous.send(vec![0u8; 64 * 1024]).await;
    }
    let reply = anonymous.reply().await;
    total += 1;
    assert_ne!(reply["status_code"], 0, "{reply}");
    assert!(reply["status_msg"].as_str().unwrap().contains("token before the data"), "{reply}");
    assert_eq!(uploads_on_disk(&app), 0, "an anonymous upload reached the video role");
    refused += 1;

    // A forged token after the file: refused, and the file was never passed on.
    let mut forged = Upload::open("127.0.0.1", &app, &[]).await;
    // (The next part's start ends the token field; the body stays open.)
    let parts =
        [file_head(), sample_mp4(), b"\r\n".to_vec(), field("token", "forged.token.value"), field("title", "t")];
    forged.send(parts.concat()).await;
    let reply = forged.reply().await;
    total += 1;
    assert_eq!(reply["status_code"], 401, "{reply}");
    assert_eq!(uploads_on_disk(&app), 0, "a forged upload reached the video role");
    refused += 1;

    // A forged token in the query: refused before the body is read at all.
    let mut early = Upload::open("127.0.0.1", &app, &[("token", "forged.token.value")]).await;
    early.send(file_head()).await;
    let reply = early.reply().await;
    total += 1;
    assert_eq!(reply["status_code"], 401, "{reply}");
    refused += 1;
    figure("upload-refused", format!("{refused}/{total}"));

    // The contract's order (data, token, title) still publishes a small file.
    let body =
        [file_head(), sample_mp4(), b"\r\n".to_vec(), field("token", &token), field("title", "data first"), end()]
            .concat();
    let reply: Value = send_json(
        app.http
            .post(app.url("/douyin/publish/action/"))
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(body),
    )
    .await;
    assert_eq!(reply["status_code"], 0, "{reply}");
    let feed = app.get("/douyin/feed/", &[]).await;
    assert_eq!(feed["video_list"][0]["title"], "data first");
    app.stop().await;
}

#[tokio::test]
async fn uploads_in_progress_are_capped_per_user_per_address_and_in_total() {
    let app = TestApp::spawn_with(|c| {
        c.uploads_max_per_user = 1;
        c.uploads_max_per_address = 2;
        c.uploads_max_in_progress = 3;
    })
    .await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(app.register(&format!("capped{i}")).await.1);
    }
    let (here, there, elsewhere) = ("127.0.0.1", "127.0.0.2", "127.0.0.3");
    let hold = |from: &'static str, token: String| {
        let app = &app;
        async move { Upload::open(from, app, &[("token", &token)]).await }
    };

    let mut first = hold(here, tokens[0].clone()).await;
    first.send(file_head()).await;
    wait_on_disk(&app, 1).await;
    let mut refusals = Vec::new();
    let mut same_user = hold(there, tokens[0].clone()).await;
    same_user.send(file_head()).await;
    refusals.push(("per user", same_user.reply().await, "uploads in progress"));

    let mut second = hold(here, tokens[1].clone()).await;
    second.send(file_head()).await;
    wait_on_disk(&app, 2).await;
    let mut same_address = hold(here, tokens[2].clone()).await;
    same_address.send(file_head()).await;
    refusals.push(("per address", same_address.reply().await, "from this address"));

    let mut third = hold(there, tokens[2].clone()).await;
    third.send(file_head()).await;
    wait_on_disk(&app, 3).await;
    let mut over_total = hold(elsewhere, tokens[3].clone()).await;
    over_total.send(file_head()).await;
    refusals.push(("in total", over_total.reply().await, "uploads in progress"));
    for (limit, reply, says) in &refusals {
        assert_ne!(reply["status_code"], 0, "{limit}: {reply}");
        assert!(reply["status_msg"].as_str().unwrap().contains(says), "{limit}: {reply}");
    }
    figure("upload-cap-refused", format!("{}/3", refusals.len()));

    // A finished upload gives its place back.
    assert_eq!(first.finish("first").await["status_code"], 0);
    let mut again = hold(elsewhere, tokens[3].clone()).await;
    again.send(file_head()).await;
    assert_eq!(again.finish("after").await["status_code"], 0);
    drop((second, third));
    app.stop().await;
}
