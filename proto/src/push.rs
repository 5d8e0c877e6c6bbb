//! What the chat role publishes for live push and the gateway's WebSocket
//! hub reads: JSON payloads on two pub/sub channels. Like the gRPC messages,
//! these are the wire between two roles, so both sides read one definition.

/// The channel new chat messages are published on.
pub const CHAT_MESSAGES: &str = "chat:messages";

/// The channel on which the chat role says which pushes were lost (Redis
/// away or its push queue full when they were published).
pub const CHAT_RESYNC: &str = "chat:resync";

/// Pushes lost: sessions of `users` (every session when None) catch up on
/// the messages after `after_ms` from the database.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PushResync {
    pub after_ms: i64,
    pub users: Option<Vec<i64>>,
}

/// A chat message as published for live push: the contract's Message object.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PushedMessage {
    pub id: i64,
    pub to_user_id: i64,
    pub from_user_id: i64,
    pub content: String,
    pub create_time: i64,
}

impl From<&crate::common::Message> for PushedMessage {
    fn from(m: &crate::common::Message) -> Self {
        Self {
            id: m.id,
            to_user_id: m.to_user_id,
            from_user_id: m.from_user_id,
            content: m.content.clone(),
            create_time: m.create_time,
        }
    }
}
