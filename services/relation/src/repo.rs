//! SQL of the relation role.

use douyin_counts::{
    pairs::Pair,
    stats::{self, UserCount},
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

    /// Follows or unfollows; returns whether anything changed. The row and both
    /// counts change in one transaction.
    pub async fn set_follow(&self, follower_id: i64, followee_id: i64, follow: bool) -> Result<bool> {
        retry_tx(|| async {
            let mut tx = self.db.begin_write().await?;
            self.db.require_account(&mut tx, follower_id).await?;
            let changed = FOLLOWS.set(&self.db, &mut tx, follower_id, followee_id, follow).await?;
            if changed {
                let delta = if follow { 1 } else { -1 };
                stats::add_users(
                    &mut tx,
                    &[(follower_id, UserCount::Follow), (followee_id, UserCount::Follower)],
                    delta,
                )
                .await?;
            }
            douyin_kit::db::commit(tx).await?;
            Ok(changed)
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
