//! Rankings (beyond the original app): most-liked videos, most-followed users.

use axum::{extract::State, http::HeaderMap, response::Response};
use douyin_kit::{Error, Result};
use douyin_proto::{counter::TopRequest, video::GetVideosRequest};

use crate::{
    AppState, Need, Params,
    reply::{UserJson, VideoJson, reply},
    routes::{relation::UserListBody, video::VideoListBody},
};

const MAX_LIMIT: i64 = 50;
const DEFAULT_LIMIT: i64 = 10;

fn limit(params: &Params) -> Result<u32> {
    match params.opt_i64("limit")?.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n as u32),
        n => Err(Error::invalid(format!("limit must be between 1 and {MAX_LIMIT}, got {n}"))),
    }
}

pub async fn videos(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            let (ids, viewer) = ranked(&state, &headers, &params, Ranking::Videos).await?;
            let videos = if ids.is_empty() {
                Vec::new()
            } else {
                let mut video = state.clients.video.clone();
                video.get_videos(GetVideosRequest { ids, viewer_id: viewer }).await?.into_inner().videos
            };
            Ok(VideoListBody::new(VideoJson::list(videos, &state.urls(&headers))))
        }
        .await,
    )
}

pub async fn users(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            let (ids, viewer) = ranked(&state, &headers, &params, Ranking::Users).await?;
            let users = state.clients.users(ids, viewer).await?;
            let urls = state.urls(&headers);
            Ok(UserListBody::new(users.into_iter().map(|u| UserJson::new(u, &urls)).collect()))
        }
        .await,
    )
}

enum Ranking {
    Videos,
    Users,
}

/// The ids at the top of `ranking` (as many as the request's `limit`), best
/// first, and the viewer (0 without a token).
async fn ranked(state: &AppState, headers: &HeaderMap, params: &Params, ranking: Ranking) -> Result<(Vec<i64>, i64)> {
    params.parsed()?;
    let limit = limit(params)?;
    let viewer = state.viewer(params, headers, Need::Anyone).await?;
    let mut counter = state.clients.counter.clone();
    let top = match ranking {
        Ranking::Videos => counter.top_videos(TopRequest { limit }).await?,
        Ranking::Users => counter.top_users(TopRequest { limit }).await?,
    };
    Ok((top.into_inner().entries.iter().map(|e| e.id).collect(), viewer))
}
