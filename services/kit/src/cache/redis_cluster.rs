//! The cache in a Redis Cluster (`DOUYIN_REDIS_CLUSTER_NODES`): the semantics
//! of [`super::RedisCache`], with every script and transaction on keys of one
//! hash slot.
//!
//! Keys are spread over [`BUCKETS`] hash tags: `<key>` is stored at
//! `<prefix>:{b<n>}:<key>`, `n` hashed from the key's own `{…}` group when it
//! has one (a user's counts and flag sets share `{u<id>}`, so one read of both
//! goes to one node), else from the whole key.
//!
//! A cluster loses data one master at a time (a master restarted empty takes
//! its slots' keys with it), so loss is noticed per bucket. Epochs are
//! increasing numbers (microseconds of the Redis clock); the current one is at
//! `<prefix>:{epoch}`, and each bucket holds a marker, the epoch its contents
//! are valid since. A conditional write carrying epoch `e` lands in a bucket
//! only while its marker is there and not newer than `e`. A missing marker
//! means the bucket was lost: the write is dropped and the epoch moves on to a
//! new, larger value, which becomes the marker of every bucket without one. So
//! a value read before a loss never lands in the bucket lost, while the other
//! buckets keep their entries. See [`super::spread`] for rankings.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use futures::future::join_all;
use redis::{
    cluster::ClusterConfig,
    cluster_async::ClusterConnection,
    cluster_routing::{AggregateOp, MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo},
};

use super::{
    Bucket, Cache, Ranked, Slice, Taken,
    redis_cache::{BREAKER_COOL_DOWN, BREAKER_THRESHOLD, CALL_TIMEOUT, TAKE, glob_escape, guarded, member, member_id},
    spread,
};
use crate::{Error, Result, breaker::Breaker, telemetry::TracedConnection};

mod epochs;
mod scripts;

pub use scripts::bucket_of;
use scripts::{CLEAR, EPOCH, RENEW, SET_VERSIONED, ZADD_VERSIONED, merged};

/// How many hash tags keys are spread over (a few per slot range of a master).
pub const BUCKETS: u64 = 1024;
/// How long this process uses the epoch it last read before reading it again.
const EPOCH_REUSE: Duration = Duration::from_secs(1);
/// The longest marking every bucket may take (1024 `SET NX`, after a loss).
const MARK_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest [`Cache::clear`] may take: a scan of every master's keys.
const CLEAR_TIMEOUT: Duration = Duration::from_secs(10);

/// Redis Cluster over one multiplexed connection per master.
#[derive(Clone)]
pub struct RedisClusterCache {
    conn: TracedConnection<ClusterConnection>,
    client: redis::cluster::ClusterClient,
    /// Connections of their own for admin work ([`Cache::clear`]), opened at
    /// its first use, with a response timeout of [`CLEAR_TIMEOUT`]: a scan of
    /// every master's keys must not be cut off at the hot path's
    /// [`CALL_TIMEOUT`], nor hold the hot path's calls queued behind it.
    admin: Arc<tokio::sync::OnceCell<ClusterConnection>>,
    prefix: String,
    scripts: Arc<Scripts>,
    /// The epoch last read and when.
    epoch: Arc<Mutex<Option<(String, Instant)>>>,
    renewing: Arc<tokio::sync::Mutex<()>>,
    commands: Arc<AtomicU64>,
    breaker: Arc<Breaker>,
}

struct Scripts {
    epoch: redis::Script,
    renew: redis::Script,
    set_versioned: redis::Script,
    zadd_versioned: redis::Script,
    take: redis::Script,
}

impl RedisClusterCache {
    /// Connects in the background: a cluster that is down at start is
    /// reported by health checks, not by a failed start.
    pub fn connect(nodes: &[String], prefix: &str) -> Result<Self> {
        let client = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(CALL_TIMEOUT)
            .response_timeout(CALL_TIMEOUT)
            .retries(2)
            .max_retry_wait(200)
            .build()
            .map_err(|e| Error::internal(format!("redis cluster nodes: {e}")))?;
        let config = ClusterConfig::new().set_connection_timeout(CALL_TIMEOUT).set_response_timeout(CALL_TIMEOUT);
        let raw = client.get_pending_async_connection_with_config(config);
        Ok(Self {
            conn: TracedConnection::new(raw),
            client,
            admin: Arc::default(),
            prefix: prefix.to_owned(),
            scripts: Arc::new(Scripts {
                epoch: redis::Script::new(EPOCH),
                renew: redis::Script::new(RENEW),
                set_versioned: redis::Script::new(SET_VERSIONED),
                zadd_versioned: redis::Script::new(ZADD_VERSIONED),
                take: redis::Script::new(TAKE),
            }),
            epoch: Arc::default(),
            renewing: Arc::default(),
            commands: Arc::default(),
            breaker: Arc::new(Breaker::new("redis", BREAKER_THRESHOLD, BREAKER_COOL_DOWN)),
        })
    }

    /// Where `key` is stored, and the marker of its bucket (for tests that
    /// lose a bucket on purpose).
    pub fn stored(&self, key: &str) -> (String, String) {
        (self.key(key), self.marker(bucket_of(key)))
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{{b{}}}:{key}", self.prefix, bucket_of(key))
    }

    fn marker(&self, bucket: u64) -> String {
        format!("{}:{{b{bucket}}}:epoch", self.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}:{{epoch}}", self.prefix)
    }

    fn count(&self, n: usize) {
        self.commands.fetch_add(n as u64, Ordering::Relaxed);
    }

    async fn guard<T>(&self, call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T> {
        guarded(&self.breaker, call).await
    }

    fn known_epoch(&self) -> Option<String> {
        let known = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        known.as_ref().filter(|(_, at)| at.elapsed() < EPOCH_REUSE).map(|(epoch, _)| epoch.clone())
    }

    fn remember_epoch(&self, epoch: Option<&str>) {
        *self.epoch.lock().unwrap_or_else(|e| e.into_inner()) = epoch.map(|e| (e.to_owned(), Instant::now()));
    }

    /// `(id, score)` of one sorted set's members as read by `cmd`.
    async fn zrange(&self, cmd: redis::Cmd) -> redis::RedisResult<Vec<(i64, i64)>> {
        let mut conn = self.conn.clone();
        let raw: Vec<(i64, i64)> = cmd.query_async(&mut conn).await?;
        Ok(raw.into_iter().map(|(m, score)| (member_id(m), score)).collect())
    }
}

#[async_trait]
impl Cache for RedisClusterCache {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.count(1);
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let mut conn = self.conn.clone();
        self.guard(async move { redis::cmd("MGET").arg(&keys).query_async(&mut conn).await }).await
    }

    /// The values with the markers of their buckets (one `MGET` per node the
    /// keys are on). The epoch is None when a bucket read was lost.
    async fn get_many_with_epoch(&self, keys: &[String]) -> Result<(Option<String>, Vec<Option<String>>)> {
        let buckets: Vec<u64> =
            keys.iter().map(|k| bucket_of(k)).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let known = self.known_epoch();
        let mut all: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        all.extend(buckets.iter().map(|b| self.marker(*b)));
        if known.is_none() {
            all.push(self.epoch_key());
        }
        if all.is_empty() {
            return Ok((known, Vec::new()));
        }
        self.count(1);
        let mut conn = self.conn.clone();
        let mut values: Vec<Option<String>> =
            self.guard(async move { redis::cmd("MGET").arg(&all).query_async(&mut conn).await }).await?;
        let current = match known {
            Some(epoch) => Some(epoch),
            None => {
                let read = values.pop().flatten();
                self.remember_epoch(read.as_deref());
                read
            }
        };
        let markers = values.split_off(keys.len());
        let newest =
            markers.iter().map(|m| m.as_deref().and_then(|m| m.parse::<u64>().ok())).collect::<Option<Vec<_>>>();
        let epoch = match (current.as_deref().and_then(|e| e.parse::<u64>().ok()), newest) {
            (Some(current), Some(markers)) => Some(markers.into_iter().fold(current, u64::max).to_string()),
            _ => None,
        };
        Ok((epoch, values))
    }

    async fn epoch(&self) -> Result<String> {
        if let Some(epoch) = self.known_epoch() {
            return Ok(epoch);
        }
        self.count(1);
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.epoch.prepare_invoke();
        invocation.key(self.epoch_key());
        let (epoch, made): (String, i64) = self.guard(async move { invocation.invoke_async(&mut conn).await }).await?;
        if made == 1 {
            self.mark_buckets(&epoch).await?;
        }
        self.remember_epoch(Some(&epoch));
        Ok(epoch)
    }

    async fn set_versioned(&self, epoch: &str, entries: &[(String, String)], ttl: Duration) -> Result<bool> {
        if entries.is_empty() {
            return Ok(true);
        }
        let mut by_bucket: BTreeMap<u64, Vec<&(String, String)>> = BTreeMap::new();
        for entry in entries {
            by_bucket.entry(bucket_of(&entry.0)).or_default().push(entry);
        }
        let invocations = by_bucket
            .into_iter()
            .map(|(bucket, entries)| {
                let mut invocation = self.scripts.set_versioned.prepare_invoke();
                invocation.key(self.marker(bucket)).arg(epoch).arg(ttl.as_secs().max(1));
                for (key, value) in entries {
                    invocation.key(self.key(key)).arg(value);
                }
                invocation
            })
            .collect();
        self.conditional(invocations).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        self.count(1);
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("EX").arg(ttl.as_secs().max(1));
        self.guard(async move { cmd.query_async::<()>(&mut conn).await }).await
    }

    async fn zadd_versioned(&self, epoch: &str, sets: &[(&str, &[Ranked])]) -> Result<bool> {
        let mut by_part: BTreeMap<String, Vec<Ranked>> = BTreeMap::new();
        for (key, members) in sets {
            for m in *members {
                by_part.entry(spread::part(key, m.id)).or_default().push(*m);
            }
        }
        if by_part.is_empty() {
            return Ok(true);
        }
        let invocations = by_part
            .iter()
            .map(|(part, members)| {
                let mut invocation = self.scripts.zadd_versioned.prepare_invoke();
                let set = self.key(part);
                invocation.key(self.marker(bucket_of(part))).key(&set).key(format!("{set}:versions")).arg(epoch);
                for m in members {
                    invocation.arg(member(m.id)).arg(m.score).arg(m.version);
                }
                invocation
            })
            .collect();
        self.conditional(invocations).await
    }

    async fn ztop(&self, key: &str, limit: usize) -> Result<Vec<(i64, i64)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let parts = spread::parts(key);
        self.count(parts.len());
        let calls = parts.iter().map(|part| {
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(self.key(part)).arg(0).arg(limit - 1).arg("REV").arg("WITHSCORES");
            self.zrange(cmd)
        });
        let read =
            self.guard(async { join_all(calls).await.into_iter().collect::<redis::RedisResult<Vec<_>>>() }).await?;
        Ok(merged(read, limit))
    }

    /// One round trip per part, in parallel: the probe is read in the same
    /// pipeline as the range of its own part (the set and its versions share
    /// the part's bucket), so a set that is not spread, as the feed window,
    /// costs one round trip, as with one Redis.
    async fn zbelow(&self, key: &str, below: i64, limit: usize, probe: i64) -> Result<Slice> {
        if limit == 0 {
            return Ok(Slice::default());
        }
        let parts = spread::parts(key);
        let probed_part = spread::part(key, probe);
        self.count(parts.len());
        let range = |set: &str| {
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(set).arg(format!("({below}")).arg("-inf").arg("BYSCORE").arg("REV");
            cmd.arg("LIMIT").arg(0).arg(limit).arg("WITHSCORES");
            cmd
        };
        let calls = parts.iter().filter(|part| **part != probed_part).map(|part| self.zrange(range(&self.key(part))));
        let set = self.key(&probed_part);
        let mut pipe = redis::pipe();
        pipe.add_command(range(&set));
        pipe.cmd("ZSCORE").arg(&set).arg(member(probe)).cmd("HGET").arg(format!("{set}:versions")).arg(member(probe));
        let mut conn = self.conn.clone();
        let probed = async move { pipe.query_async::<(Vec<(i64, i64)>, Option<i64>, Option<i64>)>(&mut conn).await };
        let (mut read, (own, score, version)) = self
            .guard(async {
                let (read, probed) = tokio::join!(join_all(calls), probed);
                Ok((read.into_iter().collect::<redis::RedisResult<Vec<_>>>()?, probed?))
            })
            .await?;
        read.push(own.into_iter().map(|(m, score)| (member_id(m), score)).collect());
        Ok(Slice { members: merged(read, limit), probe: score.map(|score| (score, version.unwrap_or(0))) })
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration)> {
        self.count(1);
        let key = self.key(key);
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("INCR").arg(&key).cmd("PEXPIRE").arg(&key).arg(window.as_millis() as u64).arg("NX").ignore();
        pipe.cmd("PTTL").arg(&key);
        let (count, ttl_ms): (u64, i64) = self.guard(async move { pipe.query_async(&mut conn).await }).await?;
        Ok((count, Duration::from_millis(ttl_ms.max(0) as u64)))
    }

    async fn take(&self, key: &str, bucket: Bucket, cost: i32) -> Result<Taken> {
        self.count(1);
        let mut conn = self.conn.clone();
        let per_ms = bucket.per_sec.max(f64::MIN_POSITIVE) / 1000.0;
        let mut invocation = self.scripts.take.prepare_invoke();
        invocation.key(self.key(key)).arg(bucket.burst).arg(format!("{per_ms:e}")).arg(cost);
        let (allowed, tokens, wait_ms): (i64, String, i64) =
            self.guard(async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(Taken {
            allowed: allowed == 1,
            tokens: tokens.parse().unwrap_or(0.0),
            wait: Duration::from_millis(wait_ms.max(0) as u64),
        })
    }

    /// Deletes this deployment's values on every master, each master
    /// atomically, and moves the epoch on: on each master the bucket markers
    /// become newer than every epoch read before (see [`CLEAR`]), then the
    /// epoch key a new epoch past them all. A write read before the clear
    /// finds a newer marker and is dropped, as after a flush; the buckets keep
    /// markers, so nothing marks all of them again (a clear under load costs
    /// one script per master and one renewal, not a [`BUCKETS`]-command
    /// marking). Admin work that may scan many keys: bounded by
    /// [`CLEAR_TIMEOUT`], not by the per-call timeout of the hot path.
    async fn clear(&self) -> Result<()> {
        self.count(2);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLEAR).arg(0).arg(format!("{}:*", glob_escape(&self.prefix))).arg(&self.prefix);
        let routing = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::Aggregate(AggregateOp::Sum)),
        ));
        let mut admin = self
            .admin
            .get_or_init(|| async {
                let config =
                    ClusterConfig::new().set_connection_timeout(CALL_TIMEOUT).set_response_timeout(CLEAR_TIMEOUT);
                self.client.get_pending_async_connection_with_config(config)
            })
            .await
            .clone();
        let cleared = tokio::time::timeout(CLEAR_TIMEOUT, admin.route_command(cmd, routing)).await;
        self.remember_epoch(None);
        match cleared {
            Ok(done) => drop(done?),
            Err(_) => return Err(Error::Unavailable("redis: cache not cleared in time".into())),
        }
        let mut invocation = self.scripts.renew.prepare_invoke();
        invocation.key(self.epoch_key());
        let epoch: String = tokio::time::timeout(CLEAR_TIMEOUT, invocation.invoke_async(&mut admin))
            .await
            .map_err(|_| Error::Unavailable("redis: epoch not renewed in time".into()))??;
        self.remember_epoch(Some(&epoch));
        Ok(())
    }

    /// Every node answers.
    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = self.guard(async move { redis::cmd("PING").query_async(&mut conn).await }).await?;
        Ok(())
    }

    fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
}
