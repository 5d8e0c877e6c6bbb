//! JSON log lines that name the trace they belong to.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Json, Writer},
    },
    registry::LookupSpan,
};

/// tracing-subscriber's JSON line (timestamp, level, fields, target, current
/// span) plus `trace_id` and `span_id` when the event happened in a traced span.
pub(super) struct JsonWithTrace;

fn json_format() -> Format<Json> {
    tracing_subscriber::fmt::format().json().with_current_span(true).with_span_list(false)
}

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = String::new();
        json_format().format_event(ctx, Writer::new(&mut line), event)?;
        let ids = super::current_ids();
        writer.write_str(&with_ids(line, ids))
    }
}

/// Adds the ids as the last keys of a one-line JSON object.
fn with_ids(line: String, ids: Option<(String, String)>) -> String {
    let Some((trace_id, span_id)) = ids else {
        return line;
    };
    let body = line.trim_end();
    match body.strip_suffix('}') {
        Some(open) => format!("{open},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}\n"),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_the_last_keys() {
        let line = with_ids("{\"level\":\"INFO\"}\n".into(), Some(("ab".into(), "cd".into())));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["trace_id"], "ab");
        assert_eq!(value["span_id"], "cd");
        assert!(line.ends_with("}\n"));
        assert_eq!(with_ids("{}\n".into(), None), "{}\n");
    }
}
