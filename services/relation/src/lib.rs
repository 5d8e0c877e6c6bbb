//! The relation role: follows, followers and friends (mutual follows).

mod repo;
mod service;

use std::sync::Arc;

use douyin_kit::{
    db::ServiceMigrations,
    grpc::Handlers,
    host::{Built, RoleContext},
};
use douyin_proto::{
    common::{Empty, UserList},
    relation::{FollowRequest, FriendListReply, RelationListRequest, relation_service_server},
};
use tonic::{Request, Response, Status};

use repo::RelationRepo;
use service::RelationService;

pub static MIGRATIONS: ServiceMigrations = ServiceMigrations {
    service: "relation",
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    mysql: &sqlx::migrate!("./migrations/mysql"),
};

/// The relation role: follows, checked on its own table.
pub fn build(ctx: &RoleContext) -> Built<relation_service_server::RelationServiceServer<RelationGrpc>> {
    let service = RelationService::new(RelationRepo::new(ctx.db.clone()), ctx.clients.clone());
    let handlers = Arc::new(RelationGrpc(service));
    Built {
        server: relation_service_server::RelationServiceServer::from_arc(handlers.clone()),
        handlers: Handlers::Relation(handlers),
        probes: ctx.table_probes(&["follows"]),
    }
}

#[derive(Clone)]
pub struct RelationGrpc(pub RelationService);

#[tonic::async_trait]
impl relation_service_server::RelationService for RelationGrpc {
    async fn follow(&self, request: Request<FollowRequest>) -> Result<Response<Empty>, Status> {
        let r = request.into_inner();
        self.0.follow(r.user_id, r.to_user_id, r.follow).await?;
        Ok(Response::new(Empty {}))
    }

    async fn follow_list(&self, request: Request<RelationListRequest>) -> Result<Response<UserList>, Status> {
        let r = request.into_inner();
        Ok(Response::new(UserList { users: self.0.follow_list(r.user_id, r.viewer_id).await? }))
    }

    async fn follower_list(&self, request: Request<RelationListRequest>) -> Result<Response<UserList>, Status> {
        let r = request.into_inner();
        Ok(Response::new(UserList { users: self.0.follower_list(r.user_id, r.viewer_id).await? }))
    }

    async fn friend_list(&self, request: Request<RelationListRequest>) -> Result<Response<FriendListReply>, Status> {
        let r = request.into_inner();
        Ok(Response::new(FriendListReply { friends: self.0.friend_list(r.user_id, r.viewer_id).await? }))
    }
}
