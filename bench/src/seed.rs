//! The seeder: users, videos, power-law likes, follows and comments, a few
//! conversations, and the matching `user_stats`/`video_stats` rows, written with
//! multi-row INSERTs. Ids are dense (users 1..=N, videos 1..=M) so the load
//! generator can address them without reading the database.

use std::{collections::HashSet, path::PathBuf, process::Command, time::Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sqlx::{AnyPool, AssertSqlSafe, any::AnyPoolOptions};

use crate::shape::{self, PASSWORD};

/// What to write and where.
#[derive(clap::Args, Debug, Clone)]
pub struct SeedArgs {
    /// sqlite://FILE?mode=rwc or mysql://user@host:3306/db (the schema must exist).
    #[arg(long, env = "DOUYIN_DATABASE_URL")]
    pub database_url: String,
    /// Data dir of the system under test: placeholder media go to DATA_DIR/media.
    #[arg(long, env = "DOUYIN_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The douyin binary, run as `douyin migrate` before writing.
    #[arg(long, env = "DOUYIN_BIN", default_value = "douyin")]
    pub douyin_bin: PathBuf,
    #[arg(long, default_value_t = 1_000)]
    pub users: u64,
    #[arg(long, default_value_t = 10_000)]
    pub videos: u64,
    /// Mean likes given per user (Pareto-distributed, popular videos liked most).
    #[arg(long, default_value_t = 20)]
    pub likes_per_user: u64,
    /// Mean follows per user (Pareto-distributed, popular users followed most).
    #[arg(long, default_value_t = 10)]
    pub follows_per_user: u64,
    /// Comments in total, as a multiple of the video count.
    #[arg(long, default_value_t = 0.5)]
    pub comments_per_video: f64,
    /// Messages per seeded conversation (users 2k-1 and 2k).
    #[arg(long, default_value_t = 10)]
    pub messages_per_pair: u64,
    /// Random seed, so runs are comparable.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// No progress bar (CI logs).
    #[arg(long)]
    pub quiet: bool,
}

const BATCH: usize = 1_000;
/// Draws concentrate on low ranks: the top 1% of ranks get ~22% of draws.
const SKEW: f64 = 3.0;
/// Pareto shape of per-user activity (heavy tail, finite mean).
const ALPHA: f64 = 1.5;
/// Played by every seeded video (object keys under DATA_DIR/media).
const PLAY_KEYS: [&str; 4] = ["bench/play-0.mp4", "bench/play-1.mp4", "bench/play-2.mp4", "bench/play-3.mp4"];

pub async fn run(args: &SeedArgs) -> anyhow::Result<()> {
    if args.users < 2 || args.videos < 1 {
        bail!("need at least 2 users and 1 video");
    }
    let started = Instant::now();
    migrate(args)?;
    write_media(args)?;
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new().max_connections(1).connect(&args.database_url).await?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let data = Dataset::generate(args, &mut rng);
    let bar = progress(data.rows(), args.quiet);
    data.write(&pool, &bar).await?;
    bar.finish_and_clear();
    println!(
        "seeded {} users, {} videos, {} likes, {} follows, {} comments, {} messages in {:.1}s",
        args.users,
        args.videos,
        data.favorites.len(),
        data.follows.len(),
        data.comments.len(),
        data.messages,
        started.elapsed().as_secs_f64()
    );
    pool.close().await;
    Ok(())
}

fn migrate(args: &SeedArgs) -> anyhow::Result<()> {
    let status = Command::new(&args.douyin_bin)
        .arg("migrate")
        .env("DOUYIN_DATABASE_URL", &args.database_url)
        .env("DOUYIN_DATA_DIR", &args.data_dir)
        .env("RUST_LOG", "warn")
        .status()
        .with_context(|| format!("running {} migrate", args.douyin_bin.display()))?;
    if !status.success() {
        bail!("douyin migrate failed: {status}");
    }
    Ok(())
}

fn write_media(args: &SeedArgs) -> anyhow::Result<()> {
    for (i, key) in PLAY_KEYS.iter().enumerate() {
        let path = args.data_dir.join("media").join(key);
        std::fs::create_dir_all(path.parent().expect("key has a folder"))?;
        // A tiny ISO-BMFF header; the bytes are never decoded by the benchmark.
        let mut bytes = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
        bytes.resize(4096 + i, 0);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn progress(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {human_pos}/{human_len} rows, {per_sec}, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// A rank in 0..n, skewed towards 0.
fn skewed(rng: &mut StdRng, n: u64) -> u64 {
    ((rng.random::<f64>().powf(SKEW) * n as f64) as u64).min(n - 1)
}

/// How many items one user acts on: Pareto with the given mean, capped.
fn pareto(rng: &mut StdRng, mean: u64, cap: u64) -> u64 {
    let scale = mean as f64 * (ALPHA - 1.0) / ALPHA;
    let u: f64 = rng.random::<f64>().max(1e-12);
    ((scale / u.powf(1.0 / ALPHA)) as u64).min(cap)
}

/// Spreads popular video ranks over the id range (1_000_003 is prime, above any size).
fn video_of_rank(rank: u64, videos: u64) -> u64 {
    (rank * 1_000_003) % videos + 1
}

struct Dataset {
    users: u64,
    videos: u64,
    authors: Vec<u64>,
    favorites: Vec<(u64, u64)>,
    follows: Vec<(u64, u64)>,
    comments: Vec<(u64, u64)>,
    messages: u64,
    messages_per_pair: u64,
    hash: String,
}

impl Dataset {
    fn generate(args: &SeedArgs, rng: &mut StdRng) -> Self {
        let (users, videos) = (args.users, args.videos);
        let authors = (0..videos).map(|_| skewed(rng, users) + 1).collect();
        let mut favorites = Vec::new();
        let mut follows = Vec::new();
        for user in 1..=users {
            let mut seen = HashSet::new();
            let want = pareto(rng, args.likes_per_user, videos.min(args.likes_per_user * 50));
            for _ in 0..want * 3 {
                if seen.len() as u64 >= want {
                    break;
                }
                let video = video_of_rank(skewed(rng, videos), videos);
                if seen.insert(video) {
                    favorites.push((user, video));
                }
            }
            seen.clear();
            let want = pareto(rng, args.follows_per_user, (users - 1).min(args.follows_per_user * 50));
            for _ in 0..want * 3 {
                if seen.len() as u64 >= want {
                    break;
                }
                let followee = skewed(rng, users) + 1;
                if followee != user && seen.insert(followee) {
                    follows.push((user, followee));
                }
            }
        }
        let total_comments = (videos as f64 * args.comments_per_video) as u64;
        let comments = (0..total_comments)
            .map(|_| (video_of_rank(skewed(rng, videos), videos), rng.random_range(1..=users)))
            .collect();
        let messages = shape::chat_pairs(users) * args.messages_per_pair;
        let hash = password_hash();
        Self {
            users,
            videos,
            authors,
            favorites,
            follows,
            comments,
            messages,
            messages_per_pair: args.messages_per_pair,
            hash,
        }
    }

    fn rows(&self) -> u64 {
        2 * self.users
            + 2 * self.videos
            + (self.favorites.len() + self.follows.len() + self.comments.len()) as u64
            + self.messages
    }

    async fn write(&self, pool: &AnyPool, bar: &ProgressBar) -> anyhow::Result<()> {
        self.write_users_and_videos(pool, bar).await?;
        self.write_actions(pool, bar).await?;
        self.write_messages(pool, bar).await?;
        self.write_stats(pool, bar).await
    }

    async fn write_users_and_videos(&self, pool: &AnyPool, bar: &ProgressBar) -> anyhow::Result<()> {
        let base = shape::SEED_EPOCH_MS;
        bar.set_message("users");
        let hash = &self.hash;
        insert(
            pool,
            bar,
            "users (id, username, password_hash, name, signature, account_key, created_at_ms)",
            1..=self.users,
            |id| {
                let (u, key) = (shape::username(id), shape::account_key(id));
                format!("({id},'{u}','{hash}','{u}','seeded by douyin-bench','{key}',{base})")
            },
        )
        .await?;

        bar.set_message("videos");
        let authors = &self.authors;
        insert(
            pool,
            bar,
            "videos (id, author_id, title, play_key, cover_key, published_at_ms)",
            1..=self.videos,
            |id| {
                let author = authors[id as usize - 1];
                let key = PLAY_KEYS[id as usize % PLAY_KEYS.len()];
                format!("({id},{author},'video {id}','{key}','',{})", shape::published_at_ms(id))
            },
        )
        .await?;

        Ok(())
    }

    /// Likes, follows and comments.
    async fn write_actions(&self, pool: &AnyPool, bar: &ProgressBar) -> anyhow::Result<()> {
        let base = shape::SEED_EPOCH_MS;
        bar.set_message("likes");
        insert(pool, bar, "favorites (user_id, video_id, created_at_ms)", self.favorites.iter(), |(u, v)| {
            format!("({u},{v},{base})")
        })
        .await?;

        bar.set_message("follows");
        insert(pool, bar, "follows (follower_id, followee_id, created_at_ms)", self.follows.iter(), |(a, b)| {
            format!("({a},{b},{base})")
        })
        .await?;

        bar.set_message("comments");
        insert(
            pool,
            bar,
            "comments (id, video_id, user_id, content, created_at_ms)",
            self.comments.iter().enumerate(),
            |(i, (v, u))| format!("({},{v},{u},'comment {i}',{})", i + 1, base + i as i64),
        )
        .await?;

        Ok(())
    }

    async fn write_messages(&self, pool: &AnyPool, bar: &ProgressBar) -> anyhow::Result<()> {
        let base = shape::SEED_EPOCH_MS;
        bar.set_message("messages");
        let per_pair = self.messages_per_pair;
        insert(
            pool,
            bar,
            "messages (id, lo_user, hi_user, from_user_id, to_user_id, content, create_time)",
            0..self.messages,
            |i| {
                let pair = i / per_pair.max(1);
                let (lo, hi) = (2 * pair + 1, 2 * pair + 2);
                let (from, to) = if i % 2 == 0 { (lo, hi) } else { (hi, lo) };
                format!("({},{lo},{hi},{from},{to},'message {i}',{})", i + 1, base + i as i64)
            },
        )
        .await?;

        Ok(())
    }

    /// The counts rows, exact for the rows written.
    async fn write_stats(&self, pool: &AnyPool, bar: &ProgressBar) -> anyhow::Result<()> {
        let (user_stats, video_stats) = self.counts();
        bar.set_message("stats");
        insert(
            pool,
            bar,
            "user_stats (user_id, follow_count, follower_count, total_favorited, work_count, favorite_count, version)",
            1..=self.users,
            |id| {
                let s = user_stats[id as usize];
                format!("({id},{},{},{},{},{},1)", s[0], s[1], s[2], s[3], s[4])
            },
        )
        .await?;
        insert(pool, bar, "video_stats (video_id, favorite_count, comment_count, version)", 1..=self.videos, |id| {
            let s = video_stats[id as usize];
            format!("({id},{},{},1)", s[0], s[1])
        })
        .await?;
        Ok(())
    }

    /// Per user: follow, follower, total_favorited, work, favorite; per
    /// video: favorite, comment (index = id).
    fn counts(&self) -> (Vec<[i64; 5]>, Vec<[i64; 2]>) {
        let mut user_stats = vec![[0i64; 5]; self.users as usize + 1];
        let mut video_stats = vec![[0i64; 2]; self.videos as usize + 1];
        for author in &self.authors {
            user_stats[*author as usize][3] += 1;
        }
        for (user, video) in &self.favorites {
            video_stats[*video as usize][0] += 1;
            user_stats[*user as usize][4] += 1;
            user_stats[self.authors[*video as usize - 1] as usize][2] += 1;
        }
        for (follower, followee) in &self.follows {
            user_stats[*follower as usize][0] += 1;
            user_stats[*followee as usize][1] += 1;
        }
        for (video, _) in &self.comments {
            video_stats[*video as usize][1] += 1;
        }
        (user_stats, video_stats)
    }
}

/// Writes rows in multi-row INSERTs of BATCH rows, 20 statements per transaction.
async fn insert<I, T>(
    pool: &AnyPool,
    bar: &ProgressBar,
    into: &str,
    rows: I,
    mut row: impl FnMut(T) -> String,
) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
{
    let mut conn = pool.acquire().await?;
    let mut sql = String::new();
    let mut in_batch = 0;
    let mut batches = 0;
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
    for item in rows {
        if in_batch == 0 {
            sql = format!("INSERT INTO {into} VALUES ");
        } else {
            sql.push(',');
        }
        sql.push_str(&row(item));
        in_batch += 1;
        if in_batch == BATCH {
            sqlx::raw_sql(AssertSqlSafe(std::mem::take(&mut sql))).execute(&mut *conn).await?;
            bar.inc(in_batch as u64);
            in_batch = 0;
            batches += 1;
            if batches % 20 == 0 {
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
                sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
            }
        }
    }
    if in_batch > 0 {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await?;
        bar.inc(in_batch as u64);
    }
    sqlx::raw_sql("COMMIT").execute(&mut *conn).await.with_context(|| format!("writing {into}"))?;
    Ok(())
}

/// One argon2id hash of the shared password, used by every seeded user.
fn password_hash() -> String {
    use argon2::{Argon2, PasswordHasher, password_hash::SaltString};
    let salt = SaltString::encode_b64(b"douyin-bench-salt").expect("valid salt");
    Argon2::default().hash_password(PASSWORD.as_bytes(), &salt).expect("hashing").to_string()
}
