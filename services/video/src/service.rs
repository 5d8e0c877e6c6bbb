//! The video role's logic: publishing (streamed, sniffed, size-limited, with
//! objects and row created together or not at all) and assembling Video
//! objects for a viewer with one batch call per kind of data.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use douyin_counts as counts;
use douyin_kit::{
    Error, Result,
    cache::{Kept, RowCache},
    db::Freshness,
    grpc::Clients,
    ids,
    storage::ObjectStore,
    text::check_length,
};
use douyin_proto::{
    common::{User, Video},
    counter::{UserCounts, VideoCounts},
    interaction::FlagsRequest,
};
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::{
    cover,
    hot::Hot,
    repo::{VideoRepo, VideoRow},
    sniff::{self, Container},
};

/// Where a video without its own cover points; the gateway serves it.
pub const DEFAULT_COVER: &str = "/static/cover.jpg";
/// Videos in one feed page (the page the app shows); a request for 0 or more gets this many.
const FEED_LIMIT: u32 = 30;

/// Settings of the video role.
#[derive(Clone, Debug)]
pub struct VideoSettings {
    pub max_upload_bytes: u64,
    pub tmp_dir: PathBuf,
    pub ffmpeg: String,
    pub cover_timeout: Duration,
    /// How long an upload may go without a new chunk before it is abandoned.
    pub upload_idle_timeout: Duration,
    /// The longest a whole upload may take (the publish call's deadline);
    /// upload directories older than this are swept.
    pub upload_deadline: Duration,
}

impl VideoSettings {
    pub fn from_config(config: &douyin_kit::Config) -> Self {
        Self {
            max_upload_bytes: config.max_upload_bytes,
            tmp_dir: config.data_dir.join("tmp"),
            ffmpeg: config.ffmpeg_path.clone(),
            cover_timeout: Duration::from_secs(config.cover_timeout_secs),
            upload_idle_timeout: Duration::from_secs(config.upload_idle_timeout_secs.max(1)),
            upload_deadline: Duration::from_secs(config.upload_timeout_secs.max(1)),
        }
    }
}

#[derive(Clone)]
pub struct VideoService {
    repo: VideoRepo,
    storage: Arc<dyn ObjectStore>,
    clients: Clients,
    counts: counts::Reader,
    hot: Hot,
    /// Authors' profiles as the user role gave them (no counts, no
    /// `is_follow`): a profile never changes once written.
    authors: Kept<User>,
    settings: Arc<VideoSettings>,
}

/// One piece of a publish stream.
pub enum Upload {
    Header {
        author_id: i64,
        title: String,
    },
    Data(Bytes),
    /// Sent last: the whole file, `size` bytes, has been sent. A stream that
    /// stops without it was cut off and is discarded.
    End {
        size: u64,
    },
}

/// Objects of a publish in progress. A failed publish removes them before it
/// answers; a cancelled one (the caller went away) when this is dropped.
struct Written {
    storage: Arc<dyn ObjectStore>,
    keys: Vec<String>,
    committed: bool,
}

impl Written {
    /// Removes every object now (removing one that was never written is fine).
    async fn remove(&mut self) {
        for key in std::mem::take(&mut self.keys) {
            if let Err(error) = self.storage.delete(&key).await {
                tracing::error!(%error, %key, "could not remove the object of a failed publish");
            }
        }
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        if self.committed || self.keys.is_empty() {
            return;
        }
        let storage = self.storage.clone();
        let keys = std::mem::take(&mut self.keys);
        tokio::spawn(async move {
            for key in keys {
                if let Err(error) = storage.delete(&key).await {
                    tracing::error!(%error, %key, "could not remove the object of a failed publish");
                }
            }
        });
    }
}

pub fn check_title(title: &str) -> Result<()> {
    if title.is_empty() {
        return Err(Error::invalid("title is required"));
    }
    check_length("title", title, 1, 100)
}

impl VideoService {
    pub fn new(
        repo: VideoRepo,
        storage: Arc<dyn ObjectStore>,
        clients: Clients,
        counts: counts::Reader,
        rows: RowCache<VideoRow>,
        settings: VideoSettings,
    ) -> Self {
        let authors = Kept::new(rows.generation().clone());
        Self { repo, storage, clients, counts, hot: Hot::new(rows), authors, settings: Arc::new(settings) }
    }

    /// Receives the upload into a temporary file, checks it, stores the video
    /// and its cover, then inserts the row. Any failure leaves nothing behind.
    pub async fn publish<S>(&self, mut upload: S) -> Result<i64>
    where
        S: Stream<Item = Result<Upload>> + Unpin,
    {
        tokio::fs::create_dir_all(&self.settings.tmp_dir)
            .await
            .map_err(|e| Error::internal(format!("tmp dir: {e}")))?;
        let tmp = tempfile::Builder::new()
            .prefix("upload-")
            .tempdir_in(&self.settings.tmp_dir)
            .map_err(|e| Error::internal(format!("tmp dir: {e}")))?;
        let video_path = tmp.path().join("video");
        let mut file =
            tokio::fs::File::create(&video_path).await.map_err(|e| Error::internal(format!("tmp file: {e}")))?;
        let mut header: Option<(i64, String)> = None;
        let mut size: u64 = 0;
        let mut complete = false;
        let mut head: Vec<u8> = Vec::with_capacity(sniff::SNIFF_LEN);
        // A client (or a cancelled call) that stops sending must not hold the
        // temporary file forever.
        let idle = self.settings.upload_idle_timeout;
        while let Some(part) = tokio::time::timeout(idle, upload.next())
            .await
            .map_err(|_| Error::invalid(format!("upload stalled: no data for {} s", idle.as_secs())))?
        {
            let part = part?;
            if complete {
                return Err(Error::invalid("nothing may follow the end of an upload"));
            }
            match part {
                Upload::End { size: sent } => {
                    if sent != size {
                        return Err(Error::invalid(format!("upload incomplete: {size} of {sent} bytes arrived")));
                    }
                    complete = true;
                }
                Upload::Header { author_id, title } => {
                    check_title(&title)?;
                    header = Some((author_id, title));
                }
                Upload::Data(bytes) => {
                    size += bytes.len() as u64;
                    if size > self.settings.max_upload_bytes {
                        return Err(Error::TooLarge(format!(
                            "data is larger than the limit of {} bytes",
                            self.settings.max_upload_bytes
                        )));
                    }
                    if head.len() < sniff::SNIFF_LEN {
                        let take = (sniff::SNIFF_LEN - head.len()).min(bytes.len());
                        head.extend_from_slice(&bytes[..take]);
                    }
                    file.write_all(&bytes).await.map_err(|e| Error::internal(format!("tmp write: {e}")))?;
                }
            }
        }
        if !complete {
            return Err(Error::invalid("upload incomplete: the stream ended before its end marker"));
        }
        file.flush().await.map_err(|e| Error::internal(format!("tmp write: {e}")))?;
        drop(file);
        let (author_id, title) = header.ok_or_else(|| Error::invalid("title is required"))?;
        if author_id <= 0 {
            return Err(Error::Unauthenticated("a signed-in user is required".into()));
        }
        if size == 0 {
            return Err(Error::invalid("data is empty; attach a video file"));
        }
        let container = sniff::sniff(&head)
            .ok_or_else(|| Error::invalid("data is not a video (MP4, QuickTime or WebM expected)"))?;
        let path = video_path.clone();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).map_err(|e| Error::internal(format!("tmp read: {e}")))?;
            sniff::check_layout(&mut std::io::BufReader::new(file), size, container).map_err(Error::invalid)
        })
        .await
        .map_err(|e| Error::internal(format!("layout check: {e}")))??;
        self.store(author_id, &title, container, &video_path, tmp.path()).await
    }

    async fn store(
        &self,
        author_id: i64,
        title: &str,
        container: Container,
        video_path: &std::path::Path,
        tmp: &std::path::Path,
    ) -> Result<i64> {
        let mut written = Written { storage: self.storage.clone(), keys: Vec::new(), committed: false };
        match self.store_objects(&mut written, author_id, title, container, video_path, tmp).await {
            Ok(row) => {
                written.committed = true;
                tracing::info!(video_id = row.id, author_id, "video published");
                self.hot.published(&row).await;
                counts::refresh(&self.clients, vec![row.id], vec![author_id]).await;
                Ok(row.id)
            }
            Err(error) => {
                written.remove().await;
                Err(error)
            }
        }
    }

    /// Stores the video and its cover under generated keys, then inserts the
    /// row. Each key is recorded before its upload starts, so an interrupted
    /// upload is removed too.
    async fn store_objects(
        &self,
        written: &mut Written,
        author_id: i64,
        title: &str,
        container: Container,
        video_path: &std::path::Path,
        tmp: &std::path::Path,
    ) -> Result<VideoRow> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let play_key = format!("videos/{id}.{}", container.extension());
        written.keys.push(play_key.clone());
        self.storage.put_file(&play_key, video_path, container.content_type()).await?;

        let cover_path = tmp.join("cover.jpg");
        let mut cover_key = String::new();
        if cover::first_frame(&self.settings.ffmpeg, video_path, &cover_path, self.settings.cover_timeout).await {
            let key = format!("covers/{id}.jpg");
            written.keys.push(key.clone());
            self.storage.put_file(&key, &cover_path, "image/jpeg").await?;
            cover_key = key;
        }
        self.repo.insert(author_id, title, &play_key, &cover_key).await
    }

    /// The feed page before `before_ms` (0 = now).
    pub async fn feed(&self, before_ms: i64, viewer_id: i64, limit: u32) -> Result<Vec<Video>> {
        let before = if before_ms <= 0 { i64::MAX } else { before_ms };
        let limit = if limit == 0 { FEED_LIMIT } else { limit.min(FEED_LIMIT) };
        let rows = self.hot.feed(&self.repo, before, i64::from(limit)).await?;
        self.assemble(rows, viewer_id).await
    }

    /// Videos published by `user_id`, newest first; an unknown user is refused.
    pub async fn publish_list(&self, user_id: i64, viewer_id: i64) -> Result<Vec<Video>> {
        if user_id <= 0 {
            return Err(Error::invalid("user_id must be a positive integer"));
        }
        let rows = self.repo.by_author(user_id, Freshness::of_list(user_id, viewer_id)).await?;
        if rows.is_empty() && !self.clients.user_exists(user_id).await? {
            return Err(Error::not_found(format!("user {user_id} does not exist")));
        }
        self.assemble(rows, viewer_id).await
    }

    /// Videos of `ids` in that order (unknown ones left out).
    pub async fn videos(&self, ids: &[i64], viewer_id: i64) -> Result<Vec<Video>> {
        let wanted = ids::unique(ids);
        let mut by_id: HashMap<i64, VideoRow> =
            self.hot.rows(&self.repo, &wanted).await?.into_iter().map(|r| (r.id, r)).collect();
        let rows = wanted.iter().filter_map(|id| by_id.remove(id)).collect();
        self.assemble(rows, viewer_id).await
    }

    /// `(video id, author id)` of those of `ids` that exist, from the cached
    /// rows (an author never changes).
    pub async fn authors(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        let wanted = ids::unique(ids);
        let authors: HashMap<i64, i64> =
            self.hot.rows(&self.repo, &wanted).await?.into_iter().map(|r| (r.id, r.author_id)).collect();
        Ok(wanted.iter().filter_map(|id| Some((*id, *authors.get(id)?))).collect())
    }

    /// Authors, counts (of the videos and their authors together) and the
    /// viewer's likes for a whole page: one call each. With a viewer the
    /// counts come first: the version of the viewer's counts they carry is
    /// what the viewer's cached likes and follows are checked against, so the
    /// roles that answer the flags need not read it again. Without a viewer
    /// the authors' profiles this process was given before are not asked for
    /// again.
    async fn assemble(&self, rows: Vec<VideoRow>, viewer_id: i64) -> Result<Vec<Video>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let video_ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let author_ids = ids::unique(&rows.iter().map(|r| r.author_id).collect::<Vec<_>>());
        let (authors, (video_counts, author_counts), likes) = if viewer_id > 0 {
            let mut counted_users = author_ids.clone();
            if !counted_users.contains(&viewer_id) {
                counted_users.push(viewer_id);
            }
            let (video_counts, user_counts) = self.counts.counts(video_ids.clone(), counted_users).await?;
            let version = user_counts.iter().find(|c| c.user_id == viewer_id).map_or(0, |c| c.version);
            let authors = self.clients.profiles_by_id(&author_ids, viewer_id, version);
            let likes = async {
                let mut interaction = self.clients.interaction.clone();
                let request = FlagsRequest { user_id: viewer_id, ids: video_ids.clone(), version };
                Ok::<Vec<bool>, Error>(interaction.favorite_flags(request).await?.into_inner().flags)
            };
            let (authors, likes) = tokio::try_join!(authors, likes)?;
            (authors, (video_counts, user_counts), likes)
        } else {
            // Without a viewer a profile is all there is to an author: kept.
            let authors = self
                .authors
                .get(&author_ids, |missing| async move { self.clients.profiles_by_id(&missing, 0, 0).await });
            let counts = self.counts.counts(video_ids.clone(), author_ids.clone());
            let (authors, counts) = tokio::try_join!(authors, counts)?;
            (authors, counts, vec![false; video_ids.len()])
        };
        let counts: HashMap<i64, VideoCounts> = video_counts.into_iter().map(|c| (c.video_id, c)).collect();
        let author_counts: HashMap<i64, UserCounts> = author_counts.into_iter().map(|c| (c.user_id, c)).collect();
        let authors: HashMap<i64, User> =
            authors.into_iter().map(|(id, u)| (id, with_counts(author_counts.get(&id), u))).collect();
        let mut videos = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let c = counts.get(&row.id).copied().unwrap_or_default();
            let cover_url = if row.cover_key.is_empty() {
                DEFAULT_COVER.to_owned()
            } else {
                self.storage.public_url(&row.cover_key).await?
            };
            videos.push(Video {
                id: row.id,
                author: Some(authors.get(&row.author_id).cloned().unwrap_or(User {
                    id: row.author_id,
                    name: String::new(),
                    ..Default::default()
                })),
                play_url: self.storage.public_url(&row.play_key).await?,
                cover_url,
                favorite_count: c.favorite_count,
                comment_count: c.comment_count,
                is_favorite: likes.get(i).copied().unwrap_or(false),
                title: row.title,
                published_at_ms: row.published_at_ms,
            });
        }
        Ok(videos)
    }
}

/// `user` with the counts the counter holds for it (0 without a row).
fn with_counts(counts: Option<&UserCounts>, user: User) -> User {
    let c = counts.copied().unwrap_or_default();
    User {
        follow_count: c.follow_count,
        follower_count: c.follower_count,
        total_favorited: c.total_favorited,
        work_count: c.work_count,
        favorite_count: c.favorite_count,
        ..user
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_checked() {
        assert!(check_title("my first video").is_ok());
        assert!(check_title("../../etc/passwd").is_ok(), "stored as text, never used as a path");
        assert!(check_title(&"字".repeat(100)).is_ok());
        assert!(check_title(&"字".repeat(101)).is_err());
        assert!(check_title("").is_err());
        assert!(check_title("nul\0byte").is_err());
    }
}
