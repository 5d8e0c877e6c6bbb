//! Live chat push: `/douyin/message/ws/?token=…` (or a Bearer header). Every
//! new message published by the chat role reaches every open session of its
//! recipient and of its sender, whichever gateway replica holds them. A client
//! that reconnects with `since=<the newest create_time it holds>` is first
//! sent what it missed (at most 500 messages; older ones by polling).

mod hub;

use std::time::Duration;

use axum::{
    extract::{
        State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use douyin_kit::{Error, shutdown::Shutdown};
use douyin_proto::push::CHAT_MESSAGES;
use futures::{SinkExt, StreamExt};
pub use hub::Hub;
use hub::Registration;

use crate::{AppState, Need, Params, reply::Refusal};

const PING_EVERY: Duration = Duration::from_secs(25);
/// A session that sends nothing (not even a pong) for this long is closed.
const SILENT_LIMIT: Duration = Duration::from_secs(60);
/// How long an upgrade waits for the push bus to be subscribed.
const BUS_WAIT: Duration = Duration::from_secs(3);
/// Largest frame a client may send.
const MAX_CLIENT_FRAME: usize = 16 * 1024;
/// Frames a client may send per minute before the session is closed.
const MAX_CLIENT_FRAMES_PER_MIN: u32 = 120;

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
    let since = match since(&params) {
        Ok(since) => since,
        Err(error) => return refuse_upgrade(error),
    };
    let registration = state.hub.register(user_id);
    if since > 0 {
        let (hub, session) = (registration.hub().clone(), registration.id);
        tokio::spawn(async move { hub.catch_up_user(user_id, Some(session), since).await });
    }
    let shutdown = state.hub.shutdown.clone();
    ws.max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| session(socket, registration, shutdown))
}

/// `since`: the newest `create_time` (ms) the client holds; absent or 0 = none.
fn since(params: &Params) -> Result<i64, Error> {
    match params.get("since").map(str::trim) {
        None | Some("") => Ok(0),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|t| *t >= 0)
            .ok_or_else(|| Error::invalid("since must be a non-negative integer (a create_time in milliseconds)")),
    }
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
            message = registration.next() => match message {
                Some(text) => {
                    if sink.send(Message::Text(text.as_ref().into())).await.is_err() {
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
