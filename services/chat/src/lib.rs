//! The chat role: messages between users; each new message is also published
//! on the pub/sub bus for live push to WebSocket sessions.

mod repo;
mod service;

use std::sync::Arc;

use douyin_kit::{
    db::ServiceMigrations,
    grpc::Handlers,
    host::{Built, RoleContext},
};
use douyin_proto::{
    chat::{HistoryReply, HistoryRequest, LatestReply, LatestRequest, RecentRequest, SendRequest, chat_service_server},
    common::Message,
};
use tonic::{Request, Response, Status};

use repo::ChatRepo;
use service::ChatService;

pub static MIGRATIONS: ServiceMigrations = ServiceMigrations {
    service: "chat",
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    mysql: &sqlx::migrate!("./migrations/mysql"),
};

/// The chat role: messages, checked on its table and (reported only) Redis.
pub fn build(ctx: &RoleContext) -> Built<chat_service_server::ChatServiceServer<ChatGrpc>> {
    let service = ChatService::new(ChatRepo::new(ctx.db.clone()), ctx.clients.clone(), ctx.pubsub.clone());
    let mut probes = ctx.table_probes(&["messages"]);
    probes.push(ctx.cache_probe());
    let handlers = Arc::new(ChatGrpc(service));
    Built {
        server: chat_service_server::ChatServiceServer::from_arc(handlers.clone()),
        handlers: Handlers::Chat(handlers),
        probes,
    }
}

#[derive(Clone)]
pub struct ChatGrpc(pub ChatService);

#[tonic::async_trait]
impl chat_service_server::ChatService for ChatGrpc {
    async fn send(&self, request: Request<SendRequest>) -> Result<Response<Message>, Status> {
        let r = request.into_inner();
        let key = Some(r.request_key.as_str()).filter(|k| !k.is_empty());
        Ok(Response::new(self.0.send(r.from_user_id, r.to_user_id, &r.content, key).await?))
    }

    async fn history(&self, request: Request<HistoryRequest>) -> Result<Response<HistoryReply>, Status> {
        let r = request.into_inner();
        Ok(Response::new(HistoryReply { messages: self.0.history(r.user_id, r.peer_id, r.after_ms).await? }))
    }

    async fn latest_messages(&self, request: Request<LatestRequest>) -> Result<Response<LatestReply>, Status> {
        let r = request.into_inner();
        Ok(Response::new(LatestReply { messages: self.0.latest(r.user_id, &r.peer_ids).await? }))
    }

    async fn recent(&self, request: Request<RecentRequest>) -> Result<Response<HistoryReply>, Status> {
        let r = request.into_inner();
        Ok(Response::new(HistoryReply { messages: self.0.recent(r.user_id, r.after_ms, r.limit).await? }))
    }
}
