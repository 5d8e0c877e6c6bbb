//! Routes 1, 5 and 6: feed, publish, publish list.

use axum::{
    extract::{FromRequest, Multipart, Request, State, multipart::Field},
    http::{HeaderMap, header::CONTENT_TYPE},
    response::Response,
};
use douyin_kit::{Error, Result, db::now_ms};

use douyin_proto::video::{
    FeedRequest, PublishChunk, PublishEnd, PublishHeader, PublishListRequest, publish_chunk::Part,
};
use futures::future::{Either, select};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::{
    AppState, Need, Params,
    params::body_error,
    ratelimit::ClientAddr,
    reply::{Empty, VideoJson, reply},
    uploads::{Refused, Slot},
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

/// Streams the `data` part to the video role as it arrives, once the uploader
/// is known: `token` in the query string or a Bearer header is checked before
/// the body is read; a `token` multipart field may come before or after the
/// file, but file bytes that arrive before it are held in memory only (up to
/// `upload_early_data_bytes`, under one budget for all uploads) and reach the
/// video role only once it is checked. `title` may come anywhere. Only a body
/// read to its end is followed by the end marker; any refusal or a client that
/// goes away cancels the upload, leaving nothing. Uploads in progress are
/// capped in total, per client address and per user.
pub async fn publish(State(state): State<AppState>, headers: HeaderMap, request: Request) -> Response {
    let _upload = douyin_kit::metrics::UploadGuard::start();
    let result = publish_inner(state, headers, request).await;
    if let Err(refused) = &result {
        douyin_kit::metrics::upload_refused(refused.reason);
    }
    reply::<Empty>(result.map(|_| Empty {}).map_err(|refused| refused.error))
}

/// What a publish knows so far and what it has sent the video role.
struct Progress {
    slot: Slot,
    author: Option<i64>,
    header_sent: bool,
    /// File bytes read before the uploader was known.
    early: Vec<bytes::Bytes>,
    size: u64,
    /// Starts the call to the video role, once the uploader is known: before
    /// that the video role sees nothing, not even an empty upload.
    start_call: Option<oneshot::Sender<()>>,
}

impl Progress {
    /// Checks the token once one has arrived, then counts the upload for its
    /// user and the user's publish rate.
    async fn authenticate(&mut self, state: &AppState, params: &Params, headers: &HeaderMap) -> Result<(), Refused> {
        if self.author.is_none() && crate::auth::token(params, headers).is_some() {
            let author = state.viewer(params, headers, Need::User).await?;
            self.slot.claim(author)?;
            state.limits.publish(author).await?;
            self.author = Some(author);
            if let Some(start) = self.start_call.take() {
                let _ = start.send(());
            }
        }
        Ok(())
    }

    /// Reads the `data` part: sent on as it arrives once the uploader is
    /// known, held back (within the early-data budget) until then.
    async fn read_data(&mut self, field: &mut Field<'_>, tx: &mpsc::Sender<PublishChunk>) -> Result<(), Refused> {
        loop {
            match field.chunk().await {
                Ok(Some(bytes)) => {
                    self.size += bytes.len() as u64;
                    douyin_kit::metrics::upload_bytes(bytes.len() as u64);
                    if self.author.is_some() {
                        send(tx, PublishChunk { part: Some(Part::Data(bytes.to_vec())) }).await?;
                    } else {
                        self.slot.hold_early(bytes.len())?;
                        self.early.push(bytes);
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(body_error(e.status(), "uploaded file").into()),
            }
        }
    }

    /// After each part: checks a token that arrived, sends the file bytes held
    /// back once the uploader is known, and the header once the title is too.
    async fn forward(
        &mut self,
        state: &AppState,
        params: &Params,
        headers: &HeaderMap,
        tx: &mpsc::Sender<PublishChunk>,
    ) -> Result<(), Refused> {
        self.authenticate(state, params, headers).await?;
        if self.author.is_some() && !self.early.is_empty() {
            for bytes in std::mem::take(&mut self.early) {
                send(tx, PublishChunk { part: Some(Part::Data(bytes.to_vec())) }).await?;
            }
            self.slot.release_early();
        }
        if let (false, Some(author_id), Some(title)) = (self.header_sent, self.author, params.get("title")) {
            send(tx, PublishChunk { part: Some(Part::Header(PublishHeader { author_id, title: title.to_owned() })) })
                .await?;
            self.header_sent = true;
        }
        Ok(())
    }
}

/// Sends one part of the upload to the video role's call.
async fn send(tx: &mpsc::Sender<PublishChunk>, chunk: PublishChunk) -> Result<()> {
    tx.send(chunk).await.map_err(|_| Error::Unavailable("upload stream closed".into()))
}

fn require_multipart(request: &Request) -> Result<()> {
    let is_multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    match is_multipart {
        true => Ok(()),
        false => Err(Error::invalid("publish needs a multipart/form-data body with data, token and title")),
    }
}

async fn publish_inner(state: AppState, headers: HeaderMap, request: Request) -> Result<i64, Refused> {
    let mut params = Params::from_query(request.uri().query());
    require_multipart(&request)?;
    let address = request.extensions().get::<ClientAddr>().copied().unwrap_or(ClientAddr(None));
    let slot = state.uploads.start(address.key())?;
    let (start_call, call_started) = oneshot::channel();
    let mut progress =
        Progress { slot, author: None, header_sent: false, early: Vec::new(), size: 0, start_call: Some(start_call) };
    // Known before the body is read when the token comes in the query or a header.
    progress.authenticate(&state, &params, &headers).await?;
    let mut multipart =
        Multipart::from_request(request, &()).await.map_err(|_| Error::invalid("multipart body is malformed"))?;

    let (tx, rx) = mpsc::channel::<PublishChunk>(4);
    let mut video = state.clients.video.clone();
    let call = Box::pin(async move {
        if call_started.await.is_err() {
            // Refused before the uploader was known: the body's refusal answers.
            return std::future::pending().await;
        }
        video.publish(tokio_stream::wrappers::ReceiverStream::new(rx)).await
    });

    let feed = Box::pin(async {
        let mut saw_data = false;
        let mut parts = 0;
        loop {
            let mut field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) => return Err(body_error(e.status(), "multipart body").into()),
            };
            parts += 1;
            if parts > MAX_PUBLISH_PARTS {
                return Err(Error::invalid(format!("publish takes at most {MAX_PUBLISH_PARTS} multipart parts")).into());
            }
            let name = field.name().unwrap_or_default().to_owned();
            if name == "data" {
                if saw_data {
                    return Err(Error::invalid("data must be sent once").into());
                }
                saw_data = true;
                progress.read_data(&mut field, &tx).await?;
            } else if field.file_name().is_none() {
                let value = crate::params::field_text(field).await?;
                params.push(name, value);
            }
            progress.forward(&state, &params, &headers, &tx).await?;
        }
        if !saw_data {
            return Err(Error::invalid("data is required: attach the video file as the data field").into());
        }
        if progress.author.is_none() {
            state.viewer(&params, &headers, Need::User).await?;
        }
        if !progress.header_sent {
            return Err(Error::invalid("title is required").into());
        }
        send(&tx, PublishChunk { part: Some(Part::End(PublishEnd { size: progress.size })) }).await?;
        drop(tx);
        Ok::<(), Refused>(())
    });

    match select(feed, call).await {
        // The body was read completely: the video role decides.
        Either::Left((Ok(()), call)) => Ok(call.await.map_err(Error::from)?.into_inner().video_id),
        // A refusal while reading: dropping the call cancels the upload.
        Either::Left((Err(refused), _call)) => Err(refused),
        // The video role answered before the body ended: a refusal (too
        // large, bad title…), as it accepts nothing without the end marker.
        Either::Right((result, _feed)) => match result {
            Ok(reply) => Ok(reply.into_inner().video_id),
            Err(status) => Err(Error::from(status).into()),
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
