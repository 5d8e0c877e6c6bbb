//! The contract's routes, each answering GET and POST.

pub mod chat;
pub mod interaction;
pub mod rank;
pub mod relation;
pub mod user;
pub mod video;

use axum::routing::{MethodRouter, get};

use crate::AppState;

/// Every route but publish (which has its own body limit).
pub fn all() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/douyin/feed/", get(video::feed).post(video::feed)),
        ("/douyin/user/register/", get(user::register).post(user::register)),
        ("/douyin/user/login/", get(user::login).post(user::login)),
        ("/douyin/user/", get(user::info).post(user::info)),
        ("/douyin/publish/list/", get(video::publish_list).post(video::publish_list)),
        ("/douyin/favorite/action/", get(interaction::favorite).post(interaction::favorite)),
        ("/douyin/favorite/list/", get(interaction::favorite_list).post(interaction::favorite_list)),
        ("/douyin/comment/action/", get(interaction::comment).post(interaction::comment)),
        ("/douyin/comment/list/", get(interaction::comment_list).post(interaction::comment_list)),
        ("/douyin/relation/action/", get(relation::follow).post(relation::follow)),
        ("/douyin/relation/follow/list/", get(relation::follow_list).post(relation::follow_list)),
        ("/douyin/relation/follower/list/", get(relation::follower_list).post(relation::follower_list)),
        ("/douyin/relation/friend/list/", get(relation::friend_list).post(relation::friend_list)),
        ("/douyin/message/chat/", get(chat::history).post(chat::history)),
        ("/douyin/message/action/", get(chat::send).post(chat::send)),
        ("/douyin/message/ws/", get(crate::ws::upgrade)),
        ("/douyin/rank/videos/", get(rank::videos).post(rank::videos)),
        ("/douyin/rank/users/", get(rank::users).post(rank::users)),
    ]
}
