//! The fault suite (`.ci/faults.sh`): every role its own process against
//! MariaDB and a private redis-server, the app's reads and writes from one
//! worker per user while faults are injected one after another (the counter
//! hung and killed, Redis hung and killed, chat killed). Prints one line:
//!   faults: 5 injected, R requests, F failed, 0 committed-but-refused writes,
//!   D API counts disagreeing with rows 5 s after recovery, M messages stored but not pushed
//! and fails unless no committed write was refused, every count equals the
//! rows and every stored message reached the sessions open for it.

use std::{
    collections::{HashMap, HashSet},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde_json::Value;
use sqlx::Row;

use crate::common::{
    self,
    process::{Processes, owned},
    sample_mp4,
};

const USERS: usize = 6;

/// A private redis-server on a fixed port, restartable there.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    async fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Redis { port, child }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success(), "kill {signal}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    failed: AtomicU64,
    /// Toggles answered as failures that the rows show done.
    committed_refused: Mutex<Vec<Refusal>>,
    /// Comments and messages whose sending was answered as a failure, by
    /// table and content.
    refused_texts: Mutex<Vec<(&'static str, String, Refusal)>>,
    pushed: Mutex<HashSet<String>>,
    /// When each message was sent, seconds since the load began.
    sent_messages: Mutex<HashMap<String, f64>>,
}

/// A write answered as a failure: what it was, when it was sent (seconds
/// since the load began), how long the answer took and what it said.
#[derive(Clone)]
struct Refusal {
    what: String,
    at: f64,
    took: f64,
    why: String,
}

struct Load {
    base: String,
    started: Instant,
    http: reqwest::Client,
    pool: sqlx::AnyPool,
    users: Vec<(i64, String)>,
    videos: Vec<i64>,
    tally: Tally,
    /// Ends the workers.
    stop: AtomicBool,
    /// Ends the push sessions.
    stop_listening: AtomicBool,
}

impl Load {
    /// One request: its reply, or what went wrong (HTTP error, timeout,
    /// status_code != 0) with when it was sent and how long it took.
    async fn call(&self, post: bool, path: &str, query: &[(&str, String)]) -> Result<Value, Refusal> {
        self.tally.requests.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let url = format!("{}{path}", self.base);
        let request = if post { self.http.post(url) } else { self.http.get(url) };
        let reply = match request.query(query).send().await {
            Ok(response) => {
                let status = response.status();
                response.json::<Value>().await.map_err(|e| format!("HTTP {status}, body not JSON: {e}"))
            }
            Err(error) => Err(format!("{error}")),
        };
        let reply = reply.and_then(|r| if r["status_code"] == 0 { Ok(r) } else { Err(r.to_string()) });
        reply.map_err(|why| {
            self.tally.failed.fetch_add(1, Ordering::Relaxed);
            let what = format!(
                "{path} {}",
                query
                    .iter()
                    .filter(|(k, _)| *k != "token")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
            );
            Refusal { what, at: (sent - self.started).as_secs_f64(), took: sent.elapsed().as_secs_f64(), why }
        })
    }

    /// Whether `sql` (one `?` per bound id) finds a row.
    async fn exists(&self, sql: &'static str, a: i64, b: i64) -> bool {
        let mut attempts = 0;
        loop {
            match sqlx::query(sql).bind(a).bind(b).fetch_optional(&self.pool).await {
                Ok(row) => return row.is_some(),
                Err(error) if attempts < 20 => {
                    attempts += 1;
                    eprintln!("faults: row check failed ({error}); again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("row check: {error}"),
            }
        }
    }

    /// A toggle of a pair only this worker touches: when refused, the rows
    /// say whether it was done anyway.
    async fn toggle(&self, path: &str, query: Vec<(&str, String)>, want: bool, row: (&'static str, i64, i64)) -> bool {
        let refusal = match self.call(true, path, &query).await {
            Ok(_) => return want,
            Err(refusal) => refusal,
        };
        let present = self.exists(row.0, row.1, row.2).await;
        if present == want {
            self.tally.committed_refused.lock().unwrap().push(refusal);
        }
        present
    }

    async fn worker(self: Arc<Self>, i: usize) {
        let (me, token) = self.users[i].clone();
        let mut likes = vec![false; self.videos.len()];
        let mut follows = [false; USERS];
        for seq in 0u64.. {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let t = || ("token", token.clone());
            let video = (i + seq as usize) % self.videos.len();
            let other = (i + 1 + seq as usize % (USERS - 1)) % USERS;
            match seq % 6 {
                0 => drop(self.call(false, "/douyin/feed/", &[t()]).await),
                1 => {
                    drop(self.call(false, "/douyin/user/", &[t(), ("user_id", self.users[other].0.to_string())]).await)
                }
                2 => {
                    let text = format!("comment {me}-{seq}");
                    let q = [
                        t(),
                        ("video_id", self.videos[video].to_string()),
                        ("action_type", "1".into()),
                        ("comment_text", text.clone()),
                    ];
                    if let Err(refusal) = self.call(true, "/douyin/comment/action/", &q).await {
                        self.tally.refused_texts.lock().unwrap().push(("comments", text, refusal));
                    }
                }
                3 => {
                    let want = !likes[video];
                    let q = vec![
                        t(),
                        ("video_id", self.videos[video].to_string()),
                        ("action_type", if want { "1" } else { "2" }.into()),
                    ];
                    let row = ("SELECT 1 FROM favorites WHERE user_id = ? AND video_id = ?", me, self.videos[video]);
                    likes[video] = self.toggle("/douyin/favorite/action/", q, want, row).await;
                }
                4 => {
                    let want = !follows[other];
                    let to = self.users[other].0;
                    let q =
                        vec![t(), ("to_user_id", to.to_string()), ("action_type", if want { "1" } else { "2" }.into())];
                    let row = ("SELECT 1 FROM follows WHERE follower_id = ? AND followee_id = ?", me, to);
                    follows[other] = self.toggle("/douyin/relation/action/", q, want, row).await;
                }
                _ => {
                    let text = format!("message {me}-{seq}");
                    let q = [
                        t(),
                        ("to_user_id", self.users[other].0.to_string()),
                        ("action_type", "1".into()),
                        ("content", text.clone()),
                    ];
                    let at = self.started.elapsed().as_secs_f64();
                    self.tally.sent_messages.lock().unwrap().insert(text.clone(), at);
                    if let Err(refusal) = self.call(true, "/douyin/message/action/", &q).await {
                        self.tally.refused_texts.lock().unwrap().push(("messages", text, refusal));
                    }
                }
            }
        }
    }

    /// Holds a push session of user `i` open, reconnecting with `since`.
    async fn listen(self: Arc<Self>, i: usize) {
        let ws = self.base.replace("http://", "ws://");
        let mut since = 0i64;
        while !self.stop_listening.load(Ordering::Relaxed) {
            let url = format!("{ws}/douyin/message/ws/?token={}&since={since}", self.users[i].1);
            if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await {
                while !self.stop_listening.load(Ordering::Relaxed) {
                    let frame = match tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
                        Err(_) => continue,
                        Ok(Some(Ok(frame))) => frame,
                        Ok(_) => break,
                    };
                    if let tokio_tungstenite::tungstenite::Message::Text(text) = frame
                        && let Ok(message) = serde_json::from_str::<Value>(&text)
                        && let Some(content) = message["content"].as_str()
                    {
                        since = since.max(message["create_time"].as_i64().unwrap_or(0));
                        self.tally.pushed.lock().unwrap().insert(content.to_owned());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Users whose API counts differ from the rows, plus videos likewise.
async fn disagreeing(load: &Load) -> u64 {
    let count = |sql: &'static str, id: i64| {
        let pool = load.pool.clone();
        async move { sqlx::query(sql).bind(id).fetch_one(&pool).await.expect("count").try_get::<i64, _>(0).unwrap() }
    };
    let mut wrong = 0;
    let token = load.users[0].1.clone();
    for (id, _) in &load.users {
        let info = load.call(false, "/douyin/user/", &[("token", token.clone()), ("user_id", id.to_string())]).await;
        let user = info.map(|i| i["user"].clone()).unwrap_or_default();
        let rows = [
            ("follow_count", count("SELECT COUNT(*) FROM follows WHERE follower_id = ?", *id).await),
            ("follower_count", count("SELECT COUNT(*) FROM follows WHERE followee_id = ?", *id).await),
            ("favorite_count", count("SELECT COUNT(*) FROM favorites WHERE user_id = ?", *id).await),
            ("work_count", count("SELECT COUNT(*) FROM videos WHERE author_id = ?", *id).await),
            (
                "total_favorited",
                count("SELECT COUNT(*) FROM favorites f JOIN videos v ON v.id = f.video_id WHERE v.author_id = ?", *id)
                    .await,
            ),
        ];
        if rows.iter().any(|(key, n)| user[key].as_i64() != Some(*n)) {
            eprintln!("faults: user {id} shows {user} against rows {rows:?}");
            wrong += 1;
        }
        let list =
            load.call(false, "/douyin/publish/list/", &[("token", token.clone()), ("user_id", id.to_string())]).await;
        for video in list.ok().and_then(|l| l["video_list"].as_array().cloned()).unwrap_or_default() {
            let vid = video["id"].as_i64().unwrap_or_default();
            let likes = count("SELECT COUNT(*) FROM favorites WHERE video_id = ?", vid).await;
            let comments = count("SELECT COUNT(*) FROM comments WHERE video_id = ?", vid).await;
            if video["favorite_count"].as_i64() != Some(likes) || video["comment_count"].as_i64() != Some(comments) {
                eprintln!("faults: video {vid} shows {video} against {likes} likes, {comments} comments");
                wrong += 1;
            }
        }
    }
    wrong
}

/// Stored messages that no push session received, each with when it was sent.
async fn unpushed(load: &Load) -> Vec<(String, f64)> {
    let stored: Vec<String> = sqlx::query("SELECT content FROM messages")
        .fetch_all(&load.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>(0).unwrap())
        .collect();
    let pushed = load.tally.pushed.lock().unwrap();
    let sent = load.tally.sent_messages.lock().unwrap();
    stored
        .into_iter()
        .filter(|m| !pushed.contains(m))
        .map(|m| {
            let at = sent.get(&m).copied().unwrap_or(-1.0);
            (m, at)
        })
        .collect()
}

/// Refused comments and messages that are stored anyway.
async fn stored_though_refused(load: &Load) -> Vec<Refusal> {
    let refused = load.tally.refused_texts.lock().unwrap().clone();
    let mut stored = Vec::new();
    for (table, text, refusal) in refused {
        let sql = if table == "comments" {
            "SELECT 1 FROM comments WHERE content = ?"
        } else {
            "SELECT 1 FROM messages WHERE content = ?"
        };
        if sqlx::query(sql).bind(&text).fetch_optional(&load.pool).await.unwrap().is_some() {
            stored.push(refusal);
        }
    }
    stored
}

#[tokio::test]
#[ignore = "needs MariaDB (DOUYIN_TEST_DATABASE_URL) and redis-server on PATH; run by .ci/faults.sh"]
async fn faults_under_load() {
    common::needs("DOUYIN_TEST_DATABASE_URL");
    let mut redis = Redis::start(common::free_port()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, schema) = common::test_config(dir.path()).await;
    let database = config.database_url.clone().unwrap();
    let env = owned(&[
        ("DOUYIN_DATA_DIR", &dir.path().display().to_string()),
        ("DOUYIN_DATABASE_URL", &database),
        ("DOUYIN_REDIS_URL", &format!("redis://127.0.0.1:{}", redis.port)),
        ("DOUYIN_JWT_SECRET", "faults-test-secret-0123456789abcdef0123456789"),
        ("DOUYIN_DEMO_CONTENT", "false"),
        ("DOUYIN_HEALTH_INTERVAL_SECS", "1"),
        ("DOUYIN_FFMPEG_PATH", "/nonexistent/ffmpeg"),
        ("DOUYIN_RATE_LIMIT_IP_PER_SEC", "0"),
        ("DOUYIN_RATE_LIMIT_USER_PER_SEC", "0"),
        ("DOUYIN_RATE_LIMIT_REGISTER_PER_MIN", "0"),
        ("DOUYIN_RATE_LIMIT_PUBLISH_PER_MIN", "0"),
    ]);
    let mut procs = Processes::start(&env).await;
    let (base, http) = (procs.base(), procs.http.clone());
    let mut users = Vec::new();
    let mut videos = Vec::new();
    for i in 0..USERS {
        let reply: Value = http
            .post(format!("{base}/douyin/user/register/"))
            .query(&[("username", format!("fault_user{i}")), ("password", "secret123".into())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (id, token) = (reply["user_id"].as_i64().unwrap(), reply["token"].as_str().unwrap().to_owned());
        let form = reqwest::multipart::Form::new()
            .text("token", token.clone())
            .text("title", format!("video {i}"))
            .part("data", reqwest::multipart::Part::bytes(sample_mp4()).file_name("clip.mp4"));
        let published: Value = http
            .post(format!("{base}/douyin/publish/action/"))
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(published["status_code"], 0, "{published}");
        let list: Value =
            http.get(format!("{base}/douyin/publish/list/?user_id={id}")).send().await.unwrap().json().await.unwrap();
        videos.push(list["video_list"][0]["id"].as_i64().unwrap());
        users.push((id, token));
    }
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(4).connect(&database).await.unwrap();
    let load = Arc::new(Load {
        base,
        started: Instant::now(),
        http,
        pool,
        users,
        videos,
        tally: Tally::default(),
        stop: AtomicBool::new(false),
        stop_listening: AtomicBool::new(false),
    });
    let mut tasks: Vec<_> = (0..USERS).map(|i| tokio::spawn(load.clone().listen(i))).collect();
    tasks.extend((0..USERS).map(|i| tokio::spawn(load.clone().worker(i))));

    let pause = || tokio::time::sleep(Duration::from_secs(2));
    let http = procs.http.clone();
    pause().await;
    // Each fault lasts longer than a call's deadline (5 s), so a read or a
    // write that waited on the sick dependency would fail.
    let outage = || tokio::time::sleep(Duration::from_secs(6));
    let mark = |what: &str| eprintln!("faults: {:.1} s: {what}", load.started.elapsed().as_secs_f64());
    mark("counter hung");
    procs.get("counter").signal("STOP");
    outage().await;
    procs.get("counter").signal("CONT");
    mark("counter resumed");
    pause().await;
    mark("counter killed");
    procs.get("counter").signal("KILL");
    outage().await;
    procs.get_mut("counter").restart();
    procs.get("counter").ready(&http).await;
    mark("counter ready again");
    pause().await;
    mark("Redis hung");
    redis.signal("-STOP");
    outage().await;
    redis.signal("-CONT");
    mark("Redis resumed");
    pause().await;
    mark("Redis killed");
    redis.kill();
    outage().await;
    redis = Redis::start(redis.port).await;
    mark("Redis started again");
    pause().await;
    mark("chat killed");
    procs.get("chat").signal("KILL");
    outage().await;
    procs.get_mut("chat").restart();
    procs.get("chat").ready(&http).await;
    mark("chat ready again");
    pause().await;
    let faults = 5;

    load.stop.store(true, Ordering::Relaxed);
    let (listeners, workers) = tasks.split_at_mut(USERS);
    for task in workers {
        task.await.expect("a worker ran to its end");
    }
    let requests = load.tally.requests.load(Ordering::Relaxed);
    let failed = load.tally.failed.load(Ordering::Relaxed);
    // Recovery: 5 s for pushes to arrive and counts to converge.
    let recovered = Instant::now() + Duration::from_secs(5);
    let mut unpushed = unpushed(&load).await;
    while !unpushed.is_empty() && Instant::now() < recovered {
        tokio::time::sleep(Duration::from_millis(100)).await;
        unpushed = self::unpushed(&load).await;
    }
    load.stop_listening.store(true, Ordering::Relaxed);
    for task in listeners {
        let _ = task.await;
    }
    tokio::time::sleep_until(recovered.into()).await;
    for (message, at) in unpushed.iter().take(20) {
        eprintln!("faults: never pushed: {message:?}, sent at {at:.1} s");
    }
    let unpushed = unpushed.len();
    let wrong = disagreeing(&load).await;
    let mut refusals = load.tally.committed_refused.lock().unwrap().clone();
    refusals.extend(stored_though_refused(&load).await);
    for refusal in &refusals {
        let Refusal { what, at, took, why } = refusal;
        eprintln!("faults: committed but refused: {what}, sent at {at:.1} s, answered after {took:.1} s: {why}");
    }
    let refused = refusals.len();
    println!(
        "faults: {faults} injected, {requests} requests, {failed} failed, {refused} committed-but-refused writes, \
         {wrong} API counts disagreeing with rows 5 s after recovery, {unpushed} messages stored but not pushed"
    );
    load.pool.close().await;
    drop(procs);
    drop(redis);
    if let Some((server, name)) = &schema {
        common::drop_schema(server, name).await;
    }
    assert_eq!(refused, 0, "writes that committed were answered as failures");
    assert_eq!(wrong, 0, "API counts still differ from the rows 5 s after the last fault");
    assert_eq!(unpushed, 0, "stored messages reached no open push session");
}
