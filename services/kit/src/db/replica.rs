//! Reads that tolerate replica lag. With `database_read_url` set, such reads
//! go to that server (a MySQL/MariaDB replica of the primary); every other
//! read, every write and every transaction stays on the primary.
//!
//! A replica that fails a read (down, not yet holding the schema, refusing
//! the statement) is left alone for [`REST`]: that read and the ones after
//! it are answered by the primary, so a replica outage costs no request and
//! never touches readiness.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use sqlx::{AnyPool, Row, any::AnyRow};

use super::{Db, fetch_in, now_ms};
use crate::Result;

/// How long a replica that failed a read is passed over.
const REST: Duration = Duration::from_secs(5);

/// Whether a read must see every committed write or may be answered by a
/// replica that lags behind the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// The caller may have just changed the answer: the primary.
    Latest,
    /// A lagging answer is fine: the replica when there is one.
    Lagging,
}

impl Freshness {
    /// A list of `listed`'s, read by `viewer` (0 = signed out): the caller's
    /// own list must show the caller's last write, anyone else's may lag.
    pub fn of_list(listed: i64, viewer: i64) -> Self {
        if listed > 0 && listed == viewer { Self::Latest } else { Self::Lagging }
    }
}

/// The replica's pool and when it may be asked again after a failure.
#[derive(Clone, Debug)]
pub(super) struct Replica {
    pub(super) pool: AnyPool,
    resting_until_ms: Arc<AtomicI64>,
}

impl Replica {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool, resting_until_ms: Arc::default() }
    }

    fn available(&self) -> bool {
        now_ms() >= self.resting_until_ms.load(Ordering::Relaxed)
    }

    fn rest(&self, error: &crate::Error) {
        let until = now_ms() + REST.as_millis() as i64;
        if self.resting_until_ms.swap(until, Ordering::Relaxed) < now_ms() {
            tracing::warn!(%error, "the read replica failed a read; reads go to the primary for a while");
        }
        crate::metrics::replica_fallback();
    }
}

impl Db {
    /// Whether a read replica is configured.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// Runs the read `read` on the pool `freshness` calls for: the primary
    /// for [`Freshness::Latest`]; for [`Freshness::Lagging`] the replica, and
    /// the primary instead when there is none or it fails the read.
    /// `read` gets the pool itself (a handle) so its future borrows nothing.
    pub async fn read<T, F, Fut>(&self, freshness: Freshness, read: F) -> Result<T>
    where
        F: Fn(AnyPool) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if freshness == Freshness::Lagging
            && let Some(replica) = self.replica.as_ref().filter(|r| r.available())
        {
            match read(replica.pool.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(error) => replica.rest(&error),
            }
        }
        read(self.pool.clone()).await
    }

    /// Rows of `select` (ending in `… IN`, the row's id its first column) for
    /// `ids`, of rows that never change once written: from the replica, and
    /// those the replica does not hold yet (written after where it is) from
    /// the primary, so a lagging replica never makes a row look absent.
    pub async fn fetch_rows_in(&self, select: &str, ids: &[i64]) -> Result<Vec<AnyRow>> {
        let Some(replica) = self.replica.as_ref().filter(|r| r.available()) else {
            return fetch_in(&self.pool, select, ids).await;
        };
        let mut rows = match fetch_in(&replica.pool, select, ids).await {
            Ok(rows) => rows,
            Err(error) => {
                replica.rest(&error);
                return fetch_in(&self.pool, select, ids).await;
            }
        };
        if rows.len() >= HashSet::<&i64>::from_iter(ids).len() {
            return Ok(rows);
        }
        let found: HashSet<i64> = rows.iter().filter_map(|r| r.try_get::<i64, _>(0).ok()).collect();
        let missing: Vec<i64> = ids.iter().copied().filter(|id| !found.contains(id)).collect();
        rows.extend(fetch_in(&self.pool, select, &missing).await?);
        Ok(rows)
    }
}
