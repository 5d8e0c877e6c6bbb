//! Routes 15 and 16: chat history and sending.

use axum::{extract::State, http::HeaderMap, response::Response};
use douyin_kit::Error;
use douyin_proto::chat::{HistoryRequest, SendRequest};
use serde::Serialize;

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
            let mut chat = state.clients.chat.clone();
            chat.send(SendRequest { from_user_id, to_user_id, content: content.to_owned() }).await?;
            Ok(Empty {})
        }
        .await,
    )
}
