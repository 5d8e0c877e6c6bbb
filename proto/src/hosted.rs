//! Calls to a service hosted in the same process. A peer (`VideoPeer`, …,
//! generated for every service) hands a unary call's request message to the
//! hosted server's handler as it is, with no protobuf encoding, HTTP/2 framing
//! or decoding on either side; what the transport would have done around the
//! call (deadline, span, metrics) is the caller's [`Around`]. A peer of a
//! service hosted elsewhere, and every streaming call, goes through the
//! generated client.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
};

use tonic::Status;

/// The transport the generated clients run on, in this process or to another.
pub type Channel =
    tower::util::BoxCloneSyncService<http::Request<tonic::body::Body>, http::Response<tonic::body::Body>, Status>;

/// Where a hosted service's handlers are registered once built, so that
/// services calling each other can be built in any order.
pub type Slot<S> = Arc<OnceLock<Arc<S>>>;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What happens around a call to a hosted handler, in place of a transport.
pub trait Around: Clone + Send + Sync + 'static {
    /// Runs `call`, the handler of `path` (`/package.Service/Method`). The
    /// future is boxed: an opaque one here makes the compiler fail to prove
    /// `Send` for the async functions that await a peer.
    fn call<T, F>(self, path: &'static str, call: F) -> BoxFuture<Result<T, Status>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Status>> + Send + 'static;
}

/// The handlers of a hosted service, or `Unavailable` before they are registered.
pub fn served<S: ?Sized>(server: Option<Arc<S>>) -> Result<Arc<S>, Status> {
    server.ok_or_else(|| Status::unavailable("service temporarily unavailable"))
}

include!(concat!(env!("OUT_DIR"), "/peers.rs"));
