//! The contract's response shapes. Every documented key is always present
//! (no `skip_serializing_if` anywhere), lists are arrays, and a refused request
//! carries the same keys with empty values.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use douyin_kit::Error;
use douyin_proto::common::{Comment, Message, User, Video};
use serde::Serialize;
use utoipa::ToSchema;

use crate::observe::AppStatus;

/// `status_code` and `status_msg` followed by the route's own keys.
#[derive(Serialize)]
pub struct Envelope<T: Serialize> {
    pub status_code: i32,
    pub status_msg: String,
    #[serde(flatten)]
    pub body: T,
}

/// A route's result: its body on success, its empty body on refusal.
pub fn reply<T: Serialize + Default>(result: Result<T, Error>) -> Response {
    match result {
        Ok(body) => {
            let mut response = Json(Envelope { status_code: 0, status_msg: "success".into(), body }).into_response();
            response.extensions_mut().insert(AppStatus(0));
            with_charset(response)
        }
        Err(error) => refuse::<T>(error),
    }
}

/// Renders a refusal with the route's keys present and empty.
pub fn refuse<T: Serialize + Default>(error: Error) -> Response {
    let status = match &error {
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::OK,
    };
    if let Error::Internal(detail) | Error::Unavailable(detail) | Error::Busy(detail) = &error {
        tracing::warn!(error = %detail, "request refused");
    }
    let body = Envelope { status_code: error.status_code(), status_msg: error.public_message(), body: T::default() };
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(AppStatus(error.status_code()));
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    with_charset(response)
}

/// The contract's content type: `application/json; charset=utf-8`.
pub(crate) fn with_charset(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

/// A refusal that carries only the status keys (extractor rejections).
pub struct Refusal(pub Error);

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        refuse::<Empty>(self.0)
    }
}

#[derive(Serialize, Default, ToSchema)]
pub struct Empty {}

/// Turns gateway paths (`/media/…`, `/static/…`) into absolute URLs.
#[derive(Clone, Debug)]
pub struct Urls {
    pub base: String,
}

impl Urls {
    pub fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') { format!("{}{url}", self.base) } else { url.to_owned() }
    }
}

#[derive(Serialize, Default, Clone, ToSchema)]
#[schema(as = User)]
pub struct UserJson {
    pub id: i64,
    pub name: String,
    pub follow_count: i64,
    pub follower_count: i64,
    pub is_follow: bool,
    pub avatar: String,
    pub background_image: String,
    pub signature: String,
    pub total_favorited: i64,
    pub work_count: i64,
    pub favorite_count: i64,
}

pub const DEFAULT_AVATAR: &str = "/static/avatar.png";
pub const DEFAULT_BACKGROUND: &str = "/static/background.jpg";

impl UserJson {
    pub fn new(user: User, urls: &Urls) -> Self {
        let or_default =
            |value: String, default: &str| urls.absolute(if value.is_empty() { default } else { value.as_str() });
        Self {
            id: user.id,
            name: user.name,
            follow_count: user.follow_count,
            follower_count: user.follower_count,
            is_follow: user.is_follow,
            avatar: or_default(user.avatar, DEFAULT_AVATAR),
            background_image: or_default(user.background_image, DEFAULT_BACKGROUND),
            signature: user.signature,
            total_favorited: user.total_favorited,
            work_count: user.work_count,
            favorite_count: user.favorite_count,
        }
    }
}

#[derive(Serialize, Default, Clone, ToSchema)]
#[schema(as = Video)]
pub struct VideoJson {
    pub id: i64,
    pub author: UserJson,
    pub play_url: String,
    pub cover_url: String,
    pub favorite_count: i64,
    pub comment_count: i64,
    pub is_favorite: bool,
    pub title: String,
}

impl VideoJson {
    pub fn new(video: Video, urls: &Urls) -> Self {
        Self {
            id: video.id,
            author: UserJson::new(video.author.unwrap_or_default(), urls),
            play_url: urls.absolute(&video.play_url),
            cover_url: urls.absolute(&video.cover_url),
            favorite_count: video.favorite_count,
            comment_count: video.comment_count,
            is_favorite: video.is_favorite,
            title: video.title,
        }
    }

    pub fn list(videos: Vec<Video>, urls: &Urls) -> Vec<Self> {
        videos.into_iter().map(|v| Self::new(v, urls)).collect()
    }
}

#[derive(Serialize, Default, Clone, ToSchema)]
#[schema(as = Comment)]
pub struct CommentJson {
    pub id: i64,
    pub user: UserJson,
    pub content: String,
    pub create_date: String,
}

impl CommentJson {
    pub fn new(comment: Comment, urls: &Urls) -> Self {
        Self {
            id: comment.id,
            user: UserJson::new(comment.user.unwrap_or_default(), urls),
            content: comment.content,
            create_date: month_day(comment.created_at_ms),
        }
    }
}

/// `MM-DD` of a Unix-milliseconds time (UTC).
pub fn month_day(ms: i64) -> String {
    let date =
        time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:02}-{:02}", u8::from(date.month()), date.day())
}

#[derive(Serialize, Default, Clone, ToSchema)]
#[schema(as = FriendUser)]
pub struct FriendJson {
    #[serde(flatten)]
    pub user: UserJson,
    pub message: String,
    #[serde(rename = "msgType")]
    pub msg_type: i64,
}

#[derive(Serialize, Default, Clone, PartialEq, Eq, Debug, ToSchema)]
#[schema(as = Message)]
pub struct MessageJson {
    pub id: i64,
    pub to_user_id: i64,
    pub from_user_id: i64,
    pub content: String,
    pub create_time: i64,
}

impl From<Message> for MessageJson {
    fn from(m: Message) -> Self {
        Self {
            id: m.id,
            to_user_id: m.to_user_id,
            from_user_id: m.from_user_id,
            content: m.content,
            create_time: m.create_time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_every_key() {
        #[derive(Serialize, Default)]
        struct Feed {
            video_list: Vec<VideoJson>,
            next_time: i64,
        }
        let response = refuse::<Feed>(Error::invalid("latest_time must be an integer"));
        assert_eq!(response.status(), StatusCode::OK);
        let json =
            serde_json::to_value(Envelope { status_code: 400, status_msg: "x".into(), body: Feed::default() }).unwrap();
        assert_eq!(json["video_list"], serde_json::json!([]));
        assert_eq!(json["next_time"], 0);
    }

    #[test]
    fn users_always_have_images_and_zero_counts() {
        let urls = Urls { base: "http://h:1".into() };
        let json =
            serde_json::to_value(UserJson::new(User { id: 3, name: "a".into(), ..Default::default() }, &urls)).unwrap();
        for key in ["follow_count", "follower_count", "total_favorited", "work_count", "favorite_count"] {
            assert_eq!(json[key], 0, "{key}");
        }
        assert_eq!(json["is_follow"], false);
        assert_eq!(json["avatar"], "http://h:1/static/avatar.png");
        assert_eq!(json["signature"], "");
    }

    #[test]
    fn friend_keys_are_flat_with_msg_type() {
        let f = FriendJson { user: UserJson { id: 1, ..Default::default() }, message: "hi".into(), msg_type: 1 };
        let json = serde_json::to_value(f).unwrap();
        assert_eq!(json["id"], 1);
        assert_eq!(json["msgType"], 1);
        assert_eq!(json["message"], "hi");
    }

    #[test]
    fn dates_are_month_day() {
        assert_eq!(month_day(0), "01-01");
        assert_eq!(month_day(1_700_000_000_000), "11-14");
    }
}
