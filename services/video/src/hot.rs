//! The feed from the cache: video rows (they never change once written)
//! cached by id, and the newest videos in a sorted set by publish time, so a
//! warm feed page reads no SQL.
//!
//! The window (`<generation>:feed`) holds the ids of the newest [`WINDOW`]
//! videos as the database had them when it was built, plus every video
//! published since, and a marker member (id 0) whose score is just below the
//! oldest publish time it covers: every video published at or after that
//! time is in the set. Publishing adds the new video after its commit, before
//! the publish answers, so a new video is in the feed at once. The marker is
//! written in the same atomic step as the members it vouches for, so a set
//! that lost its marker (a flush, an eviction) is never read as complete; a
//! lost set is built again from one query, and so is one older than
//! [`WINDOW_FRESH`] (which also repairs an addition that could not be made).

use std::{sync::Arc, time::Duration};

use douyin_kit::{
    Result,
    cache::{Cache, Ranked, RowCache, rows::CachedRow},
    db::now_ms,
};

use crate::repo::{VideoRepo, VideoRow};

/// Videos the window is built with.
const WINDOW: i64 = 10_000;
/// A window built longer ago than this is built again (adding what it lacks).
const WINDOW_FRESH: Duration = Duration::from_secs(600);
/// The marker member: video ids start at 1.
const MARKER: i64 = 0;

#[derive(Clone)]
pub struct Hot {
    rows: RowCache<VideoRow>,
    building: Arc<tokio::sync::Mutex<()>>,
}

/// What the window says about a page.
enum Page {
    /// The ids of the page, newest first.
    Ids(Vec<i64>),
    /// The page is older than the window: only the database has it.
    Beyond,
    /// No complete window: it is built (or the database answers).
    Missing,
}

impl CachedRow for VideoRow {
    fn id(&self) -> i64 {
        self.id
    }

    fn encode(&self) -> String {
        serde_json::to_string(&(self.author_id, &self.title, &self.play_key, &self.cover_key, self.published_at_ms))
            .unwrap_or_default()
    }

    fn decode(id: i64, payload: &str) -> Option<Self> {
        let (author_id, title, play_key, cover_key, published_at_ms) = serde_json::from_str(payload).ok()?;
        Some(VideoRow { id, author_id, title, play_key, cover_key, published_at_ms })
    }
}

impl Hot {
    pub fn new(rows: RowCache<VideoRow>) -> Self {
        Self { rows, building: Arc::default() }
    }

    fn cache(&self) -> &Arc<dyn Cache> {
        self.rows.cache()
    }

    async fn window_key(&self) -> Result<String> {
        Ok(format!("{}:feed", self.rows.generation().current().await?))
    }

    /// The feed page strictly before `before` (ms), newest first.
    pub async fn feed(&self, repo: &VideoRepo, before: i64, limit: i64) -> Result<Vec<VideoRow>> {
        let ids = match self.page(before, limit).await {
            Page::Ids(ids) => ids,
            Page::Beyond => return repo.feed(before, limit).await,
            Page::Missing => match self.build(repo).await {
                Some(newest) => {
                    let whole = (newest.len() as i64) < WINDOW;
                    let ids: Vec<i64> = newest
                        .into_iter()
                        .filter(|(_, at)| *at < before)
                        .take(limit as usize)
                        .map(|(id, _)| id)
                        .collect();
                    if !whole && (ids.len() as i64) < limit {
                        return repo.feed(before, limit).await;
                    }
                    ids
                }
                None => return repo.feed(before, limit).await,
            },
        };
        let mut rows = self.rows(repo, &ids).await?;
        rows.sort_by_key(|r| std::cmp::Reverse(r.published_at_ms));
        Ok(rows)
    }

    async fn page(&self, before: i64, limit: i64) -> Page {
        let key = match self.window_key().await {
            Ok(key) => key,
            Err(_) => return Page::Missing,
        };
        // One more than the page: the marker may be among them.
        let slice = match self.cache().zbelow(&key, before, limit as usize + 1, MARKER).await {
            Ok(slice) => slice,
            Err(error) => {
                tracing::debug!(%error, "cache unavailable; the feed reads the database");
                return Page::Beyond;
            }
        };
        let Some((bound, built_ms)) = slice.probe else { return Page::Missing };
        if now_ms().saturating_sub(built_ms) > WINDOW_FRESH.as_millis() as i64 {
            return Page::Missing;
        }
        let limit = limit as usize;
        let mut ids = Vec::with_capacity(limit);
        for (id, _) in &slice.members {
            if ids.len() == limit {
                break;
            }
            if *id == MARKER {
                // The window ends here: complete only if it holds every video.
                return if bound < 0 { Page::Ids(ids) } else { Page::Beyond };
            }
            ids.push(*id);
        }
        // Short of a page without reaching the marker: the page is older than the window.
        if ids.len() == limit { Page::Ids(ids) } else { Page::Beyond }
    }

    /// Builds the window from the database (one query), unless another
    /// request of this process is building it; returns what it read.
    async fn build(&self, repo: &VideoRepo) -> Option<Vec<(i64, i64)>> {
        let _building = self.building.try_lock().ok()?;
        let key = self.window_key().await.ok()?;
        let epoch = self.cache().epoch().await.ok()?;
        let newest = repo.newest(WINDOW).await.ok()?;
        // Below the oldest row read; -1 (below every time) when the table was read whole.
        let bound = match newest.last() {
            Some((_, oldest)) if newest.len() as i64 == WINDOW => oldest - 1,
            _ => -1,
        };
        let mut members: Vec<Ranked> =
            newest.iter().map(|(id, at)| Ranked { id: *id, score: *at, version: 0 }).collect();
        members.push(Ranked { id: MARKER, score: bound, version: now_ms() });
        if let Err(error) = self.cache().zadd_versioned(&epoch, &[(key.as_str(), &members)]).await {
            tracing::warn!(%error, "could not store the feed window");
        }
        Some(newest)
    }

    /// Rows of `ids` (unknown ones absent, any order): from the row cache,
    /// the rest from one query, then cached.
    pub async fn rows(&self, repo: &VideoRepo, ids: &[i64]) -> Result<Vec<VideoRow>> {
        let load = |missing: Vec<i64>| async move {
            Ok(repo
                .by_ids(&missing)
                .await?
                .into_iter()
                .map(|r| {
                    let version = r.published_at_ms;
                    (r, version)
                })
                .collect())
        };
        self.rows.rows(ids, load).await
    }

    /// After a publish committed: the row cached and the video in the window.
    pub async fn published(&self, row: &VideoRow) {
        self.rows.put(&[(row.clone(), row.published_at_ms)]).await;
        let Ok(key) = self.window_key().await else { return };
        let added = match self.cache().epoch().await {
            Ok(epoch) => {
                let member = [Ranked { id: row.id, score: row.published_at_ms, version: 0 }];
                self.cache().zadd_versioned(&epoch, &[(key.as_str(), &member)]).await.map(|_| ())
            }
            Err(error) => Err(error),
        };
        if let Err(error) = added {
            tracing::warn!(%error, video_id = row.id, "could not add the video to the feed window");
        }
    }
}
