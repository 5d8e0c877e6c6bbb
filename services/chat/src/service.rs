//! The chat role's logic.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use douyin_kit::{Error, Result, grpc::Clients, ids, pubsub::PubSub, text::check_length};
use douyin_proto::{
    common::Message,
    push::{CHAT_MESSAGES, CHAT_RESYNC, PushResync, PushedMessage},
};
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
/// Most messages one catch-up (`recent`) answer carries.
pub const RECENT_MAX: u32 = 500;
/// Users one resync notice names; beyond this it names everyone.
const RESYNC_MAX_USERS: usize = 1000;
/// How often a pending resync notice is tried again.
const RESYNC_RETRY: Duration = Duration::from_secs(1);
/// How far back sessions catch up when a chat process starts: a replacement
/// of a killed one starts within this, and the pushes the killed one had
/// queued reach their sessions.
const START_RESYNC: Duration = Duration::from_secs(60);

/// Publishes stored messages for live push, in order, on one task of its own,
/// so a slow or absent Redis never delays or fails a send: a stored message
/// has been sent. A push that is lost (Redis away, the queue full) is
/// remembered, and once the bus takes publications again a resync notice
/// names the users and the time from which their sessions catch up from
/// the database; so every stored message reaches every open session.
#[derive(Clone)]
struct Pusher {
    tx: mpsc::Sender<PushedMessage>,
    lost: Arc<Mutex<Lost>>,
}

/// Pushes lost since the last resync notice.
#[derive(Default)]
struct Lost {
    after_ms: Option<i64>,
    users: BTreeSet<i64>,
    /// Every session catches up, whatever `users` holds.
    everyone: bool,
}

impl Lost {
    /// What a chat process that was killed may have lost: the messages it had
    /// stored but not yet published, at most [`START_RESYNC`] before this one
    /// started. Every session catches up over that time once the bus takes
    /// the notice.
    fn at_start() -> Self {
        let after_ms = douyin_kit::db::now_ms() - START_RESYNC.as_millis() as i64;
        Lost { after_ms: Some(after_ms), users: BTreeSet::new(), everyone: true }
    }

    fn add(&mut self, message: &PushedMessage) {
        let before = message.create_time - 1;
        self.after_ms = Some(self.after_ms.map_or(before, |t| t.min(before)));
        self.users.extend([message.from_user_id, message.to_user_id]);
    }

    fn notice(&self) -> Option<PushResync> {
        let users =
            (!self.everyone && self.users.len() <= RESYNC_MAX_USERS).then(|| self.users.iter().copied().collect());
        self.after_ms.map(|after_ms| PushResync { after_ms, users })
    }
}

impl Pusher {
    /// Needs a Tokio runtime; the task ends with the last clone.
    fn start(pubsub: Arc<dyn PubSub>) -> Self {
        let (tx, mut rx) = mpsc::channel::<PushedMessage>(PUSH_QUEUE);
        let lost = Arc::new(Mutex::new(Lost::at_start()));
        let pending = lost.clone();
        tokio::spawn(async move {
            // A notice is tried at start (the one of `Lost::at_start`), after
            // each push that went out and each retry interval; not after a
            // push that failed, as the bus is away.
            let mut try_notice = true;
            loop {
                let notice = if try_notice { pending.lock().unwrap_or_else(|e| e.into_inner()).notice() } else { None };
                if let Some(notice) = notice
                    && publish(&*pubsub, CHAT_RESYNC, &notice).await.is_ok()
                {
                    let mut lost = pending.lock().unwrap_or_else(|e| e.into_inner());
                    // Pushes lost while the notice was on its way stay for the next one.
                    if lost.notice() == Some(notice) {
                        *lost = Lost::default();
                    }
                }
                let waiting = pending.lock().unwrap_or_else(|e| e.into_inner()).notice().is_some();
                // With a notice pending, wake up to retry it even when no message comes.
                let next = if waiting {
                    match tokio::time::timeout(RESYNC_RETRY, rx.recv()).await {
                        Ok(received) => received.map(Some),
                        Err(_) => Some(None),
                    }
                } else {
                    rx.recv().await.map(Some)
                };
                let Some(message) = next else { return };
                try_notice = match message {
                    None => true,
                    Some(message) => match publish(&*pubsub, CHAT_MESSAGES, &message).await {
                        Ok(()) => true,
                        Err(error) => {
                            tracing::warn!(%error, "could not publish a message for live push; sessions catch up later");
                            pending.lock().unwrap_or_else(|e| e.into_inner()).add(&message);
                            false
                        }
                    },
                };
            }
        });
        Self { tx, lost }
    }

    fn push(&self, message: PushedMessage) {
        if let Err(mpsc::error::TrySendError::Full(message) | mpsc::error::TrySendError::Closed(message)) =
            self.tx.try_send(message)
        {
            tracing::warn!("live-push queue full; the message's sessions catch up once it drains");
            self.lost.lock().unwrap_or_else(|e| e.into_inner()).add(&message);
        }
    }
}

async fn publish(pubsub: &dyn PubSub, channel: &str, value: &impl serde::Serialize) -> Result<()> {
    let payload = serde_json::to_string(value).map_err(|e| Error::internal(format!("encoding a push: {e}")))?;
    pubsub.publish(channel, payload).await
}

impl ChatService {
    pub fn new(repo: ChatRepo, clients: Clients, pubsub: Arc<dyn PubSub>) -> Self {
        Self { repo, clients, pusher: Pusher::start(pubsub) }
    }

    /// Stores and pushes a message. With a `key` that already stored one from
    /// `from`, that message is answered (and pushed again, in case the
    /// process that stored it died before its push went out).
    pub async fn send(&self, from: i64, to: i64, content: &str, key: Option<&str>) -> Result<Message> {
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
        if let Some(key) = key {
            check_length("request_key", key, 1, 64)?;
            if let Some(message) = self.repo.by_key(from, key).await? {
                self.pusher.push(PushedMessage::from(&message));
                return Ok(message);
            }
        }
        if !self.exists(to).await? {
            return Err(Error::not_found(format!("user {to} does not exist")));
        }
        let message = self.repo.insert(from, to, content, key).await?;
        self.pusher.push(PushedMessage::from(&message));
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
        self.clients.user_exists(user_id).await
    }

    /// What a push session missed: `user_id`'s messages after `after_ms`,
    /// oldest first, at most `limit` (0 or above the cap: the cap).
    pub async fn recent(&self, user_id: i64, after_ms: i64, limit: u32) -> Result<Vec<Message>> {
        let limit = if limit == 0 { RECENT_MAX } else { limit.min(RECENT_MAX) };
        self.repo.recent(user_id, after_ms.max(0), i64::from(limit)).await
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
