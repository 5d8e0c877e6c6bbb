//! The embedded cache: the same semantics as Redis inside one process.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::{Bucket, Cache, EPOCH_KEY, Ranked, Slice, Taken, new_epoch, version_of};
use crate::Result;

#[derive(Default)]
struct SortedSet {
    scores: HashMap<i64, i64>,
    versions: HashMap<i64, i64>,
    order: BTreeSet<(std::cmp::Reverse<i64>, i64)>,
}

#[derive(Default)]
struct MemoryState {
    values: HashMap<String, (String, Instant)>,
    sets: HashMap<String, SortedSet>,
    epoch: Option<String>,
    /// Token buckets: tokens, when last refilled, when full again.
    buckets: HashMap<String, (f64, Instant, Instant)>,
    /// Size at which full buckets are swept out.
    buckets_sweep_at: usize,
    /// Size at which expired values are swept out (rate-limit windows and
    /// count entries would otherwise pile up, one per client address).
    sweep_at: usize,
}

/// Fewest values kept before a sweep is considered.
const SWEEP_FLOOR: usize = 10_000;

/// Most token buckets held at once. Past it (a flood from more addresses
/// than that within one refill time), new keys share one overflow bucket, so
/// memory stays bounded and the flood stays limited.
pub const MAX_BUCKETS: usize = 200_000;
const OVERFLOW_BUCKET: &str = "\0overflow";

impl MemoryState {
    /// Drops expired values once the map has doubled since the last sweep.
    fn sweep(&mut self, now: Instant) {
        if self.values.len() < self.sweep_at.max(SWEEP_FLOOR) {
            return;
        }
        self.values.retain(|_, (_, expires)| *expires > now);
        self.sweep_at = (self.values.len() * 2).max(SWEEP_FLOOR);
    }

    /// Drops buckets that are full again (as if never used) once the map has
    /// doubled since the last sweep.
    fn sweep_buckets(&mut self, now: Instant) {
        if self.buckets.len() < self.buckets_sweep_at.max(SWEEP_FLOOR) {
            return;
        }
        self.buckets.retain(|_, (_, _, full_at)| *full_at > now);
        self.buckets_sweep_at = (self.buckets.len() * 2).max(SWEEP_FLOOR);
    }

    fn in_epoch(&self, epoch: &str) -> bool {
        self.epoch.as_deref() == Some(epoch)
    }
}

/// The embedded cache: the same semantics as [`RedisCache`] in one process.
#[derive(Default, Clone)]
pub struct MemoryCache {
    state: Arc<Mutex<MemoryState>>,
    commands: Arc<AtomicU64>,
}

impl MemoryCache {
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
            .map(|k| {
                if k == EPOCH_KEY {
                    return state.epoch.clone();
                }
                state.values.get(k).filter(|(_, exp)| *exp > now).map(|(v, _)| v.clone())
            })
            .collect())
    }

    async fn epoch(&self) -> Result<String> {
        let mut state = self.state();
        Ok(state.epoch.get_or_insert_with(new_epoch).clone())
    }

    async fn set_versioned(&self, epoch: &str, entries: &[(String, String)], ttl: Duration) -> Result<bool> {
        if entries.is_empty() {
            return Ok(true);
        }
        let now = Instant::now();
        let mut state = self.state();
        if !state.in_epoch(epoch) {
            return Ok(false);
        }
        for (key, value) in entries {
            let current = state.values.get(key).filter(|(_, exp)| *exp > now).map(|(v, _)| version_of(v)).unwrap_or(-1);
            if version_of(value) > current {
                state.values.insert(key.clone(), (value.clone(), now + ttl));
            }
        }
        Ok(true)
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let mut state = self.state();
        let now = Instant::now();
        state.sweep(now);
        state.values.insert(key.to_owned(), (value.to_owned(), now + ttl));
        Ok(())
    }

    async fn zadd_versioned(&self, epoch: &str, sets: &[(&str, &[Ranked])]) -> Result<bool> {
        if sets.iter().all(|(_, members)| members.is_empty()) {
            return Ok(true);
        }
        let mut state = self.state();
        if !state.in_epoch(epoch) {
            return Ok(false);
        }
        for (key, members) in sets {
            let set = state.sets.entry((*key).to_owned()).or_default();
            for m in *members {
                if set.versions.get(&m.id).is_some_and(|v| *v >= m.version) {
                    continue;
                }
                set.versions.insert(m.id, m.version);
                if let Some(old) = set.scores.insert(m.id, m.score) {
                    set.order.remove(&(std::cmp::Reverse(old), m.id));
                }
                set.order.insert((std::cmp::Reverse(m.score), m.id));
            }
        }
        Ok(true)
    }

    async fn ztop(&self, key: &str, limit: usize) -> Result<Vec<(i64, i64)>> {
        let state = self.state();
        Ok(state
            .sets
            .get(key)
            .map(|set| set.order.iter().take(limit).map(|(s, m)| (*m, s.0)).collect())
            .unwrap_or_default())
    }

    async fn zbelow(&self, key: &str, below: i64, limit: usize, probe: i64) -> Result<Slice> {
        let state = self.state();
        let Some(set) = state.sets.get(key) else { return Ok(Slice::default()) };
        let from = (std::cmp::Reverse(below.saturating_sub(1)), i64::MIN);
        let members = set.order.range(from..).take(limit).map(|(s, m)| (*m, s.0)).collect();
        let probe = set.scores.get(&probe).map(|score| (*score, set.versions.get(&probe).copied().unwrap_or(0)));
        Ok(Slice { members, probe })
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration)> {
        let now = Instant::now();
        let mut state = self.state();
        state.sweep(now);
        let entry = state.values.entry(key.to_owned()).or_insert_with(|| ("0".into(), now + window));
        if entry.1 <= now {
            *entry = ("0".into(), now + window);
        }
        let count = entry.0.parse::<u64>().unwrap_or(0) + 1;
        entry.0 = count.to_string();
        Ok((count, entry.1.saturating_duration_since(now)))
    }

    async fn take(&self, key: &str, bucket: Bucket, cost: i32) -> Result<Taken> {
        let now = Instant::now();
        let mut state = self.state();
        state.sweep_buckets(now);
        let key =
            if state.buckets.len() >= MAX_BUCKETS && !state.buckets.contains_key(key) { OVERFLOW_BUCKET } else { key };
        let burst = f64::from(bucket.burst);
        let tokens = match state.buckets.get(key) {
            Some((tokens, at, _)) => {
                (tokens + now.saturating_duration_since(*at).as_secs_f64() * bucket.per_sec).min(burst)
            }
            None => burst,
        };
        let (taken, left) = bucket.take(tokens, cost);
        if cost != 0 {
            state.buckets.insert(key.to_owned(), (left, now, now + bucket.fill_time(left)));
        }
        Ok(taken)
    }

    async fn clear(&self) -> Result<()> {
        *self.state() = MemoryState::default();
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    #[tokio::test]
    async fn expired_windows_are_swept() {
        let cache = MemoryCache::default();
        for i in 0..SWEEP_FLOOR {
            cache.hit(&format!("ip:{i}"), Duration::from_millis(1)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        cache.hit("ip:next", Duration::from_secs(60)).await.unwrap();
        cache.hit("ip:last", Duration::from_secs(60)).await.unwrap();
        assert!(cache.state.lock().unwrap().values.len() < 100, "expired windows were kept");
    }

    #[tokio::test]
    async fn buckets_stay_bounded_and_full_ones_are_swept() {
        let cache = MemoryCache::default();
        let fast = Bucket { burst: 2, per_sec: 1e6 };
        for i in 0..SWEEP_FLOOR {
            cache.take(&format!("ip:{i}"), fast, 1).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        cache.take("ip:next", fast, 1).await.unwrap();
        assert!(cache.state.lock().unwrap().buckets.len() < 100, "full buckets were kept");

        let slow = Bucket { burst: 1, per_sec: 1e-6 };
        {
            let mut state = cache.state.lock().unwrap();
            let far = Instant::now() + Duration::from_secs(3600);
            for i in 0..MAX_BUCKETS {
                state.buckets.insert(format!("held:{i}"), (0.0, Instant::now(), far));
            }
        }
        assert!(cache.take("new:a", slow, 1).await.unwrap().allowed, "the overflow bucket starts full");
        assert!(!cache.take("new:b", slow, 1).await.unwrap().allowed, "new keys past the cap share one bucket");
        assert!(cache.state.lock().unwrap().buckets.len() <= MAX_BUCKETS + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_cache_behaves_like_redis() {
        super::super::suite::all(&MemoryCache::default()).await;
    }
}
