//! Counts served from the cache, filled from the stats tables on a miss, and
//! rankings kept in sorted sets that are rebuilt when the cache was lost.
//!
//! Every write of numbers read from the database is conditional: on the cache
//! epoch read before the database read (a flush in between drops the write)
//! and on the row version (an older read never replaces a newer one). So a
//! flush at any moment, or a reader racing a writer, leaves no stale number.

use std::{sync::Arc, time::Duration};

use douyin_counts::{
    cached::{Keys, encode_user, encode_video, found, in_order, missing, user_counts, video_counts},
    stats,
};
use douyin_kit::{
    Result,
    cache::{Cache, Generation, Ranked, spread, versioned},
    db::{Db, now_ms},
    ids,
};
use douyin_proto::counter::{UserCounts, VideoCounts};

/// Entries filled by readers expire sooner than entries written after a commit,
/// bounding how long a fill that raced a cache flush could be served.
const FILL_TTL: Duration = Duration::from_secs(60);
const WRITE_TTL: Duration = Duration::from_secs(3600);
/// How many entries a lost ranking is rebuilt with.
const RANK_DEPTH: i64 = 1000;
pub const MAX_TOP: usize = 50;
/// How many dirty rows of each kind one round of [`CounterService::store_dirty`] stores.
const DIRTY_BATCH: i64 = 500;

#[derive(Clone)]
pub struct CounterService {
    db: Db,
    cache: Arc<dyn Cache>,
    generation: Generation,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ranking {
    Videos,
    Users,
}

/// A ranking's sorted set under the generation of `keys`.
fn ranking_key(keys: &Keys, ranking: Ranking) -> String {
    let name = match ranking {
        Ranking::Videos => "videos",
        Ranking::Users => "users",
    };
    // Written on every counted like and follow: spread over several sorted
    // sets in a Redis Cluster, so no one master takes all those writes.
    format!("{}:rank:{name}{}", keys.generation, spread::SUFFIX)
}

impl CounterService {
    pub fn new(db: Db, cache: Arc<dyn Cache>) -> Self {
        Self { generation: Generation::new(db.clone()), db, cache }
    }

    /// The keys of the database's generation ([`Generation`]).
    async fn keys(&self) -> Result<Keys> {
        Ok(Keys { generation: self.generation.current().await? })
    }

    /// Counts of many videos and users: one cache round trip, plus for misses
    /// one query (both kinds) and one cache write (and one more round trip
    /// to start an epoch right after the cache was lost).
    pub async fn counts(&self, video_ids: &[i64], user_ids: &[i64]) -> Result<(Vec<VideoCounts>, Vec<UserCounts>)> {
        let video_ids = ids::unique(video_ids);
        let user_ids = ids::unique(user_ids);
        let k = self.keys().await?;
        let keys = k.all(&video_ids, &user_ids);
        let (mut epoch, cached) = match self.cache.get_many_with_epoch(&keys).await {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%error, "cache unavailable; reading counts from the database");
                (None, vec![None; keys.len()])
            }
        };
        let (mut videos, mut users) = found(&video_ids, &user_ids, &cached);
        let (missing_videos, missing_users) = (missing(&video_ids, &videos), missing(&user_ids, &users));
        // Not counted as cache lookups: the readers (`counts::Reader`) counted
        // these ids as misses when they looked them up before asking here.

        if epoch.is_none() && !(missing_videos.is_empty() && missing_users.is_empty()) {
            // Before reading the database: fills carry the epoch they saw.
            epoch = self.cache.epoch().await.ok();
        }
        let mut fills = Vec::new();
        let (found_videos, found_users) = stats::both(self.db.pool(), &missing_videos, &missing_users).await?;
        for s in found_videos {
            fills.push((k.video(s.video_id), encode_video(&s)));
            videos.insert(s.video_id, video_counts(&s));
        }
        for s in found_users {
            fills.push((k.user(s.user_id), encode_user(&s)));
            users.insert(s.user_id, user_counts(&s));
        }
        if let Some(epoch) = &epoch
            && let Err(error) = self.cache.set_versioned(epoch, &fills, FILL_TTL).await
        {
            tracing::warn!(%error, "could not fill the counts cache");
        }

        Ok((in_order(&video_ids, videos), in_order(&user_ids, users)))
    }

    /// After a writer committed: re-reads the rows of the given ids and,
    /// with the rows the writer passed as it committed them (each with its
    /// version, so no re-read is needed), updates cache entries and rankings:
    /// one epoch read, one query for both kinds, one write of the entries
    /// and one of both rankings.
    pub async fn refresh(
        &self,
        video_ids: &[i64],
        user_ids: &[i64],
        mut videos: Vec<stats::VideoStats>,
        mut users: Vec<stats::UserStats>,
    ) -> Result<()> {
        let (read_videos, read_users) =
            stats::both(self.db.pool(), &ids::unique(video_ids), &ids::unique(user_ids)).await?;
        videos.extend(read_videos);
        users.extend(read_users);
        self.store(&videos, &users).await?;
        Ok(())
    }

    /// Stores rows whose counts changed since they were last stored (marked
    /// dirty by their writers) and clears their marks: what makes good a
    /// refresh that was lost after a commit. Returns whether a whole batch
    /// was stored, so more may be waiting.
    pub async fn store_dirty(&self) -> Result<bool> {
        let videos = stats::dirty_videos(self.db.pool(), DIRTY_BATCH).await?;
        let users = stats::dirty_users(self.db.pool(), DIRTY_BATCH).await?;
        if videos.is_empty() && users.is_empty() {
            return Ok(false);
        }
        if !self.store(&videos, &users).await? {
            // The cache was lost between its epoch and the write: store again
            // under the new epoch on the next round.
            return Ok(false);
        }
        stats::clean_videos(self.db.pool(), &videos).await?;
        stats::clean_users(self.db.pool(), &users).await?;
        let full = |n: usize| n as i64 >= DIRTY_BATCH;
        Ok(full(videos.len()) || full(users.len()))
    }

    /// Writes rows read from the stats tables into the cache entries and the
    /// rankings, over older versions only; false when the cache was lost
    /// meanwhile (readers then fill it from the database).
    async fn store(&self, videos: &[stats::VideoStats], users: &[stats::UserStats]) -> Result<bool> {
        let k = self.keys().await?;
        let epoch = self.cache.epoch().await?;
        let entries: Vec<(String, String)> = videos
            .iter()
            .map(|s| (k.video(s.video_id), encode_video(s)))
            .chain(users.iter().map(|s| (k.user(s.user_id), encode_user(s))))
            .collect();
        if !self.cache.set_versioned(&epoch, &entries, WRITE_TTL).await? {
            return Ok(false);
        }
        let video_scores: Vec<Ranked> =
            videos.iter().map(|s| Ranked { id: s.video_id, score: s.favorite_count, version: s.version }).collect();
        let user_scores: Vec<Ranked> =
            users.iter().map(|s| Ranked { id: s.user_id, score: s.follower_count, version: s.version }).collect();
        let (rank_videos, rank_users) = (ranking_key(&k, Ranking::Videos), ranking_key(&k, Ranking::Users));
        self.cache.zadd_versioned(&epoch, &[(&rank_videos, &video_scores), (&rank_users, &user_scores)]).await
    }

    /// Most-liked videos as `(video_id, favorite_count)`.
    pub async fn top_videos(&self, limit: usize) -> Result<Vec<(i64, i64)>> {
        self.top(Ranking::Videos, limit).await
    }

    /// Most-followed users as `(user_id, follower_count)`.
    pub async fn top_users(&self, limit: usize) -> Result<Vec<(i64, i64)>> {
        self.top(Ranking::Users, limit).await
    }

    /// The ranking's top, rebuilt from the database once per cache epoch (its
    /// marker names the epoch it was built in): two round trips when built.
    async fn top(&self, ranking: Ranking, limit: usize) -> Result<Vec<(i64, i64)>> {
        let limit = limit.clamp(1, MAX_TOP);
        let key = ranking_key(&self.keys().await?, ranking);
        let key = key.as_str();
        let marker = format!("{key}:built");
        let (epoch, built) = match self.cache.get_many_with_epoch(std::slice::from_ref(&marker)).await {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%error, "cache unavailable; reading the ranking from the database");
                let entries = self.ranked_rows(ranking, limit as i64).await?;
                return Ok(entries.into_iter().map(|r| (r.id, r.score)).collect());
            }
        };
        let built_in = built.into_iter().next().flatten();
        let is_built =
            matches!((&epoch, &built_in), (Some(e), Some(b)) if b.split_once(':').is_some_and(|(_, v)| v == e));
        if !is_built {
            let epoch = match epoch {
                Some(epoch) => epoch,
                None => self.cache.epoch().await?,
            };
            let entries = self.ranked_rows(ranking, RANK_DEPTH).await?;
            if !self.cache.zadd_versioned(&epoch, &[(key, &entries)]).await? {
                // Lost again while rebuilding: answer from the database.
                return Ok(entries.into_iter().take(limit).map(|r| (r.id, r.score)).collect());
            }
            let mark = versioned(now_ms(), &epoch);
            self.cache.set_versioned(&epoch, &[(marker, mark)], WRITE_TTL).await?;
        }
        let top = self.cache.ztop(key, limit).await?;
        Ok(top.into_iter().filter(|(_, score)| *score > 0).collect())
    }
}

impl CounterService {
    /// The ranking as the stats tables hold it, `limit` deep.
    async fn ranked_rows(&self, ranking: Ranking, limit: i64) -> Result<Vec<Ranked>> {
        if ranking == Ranking::Videos {
            stats::top_videos(self.db.pool(), limit).await
        } else {
            stats::top_users(self.db.pool(), limit).await
        }
    }
}
