//! The relation role's logic.

use std::collections::HashMap;

use douyin_counts as counts;
use douyin_kit::{Error, Result, db::Freshness, grpc::Clients};
use douyin_proto::{chat::LatestRequest, common::User, relation::Friend};

use crate::repo::RelationRepo;

#[derive(Clone)]
pub struct RelationService {
    repo: RelationRepo,
    clients: Clients,
}

impl RelationService {
    pub fn new(repo: RelationRepo, clients: Clients) -> Self {
        Self { repo, clients }
    }

    async fn ensure_user(&self, user_id: i64, param: &str) -> Result<()> {
        if user_id <= 0 {
            return Err(Error::invalid(format!("{param} must be a positive integer")));
        }
        if !self.clients.user_exists(user_id).await? {
            return Err(Error::not_found(format!("user {user_id} does not exist")));
        }
        Ok(())
    }

    pub async fn follow(&self, user_id: i64, to_user_id: i64, follow: bool) -> Result<()> {
        if to_user_id == user_id {
            return Err(Error::invalid("you cannot follow yourself"));
        }
        self.ensure_user(to_user_id, "to_user_id").await?;
        if let Some(users) = self.repo.set_follow(user_id, to_user_id, follow).await? {
            counts::store(&self.clients, &[], &users).await;
        }
        Ok(())
    }

    async fn users(&self, ids: Vec<i64>, viewer_id: i64) -> Result<Vec<User>> {
        self.clients.users(ids, viewer_id).await
    }

    pub async fn follow_list(&self, user_id: i64, viewer_id: i64) -> Result<Vec<User>> {
        let ids = self.repo.followees(user_id, Freshness::of_list(user_id, viewer_id)).await?;
        if ids.is_empty() {
            self.ensure_user(user_id, "user_id").await?;
        }
        self.users(ids, viewer_id).await
    }

    pub async fn follower_list(&self, user_id: i64, viewer_id: i64) -> Result<Vec<User>> {
        let ids = self.repo.followers(user_id, Freshness::of_list(user_id, viewer_id)).await?;
        if ids.is_empty() {
            self.ensure_user(user_id, "user_id").await?;
        }
        self.users(ids, viewer_id).await
    }

    /// Friends of `user_id`, each with the latest message exchanged with them
    /// (none while the chat role cannot answer).
    /// Messages are private, so only the user may list their own friends.
    pub async fn friend_list(&self, user_id: i64, viewer_id: i64) -> Result<Vec<Friend>> {
        if user_id != viewer_id {
            return Err(Error::PermissionDenied("you can only list your own friends".into()));
        }
        let ids = self.repo.friends(user_id, Freshness::Latest).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let users = self.users(ids.clone(), viewer_id);
        let latest = async {
            let mut chat = self.clients.chat.clone();
            chat.latest_messages(LatestRequest { user_id, peer_ids: ids.clone() }).await
        };
        let (users, latest) = tokio::join!(users, latest);
        // The latest message decorates the list: without the chat role the
        // friends are still listed, with no message.
        let latest = match latest {
            Ok(reply) => reply.into_inner().messages,
            Err(status) => {
                tracing::warn!(error = %status.message(), "chat unavailable; friends listed without their latest message");
                Vec::new()
            }
        };
        let latest: HashMap<i64, _> = ids.iter().copied().zip(latest).collect();
        let users = users?;
        Ok(users
            .into_iter()
            .map(|user| {
                let (message, msg_type) = match latest.get(&user.id) {
                    Some(m) if m.id > 0 => (m.content.clone(), i64::from(m.from_user_id == user_id)),
                    _ => (String::new(), 0),
                };
                Friend { user: Some(user), message, msg_type }
            })
            .collect())
    }
}
