//! Routes 11–14: follow, follow/follower/friend lists.

use axum::{extract::State, http::HeaderMap, response::Response};
use douyin_proto::relation::{FollowRequest, RelationListRequest};
use serde::Serialize;

use crate::{
    AppState, Need, Params,
    reply::{Empty, FriendJson, UserJson, reply},
};

#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct UserListBody {
    user_list: Vec<UserJson>,
}

impl UserListBody {
    pub fn new(user_list: Vec<UserJson>) -> Self {
        Self { user_list }
    }
}

#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct FriendListBody {
    user_list: Vec<FriendJson>,
}

pub async fn follow(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let user_id = state.viewer(&params, &headers, Need::User).await?;
            let to_user_id = params.id("to_user_id")?;
            let follow = params.action(&[1, 2])? == 1;
            let mut relation = state.clients.relation.clone();
            relation.follow(FollowRequest { user_id, to_user_id, follow }).await?;
            Ok(Empty {})
        }
        .await,
    )
}

async fn list(state: AppState, headers: HeaderMap, params: Params, followers: bool) -> Response {
    reply(
        async {
            params.parsed()?;
            let user_id = params.id("user_id")?;
            let viewer = state.viewer(&params, &headers, Need::Anyone).await?;
            let mut relation = state.clients.relation.clone();
            let request = RelationListRequest { user_id, viewer_id: viewer };
            let users =
                if followers { relation.follower_list(request).await? } else { relation.follow_list(request).await? };
            let urls = state.urls(&headers);
            Ok::<_, douyin_kit::Error>(UserListBody::new(
                users.into_inner().users.into_iter().map(|u| UserJson::new(u, &urls)).collect(),
            ))
        }
        .await,
    )
}

pub async fn follow_list(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    list(state, headers, params, false).await
}

pub async fn follower_list(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    list(state, headers, params, true).await
}

pub async fn friend_list(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let viewer = state.viewer(&params, &headers, Need::User).await?;
            let user_id = params.opt_id("user_id")?.unwrap_or(viewer);
            let mut relation = state.clients.relation.clone();
            let friends = relation.friend_list(RelationListRequest { user_id, viewer_id: viewer }).await?.into_inner();
            let urls = state.urls(&headers);
            Ok::<_, douyin_kit::Error>(FriendListBody {
                user_list: friends
                    .friends
                    .into_iter()
                    .map(|f| FriendJson {
                        user: UserJson::new(f.user.unwrap_or_default(), &urls),
                        message: f.message,
                        msg_type: f.msg_type,
                    })
                    .collect(),
            })
        }
        .await,
    )
}
