//! The closed-loop load generator: `concurrency` workers, each sending its next
//! request as soon as the previous one is answered, for a fixed time, against a
//! loopback address only.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::bail;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::shape::{self, Seeded};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// GET /douyin/feed/ with a token (half newest page, half a random page).
    FeedToken,
    /// GET /douyin/feed/ without a token.
    FeedAnon,
    /// GET /douyin/user/ of a random user.
    UserInfo,
    /// GET /douyin/favorite/list/ of a random user.
    FavoriteList,
    /// POST /douyin/favorite/action/: like, then unlike the same video.
    LikeUnlike,
    /// POST /douyin/comment/action/ (post).
    Comment,
    /// POST /douyin/relation/action/: follow, then unfollow the same user.
    Follow,
    /// GET /douyin/message/chat/ with the newest create_time held.
    ChatPoll,
}

impl Workload {
    pub const ALL: [Workload; 8] = [
        Self::FeedToken,
        Self::FeedAnon,
        Self::UserInfo,
        Self::FavoriteList,
        Self::ChatPoll,
        Self::LikeUnlike,
        Self::Comment,
        Self::Follow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::FeedToken => "feed-token",
            Self::FeedAnon => "feed-anon",
            Self::UserInfo => "user-info",
            Self::FavoriteList => "favorite-list",
            Self::LikeUnlike => "like-unlike",
            Self::Comment => "comment",
            Self::Follow => "follow",
            Self::ChatPoll => "chat-poll",
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Base URL of the server under test (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Measured seconds per workload.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Unmeasured seconds before each workload.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    #[arg(long, value_enum, value_delimiter = ',', default_value = "feed-token")]
    pub workloads: Vec<Workload>,
    #[command(flatten)]
    pub seeded: Seeded,
}

/// One workload's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub first_error: Option<String>,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "{:<14} {:>9.0} req/s  p50 {:>7.2}  p90 {:>7.2}  p99 {:>7.2}  max {:>8.2} ms  {} requests, {} errors{}",
            self.workload,
            self.rps,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.requests,
            self.errors,
            self.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
        )
    }
}

/// The server under test and what the workers need to address it.
pub struct Target {
    base: String,
    client: reqwest::Client,
    users: u64,
    videos: u64,
    tokens: Vec<String>,
}

impl Target {
    pub fn new(url: &str, seeded: &Seeded, concurrency: usize) -> anyhow::Result<Arc<Self>> {
        let Seeded { users, videos, secret } = seeded.clone();
        let parsed = reqwest::Url::parse(url)?;
        let host = parsed.host_str().unwrap_or_default().trim_matches(['[', ']']);
        if host != "localhost" && !host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            bail!("refusing to load {host:?}: the load generator targets loopback addresses only");
        }
        let mint = shape::tokens(&secret);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Arc::new(Self {
            base: url.trim_end_matches('/').to_owned(),
            client,
            users,
            videos,
            tokens: (1..=users).map(|u| mint.issue(u as i64, &shape::account_key(u))).collect::<Result<_, _>>()?,
        }))
    }

    fn token(&self, user: u64) -> &str {
        &self.tokens[user as usize - 1]
    }
}

/// One closed-loop client: its own user, RNG and toggle state.
pub(crate) struct Worker {
    target: Arc<Target>,
    workload: Workload,
    user: u64,
    rng: StdRng,
    pending: Option<u64>,
    chat: (u64, u64, i64),
}

impl Worker {
    pub(crate) fn new(target: Arc<Target>, workload: Workload, index: u64) -> Self {
        let users = target.users;
        let user = (index * 7_919) % users + 1;
        let pair = index % shape::chat_pairs(users).max(1);
        Self {
            target,
            workload,
            user,
            rng: StdRng::seed_from_u64(index),
            pending: None,
            chat: (2 * pair + 1, 2 * pair + 2, 0),
        }
    }

    fn other_user(&mut self) -> u64 {
        loop {
            let other = self.rng.random_range(1..=self.target.users);
            if other != self.user {
                return other;
            }
        }
    }

    /// A video people would act on: half from the newest page, half skewed by popularity.
    fn hot_video(&mut self) -> u64 {
        let videos = self.target.videos;
        if self.rng.random_bool(0.5) {
            videos - self.rng.random_range(0..videos.min(30))
        } else {
            let rank = (self.rng.random::<f64>().powi(3) * videos as f64) as u64;
            (rank.min(videos - 1) * 1_000_003) % videos + 1
        }
    }

    /// Sends one request; Err carries what went wrong.
    async fn step(&mut self) -> Result<(), String> {
        let (method, path) = self.next_request();
        let t = self.target.clone();
        let url = format!("{}{path}", t.base);
        let request = if method == "GET" { t.client.get(url) } else { t.client.post(url) };
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| format!("{path}: {e}"))?;
        if !status.is_success() || !body.starts_with(b"{\"status_code\":0,") {
            let text = String::from_utf8_lossy(&body[..body.len().min(160)]).into_owned();
            return Err(format!("{method} {} -> {status} {text}", path.split('?').next().unwrap_or("")));
        }
        self.answered(&body);
        Ok(())
    }

    /// The method and path (with query) of the next request.
    pub(crate) fn next_request(&mut self) -> (&'static str, String) {
        let t = self.target.clone();
        let (method, path) = match self.workload {
            Workload::FeedToken | Workload::FeedAnon => {
                let mut path = String::from("/douyin/feed/?");
                if self.rng.random_bool(0.5) {
                    let before = self.rng.random_range(31..=t.videos.max(31));
                    path.push_str(&format!("latest_time={}&", shape::published_at_ms(before)));
                }
                if self.workload == Workload::FeedToken {
                    path.push_str(&format!("token={}", t.token(self.user)));
                }
                ("GET", path)
            }
            Workload::UserInfo => {
                let other = self.other_user();
                ("GET", format!("/douyin/user/?user_id={other}&token={}", t.token(self.user)))
            }
            Workload::FavoriteList => {
                let other = self.other_user();
                ("GET", format!("/douyin/favorite/list/?user_id={other}&token={}", t.token(self.user)))
            }
            Workload::LikeUnlike => {
                let (video, action) = match self.pending.take() {
                    Some(video) => (video, 2),
                    None => {
                        let video = self.hot_video();
                        self.pending = Some(video);
                        (video, 1)
                    }
                };
                (
                    "POST",
                    format!(
                        "/douyin/favorite/action/?video_id={video}&action_type={action}&token={}",
                        t.token(self.user)
                    ),
                )
            }
            Workload::Comment => {
                let video = self.hot_video();
                (
                    "POST",
                    format!(
                        "/douyin/comment/action/?video_id={video}&action_type=1&comment_text=bench%20comment&token={}",
                        t.token(self.user)
                    ),
                )
            }
            Workload::Follow => {
                let (other, action) = match self.pending.take() {
                    Some(other) => (other, 2),
                    None => {
                        let other = self.other_user();
                        self.pending = Some(other);
                        (other, 1)
                    }
                };
                (
                    "POST",
                    format!(
                        "/douyin/relation/action/?to_user_id={other}&action_type={action}&token={}",
                        t.token(self.user)
                    ),
                )
            }
            Workload::ChatPoll => {
                let (from, to, last) = self.chat;
                ("GET", format!("/douyin/message/chat/?to_user_id={to}&pre_msg_time={last}&token={}", t.token(from)))
            }
        };
        (method, path)
    }

    /// Takes note of a successful answer (the chat poll keeps its cursor).
    pub(crate) fn answered(&mut self, body: &[u8]) {
        if self.workload == Workload::ChatPoll {
            self.chat.2 = newest_message_time(body).unwrap_or(self.chat.2);
        }
    }
}

fn newest_message_time(body: &[u8]) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["message_list"].as_array()?.iter().filter_map(|m| m["create_time"].as_i64()).max()
}

/// Runs one workload closed-loop and measures the part after the warmup.
pub async fn run(target: &Arc<Target>, workload: Workload, concurrency: usize, warmup: f64, duration: f64) -> Report {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let deadline = measure_from + Duration::from_secs_f64(duration);
    let mut tasks = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        let mut worker = Worker::new(target.clone(), workload, index as u64);
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let (mut errors, mut first_error) = (0u64, None);
            loop {
                let sent = Instant::now();
                if sent >= deadline {
                    break;
                }
                let outcome = worker.step().await;
                if sent < measure_from {
                    continue;
                }
                histogram.saturating_record(sent.elapsed().as_micros() as u64);
                if let Err(e) = outcome {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            (histogram, errors, first_error)
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let (mut errors, mut first_error) = (0, None);
    for task in futures::future::join_all(tasks).await {
        let (h, e, first) = task.expect("worker panicked");
        histogram.add(h).expect("same bounds");
        errors += e;
        if first_error.is_none() {
            first_error = first;
        }
    }
    let elapsed = measure_from.elapsed().as_secs_f64().max(duration);
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Report {
        workload: workload.name(),
        requests: histogram.len(),
        errors,
        rps: histogram.len() as f64 / elapsed,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: histogram.max() as f64 / 1000.0,
        first_error,
    }
}

/// Sends `count` requests one after another (for cost counters); returns the errors.
pub async fn run_sequential(target: &Arc<Target>, workload: Workload, count: u64) -> u64 {
    let mut worker = Worker::new(target.clone(), workload, 1_000);
    let mut errors = 0;
    for _ in 0..count {
        if worker.step().await.is_err() {
            errors += 1;
        }
    }
    errors
}

/// `douyin-bench load`: run the chosen workloads and print one line each.
pub async fn main(args: &LoadArgs) -> anyhow::Result<()> {
    let target = Target::new(&args.url, &args.seeded, args.concurrency)?;
    let mut failed = false;
    for workload in &args.workloads {
        let report = run(&target, *workload, args.concurrency, args.warmup, args.duration).await;
        println!("{}", report.line());
        failed |= report.errors > 0;
    }
    if failed {
        bail!("some requests failed");
    }
    Ok(())
}
