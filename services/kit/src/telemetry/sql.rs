//! Client spans for SQL statements, made from the event sqlx emits after each
//! statement (its SQL with `?` placeholders and how long it took). Every
//! repository and transaction is covered without touching them, and bound
//! parameter values never reach a span: sqlx does not put them in the event,
//! and literals written into the SQL text are masked.

use std::time::{Duration, SystemTime};

use opentelemetry::{
    KeyValue,
    trace::{Span as _, SpanKind, TraceContextExt, Tracer},
};
use opentelemetry_sdk::trace::SdkTracer;
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::layer::{Context, Layer};

/// The target of sqlx's per-statement events.
pub(super) const TARGET: &str = "sqlx::query";

/// Longest `db.query.text` recorded.
const MAX_QUERY_TEXT: usize = 2048;

pub(super) struct SqlSpans {
    tracer: SdkTracer,
    system: &'static str,
}

impl SqlSpans {
    pub(super) fn new(tracer: SdkTracer, system: &'static str) -> Self {
        Self { tracer, system }
    }
}

#[derive(Default)]
struct StatementFields {
    summary: String,
    statement: String,
    elapsed_secs: f64,
}

impl Visit for StatementFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.statement),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber> Layer<S> for SqlSpans {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        // Statements outside any request (health checks, migrations) are not traced.
        let parent = opentelemetry::Context::current();
        if !parent.has_active_span() {
            return;
        }
        let mut fields = StatementFields::default();
        event.record(&mut fields);
        let sql = if fields.statement.trim().is_empty() { &fields.summary } else { &fields.statement };
        let statement = Statement::parse(sql);
        let end = SystemTime::now();
        let elapsed = Duration::try_from_secs_f64(fields.elapsed_secs).unwrap_or_default();
        let start = end.checked_sub(elapsed).unwrap_or(end);
        let mut attributes = vec![
            KeyValue::new("db.system", self.system),
            KeyValue::new("db.system.name", self.system),
            KeyValue::new("db.operation.name", statement.operation.clone()),
            KeyValue::new("db.query.text", statement.text),
        ];
        if let Some(table) = &statement.table {
            attributes.push(KeyValue::new("db.collection.name", table.clone()));
        }
        let name = match &statement.table {
            Some(table) => format!("{} {table}", statement.operation),
            None => statement.operation,
        };
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        span.end_with_timestamp(end);
    }
}

/// What a span says about a statement.
#[derive(Debug, PartialEq)]
struct Statement {
    /// The first keyword, upper case: `SELECT`, `INSERT`, `UPDATE`, `DELETE`, …
    operation: String,
    /// The table read from or written to, when there is one.
    table: Option<String>,
    /// The SQL with literals masked, whitespace collapsed.
    text: String,
}

impl Statement {
    fn parse(sql: &str) -> Statement {
        let text = mask_literals(sql);
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
            .filter(|w| !w.is_empty())
            .collect();
        let operation = words.first().map(|w| w.to_ascii_uppercase()).unwrap_or_default();
        let after = |keyword: &str| {
            words
                .iter()
                .position(|w| w.eq_ignore_ascii_case(keyword))
                .and_then(|i| words.get(i + 1))
                .map(|t| clean_name(t))
        };
        let table = match operation.as_str() {
            "SELECT" | "DELETE" | "WITH" => after("FROM"),
            "INSERT" | "REPLACE" => after("INTO"),
            "UPDATE" => words
                .iter()
                .skip(1)
                .find(|w| !w.eq_ignore_ascii_case("OR") && !is_conflict_clause(w))
                .map(|t| clean_name(t)),
            _ => None,
        }
        .filter(|t| !t.is_empty() && t != "?");
        let mut text = text;
        if text.len() > MAX_QUERY_TEXT {
            let mut cut = MAX_QUERY_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        Statement { operation, table, text }
    }
}

fn is_conflict_clause(word: &str) -> bool {
    ["IGNORE", "REPLACE", "ROLLBACK", "ABORT", "FAIL", "LOW_PRIORITY"].iter().any(|k| word.eq_ignore_ascii_case(k))
}

fn clean_name(token: &str) -> String {
    token.trim_matches(|c| c == '`' || c == '"' || c == '[' || c == ']' || c == ';').to_owned()
}

/// Replaces quoted strings and numbers by `?`, collapsing whitespace.
fn mask_literals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut prev_word = false;
    let mut pending_space = false;
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            prev_word = false;
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        match c {
            '\'' => {
                // A string literal; '' inside is an escaped quote.
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                        }
                        Some('\'') | None => break,
                        Some(_) => {}
                    }
                }
                out.push('?');
                prev_word = false;
            }
            c if c.is_ascii_digit() && !prev_word => {
                while chars.peek().is_some_and(|n| n.is_ascii_alphanumeric() || *n == '.') {
                    chars.next();
                }
                out.push('?');
            }
            c => {
                prev_word = c.is_alphanumeric() || c == '_' || c == '`' || c == '"';
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_tables() {
        let s = Statement::parse(
            "SELECT id, author_id FROM videos WHERE published_at < ? ORDER BY published_at DESC LIMIT ?",
        );
        assert_eq!((s.operation.as_str(), s.table.as_deref()), ("SELECT", Some("videos")));
        let s = Statement::parse("INSERT OR IGNORE INTO favorites (user_id, video_id) VALUES (?, ?)");
        assert_eq!((s.operation.as_str(), s.table.as_deref()), ("INSERT", Some("favorites")));
        let s = Statement::parse("update `video_stats` set favorite_count = favorite_count + 1 where video_id = ?");
        assert_eq!((s.operation.as_str(), s.table.as_deref()), ("UPDATE", Some("video_stats")));
        let s = Statement::parse("DELETE FROM follows WHERE user_id = ?");
        assert_eq!((s.operation.as_str(), s.table.as_deref()), ("DELETE", Some("follows")));
        let s = Statement::parse("BEGIN IMMEDIATE");
        assert_eq!((s.operation.as_str(), s.table), ("BEGIN", None));
    }

    #[test]
    fn literals_are_masked() {
        let s = Statement::parse("SELECT * FROM users WHERE name = 'alice''s' AND id IN (1, 22)  LIMIT 30");
        assert_eq!(s.text, "SELECT * FROM users WHERE name = ? AND id IN (?, ?) LIMIT ?");
        let s = Statement::parse("SELECT col1, t2.x FROM t2 WHERE a = ?");
        assert_eq!(s.text, "SELECT col1, t2.x FROM t2 WHERE a = ?");
    }
}
