//! SQL of the interaction role.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use douyin_counts::{
    pairs::Pair,
    stats::{self, UserStats, VideoCount, VideoStats},
};
use douyin_kit::{
    Error, Result,
    cache::Flags,
    db::{Db, Dialect, Freshness, inserted_id, now_ms, retry_tx},
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

/// One like (or unlike) of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Like {
    pub user_id: i64,
    pub video_id: i64,
    pub author_id: i64,
    pub like: bool,
}

/// What a batch of likes did.
#[derive(Debug)]
pub struct Written {
    /// One per like, in order.
    pub outcomes: Vec<Result<()>>,
    /// The counts rows changed, as at commit.
    pub videos: Vec<VideoStats>,
    pub users: Vec<UserStats>,
}

fn sorted(ids: impl Iterator<Item = i64>) -> Vec<i64> {
    let set: BTreeSet<i64> = ids.collect();
    set.into_iter().collect()
}

#[derive(Clone)]
pub struct InteractionRepo {
    db: Db,
    /// Each user's likes, cached.
    likes: Flags,
}

impl InteractionRepo {
    pub fn new(db: Db, likes: Flags) -> Self {
        Self { db, likes }
    }

    /// Likes or unlikes; returns, when anything changed, the counts rows it
    /// changed as they are at commit (with their versions). The like row and
    /// the three counts it moves change in one transaction: on MySQL five
    /// statements (begin, the account check reading the counts rows locked,
    /// the like row, the counts, commit).
    pub async fn set_favorite(
        &self,
        user_id: i64,
        video_id: i64,
        author_id: i64,
        like: bool,
    ) -> Result<Option<(Vec<VideoStats>, Vec<UserStats>)>> {
        retry_tx(|| async {
            let mut tx = self.db.begin_write().await?;
            let dialect = self.db.dialect();
            let (video, users) =
                stats::lock_rows(&mut tx, dialect, user_id, Some(video_id), &[user_id, author_id]).await?;
            if !FAVORITES.set(&self.db, &mut tx, user_id, video_id, like).await? {
                douyin_kit::db::commit(tx).await?;
                return Ok(None);
            }
            let delta = if like { 1 } else { -1 };
            let liker = |id: i64| if id == user_id { delta } else { 0 };
            let author = |id: i64| if id == author_id { delta } else { 0 };
            if dialect == Dialect::MySql && video.is_some() {
                // Both tables in one statement (each row changes once).
                sqlx::query(
                    "UPDATE video_stats vs LEFT JOIN user_stats us ON us.user_id IN (?, ?) \
                     SET vs.favorite_count = vs.favorite_count + ?, vs.version = vs.version + 1, vs.dirty = 1, \
                     us.favorite_count = us.favorite_count + CASE WHEN us.user_id = ? THEN ? ELSE 0 END, \
                     us.total_favorited = us.total_favorited + CASE WHEN us.user_id = ? THEN ? ELSE 0 END, \
                     us.version = us.version + 1, us.dirty = 1 \
                     WHERE vs.video_id = ?",
                )
                .bind(user_id)
                .bind(author_id)
                .bind(delta)
                .bind(user_id)
                .bind(delta)
                .bind(author_id)
                .bind(delta)
                .bind(video_id)
                .execute(&mut *tx)
                .await?;
            } else {
                stats::add_video(&mut tx, video_id, VideoCount::Favorite, delta).await?;
                sqlx::query(
                    "UPDATE user_stats SET \
                     favorite_count = favorite_count + CASE WHEN user_id = ? THEN ? ELSE 0 END, \
                     total_favorited = total_favorited + CASE WHEN user_id = ? THEN ? ELSE 0 END, \
                     version = version + 1, dirty = 1 WHERE user_id IN (?, ?)",
                )
                .bind(user_id)
                .bind(delta)
                .bind(author_id)
                .bind(delta)
                .bind(user_id)
                .bind(author_id)
                .execute(&mut *tx)
                .await?;
            }
            douyin_kit::db::commit(tx).await?;
            // What the rows hold now: each changed once, one version later.
            let video =
                video.map(|v| VideoStats { favorite_count: v.favorite_count + delta, version: v.version + 1, ..v });
            let users = users
                .into_iter()
                .map(|u| UserStats {
                    favorite_count: u.favorite_count + liker(u.user_id),
                    total_favorited: u.total_favorited + author(u.user_id),
                    version: u.version + 1,
                    ..u
                })
                .collect();
            Ok(Some((video.into_iter().collect(), users)))
        })
        .await
    }

    /// Likes and unlikes of many users in one transaction, applied in order;
    /// returns each one's outcome (refused when its account does not exist)
    /// and the counts rows the transaction changed as they are at commit.
    /// Locks in the order every writer takes them (accounts, videos, users,
    /// each by ascending id). On MySQL 7 + N statements for N writes: begin,
    /// the accounts, the videos' and users' counts read locked, one statement
    /// per like row, one update per counts table, commit.
    pub async fn set_favorites(&self, likes: &[Like]) -> Result<Written> {
        retry_tx(|| async {
            let mut tx = self.db.begin_write().await?;
            let accounts: HashSet<i64> =
                self.db.lock_accounts(&mut tx, &sorted(likes.iter().map(|l| l.user_id))).await?.into_iter().collect();
            let allowed = || likes.iter().filter(|l| accounts.contains(&l.user_id));
            let video_ids = sorted(allowed().map(|l| l.video_id));
            let user_ids = sorted(allowed().flat_map(|l| [l.user_id, l.author_id]));
            let (videos, users) = stats::lock_many(&mut tx, self.db.dialect(), &video_ids, &user_ids).await?;
            let mut video_deltas: BTreeMap<i64, i64> = BTreeMap::new();
            let mut user_deltas: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            let mut outcomes = Vec::with_capacity(likes.len());
            for l in likes {
                if !accounts.contains(&l.user_id) {
                    outcomes.push(Err(Error::Unauthenticated("the account of this token no longer exists".into())));
                    continue;
                }
                if FAVORITES.set(&self.db, &mut tx, l.user_id, l.video_id, l.like).await? {
                    let delta = if l.like { 1 } else { -1 };
                    *video_deltas.entry(l.video_id).or_default() += delta;
                    user_deltas.entry(l.user_id).or_default().0 += delta;
                    user_deltas.entry(l.author_id).or_default().1 += delta;
                }
                outcomes.push(Ok(()));
            }
            let videos: Vec<VideoStats> =
                videos.into_iter().filter(|v| video_deltas.contains_key(&v.video_id)).collect();
            let users: Vec<UserStats> = users.into_iter().filter(|u| user_deltas.contains_key(&u.user_id)).collect();
            let video_changes: Vec<(i64, i64)> =
                videos.iter().map(|v| (v.video_id, video_deltas[&v.video_id])).collect();
            let user_changes: Vec<(i64, i64, i64)> = users
                .iter()
                .map(|u| {
                    let (favorite, favorited) = user_deltas[&u.user_id];
                    (u.user_id, favorite, favorited)
                })
                .collect();
            stats::add_video_favorites(&mut tx, &video_changes).await?;
            stats::add_user_favorites(&mut tx, &user_changes).await?;
            douyin_kit::db::commit(tx).await?;
            // What the rows hold now: each changed once, one version later.
            let videos = videos
                .into_iter()
                .map(|v| VideoStats {
                    favorite_count: v.favorite_count + video_deltas[&v.video_id],
                    version: v.version + 1,
                    ..v
                })
                .collect();
            let users = users
                .into_iter()
                .map(|u| {
                    let (favorite, favorited) = user_deltas[&u.user_id];
                    UserStats {
                        favorite_count: u.favorite_count + favorite,
                        total_favorited: u.total_favorited + favorited,
                        version: u.version + 1,
                        ..u
                    }
                })
                .collect();
            Ok(Written { outcomes, videos, users })
        })
        .await
    }

    /// Videos liked by `user_id`, most recent like first.
    pub async fn favorite_ids(&self, user_id: i64, freshness: Freshness) -> Result<Vec<i64>> {
        let sql = "SELECT video_id FROM favorites WHERE user_id = ? ORDER BY created_at_ms DESC, video_id DESC";
        let rows = self
            .db
            .read(freshness, |pool| async move { Ok(sqlx::query(sql).bind(user_id).fetch_all(&pool).await?) })
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Which of `video_ids` `user_id` likes: from the user's cached likes
    /// when they are current (at `version` of the user's counts, 0 when the
    /// caller did not read it), else one statement.
    pub async fn liked_among(&self, user_id: i64, version: i64, video_ids: &[i64]) -> Result<Vec<i64>> {
        Ok(FAVORITES.among(&self.db, &self.likes, user_id, version, video_ids).await?.into_iter().collect())
    }

    /// Inside a write's transaction: refuses it when `user_id`'s account does
    /// not exist, and reads `video_id`'s counts row locked until the commit.
    async fn lock_video(
        &self,
        conn: &mut sqlx::AnyConnection,
        user_id: i64,
        video_id: i64,
    ) -> Result<Option<VideoStats>> {
        Ok(stats::lock_rows(conn, self.db.dialect(), user_id, Some(video_id), &[]).await?.0)
    }

    /// Stores the comment and counts it; returns it with the video's counts
    /// row as the commit left it (none when the video has no counts row).
    pub async fn insert_comment(
        &self,
        user_id: i64,
        video_id: i64,
        content: &str,
    ) -> Result<(CommentRow, Vec<VideoStats>)> {
        retry_tx(|| async {
            let created_at_ms = now_ms();
            let mut tx = self.db.begin_write().await?;
            let video = self.lock_video(&mut tx, user_id, video_id).await?;
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
            let row = CommentRow { id, video_id, user_id, content: content.to_owned(), created_at_ms };
            Ok((row, commented(video, 1)))
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

    /// Deletes the comment if it is still there; returns the video's counts
    /// row as the commit left it when it was, None when it was not.
    pub async fn delete_comment(&self, comment: &CommentRow) -> Result<Option<Vec<VideoStats>>> {
        retry_tx(|| async {
            let mut tx = self.db.begin_write().await?;
            let video = self.lock_video(&mut tx, comment.user_id, comment.video_id).await?;
            let deleted = sqlx::query("DELETE FROM comments WHERE id = ?")
                .bind(comment.id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !deleted {
                douyin_kit::db::commit(tx).await?;
                return Ok(None);
            }
            stats::add_video(&mut tx, comment.video_id, VideoCount::Comment, -1).await?;
            douyin_kit::db::commit(tx).await?;
            Ok(Some(commented(video, -1)))
        })
        .await
    }

    /// Live comments of a video, newest first; a lagging answer will do (the
    /// comment action answers with the new comment itself).
    pub async fn comments(&self, video_id: i64) -> Result<Vec<CommentRow>> {
        let sql = "SELECT id, video_id, user_id, content, created_at_ms FROM comments WHERE video_id = ? \
                   ORDER BY created_at_ms DESC, id DESC";
        let rows = self
            .db
            .read(Freshness::Lagging, |pool| async move { Ok(sqlx::query(sql).bind(video_id).fetch_all(&pool).await?) })
            .await?;
        rows.iter().map(comment_row).collect()
    }
}

/// A video's counts row after its comment count moved by `delta` once.
fn commented(video: Option<VideoStats>, delta: i64) -> Vec<VideoStats> {
    video
        .map(|v| VideoStats { comment_count: v.comment_count + delta, version: v.version + 1, ..v })
        .into_iter()
        .collect()
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
