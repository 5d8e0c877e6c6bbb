//! Test helpers for observability: an OTLP trace receiver (gRPC, or HTTP with
//! protobuf bodies at `/v1/traces`) and a check of the Prometheus/OpenMetrics
//! text format.

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpListener},
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
};

/// One received span, flattened.
#[derive(Clone, Debug)]
pub struct Received {
    pub service: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent: Vec<u8>,
    pub name: String,
    pub kind: i32,
    pub attributes: HashMap<String, String>,
    /// Every string in the span: name, attribute values, event names and attributes.
    pub texts: Vec<String>,
}

impl Received {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn text_of(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attribute_map(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes.iter().map(|kv| (kv.key.clone(), text_of(&kv.value))).collect()
}

/// An OTLP gRPC trace receiver on its own runtime, so that stopping it closes
/// its port and every connection to it at once.
pub struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone)]
struct Receiver(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.keep(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Receiver {
    fn keep(&self, request: ExportTraceServiceRequest) {
        let mut out = Vec::new();
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.map(|r| attribute_map(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                let attributes = attribute_map(&span.attributes);
                let mut texts: Vec<String> = vec![span.name.clone()];
                texts.extend(attributes.values().cloned());
                for event in &span.events {
                    texts.push(event.name.clone());
                    texts.extend(attribute_map(&event.attributes).into_values());
                }
                out.push(Received {
                    service: service.clone(),
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent: span.parent_span_id,
                    name: span.name,
                    kind: span.kind,
                    attributes,
                    texts,
                });
            }
        }
        self.0.lock().unwrap().extend(out);
    }
}

/// OTLP/HTTP with protobuf bodies, as the specification defines it.
async fn http_export(
    axum::extract::State(receiver): axum::extract::State<Receiver>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use prost::Message;
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type != "application/x-protobuf" {
        return (axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE, "protobuf only").into_response();
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    receiver.keep(request);
    let reply = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
    ([("content-type", "application/x-protobuf")], reply).into_response()
}

/// The wire protocol a [`Collector`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Grpc,
    HttpProtobuf,
}

impl Collector {
    pub fn start() -> Collector {
        Self::start_with(Wire::Grpc)
    }

    pub fn start_with(wire: Wire) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let receiver = Receiver(spans.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let server: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = match wire {
                    Wire::Grpc => {
                        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                        let server = tonic::transport::Server::builder()
                            .add_service(TraceServiceServer::new(receiver))
                            .serve_with_incoming(incoming);
                        Box::pin(async move { server.await.unwrap() })
                    }
                    Wire::HttpProtobuf => {
                        let app = axum::Router::new()
                            .route("/v1/traces", axum::routing::post(http_export))
                            .with_state(receiver);
                        Box::pin(async move { axum::serve(listener, app).await.unwrap() })
                    }
                };
                tokio::select! {
                    () = server => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops the listener and every connection task.
            runtime.shutdown_background();
        });
        Collector { addr, spans, stop: Some(stop), thread: Some(thread) }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The trace ids the exemplars of `text` name, by the series they are on.
pub fn exemplar_traces(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (sample, exemplar) = line.split_once(" # {trace_id=\"")?;
            let (trace_id, _) = exemplar.split_once('"')?;
            Some((sample.rsplit_once(' ')?.0.to_owned(), trace_id.to_owned()))
        })
        .collect()
}

/// Checks the OpenMetrics/Prometheus text format line by line and returns
/// every sample as `name{labels}` → value.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let valid_name = |name: &str| {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut families: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "exposition ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name, rest) = (parts.next().unwrap(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(valid_name(name), "metric name in {line:?}");
            match keyword {
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "info", "stateset", "unknown", "gaugehistogram"]
                            .contains(&rest),
                        "type in {line:?}"
                    );
                    families.insert(name.to_owned(), rest.to_owned());
                }
                "HELP" | "UNIT" => {}
                other => panic!("unknown comment {other:?} in {line:?}"),
            }
            continue;
        }
        // An exemplar follows the value: ` # {trace_id="…"} value [timestamp]`.
        let (sample, exemplar) = match line.split_once(" # ") {
            Some((sample, exemplar)) => (sample, Some(exemplar)),
            None => (*line, None),
        };
        if let Some(exemplar) = exemplar {
            let (labels, rest) = exemplar.split_once("} ").unwrap_or_else(|| panic!("exemplar in {line:?}"));
            assert!(labels.starts_with('{'), "exemplar labels in {line:?}");
            let value = rest.split(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "exemplar value in {line:?}");
        }
        let (series, value) = sample.rsplit_once(' ').unwrap_or_else(|| panic!("sample without value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
        };
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("labels in {line:?}"));
                let mut rest = labels;
                while !rest.is_empty() {
                    let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("label in {line:?}"));
                    assert!(valid_name(key.trim_start_matches(',')), "label name in {line:?}");
                    let mut end = None;
                    let mut escaped = false;
                    for (i, c) in after.char_indices() {
                        match c {
                            '\\' if !escaped => escaped = true,
                            '"' if !escaped => {
                                end = Some(i);
                                break;
                            }
                            _ => escaped = false,
                        }
                    }
                    let end = end.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
                    rest = &after[end + 1..];
                    assert!(rest.is_empty() || rest.starts_with(','), "label separator in {line:?}");
                }
                name
            }
            None => series,
        };
        assert!(valid_name(name), "sample name in {line:?}");
        let family = ["_total", "_bucket", "_count", "_sum", "_created", ""]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| families.contains_key(*f)))
            .unwrap_or_else(|| panic!("sample {name} has no # TYPE"));
        assert!(!families[family].is_empty());
        samples.insert(series.to_owned(), value);
    }
    samples
}
