//! `GET /openapi.json`: the app contract as an OpenAPI 3 document. Response
//! schemas come from the structs the routes serialize (`ToSchema`), so a key
//! added or renamed there shows here; a test checks that every route the
//! router serves is documented.

use axum::{Json, response::IntoResponse};
use utoipa::{
    ToSchema,
    openapi::{
        AllOfBuilder, ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, KnownFormat, ObjectBuilder, OpenApi,
        OpenApiBuilder, PathItem, PathsBuilder, Ref, RefOr, Required, ResponseBuilder, ResponsesBuilder, Schema,
        SchemaFormat, Type,
        header::HeaderBuilder,
        path::{OperationBuilder, ParameterBuilder, ParameterIn},
        request_body::RequestBodyBuilder,
    },
};

use crate::{
    reply::{CommentJson, Empty, FriendJson, MessageJson, UserJson, VideoJson},
    routes::{
        chat::MessageListBody,
        interaction::{CommentBody, CommentListBody},
        path,
        relation::{FriendListBody, UserListBody},
        user::{SessionBody, UserBody},
        video::{FeedBody, VideoListBody},
    },
};

#[derive(Clone, Copy)]
enum Ty {
    Int,
    Text,
}

/// A query parameter: name, type, whether the contract requires it.
type Param = (&'static str, Ty, bool);

/// One documented operation.
struct Route {
    path: &'static str,
    method: HttpMethod,
    summary: &'static str,
    params: &'static [Param],
    /// The route's keys besides the status (a schema in the components).
    body: &'static str,
}

const TOKEN: Param = ("token", Ty::Text, false);
const USER_ID: Param = ("user_id", Ty::Int, true);
const ACTION: Param = ("action_type", Ty::Int, true);

/// The contract's routes, in its order, then the extensions.
const ROUTES: &[Route] = &[
    Route {
        path: path::FEED,
        method: HttpMethod::Get,
        summary: "Latest videos, newest first",
        params: &[("latest_time", Ty::Int, false), TOKEN],
        body: "FeedBody",
    },
    Route {
        path: path::REGISTER,
        method: HttpMethod::Post,
        summary: "Create an account",
        params: &[("username", Ty::Text, true), ("password", Ty::Text, true)],
        body: "SessionBody",
    },
    Route {
        path: path::LOGIN,
        method: HttpMethod::Post,
        summary: "Sign in",
        params: &[("username", Ty::Text, true), ("password", Ty::Text, true)],
        body: "SessionBody",
    },
    Route {
        path: path::USER,
        method: HttpMethod::Get,
        summary: "A user's profile (the caller's without user_id)",
        params: &[("user_id", Ty::Int, false), TOKEN],
        body: "UserBody",
    },
    Route {
        path: path::PUBLISH,
        method: HttpMethod::Post,
        summary: "Upload a video (multipart)",
        params: &[TOKEN],
        body: "Empty",
    },
    Route {
        path: path::PUBLISH_LIST,
        method: HttpMethod::Get,
        summary: "Videos published by user_id",
        params: &[USER_ID, TOKEN],
        body: "VideoListBody",
    },
    Route {
        path: path::FAVORITE,
        method: HttpMethod::Post,
        summary: "Like (1) or unlike (2) a video",
        params: &[TOKEN, ("video_id", Ty::Int, true), ACTION],
        body: "Empty",
    },
    Route {
        path: path::FAVORITE_LIST,
        method: HttpMethod::Get,
        summary: "Videos liked by user_id",
        params: &[USER_ID, TOKEN],
        body: "VideoListBody",
    },
    Route {
        path: path::COMMENT,
        method: HttpMethod::Post,
        summary: "Post (1) or delete (2) a comment",
        params: &[
            TOKEN,
            ("video_id", Ty::Int, true),
            ACTION,
            ("comment_text", Ty::Text, false),
            ("comment_id", Ty::Int, false),
        ],
        body: "CommentBody",
    },
    Route {
        path: path::COMMENT_LIST,
        method: HttpMethod::Get,
        summary: "Comments of a video, newest first",
        params: &[("video_id", Ty::Int, true), TOKEN],
        body: "CommentListBody",
    },
    Route {
        path: path::FOLLOW,
        method: HttpMethod::Post,
        summary: "Follow (1) or unfollow (2) a user",
        params: &[TOKEN, ("to_user_id", Ty::Int, true), ACTION],
        body: "Empty",
    },
    Route {
        path: path::FOLLOW_LIST,
        method: HttpMethod::Get,
        summary: "Users user_id follows",
        params: &[USER_ID, TOKEN],
        body: "UserListBody",
    },
    Route {
        path: path::FOLLOWER_LIST,
        method: HttpMethod::Get,
        summary: "Users following user_id",
        params: &[USER_ID, TOKEN],
        body: "UserListBody",
    },
    Route {
        path: path::FRIEND_LIST,
        method: HttpMethod::Get,
        summary: "The caller's friends with the latest message",
        params: &[("user_id", Ty::Int, false), TOKEN],
        body: "FriendListBody",
    },
    Route {
        path: path::CHAT,
        method: HttpMethod::Get,
        summary: "Conversation with to_user_id, oldest first",
        params: &[TOKEN, ("to_user_id", Ty::Int, true), ("pre_msg_time", Ty::Int, false)],
        body: "MessageListBody",
    },
    Route {
        path: path::MESSAGE,
        method: HttpMethod::Post,
        summary: "Send a message (action_type 1)",
        params: &[TOKEN, ("to_user_id", Ty::Int, true), ACTION, ("content", Ty::Text, true)],
        body: "Empty",
    },
    Route {
        path: path::MESSAGE_WS,
        method: HttpMethod::Get,
        summary: "Live chat push (WebSocket upgrade)",
        params: &[TOKEN],
        body: "Empty",
    },
    Route {
        path: path::RANK_VIDEOS,
        method: HttpMethod::Get,
        summary: "Most-liked videos",
        params: &[("limit", Ty::Int, false), TOKEN],
        body: "VideoListBody",
    },
    Route {
        path: path::RANK_USERS,
        method: HttpMethod::Get,
        summary: "Most-followed users",
        params: &[("limit", Ty::Int, false), TOKEN],
        body: "UserListBody",
    },
];

pub async fn serve() -> impl IntoResponse {
    Json(document())
}

fn ty(t: Ty) -> ObjectBuilder {
    match t {
        Ty::Int => {
            ObjectBuilder::new().schema_type(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        }
        Ty::Text => ObjectBuilder::new().schema_type(Type::String),
    }
}

fn status_schema() -> Schema {
    ObjectBuilder::new()
        .property(
            "status_code",
            ObjectBuilder::new().schema_type(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32))),
        )
        .required("status_code")
        .property("status_msg", ty(Ty::Text))
        .required("status_msg")
        .into()
}

fn json(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn status_only(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", json(Ref::from_schema_name("Status")))
        .build()
}

fn operation(route: &Route) -> utoipa::openapi::path::Operation {
    let envelope = AllOfBuilder::new().item(Ref::from_schema_name("Status")).item(Ref::from_schema_name(route.body));
    let ok = if route.path == path::MESSAGE_WS {
        ResponsesBuilder::new()
            .response("101", ResponseBuilder::new().description("Switched to WebSocket; each frame is a Message"))
            .response("default", status_only("Upgrade refused (HTTP status = status_code)"))
    } else {
        ResponsesBuilder::new().response(
            "200",
            ResponseBuilder::new()
                .description("Success (status_code 0) or a refusal (status_code != 0) with every key present")
                .content("application/json", json(envelope)),
        )
    };
    let retry = HeaderBuilder::new().schema(ty(Ty::Int)).description(Some("seconds until the window ends")).build();
    let responses = ok.response("413", status_only("Body larger than the limit")).response(
        "429",
        ResponseBuilder::new()
            .description("Rate limited")
            .header("Retry-After", retry)
            .content("application/json", json(Ref::from_schema_name("Status"))),
    );
    let mut op = OperationBuilder::new().summary(Some(route.summary)).responses(responses.build());
    for (name, t, required) in route.params {
        let mut p = ParameterBuilder::new()
            .name(*name)
            .parameter_in(ParameterIn::Query)
            .required(if *required { Required::True } else { Required::False })
            .schema(Some(ty(*t)));
        if *name == "token" {
            p = p.description(Some(
                "JWT; may instead come as Authorization: Bearer. Routes acting for a user refuse without it.",
            ));
        }
        op = op.parameter(p);
    }
    if route.path == path::PUBLISH {
        let form = ObjectBuilder::new()
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary))),
            )
            .required("data")
            .property("title", ty(Ty::Text))
            .required("title")
            .property("token", ty(Ty::Text));
        op = op.request_body(Some(
            RequestBodyBuilder::new().required(Some(Required::True)).content("multipart/form-data", json(form)).build(),
        ));
    }
    op.build()
}

fn with<T: ToSchema>(mut components: ComponentsBuilder) -> ComponentsBuilder {
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    components = components.schema_from::<T>();
    for (name, schema) in nested {
        components = components.schema(name, schema);
    }
    components
}

/// The whole document.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for route in ROUTES {
        paths = paths.path(route.path, PathItem::new(route.method.clone(), operation(route)));
    }
    let mut components = ComponentsBuilder::new().schema("Status", status_schema());
    components = with::<UserJson>(components);
    components = with::<VideoJson>(components);
    components = with::<CommentJson>(components);
    components = with::<FriendJson>(components);
    components = with::<MessageJson>(components);
    components = with::<Empty>(components);
    components = with::<FeedBody>(components);
    components = with::<SessionBody>(components);
    components = with::<UserBody>(components);
    components = with::<VideoListBody>(components);
    components = with::<CommentBody>(components);
    components = with::<CommentListBody>(components);
    components = with::<UserListBody>(components);
    components = with::<FriendListBody>(components);
    components = with::<MessageListBody>(components);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("douyin app API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Every route also answers the other method (GET/POST), the path without the trailing slash, and parameters in an urlencoded, multipart or JSON body.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_router_is_documented() {
        let doc = serde_json::to_value(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut served: Vec<&str> = crate::routes::all().into_iter().map(|(path, _)| path).collect();
        served.push(path::PUBLISH);
        for path in served {
            assert!(paths.contains_key(path), "{path} is served but not in /openapi.json");
        }
        assert_eq!(paths.len(), ROUTES.len());
    }

    #[test]
    fn every_key_is_required_and_schemas_resolve() {
        let doc = serde_json::to_value(document()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for (name, schema) in schemas {
            let Some(props) = schema["properties"].as_object() else {
                continue;
            };
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            for key in props.keys() {
                assert!(required.contains(&key.as_str()), "{name}.{key} is not required");
            }
        }
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling reference to {name}");
        }
        let friend = serde_json::to_string(&schemas["FriendUser"]).unwrap();
        assert!(friend.contains("msgType") && friend.contains("#/components/schemas/User"), "{friend}");
        assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
    }
}
