//! The one client factory for every gRPC peer. A peer hosted in this process is
//! called through its tonic server as a tower service (no socket, same codec and
//! handlers); a remote peer through a lazily connected channel balanced over the
//! addresses its DNS name resolves to (see `discovery`). Both get the same
//! deadlines, retries for idempotent reads, and trace-context propagation.
//! Calls to another process carry a service credential (see `credential`).

mod credential;
mod discovery;
mod users;

use std::{
    collections::HashSet,
    convert::Infallible,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Duration,
};

use douyin_proto::{
    chat::chat_service_client::ChatServiceClient, counter::counter_service_client::CounterServiceClient,
    interaction::interaction_service_client::InteractionServiceClient,
    relation::relation_service_client::RelationServiceClient, user::user_service_client::UserServiceClient,
    video::video_service_client::VideoServiceClient,
};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tonic::{Status, body::Body};
use tower::{Service, ServiceExt, util::BoxCloneSyncService};

pub use credential::{MIN_SECRET_LEN, RequireCredential, ServiceKey};
pub use discovery::{REFRESH, Replicas, Resolver, SystemResolver, remote_channel, remote_channel_with};

use crate::{Config, Error, Result, Role};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The transport every generated client runs on, local or remote.
/// Its error type is `Status` (a concrete type: boxed trait-object errors here
/// trip the compiler's `Send` analysis of tonic's client futures).
pub type GrpcChannel = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Status>;

/// A client for every peer role. Cheap to clone; clone per call.
#[derive(Clone)]
pub struct Clients {
    pub user: UserServiceClient<GrpcChannel>,
    pub video: VideoServiceClient<GrpcChannel>,
    pub interaction: InteractionServiceClient<GrpcChannel>,
    pub relation: RelationServiceClient<GrpcChannel>,
    pub chat: ChatServiceClient<GrpcChannel>,
    pub counter: CounterServiceClient<GrpcChannel>,
}

/// The gRPC servers of this process, registered once they are built, so that
/// roles which call each other can be constructed in any order.
#[derive(Clone, Default)]
pub struct LocalServers {
    slots: Arc<[OnceLock<GrpcChannel>; Role::ALL.len()]>,
}

impl LocalServers {
    /// Makes `server` (a tonic generated server) callable in-process as `role`.
    pub fn register<S>(&self, role: Role, server: S)
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
        let _ = self.slots[role.index()].set(service);
    }

    fn channel(&self, role: Role) -> LocalChannel {
        LocalChannel { servers: self.clone(), role }
    }
}

/// Calls a server registered in [`LocalServers`].
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
        let server = self.servers.slots[self.role.index()].get().cloned();
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
    Ok(Clients {
        user: UserServiceClient::new(channel(Role::User)?).max_decoding_message_size(MAX_RESPONSE_BYTES),
        video: VideoServiceClient::new(channel(Role::Video)?).max_decoding_message_size(MAX_RESPONSE_BYTES),
        interaction: InteractionServiceClient::new(channel(Role::Interaction)?)
            .max_decoding_message_size(MAX_RESPONSE_BYTES),
        relation: RelationServiceClient::new(channel(Role::Relation)?).max_decoding_message_size(MAX_RESPONSE_BYTES),
        chat: ChatServiceClient::new(channel(Role::Chat)?).max_decoding_message_size(MAX_RESPONSE_BYTES),
        counter: CounterServiceClient::new(channel(Role::Counter)?).max_decoding_message_size(MAX_RESPONSE_BYTES),
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
        let limit = if path.ends_with("/Publish") { self.policy.upload_timeout } else { self.policy.timeout };
        // A call made while serving another waits no longer than that one's caller.
        let deadline = crate::deadline::remaining().map_or(limit, |left| limit.min(left));
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
    use super::is_idempotent_read;

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
