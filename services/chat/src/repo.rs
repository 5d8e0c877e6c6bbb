//! SQL of the chat role.

use douyin_kit::{
    Error, Result,
    db::{Db, inserted_id, now_ms, placeholders},
    error::is_unique_violation,
};
use douyin_proto::common::Message;
use sqlx::Row;

const HISTORY_LIMIT: i64 = 5000;

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
    /// of the conversation.
    pub async fn insert(&self, from: i64, to: i64, content: &str) -> Result<Message> {
        let (lo, hi) = pair(from, to);
        let mut create_time = now_ms();
        let mut conn = self.db.pool().acquire().await?;
        for _ in 0..1000 {
            let inserted = sqlx::query(
                "INSERT INTO messages (lo_user, hi_user, from_user_id, to_user_id, content, create_time) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(lo)
            .bind(hi)
            .bind(from)
            .bind(to)
            .bind(content)
            .bind(create_time)
            .execute(&mut *conn)
            .await;
            match inserted {
                Ok(r) => {
                    let id = inserted_id(&mut conn, &r).await?;
                    return Ok(Message { id, to_user_id: to, from_user_id: from, content: content.to_owned(), create_time });
                }
                Err(e) if is_unique_violation(&e) => {
                    create_time = self.latest_time(lo, hi).await?.max(create_time) + 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Unavailable("could not allocate a message time".into()))
    }

    async fn latest_time(&self, lo: i64, hi: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT create_time FROM messages WHERE lo_user = ? AND hi_user = ? ORDER BY create_time DESC LIMIT 1",
        )
        .bind(lo)
        .bind(hi)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => 0,
        })
    }

    /// The conversation of `a` and `b` after `after_ms`, oldest first.
    pub async fn history(&self, a: i64, b: i64, after_ms: i64) -> Result<Vec<Message>> {
        let (lo, hi) = pair(a, b);
        let rows = sqlx::query(
            "SELECT id, from_user_id, to_user_id, content, create_time FROM messages \
             WHERE lo_user = ? AND hi_user = ? AND create_time > ? ORDER BY create_time ASC LIMIT ?",
        )
        .bind(lo)
        .bind(hi)
        .bind(after_ms)
        .bind(HISTORY_LIMIT)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(message).collect()
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
            for p in &higher {
                query = query.bind(*p);
            }
        }
        if !lower.is_empty() {
            query = query.bind(user_id);
            for p in &lower {
                query = query.bind(*p);
            }
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter().map(message).collect()
    }
}
