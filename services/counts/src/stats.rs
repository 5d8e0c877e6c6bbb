//! The counts tables (`user_stats`, `video_stats`). Writers change a count in
//! the same transaction as the row it counts, so the database is always exact;
//! the counter role reads these tables to fill its cache. A changed row is
//! marked dirty in the same statement, and stays so until the counter has
//! stored that version in its cache.

use sqlx::{AnyConnection, Row};

use douyin_kit::{
    Result,
    cache::Ranked,
    db::{Dialect, bind_ids, fetch_in, padded, placeholders},
};

pub static MIGRATIONS: douyin_kit::db::ServiceMigrations = douyin_kit::db::ServiceMigrations {
    service: "stats",
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    mysql: &sqlx::migrate!("./migrations/mysql"),
};

/// A per-user count.
#[derive(Clone, Copy, Debug)]
pub enum UserCount {
    Follow,
    Follower,
    TotalFavorited,
    Work,
    Favorite,
}

impl UserCount {
    fn column(self) -> &'static str {
        match self {
            UserCount::Follow => "follow_count",
            UserCount::Follower => "follower_count",
            UserCount::TotalFavorited => "total_favorited",
            UserCount::Work => "work_count",
            UserCount::Favorite => "favorite_count",
        }
    }
}

/// A per-video count.
#[derive(Clone, Copy, Debug)]
pub enum VideoCount {
    Favorite,
    Comment,
}

impl VideoCount {
    fn column(self) -> &'static str {
        match self {
            VideoCount::Favorite => "favorite_count",
            VideoCount::Comment => "comment_count",
        }
    }
}

pub async fn create_user(conn: &mut AnyConnection, user_id: i64) -> Result<()> {
    sqlx::query("INSERT INTO user_stats (user_id) VALUES (?)").bind(user_id).execute(conn).await?;
    Ok(())
}

pub async fn create_video(conn: &mut AnyConnection, video_id: i64) -> Result<()> {
    sqlx::query("INSERT INTO video_stats (video_id) VALUES (?)").bind(video_id).execute(conn).await?;
    Ok(())
}

pub async fn add_user(conn: &mut AnyConnection, user_id: i64, count: UserCount, delta: i64) -> Result<()> {
    add(conn, "user_stats", "user_id", count.column(), user_id, delta).await
}

/// Adds `delta` to several users' counts, locking rows in id order so that
/// concurrent transactions touching the same users cannot deadlock.
pub async fn add_users(conn: &mut AnyConnection, updates: &[(i64, UserCount)], delta: i64) -> Result<()> {
    let mut updates = updates.to_vec();
    updates.sort_by_key(|(id, _)| *id);
    for (id, count) in updates {
        add_user(conn, id, count, delta).await?;
    }
    Ok(())
}

pub async fn add_video(conn: &mut AnyConnection, video_id: i64, count: VideoCount, delta: i64) -> Result<()> {
    add(conn, "video_stats", "video_id", count.column(), video_id, delta).await
}

/// Adds `delta` to one count of the row `key = id` of a counts table, raising
/// its version and marking it dirty (the names are constants, never input).
async fn add(conn: &mut AnyConnection, table: &str, key: &str, column: &str, id: i64, delta: i64) -> Result<()> {
    let sql = format!("UPDATE {table} SET {column} = {column} + ?, version = version + 1, dirty = 1 WHERE {key} = ?");
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(delta).bind(id).execute(conn).await?;
    Ok(())
}

/// Locks the counts rows of these videos and users for a batch of writes, in
/// the order every writer locks them (videos, then users, each by ascending
/// id), and reads them: `ids` are sorted and unique.
pub async fn lock_many(
    conn: &mut AnyConnection,
    dialect: Dialect,
    video_ids: &[i64],
    user_ids: &[i64],
) -> Result<(Vec<VideoStats>, Vec<UserStats>)> {
    let lock = if dialect == Dialect::MySql { " ORDER BY 1 FOR UPDATE" } else { "" };
    let mut videos = Vec::new();
    if !video_ids.is_empty() {
        let ids = padded(video_ids);
        let sql = format!("{VIDEO_COLUMNS} WHERE video_id IN ({}){lock}", placeholders(ids.len()));
        videos = video_rows(&bind_ids(sqlx::query(sqlx::AssertSqlSafe(sql)), &ids).fetch_all(&mut *conn).await?)?;
    }
    let mut users = Vec::new();
    if !user_ids.is_empty() {
        let ids = padded(user_ids);
        let sql = format!("{USER_COLUMNS} WHERE user_id IN ({}){lock}", placeholders(ids.len()));
        users = user_rows(&bind_ids(sqlx::query(sqlx::AssertSqlSafe(sql)), &ids).fetch_all(&mut *conn).await?)?;
    }
    Ok((videos, users))
}

/// Adds each `(video_id, delta)` to the video's `favorite_count` in one
/// statement, raising each row's version once and marking it dirty. The ids
/// are unique; a delta of 0 still raises the version (the row was written).
pub async fn add_video_favorites(conn: &mut AnyConnection, deltas: &[(i64, i64)]) -> Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let deltas = padded(deltas);
    let sql = format!(
        "UPDATE video_stats SET favorite_count = favorite_count + CASE video_id {} END, \
         version = version + 1, dirty = 1 WHERE video_id IN ({})",
        "WHEN ? THEN ? ".repeat(deltas.len()),
        placeholders(deltas.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (id, delta) in &deltas {
        query = query.bind(*id).bind(*delta);
    }
    for (id, _) in &deltas {
        query = query.bind(*id);
    }
    query.execute(conn).await?;
    Ok(())
}

/// Adds each `(user_id, favorite delta, total_favorited delta)` to the user's
/// counts in one statement, raising each row's version once and marking it
/// dirty. The ids are unique.
pub async fn add_user_favorites(conn: &mut AnyConnection, deltas: &[(i64, i64, i64)]) -> Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let deltas = padded(deltas);
    let cases = "WHEN ? THEN ? ".repeat(deltas.len());
    let sql = format!(
        "UPDATE user_stats SET favorite_count = favorite_count + CASE user_id {cases} END, \
         total_favorited = total_favorited + CASE user_id {cases} END, \
         version = version + 1, dirty = 1 WHERE user_id IN ({})",
        placeholders(deltas.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (id, favorite, _) in &deltas {
        query = query.bind(*id).bind(*favorite);
    }
    for (id, _, favorited) in &deltas {
        query = query.bind(*id).bind(*favorited);
    }
    for (id, _, _) in &deltas {
        query = query.bind(*id);
    }
    query.execute(conn).await?;
    Ok(())
}

/// Counts of one user as stored, with the row version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserStats {
    pub user_id: i64,
    pub follow_count: i64,
    pub follower_count: i64,
    pub total_favorited: i64,
    pub work_count: i64,
    pub favorite_count: i64,
    pub version: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoStats {
    pub video_id: i64,
    pub favorite_count: i64,
    pub comment_count: i64,
    pub version: i64,
}

// Counts rows as a writer hands them to the counter after its commit
// (`counts::store`), and back on the counter's side.
impl From<&VideoStats> for douyin_proto::counter::StoredVideoCounts {
    fn from(v: &VideoStats) -> Self {
        Self {
            video_id: v.video_id,
            favorite_count: v.favorite_count,
            comment_count: v.comment_count,
            version: v.version,
        }
    }
}

impl From<&douyin_proto::counter::StoredVideoCounts> for VideoStats {
    fn from(v: &douyin_proto::counter::StoredVideoCounts) -> Self {
        Self {
            video_id: v.video_id,
            favorite_count: v.favorite_count,
            comment_count: v.comment_count,
            version: v.version,
        }
    }
}

impl From<&UserStats> for douyin_proto::counter::StoredUserCounts {
    fn from(u: &UserStats) -> Self {
        Self {
            user_id: u.user_id,
            follow_count: u.follow_count,
            follower_count: u.follower_count,
            total_favorited: u.total_favorited,
            work_count: u.work_count,
            favorite_count: u.favorite_count,
            version: u.version,
        }
    }
}

impl From<&douyin_proto::counter::StoredUserCounts> for UserStats {
    fn from(u: &douyin_proto::counter::StoredUserCounts) -> Self {
        Self {
            user_id: u.user_id,
            follow_count: u.follow_count,
            follower_count: u.follower_count,
            total_favorited: u.total_favorited,
            work_count: u.work_count,
            favorite_count: u.favorite_count,
            version: u.version,
        }
    }
}

const USER_COLUMNS: &str = "SELECT user_id, follow_count, follower_count, total_favorited, work_count, favorite_count, version FROM user_stats";
const VIDEO_COLUMNS: &str = "SELECT video_id, favorite_count, comment_count, version FROM video_stats";

pub async fn users(pool: &sqlx::AnyPool, ids: &[i64]) -> Result<Vec<UserStats>> {
    user_rows(&fetch_in(pool, &format!("{USER_COLUMNS} WHERE user_id IN"), ids).await?)
}

pub async fn videos(pool: &sqlx::AnyPool, ids: &[i64]) -> Result<Vec<VideoStats>> {
    video_rows(&fetch_in(pool, &format!("{VIDEO_COLUMNS} WHERE video_id IN"), ids).await?)
}

/// The rows of these videos and users in one statement (one round trip where
/// a page's misses would take two): a `UNION ALL` of both tables, each row
/// tagged with its kind and padded to the user table's columns.
pub async fn both(
    pool: &sqlx::AnyPool,
    video_ids: &[i64],
    user_ids: &[i64],
) -> Result<(Vec<VideoStats>, Vec<UserStats>)> {
    if video_ids.is_empty() || user_ids.is_empty() {
        return Ok((videos(pool, video_ids).await?, users(pool, user_ids).await?));
    }
    let sql = format!(
        "SELECT CAST(0 AS SIGNED), video_id, favorite_count, comment_count, 0, 0, 0, version FROM video_stats \
         WHERE video_id IN ({}) UNION ALL SELECT CAST(1 AS SIGNED), user_id, follow_count, follower_count, \
         total_favorited, work_count, favorite_count, version FROM user_stats WHERE user_id IN ({})",
        placeholders(video_ids.len()),
        placeholders(user_ids.len())
    );
    let query = bind_ids(bind_ids(sqlx::query(sqlx::AssertSqlSafe(sql)), video_ids), user_ids);
    let (mut videos, mut users) = (Vec::new(), Vec::new());
    for r in query.fetch_all(pool).await? {
        if r.try_get::<i64, _>(0)? == 0 {
            videos.push(VideoStats {
                video_id: r.try_get(1)?,
                favorite_count: r.try_get(2)?,
                comment_count: r.try_get(3)?,
                version: r.try_get(7)?,
            });
        } else {
            users.push(UserStats {
                user_id: r.try_get(1)?,
                follow_count: r.try_get(2)?,
                follower_count: r.try_get(3)?,
                total_favorited: r.try_get(4)?,
                work_count: r.try_get(5)?,
                favorite_count: r.try_get(6)?,
                version: r.try_get(7)?,
            });
        }
    }
    Ok((videos, users))
}

/// Up to `limit` users whose counts changed since the counter last stored them.
pub async fn dirty_users(pool: &sqlx::AnyPool, limit: i64) -> Result<Vec<UserStats>> {
    let sql = format!("{USER_COLUMNS} WHERE dirty = 1 LIMIT ?");
    user_rows(&sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(pool).await?)
}

/// Up to `limit` videos whose counts changed since the counter last stored them.
pub async fn dirty_videos(pool: &sqlx::AnyPool, limit: i64) -> Result<Vec<VideoStats>> {
    let sql = format!("{VIDEO_COLUMNS} WHERE dirty = 1 LIMIT ?");
    video_rows(&sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(pool).await?)
}

/// Clears the dirty mark of these users, each only while its row is still at
/// the version that was stored in the cache.
pub async fn clean_users(pool: &sqlx::AnyPool, stored: &[UserStats]) -> Result<()> {
    let rows: Vec<(i64, i64)> = stored.iter().map(|s| (s.user_id, s.version)).collect();
    clean(pool, "user_stats", "user_id", &rows).await
}

/// Clears the dirty mark of these videos, each only while its row is still
/// at the version that was stored in the cache.
pub async fn clean_videos(pool: &sqlx::AnyPool, stored: &[VideoStats]) -> Result<()> {
    let rows: Vec<(i64, i64)> = stored.iter().map(|s| (s.video_id, s.version)).collect();
    clean(pool, "video_stats", "video_id", &rows).await
}

async fn clean(pool: &sqlx::AnyPool, table: &str, id: &str, rows: &[(i64, i64)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let matches = vec![format!("({id} = ? AND version = ?)"); rows.len()].join(" OR ");
    let sql = format!("UPDATE {table} SET dirty = 0 WHERE dirty = 1 AND ({matches})");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (id, version) in rows {
        query = query.bind(*id).bind(*version);
    }
    query.execute(pool).await?;
    Ok(())
}

fn user_rows(rows: &[sqlx::any::AnyRow]) -> Result<Vec<UserStats>> {
    rows.iter()
        .map(|r| {
            Ok(UserStats {
                user_id: r.try_get(0)?,
                follow_count: r.try_get(1)?,
                follower_count: r.try_get(2)?,
                total_favorited: r.try_get(3)?,
                work_count: r.try_get(4)?,
                favorite_count: r.try_get(5)?,
                version: r.try_get(6)?,
            })
        })
        .collect()
}

fn video_rows(rows: &[sqlx::any::AnyRow]) -> Result<Vec<VideoStats>> {
    rows.iter()
        .map(|r| {
            Ok(VideoStats {
                video_id: r.try_get(0)?,
                favorite_count: r.try_get(1)?,
                comment_count: r.try_get(2)?,
                version: r.try_get(3)?,
            })
        })
        .collect()
}

/// The `limit` most-liked videos (ties: lower id first), scores with versions.
pub async fn top_videos(pool: &sqlx::AnyPool, limit: i64) -> Result<Vec<Ranked>> {
    let rows = sqlx::query(
        "SELECT video_id, favorite_count, version FROM video_stats WHERE favorite_count > 0 \
         ORDER BY favorite_count DESC, video_id LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(ranked).collect()
}

/// The `limit` most-followed users (ties: lower id first), scores with versions.
pub async fn top_users(pool: &sqlx::AnyPool, limit: i64) -> Result<Vec<Ranked>> {
    let rows = sqlx::query(
        "SELECT user_id, follower_count, version FROM user_stats WHERE follower_count > 0 \
         ORDER BY follower_count DESC, user_id LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(ranked).collect()
}

fn ranked(r: &sqlx::any::AnyRow) -> Result<Ranked> {
    Ok(Ranked { id: r.try_get(0)?, score: r.try_get(1)?, version: r.try_get(2)? })
}

/// Inside a write's transaction, in one statement: refuses the write when the
/// account `account` does not exist, and reads the counts rows of `video_id`
/// and `user_ids` that the write is about to change, locked until it commits
/// (`FOR UPDATE` on MySQL, where the account's row is locked too so it cannot
/// be deleted under the write; SQLite's write lock already holds them all).
/// These rows plus the write's own changes are then exactly what the rows
/// hold at commit, so the writer can hand them to the counter as they are.
pub async fn lock_rows(
    conn: &mut AnyConnection,
    dialect: Dialect,
    account: i64,
    video_id: Option<i64>,
    user_ids: &[i64],
) -> Result<(Option<VideoStats>, Vec<UserStats>)> {
    let users = douyin_kit::db::placeholders(user_ids.len().max(1));
    let lock = if dialect == Dialect::MySql { " FOR UPDATE" } else { "" };
    let sql = format!(
        "SELECT u.id, us.user_id, us.follow_count, us.follower_count, us.total_favorited, us.work_count, \
         us.favorite_count, us.version, vs.video_id, vs.favorite_count, vs.comment_count, vs.version \
         FROM users u LEFT JOIN video_stats vs ON vs.video_id = ? \
         LEFT JOIN user_stats us ON us.user_id IN ({users}) WHERE u.id = ?{lock}"
    );
    // Outer joins are read in the order written: the account, the video, then
    // the users by ascending id, as every writer locks them, so that
    // concurrent writers queue instead of deadlocking.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(video_id.unwrap_or(0));
    if user_ids.is_empty() {
        query = query.bind(0_i64);
    }
    for id in user_ids {
        query = query.bind(*id);
    }
    let rows = query.bind(account).fetch_all(conn).await?;
    if rows.is_empty() {
        return Err(douyin_kit::Error::Unauthenticated("the account of this token no longer exists".into()));
    }
    let mut video = None;
    let mut users: Vec<UserStats> = Vec::new();
    for r in &rows {
        if let Some(user_id) = r.try_get::<Option<i64>, _>(1)?
            && !users.iter().any(|u| u.user_id == user_id)
        {
            users.push(UserStats {
                user_id,
                follow_count: r.try_get(2)?,
                follower_count: r.try_get(3)?,
                total_favorited: r.try_get(4)?,
                work_count: r.try_get(5)?,
                favorite_count: r.try_get(6)?,
                version: r.try_get(7)?,
            });
        }
        if video.is_none()
            && let Some(video_id) = r.try_get::<Option<i64>, _>(8)?
        {
            video = Some(VideoStats {
                video_id,
                favorite_count: r.try_get(9)?,
                comment_count: r.try_get(10)?,
                version: r.try_get(11)?,
            });
        }
    }
    Ok((video, users))
}
