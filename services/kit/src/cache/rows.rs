//! Rows that never change once written (a video, a profile), cached by id
//! under the database's generation in two tiers: this process's memory, then
//! the shared cache. A page of rows this process has seen costs no round trip;
//! the others are one shared-cache read, and misses one database query, then
//! filled into both tiers.
//!
//! The process-local tier holds decoded rows, bounded per kind, and forgets
//! them all when the database's generation changes (a restore's `douyin
//! new-generation`), so it holds nothing the shared tier would not.
//!
//! Each shared entry's version is the row's creation time, so a row written
//! again under a reused id (a database restored from a backup) replaces the
//! entry of the row it replaces, and a late fill never puts the older one
//! back. Fills carry the cache epoch read before the database was read, so a
//! flush at any moment leaves nothing that was read before it. A cache that
//! fails is skipped: every id is then a miss, read from the database.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{Cache, Generation, versioned};
use crate::Result;

/// How long a shared entry lives without being written again.
const TTL: Duration = Duration::from_secs(3600);
/// Rows of one kind the process-local tier keeps (up to twice this once full).
const LOCAL_ROWS: usize = 65_536;
const SHARDS: usize = 16;

/// A row type the cache holds: its id and its payload in the shared tier.
pub trait CachedRow: Clone + Send + Sync + 'static {
    fn id(&self) -> i64;
    fn encode(&self) -> String;
    /// The row of `id` from its payload; `None` for a payload not of this id.
    fn decode(id: i64, payload: &str) -> Option<Self>;
}

#[derive(Clone)]
pub struct RowCache<T> {
    cache: Arc<dyn Cache>,
    generation: Generation,
    kind: &'static str,
    local: Arc<Local<T>>,
}

/// What one shared read found, and what its fills are conditional on.
struct Read {
    keys: Option<(Arc<str>, Option<String>)>,
    /// The payload of each id asked for, `None` for a miss.
    values: Vec<Option<String>>,
}

impl<T: CachedRow> RowCache<T> {
    /// Shared entries named `<generation>:<kind>:<id>`.
    pub fn new(cache: Arc<dyn Cache>, generation: Generation, kind: &'static str) -> Self {
        Self { cache, generation, kind, local: Arc::new(Local::new(LOCAL_ROWS)) }
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

    /// The rows of `ids` that exist, in no particular order: from this
    /// process, then the shared cache (one round trip), then `load` for the
    /// rest (rows with their creation time), which are cached.
    pub async fn rows<F, Fut>(&self, ids: &[i64], load: F) -> Result<Vec<T>>
    where
        F: FnOnce(Vec<i64>) -> Fut,
        Fut: Future<Output = Result<Vec<(T, i64)>>>,
    {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let generation = match self.generation.current().await {
            Ok(generation) => generation,
            Err(error) => {
                // Keys carry the generation: without it nothing is read from
                // or kept in either tier.
                tracing::warn!(%error, kind = self.kind, "database generation unknown; rows not cached");
                return Ok(load(ids.to_vec()).await?.into_iter().map(|(row, _)| row).collect());
            }
        };
        let mut rows = Vec::with_capacity(ids.len());
        let mut wanted = Vec::new();
        for id in ids {
            match self.local.get(&generation, *id) {
                Some(row) => rows.push(row),
                None => wanted.push(*id),
            }
        }
        // Rows from memory are hits of this kind; the shared read counts its own.
        crate::metrics::cache_lookups(self.kind, rows.len() as u64, 0);
        if wanted.is_empty() {
            return Ok(rows);
        }
        let read = self.get(&generation, &wanted).await;
        let mut missing = Vec::new();
        let mut found = Vec::new();
        for (id, value) in wanted.iter().zip(&read.values) {
            match value.as_deref().and_then(|v| T::decode(*id, v)) {
                Some(row) => found.push(row),
                None => missing.push(*id),
            }
        }
        self.remember(&generation, &found);
        rows.extend(found);
        if missing.is_empty() {
            return Ok(rows);
        }
        let loaded = load(missing).await?;
        if let Some((generation, Some(epoch))) = &read.keys {
            self.store(generation, epoch, &loaded).await;
        }
        let loaded: Vec<T> = loaded.into_iter().map(|(row, _)| row).collect();
        self.remember(&generation, &loaded);
        rows.extend(loaded);
        Ok(rows)
    }

    /// The payloads of `ids` in the shared tier (one round trip; a second
    /// one only right after the cache was lost, to start the epoch that fills
    /// will carry).
    async fn get(&self, generation: &Arc<str>, ids: &[i64]) -> Read {
        let keys: Vec<String> = ids.iter().map(|id| self.key(generation, *id)).collect();
        let (mut epoch, values) = match self.cache.get_many_with_epoch(&keys).await {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(%error, kind = self.kind, "cache unavailable; reading rows from the database");
                return Read { keys: None, values: vec![None; ids.len()] };
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
        Read { keys: Some((generation.clone(), epoch)), values }
    }

    /// Caches rows just written (after their commit), with their creation time.
    pub async fn put(&self, rows: &[(T, i64)]) {
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
        for (row, _) in rows {
            self.local.put(&generation, row.id(), row.clone());
        }
    }

    /// Keeps `rows` in this process's tier.
    fn remember(&self, generation: &Arc<str>, rows: &[T]) {
        for row in rows {
            self.local.put(generation, row.id(), row.clone());
        }
    }

    async fn store(&self, generation: &str, epoch: &str, rows: &[(T, i64)]) {
        if rows.is_empty() {
            return;
        }
        let entries: Vec<(String, String)> = rows
            .iter()
            .map(|(row, version)| (self.key(generation, row.id()), versioned(*version, &row.encode())))
            .collect();
        if let Err(error) = self.cache.set_versioned(epoch, &entries, TTL).await {
            tracing::warn!(%error, kind = self.kind, "could not fill the row cache");
        }
    }
}

/// Answers of another role that never change once given (a profile as the
/// user role answers it), kept in this process under the database's
/// generation: asked for once per id, then answered from memory. Only the
/// process-local tier of a [`RowCache`]: the owner keeps the shared one.
#[derive(Clone)]
pub struct Kept<T> {
    generation: Generation,
    local: Arc<Local<T>>,
}

impl<T: Clone> Kept<T> {
    pub fn new(generation: Generation) -> Self {
        Self { generation, local: Arc::new(Local::new(LOCAL_ROWS)) }
    }

    /// The entries of `ids` the owner knows, by id: those kept here, and the
    /// others from one call of `load`, which are kept.
    pub async fn get<F, Fut>(&self, ids: &[i64], load: F) -> Result<HashMap<i64, T>>
    where
        F: FnOnce(Vec<i64>) -> Fut,
        Fut: Future<Output = Result<HashMap<i64, T>>>,
    {
        let Ok(generation) = self.generation.current().await else {
            return load(ids.to_vec()).await;
        };
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.local.get(&generation, *id) {
                Some(entry) => {
                    found.insert(*id, entry);
                }
                None => missing.push(*id),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let loaded = load(missing).await?;
        for (id, entry) in &loaded {
            self.local.put(&generation, *id, entry.clone());
        }
        found.extend(loaded);
        Ok(found)
    }
}

/// A process-local map by id under the database's generation (the rows of
/// a [`RowCache`], the decoded sets of [`super::Flags`]): bounded per shard,
/// it keeps the entries used since it last filled up (the current half) and
/// those of the half before, so entries in use stay and a full map forgets
/// the ones not asked for since. A new generation empties it.
pub(crate) struct Local<T> {
    shards: Box<[Mutex<Shard<T>>]>,
    per_half: usize,
}

struct Shard<T> {
    generation: Arc<str>,
    current: HashMap<i64, T>,
    previous: HashMap<i64, T>,
}

impl<T: Clone> Local<T> {
    /// Keeps between `capacity` and twice as many entries once full.
    pub(crate) fn new(capacity: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Shard { generation: Arc::from(""), current: HashMap::new(), previous: HashMap::new() }))
            .collect();
        Self { shards, per_half: (capacity / SHARDS).max(1) }
    }

    fn shard(&self, generation: &Arc<str>, id: i64) -> std::sync::MutexGuard<'_, Shard<T>> {
        let mut shard = self.shards[id.rem_euclid(SHARDS as i64) as usize].lock().unwrap_or_else(|e| e.into_inner());
        if shard.generation != *generation {
            shard.generation = generation.clone();
            shard.current.clear();
            shard.previous.clear();
        }
        shard
    }

    pub(crate) fn get(&self, generation: &Arc<str>, id: i64) -> Option<T> {
        let mut shard = self.shard(generation, id);
        if let Some(row) = shard.current.get(&id) {
            return Some(row.clone());
        }
        let row = shard.previous.remove(&id)?;
        self.insert(&mut shard, id, row.clone());
        Some(row)
    }

    pub(crate) fn put(&self, generation: &Arc<str>, id: i64, value: T) {
        let mut shard = self.shard(generation, id);
        self.insert(&mut shard, id, value);
    }

    fn insert(&self, shard: &mut Shard<T>, id: i64, row: T) {
        if shard.current.len() >= self.per_half && !shard.current.contains_key(&id) {
            shard.previous = std::mem::take(&mut shard.current);
        }
        shard.current.insert(id, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Row(i64);

    impl CachedRow for Row {
        fn id(&self) -> i64 {
            self.0
        }
        fn encode(&self) -> String {
            String::new()
        }
        fn decode(id: i64, _: &str) -> Option<Self> {
            Some(Row(id))
        }
    }

    #[test]
    fn the_local_tier_keeps_rows_in_use_within_its_bound_and_forgets_another_generation() {
        let local: Local<Row> = Local::new(SHARDS * 4);
        let (one, two): (Arc<str>, Arc<str>) = (Arc::from("g1"), Arc::from("g2"));
        let ids: Vec<i64> = (0..SHARDS as i64 * 20).collect();
        for id in &ids {
            local.put(&one, *id, Row(*id));
            // Row 0 is asked for all along: it stays.
            assert_eq!(local.get(&one, 0), Some(Row(0)));
        }
        let kept = ids.iter().filter(|id| local.get(&one, **id).is_some()).count();
        assert!(kept <= SHARDS * 8, "{kept} rows kept, over the bound");
        assert!(local.get(&one, *ids.last().unwrap()).is_some(), "the newest row was forgotten");
        assert_eq!(local.get(&two, 0), None, "a row of the old generation was served");
    }

    #[tokio::test]
    async fn kept_answers_are_asked_for_once_and_unknown_ids_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::Config { data_dir: dir.path().into(), ..Default::default() };
        let db = crate::db::Db::connect(&config).await.unwrap();
        for statement in [
            "CREATE TABLE db_generation (id INTEGER PRIMARY KEY, generation TEXT NOT NULL)",
            "INSERT INTO db_generation (id, generation) VALUES (1, 'g1')",
        ] {
            sqlx::query(statement).execute(db.pool()).await.unwrap();
        }
        let kept: Kept<Row> = Kept::new(Generation::new(db));
        let asked = Mutex::new(Vec::new());
        // The owner knows ids up to 10.
        let owner = |ids: Vec<i64>| {
            asked.lock().unwrap().push(ids.clone());
            async move { Ok(ids.into_iter().filter(|id| *id <= 10).map(|id| (id, Row(id))).collect()) }
        };
        let first = kept.get(&[1, 2, 11], owner).await.unwrap();
        assert_eq!(first.len(), 2);
        let second = kept.get(&[1, 2, 4, 11], owner).await.unwrap();
        assert_eq!(second.get(&4), Some(&Row(4)));
        assert_eq!(second.len(), 3);
        assert_eq!(*asked.lock().unwrap(), vec![vec![1, 2, 11], vec![4, 11]]);
    }
}
