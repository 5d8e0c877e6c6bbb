//! The gateway's edge: open WebSocket sessions and the chat messages pushed
//! to them or dropped, uploads in progress, their bytes and refusals, and
//! requests refused by a rate limit.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use super::METRICS;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

/// The gateway's rate limits, by the names their refusals are counted under.
pub const LIMITS: [&str; 7] = ["ip", "user", "register", "publish", "login-account", "login-ip", "connections"];

/// Reasons an upload is refused besides an error kind: the limits on uploads
/// in progress and on file bytes sent before their token.
pub const UPLOAD_LIMITS: [&str; 5] = ["busy_total", "busy_address", "busy_user", "data_before_token", "early_budget"];

pub(super) struct Edge {
    websocket_sessions: Gauge,
    pushed: Counter,
    push_dropped: Family<ReasonLabels, Counter>,
    uploads_active: Gauge,
    upload_bytes: Counter,
    upload_refusals: Family<ReasonLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
}

impl Edge {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let websocket_sessions = Gauge::default();
        let pushed = Counter::default();
        let push_dropped = Family::<ReasonLabels, Counter>::default();
        let uploads_active = Gauge::default();
        let upload_bytes = Counter::default();
        let upload_refusals = Family::<ReasonLabels, Counter>::default();
        let rate_limited = Family::<LimitLabels, Counter>::default();

        registry.register(
            "douyin_websocket_server_active_sessions",
            "Open chat push WebSocket sessions",
            websocket_sessions.clone(),
        );
        registry.register(
            "douyin_websocket_server_pushed_messages",
            "Chat messages written to a WebSocket session",
            pushed.clone(),
        );
        registry.register(
            "douyin_websocket_server_dropped_messages",
            "Chat messages a session did not get, by reason (queue_full: a slow client; bus_lagged: the gateway fell behind the push bus)",
            push_dropped.clone(),
        );
        registry.register("douyin_upload_active_requests", "Video uploads being received", uploads_active.clone());
        registry.register_with_unit(
            "douyin_upload_received",
            "Bytes of uploaded video files received",
            Unit::Bytes,
            upload_bytes.clone(),
        );
        registry.register(
            "douyin_upload_refusals",
            "Uploads refused, by reason (the error kind: too_large, rate_limited, invalid_argument …, or a limit: busy_total, busy_address, busy_user, data_before_token, early_budget)",
            upload_refusals.clone(),
        );
        registry.register(
            "douyin_rate_limit_refusals",
            "Requests refused by a rate limit, by limit (ip, user, register, publish, login-account, login-ip)",
            rate_limited.clone(),
        );
        // Every label value known up front is reported from the start, at 0.
        for reason in ["queue_full", "bus_lagged"] {
            let _ = push_dropped.get_or_create(&ReasonLabels { reason });
        }
        for reason in crate::Error::KINDS.into_iter().chain(UPLOAD_LIMITS) {
            let _ = upload_refusals.get_or_create(&ReasonLabels { reason });
        }
        for limit in LIMITS {
            let _ = rate_limited.get_or_create(&LimitLabels { limit });
        }
        Edge { websocket_sessions, pushed, push_dropped, uploads_active, upload_bytes, upload_refusals, rate_limited }
    }
}

/// Counts an open WebSocket session while it lives.
pub struct WebSocketGuard(());

impl WebSocketGuard {
    pub fn open() -> Self {
        METRICS.edge.websocket_sessions.inc();
        Self(())
    }
}

impl Drop for WebSocketGuard {
    fn drop(&mut self) {
        METRICS.edge.websocket_sessions.dec();
    }
}

/// Counts a message written to a session.
pub fn pushed() {
    METRICS.edge.pushed.inc();
}

/// Counts `n` messages not delivered for `reason`.
pub fn push_dropped(reason: &'static str, n: u64) {
    METRICS.edge.push_dropped.get_or_create(&ReasonLabels { reason }).inc_by(n);
}

/// Counts an upload in progress while it lives.
pub struct UploadGuard(());

impl UploadGuard {
    pub fn start() -> Self {
        METRICS.edge.uploads_active.inc();
        Self(())
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        METRICS.edge.uploads_active.dec();
    }
}

/// Counts bytes of an uploaded file.
pub fn upload_bytes(n: u64) {
    METRICS.edge.upload_bytes.inc_by(n);
}

/// Counts an upload refused with an error of `kind` ([`crate::Error::kind`]).
pub fn upload_refused(kind: &'static str) {
    METRICS.edge.upload_refusals.get_or_create(&ReasonLabels { reason: kind }).inc();
}

/// Counts a request refused by the rate limit named `limit`.
pub fn rate_limited(limit: &'static str) {
    METRICS.edge.rate_limited.get_or_create(&LimitLabels { limit }).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(series: &str) -> f64 {
        super::super::render()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map_or(0.0, |v| v.parse().unwrap())
    }

    #[test]
    fn guards_count_while_they_live() {
        let sessions = "douyin_websocket_server_active_sessions";
        let uploads = "douyin_upload_active_requests";
        let (s0, u0) = (value(sessions), value(uploads));
        let session = WebSocketGuard::open();
        let upload = UploadGuard::start();
        assert_eq!(value(sessions), s0 + 1.0);
        assert_eq!(value(uploads), u0 + 1.0);
        drop((session, upload));
        assert_eq!(value(sessions), s0);
        assert_eq!(value(uploads), u0);
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let series = r#"douyin_rate_limit_refusals_total{limit="login-ip"}"#;
        let before = value(series);
        rate_limited("login-ip");
        upload_refused("too_large");
        upload_bytes(10);
        push_dropped("queue_full", 2);
        assert_eq!(value(series), before + 1.0);
        assert!(value(r#"douyin_upload_refusals_total{reason="too_large"}"#) >= 1.0);
        assert!(value("douyin_upload_received_bytes_total") >= 10.0);
        assert!(value(r#"douyin_websocket_server_dropped_messages_total{reason="queue_full"}"#) >= 2.0);
    }
}
