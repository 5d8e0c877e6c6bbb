//! Routes 1, 5 and 6: feed, publish, publish list.

use axum::{
    extract::{FromRequest, Multipart, Request, State},
    http::{HeaderMap, header::CONTENT_TYPE},
    response::Response,
};
use douyin_kit::{Error, Result, db::now_ms};
use douyin_proto::video::{
    FeedRequest, PublishChunk, PublishEnd, PublishHeader, PublishListRequest, publish_chunk::Part,
};
use futures::future::{Either, select};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    AppState, Need, Params,
    params::body_error,
    reply::{Empty, VideoJson, reply},
};

#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct FeedBody {
    video_list: Vec<VideoJson>,
    next_time: i64,
}

#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct VideoListBody {
    video_list: Vec<VideoJson>,
}

impl VideoListBody {
    pub fn new(video_list: Vec<VideoJson>) -> Self {
        Self { video_list }
    }
}

/// Multipart parts a publish may carry (`data`, `token`, `title` and a few spare).
const MAX_PUBLISH_PARTS: usize = 8;

/// `latest_time` in ms: absent or 0 = now; values below 10^12 are seconds.
fn latest_time_ms(params: &Params) -> Result<i64> {
    let refuse = || Error::invalid("latest_time must be a non-negative integer (Unix seconds or milliseconds)");
    match params.get("latest_time").map(str::trim) {
        None | Some("") => Ok(0),
        Some(raw) => match raw.parse::<i64>() {
            Ok(t) if t < 0 => Err(refuse()),
            Ok(t) if t < 1_000_000_000_000 => Ok(t.saturating_mul(1000)),
            Ok(t) => Ok(t),
            Err(_) => Err(refuse()),
        },
    }
}

pub async fn feed(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let before_ms = latest_time_ms(&params)?;
            let viewer = state.viewer(&params, &headers, Need::Anyone).await?;
            let mut video = state.clients.video.clone();
            let videos = video.feed(FeedRequest { before_ms, viewer_id: viewer, limit: 0 }).await?.into_inner().videos;
            let next_time = videos.last().map(|v| v.published_at_ms).unwrap_or_else(now_ms);
            Ok(FeedBody { video_list: VideoJson::list(videos, &state.urls(&headers)), next_time })
        }
        .await,
    )
}

pub async fn publish_list(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let user_id = params.id("user_id")?;
            let viewer = state.viewer(&params, &headers, Need::Anyone).await?;
            let mut video = state.clients.video.clone();
            let videos =
                video.publish_list(PublishListRequest { user_id, viewer_id: viewer }).await?.into_inner().videos;
            Ok(VideoListBody { video_list: VideoJson::list(videos, &state.urls(&headers)) })
        }
        .await,
    )
}

/// Streams the `data` part to the video role as it arrives; `token` and
/// `title` may come in the query string, a Bearer header, or multipart fields
/// before or after the file. Only a body read to its end is followed by the
/// end marker; any refusal or a client that goes away cancels the upload,
/// leaving nothing.
pub async fn publish(State(state): State<AppState>, headers: HeaderMap, request: Request) -> Response {
    let _upload = douyin_kit::metrics::UploadGuard::start();
    let result = publish_inner(state, headers, request).await;
    if let Err(error) = &result {
        douyin_kit::metrics::upload_refused(error.kind());
    }
    reply::<Empty>(result.map(|_| Empty {}))
}

async fn publish_inner(state: AppState, headers: HeaderMap, request: Request) -> Result<i64> {
    let mut params = Params::from_query(request.uri().query());
    let is_multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(Error::invalid("publish needs a multipart/form-data body with data, token and title"));
    }
    let mut multipart =
        Multipart::from_request(request, &()).await.map_err(|_| Error::invalid("multipart body is malformed"))?;

    // Known up front when the token/title come in the query or headers.
    let mut author: Option<i64> = None;
    if crate::auth::token(&params, &headers).is_some() {
        author = Some(state.viewer(&params, &headers, Need::User).await?);
    }

    let (tx, rx) = mpsc::channel::<PublishChunk>(4);
    let mut video = state.clients.video.clone();
    let call = Box::pin(async move { video.publish(tokio_stream::wrappers::ReceiverStream::new(rx)).await });

    let feed = Box::pin(async {
        let mut header_sent = false;
        let mut saw_data = false;
        let mut parts = 0;
        let mut size: u64 = 0;
        let send = |chunk: PublishChunk| {
            let tx = tx.clone();
            async move { tx.send(chunk).await.map_err(|_| Error::Unavailable("upload stream closed".into())) }
        };
        loop {
            let mut field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) => return Err(body_error(e.status(), "multipart body")),
            };
            parts += 1;
            if parts > MAX_PUBLISH_PARTS {
                return Err(Error::invalid(format!("publish takes at most {MAX_PUBLISH_PARTS} multipart parts")));
            }
            let name = field.name().unwrap_or_default().to_owned();
            if name == "data" {
                if saw_data {
                    return Err(Error::invalid("data must be sent once"));
                }
                saw_data = true;
                loop {
                    match field.chunk().await {
                        Ok(Some(bytes)) => {
                            size += bytes.len() as u64;
                            douyin_kit::metrics::upload_bytes(bytes.len() as u64);
                            send(PublishChunk { part: Some(Part::Data(bytes.to_vec())) }).await?;
                        }
                        Ok(None) => break,
                        Err(e) => return Err(body_error(e.status(), "uploaded file")),
                    }
                }
            } else if field.file_name().is_none() {
                let value = crate::params::field_text(field).await?;
                params.push(name, value);
            }
            if !header_sent {
                if author.is_none() && crate::auth::token(&params, &headers).is_some() {
                    author = Some(state.viewer(&params, &headers, Need::User).await?);
                }
                if let (Some(author_id), Some(title)) = (author, params.get("title")) {
                    state.limits.publish(author_id).await?;
                    send(PublishChunk {
                        part: Some(Part::Header(PublishHeader { author_id, title: title.to_owned() })),
                    })
                    .await?;
                    header_sent = true;
                }
            }
        }
        if !saw_data {
            return Err(Error::invalid("data is required: attach the video file as the data field"));
        }
        if author.is_none() {
            state.viewer(&params, &headers, Need::User).await?;
        }
        if !header_sent {
            return Err(Error::invalid("title is required"));
        }
        send(PublishChunk { part: Some(Part::End(PublishEnd { size })) }).await?;
        drop(tx);
        Ok(())
    });

    match select(feed, call).await {
        // The body was read completely: the video role decides.
        Either::Left((Ok(()), call)) => Ok(call.await?.into_inner().video_id),
        // A refusal while reading: dropping the call cancels the upload.
        Either::Left((Err(error), _call)) => Err(error),
        // The video role answered before the body ended: a refusal (too
        // large, bad title…), as it accepts nothing without the end marker.
        Either::Right((result, _feed)) => match result {
            Ok(reply) => Ok(reply.into_inner().video_id),
            Err(status) => Err(status.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_time_accepts_seconds_and_milliseconds() {
        let p = |q: &str| latest_time_ms(&Params::from_query(Some(q)));
        assert_eq!(p("").unwrap(), 0);
        assert_eq!(p("latest_time=0").unwrap(), 0);
        assert_eq!(p("latest_time=1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(p("latest_time=1700000000123").unwrap(), 1_700_000_000_123);
        assert!(p("latest_time=-1").is_err());
        assert!(p("latest_time=abc").is_err());
    }
}
