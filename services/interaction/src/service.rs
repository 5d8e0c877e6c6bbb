//! The interaction role's logic: idempotent likes, comments with length and
//! word checks, lists resolved with one batch call per kind of data.

use std::{collections::HashMap, sync::Arc};

use douyin_counts as counts;
use douyin_kit::{
    Error, Result,
    db::Freshness,
    grpc::Clients,
    ids,
    text::{self, check_length},
};
use douyin_proto::{
    common::{Comment, Ids, User, Video},
    video::GetVideosRequest,
};

use crate::{
    likes::LikeWriter,
    repo::{CommentRow, InteractionRepo, Like},
};

/// How long the answer to a committed comment waits for its author's profile.
const AUTHOR_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone)]
pub struct InteractionService {
    repo: InteractionRepo,
    clients: Clients,
    likes: LikeWriter,
    /// Words refused in comments, in the folded form of [`text::fold_for_matching`].
    sensitive_words: Arc<Vec<String>>,
}

impl InteractionService {
    pub fn new(repo: InteractionRepo, clients: Clients, sensitive_words: &[String]) -> Self {
        let words =
            sensitive_words.iter().map(|w| text::fold_for_matching(w.trim())).filter(|w| !w.is_empty()).collect();
        let likes = LikeWriter::new(repo.clone(), clients.clone());
        Self { repo, clients, likes, sensitive_words: Arc::new(words) }
    }

    /// The author of `video_id`, or NotFound.
    async fn author_of(&self, video_id: i64) -> Result<i64> {
        if video_id <= 0 {
            return Err(Error::invalid("video_id must be a positive integer"));
        }
        let mut video = self.clients.video.clone();
        let reply = video.video_authors(Ids { ids: vec![video_id] }).await?.into_inner();
        reply
            .videos
            .first()
            .map(|v| v.author_id)
            .ok_or_else(|| Error::not_found(format!("video {video_id} does not exist")))
    }

    async fn ensure_user(&self, user_id: i64) -> Result<()> {
        if user_id <= 0 {
            return Err(Error::invalid("user_id must be a positive integer"));
        }
        if !self.clients.user_exists(user_id).await? {
            return Err(Error::not_found(format!("user {user_id} does not exist")));
        }
        Ok(())
    }

    pub async fn favorite(&self, user_id: i64, video_id: i64, like: bool) -> Result<()> {
        let author_id = self.author_of(video_id).await?;
        self.likes.write(Like { user_id, video_id, author_id, like }).await
    }

    pub async fn favorite_list(&self, user_id: i64, viewer_id: i64) -> Result<Vec<Video>> {
        let video_ids = self.repo.favorite_ids(user_id, Freshness::of_list(user_id, viewer_id)).await?;
        if video_ids.is_empty() {
            self.ensure_user(user_id).await?;
            return Ok(Vec::new());
        }
        let mut video = self.clients.video.clone();
        Ok(video.get_videos(GetVideosRequest { ids: video_ids, viewer_id }).await?.into_inner().videos)
    }

    /// `version`: of the user's counts as the caller read them, 0 when not.
    pub async fn favorite_flags(&self, user_id: i64, version: i64, video_ids: &[i64]) -> Result<Vec<bool>> {
        if user_id <= 0 {
            return Ok(vec![false; video_ids.len()]);
        }
        let liked: std::collections::HashSet<i64> =
            self.repo.liked_among(user_id, version, &ids::unique(video_ids)).await?.into_iter().collect();
        Ok(video_ids.iter().map(|id| liked.contains(id)).collect())
    }

    fn check_comment(&self, content: &str) -> Result<()> {
        if content.is_empty() {
            return Err(Error::invalid("comment_text is required"));
        }
        check_length("comment_text", content, 1, 500)?;
        // Matched on the folded text, so zero-width characters, full-width
        // letters and combining marks cannot disguise a word.
        let folded = text::fold_for_matching(content);
        if self.sensitive_words.iter().any(|w| folded.contains(w.as_str())) {
            return Err(Error::invalid("comment_text contains a word that is not allowed"));
        }
        Ok(())
    }

    pub async fn post_comment(&self, user_id: i64, video_id: i64, content: &str) -> Result<Comment> {
        self.check_comment(content)?;
        self.author_of(video_id).await?;
        let (row, videos) = self.repo.insert_comment(user_id, video_id, content).await?;
        counts::store(&self.clients, &videos, &[]).await;
        Ok(comment(row, self.comment_author(user_id).await))
    }

    pub async fn delete_comment(&self, user_id: i64, video_id: i64, comment_id: i64) -> Result<Comment> {
        if comment_id <= 0 {
            return Err(Error::invalid("comment_id must be a positive integer"));
        }
        self.author_of(video_id).await?;
        let row = self
            .repo
            .comment(comment_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("comment {comment_id} does not exist")))?;
        if row.video_id != video_id {
            return Err(Error::not_found(format!("comment {comment_id} does not belong to video {video_id}")));
        }
        if row.user_id != user_id {
            return Err(Error::PermissionDenied("only the author of a comment may delete it".into()));
        }
        let Some(videos) = self.repo.delete_comment(&row).await? else {
            return Err(Error::not_found(format!("comment {comment_id} does not exist")));
        };
        counts::store(&self.clients, &videos, &[]).await;
        Ok(comment(row, self.comment_author(user_id).await))
    }

    pub async fn comments(&self, video_id: i64, viewer_id: i64) -> Result<Vec<Comment>> {
        self.author_of(video_id).await?;
        let rows = self.repo.comments(video_id).await?;
        let user_ids: Vec<i64> = rows.iter().map(|r| r.user_id).collect();
        let users = self.users(&user_ids, viewer_id).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let user = users.get(&row.user_id).cloned();
                comment(row, user)
            })
            .collect())
    }

    /// The author of a comment just written or deleted, for the answer. The
    /// change has committed, so it is answered as done even when the user
    /// role cannot say more than the author's id in time.
    async fn comment_author(&self, user_id: i64) -> Option<User> {
        match tokio::time::timeout(douyin_kit::deadline::budget(AUTHOR_WAIT), self.users(&[user_id], user_id)).await {
            Ok(Ok(mut users)) => users.remove(&user_id),
            Ok(Err(error)) => {
                tracing::warn!(%error, "comment answered without its author's profile");
                None
            }
            Err(_) => {
                tracing::warn!("comment answered without its author's profile: the user role did not answer in time");
                None
            }
        }
    }

    async fn users(&self, ids: &[i64], viewer_id: i64) -> Result<HashMap<i64, User>> {
        self.clients.users_by_id(ids, viewer_id).await
    }
}

fn comment(row: CommentRow, user: Option<User>) -> Comment {
    Comment {
        id: row.id,
        user: Some(user.unwrap_or(User { id: row.user_id, ..Default::default() })),
        content: row.content,
        created_at_ms: row.created_at_ms,
        video_id: row.video_id,
    }
}
