//! The cache in Redis: one multiplexed, auto-reconnecting connection; the
//! conditional writes are Lua scripts, so each is one atomic round trip.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Bucket, Cache, EPOCH_KEY, Ranked, Slice, Taken, new_epoch};
use crate::{Error, Result, breaker::Breaker};

/// The longest any cache call waits for Redis: a hung Redis costs a request
/// this much at most, and nothing once the breaker has opened.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// Failed or timed-out calls in a row that open the breaker.
pub(super) const BREAKER_THRESHOLD: u32 = 3;
/// How long calls skip Redis before one trial call asks it again.
pub(super) const BREAKER_COOL_DOWN: Duration = Duration::from_secs(1);

const EPOCH: &str = r"
local e = redis.call('GET', KEYS[1])
if not e then
  redis.call('SET', KEYS[1], ARGV[1])
  e = ARGV[1]
end
return e
";

/// KEYS: the epoch key, then the value keys. ARGV: the epoch, the ttl, then
/// one versioned value per key.
const SET_VERSIONED: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  local new = ARGV[i + 1]
  local newv = tonumber(string.match(new, '^(%-?%d+):'))
  local cur = redis.call('GET', KEYS[i])
  local curv = -1
  if cur then curv = tonumber(string.match(cur, '^(%-?%d+):')) or -1 end
  if newv and newv > curv then
    redis.call('SET', KEYS[i], new, 'EX', ttl)
  end
end
return 1
";

/// KEYS: the epoch key, then per set its key and the key of its member
/// versions. ARGV: the epoch, then per set a member count and that many
/// (member, score, version) triples.
const ZADD_VERSIONED: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local a = 2
for k = 2, #KEYS, 2 do
  local n = tonumber(ARGV[a])
  a = a + 1
  for i = 1, n do
    local m, s, v = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
    a = a + 3
    local cur = tonumber(redis.call('HGET', KEYS[k + 1], m) or '-1')
    if v > cur then
      redis.call('ZADD', KEYS[k], s, m)
      redis.call('HSET', KEYS[k + 1], m, v)
    end
  end
end
return 1
";

/// Deletes every key matching ARGV[1] in one atomic step, as `FLUSHALL` does
/// for the whole server (it blocks Redis while it runs: for tests and admin).
const CLEAR: &str = r"
local cursor = '0'
local n = 0
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    redis.call('DEL', key)
    n = n + 1
  end
until cursor == '0'
return n
";

/// A token bucket in a hash (`t` tokens, `at` ms of the last refill, by the
/// Redis clock so every replica agrees). KEYS: the bucket. ARGV: burst,
/// tokens per ms, cost. Returns allowed (0/1), tokens left (text) and the wait
/// in ms when refused. A look (cost 0) writes nothing; the key expires when
/// the bucket is full again.
pub(super) const TAKE: &str = r"
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = math.min(burst, tokens - cost)
  allowed = 1
else
  wait = math.ceil((cost - tokens) / rate)
end
if cost ~= 0 then
  redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', at)
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
end
return {allowed, tostring(tokens), wait}
";

/// Sorted-set members are `i64::MAX - id`, zero-padded: Redis orders equal
/// scores by member, descending under `REV`, which is then id ascending.
pub(super) fn member(id: i64) -> String {
    format!("{:019}", i64::MAX - id.max(0))
}

pub(super) fn member_id(member: i64) -> i64 {
    i64::MAX - member
}

/// `*`, `?`, `[`, `]` and `\` escaped for a `SCAN MATCH` pattern.
pub(super) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Redis over one multiplexed, auto-reconnecting connection.
#[derive(Clone)]
pub struct RedisCache {
    conn: crate::telemetry::TracedConnection<ConnectionManager>,
    prefix: String,
    epoch_script: Arc<redis::Script>,
    set_versioned: Arc<redis::Script>,
    zadd_versioned: Arc<redis::Script>,
    clear_script: Arc<redis::Script>,
    take_script: Arc<redis::Script>,
    commands: Arc<AtomicU64>,
    breaker: Arc<Breaker>,
}

impl RedisCache {
    /// Connects lazily: a Redis that is down at start is reported by health
    /// checks, not by a failed start.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| Error::internal(format!("redis url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| Error::Unavailable(format!("redis: {e}")))?;
        Ok(Self {
            conn: crate::telemetry::TracedConnection::new(conn),
            prefix: prefix.to_owned(),
            epoch_script: Arc::new(redis::Script::new(EPOCH)),
            set_versioned: Arc::new(redis::Script::new(SET_VERSIONED)),
            zadd_versioned: Arc::new(redis::Script::new(ZADD_VERSIONED)),
            clear_script: Arc::new(redis::Script::new(CLEAR)),
            take_script: Arc::new(redis::Script::new(TAKE)),
            commands: Arc::default(),
            breaker: Arc::new(Breaker::new("redis", BREAKER_THRESHOLD, BREAKER_COOL_DOWN)),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    fn count(&self, n: u64) {
        self.commands.fetch_add(n, Ordering::Relaxed);
    }

    /// One call, bounded by [`CALL_TIMEOUT`] and skipped at once while the
    /// breaker is open (Redis failed or hung on the last calls): callers take
    /// their fallback (the database, a local limit) instead of waiting.
    async fn guard<T>(&self, call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T> {
        guarded(&self.breaker, call).await
    }
}

/// One call, bounded by [`CALL_TIMEOUT`] and skipped at once while the
/// breaker is open (Redis failed or hung on the last calls): callers take
/// their fallback (the database, a local limit) instead of waiting.
pub(super) async fn guarded<T>(
    breaker: &Breaker,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    if !breaker.allow() {
        return Err(Error::Unavailable("redis: skipped while it fails".into()));
    }
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => {
            breaker.success();
            Ok(value)
        }
        Ok(Err(error)) => {
            breaker.failure();
            Err(error.into())
        }
        Err(_) => {
            breaker.failure();
            Err(Error::Unavailable(format!("redis: no answer within {} ms", CALL_TIMEOUT.as_millis())))
        }
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
        self.guard(async move { redis::cmd("MGET").arg(&keys).query_async(&mut conn).await }).await
    }

    async fn epoch(&self) -> Result<String> {
        self.count(1);
        let mut conn = self.conn.clone();
        let mut invocation = self.epoch_script.prepare_invoke();
        invocation.key(self.key(EPOCH_KEY)).arg(new_epoch());
        self.guard(async move { invocation.invoke_async(&mut conn).await }).await
    }

    async fn set_versioned(&self, epoch: &str, entries: &[(String, String)], ttl: Duration) -> Result<bool> {
        if entries.is_empty() {
            return Ok(true);
        }
        self.count(1);
        let mut invocation = self.set_versioned.prepare_invoke();
        invocation.key(self.key(EPOCH_KEY)).arg(epoch).arg(ttl.as_secs().max(1));
        for (key, value) in entries {
            invocation.key(self.key(key)).arg(value);
        }
        let mut conn = self.conn.clone();
        let applied: i64 = self.guard(async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(applied == 1)
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        self.count(1);
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("EX").arg(ttl.as_secs().max(1));
        self.guard(async move { cmd.query_async::<()>(&mut conn).await }).await
    }

    async fn zadd_versioned(&self, epoch: &str, sets: &[(&str, &[Ranked])]) -> Result<bool> {
        if sets.iter().all(|(_, members)| members.is_empty()) {
            return Ok(true);
        }
        self.count(1);
        let mut invocation = self.zadd_versioned.prepare_invoke();
        invocation.key(self.key(EPOCH_KEY)).arg(epoch);
        for (key, members) in sets {
            invocation.key(self.key(key)).key(self.key(&format!("{key}:versions"))).arg(members.len());
            for m in *members {
                invocation.arg(member(m.id)).arg(m.score).arg(m.version);
            }
        }
        let mut conn = self.conn.clone();
        let applied: i64 = self.guard(async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(applied == 1)
    }

    async fn ztop(&self, key: &str, limit: usize) -> Result<Vec<(i64, i64)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.count(1);
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.key(key)).arg(0).arg(limit - 1).arg("REV").arg("WITHSCORES");
        let raw: Vec<(i64, i64)> = self.guard(async move { cmd.query_async(&mut conn).await }).await?;
        Ok(raw.into_iter().map(|(m, score)| (member_id(m), score)).collect())
    }

    async fn zbelow(&self, key: &str, below: i64, limit: usize, probe: i64) -> Result<Slice> {
        if limit == 0 {
            return Ok(Slice::default());
        }
        self.count(1);
        let (set, versions) = (self.key(key), self.key(&format!("{key}:versions")));
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(&set)
            .arg(format!("({below}"))
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES")
            .cmd("ZSCORE")
            .arg(&set)
            .arg(member(probe))
            .cmd("HGET")
            .arg(&versions)
            .arg(member(probe));
        let mut conn = self.conn.clone();
        let (raw, score, version): (Vec<(i64, i64)>, Option<i64>, Option<i64>) =
            self.guard(async move { pipe.query_async(&mut conn).await }).await?;
        Ok(Slice {
            members: raw.into_iter().map(|(m, score)| (member_id(m), score)).collect(),
            probe: score.map(|score| (score, version.unwrap_or(0))),
        })
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration)> {
        self.count(1);
        let key = self.key(key);
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("INCR")
            .arg(&key)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(window.as_millis() as u64)
            .arg("NX")
            .ignore()
            .cmd("PTTL")
            .arg(&key);
        let (count, ttl_ms): (u64, i64) = self.guard(async move { pipe.query_async(&mut conn).await }).await?;
        Ok((count, Duration::from_millis(ttl_ms.max(0) as u64)))
    }

    async fn take(&self, key: &str, bucket: Bucket, cost: i32) -> Result<Taken> {
        self.count(1);
        let mut conn = self.conn.clone();
        let per_ms = bucket.per_sec.max(f64::MIN_POSITIVE) / 1000.0;
        let mut invocation = self.take_script.prepare_invoke();
        invocation.key(self.key(key)).arg(bucket.burst).arg(format!("{per_ms:e}")).arg(cost);
        let (allowed, tokens, wait_ms): (i64, String, i64) =
            self.guard(async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(Taken {
            allowed: allowed == 1,
            tokens: tokens.parse().unwrap_or(0.0),
            wait: Duration::from_millis(wait_ms.max(0) as u64),
        })
    }

    async fn clear(&self) -> Result<()> {
        self.count(1);
        let mut conn = self.conn.clone();
        let pattern = format!("{}:*", glob_escape(&self.prefix));
        let _: i64 = self.clear_script.arg(pattern).invoke_async(&mut conn).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = self.guard(async move { redis::cmd("PING").query_async(&mut conn).await }).await?;
        Ok(())
    }

    fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_members_sort_like_ids() {
        assert_eq!(member_id(member(42).parse().unwrap()), 42);
        assert!(member(9) > member(10), "descending member order is ascending id order");
        assert_eq!(glob_escape("a*b[1]"), r"a\*b\[1\]");
    }
}
