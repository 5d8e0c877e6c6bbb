//! The baseline: the smallest server that answers `GET /douyin/feed/` with the
//! same JSON, reading straight from SQL on every request. One joined query for
//! the page (videos, authors, both stats tables); with a token, one query for
//! the viewer's likes and one for the viewer's follows among the page. No
//! cache, no RPC, one process.

use std::{collections::HashSet, net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::HeaderMap,
    routing::get,
};
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, AssertSqlSafe, Row, any::AnyPoolOptions};

use crate::shape::{self, DEFAULT_SECRET};

#[derive(clap::Args, Debug, Clone)]
pub struct BaselineArgs {
    #[arg(long, env = "DOUYIN_DATABASE_URL")]
    pub database_url: String,
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub addr: SocketAddr,
    #[arg(long, env = "DOUYIN_JWT_SECRET", default_value = DEFAULT_SECRET)]
    pub secret: String,
    /// Pool size (the system's default is 16).
    #[arg(long, default_value_t = 16)]
    pub max_connections: u32,
}

struct AppState {
    pool: AnyPool,
    tokens: douyin_kit::auth::Tokens,
}

#[derive(Deserialize)]
struct FeedQuery {
    latest_time: Option<i64>,
    token: Option<String>,
}

#[derive(Serialize, Default)]
struct UserJson {
    id: i64,
    name: String,
    follow_count: i64,
    follower_count: i64,
    is_follow: bool,
    avatar: String,
    background_image: String,
    signature: String,
    total_favorited: i64,
    work_count: i64,
    favorite_count: i64,
}

#[derive(Serialize)]
struct VideoJson {
    id: i64,
    author: UserJson,
    play_url: String,
    cover_url: String,
    favorite_count: i64,
    comment_count: i64,
    is_favorite: bool,
    title: String,
}

#[derive(Serialize)]
struct FeedJson {
    status_code: i32,
    status_msg: String,
    video_list: Vec<VideoJson>,
    next_time: i64,
}

pub async fn main(args: &BaselineArgs) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(args.max_connections)
        .test_before_acquire(false)
        .connect(&args.database_url)
        .await?;
    let state = Arc::new(AppState { pool, tokens: shape::tokens(&args.secret) });
    let app = Router::new()
        .route("/douyin/feed/", get(feed))
        .route("/douyin/feed", get(feed))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn refused(status_code: i32, msg: &str) -> Json<FeedJson> {
    Json(FeedJson { status_code, status_msg: msg.into(), video_list: Vec::new(), next_time: 0 })
}

/// The page in one query. The 30 newest videos are picked in a derived table first,
/// so neither optimizer can start from `users` and sort the whole join.
const PAGE: &str = "SELECT v.id, v.title, v.play_key, v.cover_key, v.published_at_ms, \
    u.id, u.name, u.avatar, u.background_image, u.signature, \
    COALESCE(us.follow_count, 0), COALESCE(us.follower_count, 0), COALESCE(us.total_favorited, 0), \
    COALESCE(us.work_count, 0), COALESCE(us.favorite_count, 0), \
    COALESCE(vs.favorite_count, 0), COALESCE(vs.comment_count, 0) \
    FROM (SELECT id, author_id, title, play_key, cover_key, published_at_ms FROM videos \
          WHERE published_at_ms < ? ORDER BY published_at_ms DESC LIMIT 30) v \
    JOIN users u ON u.id = v.author_id \
    LEFT JOIN user_stats us ON us.user_id = v.author_id \
    LEFT JOIN video_stats vs ON vs.video_id = v.id \
    ORDER BY v.published_at_ms DESC";

async fn feed(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<FeedQuery>) -> Json<FeedJson> {
    let viewer = match q.token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => match state.tokens.verify(token) {
            Ok(bearer) => Some(bearer.user_id),
            Err(_) => return refused(401, "token is invalid"),
        },
    };
    let now = now_ms();
    let before = match q.latest_time.unwrap_or(0) {
        0 => now,
        t if t < 1_000_000_000_000 => t * 1_000,
        t => t,
    };
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let base = format!("http://{host}");
    match page(&state.pool, before, viewer, &base).await {
        Ok(videos) => {
            let next_time = videos.last().map(|v| v.1).unwrap_or(now);
            Json(FeedJson {
                status_code: 0,
                status_msg: "success".into(),
                video_list: videos.into_iter().map(|v| v.0).collect(),
                next_time,
            })
        }
        Err(_) => refused(500, "internal error"),
    }
}

async fn page(pool: &AnyPool, before: i64, viewer: Option<i64>, base: &str) -> sqlx::Result<Vec<(VideoJson, i64)>> {
    let rows = sqlx::query(PAGE).bind(before).fetch_all(pool).await?;
    let mut videos = Vec::with_capacity(rows.len());
    for row in rows {
        let play_key: String = row.try_get(2)?;
        let cover_key: String = row.try_get(3)?;
        let avatar: String = row.try_get(7)?;
        let background: String = row.try_get(8)?;
        let author = UserJson {
            id: row.try_get(5)?,
            name: row.try_get(6)?,
            follow_count: row.try_get(10)?,
            follower_count: row.try_get(11)?,
            is_follow: false,
            avatar: or_default(base, avatar, "/static/avatar.png"),
            background_image: or_default(base, background, "/static/background.jpg"),
            signature: row.try_get(9)?,
            total_favorited: row.try_get(12)?,
            work_count: row.try_get(13)?,
            favorite_count: row.try_get(14)?,
        };
        let video = VideoJson {
            id: row.try_get(0)?,
            author,
            play_url: format!("{base}/media/{play_key}"),
            cover_url: if cover_key.is_empty() {
                format!("{base}/static/cover.jpg")
            } else {
                format!("{base}/media/{cover_key}")
            },
            favorite_count: row.try_get(15)?,
            comment_count: row.try_get(16)?,
            is_favorite: false,
            title: row.try_get(1)?,
        };
        videos.push((video, row.try_get::<i64, _>(4)?));
    }
    if let (Some(viewer), false) = (viewer, videos.is_empty()) {
        let video_ids: Vec<i64> = videos.iter().map(|v| v.0.id).collect();
        let liked =
            ids(pool, "SELECT video_id FROM favorites WHERE user_id = ? AND video_id IN", viewer, &video_ids).await?;
        let mut author_ids: Vec<i64> = videos.iter().map(|v| v.0.author.id).collect();
        author_ids.sort_unstable();
        author_ids.dedup();
        let followed =
            ids(pool, "SELECT followee_id FROM follows WHERE follower_id = ? AND followee_id IN", viewer, &author_ids)
                .await?;
        for (video, _) in &mut videos {
            video.is_favorite = liked.contains(&video.id);
            video.author.is_follow = followed.contains(&video.author.id);
        }
    }
    Ok(videos)
}

fn or_default(base: &str, value: String, default: &str) -> String {
    match value.as_str() {
        "" => format!("{base}{default}"),
        v if v.starts_with('/') => format!("{base}{v}"),
        _ => value,
    }
}

/// The ids `select` returns for `viewer` among `among` (bound, cached per list length).
async fn ids(pool: &AnyPool, select: &str, viewer: i64, among: &[i64]) -> sqlx::Result<HashSet<i64>> {
    let placeholders = vec!["?"; among.len()].join(",");
    let sql = format!("{select} ({placeholders})");
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(viewer);
    for id in among {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter().map(|r| r.try_get::<i64, _>(0)).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
