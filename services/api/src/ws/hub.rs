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

use douyin_kit::{db::now_ms, grpc::ChatClient, pubsub::PubSub, shutdown::Shutdown};
use douyin_proto::{
    chat::RecentRequest,
    push::{CHAT_MESSAGES, CHAT_RESYNC, PushResync, PushedMessage},
};
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
/// Messages one catch-up read brings (the chat role's cap).
const CATCH_UP_PAGE: u32 = 500;
/// Reads one catch-up after a gap makes at most, oldest first: a gap with
/// more messages than this leaves the oldest to polling.
const CATCH_UP_PAGES: usize = 20;
/// How long a catch-up waits for room in a session's queue before the
/// session loses the message (a client that stopped reading).
const CATCH_UP_SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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

/// An open session: its id, when it opened (ms), its queue and the messages
/// queued for it so far (each is queued once, so a catch-up that reads what
/// was already pushed takes no room in the queue).
#[derive(Clone)]
struct Session {
    id: u64,
    opened_ms: i64,
    tx: mpsc::Sender<Push>,
    sent: Arc<Mutex<Sent>>,
}

impl Session {
    /// Whether a message stored at `stored_ms` and read back after a gap is
    /// for this session: not one stored well before the session opened, as a
    /// session without `since` asked only for what comes next.
    fn wants(&self, stored_ms: i64) -> bool {
        stored_ms >= self.opened_ms - CLOCK_MARGIN_MS
    }

    fn claim(&self, id: i64) -> bool {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).first(id)
    }

    fn unclaim(&self, id: i64) {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).forget(id);
    }
}

type Sessions = HashMap<i64, Vec<Session>>;

/// The open sessions of this gateway, by user.
pub struct Hub {
    sessions: Mutex<Sessions>,
    next_id: AtomicU64,
    pub(super) pubsub: Arc<dyn PubSub>,
    chat: ChatClient,
    /// The newest `create_time` the bus has brought (where a lag catch-up starts).
    newest_ms: AtomicI64,
    pub(super) shutdown: Shutdown,
}

impl Hub {
    /// Starts forwarding published messages and resync notices to local sessions.
    pub fn start(pubsub: Arc<dyn PubSub>, chat: ChatClient, shutdown: Shutdown) -> Arc<Hub> {
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
            self.deliver(user, &push);
        }
    }

    /// Queues a live `push` for `user`'s sessions that have not been sent it.
    fn deliver(&self, user: i64, push: &Push) {
        let mut sessions = self.lock();
        let Some(list) = sessions.get_mut(&user) else { return };
        list.retain(|session| {
            if !session.claim(push.id) {
                return true;
            }
            match session.tx.try_send(push.clone()) {
                Ok(()) => true,
                // A slow client loses this message rather than holding up
                // others; a later catch-up may still bring it.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    session.unclaim(push.id);
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

    /// Queues messages read from the database (`(push, create_time)`, oldest
    /// first) for `user`'s sessions (only `session` when given), waiting for
    /// room in a queue rather than losing them: a catch-up runs on its own task.
    async fn deliver_stored(&self, user: i64, session: Option<u64>, pushes: &[(Push, i64)]) {
        let targets: Vec<Session> = {
            let sessions = self.lock();
            let Some(list) = sessions.get(&user) else { return };
            list.iter().filter(|s| session.is_none_or(|only| only == s.id)).cloned().collect()
        };
        // A session that asked with `since` wants all it asked for.
        let asked = session.is_some();
        for target in targets {
            for (push, stored_ms) in pushes {
                if !(asked || target.wants(*stored_ms)) || !target.claim(push.id) {
                    continue;
                }
                if target.tx.send_timeout(push.clone(), CATCH_UP_SEND_WAIT).await.is_err() {
                    target.unclaim(push.id);
                    douyin_kit::metrics::push_dropped("queue_full", 1);
                }
            }
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

    /// One user's catch-up (one session's when given, which asked with
    /// `since`: one read). After a gap every message since `after_ms` is
    /// read, a page at a time.
    pub(super) async fn catch_up_user(&self, user: i64, session: Option<u64>, mut after_ms: i64) {
        let pages = if session.is_some() { 1 } else { CATCH_UP_PAGES };
        for _ in 0..pages {
            let mut chat = self.chat.clone();
            let request = RecentRequest { user_id: user, after_ms: after_ms.max(0), limit: CATCH_UP_PAGE };
            let messages = match chat.recent(request).await {
                Ok(reply) => reply.into_inner().messages,
                Err(status) => {
                    tracing::warn!(user, %status, "push catch-up failed; the client gets its messages by polling");
                    return;
                }
            };
            let pushes: Vec<(Push, i64)> = messages
                .iter()
                .filter_map(|m| Push::new(&PushedMessage::from(m)).map(|push| (push, m.create_time)))
                .collect();
            self.deliver_stored(user, session, &pushes).await;
            let Some(last) = messages.last().filter(|_| messages.len() >= CATCH_UP_PAGE as usize) else { return };
            // The next page starts at the last one's millisecond (messages
            // sharing it are sent once), or after it when a page is all one
            // millisecond.
            after_ms = if last.create_time - 1 > after_ms { last.create_time - 1 } else { last.create_time };
        }
    }

    pub(super) fn register(self: &Arc<Self>, user_id: i64) -> Registration {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sent = Arc::default();
        self.lock().entry(user_id).or_default().push(Session { id, opened_ms: now_ms(), tx, sent });
        Registration { hub: self.clone(), user_id, id, outgoing: rx }
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

    /// Forgets `id` (it could not be queued), so a later catch-up sends it.
    fn forget(&mut self, id: i64) {
        if self.ids.remove(&id) {
            self.order.retain(|kept| *kept != id);
        }
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
}

impl Registration {
    /// The next message for this session; None when the hub is gone.
    pub(super) async fn next(&mut self) -> Option<Arc<str>> {
        self.outgoing.recv().await.map(|push| push.text)
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
