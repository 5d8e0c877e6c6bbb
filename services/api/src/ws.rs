//! Live chat push: `/douyin/message/ws/?token=…` (or a Bearer header). Every
//! new message published by the chat role reaches every open session of its
//! recipient and of its sender, whichever gateway replica holds them.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    extract::{
        State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use douyin_kit::{
    Error,
    pubsub::{CHAT_MESSAGES, PubSub, PushedMessage},
    shutdown::Shutdown,
};
use futures::{SinkExt, StreamExt};
use tokio::sync::{broadcast::error::RecvError, mpsc};

use crate::{AppState, Need, Params, reply::Refusal};

/// Messages queued per session before a slow client starts losing them.
const SESSION_QUEUE: usize = 256;
const PING_EVERY: Duration = Duration::from_secs(25);
/// A session that sends nothing (not even a pong) for this long is closed.
const SILENT_LIMIT: Duration = Duration::from_secs(60);
/// How long an upgrade waits for the push bus to be subscribed.
const BUS_WAIT: Duration = Duration::from_secs(3);
/// Largest frame a client may send.
const MAX_CLIENT_FRAME: usize = 16 * 1024;
/// Frames a client may send per minute before the session is closed.
const MAX_CLIENT_FRAMES_PER_MIN: u32 = 120;

type Sessions = HashMap<i64, Vec<(u64, mpsc::Sender<String>)>>;

/// The open sessions of this gateway, by user.
pub struct Hub {
    sessions: Mutex<Sessions>,
    next_id: AtomicU64,
    pubsub: Arc<dyn PubSub>,
    shutdown: Shutdown,
}

impl Hub {
    /// Starts forwarding published messages to local sessions.
    pub fn start(pubsub: Arc<dyn PubSub>, shutdown: Shutdown) -> Arc<Hub> {
        let mut messages = pubsub.subscribe(CHAT_MESSAGES);
        let hub = Arc::new(Hub {
            sessions: Mutex::default(),
            next_id: AtomicU64::new(1),
            pubsub,
            shutdown: shutdown.clone(),
        });
        let forwarder = hub.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = messages.recv() => match received {
                        Ok(payload) => forwarder.dispatch(&payload),
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!(skipped = n, "push bus lagged");
                            douyin_kit::metrics::push_dropped("bus_lagged", n);
                        }
                        Err(RecvError::Closed) => break,
                    },
                    () = shutdown.clone().wait() => break,
                }
            }
        });
        hub
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dispatch(&self, payload: &str) {
        let Ok(message) = serde_json::from_str::<PushedMessage>(payload) else {
            tracing::warn!("ignoring a malformed push payload");
            return;
        };
        let mut sessions = self.lock();
        let mut users = vec![message.to_user_id];
        if message.from_user_id != message.to_user_id {
            users.push(message.from_user_id);
        }
        for user in users {
            if let Some(list) = sessions.get_mut(&user) {
                list.retain(|(_, tx)| match tx.try_send(payload.to_owned()) {
                    Ok(()) => true,
                    // A slow client loses this message rather than holding up others.
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        douyin_kit::metrics::push_dropped("queue_full", 1);
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
                if list.is_empty() {
                    sessions.remove(&user);
                }
            }
        }
    }

    fn register(self: &Arc<Self>, user_id: i64) -> Registration {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(user_id).or_default().push((id, tx));
        Registration { hub: self.clone(), user_id, id, outgoing: rx }
    }

    fn unregister(&self, user_id: i64, id: u64) {
        let mut sessions = self.lock();
        if let Some(list) = sessions.get_mut(&user_id) {
            list.retain(|(sid, _)| *sid != id);
            if list.is_empty() {
                sessions.remove(&user_id);
            }
        }
    }
}

/// A session's place in the hub, taken before the upgrade completes (so a
/// client that holds an open socket receives every message sent after) and
/// given back when dropped, also when the upgrade never completes.
struct Registration {
    hub: Arc<Hub>,
    user_id: i64,
    id: u64,
    outgoing: mpsc::Receiver<String>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.user_id, self.id);
    }
}

/// Authenticates, then upgrades. A missing or bad token refuses the upgrade
/// with 401 and the contract's JSON shape; so does every other refusal, with
/// the HTTP status of its `status_code`.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let params = Params::from_query(uri.query());
    let user_id = match state.viewer(&params, &headers, Need::User).await {
        Ok(id) => id,
        Err(error) => return refuse_upgrade(error),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return refuse_upgrade(Error::invalid("this route needs a WebSocket upgrade request"));
        }
    };
    if !state.hub.pubsub.until_listening(CHAT_MESSAGES, BUS_WAIT).await {
        return refuse_upgrade(Error::Unavailable("push bus is not subscribed".into()));
    }
    let registration = state.hub.register(user_id);
    let shutdown = state.hub.shutdown.clone();
    ws.max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| session(socket, registration, shutdown))
}

fn refuse_upgrade(error: Error) -> Response {
    let status = u16::try_from(error.status_code())
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = Refusal(error).into_response();
    *response.status_mut() = status;
    response
}

async fn session(socket: WebSocket, mut registration: Registration, shutdown: Shutdown) {
    let _open = douyin_kit::metrics::WebSocketGuard::open();
    let (mut sink, mut stream) = socket.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut window = tokio::time::Instant::now();
    let mut frames = 0u32;
    let mut last_heard = tokio::time::Instant::now();
    let stopping = shutdown.wait();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            message = registration.outgoing.recv() => match message {
                Some(text) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                    douyin_kit::metrics::pushed();
                }
                None => break,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENT_LIMIT {
                    // The peer is gone without closing (no pong to our pings).
                    break;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            () = &mut stopping => {
                // Going away: the client reconnects, to another replica.
                let close = CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
                let _ = sink.send(Message::Close(Some(close))).await;
                break;
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(Message::Pong(_))) => last_heard = tokio::time::Instant::now(),
                Some(Ok(_)) => {
                    last_heard = tokio::time::Instant::now();
                    if window.elapsed() > Duration::from_secs(60) {
                        window = tokio::time::Instant::now();
                        frames = 0;
                    }
                    frames += 1;
                    if frames > MAX_CLIENT_FRAMES_PER_MIN {
                        let _ = sink.send(Message::Close(None)).await;
                        break;
                    }
                }
            },
        }
    }
}
