//! SQL of the chat role.

use douyin_kit::{
    Error, Result,
    db::{Db, Dialect, bind_ids, inserted_id, now_ms, placeholders, retry_tx},
    error::is_unique_violation,
};
use douyin_proto::common::Message;
use sqlx::Row;

/// Most messages one history answer carries: the newest ones of a
/// conversation asked for whole, the oldest after `pre_msg_time` otherwise
/// (the client's next poll, after the newest it holds, gets the rest).
pub const HISTORY_MAX_MESSAGES: i64 = 10_000;
/// Most message text (bytes) one answer carries, within the gRPC frame limit.
pub const HISTORY_MAX_BYTES: usize = 3 << 20;

fn pair(a: i64, b: i64) -> (i64, i64) {
    (a.min(b), a.max(b))
}

fn message(r: &sqlx::any::AnyRow) -> Result<Message> {
    Ok(Message {
        id: r.try_get(0)?,
        from_user_id: r.try_get(1)?,
        to_user_id: r.try_get(2)?,
        content: r.try_get(3)?,
        create_time: r.try_get(4)?,
    })
}

#[derive(Clone, Debug)]
pub struct ChatRepo {
    db: Db,
}

impl ChatRepo {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Stores a message with a `create_time` (ms) later than every earlier one
    /// of the conversation: the later of now and the newest time plus one.
    ///
    /// The newest time is read under a lock on the conversation (SQLite: the
    /// write lock of `BEGIN IMMEDIATE`; MySQL: `FOR UPDATE` on its newest row),
    /// so a message commits before any later one of the same conversation gets
    /// its time. A poller that holds a message therefore already sees every
    /// older one, across clock skew between replicas too.
    ///
    /// With a `key`, a concurrent send under the same key that stored first
    /// is answered instead.
    pub async fn insert(&self, from: i64, to: i64, content: &str, key: Option<&str>) -> Result<Message> {
        let (lo, hi) = pair(from, to);
        for _ in 0..10 {
            let attempt = retry_tx(|| async {
                let mut tx = self.db.begin_write().await?;
                self.db.require_account(&mut tx, from).await?;
                let locking = match self.db.dialect() {
                    Dialect::MySql => " FOR UPDATE",
                    Dialect::Sqlite => "",
                };
                let sql = format!(
                    "SELECT create_time FROM messages WHERE lo_user = ? AND hi_user = ? \
                     ORDER BY create_time DESC LIMIT 1{locking}"
                );
                let newest: Option<i64> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(lo)
                    .bind(hi)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                let create_time = newest.map_or(now_ms(), |t| now_ms().max(t + 1));
                let inserted = sqlx::query(
                    "INSERT INTO messages (lo_user, hi_user, from_user_id, to_user_id, content, create_time, request_key) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(lo)
                .bind(hi)
                .bind(from)
                .bind(to)
                .bind(content)
                .bind(create_time)
                .bind(key)
                .execute(&mut *tx)
                .await;
                let id = match inserted {
                    Ok(r) => inserted_id(&mut tx, &r).await?,
                    // Another writer took this time (MySQL without gap locks on
                    // an empty conversation): read again.
                    Err(e) if is_unique_violation(&e) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                douyin_kit::db::commit(tx).await?;
                Ok(Some(Message { id, to_user_id: to, from_user_id: from, content: content.to_owned(), create_time }))
            })
            .await?;
            if let Some(message) = attempt {
                return Ok(message);
            }
            if let Some(key) = key
                && let Some(message) = self.by_key(from, key).await?
            {
                return Ok(message);
            }
        }
        Err(Error::Unavailable("could not allocate a message time".into()))
    }

    /// The message `from` stored under `key`, if any.
    pub async fn by_key(&self, from: i64, key: &str) -> Result<Option<Message>> {
        let row = sqlx::query(
            "SELECT id, from_user_id, to_user_id, content, create_time FROM messages \
             WHERE request_key = ? AND from_user_id = ?",
        )
        .bind(key)
        .bind(from)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(message).transpose()
    }

    /// The conversation of `a` and `b`, oldest first: all of it when
    /// `after_ms` is 0 (its newest messages beyond the caps), else the
    /// messages after `after_ms` (the oldest of them beyond the caps).
    pub async fn history(&self, a: i64, b: i64, after_ms: i64) -> Result<Vec<Message>> {
        let (lo, hi) = pair(a, b);
        let whole = after_ms <= 0;
        let order = if whole { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT id, from_user_id, to_user_id, content, create_time FROM messages \
             WHERE lo_user = ? AND hi_user = ? AND create_time > ? ORDER BY create_time {order} LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lo)
            .bind(hi)
            .bind(after_ms.max(0))
            .bind(HISTORY_MAX_MESSAGES)
            .fetch_all(self.db.pool())
            .await?;
        let mut messages = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        for row in &rows {
            let message = message(row)?;
            bytes += message.content.len();
            if bytes > HISTORY_MAX_BYTES {
                break;
            }
            messages.push(message);
        }
        if whole {
            messages.reverse();
        }
        Ok(messages)
    }

    /// Messages sent or received by `user_id` after `after_ms`, oldest first,
    /// at most `limit`: one indexed range per direction, merged.
    pub async fn recent(&self, user_id: i64, after_ms: i64, limit: i64) -> Result<Vec<Message>> {
        let mut messages = Vec::new();
        for column in ["to_user_id", "from_user_id"] {
            let sql = format!(
                "SELECT id, from_user_id, to_user_id, content, create_time FROM messages \
                 WHERE {column} = ? AND create_time > ? ORDER BY create_time LIMIT ?"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(user_id)
                .bind(after_ms)
                .bind(limit)
                .fetch_all(self.db.pool())
                .await?;
            for row in &rows {
                messages.push(message(row)?);
            }
        }
        messages.sort_by_key(|m| (m.create_time, m.id));
        messages.dedup_by_key(|m| m.id);
        messages.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(messages)
    }

    /// The latest message between `user_id` and each of `peers` (absent when none).
    pub async fn latest(&self, user_id: i64, peers: &[i64]) -> Result<Vec<Message>> {
        let lower: Vec<i64> = peers.iter().copied().filter(|p| *p < user_id).collect();
        let higher: Vec<i64> = peers.iter().copied().filter(|p| *p > user_id).collect();
        let mut conditions = Vec::new();
        if !higher.is_empty() {
            conditions.push(format!("(lo_user = ? AND hi_user IN ({}))", placeholders(higher.len())));
        }
        if !lower.is_empty() {
            conditions.push(format!("(hi_user = ? AND lo_user IN ({}))", placeholders(lower.len())));
        }
        if conditions.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT m.id, m.from_user_id, m.to_user_id, m.content, m.create_time FROM messages m \
             JOIN (SELECT lo_user, hi_user, MAX(create_time) AS t FROM messages WHERE {} GROUP BY lo_user, hi_user) x \
             ON m.lo_user = x.lo_user AND m.hi_user = x.hi_user AND m.create_time = x.t",
            conditions.join(" OR ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if !higher.is_empty() {
            query = query.bind(user_id);
            query = bind_ids(query, &higher);
        }
        if !lower.is_empty() {
            query = query.bind(user_id);
            query = bind_ids(query, &lower);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter().map(message).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn repo() -> (ChatRepo, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = douyin_kit::Config { data_dir: dir.path().into(), ..Default::default() };
        let db = Db::connect(&config).await.unwrap();
        db.migrate(&[&crate::MIGRATIONS]).await.unwrap();
        // The user role's table, as far as a write checks its sender.
        sqlx::query("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY)").execute(db.pool()).await.unwrap();
        sqlx::query("INSERT INTO users (id) VALUES (1), (2)").execute(db.pool()).await.unwrap();
        (ChatRepo::new(db), dir)
    }

    #[tokio::test]
    async fn a_send_repeated_under_its_key_is_stored_once_and_answered_as_the_first() {
        let (repo, _dir) = repo().await;
        let first = repo.insert(1, 2, "hello", Some("key-1")).await.unwrap();
        let again = repo.insert(1, 2, "hello", Some("key-1")).await.unwrap();
        assert_eq!((again.id, again.create_time), (first.id, first.create_time));
        assert_eq!(repo.by_key(1, "key-1").await.unwrap().map(|m| m.id), Some(first.id));
        assert!(repo.by_key(2, "key-1").await.unwrap().is_none(), "a key is its sender's");

        let a = repo.insert(1, 2, "twice", None).await.unwrap();
        let b = repo.insert(1, 2, "twice", None).await.unwrap();
        assert_ne!(a.id, b.id, "sends without a key are each a message");
        assert_eq!(repo.history(1, 2, 0).await.unwrap().len(), 3);
    }
}
