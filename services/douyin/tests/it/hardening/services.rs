//! Internal gRPC: `serve all` opens no gRPC listener unless asked to, and a
//! listener answers nothing but health checks without a service credential
//! signed for the role it calls.

use std::time::{Duration, Instant};

use douyin_kit::{Role, config::ListenAddr, shutdown};
use douyin_proto::{
    chat::{HistoryRequest, SendRequest, chat_service_client::ChatServiceClient},
    common::Ids,
    user::{GetUsersRequest, user_service_client::UserServiceClient},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tonic::{Code, Request, transport::Channel};

use super::{b64, figure, now};
use crate::common::{self, SERVICE_SECRET, TestApp, process::command};

fn credential(key: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(key)).unwrap()
}

/// Every kind of credential a listener must refuse for the chat role, named;
/// None sends no `authorization` at all.
fn forged_credentials(session_token: &str) -> Vec<(&'static str, Option<String>)> {
    let t = now();
    let chat = |iat: u64, exp: u64| json!({"iss": "douyin-api", "aud": "chat", "iat": iat, "exp": exp});
    vec![
        ("no credential", None),
        ("empty bearer", Some(String::new())),
        ("wrong key", Some(credential(b"not-the-service-secret-0123456789abcdef", chat(t, t + 60)))),
        (
            "another audience",
            Some(credential(
                SERVICE_SECRET.as_bytes(),
                json!({"iss": "douyin-api", "aud": "user", "iat": t, "exp": t + 60}),
            )),
        ),
        ("expired", Some(credential(SERVICE_SECRET.as_bytes(), chat(t - 600, t - 300)))),
        ("no expiry", Some(credential(SERVICE_SECRET.as_bytes(), json!({"iss": "douyin-api", "aud": "chat"})))),
        (
            "unknown issuer",
            Some(credential(
                SERVICE_SECRET.as_bytes(),
                json!({"iss": "mallory", "aud": "chat", "iat": t, "exp": t + 60}),
            )),
        ),
        (
            "alg none",
            Some(format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(chat(t, t + 60).to_string().as_bytes()))),
        ),
        ("a user's session token", Some(session_token.to_owned())),
    ]
}

fn request<T>(auth: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(auth) = auth {
        request.metadata_mut().insert("authorization", format!("Bearer {auth}").parse().unwrap());
    }
    request
}

async fn channel(app: &TestApp) -> Channel {
    Channel::from_shared(format!("http://{}", app.grpc_addr)).unwrap().connect().await.unwrap()
}

async fn befriend(app: &TestApp, (a, ta): &(i64, String), (b, tb): &(i64, String)) {
    for (token, to) in [(ta, b), (tb, a)] {
        let reply = app
            .post_query(
                "/douyin/relation/action/",
                &[("token", token), ("to_user_id", &to.to_string()), ("action_type", "1")],
            )
            .await;
        assert_eq!(reply["status_code"], 0, "{reply}");
    }
}

async fn messages(app: &TestApp, token: &str, peer: i64) -> Vec<Value> {
    let reply = app.get("/douyin/message/chat/", &[("token", token), ("to_user_id", &peer.to_string())]).await;
    assert_eq!(reply["status_code"], 0, "{reply}");
    reply["message_list"].as_array().unwrap().clone()
}

#[tokio::test]
async fn serve_all_opens_no_grpc_listener_unless_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, schema) = common::test_config(dir.path()).await;
    for (grpc_addr, expected) in [(None, None), (Some(ListenAddr::Port(0)), Some(ListenAddr::LOOPBACK))] {
        config.grpc_addr = grpc_addr;
        let (trigger, stop) = shutdown::channel();
        let running = douyin::start(config.clone(), &Role::ALL, stop).await.expect("app starts");
        assert_eq!(running.grpc_addr.map(|a| a.ip()), expected, "grpc_addr {grpc_addr:?}");
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(10), running.wait()).await.expect("stops").unwrap();
    }
    if let Some((server, name)) = &schema {
        common::drop_schema(server, name).await;
    }
}

#[tokio::test]
async fn internal_calls_need_a_credential_for_the_role_they_call() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    befriend(&app, &alice, &bob).await;
    let sent = app
        .post_query(
            "/douyin/message/action/",
            &[("token", &alice.1), ("to_user_id", &bob.0.to_string()), ("action_type", "1"), ("content", "private")],
        )
        .await;
    assert_eq!(sent["status_code"], 0, "{sent}");

    let mut chat = ChatServiceClient::new(channel(&app).await);
    let mut user = UserServiceClient::new(channel(&app).await);
    let history = || HistoryRequest { user_id: alice.0, peer_id: bob.0, after_ms: 0 };
    let (mut attempts, mut refused) = (0, 0);
    for (what, auth) in forged_credentials(&alice.1) {
        let auth = auth.as_deref();
        let calls = [
            ("History", chat.history(request(auth, history())).await.map(|_| ())),
            (
                "Send",
                chat.send(request(
                    auth,
                    SendRequest {
                        from_user_id: bob.0,
                        to_user_id: alice.0,
                        content: "forged".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(|_| ()),
            ),
        ];
        for (method, result) in calls {
            attempts += 1;
            match result {
                Err(status) if status.code() == Code::Unauthenticated => refused += 1,
                other => panic!("{method} with {what}: {other:?}"),
            }
        }
    }
    for result in [
        user.get_users(request(None, GetUsersRequest { ids: vec![alice.0], ..Default::default() })).await.map(|_| ()),
        user.existing_users(request(None, Ids { ids: vec![alice.0] })).await.map(|_| ()),
    ] {
        attempts += 1;
        match result {
            Err(status) if status.code() == Code::Unauthenticated => refused += 1,
            other => panic!("user role without a credential: {other:?}"),
        }
    }
    figure("grpc-refused", format!("{refused}/{attempts}"));
    assert_eq!(refused, attempts);

    // Nothing was sent, the health service still answers without one, and a
    // credential signed for the chat role reads the conversation.
    assert_eq!(messages(&app, &alice.1, bob.0).await.len(), 1, "a refused call changed the conversation");
    assert!(douyin::health_check(&format!("http://{}", app.grpc_addr), "").await.unwrap());
    let valid = credential(
        SERVICE_SECRET.as_bytes(),
        json!({"iss": "douyin-api", "aud": "chat", "iat": now(), "exp": now() + 60}),
    );
    let reply = chat.history(request(Some(&valid), history())).await.expect("a valid credential is accepted");
    assert_eq!(reply.into_inner().messages.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn serve_all_without_a_service_secret_answers_only_health() {
    let app = TestApp::spawn_with(|c| c.service_secret = None).await;
    let (alice, _) = app.register("alice").await;
    let mut user = UserServiceClient::new(channel(&app).await);
    let signed = credential(
        SERVICE_SECRET.as_bytes(),
        json!({"iss": "douyin-api", "aud": "user", "iat": now(), "exp": now() + 60}),
    );
    for auth in [None, Some(signed.as_str())] {
        let status = user.existing_users(request(auth, Ids { ids: vec![alice] })).await.expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    assert!(douyin::health_check(&format!("http://{}", app.grpc_addr), "").await.unwrap());
    app.stop().await;
}

#[tokio::test]
async fn split_roles_refuse_to_start_without_a_service_secret() {
    let dir = tempfile::tempdir().unwrap();
    for secret in [None, Some("too-short")] {
        let mut env: Vec<(String, String)> = vec![
            ("DOUYIN_DATA_DIR".into(), dir.path().display().to_string()),
            ("DOUYIN_GRPC_ADDR".into(), "127.0.0.1:0".into()),
            ("DOUYIN_ADMIN_ADDR".into(), "127.0.0.1:0".into()),
        ];
        if let Some(secret) = secret {
            env.push(("DOUYIN_SERVICE_SECRET".into(), secret.into()));
        }
        let mut child = command(&env).args(["serve", "user"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve user with secret {secret:?} kept running");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{secret:?}: {stderr}");
        assert!(stderr.contains("DOUYIN_SERVICE_SECRET"), "{secret:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_process_with_another_service_secret_gets_no_answer_but_no_user_is_blamed() {
    let dir = tempfile::tempdir().unwrap();
    let (config, schema) = common::test_config(dir.path()).await;
    let (roles_trigger, stop) = shutdown::channel();
    let roles = douyin::start(config.clone(), &Role::GRPC, stop).await.expect("roles start");
    let endpoint = format!("http://{}", roles.grpc_addr.unwrap());
    let roles_task = tokio::spawn(roles.wait());

    let mut gateway = config.clone();
    gateway.database_url = Some("sqlite::memory:".into());
    gateway.service_secret = Some("another-deployments-service-secret-0123456789".into());
    for role in Role::GRPC {
        let slot = match role {
            Role::User => &mut gateway.user_endpoint,
            Role::Video => &mut gateway.video_endpoint,
            Role::Interaction => &mut gateway.interaction_endpoint,
            Role::Relation => &mut gateway.relation_endpoint,
            Role::Chat => &mut gateway.chat_endpoint,
            Role::Counter => &mut gateway.counter_endpoint,
            Role::Api => continue,
        };
        *slot = Some(endpoint.clone());
    }
    let (gateway_trigger, stop) = shutdown::channel();
    let gateway = douyin::start(gateway, &[Role::Api], stop).await.expect("gateway starts");
    let base = format!("http://{}", gateway.http_addr.unwrap());
    let gateway_task = tokio::spawn(gateway.wait());

    let http = reqwest::Client::new();
    let register = format!("{base}/douyin/user/register/?username=alice&password=secret123");
    let reply = common::json(http.post(&register).send().await.unwrap()).await;
    assert_eq!(reply["status_code"], 503, "{reply}");
    assert_eq!(reply["status_msg"], "service temporarily unavailable", "{reply}");

    for (trigger, task) in [(gateway_trigger, gateway_task), (roles_trigger, roles_task)] {
        trigger.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    if let Some((server, name)) = &schema {
        common::drop_schema(server, name).await;
    }
}
