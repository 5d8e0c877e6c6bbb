//! The chat role's logic.

use std::{collections::HashMap, sync::Arc};

use douyin_kit::{
    Error, Result,
    grpc::Clients,
    ids,
    pubsub::{CHAT_MESSAGES, PubSub, PushedMessage},
    text::check_length,
};
use douyin_proto::common::{Ids, Message};
use tokio::sync::mpsc;

use crate::repo::ChatRepo;

#[derive(Clone)]
pub struct ChatService {
    repo: ChatRepo,
    clients: Clients,
    pusher: Pusher,
}

/// Messages waiting for their live push, at most.
const PUSH_QUEUE: usize = 1024;

/// Publishes stored messages for live push, in order, on one task of its own,
/// so a slow or absent Redis never delays or fails a send: a stored message
/// has been sent, and clients that miss its push get it when they poll.
#[derive(Clone)]
struct Pusher {
    tx: mpsc::Sender<String>,
}

impl Pusher {
    /// Needs a Tokio runtime; the task ends with the last clone.
    fn start(pubsub: Arc<dyn PubSub>) -> Self {
        let (tx, mut rx) = mpsc::channel::<String>(PUSH_QUEUE);
        tokio::spawn(async move {
            while let Some(payload) = rx.recv().await {
                if let Err(error) = pubsub.publish(CHAT_MESSAGES, payload).await {
                    tracing::warn!(%error, "could not publish a message for live push");
                }
            }
        });
        Self { tx }
    }

    fn push(&self, payload: String) {
        if self.tx.try_send(payload).is_err() {
            tracing::warn!("live-push queue full; the stored message reaches its reader by polling");
        }
    }
}

impl ChatService {
    pub fn new(repo: ChatRepo, clients: Clients, pubsub: Arc<dyn PubSub>) -> Self {
        Self { repo, clients, pusher: Pusher::start(pubsub) }
    }

    pub async fn send(&self, from: i64, to: i64, content: &str) -> Result<Message> {
        if to <= 0 {
            return Err(Error::invalid("to_user_id must be a positive integer"));
        }
        if to == from {
            return Err(Error::invalid("you cannot send a message to yourself"));
        }
        if content.is_empty() {
            return Err(Error::invalid("content is required"));
        }
        check_length("content", content, 1, 1000)?;
        if !self.exists(to).await? {
            return Err(Error::not_found(format!("user {to} does not exist")));
        }
        let message = self.repo.insert(from, to, content).await?;
        match serde_json::to_string(&PushedMessage::from(&message)) {
            Ok(payload) => self.pusher.push(payload),
            Err(error) => tracing::error!(%error, "could not encode a message for live push"),
        }
        Ok(message)
    }

    /// The conversation with `peer_id`, refused as `send` refuses: self or
    /// a user that does not exist. Users are never deleted, so only an empty
    /// conversation needs the existence check, and it is skipped while the
    /// user role is unavailable.
    pub async fn history(&self, user_id: i64, peer_id: i64, after_ms: i64) -> Result<Vec<Message>> {
        if peer_id <= 0 {
            return Err(Error::invalid("to_user_id must be a positive integer"));
        }
        if peer_id == user_id {
            return Err(Error::invalid("you have no conversation with yourself: to_user_id is your own id"));
        }
        let messages = self.repo.history(user_id, peer_id, after_ms.max(0)).await?;
        if messages.is_empty() {
            match self.exists(peer_id).await {
                Ok(true) => {}
                Ok(false) => return Err(Error::not_found(format!("user {peer_id} does not exist"))),
                // A read degrades rather than fails: with the user role away, an
                // empty conversation is answered as empty (nothing is revealed).
                Err(Error::Unavailable(detail)) => {
                    tracing::warn!(%detail, "peer existence not checked: user role unavailable");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(messages)
    }

    async fn exists(&self, user_id: i64) -> Result<bool> {
        let mut user = self.clients.user.clone();
        Ok(!user.existing_users(Ids { ids: vec![user_id] }).await?.into_inner().ids.is_empty())
    }

    /// One message per peer, in the order of `peers`; id 0 where none.
    pub async fn latest(&self, user_id: i64, peers: &[i64]) -> Result<Vec<Message>> {
        let found = self.repo.latest(user_id, &ids::unique(peers)).await?;
        let by_peer: HashMap<i64, Message> = found
            .into_iter()
            .map(|m| (if m.from_user_id == user_id { m.to_user_id } else { m.from_user_id }, m))
            .collect();
        Ok(peers.iter().map(|p| by_peer.get(p).cloned().unwrap_or_default()).collect())
    }
}
