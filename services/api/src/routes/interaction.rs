//! Routes 7–10: likes and comments.

use axum::{extract::State, http::HeaderMap, response::Response};
use douyin_kit::Error;
use douyin_proto::interaction::{DeleteCommentRequest, FavoriteRequest, ListRequest, PostCommentRequest};
use serde::Serialize;

use crate::{
    AppState, Need, Params,
    reply::{CommentJson, Empty, VideoJson, reply},
    routes::video::VideoListBody,
};

#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct CommentBody {
    comment: CommentJson,
}

#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct CommentListBody {
    comment_list: Vec<CommentJson>,
}

pub async fn favorite(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let user_id = state.viewer(&params, &headers, Need::User).await?;
            let video_id = params.id("video_id")?;
            let like = params.action(&[1, 2])? == 1;
            let mut interaction = state.clients.interaction.clone();
            interaction.favorite(FavoriteRequest { user_id, video_id, like }).await?;
            Ok(Empty {})
        }
        .await,
    )
}

pub async fn favorite_list(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let user_id = params.id("user_id")?;
            let viewer = state.viewer(&params, &headers, Need::Anyone).await?;
            let mut interaction = state.clients.interaction.clone();
            let videos = interaction.favorite_list(ListRequest { id: user_id, viewer_id: viewer }).await?.into_inner();
            Ok(VideoListBody::new(VideoJson::list(videos.videos, &state.urls(&headers))))
        }
        .await,
    )
}

pub async fn comment(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let user_id = state.viewer(&params, &headers, Need::User).await?;
            let video_id = params.id("video_id")?;
            let action = params.action(&[1, 2])?;
            let mut interaction = state.clients.interaction.clone();
            let comment = if action == 1 {
                let content = params
                    .get("comment_text")
                    .ok_or_else(|| Error::invalid("comment_text is required to post a comment"))?;
                interaction.post_comment(PostCommentRequest { user_id, video_id, content: content.to_owned() }).await?
            } else {
                let comment_id = params.id("comment_id")?;
                interaction.delete_comment(DeleteCommentRequest { user_id, video_id, comment_id }).await?
            };
            Ok(CommentBody { comment: CommentJson::new(comment.into_inner(), &state.urls(&headers)) })
        }
        .await,
    )
}

pub async fn comment_list(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let video_id = params.id("video_id")?;
            let viewer = state.viewer(&params, &headers, Need::Anyone).await?;
            let mut interaction = state.clients.interaction.clone();
            let comments =
                interaction.comment_list(ListRequest { id: video_id, viewer_id: viewer }).await?.into_inner();
            let urls = state.urls(&headers);
            Ok::<_, Error>(CommentListBody {
                comment_list: comments.comments.into_iter().map(|c| CommentJson::new(c, &urls)).collect(),
            })
        }
        .await,
    )
}
