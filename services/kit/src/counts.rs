//! Telling the counter role that counts changed.

use std::time::Duration;

use douyin_proto::counter::{CountsRequest, counter_service_client::CounterServiceClient};

use crate::grpc::{Clients, GrpcChannel};

/// After a commit, has the counter re-read these rows into its cache. A failure
/// never fails the caller's request (the database already holds the truth):
/// it is retried in the background so the cache converges.
pub async fn refresh(clients: &Clients, video_ids: Vec<i64>, user_ids: Vec<i64>) {
    let request = CountsRequest { video_ids, user_ids };
    let mut counter = clients.counter.clone();
    if let Err(status) = counter.refresh(request.clone()).await {
        tracing::warn!(error = %status.message(), "count refresh failed; retrying in the background");
        tokio::spawn(retry(counter, request));
    }
}

async fn retry(mut counter: CounterServiceClient<GrpcChannel>, request: CountsRequest) {
    let mut delay = Duration::from_millis(200);
    for _ in 0..8 {
        tokio::time::sleep(delay).await;
        if counter.refresh(request.clone()).await.is_ok() {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    tracing::error!("count refresh gave up; cached counts expire within the hour");
}
