//! The counter role: counts for many ids in one round trip and rankings, cached
//! in Redis (or in-process) and rebuilt from the database whenever lost.

mod dirty;
mod service;

use std::sync::Arc;

use douyin_counts::stats;
use douyin_kit::{cache::Cache, db::Db};
use douyin_proto::counter::{
    CountsReply, CountsRequest, Ranked, RefreshReply, RefreshRequest, TopReply, TopRequest, counter_service_server,
};
use tonic::{Request, Response, Status};

pub use service::{CounterService, MAX_TOP};

/// The counter's gRPC handlers. They start the loop that stores dirty counts
/// (`dirty.rs`), which runs for as long as they are kept.
pub fn handlers(db: Db, cache: Arc<dyn Cache>) -> Arc<CounterGrpc> {
    let service = CounterService::new(db, cache);
    let running = dirty::spawn(service.clone());
    Arc::new(CounterGrpc { service, _running: running })
}

/// The counter role, checked on the stats tables and (reported only) Redis.
pub fn build(
    ctx: &douyin_kit::host::RoleContext,
) -> douyin_kit::host::Built<counter_service_server::CounterServiceServer<CounterGrpc>> {
    let mut probes = ctx.table_probes(&["user_stats", "video_stats"]);
    probes.push(ctx.cache_probe());
    let handlers = handlers(ctx.db.clone(), ctx.cache.clone());
    douyin_kit::host::Built {
        server: counter_service_server::CounterServiceServer::from_arc(handlers.clone()),
        handlers: douyin_kit::grpc::Handlers::Counter(handlers),
        probes,
    }
}

#[derive(Clone)]
pub struct CounterGrpc {
    service: CounterService,
    _running: dirty::Running,
}

fn ranked(entries: Vec<(i64, i64)>) -> TopReply {
    TopReply { entries: entries.into_iter().map(|(id, score)| Ranked { id, score }).collect() }
}

#[tonic::async_trait]
impl counter_service_server::CounterService for CounterGrpc {
    async fn counts(&self, request: Request<CountsRequest>) -> Result<Response<CountsReply>, Status> {
        let r = request.into_inner();
        let (videos, users) = self.service.counts(&r.video_ids, &r.user_ids).await?;
        Ok(Response::new(CountsReply { videos, users }))
    }

    async fn refresh(&self, request: Request<RefreshRequest>) -> Result<Response<RefreshReply>, Status> {
        let r = request.into_inner();
        let videos: Vec<stats::VideoStats> = r.videos.iter().map(stats::VideoStats::from).collect();
        let users: Vec<stats::UserStats> = r.users.iter().map(stats::UserStats::from).collect();
        self.service.refresh(&r.video_ids, &r.user_ids, videos, users).await?;
        Ok(Response::new(RefreshReply {}))
    }

    async fn top_videos(&self, request: Request<TopRequest>) -> Result<Response<TopReply>, Status> {
        Ok(Response::new(ranked(self.service.top_videos(request.into_inner().limit as usize).await?)))
    }

    async fn top_users(&self, request: Request<TopRequest>) -> Result<Response<TopReply>, Status> {
        Ok(Response::new(ranked(self.service.top_users(request.into_inner().limit as usize).await?)))
    }
}
