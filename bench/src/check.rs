//! The counts check after a run: every stats row against the rows it counts,
//! and the newest feed page's counts (as the API returns them) against the
//! database.

use sqlx::{AnyPool, AssertSqlSafe, Row as _, any::AnyPoolOptions};

use crate::{
    report::CountsCheck,
    suite::{Data, Kind},
};

/// Stats rows that disagree with the rows they count (every stats column).
const MISMATCHES: [&str; 7] = [
    "SELECT COUNT(*) FROM video_stats s LEFT JOIN (SELECT video_id, COUNT(*) c FROM favorites GROUP BY video_id) x ON x.video_id = s.video_id WHERE s.favorite_count <> COALESCE(x.c, 0)",
    "SELECT COUNT(*) FROM video_stats s LEFT JOIN (SELECT video_id, COUNT(*) c FROM comments GROUP BY video_id) x ON x.video_id = s.video_id WHERE s.comment_count <> COALESCE(x.c, 0)",
    "SELECT COUNT(*) FROM user_stats s LEFT JOIN (SELECT user_id, COUNT(*) c FROM favorites GROUP BY user_id) x ON x.user_id = s.user_id WHERE s.favorite_count <> COALESCE(x.c, 0)",
    "SELECT COUNT(*) FROM user_stats s LEFT JOIN (SELECT follower_id, COUNT(*) c FROM follows GROUP BY follower_id) x ON x.follower_id = s.user_id WHERE s.follow_count <> COALESCE(x.c, 0)",
    "SELECT COUNT(*) FROM user_stats s LEFT JOIN (SELECT followee_id, COUNT(*) c FROM follows GROUP BY followee_id) x ON x.followee_id = s.user_id WHERE s.follower_count <> COALESCE(x.c, 0)",
    "SELECT COUNT(*) FROM user_stats s LEFT JOIN (SELECT author_id, COUNT(*) c FROM videos GROUP BY author_id) x ON x.author_id = s.user_id WHERE s.work_count <> COALESCE(x.c, 0)",
    "SELECT COUNT(*) FROM user_stats s LEFT JOIN (SELECT v.author_id, COUNT(*) c FROM favorites f JOIN videos v ON v.id = f.video_id GROUP BY v.author_id) x ON x.author_id = s.user_id WHERE s.total_favorited <> COALESCE(x.c, 0)",
];

/// Compares every stats row with the rows, then the newest feed page's counts
/// (as the API returns them, through its cache) with the database.
pub async fn counts(kind: Kind, data: &Data, url: &str) -> anyhow::Result<CountsCheck> {
    let pool: AnyPool = AnyPoolOptions::new().max_connections(1).connect(&data.url).await?;
    let mut db_mismatches = 0;
    for sql in MISMATCHES {
        db_mismatches += sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await? as u64;
    }
    let feed: serde_json::Value = reqwest::get(format!("{url}/douyin/feed/")).await?.json().await?;
    let videos = feed["video_list"].as_array().cloned().unwrap_or_default();
    let mut api_mismatches = 0;
    for video in &videos {
        let id = video["id"].as_i64().unwrap_or(0);
        let sql = format!("SELECT favorite_count, comment_count FROM video_stats WHERE video_id = {id}");
        let row = sqlx::query(AssertSqlSafe(sql)).fetch_one(&pool).await?;
        let (likes, comments): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if video["favorite_count"].as_i64() != Some(likes) || video["comment_count"].as_i64() != Some(comments) {
            api_mismatches += 1;
        }
    }
    pool.close().await;
    Ok(CountsCheck { target: kind.name(), db_mismatches, api_mismatches, api_checked: videos.len() as u64 })
}
