//! Routes 2–4: register, login, user info.

use axum::{Extension, extract::State, http::HeaderMap, response::Response};
use douyin_kit::{Error, Result};
use douyin_proto::user::Credentials;
use serde::Serialize;

use crate::{
    AppState, Need, Params,
    ratelimit::{ClientAddr, signin},
    reply::{UserJson, reply},
};

#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct SessionBody {
    user_id: i64,
    token: String,
}

#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct UserBody {
    user: UserJson,
}

fn credentials(params: &Params) -> Result<Credentials> {
    Ok(Credentials {
        username: params.get("username").unwrap_or_default().to_owned(),
        password: params.get("password").unwrap_or_default().to_owned(),
    })
}

pub async fn register(State(state): State<AppState>, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let mut user = state.clients.user.clone();
            let session = user.register(credentials(&params)?).await?.into_inner();
            state.issued(&session.token);
            Ok(SessionBody { user_id: session.user_id, token: session.token })
        }
        .await,
    )
}

/// Signs in; failed attempts count against the account and the address
/// (`ratelimit::signin`), successful ones never do.
pub async fn login(State(state): State<AppState>, client: Option<Extension<ClientAddr>>, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let credentials = credentials(&params)?;
            let ip = client.and_then(|Extension(ClientAddr(ip))| ip);
            let attempt = signin::begin(&state.limits, ip, &credentials.username).await?;
            let mut user = state.clients.user.clone();
            let result = user.login(credentials).await.map(tonic::Response::into_inner).map_err(Error::from);
            if !matches!(result, Err(Error::Unauthenticated(_) | Error::NotFound(_))) {
                attempt.give_back().await;
            }
            let session = result?;
            state.issued(&session.token);
            Ok(SessionBody { user_id: session.user_id, token: session.token })
        }
        .await,
    )
}

pub async fn info(State(state): State<AppState>, headers: HeaderMap, params: Params) -> Response {
    reply(
        async {
            params.parsed()?;
            let viewer = state.viewer(&params, &headers, Need::User).await?;
            let user_id = params.opt_id("user_id")?.unwrap_or(viewer);
            let found = state
                .clients
                .users(vec![user_id], viewer)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found(format!("user {user_id} does not exist")))?;
            Ok(UserBody { user: UserJson::new(found, &state.urls(&headers)) })
        }
        .await,
    )
}
