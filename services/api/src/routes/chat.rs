//! Routes 15 and 16: chat history and sending.

use std::time::Duration;

use axum::{extract::State, http::HeaderMap, response::Response};
use douyin_kit::{Error, grpc::ChatClient};
use douyin_proto::chat::{HistoryRequest, SendRequest};
use serde::Serialize;
use tonic::{Code, Status};

use crate::{
    AppState, Need, Params,
    reply::{Empty, MessageJson, reply},
};

#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct MessageListBody {
    message_list: Vec<MessageJson>,
}

pub async fn history(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let user_id = state.viewer(&params, &headers, Need::User).await?;
            let peer_id = params.id("to_user_id")?;
            let after_ms = match params.opt_i64("pre_msg_time")? {
                Some(t) if t < 0 => {
                    return Err(Error::invalid("pre_msg_time must be a non-negative integer (Unix ms)"));
                }
                Some(t) => t,
                None => 0,
            };
            let mut chat = state.clients.chat.clone();
            let messages = chat.history(HistoryRequest { user_id, peer_id, after_ms }).await?.into_inner().messages;
            Ok(MessageListBody { message_list: messages.into_iter().map(MessageJson::from).collect() })
        }
        .await,
    )
}

pub async fn send(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let from_user_id = state.viewer(&params, &headers, Need::User).await?;
            let to_user_id = params.id("to_user_id")?;
            params.action(&[1])?;
            let content = params.get("content").ok_or_else(|| Error::invalid("content is required"))?;
            let request_key = uuid::Uuid::new_v4().simple().to_string();
            let request = SendRequest { from_user_id, to_user_id, content: content.to_owned(), request_key };
            send_once(state.clients.chat.clone(), request).await?;
            Ok(Empty {})
        }
        .await,
    )
}

/// How long a send is tried again while no answer says whether it was stored
/// (the chat role unreachable, killed after its commit, or too slow): inside a
/// phone's usual 10 s read timeout.
const SEND_RETRY_FOR: Duration = Duration::from_secs(8);

/// Sends `request` until an answer says it was stored or refused. Every
/// attempt carries the same request key, so a message whose first answer was
/// lost is stored once and answered as sent.
async fn send_once(mut chat: ChatClient, request: SendRequest) -> Result<(), Status> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match chat.send(request.clone()).await {
            Ok(_) => return Ok(()),
            Err(status) if unsettled(&status) && started.elapsed() + pause < SEND_RETRY_FOR => {
                tracing::debug!(%status, "message send unsettled; sending again under its key");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(status) => return Err(status),
        }
    }
}

/// Whether a failed send may have been stored, or may succeed when repeated.
fn unsettled(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Internal
    )
}
