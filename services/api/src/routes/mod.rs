//! The contract's routes, each answering GET and POST.

pub mod chat;
pub mod interaction;
pub mod rank;
pub mod relation;
pub mod user;
pub mod video;

use axum::routing::{MethodRouter, get};

use crate::AppState;

/// Every path of the contract (and its extensions), each served with and
/// without the trailing slash. The router, the OpenAPI document and the rate
/// limits name routes by these.
pub mod path {
    pub const FEED: &str = "/douyin/feed/";
    pub const REGISTER: &str = "/douyin/user/register/";
    pub const LOGIN: &str = "/douyin/user/login/";
    pub const USER: &str = "/douyin/user/";
    pub const PUBLISH: &str = "/douyin/publish/action/";
    pub const PUBLISH_LIST: &str = "/douyin/publish/list/";
    pub const FAVORITE: &str = "/douyin/favorite/action/";
    pub const FAVORITE_LIST: &str = "/douyin/favorite/list/";
    pub const COMMENT: &str = "/douyin/comment/action/";
    pub const COMMENT_LIST: &str = "/douyin/comment/list/";
    pub const FOLLOW: &str = "/douyin/relation/action/";
    pub const FOLLOW_LIST: &str = "/douyin/relation/follow/list/";
    pub const FOLLOWER_LIST: &str = "/douyin/relation/follower/list/";
    pub const FRIEND_LIST: &str = "/douyin/relation/friend/list/";
    pub const CHAT: &str = "/douyin/message/chat/";
    pub const MESSAGE: &str = "/douyin/message/action/";
    pub const MESSAGE_WS: &str = "/douyin/message/ws/";
    pub const RANK_VIDEOS: &str = "/douyin/rank/videos/";
    pub const RANK_USERS: &str = "/douyin/rank/users/";
}

/// Every route but publish (which has its own body limit).
pub fn all() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        (path::FEED, get(video::feed).post(video::feed)),
        (path::REGISTER, get(user::register).post(user::register)),
        (path::LOGIN, get(user::login).post(user::login)),
        (path::USER, get(user::info).post(user::info)),
        (path::PUBLISH_LIST, get(video::publish_list).post(video::publish_list)),
        (path::FAVORITE, get(interaction::favorite).post(interaction::favorite)),
        (path::FAVORITE_LIST, get(interaction::favorite_list).post(interaction::favorite_list)),
        (path::COMMENT, get(interaction::comment).post(interaction::comment)),
        (path::COMMENT_LIST, get(interaction::comment_list).post(interaction::comment_list)),
        (path::FOLLOW, get(relation::follow).post(relation::follow)),
        (path::FOLLOW_LIST, get(relation::follow_list).post(relation::follow_list)),
        (path::FOLLOWER_LIST, get(relation::follower_list).post(relation::follower_list)),
        (path::FRIEND_LIST, get(relation::friend_list).post(relation::friend_list)),
        (path::CHAT, get(chat::history).post(chat::history)),
        (path::MESSAGE, get(chat::send).post(chat::send)),
        (path::MESSAGE_WS, get(crate::ws::upgrade)),
        (path::RANK_VIDEOS, get(rank::videos).post(rank::videos)),
        (path::RANK_USERS, get(rank::users).post(rank::users)),
    ]
}
