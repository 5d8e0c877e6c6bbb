//! The time a gRPC call has left before its caller gives up on it.
//!
//! A caller sends its deadline as `grpc-timeout`; the server layer runs the
//! handler with it (see [`scope`]). A write that commits has to be answered
//! as a success, so it commits only while time is left to answer
//! ([`check_commit`]), and what it does after the commit (refreshing counts,
//! reading the author's profile) waits at most what is left ([`budget`]).

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use crate::{Error, Result};

/// Time kept for the answer to travel back after the handler is done.
pub const REPLY_MARGIN: Duration = Duration::from_millis(200);
/// Time a write needs left when it is about to commit: the commit itself and
/// the answer. Less than this and the write is refused unchanged, since the
/// caller would take a committed write for a failure.
pub const COMMIT_RESERVE: Duration = Duration::from_millis(600);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The deadline a request's `grpc-timeout` names, counted from now.
pub fn from_headers(headers: &http::HeaderMap) -> Option<Instant> {
    let timeout = parse_grpc_timeout(headers.get("grpc-timeout")?.to_str().ok()?)?;
    Some(Instant::now() + timeout)
}

/// Runs `call` under `deadline`, when there is one.
pub async fn scope<F: Future>(deadline: Option<Instant>, call: F) -> F::Output {
    match deadline {
        Some(deadline) => DEADLINE.scope(deadline, call).await,
        None => call.await,
    }
}

/// Time left before the current call's caller gives up; None outside a call
/// with a deadline.
pub fn remaining() -> Option<Duration> {
    DEADLINE.try_with(|deadline| deadline.saturating_duration_since(Instant::now())).ok()
}

/// How long optional work may wait: `limit`, or less when the call's
/// deadline leaves less (keeping [`REPLY_MARGIN`] for the answer).
pub fn budget(limit: Duration) -> Duration {
    remaining().map_or(limit, |left| limit.min(left.saturating_sub(REPLY_MARGIN)))
}

/// Refuses a commit that could not be answered before the caller's deadline.
pub fn check_commit() -> Result<()> {
    check_commit_by(DEADLINE.try_with(|deadline| *deadline).ok())
}

/// As [`check_commit`], for a write whose caller's deadline was carried
/// elsewhere (a queued write).
pub fn check_commit_by(deadline: Option<Instant>) -> Result<()> {
    match deadline.map(|deadline| deadline.saturating_duration_since(Instant::now())) {
        Some(left) if left < COMMIT_RESERVE => Err(Error::Unavailable(format!(
            "the request ran out of time ({} ms left) before it could be saved; nothing was changed",
            left.as_millis()
        ))),
        _ => Ok(()),
    }
}

/// `grpc-timeout`: up to eight digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_nothing_else() {
        assert_eq!(parse_grpc_timeout("5000m"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        for bad in ["", "m", "5", "5s", "-5m", "123456789m", "5 m", "5é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_call_near_its_deadline_refuses_to_commit_and_shortens_optional_waits() {
        assert!(remaining().is_none());
        assert!(check_commit().is_ok());
        assert_eq!(budget(Duration::from_secs(1)), Duration::from_secs(1));

        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", http::HeaderValue::from_static("400m"));
        scope(from_headers(&headers), async {
            assert!(remaining().unwrap() <= Duration::from_millis(400));
            assert!(budget(Duration::from_secs(1)) <= Duration::from_millis(200));
            let refused = check_commit().unwrap_err();
            assert!(matches!(refused, Error::Unavailable(_)), "{refused:?}");
        })
        .await;

        headers.insert("grpc-timeout", http::HeaderValue::from_static("5S"));
        scope(from_headers(&headers), async {
            assert!(check_commit().is_ok());
            assert_eq!(budget(Duration::from_secs(1)), Duration::from_secs(1));
        })
        .await;
    }
}
