//! The video role: publishing with content sniffing and covers, the feed,
//! publish lists, and Video objects for other roles.

mod cover;
mod demo;
mod hot;
mod janitor;
mod repo;
mod service;
mod sniff;

use std::{pin::Pin, sync::Arc};

use douyin_kit::{
    Error,
    cache::{Generation, RowCache},
    db::ServiceMigrations,
    grpc::Handlers,
    health::probe,
    host::{Built, RoleContext},
};
use douyin_proto::{
    common::{Ids, VideoList},
    video::{
        FeedRequest, GetVideosRequest, PublishChunk, PublishListRequest, PublishReply, VideoAuthor, VideoAuthorsReply,
        publish_chunk::Part, video_service_server,
    },
};
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use cover::available as ffmpeg_available;
pub use demo::seed_demo_content;
use repo::VideoRepo;
use service::{Upload, VideoService, VideoSettings};

pub static MIGRATIONS: ServiceMigrations = ServiceMigrations {
    service: "video",
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    mysql: &sqlx::migrate!("./migrations/mysql"),
};

/// The video role: videos and their media, checked on its own tables and the
/// object store. Its janitor sweeps abandoned uploads until shutdown.
pub async fn build(
    ctx: &RoleContext,
) -> douyin_kit::Result<Built<video_service_server::VideoServiceServer<VideoGrpc>>> {
    let settings = VideoSettings::from_config(&ctx.config);
    if !ffmpeg_available(&ctx.config.ffmpeg_path).await {
        tracing::info!("ffmpeg not found; new videos get the default cover");
    }
    let storage = ctx.storage()?;
    // The longest an upload may legitimately take: the call deadline.
    janitor::spawn(settings.tmp_dir.clone(), settings.upload_deadline, ctx.shutdown.clone());
    let counts = douyin_counts::Reader::new(ctx.clients.clone(), ctx.db.clone(), ctx.cache.clone());
    let repo = VideoRepo::new(ctx.db.clone());
    let rows = RowCache::new(ctx.cache.clone(), Generation::new(ctx.db.clone()), "video");
    let service = VideoService::new(repo, storage.clone(), ctx.clients.clone(), counts, rows, settings);
    let handlers = Arc::new(VideoGrpc(service));
    let server =
        video_service_server::VideoServiceServer::from_arc(handlers.clone()).max_decoding_message_size(8 * 1024 * 1024);
    let mut probes = ctx.table_probes(&["videos", "video_stats"]);
    probes.push(probe("object storage", move || {
        let storage = storage.clone();
        async move { storage.ping().await }
    }));
    Ok(Built { server, handlers: Handlers::Video(handlers), probes })
}

#[derive(Clone)]
pub struct VideoGrpc(pub VideoService);

#[tonic::async_trait]
impl video_service_server::VideoService for VideoGrpc {
    async fn publish(&self, request: Request<Streaming<PublishChunk>>) -> Result<Response<PublishReply>, Status> {
        let stream = request.into_inner().filter_map(|chunk| async move {
            match chunk {
                Ok(PublishChunk { part: Some(Part::Header(h)) }) => {
                    Some(Ok(Upload::Header { author_id: h.author_id, title: h.title }))
                }
                Ok(PublishChunk { part: Some(Part::Data(bytes)) }) => Some(Ok(Upload::Data(bytes.into()))),
                Ok(PublishChunk { part: Some(Part::End(end)) }) => Some(Ok(Upload::End { size: end.size })),
                Ok(PublishChunk { part: None }) => None,
                Err(status) => Some(Err(Error::from(status))),
            }
        });
        let stream: Pin<Box<dyn futures::Stream<Item = douyin_kit::Result<Upload>> + Send>> = Box::pin(stream);
        let video_id = self.0.publish(stream).await?;
        Ok(Response::new(PublishReply { video_id }))
    }

    async fn feed(&self, request: Request<FeedRequest>) -> Result<Response<VideoList>, Status> {
        let r = request.into_inner();
        let videos = self.0.feed(r.before_ms, r.viewer_id, r.limit).await?;
        Ok(Response::new(VideoList { videos }))
    }

    async fn publish_list(&self, request: Request<PublishListRequest>) -> Result<Response<VideoList>, Status> {
        let r = request.into_inner();
        let videos = self.0.publish_list(r.user_id, r.viewer_id).await?;
        Ok(Response::new(VideoList { videos }))
    }

    async fn get_videos(&self, request: Request<GetVideosRequest>) -> Result<Response<VideoList>, Status> {
        let r = request.into_inner();
        let videos = self.0.videos(&r.ids, r.viewer_id).await?;
        Ok(Response::new(VideoList { videos }))
    }

    async fn video_authors(&self, request: Request<Ids>) -> Result<Response<VideoAuthorsReply>, Status> {
        let pairs = self.0.authors(&request.into_inner().ids).await?;
        Ok(Response::new(VideoAuthorsReply {
            videos: pairs.into_iter().map(|(video_id, author_id)| VideoAuthor { video_id, author_id }).collect(),
        }))
    }
}
