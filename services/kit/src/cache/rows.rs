//! Rows that never change once written (a video, a profile), cached by id
//! under the database's generation: a page of them is one cache round trip,
//! misses are read from the database and filled.
//!
//! Each entry's version is the row's creation time, so a row written again
//! under a reused id (a database restored from a backup) replaces the entry
//! of the row it replaces, and a late fill never puts the older one back.
//! Fills carry the cache epoch read before the database was read, so a flush
//! at any moment leaves nothing that was read before it. A cache that fails
//! is skipped: every id is then a miss, read from the database.

use std::{sync::Arc, time::Duration};

use super::{Cache, Generation, versioned};

/// How long an entry lives without being written again.
const TTL: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct RowCache {
    cache: Arc<dyn Cache>,
    generation: Generation,
    kind: &'static str,
}

/// What one read found, and what its fills are conditional on.
pub struct Read {
    keys: Option<(Arc<str>, Option<String>)>,
    /// The payload of each id asked for, `None` for a miss.
    pub values: Vec<Option<String>>,
}

impl RowCache {
    /// Entries named `<generation>:<kind>:<id>`.
    pub fn new(cache: Arc<dyn Cache>, generation: Generation, kind: &'static str) -> Self {
        Self { cache, generation, kind }
    }

    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    pub fn generation(&self) -> &Generation {
        &self.generation
    }

    fn key(&self, generation: &str, id: i64) -> String {
        format!("{generation}:{}:{id}", self.kind)
    }

    /// The payloads of `ids` (one round trip; a second one only right after
    /// the cache was lost, to start the epoch that fills will carry).
    pub async fn get(&self, ids: &[i64]) -> Read {
        let miss = |keys| Read { keys, values: vec![None; ids.len()] };
        let generation = match self.generation.current().await {
            Ok(generation) => generation,
            Err(error) => {
                tracing::warn!(%error, kind = self.kind, "database generation unknown; rows not cached");
                return miss(None);
            }
        };
        if ids.is_empty() {
            return miss(None);
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key(&generation, *id)).collect();
        let (mut epoch, values) = match self.cache.get_many_with_epoch(&keys).await {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(%error, kind = self.kind, "cache unavailable; reading rows from the database");
                return miss(None);
            }
        };
        let values: Vec<Option<String>> =
            values.into_iter().map(|v| v.and_then(|v| v.split_once(':').map(|(_, p)| p.to_owned()))).collect();
        let misses = values.iter().filter(|v| v.is_none()).count();
        crate::metrics::cache_lookups(self.kind, (ids.len() - misses) as u64, misses as u64);
        if epoch.is_none() && misses > 0 {
            // Before the caller reads the database: fills carry the epoch they saw.
            epoch = self.cache.epoch().await.ok();
        }
        Read { keys: Some((generation, epoch)), values }
    }

    /// Stores rows read from the database after `read` missed them, as
    /// `(id, version, payload)`.
    pub async fn fill(&self, read: &Read, rows: &[(i64, i64, String)]) {
        let Some((generation, Some(epoch))) = &read.keys else { return };
        self.store(generation, epoch, rows).await;
    }

    /// Stores rows just written (after their commit).
    pub async fn put(&self, rows: &[(i64, i64, String)]) {
        let generation = match self.generation.current().await {
            Ok(generation) => generation,
            Err(error) => {
                tracing::warn!(%error, kind = self.kind, "database generation unknown; written rows not cached");
                return;
            }
        };
        match self.cache.epoch().await {
            Ok(epoch) => self.store(&generation, &epoch, rows).await,
            Err(error) => tracing::warn!(%error, kind = self.kind, "could not cache written rows"),
        }
    }

    async fn store(&self, generation: &str, epoch: &str, rows: &[(i64, i64, String)]) {
        if rows.is_empty() {
            return;
        }
        let entries: Vec<(String, String)> = rows
            .iter()
            .map(|(id, version, payload)| (self.key(generation, *id), versioned(*version, payload)))
            .collect();
        if let Err(error) = self.cache.set_versioned(epoch, &entries, TTL).await {
            tracing::warn!(%error, kind = self.kind, "could not fill the row cache");
        }
    }
}
