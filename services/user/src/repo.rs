//! SQL of the user role.

use douyin_counts::{pairs::Pair, stats};
use douyin_kit::{
    Error, Result,
    cache::Flags,
    db::{Db, fetch_in, inserted_id, now_ms},
    error::is_unique_violation,
};
use sqlx::Row;

/// `follows (follower_id, followee_id)`, owned by the relation role: read for `is_follow`.
const FOLLOWS: Pair = Pair { table: "follows", first: "follower_id", second: "followee_id" };

/// A stored profile (counts live in the stats tables).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// An account to create: its sign-in name and the skeleton that keeps
/// look-alike names apart, the password hash, the account key its tokens
/// carry, and the profile it starts with.
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub name_key: &'a str,
    pub password_hash: &'a str,
    pub account_key: &'a str,
    pub name: &'a str,
    pub signature: &'a str,
}

impl UserRepo {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Creates the user with its account key and its counts row together; a
    /// name whose skeleton `name_key` is taken is `AlreadyExists`.
    /// Returns the id and the creation time.
    pub async fn create(&self, account: NewAccount<'_>) -> Result<(i64, i64)> {
        let NewAccount { username, name_key, password_hash, account_key, name, signature } = account;
        let created_at_ms = now_ms();
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (username, name_key, password_hash, name, signature, account_key, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(username)
        .bind(name_key)
        .bind(password_hash)
        .bind(name)
        .bind(signature)
        .bind(account_key)
        .bind(created_at_ms)
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
        douyin_kit::db::commit(tx).await?;
        Ok((id, created_at_ms))
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

    /// Profiles of `ids` with their creation times (any order; unknown ids
    /// absent), from the replica, the primary filling in accounts it lacks.
    pub async fn profiles(&self, ids: &[i64]) -> Result<Vec<(Profile, i64)>> {
        let select = "SELECT id, name, avatar, background_image, signature, created_at_ms FROM users WHERE id IN";
        let rows = self.db.fetch_rows_in(select, ids).await?;
        rows.iter()
            .map(|r| {
                let profile = Profile {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    avatar: r.try_get(2)?,
                    background_image: r.try_get(3)?,
                    signature: r.try_get(4)?,
                };
                Ok((profile, r.try_get(5)?))
            })
            .collect()
    }

    /// Those of `ids` that `viewer_id` follows. The relation role's `follows`
    /// table is read in the same database instead of asking that role.
    pub async fn followed_among(&self, follows: &Flags, viewer_id: i64, version: i64, ids: &[i64]) -> Result<Vec<i64>> {
        if ids.is_empty() || viewer_id <= 0 {
            return Ok(Vec::new());
        }
        let followed = FOLLOWS.among(&self.db, follows, viewer_id, version, ids).await?;
        Ok(ids.iter().copied().filter(|id| *id != viewer_id && followed.contains(id)).collect())
    }

    /// Which of `ids` exist.
    pub async fn existing(&self, ids: &[i64]) -> Result<Vec<i64>> {
        let rows = fetch_in(self.db.pool(), "SELECT id FROM users WHERE id IN", ids).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }
}
