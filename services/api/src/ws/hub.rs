//! The open push sessions of one gateway and what reaches them: every message
//! published on the push bus, and, after a gap, what the database holds that a
//! session has not been sent (a session asking with `since`, the bus
//! re-subscribed after Redis was away, the chat role's resync notices for
//! pushes it could not publish). Each session is sent each message once.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

use douyin_kit::{
    db::now_ms,
    grpc::GrpcChannel,
    pubsub::{CHAT_MESSAGES, CHAT_RESYNC, PubSub, PushResync, PushedMessage},
    shutdown::Shutdown,
};
use douyin_proto::chat::{RecentRequest, chat_service_client::ChatServiceClient};
use futures::StreamExt;
use tokio::sync::{broadcast::error::RecvError, mpsc};

/// Messages queued per session before a slow client starts losing them.
const SESSION_QUEUE: usize = 256;
/// Message ids a session remembers having been sent, to send none twice.
const REMEMBERED: usize = 4096;
/// How far before a gap a catch-up reads, for clocks of replicas that differ.
const CLOCK_MARGIN_MS: i64 = 5_000;
/// Users caught up at once after a gap.
const CATCH_UP_CONCURRENCY: usize = 8;

/// One message for a session: its id (to send it once) and its JSON.
#[derive(Clone, Debug)]
pub struct Push {
    pub id: i64,
    pub text: Arc<str>,
}

impl Push {
    fn new(message: &PushedMessage) -> Option<Self> {
        serde_json::to_string(message).ok().map(|text| Push { id: message.id, text: text.into() })
    }
}

/// An open session: its id, when it opened (ms) and its queue.
struct Session {
    id: u64,
    opened_ms: i64,
    tx: mpsc::Sender<Push>,
}

type Sessions = HashMap<i64, Vec<Session>>;

/// The open sessions of this gateway, by user.
pub struct Hub {
    sessions: Mutex<Sessions>,
    next_id: AtomicU64,
    pub(super) pubsub: Arc<dyn PubSub>,
    chat: ChatServiceClient<GrpcChannel>,
    /// The newest `create_time` the bus has brought (where a lag catch-up starts).
    newest_ms: AtomicI64,
    pub(super) shutdown: Shutdown,
}

impl Hub {
    /// Starts forwarding published messages and resync notices to local sessions.
    pub fn start(pubsub: Arc<dyn PubSub>, chat: ChatServiceClient<GrpcChannel>, shutdown: Shutdown) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            sessions: Mutex::default(),
            next_id: AtomicU64::new(1),
            pubsub,
            chat,
            newest_ms: AtomicI64::new(now_ms()),
            shutdown,
        });
        tokio::spawn(hub.clone().forward_messages());
        tokio::spawn(hub.clone().forward_resyncs());
        if let Some(listening) = hub.pubsub.listening(CHAT_MESSAGES) {
            tokio::spawn(hub.clone().catch_up_after_outages(listening));
        }
        hub
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn forward_messages(self: Arc<Self>) {
        let mut messages = self.pubsub.subscribe(CHAT_MESSAGES);
        let stop = self.shutdown.clone();
        loop {
            tokio::select! {
                received = messages.recv() => match received {
                    Ok(payload) => self.dispatch(&payload),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "push bus lagged; sessions catch up from the database");
                        douyin_kit::metrics::push_dropped("bus_lagged", n);
                        let after = self.newest_ms.load(Ordering::Relaxed) - CLOCK_MARGIN_MS;
                        tokio::spawn(self.clone().catch_up(None, after));
                    }
                    Err(RecvError::Closed) => return,
                },
                () = stop.clone().wait() => return,
            }
        }
    }

    async fn forward_resyncs(self: Arc<Self>) {
        let mut notices = self.pubsub.subscribe(CHAT_RESYNC);
        let stop = self.shutdown.clone();
        loop {
            tokio::select! {
                received = notices.recv() => match received {
                    Ok(payload) => match serde_json::from_str::<PushResync>(&payload) {
                        Ok(notice) => {
                            tokio::spawn(self.clone().catch_up(notice.users, notice.after_ms - CLOCK_MARGIN_MS));
                        }
                        Err(_) => tracing::warn!("ignoring a malformed resync notice"),
                    },
                    // Notices lost: everyone catches up over the last minute.
                    Err(RecvError::Lagged(_)) => {
                        tokio::spawn(self.clone().catch_up(None, now_ms() - 60_000));
                    }
                    Err(RecvError::Closed) => return,
                },
                () = stop.clone().wait() => return,
            }
        }
    }

    /// While the bus is not subscribed (Redis away), publications do not reach
    /// this gateway: once it is again, every session catches up from the
    /// moment it went down.
    async fn catch_up_after_outages(self: Arc<Self>, mut listening: tokio::sync::watch::Receiver<bool>) {
        let mut down_since: Option<i64> = None;
        loop {
            let up = *listening.borrow_and_update();
            match (up, down_since) {
                (false, None) => down_since = Some(now_ms()),
                (true, Some(since)) => {
                    down_since = None;
                    tracing::info!("push bus subscribed again; sessions catch up from the database");
                    tokio::spawn(self.clone().catch_up(None, since - CLOCK_MARGIN_MS));
                }
                _ => {}
            }
            tokio::select! {
                changed = listening.changed() => if changed.is_err() { return },
                () = self.shutdown.clone().wait() => return,
            }
        }
    }

    fn dispatch(&self, payload: &str) {
        let Ok(message) = serde_json::from_str::<PushedMessage>(payload) else {
            tracing::warn!("ignoring a malformed push payload");
            return;
        };
        self.newest_ms.fetch_max(message.create_time, Ordering::Relaxed);
        let push = Push { id: message.id, text: payload.into() };
        let mut users = vec![message.to_user_id];
        if message.from_user_id != message.to_user_id {
            users.push(message.from_user_id);
        }
        for user in users {
            self.deliver(user, None, &push, None);
        }
    }

    /// Queues `push` for `user`'s sessions (only `session` when given). A
    /// message caught up from the database (`stored_ms`, its create_time) is
    /// not sent to sessions that opened well after it was stored: they did
    /// not miss it, and without `since` they asked only for what comes next.
    fn deliver(&self, user: i64, session: Option<u64>, push: &Push, stored_ms: Option<i64>) {
        let mut sessions = self.lock();
        let Some(list) = sessions.get_mut(&user) else { return };
        list.retain(|Session { id, opened_ms, tx }| {
            if session.is_some_and(|only| only != *id) {
                return true;
            }
            if session.is_none() && stored_ms.is_some_and(|stored| stored < opened_ms - CLOCK_MARGIN_MS) {
                return true;
            }
            match tx.try_send(push.clone()) {
                Ok(()) => true,
                // A slow client loses this message rather than holding up others.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    douyin_kit::metrics::push_dropped("queue_full", 1);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        if list.is_empty() {
            sessions.remove(&user);
        }
    }

    /// Sends `users`' sessions (every session when None) what the database
    /// holds after `after_ms`; a session skips what it has been sent.
    async fn catch_up(self: Arc<Self>, users: Option<Vec<i64>>, after_ms: i64) {
        let online: Vec<i64> = {
            let sessions = self.lock();
            match users {
                Some(users) => users.into_iter().filter(|u| sessions.contains_key(u)).collect(),
                None => sessions.keys().copied().collect(),
            }
        };
        futures::stream::iter(online)
            .for_each_concurrent(CATCH_UP_CONCURRENCY, |user| {
                let hub = self.clone();
                async move { hub.catch_up_user(user, None, after_ms).await }
            })
            .await;
    }

    /// One user's catch-up (one session's when given).
    pub(super) async fn catch_up_user(&self, user: i64, session: Option<u64>, after_ms: i64) {
        let mut chat = self.chat.clone();
        let request = RecentRequest { user_id: user, after_ms: after_ms.max(0), limit: 0 };
        match chat.recent(request).await {
            Ok(reply) => {
                for message in reply.into_inner().messages {
                    if let Some(push) = Push::new(&PushedMessage::from(&message)) {
                        self.deliver(user, session, &push, Some(message.create_time));
                    }
                }
            }
            Err(status) => {
                tracing::warn!(user, %status, "push catch-up failed; the client gets its messages by polling")
            }
        }
    }

    pub(super) fn register(self: &Arc<Self>, user_id: i64) -> Registration {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(user_id).or_default().push(Session { id, opened_ms: now_ms(), tx });
        Registration { hub: self.clone(), user_id, id, outgoing: rx, sent: Sent::default() }
    }

    fn unregister(&self, user_id: i64, id: u64) {
        let mut sessions = self.lock();
        if let Some(list) = sessions.get_mut(&user_id) {
            list.retain(|session| session.id != id);
            if list.is_empty() {
                sessions.remove(&user_id);
            }
        }
    }
}

/// The ids of the messages a session has been sent, the latest `REMEMBERED`.
#[derive(Default)]
struct Sent {
    ids: HashSet<i64>,
    order: VecDeque<i64>,
}

impl Sent {
    /// True the first time `id` is seen.
    fn first(&mut self, id: i64) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

/// A session's place in the hub, taken before the upgrade completes (so a
/// client that holds an open socket receives every message sent after) and
/// given back when dropped, also when the upgrade never completes.
pub(super) struct Registration {
    hub: Arc<Hub>,
    pub(super) user_id: i64,
    pub(super) id: u64,
    outgoing: mpsc::Receiver<Push>,
    sent: Sent,
}

impl Registration {
    /// The next message this session has not been sent; None when the hub is gone.
    pub(super) async fn next(&mut self) -> Option<Arc<str>> {
        loop {
            let push = self.outgoing.recv().await?;
            if self.sent.first(push.id) {
                return Some(push.text);
            }
        }
    }

    pub(super) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.user_id, self.id);
    }
}
