//! The OTLP trace exporter: gRPC or HTTP with protobuf bodies, chosen by
//! `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (default `grpc`). Any other value refuses the start: spans sent in a
//! protocol the collector does not speak would be lost without a word.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};

/// A setting of the exporter that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ExportConfigError {
    #[error("{var}={value:?} is not supported: use grpc or http/protobuf")]
    Protocol { var: &'static str, value: String },
    #[error("{var}={value:?}: https is not supported; send to a collector over plain http (a node or sidecar agent)")]
    Https { var: &'static str, value: String },
    #[error("trace export must start inside the Tokio runtime")]
    NoRuntime,
    #[error("DOUYIN_LOG_FORMAT={0:?} is not supported: use json or pretty")]
    LogFormat(String),
    #[error("{var}={value:?} is not a log filter ({error}); e.g. info or info,douyin_api=debug")]
    LogFilter { var: &'static str, value: String, error: String },
}

/// The wire protocol of trace export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

fn var(key: &'static str) -> Option<(&'static str, String)> {
    std::env::var(key).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).map(|v| (key, v))
}

/// The configured protocol; the traces-specific variable wins.
pub fn protocol() -> Result<OtlpProtocol, ExportConfigError> {
    let Some((var, value)) = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
    else {
        return Ok(OtlpProtocol::Grpc);
    };
    parse_protocol(&value).ok_or(ExportConfigError::Protocol { var, value })
}

/// A protocol name as the OpenTelemetry specification spells it (any case).
fn parse_protocol(value: &str) -> Option<OtlpProtocol> {
    match value.trim().to_ascii_lowercase().as_str() {
        "grpc" => Some(OtlpProtocol::Grpc),
        "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
        _ => None,
    }
}

/// Checks every export setting this process cannot honour.
pub fn check() -> Result<OtlpProtocol, ExportConfigError> {
    let protocol = protocol()?;
    for key in ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"] {
        if let Some((var, value)) = var(key)
            && value.to_ascii_lowercase().starts_with("https:")
        {
            return Err(ExportConfigError::Https { var, value });
        }
    }
    Ok(protocol)
}

/// The exporter for `protocol`; endpoint, headers and timeout come from the
/// standard `OTEL_EXPORTER_OTLP_*` variables (HTTP appends `/v1/traces` to a
/// base endpoint as the specification says).
pub fn exporter(protocol: OtlpProtocol) -> Result<SpanExporter, String> {
    match protocol {
        OtlpProtocol::Grpc => SpanExporter::builder().with_tonic().build().map_err(|e| e.to_string()),
        OtlpProtocol::HttpProtobuf => {
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| ExportConfigError::NoRuntime.to_string())?;
            let client = RuntimeHttpClient::new(runtime, timeout());
            SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_http_client(client)
                .build()
                .map_err(|e| e.to_string())
        }
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`
/// (milliseconds), else the specification's 10 s.
fn timeout() -> Duration {
    var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))
        .and_then(|(_, v)| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// Largest collector response read (responses are a few bytes).
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// An HTTP/1.1 client whose requests run on the process's Tokio runtime, so
/// the batch processor may call it from its own thread; each exchange
/// (connect, send, read the reply) is bounded by the export timeout.
#[derive(Debug, Clone)]
struct RuntimeHttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl RuntimeHttpClient {
    fn new(runtime: tokio::runtime::Handle, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Self { client, runtime, timeout }
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let exchange = async move {
            let (parts, body) = request.into_parts();
            let response = client.request(http::Request::from_parts(parts, Full::new(body))).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE).collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        let task = self.runtime.spawn(async move {
            tokio::time::timeout(timeout, exchange).await.map_err(|_| HttpError::from("OTLP export timed out"))?
        });
        task.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names() {
        assert_eq!(parse_protocol("grpc"), Some(OtlpProtocol::Grpc));
        assert_eq!(parse_protocol("http/protobuf"), Some(OtlpProtocol::HttpProtobuf));
        assert_eq!(parse_protocol("HTTP/Protobuf"), Some(OtlpProtocol::HttpProtobuf));
        for refused in ["http/json", "http", "grpc/protobuf", "otlp", "http/protobuf,grpc"] {
            assert_eq!(parse_protocol(refused), None, "{refused}");
        }
    }
}
