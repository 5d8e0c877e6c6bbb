//! `douyin-bench traffic`: a steady, paced stream of what the app's users do,
//! against any gateway (the Helm chart's optional load generator runs it
//! against the api Service), so a fresh environment has traffic on its
//! dashboards. Unlike `load` it needs no seeded data and no token key: it
//! registers its own accounts through the API, learns video and author ids
//! from the feed, and undoes what it does (every like is followed by an
//! unlike, every follow by an unfollow, every comment by its deletion). It
//! prints one JSON line of figures every `--report-secs` and a last one when
//! it stops (SIGTERM, Ctrl-C or `--duration`).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde::Serialize;
use serde_json::Value;
use tokio::signal::unix::SignalKind;

#[derive(clap::Args, Debug, Clone)]
pub struct TrafficArgs {
    /// Base URL of the gateway, e.g. http://douyin-api:8080.
    #[arg(long, env = "DOUYIN_TRAFFIC_URL")]
    pub url: String,
    /// Requests per second in all, spread over the accounts.
    #[arg(long, env = "DOUYIN_TRAFFIC_RATE", default_value_t = 5.0)]
    pub rate: f64,
    /// Accounts registered at start; each acts as one user of the app.
    #[arg(long, env = "DOUYIN_TRAFFIC_ACCOUNTS", default_value_t = 8)]
    pub accounts: usize,
    /// Seconds between two figure lines.
    #[arg(long, default_value_t = 60)]
    pub report_secs: u64,
    /// Stop after this many seconds (default: run until SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
}

/// What one user of the app does next, with its share of the requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Action {
    FeedAnon,
    FeedToken,
    UserInfo,
    PublishList,
    FavoriteList,
    CommentList,
    Like,
    Follow,
    Comment,
    Chat,
    FriendList,
}

const MIX: [(Action, u32); 11] = [
    (Action::FeedAnon, 20),
    (Action::FeedToken, 25),
    (Action::UserInfo, 10),
    (Action::PublishList, 5),
    (Action::FavoriteList, 5),
    (Action::CommentList, 8),
    (Action::Like, 8),
    (Action::Follow, 5),
    (Action::Comment, 4),
    (Action::Chat, 6),
    (Action::FriendList, 4),
];

/// Answers counted per action since the start.
#[derive(Default, Serialize)]
struct Tally {
    ok: u64,
    failed: u64,
}

#[derive(Default, Serialize)]
struct Figures {
    seconds: u64,
    accounts: usize,
    videos_seen: usize,
    /// Actions done (a comment is posted and deleted, a chat message sent and
    /// polled for: two requests, one action).
    actions: u64,
    failed: u64,
    by_action: BTreeMap<Action, Tally>,
    /// The first few failures, as answered.
    first_errors: Vec<String>,
}

/// What every account shares: the client, the ids learnt so far, the figures.
struct World {
    base: String,
    client: reqwest::Client,
    accounts: Vec<(i64, String)>,
    videos: RwLock<Vec<(i64, i64)>>,
    figures: Mutex<Figures>,
}

impl World {
    /// One request; Ok with the answer's JSON when `status_code` is 0.
    async fn call(&self, method: &str, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = if method == "GET" { self.client.get(url) } else { self.client.post(url) };
        let response = request.query(params).send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let value: Value = serde_json::from_slice(&body).unwrap_or_default();
        if status.is_success() && value["status_code"] == 0 {
            return Ok(value);
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(160)]).into_owned();
        Err(format!("{method} {path} -> {status} {text}"))
    }

    fn count(&self, action: Action, outcome: &Result<(), String>) {
        let mut figures = self.figures.lock().unwrap_or_else(|e| e.into_inner());
        figures.actions += 1;
        let tally = figures.by_action.entry(action).or_default();
        match outcome {
            Ok(()) => tally.ok += 1,
            Err(e) => {
                tally.failed += 1;
                figures.failed += 1;
                if figures.first_errors.len() < 5 {
                    figures.first_errors.push(e.clone());
                }
            }
        }
    }

    /// Remembers the videos of a page (id, author), newest first, at most 300.
    fn learn(&self, page: &Value) {
        let found: Vec<(i64, i64)> = page["video_list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["id"].as_i64()?, v["author"]["id"].as_i64()?)))
            .collect();
        if found.is_empty() {
            return;
        }
        let mut videos = self.videos.write().unwrap_or_else(|e| e.into_inner());
        for video in found {
            if !videos.contains(&video) {
                videos.push(video);
            }
        }
        videos.sort_by_key(|v| std::cmp::Reverse(v.0));
        videos.truncate(300);
    }

    fn video(&self, rng: &mut StdRng) -> Option<(i64, i64)> {
        self.videos.read().unwrap_or_else(|e| e.into_inner()).choose(rng).copied()
    }

    fn report(&self, started: Instant) {
        let mut figures = self.figures.lock().unwrap_or_else(|e| e.into_inner());
        figures.seconds = started.elapsed().as_secs();
        figures.videos_seen = self.videos.read().unwrap_or_else(|e| e.into_inner()).len();
        match serde_json::to_string(&*figures) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("traffic figures: {e}"),
        }
    }
}

/// One account's state: who it is and what it must undo next.
struct User {
    index: usize,
    rng: StdRng,
    liked: Option<i64>,
    followed: Option<i64>,
    chat_cursor: i64,
}

impl User {
    fn me(&self, world: &World) -> (i64, String) {
        world.accounts[self.index].clone()
    }

    /// Another account of this run: the partner for chat and follows.
    fn partner(&self, world: &World) -> i64 {
        world.accounts[(self.index + 1) % world.accounts.len()].0
    }

    fn pick(&mut self) -> Action {
        let total: u32 = MIX.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.random_range(0..total);
        for (action, weight) in MIX {
            if roll < weight {
                return action;
            }
            roll -= weight;
        }
        Action::FeedAnon
    }

    async fn act(&mut self, world: &World, action: Action) -> Result<(), String> {
        let (me, token) = self.me(world);
        let video = world.video(&mut self.rng);
        let t = || ("token", token.clone());
        match (action, video) {
            (Action::FeedAnon, _) => world.learn(&world.call("GET", "/douyin/feed/", &[]).await?),
            (Action::FeedToken, _) => world.learn(&world.call("GET", "/douyin/feed/", &[t()]).await?),
            (Action::UserInfo, v) => {
                let user = v.map_or(self.partner(world), |(_, author)| author);
                world.call("GET", "/douyin/user/", &[("user_id", user.to_string()), t()]).await?;
            }
            (Action::PublishList, v) => {
                let user = v.map_or(me, |(_, author)| author);
                world.call("GET", "/douyin/publish/list/", &[("user_id", user.to_string()), t()]).await?;
            }
            (Action::FavoriteList, _) => {
                world.call("GET", "/douyin/favorite/list/", &[("user_id", me.to_string()), t()]).await?;
            }
            (Action::CommentList, Some((id, _))) => {
                world.call("GET", "/douyin/comment/list/", &[("video_id", id.to_string()), t()]).await?;
            }
            (Action::Like, Some((id, _))) => {
                let (video, kind) = match self.liked.take() {
                    Some(liked) => (liked, "2"),
                    None => {
                        self.liked = Some(id);
                        (id, "1")
                    }
                };
                let params = [("video_id", video.to_string()), ("action_type", kind.into()), t()];
                world.call("POST", "/douyin/favorite/action/", &params).await?;
            }
            (Action::Comment, Some((id, _))) => {
                let params =
                    [("video_id", id.to_string()), ("action_type", "1".into()), ("comment_text", "nice".into()), t()];
                let posted = world.call("POST", "/douyin/comment/action/", &params).await?;
                let comment = posted["comment"]["id"].as_i64().ok_or("comment answer without comment.id")?;
                let params = [
                    ("video_id", id.to_string()),
                    ("action_type", "2".into()),
                    ("comment_id", comment.to_string()),
                    t(),
                ];
                world.call("POST", "/douyin/comment/action/", &params).await?;
            }
            (Action::Follow, v) => {
                let (user, kind) = match self.followed.take() {
                    Some(followed) => (followed, "2"),
                    None => {
                        let user = v.map(|(_, author)| author).filter(|a| *a != me).unwrap_or(self.partner(world));
                        self.followed = Some(user);
                        (user, "1")
                    }
                };
                let params = [("to_user_id", user.to_string()), ("action_type", kind.into()), t()];
                world.call("POST", "/douyin/relation/action/", &params).await?;
            }
            (Action::Chat, _) => {
                let to = self.partner(world).to_string();
                let params = [("to_user_id", to.clone()), ("action_type", "1".into()), ("content", "hi".into()), t()];
                world.call("POST", "/douyin/message/action/", &params).await?;
                let params = [("to_user_id", to), ("pre_msg_time", self.chat_cursor.to_string()), t()];
                let chat = world.call("GET", "/douyin/message/chat/", &params).await?;
                let newest = chat["message_list"].as_array().into_iter().flatten();
                self.chat_cursor = newest.filter_map(|m| m["create_time"].as_i64()).fold(self.chat_cursor, i64::max);
            }
            (Action::FriendList, _) => {
                world.call("GET", "/douyin/relation/friend/list/", &[("user_id", me.to_string()), t()]).await?;
            }
            // Nothing to act on before the feed has shown a video.
            (Action::CommentList | Action::Like | Action::Comment, None) => {
                world.learn(&world.call("GET", "/douyin/feed/", &[t()]).await?)
            }
        }
        Ok(())
    }
}

/// Registers `count` accounts named after this run; returns (id, token) each.
async fn register(base: &str, client: &reqwest::Client, count: usize) -> anyhow::Result<Vec<(i64, String)>> {
    let run: u32 = rand::rng().random();
    let password = format!("{:016x}", rand::rng().random::<u64>());
    let mut accounts = Vec::with_capacity(count);
    for i in 0..count {
        let username = format!("traffic-{run:08x}-{i}");
        let answer: Value = client
            .post(format!("{base}/douyin/user/register/"))
            .query(&[("username", username.as_str()), ("password", password.as_str())])
            .send()
            .await
            .with_context(|| format!("register {username} at {base}"))?
            .json()
            .await
            .with_context(|| format!("register {username}: answer is not JSON"))?;
        match (answer["status_code"].as_i64(), answer["user_id"].as_i64(), answer["token"].as_str()) {
            (Some(0), Some(id), Some(token)) => accounts.push((id, token.to_owned())),
            _ => bail!("register {username} refused: {answer}"),
        }
    }
    Ok(accounts)
}

async fn account_loop(world: Arc<World>, index: usize, interval: Duration) {
    let mut user = User { index, rng: StdRng::from_rng(&mut rand::rng()), liked: None, followed: None, chat_cursor: 0 };
    // Accounts start spread over one interval rather than all at once.
    let mut next = Instant::now() + interval.mul_f64(index as f64 / world.accounts.len() as f64);
    loop {
        tokio::time::sleep_until(next.into()).await;
        next = (next + interval).max(Instant::now());
        // Undo a like or follow before anything else, so nothing is left behind.
        let action = match (&user.liked, &user.followed) {
            (Some(_), _) => Action::Like,
            (_, Some(_)) => Action::Follow,
            _ => user.pick(),
        };
        let outcome = user.act(&world, action).await;
        world.count(action, &outcome);
    }
}

pub async fn main(args: &TrafficArgs) -> anyhow::Result<()> {
    if args.accounts == 0 || args.rate <= 0.0 {
        bail!("--accounts and --rate must be above 0");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    reqwest::Url::parse(&base).context("--url")?;
    let client =
        reqwest::Client::builder().connect_timeout(Duration::from_secs(3)).timeout(Duration::from_secs(10)).build()?;
    // The gateway may still be starting (a fresh environment): try for a while.
    let deadline = Instant::now() + Duration::from_secs(120);
    let accounts = loop {
        match register(&base, &client, args.accounts).await {
            Ok(accounts) => break accounts,
            Err(e) if Instant::now() < deadline => {
                eprintln!("traffic: {e:#}; trying again");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let world = Arc::new(World {
        base,
        client,
        figures: Mutex::new(Figures { accounts: accounts.len(), ..Figures::default() }),
        accounts,
        videos: RwLock::default(),
    });
    let started = Instant::now();
    let interval = Duration::from_secs_f64(world.accounts.len() as f64 / args.rate);
    let loops: Vec<_> =
        (0..world.accounts.len()).map(|i| tokio::spawn(account_loop(world.clone(), i, interval))).collect();
    let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut reports = tokio::time::interval(Duration::from_secs(args.report_secs.max(1)));
    reports.tick().await;
    let until = args.duration.map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    loop {
        tokio::select! {
            _ = reports.tick() => world.report(started),
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = async { tokio::time::sleep_until(until.unwrap_or_else(tokio::time::Instant::now)).await },
                if until.is_some() => break,
        }
    }
    loops.iter().for_each(tokio::task::JoinHandle::abort);
    world.report(started);
    Ok(())
}
