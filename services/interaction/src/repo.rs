//! SQL of the interaction role.

use douyin_kit::{
    Result,
    db::{Db, Pair, bind_ids, inserted_id, now_ms, placeholders, retry_tx},
    stats::{self, UserCount, VideoCount},
};
use sqlx::Row;

/// `favorites (user_id, video_id)`: who likes which video.
const FAVORITES: Pair = Pair { table: "favorites", first: "user_id", second: "video_id" };

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentRow {
    pub id: i64,
    pub video_id: i64,
    pub user_id: i64,
    pub content: String,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug)]
pub struct InteractionRepo {
    db: Db,
}

impl InteractionRepo {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Likes or unlikes; returns whether anything changed. The like row and
    /// the three counts it moves change in one transaction.
    pub async fn set_favorite(&self, user_id: i64, video_id: i64, author_id: i64, like: bool) -> Result<bool> {
        retry_tx(|| async {
            let mut tx = self.db.begin_write().await?;
            self.db.require_account(&mut tx, user_id).await?;
            let changed = self.db.set_pair(&mut tx, FAVORITES, user_id, video_id, like).await?;
            if changed {
                let delta = if like { 1 } else { -1 };
                stats::add_video(&mut tx, video_id, VideoCount::Favorite, delta).await?;
                stats::add_users(
                    &mut tx,
                    &[(user_id, UserCount::Favorite), (author_id, UserCount::TotalFavorited)],
                    delta,
                )
                .await?;
            }
            douyin_kit::db::commit(tx).await?;
            Ok(changed)
        })
        .await
    }

    /// Videos liked by `user_id`, most recent like first.
    pub async fn favorite_ids(&self, user_id: i64) -> Result<Vec<i64>> {
        let rows =
            sqlx::query("SELECT video_id FROM favorites WHERE user_id = ? ORDER BY created_at_ms DESC, video_id DESC")
                .bind(user_id)
                .fetch_all(self.db.pool())
                .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Which of `video_ids` `user_id` likes.
    pub async fn liked_among(&self, user_id: i64, video_ids: &[i64]) -> Result<Vec<i64>> {
        if video_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT video_id FROM favorites WHERE user_id = ? AND video_id IN ({})",
            placeholders(video_ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id);
        query = bind_ids(query, video_ids);
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub async fn insert_comment(&self, user_id: i64, video_id: i64, content: &str) -> Result<CommentRow> {
        retry_tx(|| async {
            let created_at_ms = now_ms();
            let mut tx = self.db.begin_write().await?;
            self.db.require_account(&mut tx, user_id).await?;
            let result =
                sqlx::query("INSERT INTO comments (video_id, user_id, content, created_at_ms) VALUES (?, ?, ?, ?)")
                    .bind(video_id)
                    .bind(user_id)
                    .bind(content)
                    .bind(created_at_ms)
                    .execute(&mut *tx)
                    .await?;
            let id = inserted_id(&mut tx, &result).await?;
            stats::add_video(&mut tx, video_id, VideoCount::Comment, 1).await?;
            douyin_kit::db::commit(tx).await?;
            Ok(CommentRow { id, video_id, user_id, content: content.to_owned(), created_at_ms })
        })
        .await
    }

    pub async fn comment(&self, id: i64) -> Result<Option<CommentRow>> {
        let row = sqlx::query("SELECT id, video_id, user_id, content, created_at_ms FROM comments WHERE id = ?")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|r| comment_row(&r)).transpose()
    }

    /// Deletes the comment if it is still there; returns whether it was.
    pub async fn delete_comment(&self, comment: &CommentRow) -> Result<bool> {
        retry_tx(|| async {
            let mut tx = self.db.begin_write().await?;
            self.db.require_account(&mut tx, comment.user_id).await?;
            let deleted = sqlx::query("DELETE FROM comments WHERE id = ?")
                .bind(comment.id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if deleted {
                stats::add_video(&mut tx, comment.video_id, VideoCount::Comment, -1).await?;
            }
            douyin_kit::db::commit(tx).await?;
            Ok(deleted)
        })
        .await
    }

    /// Live comments of a video, newest first.
    pub async fn comments(&self, video_id: i64) -> Result<Vec<CommentRow>> {
        let rows = sqlx::query(
            "SELECT id, video_id, user_id, content, created_at_ms FROM comments WHERE video_id = ? \
             ORDER BY created_at_ms DESC, id DESC",
        )
        .bind(video_id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(comment_row).collect()
    }
}

fn comment_row(r: &sqlx::any::AnyRow) -> Result<CommentRow> {
    Ok(CommentRow {
        id: r.try_get(0)?,
        video_id: r.try_get(1)?,
        user_id: r.try_get(2)?,
        content: r.try_get(3)?,
        created_at_ms: r.try_get(4)?,
    })
}
