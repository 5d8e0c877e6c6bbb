//! Client spans and metrics for Redis commands: a connection wrapper that
//! names each command (`MGET`, `EVALSHA`, `PIPELINE`), never its keys or
//! values, and records its latency and failures.

use redis::{Cmd, Pipeline, RedisFuture, Value, aio::ConnectionLike};
use tracing::{Instrument, Span, field::Empty};

/// A Redis connection whose commands are traced when they run inside a span.
#[derive(Clone)]
pub struct TracedConnection<C> {
    inner: C,
}

impl<C> TracedConnection<C> {
    pub fn new(inner: C) -> Self {
        Self { inner }
    }
}

fn command_name(cmd: &Cmd) -> String {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
        _ => "UNKNOWN".to_owned(),
    }
}

/// A client span, or none for commands outside any request (health checks).
fn command_span(operation: &str) -> Span {
    if Span::current().is_none() {
        return Span::none();
    }
    tracing::info_span!(
        "redis",
        otel.name = %operation,
        otel.kind = "client",
        db.system = "redis",
        db.system.name = "redis",
        db.operation.name = %operation,
        db.operation.batch.size = Empty,
        otel.status_code = Empty,
    )
}

async fn traced<T>(operation: String, span: Span, call: RedisFuture<'_, T>) -> redis::RedisResult<T> {
    let started = std::time::Instant::now();
    let result = call.instrument(span.clone()).await;
    if result.is_err() {
        span.record("otel.status_code", "error");
    }
    crate::metrics::redis_call(&operation, result.is_ok(), started.elapsed());
    result
}

impl<C: ConnectionLike + Send> ConnectionLike for TracedConnection<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let operation = command_name(cmd);
        let span = command_span(&operation);
        Box::pin(traced(operation, span, self.inner.req_packed_command(cmd)))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let operation = if pipeline.is_transaction() { "MULTI" } else { "PIPELINE" };
        let span = command_span(operation);
        span.record("db.operation.batch.size", pipeline.cmd_iter().count());
        Box::pin(traced(operation.to_owned(), span, self.inner.req_packed_commands(pipeline, offset, count)))
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_named_by_their_first_word_only() {
        let mut cmd = redis::cmd("mget");
        cmd.arg("secret-key");
        assert_eq!(command_name(&cmd), "MGET");
    }

    /// Answers every command with `OK`, or fails it when `fail` is set.
    struct Fake {
        fail: bool,
    }

    impl ConnectionLike for Fake {
        fn req_packed_command<'a>(&'a mut self, _: &'a Cmd) -> RedisFuture<'a, Value> {
            let fail = self.fail;
            Box::pin(async move {
                if fail { Err(std::io::Error::other("connection reset").into()) } else { Ok(Value::Okay) }
            })
        }

        fn req_packed_commands<'a>(&'a mut self, p: &'a Pipeline, _: usize, _: usize) -> RedisFuture<'a, Vec<Value>> {
            let n = p.cmd_iter().count();
            Box::pin(async move { Ok(vec![Value::Okay; n]) })
        }

        fn get_db(&self) -> i64 {
            0
        }
    }

    fn series(text: &str, name: &str, operation: &str) -> f64 {
        let prefix = format!(r#"{name}{{db_system_name="redis",db_operation_name="{operation}"}} "#);
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |v| v.parse().unwrap())
    }

    #[tokio::test]
    async fn commands_are_timed_and_failures_counted_by_name() {
        let count = "douyin_db_client_operation_duration_seconds_count";
        let errors = "douyin_db_client_operation_errors_total";
        let before = crate::metrics::render();
        let mut ok = TracedConnection::new(Fake { fail: false });
        let _: () = redis::cmd("HSETNX").arg("k").arg("f").arg("v").query_async(&mut ok).await.unwrap();
        let mut broken = TracedConnection::new(Fake { fail: true });
        assert!(redis::cmd("HSETNX").arg("k").query_async::<()>(&mut broken).await.is_err());
        let _: () = redis::pipe().cmd("SET").arg("a").arg(1).ignore().query_async(&mut ok).await.unwrap();
        let after = crate::metrics::render();
        assert_eq!(series(&after, count, "HSETNX"), series(&before, count, "HSETNX") + 2.0, "{after}");
        assert_eq!(series(&after, errors, "HSETNX"), series(&before, errors, "HSETNX") + 1.0, "{after}");
        assert_eq!(series(&after, count, "PIPELINE"), series(&before, count, "PIPELINE") + 1.0, "{after}");
    }
}
