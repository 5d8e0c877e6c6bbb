//! SQL of the user role.

use douyin_kit::{
    Error, Result,
    db::{Db, bind_ids, fetch_in, inserted_id, now_ms, placeholders},
    error::is_unique_violation,
    stats,
};
use sqlx::Row;

/// A stored profile (counts live in the stats tables).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub id: i64,
    pub name: String,
    pub avatar: String,
    pub background_image: String,
    pub signature: String,
}

#[derive(Clone, Debug)]
pub struct UserRepo {
    db: Db,
}

impl UserRepo {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Creates the user with its account key and its counts row together; a
    /// taken name is `AlreadyExists`.
    pub async fn create(&self, username: &str, password_hash: &str, account_key: &str) -> Result<i64> {
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (username, password_hash, name, account_key, created_at_ms) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(username)
        .bind(password_hash)
        .bind(username)
        .bind(account_key)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        let id = match inserted {
            Ok(result) => inserted_id(&mut tx, &result).await?,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::AlreadyExists(format!("username {username:?} is already taken")));
            }
            Err(e) => return Err(e.into()),
        };
        stats::create_user(&mut tx, id).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Id, password hash and account key of `username`.
    pub async fn credentials(&self, username: &str) -> Result<Option<(i64, String, String)>> {
        let row = sqlx::query("SELECT id, password_hash, account_key FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(match row {
            Some(row) => Some((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)),
            None => None,
        })
    }

    /// `(id, account key)` of those of `ids` that exist.
    pub async fn account_keys(&self, ids: &[i64]) -> Result<Vec<(i64, String)>> {
        let rows = fetch_in(self.db.pool(), "SELECT id, account_key FROM users WHERE id IN", ids).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Profiles of `ids` (any order; unknown ids absent), each with whether
    /// `viewer_id` follows that user — one statement for a whole page. The
    /// follow flag reads the relation role's `follows` table in the same
    /// database instead of asking that role for it.
    pub async fn profiles(&self, ids: &[i64], viewer_id: i64) -> Result<Vec<(Profile, bool)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT u.id, u.name, u.avatar, u.background_image, u.signature, \
             CASE WHEN f.follower_id IS NULL THEN 0 ELSE 1 END \
             FROM users u LEFT JOIN follows f ON f.follower_id = ? AND f.followee_id = u.id \
             WHERE u.id IN ({})",
            placeholders(ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(viewer_id);
        query = bind_ids(query, ids);
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter()
            .map(|r| {
                let followed: i64 = r.try_get(5)?;
                let profile = Profile {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    avatar: r.try_get(2)?,
                    background_image: r.try_get(3)?,
                    signature: r.try_get(4)?,
                };
                let is_follow = followed == 1 && profile.id != viewer_id;
                Ok((profile, is_follow))
            })
            .collect()
    }

    /// Which of `ids` exist.
    pub async fn existing(&self, ids: &[i64]) -> Result<Vec<i64>> {
        let rows = fetch_in(self.db.pool(), "SELECT id FROM users WHERE id IN", ids).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }
}
