//! SQL of the relation role.

use douyin_counts::{
    pairs::Pair,
    stats::{self, UserStats},
};
use douyin_kit::{
    Result,
    db::{Db, Freshness, retry_tx},
};
use sqlx::Row;

/// `follows (follower_id, followee_id)`: who follows whom.
const FOLLOWS: Pair = Pair { table: "follows", first: "follower_id", second: "followee_id" };

#[derive(Clone, Debug)]
pub struct RelationRepo {
    db: Db,
}

impl RelationRepo {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Follows or unfollows; returns the two users' counts rows as the commit
    /// left them when anything changed (read locked inside the transaction,
    /// so exact at their versions), None when nothing did. The row and both
    /// counts change in one transaction: on MySQL five statements (begin, the
    /// account check reading the counts rows locked, the follow row, the
    /// counts, commit).
    pub async fn set_follow(&self, follower_id: i64, followee_id: i64, follow: bool) -> Result<Option<Vec<UserStats>>> {
        retry_tx(|| async {
            let mut tx = self.db.begin_write().await?;
            let mut ids = [follower_id, followee_id];
            ids.sort_unstable();
            let (_, users) = stats::lock_rows(&mut tx, self.db.dialect(), follower_id, None, &ids).await?;
            if !FOLLOWS.set(&self.db, &mut tx, follower_id, followee_id, follow).await? {
                douyin_kit::db::commit(tx).await?;
                return Ok(None);
            }
            let delta = if follow { 1 } else { -1 };
            let follows = |id: i64| if id == follower_id { delta } else { 0 };
            let followed = |id: i64| if id == followee_id { delta } else { 0 };
            sqlx::query(
                "UPDATE user_stats SET \
                 follow_count = follow_count + CASE WHEN user_id = ? THEN ? ELSE 0 END, \
                 follower_count = follower_count + CASE WHEN user_id = ? THEN ? ELSE 0 END, \
                 version = version + 1, dirty = 1 WHERE user_id IN (?, ?)",
            )
            .bind(follower_id)
            .bind(delta)
            .bind(followee_id)
            .bind(delta)
            .bind(follower_id)
            .bind(followee_id)
            .execute(&mut *tx)
            .await?;
            douyin_kit::db::commit(tx).await?;
            // What the rows hold now: each changed once, one version later.
            let users = users
                .into_iter()
                .map(|u| UserStats {
                    follow_count: u.follow_count + follows(u.user_id),
                    follower_count: u.follower_count + followed(u.user_id),
                    version: u.version + 1,
                    ..u
                })
                .collect();
            Ok(Some(users))
        })
        .await
    }

    async fn ids(&self, sql: &'static str, user_id: i64, freshness: Freshness) -> Result<Vec<i64>> {
        let rows = self
            .db
            .read(freshness, |pool| async move { Ok(sqlx::query(sql).bind(user_id).fetch_all(&pool).await?) })
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Whom `user_id` follows, most recent first.
    pub async fn followees(&self, user_id: i64, freshness: Freshness) -> Result<Vec<i64>> {
        self.ids(
            "SELECT followee_id FROM follows WHERE follower_id = ? ORDER BY created_at_ms DESC, followee_id DESC",
            user_id,
            freshness,
        )
        .await
    }

    /// Who follows `user_id`, most recent first.
    pub async fn followers(&self, user_id: i64, freshness: Freshness) -> Result<Vec<i64>> {
        self.ids(
            "SELECT follower_id FROM follows WHERE followee_id = ? ORDER BY created_at_ms DESC, follower_id DESC",
            user_id,
            freshness,
        )
        .await
    }

    /// Users who follow `user_id` and whom `user_id` follows.
    pub async fn friends(&self, user_id: i64, freshness: Freshness) -> Result<Vec<i64>> {
        self.ids(
            "SELECT a.followee_id FROM follows a \
             JOIN follows b ON b.follower_id = a.followee_id AND b.followee_id = a.follower_id \
             WHERE a.follower_id = ? ORDER BY a.created_at_ms DESC, a.followee_id DESC",
            user_id,
            freshness,
        )
        .await
    }
}
