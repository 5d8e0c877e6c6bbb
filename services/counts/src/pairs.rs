//! Tables whose rows are pairs of ids (a like, a follow), each pair counted
//! in the first id's counts row (`user_stats`), and the cached per-user sets
//! of those pairs that a page's `is_favorite` / `is_follow` flags read.

use std::collections::HashSet;

use douyin_kit::{
    Result,
    cache::Flags,
    db::{Db, bind_ids, now_ms, placeholders},
};
use sqlx::Row;

/// A table whose rows are pairs of ids (a like, a follow), with a unique key
/// on the pair and a `created_at_ms` column; named by the repo that owns it.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub table: &'static str,
    pub first: &'static str,
    pub second: &'static str,
}

impl Pair {
    /// Makes the row `(a, b)` present (`INSERT IGNORE`, with
    /// `created_at_ms`) or absent (`DELETE`) inside `conn`'s transaction;
    /// returns whether it changed. The unique key makes repeated and
    /// concurrent calls change a row at most once.
    pub async fn set(self, db: &Db, conn: &mut sqlx::AnyConnection, a: i64, b: i64, present: bool) -> Result<bool> {
        let Pair { table: name, first, second } = self;
        let result = if present {
            let sql = format!("{} INTO {name} ({first}, {second}, created_at_ms) VALUES (?, ?, ?)", db.insert_ignore());
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(a).bind(b).bind(now_ms()).execute(conn).await?
        } else {
            let sql = format!("DELETE FROM {name} WHERE {first} = ? AND {second} = ?");
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(a).bind(b).execute(conn).await?
        };
        Ok(result.rows_affected() == 1)
    }

    /// The version of `a`'s counts row (`user_stats`) and every `second` id
    /// paired with `a`, in one statement (one snapshot); at most `limit` ids
    /// (more means the set is larger). `None` when `a` has no counts row.
    pub async fn set_of(self, db: &Db, a: i64, limit: usize) -> Result<Option<(i64, Vec<i64>)>> {
        let Pair { table: name, first, second } = self;
        let sql = format!(
            "SELECT s.version, p.{second} FROM user_stats s LEFT JOIN {name} p ON p.{first} = s.user_id \
             WHERE s.user_id = ? LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(a).bind(limit as i64).fetch_all(db.pool()).await?;
        let Some(first_row) = rows.first() else { return Ok(None) };
        let version: i64 = first_row.try_get(0)?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(id) = row.try_get::<Option<i64>, _>(1)? {
                ids.push(id);
            }
        }
        Ok(Some((version, ids)))
    }

    /// Which of `ids` are paired with `a` (one statement).
    pub async fn paired_among(self, db: &Db, a: i64, ids: &[i64]) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let Pair { table: name, first, second } = self;
        let sql =
            format!("SELECT {second} FROM {name} WHERE {first} = ? AND {second} IN ({})", placeholders(ids.len()));
        let query = bind_ids(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(a), ids);
        let rows = query.fetch_all(db.pool()).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Which of `ids` are paired with `user_id` (the first column): from the
    /// user's cached set in `flags`, or from one statement that reads the
    /// whole set (then cached), or, for a set too large to cache, one
    /// statement for `ids` alone.
    /// `version` is the version of the user's counts row when the caller
    /// read it from the counter, 0 when not.
    pub async fn among(self, db: &Db, flags: &Flags, user_id: i64, version: i64, ids: &[i64]) -> Result<HashSet<i64>> {
        use douyin_kit::cache::flags::{Lookup, MAX_CACHED};
        if ids.is_empty() || user_id <= 0 {
            return Ok(HashSet::new());
        }
        let fill = match flags.get(user_id, version).await {
            Lookup::Set(set) => return Ok(ids.iter().copied().filter(|id| set.contains(id)).collect()),
            Lookup::TooMany => return Ok(self.paired_among(db, user_id, ids).await?.into_iter().collect()),
            Lookup::Miss(fill) => fill,
        };
        match self.set_of(db, user_id, MAX_CACHED + 1).await? {
            Some((version, set)) if set.len() <= MAX_CACHED => {
                flags.fill(&fill, version, Some(&set)).await;
                let set: HashSet<i64> = set.into_iter().collect();
                Ok(ids.iter().copied().filter(|id| set.contains(id)).collect())
            }
            Some((version, _)) => {
                flags.fill(&fill, version, None).await;
                Ok(self.paired_among(db, user_id, ids).await?.into_iter().collect())
            }
            None => Ok(self.paired_among(db, user_id, ids).await?.into_iter().collect()),
        }
    }
}
