//! The counts of users and videos: the tables that hold them (`stats`,
//! written by every writer inside its own transaction), the pair tables they
//! count (`pairs`), how the cache holds them (`cached`), and, here, reading
//! counts and telling the counter role that counts changed.

pub mod cached;
pub mod pairs;
pub mod stats;

use std::{collections::HashMap, sync::Arc, time::Duration};

use douyin_proto::counter::{
    CountsRequest, RefreshRequest, StoredUserCounts, StoredVideoCounts, UserCounts, VideoCounts,
};
use tokio::sync::Semaphore;

use douyin_kit::{
    Error, Result,
    breaker::Breaker,
    cache::{Cache, Generation},
    db::Db,
    grpc::Clients,
    ids,
};

/// How long a reader waits for a share of the fallback budget before the
/// read is refused as busy.
const BUDGET_WAIT: Duration = Duration::from_secs(2);
/// How long a reader waits for the counter before reading the database, and
/// a writer for the refresh after its commit before leaving it to the
/// background: well inside the caller's own deadline.
pub const FIRST_ATTEMPT: Duration = Duration::from_millis(1000);

/// Counts of many ids: from the cache the counter role keeps (one read), the
/// ones it lacks from the counter (which fills them), or, while the counter
/// cannot answer, straight from the stats tables, which always hold
/// the exact numbers. Fallback reads are one query per kind and id batch,
/// and at most `budget` of them run at once, so an outage of the counter
/// cannot turn every page view into unbounded database load. After a few
/// failed calls the counter is skipped for a moment (a circuit breaker), so
/// readers do not wait on it while it is down.
#[derive(Clone)]
pub struct Reader {
    clients: Clients,
    db: Db,
    cache: Arc<dyn Cache>,
    generation: Generation,
    budget: Arc<Semaphore>,
    breaker: Arc<Breaker>,
}

impl Reader {
    /// A reader whose fallback uses at most a quarter of `db`'s pool.
    pub fn new(clients: Clients, db: Db, cache: Arc<dyn Cache>) -> Self {
        let budget = (db.pool().options().get_max_connections() / 4).max(1) as usize;
        Self {
            clients,
            generation: Generation::new(db.clone()),
            db,
            cache,
            budget: Arc::new(Semaphore::new(budget)),
            breaker: Arc::new(Breaker::new("counter", 3, Duration::from_secs(2))),
        }
    }

    /// Counts of `ids` by user id (zeros for ids without a row).
    pub async fn users(&self, ids: &[i64]) -> Result<HashMap<i64, UserCounts>> {
        let (_, users) = self.counts(Vec::new(), ids::unique(ids)).await?;
        Ok(users.into_iter().map(|c| (c.user_id, c)).collect())
    }

    /// Counts of `ids` by video id (zeros for ids without a row).
    pub async fn videos(&self, ids: &[i64]) -> Result<HashMap<i64, VideoCounts>> {
        let (videos, _) = self.counts(ids::unique(ids), Vec::new()).await?;
        Ok(videos.into_iter().map(|c| (c.video_id, c)).collect())
    }

    /// Counts of videos and users together, in the order of the unique ids
    /// (one entry each, zeros for ids without a row): one cache read, and for
    /// what it lacks one call to the counter (or one fallback read) for the
    /// whole page.
    pub async fn counts(&self, video_ids: Vec<i64>, user_ids: Vec<i64>) -> Result<(Vec<VideoCounts>, Vec<UserCounts>)> {
        if video_ids.is_empty() && user_ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let (video_ids, user_ids) = (ids::unique(&video_ids), ids::unique(&user_ids));
        let (mut videos, mut users) = self.cached(&video_ids, &user_ids).await;
        let (missing_videos, missing_users) =
            (cached::missing(&video_ids, &videos), cached::missing(&user_ids, &users));
        if !(missing_videos.is_empty() && missing_users.is_empty()) {
            let (more_videos, more_users) = self.uncached(missing_videos, missing_users).await?;
            videos.extend(more_videos.into_iter().map(|c| (c.video_id, c)));
            users.extend(more_users.into_iter().map(|c| (c.user_id, c)));
        }
        Ok((cached::in_order(&video_ids, videos), cached::in_order(&user_ids, users)))
    }

    /// The counts the cache holds (a cache that fails holds none).
    async fn cached(
        &self,
        video_ids: &[i64],
        user_ids: &[i64],
    ) -> (HashMap<i64, VideoCounts>, HashMap<i64, UserCounts>) {
        let Ok(generation) = self.generation.current().await else { return Default::default() };
        let keys = cached::Keys { generation }.all(video_ids, user_ids);
        let values = match self.cache.get_many(&keys).await {
            Ok(values) => values,
            Err(error) => {
                tracing::debug!(%error, "cache unavailable; counts come from the counter");
                return Default::default();
            }
        };
        let (videos, users) = cached::found(video_ids, user_ids, &values);
        // Every lookup is counted here, where it is made: the counter's read of
        // the misses is a second look, not counted again.
        let hits = videos.len() + users.len();
        douyin_kit::metrics::cache_lookups("counts", hits as u64, (keys.len() - hits) as u64);
        (videos, users)
    }

    /// Counts from the counter, or from the stats tables while it cannot answer.
    async fn uncached(&self, video_ids: Vec<i64>, user_ids: Vec<i64>) -> Result<(Vec<VideoCounts>, Vec<UserCounts>)> {
        if self.breaker.allow() {
            let mut counter = self.clients.counter.clone();
            let request = CountsRequest { video_ids: video_ids.clone(), user_ids: user_ids.clone() };
            let error = match tokio::time::timeout(douyin_kit::deadline::budget(FIRST_ATTEMPT), counter.counts(request))
                .await
            {
                Ok(Ok(reply)) => {
                    self.breaker.success();
                    let reply = reply.into_inner();
                    return Ok((reply.videos, reply.users));
                }
                Ok(Err(status)) => status.message().to_owned(),
                Err(_) => "no answer in time".to_owned(),
            };
            self.breaker.failure();
            tracing::warn!(%error, "counter unavailable; reading counts from the database");
        }
        self.read_rows(&video_ids, &user_ids).await
    }

    async fn read_rows(&self, video_ids: &[i64], user_ids: &[i64]) -> Result<(Vec<VideoCounts>, Vec<UserCounts>)> {
        let _permit = tokio::time::timeout(BUDGET_WAIT, self.budget.acquire())
            .await
            .map_err(|_| Error::Busy("the count fallback budget is in use".into()))?
            .map_err(|_| Error::internal("the count fallback budget was closed"))?;
        let (videos, users) = stats::both(self.db.pool(), video_ids, user_ids).await?;
        Ok((videos.iter().map(cached::video_counts).collect(), users.iter().map(cached::user_counts).collect()))
    }
}

/// After a commit, has the counter re-read these rows into its cache. A failure
/// never fails the caller's request (the database already holds the truth),
/// and the caller waits at most [`FIRST_ATTEMPT`] for it (less when its own
/// call is near its deadline). A refresh that is
/// lost is made good by the counter from the rows' dirty marks
/// (`stats::dirty_videos`), so nothing here retries.
pub async fn refresh(clients: &Clients, video_ids: Vec<i64>, user_ids: Vec<i64>) {
    send_refresh(clients, RefreshRequest { video_ids, user_ids, ..Default::default() }).await;
}

/// After a commit, hands the counter the counts rows as the transaction left
/// them (read under its locks, so exact at their versions): the counter
/// stores them without reading the database. As [`refresh`] otherwise.
pub async fn store(clients: &Clients, videos: &[stats::VideoStats], users: &[stats::UserStats]) {
    let videos = videos.iter().map(StoredVideoCounts::from).collect();
    let users = users.iter().map(StoredUserCounts::from).collect();
    send_refresh(clients, RefreshRequest { videos, users, ..Default::default() }).await;
}

async fn send_refresh(clients: &Clients, request: RefreshRequest) {
    let mut counter = clients.counter.clone();
    let error = match tokio::time::timeout(douyin_kit::deadline::budget(FIRST_ATTEMPT), counter.refresh(request)).await
    {
        Ok(Ok(_)) => return,
        Ok(Err(status)) => status.message().to_owned(),
        Err(_) => "no answer in time".to_owned(),
    };
    tracing::warn!(%error, "count refresh failed; the counter stores the changed rows once it can");
}
