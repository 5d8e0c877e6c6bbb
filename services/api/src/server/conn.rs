//! One connection: served by hyper (HTTP/1.1 with upgrades, or h2c), watched
//! for its deadlines. Between requests, a connection that starts a request
//! must finish its headers within the header timeout (also its first one,
//! counted from the accept); any connection that moves no byte for the idle
//! timeout is closed.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, HttpBody},
    extract::ConnectInfo,
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::watch,
};
use tower::ServiceExt;

use super::{Admitted, Settings};

/// What a connection has been doing, in milliseconds since it was accepted.
struct Activity {
    start: Instant,
    /// Last byte read or written.
    last: AtomicU64,
    /// When bytes of a request head started arriving with no request in
    /// progress; `u64::MAX` when none are awaited.
    head_since: AtomicU64,
    /// Requests whose response has not been sent to its end.
    in_flight: AtomicUsize,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn touched(&self, read: bool) {
        let now = self.now();
        self.last.store(now, Ordering::Relaxed);
        if read && self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_since.compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
    }

    fn request_ended(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Why the connection is over its time, or when to look again.
    fn deadline(&self, settings: &Settings) -> Result<Duration, &'static str> {
        let now = self.now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE);
        let idle_at = self.last.load(Ordering::Relaxed).saturating_add(ms(settings.idle_timeout));
        let head = self.head_since.load(Ordering::Acquire);
        let head_at = if head == NONE || self.in_flight.load(Ordering::Acquire) > 0 {
            NONE
        } else {
            head.saturating_add(ms(settings.header_timeout))
        };
        if now >= head_at {
            return Err("request headers took too long");
        }
        if now >= idle_at {
            return Err("idle");
        }
        Ok(Duration::from_millis(head_at.min(idle_at) - now))
    }
}

/// The socket, noting every byte that moves; it holds the connection's place
/// in the limits until it is dropped.
struct Tracked {
    tcp: TcpStream,
    activity: Arc<Activity>,
    _admitted: Admitted,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touched(true);
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.tcp).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touched(false);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Marks a request ended when its response body is done (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that keeps its request in flight until it is sent.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one admitted connection until it ends, times out, or the server
/// stops (then it finishes what is in flight and closes).
pub async fn run(
    router: Router,
    tcp: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    settings: Settings,
    mut stopped: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last: AtomicU64::new(0),
        head_since: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let io = TokioIo::new(Tracked { tcp, activity: activity.clone(), _admitted: admitted });
    let watched = activity.clone();
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        watched.request_started();
        let in_flight = InFlight(watched.clone());
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            let response = router.oneshot(request.map(Body::new)).await?;
            Ok::<_, std::convert::Infallible>(
                response.map(|inner| Body::new(TrackedBody { inner, _in_flight: in_flight })),
            )
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut draining = *stopped.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        let wait = match activity.deadline(&settings) {
            Ok(wait) => wait,
            Err(why) => {
                tracing::debug!(%peer, why, "connection closed");
                return;
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            changed = stopped.changed(), if !draining => {
                if changed.is_err() || *stopped.borrow() {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}
