//! The one client factory for every gRPC peer. A peer hosted in this process is
//! called directly: a unary call hands its request message to the hosted
//! handler (no encoding, no HTTP/2), a streaming one goes through its tonic
//! server as a tower service (no socket, same codec and handlers). A remote
//! peer is called through a lazily connected channel balanced over the
//! addresses its DNS name resolves to (see `discovery`). Both get the same
//! deadlines and the same span and metrics per call; remote calls also retry
//! idempotent reads, propagate the trace context and carry a service
//! credential (see `credential`).

mod credential;
mod discovery;
mod users;

use std::{
    collections::HashSet,
    convert::Infallible,
    future::Future,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Duration,
};

use douyin_proto::{
    chat::{chat_service_client::ChatServiceClient, chat_service_server::ChatService},
    counter::{counter_service_client::CounterServiceClient, counter_service_server::CounterService},
    hosted::{self, Around, ChatPeer, CounterPeer, InteractionPeer, RelationPeer, Slot, UserPeer, VideoPeer},
    interaction::{
        interaction_service_client::InteractionServiceClient, interaction_service_server::InteractionService,
    },
    relation::{relation_service_client::RelationServiceClient, relation_service_server::RelationService},
    user::{user_service_client::UserServiceClient, user_service_server::UserService},
    video::{video_service_client::VideoServiceClient, video_service_server::VideoService},
};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tonic::{Status, body::Body};
use tower::{Service, ServiceExt, util::BoxCloneSyncService};
use tracing::Instrument;

pub use credential::{MIN_SECRET_LEN, RequireCredential, ServiceKey};
pub use discovery::{REFRESH, Replicas, Resolver, SystemResolver, remote_channel, remote_channel_with};

use crate::{Config, Error, Result, Role};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The transport every generated client runs on, local or remote.
/// Its error type is `Status` (a concrete type: boxed trait-object errors here
/// trip the compiler's `Send` analysis of tonic's client futures).
pub type GrpcChannel = hosted::Channel;

pub type UserClient = UserPeer<InProcess>;
pub type VideoClient = VideoPeer<InProcess>;
pub type InteractionClient = InteractionPeer<InProcess>;
pub type RelationClient = RelationPeer<InProcess>;
pub type ChatClient = ChatPeer<InProcess>;
pub type CounterClient = CounterPeer<InProcess>;

/// A client for every peer role. Cheap to clone; clone per call.
#[derive(Clone)]
pub struct Clients {
    pub user: UserClient,
    pub video: VideoClient,
    pub interaction: InteractionClient,
    pub relation: RelationClient,
    pub chat: ChatClient,
    pub counter: CounterClient,
}

/// The handlers of a role, for callers in the same process.
pub enum Handlers {
    User(Arc<dyn UserService>),
    Video(Arc<dyn VideoService>),
    Interaction(Arc<dyn InteractionService>),
    Relation(Arc<dyn RelationService>),
    Chat(Arc<dyn ChatService>),
    Counter(Arc<dyn CounterService>),
}

/// The handlers of every role of this process, once built.
#[derive(Default)]
struct HandlerSlots {
    user: Slot<dyn UserService>,
    video: Slot<dyn VideoService>,
    interaction: Slot<dyn InteractionService>,
    relation: Slot<dyn RelationService>,
    chat: Slot<dyn ChatService>,
    counter: Slot<dyn CounterService>,
}

/// The gRPC servers of this process, registered once they are built, so that
/// roles which call each other can be constructed in any order.
#[derive(Clone, Default)]
pub struct LocalServers {
    servers: Arc<[OnceLock<GrpcChannel>; Role::ALL.len()]>,
    handlers: Arc<HandlerSlots>,
}

impl LocalServers {
    /// Makes `server` (a tonic generated server) and its `handlers` callable
    /// in-process as `role`.
    pub fn register<S>(&self, role: Role, server: S, handlers: Handlers)
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let server = tower::Layer::layer(&crate::telemetry::GrpcServerLayer, server);
        let service = BoxCloneSyncService::new(server.map_err(|never: Infallible| -> Status { match never {} }));
        let _ = self.servers[role.index()].set(service);
        let slots = &self.handlers;
        match handlers {
            Handlers::User(h) => fill(&slots.user, h),
            Handlers::Video(h) => fill(&slots.video, h),
            Handlers::Interaction(h) => fill(&slots.interaction, h),
            Handlers::Relation(h) => fill(&slots.relation, h),
            Handlers::Chat(h) => fill(&slots.chat, h),
            Handlers::Counter(h) => fill(&slots.counter, h),
        }
    }

    fn channel(&self, role: Role) -> LocalChannel {
        LocalChannel { servers: self.clone(), role }
    }
}

/// Registers `handlers` unless some are already (the first registration wins).
fn fill<S: ?Sized>(slot: &Slot<S>, handlers: Arc<S>) {
    let _ = slot.set(handlers);
}

/// Calls a server registered in [`LocalServers`] through its tonic service.
#[derive(Clone)]
struct LocalChannel {
    servers: LocalServers,
    role: Role,
}

impl Service<http::Request<Body>> for LocalChannel {
    type Response = http::Response<Body>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let server = self.servers.servers[self.role.index()].get().cloned();
        let role = self.role;
        Box::pin(async move {
            match server {
                Some(server) => server.oneshot(req).await,
                None => {
                    tracing::error!(%role, "in-process server is not registered");
                    Err(Status::unavailable("service temporarily unavailable"))
                }
            }
        })
    }
}

/// A unary call to a handler of this process: the deadline a remote call
/// would send (the handler sees it as its own), one server span and the
/// per-RPC metrics, as the server layer records them for a remote call.
#[derive(Clone, Copy, Debug)]
pub struct InProcess {
    policy: CallPolicy,
}

impl Around for InProcess {
    fn call<T, F>(self, path: &'static str, call: F) -> hosted::BoxFuture<Result<T, Status>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Status>> + Send + 'static,
    {
        let deadline = self.policy.deadline(path);
        let span = crate::telemetry::hosted_span(path);
        let started = std::time::Instant::now();
        Box::pin(async move {
            let until = tokio::time::Instant::now() + deadline;
            let result = match tokio::time::timeout_at(until, crate::deadline::scope(Some(until), call))
                .instrument(span.clone())
                .await
            {
                Ok(result) => result,
                Err(_) => Err(Status::deadline_exceeded("peer did not answer in time")),
            };
            crate::telemetry::record_hosted(&span, path, result.as_ref().err(), started.elapsed());
            result
        })
    }
}

/// Largest answer a client accepts. Lists are never cut, so a user with tens of
/// thousands of followers or a long conversation is one large message; tonic's 4 MiB
/// default would turn those into errors.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The name a process signs its calls with: `douyin-<role>` for one role,
/// `douyin` for several.
pub fn issuer(roles: &[Role]) -> String {
    match roles {
        [one] => format!("douyin-{one}"),
        _ => "douyin".to_owned(),
    }
}

/// Builds the clients of a process hosting `roles`: roles it hosts are called
/// in-process, the others at their endpoints with credentials signed by `key`
/// (required as soon as one peer is remote).
pub fn clients(config: &Config, roles: &[Role], local: &LocalServers, key: Option<&ServiceKey>) -> Result<Clients> {
    let policy =
        CallPolicy { timeout: config.rpc_timeout(), upload_timeout: Duration::from_secs(config.upload_timeout_secs) };
    let hosted: HashSet<Role> = roles.iter().copied().collect();
    let issuer = issuer(roles);
    let in_process = InProcess { policy };
    let channel = |role: Role| -> Result<GrpcChannel> {
        if hosted.contains(&role) {
            return Ok(policy.wrap(local.channel(role)));
        }
        let key = key.ok_or_else(|| {
            Error::invalid(format!("DOUYIN_SERVICE_SECRET is not set; it is needed to call the {role} role"))
        })?;
        let endpoint = config.endpoint(role).map(str::to_owned).unwrap_or_else(|| role.default_endpoint());
        let inner = remote_channel(&endpoint, Duration::from_millis(config.connect_timeout_ms))?;
        let credential = credential::Credential::new(key.clone(), &issuer, role);
        Ok(policy.wrap(credential::WithCredential { inner, credential }))
    };
    // The handlers of a hosted role are called directly; the rest through its client.
    macro_rules! peer {
        ($peer:ident, $client:ident, $role:expr, $slot:ident) => {{
            let client = $client::new(channel($role)?).max_decoding_message_size(MAX_RESPONSE_BYTES);
            if hosted.contains(&$role) {
                $peer::hosted(client, local.handlers.$slot.clone(), in_process)
            } else {
                $peer::remote(client)
            }
        }};
    }
    Ok(Clients {
        user: peer!(UserPeer, UserServiceClient, Role::User, user),
        video: peer!(VideoPeer, VideoServiceClient, Role::Video, video),
        interaction: peer!(InteractionPeer, InteractionServiceClient, Role::Interaction, interaction),
        relation: peer!(RelationPeer, RelationServiceClient, Role::Relation, relation),
        chat: peer!(ChatPeer, ChatServiceClient, Role::Chat, chat),
        counter: peer!(CounterPeer, CounterServiceClient, Role::Counter, counter),
    })
}

/// Methods that only read (marked so where the protobuf defines them), so a
/// failed attempt may be repeated.
fn is_idempotent_read(path: &str) -> bool {
    douyin_proto::NO_SIDE_EFFECTS.contains(&path)
}

#[derive(Clone, Copy, Debug)]
struct CallPolicy {
    timeout: Duration,
    upload_timeout: Duration,
}

impl CallPolicy {
    /// How long a call to `path` may take: the policy's limit, or less when
    /// the call being served has less left.
    fn deadline(self, path: &str) -> Duration {
        let limit = if path.ends_with("/Publish") { self.upload_timeout } else { self.timeout };
        crate::deadline::remaining().map_or(limit, |left| limit.min(left))
    }

    fn wrap<S>(self, inner: S) -> GrpcChannel
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        BoxCloneSyncService::new(Policed { inner, policy: self })
    }
}

/// Applies deadlines, retries reads on transport failures, propagates trace
/// context, and turns transport failures into `Unavailable` statuses that name
/// no address.
#[derive(Clone)]
struct Policed<S> {
    inner: S,
    policy: CallPolicy,
}

const RETRIES: u32 = 2;

impl<S> Service<http::Request<Body>> for Policed<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let path = req.uri().path().to_owned();
        // A call made while serving another waits no longer than that one's caller.
        let deadline = self.policy.deadline(&path);
        let span = crate::telemetry::client_span(&path);
        span.in_scope(|| crate::telemetry::inject_context(req.headers_mut()));
        req.headers_mut().insert("grpc-timeout", grpc_timeout(deadline));
        let outcome_span = span.clone();
        let call = async move {
            let attempt = async move {
                if !is_idempotent_read(&path) {
                    return call_once(inner, req).await;
                }
                let (parts, body) = req.into_parts();
                let bytes =
                    body.collect().await.map_err(|e| Status::internal(format!("request body: {e}")))?.to_bytes();
                let mut backoff = Duration::from_millis(50);
                let mut attempt = 0;
                let started = tokio::time::Instant::now();
                loop {
                    let mut parts = parts.clone();
                    // Each attempt tells the peer the time the call has left.
                    parts.headers.insert("grpc-timeout", grpc_timeout(deadline.saturating_sub(started.elapsed())));
                    let req = http::Request::from_parts(parts, Body::new(http_body_util::Full::new(bytes.clone())));
                    match call_once(inner.clone(), req).await {
                        Err(error) if attempt < RETRIES => {
                            tracing::debug!(%error, %path, attempt, "retrying read");
                            tokio::time::sleep(backoff).await;
                            backoff *= 4;
                            attempt += 1;
                        }
                        other => return other,
                    }
                }
            };
            let result = match tokio::time::timeout(deadline, attempt).await {
                Ok(result) => result,
                Err(_) => Err(Status::deadline_exceeded("peer did not answer in time")),
            };
            crate::telemetry::record_client_outcome(&outcome_span, &result);
            result
        };
        Box::pin(tracing::Instrument::instrument(call, span))
    }
}

async fn call_once<S>(inner: S, req: http::Request<Body>) -> Result<http::Response<Body>, Status>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Error: Into<BoxError>,
{
    inner.oneshot(req).await.map_err(|e| {
        let e: BoxError = e.into();
        match e.downcast::<Status>() {
            Ok(status) => *status,
            Err(e) => {
                tracing::warn!(error = %e, "peer call failed");
                Status::unavailable("service temporarily unavailable")
            }
        }
    })
}

fn grpc_timeout(d: Duration) -> http::HeaderValue {
    let millis = d.as_millis().min(99_999_999);
    http::HeaderValue::from_str(&format!("{millis}m")).unwrap_or_else(|_| http::HeaderValue::from_static("5S"))
}

/// Serves `routes` on `listener` until `shutdown`, then lets in-flight calls
/// finish (the caller bounds the wait by the grace period). Every call but a
/// health check needs a credential signed with `key`.
pub async fn serve(
    routes: tonic::service::Routes,
    listener: tokio::net::TcpListener,
    key: ServiceKey,
    shutdown: crate::shutdown::Shutdown,
) -> Result<()> {
    // Accepted connections need TCP_NODELAY set here: the server builder's
    // setting only applies to listeners it binds itself. Without it, Nagle and
    // delayed ACKs add ~40 ms to responses written in several frames.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .layer(crate::telemetry::GrpcServerLayer)
        .layer(RequireCredential::new(key))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.wait())
        .await
        .map_err(|e| Error::internal(format!("grpc server: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_process(timeout_ms: u64) -> InProcess {
        InProcess {
            policy: CallPolicy { timeout: Duration::from_millis(timeout_ms), upload_timeout: Duration::from_secs(60) },
        }
    }

    #[tokio::test]
    async fn a_hosted_handler_runs_under_the_callers_deadline() {
        let path = "/douyin.counter.v1.CounterService/Counts";
        let left = in_process(5_000).call(path, async { Ok(crate::deadline::remaining()) }).await.unwrap();
        assert!(left.is_some_and(|left| left <= Duration::from_secs(5)), "{left:?}");
        // Inside a call with less time left, the handler gets what is left, not the policy's limit.
        let nested = crate::deadline::scope(Some(tokio::time::Instant::now() + Duration::from_millis(800)), async {
            in_process(5_000).call(path, async { Ok(crate::deadline::remaining()) }).await
        });
        assert!(nested.await.unwrap().is_some_and(|left| left <= Duration::from_millis(800)));
        let slow = in_process(50).call(path, async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        });
        assert_eq!(slow.await.unwrap_err().code(), tonic::Code::DeadlineExceeded);
    }

    #[tokio::test]
    async fn a_hosted_role_not_yet_registered_is_unavailable() {
        let local = LocalServers::default();
        let client =
            CounterServiceClient::new(CallPolicy::wrap(in_process(1_000).policy, local.channel(Role::Counter)));
        let mut peer = CounterPeer::hosted(client, local.handlers.counter.clone(), in_process(1_000));
        let refused = peer.counts(douyin_proto::counter::CountsRequest::default()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn reads_are_retried_and_writes_are_not() {
        assert!(is_idempotent_read("/douyin.user.v1.UserService/GetUsers"));
        assert!(is_idempotent_read("/douyin.chat.v1.ChatService/Recent"));
        assert!(is_idempotent_read("/douyin.counter.v1.CounterService/Counts"));
        assert!(!is_idempotent_read("/douyin.user.v1.UserService/Register"));
        assert!(!is_idempotent_read("/douyin.chat.v1.ChatService/Send"));
        assert!(!is_idempotent_read("/douyin.counter.v1.CounterService/Refresh"));
        assert!(!is_idempotent_read("/douyin.video.v1.VideoService/Publish"));
        assert!(!is_idempotent_read("/other.Service/GetUsers"), "the whole path is the mark");
        assert_eq!(douyin_proto::NO_SIDE_EFFECTS.len(), 19, "{:?}", douyin_proto::NO_SIDE_EFFECTS);
    }
}
