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
    /// name whose skeleton `name_key` is taken is `AlreadyExists`.
    pub async fn create(&self, username: &str, name_key: &str, password_hash: &str, account_key: &str) -> Result<i64> {
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (username, name_key, password_hash, name, account_key, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(username)
        .bind(name_key)
        .bind(password_hash)
        .bind(username)
        .bind(account_key)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        let id = match inserted {
            Ok(result) => inserted_id(&mut tx, &result).await?,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::AlreadyExists(format!(
                    "username {username:?} is already taken or looks like one that is"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        stats::create_user(&mut tx, id).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Id, password hash and account key of the account `typed` names: the
    /// name exactly as stored, else its normalised form `name`, else the
    /// account whose skeleton is `name_key` (a name stored before names were
    /// normalised, typed in another form).
    pub async fn credentials(&self, typed: &str, name: &str, name_key: &str) -> Result<Option<(i64, String, String)>> {
        let rows = sqlx::query(
            "SELECT id, password_hash, account_key, username, name_key FROM users \
             WHERE username = ? OR username = ? OR name_key = ?",
        )
        .bind(typed)
        .bind(name)
        .bind(name_key)
        .fetch_all(self.db.pool())
        .await?;
        let rank = |row: &sqlx::any::AnyRow| -> Result<u8> {
            let username: String = row.try_get(3)?;
            Ok(if username == typed {
                0
            } else if username == name {
                1
            } else {
                2
            })
        };
        let mut best: Option<(u8, &sqlx::any::AnyRow)> = None;
        for row in &rows {
            let r = rank(row)?;
            if best.is_none_or(|(b, _)| r < b) {
                best = Some((r, row));
            }
        }
        Ok(match best {
            Some((_, row)) => Some((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)),
            None => None,
        })
    }

    /// Gives every account stored without a name skeleton its skeleton, in
    /// id order; an account that looks like an older one keeps none (it can
    /// still sign in by its exact name). Returns how many were filled.
    pub async fn fill_name_keys(&self, skeleton: impl Fn(&str) -> String) -> Result<u64> {
        let mut filled = 0;
        let mut after = 0_i64;
        loop {
            let rows =
                sqlx::query("SELECT id, username FROM users WHERE name_key IS NULL AND id > ? ORDER BY id LIMIT 500")
                    .bind(after)
                    .fetch_all(self.db.pool())
                    .await?;
            let Some(last) = rows.last() else { return Ok(filled) };
            after = last.try_get(0)?;
            for row in &rows {
                let (id, username): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
                let updated = sqlx::query("UPDATE users SET name_key = ? WHERE id = ? AND name_key IS NULL")
                    .bind(skeleton(&username))
                    .bind(id)
                    .execute(self.db.pool())
                    .await;
                match updated {
                    Ok(done) => filled += done.rows_affected(),
                    Err(e) if is_unique_violation(&e) => {
                        tracing::warn!(
                            user_id = id,
                            "account name looks like an older account's; left without a skeleton"
                        );
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
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
