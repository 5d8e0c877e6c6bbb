//! The cache behind counts, rankings and rate limits: Redis in production, an
//! in-process map with the same semantics in the embedded mode. Nothing stored
//! here is the truth; every entry can be rebuilt from the database.

pub mod flags;
pub mod generation;
mod memory;
mod redis_cache;
mod redis_cluster;
pub mod rows;
pub mod spread;
pub mod suite;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

pub use flags::Flags;
pub use generation::Generation;
pub use memory::MemoryCache;
pub use redis_cache::RedisCache;
pub use redis_cluster::RedisClusterCache;
pub use rows::{Kept, RowCache};

use crate::{Config, Result};

/// A versioned value: `version:payload`. A write only replaces an entry whose
/// version is lower, so late writers can never put an older count back.
pub fn versioned(version: i64, payload: &str) -> String {
    format!("{version}:{payload}")
}

/// The counter's cache key of a user's counts (`version:counts`), under a
/// database generation: what per-user entries are checked against. Every
/// per-user key names its user's group `{u<id>}` ([`user_key`]), so in a
/// Redis Cluster they share a hash slot and one read of them goes to one node.
pub fn user_counts_key(generation: &str, user_id: i64) -> String {
    user_key(generation, "uc", user_id)
}

/// The key of a per-user entry of `kind`: `<generation>:<kind>:{u<id>}`.
pub fn user_key(generation: &str, kind: &str, user_id: i64) -> String {
    format!("{generation}:{kind}:{{u{user_id}}}")
}

/// The version of a [`versioned`] value (-1 when it has none).
pub fn version_of(value: &str) -> i64 {
    value.split(':').next().and_then(|v| v.parse().ok()).unwrap_or(-1)
}

/// The key holding the cache's epoch: a random token created when missing, so
/// it changes whenever the cache is lost (`FLUSHALL`, eviction, a restart of
/// the in-process cache).
pub const EPOCH_KEY: &str = "epoch";

/// A member of a ranking with its score and the version of the row the score
/// was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranked {
    pub id: i64,
    pub score: i64,
    pub version: i64,
}

/// What [`Cache::zbelow`] read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slice {
    pub members: Vec<(i64, i64)>,
    /// The probed member's score and version, when it is in the set.
    pub probe: Option<(i64, i64)>,
}

/// A token bucket: up to `burst` tokens, refilled at `per_sec` tokens a
/// second; a bucket never seen (or idle until full) is full.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub burst: u32,
    pub per_sec: f64,
}

impl Bucket {
    /// How long an empty bucket takes to fill (how long its state matters).
    pub fn fill_time(&self, tokens: f64) -> Duration {
        let missing = (f64::from(self.burst) - tokens).max(0.0);
        Duration::from_secs_f64((missing / self.per_sec.max(f64::MIN_POSITIVE)).min(1e9))
    }

    /// The outcome of taking `cost` from `tokens` (already refilled).
    pub(crate) fn take(&self, tokens: f64, cost: i32) -> (Taken, f64) {
        let cost = f64::from(cost);
        if tokens >= cost {
            let left = (tokens - cost).min(f64::from(self.burst));
            (Taken { allowed: true, tokens: left, wait: Duration::ZERO }, left)
        } else {
            let wait = Duration::from_secs_f64(((cost - tokens) / self.per_sec.max(f64::MIN_POSITIVE)).min(1e9));
            (Taken { allowed: false, tokens, wait }, tokens)
        }
    }
}

/// What [`Cache::take`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Taken {
    /// Whether the tokens were taken.
    pub allowed: bool,
    /// Tokens left in the bucket afterwards.
    pub tokens: f64,
    /// When refused: how long until the tokens asked for are there.
    pub wait: Duration,
}

/// Values read from the database are written back only while the cache is in
/// the epoch read *before* the database was read, and only over older
/// versions. Together the two rules mean no write that lost a race with a
/// newer write or with a flush can leave an old number behind.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// Values of many keys in one round trip (missing or expired = None).
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>>;
    /// The current epoch (None when the cache was lost since) and the values
    /// of `keys`, in one round trip.
    async fn get_many_with_epoch(&self, keys: &[String]) -> Result<(Option<String>, Vec<Option<String>>)> {
        let all: Vec<String> = std::iter::once(EPOCH_KEY.to_owned()).chain(keys.iter().cloned()).collect();
        let mut values = self.get_many(&all).await?.into_iter();
        let epoch = values.next().flatten();
        Ok((epoch, values.collect()))
    }
    /// The current epoch, starting a new one when there is none.
    async fn epoch(&self) -> Result<String>;
    /// Stores each `(key, versioned value)` unless the stored version is
    /// newer, all only while the cache is still in `epoch`; returns whether it
    /// was (false = nothing written).
    async fn set_versioned(&self, epoch: &str, entries: &[(String, String)], ttl: Duration) -> Result<bool>;
    /// Plain set with expiry.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()>;
    /// Sets members' scores in sorted sets, each only over an older version,
    /// all only while the cache is still in `epoch`; returns whether it was.
    async fn zadd_versioned(&self, epoch: &str, sets: &[(&str, &[Ranked])]) -> Result<bool>;
    /// The `limit` members with the highest scores as `(id, score)`, highest
    /// first (ties: lower id first).
    async fn ztop(&self, key: &str, limit: usize) -> Result<Vec<(i64, i64)>>;
    /// In one round trip: up to `limit` members of the sorted set `key` scored
    /// below `below` as `(id, score)`, highest first (ties: lower id first),
    /// and `probe`'s `(score, version)` when it is a member.
    async fn zbelow(&self, key: &str, below: i64, limit: usize, probe: i64) -> Result<Slice>;
    /// Increments a counter that expires `window` after its first increment;
    /// returns the new value and the time left in the window.
    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration)>;
    /// Takes `cost` tokens from the token bucket at `key` when it holds that
    /// many (refilled for the time since it was last used), atomically across
    /// every process sharing the cache. A cost of 0 only looks; a negative
    /// cost gives tokens back (never beyond `burst`).
    async fn take(&self, key: &str, bucket: Bucket, cost: i32) -> Result<Taken>;
    /// Forgets every entry of this deployment (its key prefix) in one atomic
    /// step, as `FLUSHALL` would.
    async fn clear(&self) -> Result<()>;
    async fn ping(&self) -> Result<()>;
    /// Commands sent so far (cost accounting for benchmarks and metrics).
    fn commands(&self) -> u64;
}

pub(crate) fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Opens a Redis Cluster or Redis when configured, the in-process cache
/// otherwise.
pub async fn from_config(config: &Config) -> Result<Arc<dyn Cache>> {
    if !config.redis_cluster_nodes.is_empty() {
        return Ok(Arc::new(RedisClusterCache::connect(&config.redis_cluster_nodes, &config.redis_prefix)?));
    }
    Ok(match &config.redis_url {
        Some(url) => Arc::new(RedisCache::connect(url, &config.redis_prefix).await?),
        None => Arc::new(MemoryCache::default()),
    })
}
