//! The cache behind counts, rankings and rate limits: Redis in production, an
//! in-process map with the same semantics in the embedded mode. Nothing stored
//! here is the truth; every entry can be rebuilt from the database.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{Config, Error, Result};

/// A versioned value: `version:payload`. A write only replaces an entry whose
/// version is lower, so late writers can never put an older count back.
pub fn versioned(version: i64, payload: &str) -> String {
    format!("{version}:{payload}")
}

fn version_of(value: &str) -> i64 {
    value.split(':').next().and_then(|v| v.parse().ok()).unwrap_or(-1)
}

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// Values of many keys in one round trip (missing or expired = None).
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>>;
    /// Stores each `(key, versioned value)` unless the stored version is newer.
    async fn set_versioned(&self, entries: &[(String, String)], ttl: Duration) -> Result<()>;
    /// Plain set with expiry.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()>;
    /// Adds or updates members of a sorted set.
    async fn zadd(&self, key: &str, members: &[(i64, i64)]) -> Result<()>;
    /// The `limit` members with the highest scores, highest first (ties: lower id first).
    async fn ztop(&self, key: &str, limit: usize) -> Result<Vec<(i64, i64)>>;
    /// Increments a counter that expires `window` after its first increment;
    /// returns the new value and the time left in the window.
    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration)>;
    async fn ping(&self) -> Result<()>;
    /// Commands sent so far (cost accounting for benchmarks and metrics).
    fn commands(&self) -> u64;
}

/// Opens Redis when configured, the in-process cache otherwise.
pub async fn from_config(config: &Config) -> Result<Arc<dyn Cache>> {
    Ok(match &config.redis_url {
        Some(url) => Arc::new(RedisCache::connect(url, &config.redis_prefix).await?),
        None => Arc::new(MemoryCache::default()),
    })
}

// ---------------------------------------------------------------- Redis

const SET_VERSIONED: &str = r"
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  local new = ARGV[i + 1]
  local newv = tonumber(string.match(new, '^(%-?%d+):'))
  local cur = redis.call('GET', KEYS[i])
  local curv = -1
  if cur then curv = tonumber(string.match(cur, '^(%-?%d+):')) or -1 end
  if newv > curv then
    redis.call('SET', KEYS[i], new, 'EX', ttl)
  end
end
return 0
";

/// Redis over one multiplexed, auto-reconnecting connection.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
    set_versioned: Arc<redis::Script>,
    commands: Arc<AtomicU64>,
}

impl RedisCache {
    /// Connects lazily: a Redis that is down at start is reported by health
    /// checks, not by a failed start.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| Error::internal(format!("redis url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| Error::Unavailable(format!("redis: {e}")))?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            set_versioned: Arc::new(redis::Script::new(SET_VERSIONED)),
            commands: Arc::default(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    fn count(&self, n: u64) {
        self.commands.fetch_add(n, Ordering::Relaxed);
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.count(1);
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let mut conn = self.conn.clone();
        Ok(redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?)
    }

    async fn set_versioned(&self, entries: &[(String, String)], ttl: Duration) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.count(1);
        let mut invocation = self.set_versioned.prepare_invoke();
        invocation.arg(ttl.as_secs().max(1));
        for (key, value) in entries {
            invocation.key(self.key(key)).arg(value);
        }
        let mut conn = self.conn.clone();
        let _: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(())
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        self.count(1);
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn zadd(&self, key: &str, members: &[(i64, i64)]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        self.count(1);
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.key(key));
        for (member, score) in members {
            cmd.arg(*score).arg(*member);
        }
        let mut conn = self.conn.clone();
        let _: i64 = cmd.query_async(&mut conn).await?;
        Ok(())
    }

    async fn ztop(&self, key: &str, limit: usize) -> Result<Vec<(i64, i64)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.count(1);
        let mut conn = self.conn.clone();
        let raw: Vec<(i64, i64)> = redis::cmd("ZRANGE")
            .arg(self.key(key))
            .arg("+inf")
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        let mut top = raw;
        // Redis orders equal scores by member descending under REV; use id ascending.
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(top)
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration)> {
        self.count(1);
        let key = self.key(key);
        let mut conn = self.conn.clone();
        let (count, ttl_ms): (u64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(&key)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(window.as_millis() as u64)
            .arg("NX")
            .ignore()
            .cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        Ok((count, Duration::from_millis(ttl_ms.max(0) as u64)))
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------- in-process

#[derive(Default)]
struct SortedSet {
    scores: HashMap<i64, i64>,
    order: BTreeSet<(std::cmp::Reverse<i64>, i64)>,
}

#[derive(Default)]
struct MemoryState {
    values: HashMap<String, (String, Instant)>,
    sets: HashMap<String, SortedSet>,
}

/// The embedded cache: the same semantics as [`RedisCache`] in one process.
#[derive(Default, Clone)]
pub struct MemoryCache {
    state: Arc<Mutex<MemoryState>>,
    commands: Arc<AtomicU64>,
}

impl MemoryCache {
    /// Forgets everything, as `FLUSHALL` does to Redis.
    pub fn flush(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = MemoryState::default();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.commands.fetch_add(1, Ordering::Relaxed);
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        let state = self.state();
        Ok(keys
            .iter()
            .map(|k| state.values.get(k).filter(|(_, exp)| *exp > now).map(|(v, _)| v.clone()))
            .collect())
    }

    async fn set_versioned(&self, entries: &[(String, String)], ttl: Duration) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let mut state = self.state();
        for (key, value) in entries {
            let current = state
                .values
                .get(key)
                .filter(|(_, exp)| *exp > now)
                .map(|(v, _)| version_of(v))
                .unwrap_or(-1);
            if version_of(value) > current {
                state.values.insert(key.clone(), (value.clone(), now + ttl));
            }
        }
        Ok(())
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let mut state = self.state();
        state.values.insert(key.to_owned(), (value.to_owned(), Instant::now() + ttl));
        Ok(())
    }

    async fn zadd(&self, key: &str, members: &[(i64, i64)]) -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let mut state = self.state();
        let set = state.sets.entry(key.to_owned()).or_default();
        for &(member, score) in members {
            if let Some(old) = set.scores.insert(member, score) {
                set.order.remove(&(std::cmp::Reverse(old), member));
            }
            set.order.insert((std::cmp::Reverse(score), member));
        }
        Ok(())
    }

    async fn ztop(&self, key: &str, limit: usize) -> Result<Vec<(i64, i64)>> {
        let state = self.state();
        Ok(state
            .sets
            .get(key)
            .map(|set| set.order.iter().take(limit).map(|(s, m)| (*m, s.0)).collect())
            .unwrap_or_default())
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration)> {
        let now = Instant::now();
        let mut state = self.state();
        let entry = state.values.entry(key.to_owned()).or_insert_with(|| ("0".into(), now + window));
        if entry.1 <= now {
            *entry = ("0".into(), now + window);
        }
        let count = entry.0.parse::<u64>().unwrap_or(0) + 1;
        entry.0 = count.to_string();
        Ok((count, entry.1.saturating_duration_since(now)))
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
}

/// One behaviour suite for every implementation (the Redis run lives in the
/// integration tests, which need a server).
pub mod suite {
    use super::*;

    pub async fn versioned_writes_never_go_back(cache: &dyn Cache) {
        let ttl = Duration::from_secs(60);
        let key = format!("suite:v:{}", uuid::Uuid::new_v4());
        cache.set_versioned(&[(key.clone(), versioned(2, "b"))], ttl).await.unwrap();
        cache.set_versioned(&[(key.clone(), versioned(1, "a"))], ttl).await.unwrap();
        assert_eq!(cache.get_many(std::slice::from_ref(&key)).await.unwrap(), vec![Some("2:b".to_owned())]);
        cache.set_versioned(&[(key.clone(), versioned(3, "c"))], ttl).await.unwrap();
        let missing = format!("suite:missing:{}", uuid::Uuid::new_v4());
        assert_eq!(
            cache.get_many(&[key, missing]).await.unwrap(),
            vec![Some("3:c".to_owned()), None]
        );
    }

    pub async fn sorted_sets_rank_by_score(cache: &dyn Cache) {
        let key = format!("suite:z:{}", uuid::Uuid::new_v4());
        cache.zadd(&key, &[(1, 5), (2, 9), (3, 5)]).await.unwrap();
        cache.zadd(&key, &[(1, 10)]).await.unwrap();
        assert_eq!(cache.ztop(&key, 2).await.unwrap(), vec![(1, 10), (2, 9)]);
        assert_eq!(cache.ztop(&key, 10).await.unwrap().len(), 3);
        assert!(cache.ztop("suite:z:none", 10).await.unwrap().is_empty());
    }

    pub async fn hits_count_within_a_window(cache: &dyn Cache) {
        let key = format!("suite:h:{}", uuid::Uuid::new_v4());
        let window = Duration::from_secs(30);
        assert_eq!(cache.hit(&key, window).await.unwrap().0, 1);
        let (n, left) = cache.hit(&key, window).await.unwrap();
        assert_eq!(n, 2);
        assert!(left <= window && left > Duration::from_secs(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_cache_behaves_like_redis() {
        let cache = MemoryCache::default();
        suite::versioned_writes_never_go_back(&cache).await;
        suite::sorted_sets_rank_by_score(&cache).await;
        suite::hits_count_within_a_window(&cache).await;
    }
}
