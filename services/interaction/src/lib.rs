//! The interaction role: likes (favorites) and comments.

mod likes;
mod repo;
mod service;

use std::sync::Arc;

use douyin_kit::{
    cache::{Flags, Generation},
    db::ServiceMigrations,
    grpc::Handlers,
    host::{Built, RoleContext},
};
use douyin_proto::{
    common::{Comment, Empty, VideoList},
    interaction::{
        CommentListReply, DeleteCommentRequest, FavoriteRequest, FlagsReply, FlagsRequest, ListRequest,
        PostCommentRequest, interaction_service_server,
    },
};
use tonic::{Request, Response, Status};

use repo::InteractionRepo;
use service::InteractionService;

pub static MIGRATIONS: ServiceMigrations = ServiceMigrations {
    service: "interaction",
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    mysql: &sqlx::migrate!("./migrations/mysql"),
};

/// The interaction role: favorites and comments, checked on its own tables.
pub fn build(ctx: &RoleContext) -> Built<interaction_service_server::InteractionServiceServer<InteractionGrpc>> {
    let likes = Flags::new(ctx.cache.clone(), Generation::new(ctx.db.clone()), "likes");
    let repo = InteractionRepo::new(ctx.db.clone(), likes);
    let words = match &ctx.config.sensitive_words {
        configured if !configured.is_empty() => configured.clone(),
        _ => default_sensitive_words(),
    };
    let service = InteractionService::new(repo, ctx.clients.clone(), &words);
    let handlers = Arc::new(InteractionGrpc(service));
    Built {
        server: interaction_service_server::InteractionServiceServer::from_arc(handlers.clone()),
        handlers: Handlers::Interaction(handlers),
        probes: ctx.table_probes(&["favorites", "comments"]),
    }
}

/// The words refused in comments unless others are configured.
fn default_sensitive_words() -> Vec<String> {
    include_str!("sensitive_words.txt")
        .lines()
        .map(str::trim)
        .filter(|w| !w.is_empty() && !w.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[derive(Clone)]
pub struct InteractionGrpc(pub InteractionService);

#[tonic::async_trait]
impl interaction_service_server::InteractionService for InteractionGrpc {
    async fn favorite(&self, request: Request<FavoriteRequest>) -> Result<Response<Empty>, Status> {
        let r = request.into_inner();
        self.0.favorite(r.user_id, r.video_id, r.like).await?;
        Ok(Response::new(Empty {}))
    }

    async fn favorite_list(&self, request: Request<ListRequest>) -> Result<Response<VideoList>, Status> {
        let r = request.into_inner();
        Ok(Response::new(VideoList { videos: self.0.favorite_list(r.id, r.viewer_id).await? }))
    }

    async fn favorite_flags(&self, request: Request<FlagsRequest>) -> Result<Response<FlagsReply>, Status> {
        let r = request.into_inner();
        Ok(Response::new(FlagsReply { flags: self.0.favorite_flags(r.user_id, r.version, &r.ids).await? }))
    }

    async fn post_comment(&self, request: Request<PostCommentRequest>) -> Result<Response<Comment>, Status> {
        let r = request.into_inner();
        Ok(Response::new(self.0.post_comment(r.user_id, r.video_id, &r.content).await?))
    }

    async fn delete_comment(&self, request: Request<DeleteCommentRequest>) -> Result<Response<Comment>, Status> {
        let r = request.into_inner();
        Ok(Response::new(self.0.delete_comment(r.user_id, r.video_id, r.comment_id).await?))
    }

    async fn comment_list(&self, request: Request<ListRequest>) -> Result<Response<CommentListReply>, Status> {
        let r = request.into_inner();
        Ok(Response::new(CommentListReply { comments: self.0.comments(r.id, r.viewer_id).await? }))
    }
}
