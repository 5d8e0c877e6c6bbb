//! SQL of the video role.

use douyin_counts::stats::{self, UserCount};
use douyin_kit::{
    Error, Result,
    db::{Db, Freshness, inserted_id, now_ms},
    error::is_unique_violation,
};
use sqlx::{Row, any::AnyRow};

/// A stored video row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoRow {
    pub id: i64,
    pub author_id: i64,
    pub title: String,
    pub play_key: String,
    /// "" when the video has the default cover.
    pub cover_key: String,
    pub published_at_ms: i64,
}

const COLUMNS: &str = "id, author_id, title, play_key, cover_key, published_at_ms";

fn row(r: &AnyRow) -> Result<VideoRow> {
    Ok(VideoRow {
        id: r.try_get(0)?,
        author_id: r.try_get(1)?,
        title: r.try_get(2)?,
        play_key: r.try_get(3)?,
        cover_key: r.try_get(4)?,
        published_at_ms: r.try_get(5)?,
    })
}

#[derive(Clone, Debug)]
pub struct VideoRepo {
    db: Db,
}

impl VideoRepo {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Inserts the video, its counts row and the author's `work_count` in one
    /// transaction. Publish times are unique: a clash moves this one a
    /// millisecond later.
    pub async fn insert(&self, author_id: i64, title: &str, play_key: &str, cover_key: &str) -> Result<VideoRow> {
        let mut published_at_ms = now_ms();
        for _ in 0..1000 {
            let mut tx = self.db.begin_write().await?;
            self.db.require_account(&mut tx, author_id).await?;
            let inserted = sqlx::query(
                "INSERT INTO videos (author_id, title, play_key, cover_key, published_at_ms) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(author_id)
            .bind(title)
            .bind(play_key)
            .bind(cover_key)
            .bind(published_at_ms)
            .execute(&mut *tx)
            .await;
            let id = match inserted {
                Ok(r) => inserted_id(&mut tx, &r).await?,
                Err(e) if is_unique_violation(&e) => {
                    tx.rollback().await?;
                    published_at_ms = self.latest_published().await?.max(published_at_ms) + 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            stats::create_video(&mut tx, id).await?;
            stats::add_user(&mut tx, author_id, UserCount::Work, 1).await?;
            douyin_kit::db::commit(tx).await?;
            return Ok(VideoRow {
                id,
                author_id,
                title: title.to_owned(),
                play_key: play_key.to_owned(),
                cover_key: cover_key.to_owned(),
                published_at_ms,
            });
        }
        Err(Error::Unavailable("could not allocate a publish time".into()))
    }

    async fn latest_published(&self) -> Result<i64> {
        let row = sqlx::query("SELECT published_at_ms FROM videos ORDER BY published_at_ms DESC LIMIT 1")
            .fetch_optional(self.db.pool())
            .await?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => 0,
        })
    }

    /// Newest first, strictly before `before_ms`.
    pub async fn feed(&self, before_ms: i64, limit: i64) -> Result<Vec<VideoRow>> {
        let sql =
            format!("SELECT {COLUMNS} FROM videos WHERE published_at_ms < ? ORDER BY published_at_ms DESC LIMIT ?");
        let sql = &sql;
        let rows = self
            .db
            .read(Freshness::Lagging, |pool| async move {
                Ok(sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(before_ms).bind(limit).fetch_all(&pool).await?)
            })
            .await?;
        rows.iter().map(row).collect()
    }

    /// `(id, published_at_ms)` of the newest `limit` videos, newest first,
    /// from the primary: the feed window built from them must hold every
    /// video whose publish has answered.
    pub async fn newest(&self, limit: i64) -> Result<Vec<(i64, i64)>> {
        let rows = sqlx::query("SELECT id, published_at_ms FROM videos ORDER BY published_at_ms DESC LIMIT ?")
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Every video of `author_id`, newest first (the list is never cut: its
    /// length is the author's `work_count`).
    pub async fn by_author(&self, author_id: i64, freshness: Freshness) -> Result<Vec<VideoRow>> {
        let sql = &format!("SELECT {COLUMNS} FROM videos WHERE author_id = ? ORDER BY published_at_ms DESC, id DESC");
        let rows = self
            .db
            .read(freshness, |pool| async move {
                Ok(sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(author_id).fetch_all(&pool).await?)
            })
            .await?;
        rows.iter().map(row).collect()
    }

    /// Rows of `ids` in any order; unknown ids absent. A row never changes
    /// once written: the replica answers, the primary fills in what it lacks.
    pub async fn by_ids(&self, ids: &[i64]) -> Result<Vec<VideoRow>> {
        let rows = self.db.fetch_rows_in(&format!("SELECT {COLUMNS} FROM videos WHERE id IN"), ids).await?;
        rows.iter().map(row).collect()
    }

    /// `(id, author_id)` of those of `ids` that exist.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(sqlx::query("SELECT id FROM videos LIMIT 1").fetch_optional(self.db.pool()).await?.is_none())
    }
}
