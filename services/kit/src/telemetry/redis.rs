//! Client spans for Redis commands: a connection wrapper that names each
//! command (`MGET`, `EVALSHA`, `PIPELINE`), never its keys or values.

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

async fn traced<T>(span: Span, call: RedisFuture<'_, T>) -> redis::RedisResult<T> {
    let result = call.instrument(span.clone()).await;
    if result.is_err() {
        span.record("otel.status_code", "error");
    }
    result
}

impl<C: ConnectionLike + Send> ConnectionLike for TracedConnection<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let span = command_span(&command_name(cmd));
        Box::pin(traced(span, self.inner.req_packed_command(cmd)))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let span = command_span(if pipeline.is_transaction() { "MULTI" } else { "PIPELINE" });
        span.record("db.operation.batch.size", pipeline.cmd_iter().count());
        Box::pin(traced(span, self.inner.req_packed_commands(pipeline, offset, count)))
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
}
