//! Observability across the mesh: every role its own OS process of the
//! `douyin` binary (SQLite file shared through the data dir), exporting OTLP to
//! a receiver inside this test. One app request is one trace across processes,
//! with SQL spans that carry no parameter values; a collector that goes away
//! costs requests nothing; `/metrics` counts the requests made.

use std::{
    collections::{HashMap, HashSet},
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    common::{
        process::{Processes, command, owned},
        sample_mp4,
    },
    otlp::{Collector, Received, Wire, exemplar_traces, parse_metrics},
};

const SPAN_KIND_SERVER: i32 = 2;
const SPAN_KIND_CLIENT: i32 = 3;

fn redis_url() -> Option<String> {
    std::env::var("DOUYIN_TEST_REDIS_URL").ok().filter(|v| !v.is_empty())
}

struct Mesh {
    procs: Processes,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Mesh {
    async fn start(otlp_endpoint: &str) -> Mesh {
        Self::start_with(otlp_endpoint, &[]).await
    }

    /// Every role its own process, exporting to `otlp_endpoint`, with `extra`
    /// environment on top.
    async fn start_with(otlp_endpoint: &str, extra: &[(&str, &str)]) -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let mut env = owned(&[
            ("DOUYIN_DATA_DIR", &dir.path().display().to_string()),
            ("DOUYIN_JWT_SECRET", "traces-test-secret-0123456789abcdef0123456789"),
            ("DOUYIN_DEMO_CONTENT", "false"),
            ("DOUYIN_HEALTH_INTERVAL_SECS", "1"),
            ("DOUYIN_RATE_LIMIT_IP_PER_SEC", "0"),
            ("DOUYIN_RATE_LIMIT_USER_PER_SEC", "0"),
            ("DOUYIN_RATE_LIMIT_REGISTER_PER_MIN", "0"),
            ("DOUYIN_RATE_LIMIT_PUBLISH_PER_MIN", "0"),
            ("DOUYIN_RATE_LIMIT_CONNECTIONS_PER_SEC", "0"),
        ]);
        // Redis when the environment names one (as .ci/mesh.sh does), under a fresh prefix.
        if let Some(redis) = redis_url() {
            env.push(("DOUYIN_REDIS_URL".into(), redis));
            env.push(("DOUYIN_REDIS_PREFIX".into(), format!("traces-{}", uuid::Uuid::new_v4().simple())));
        }
        // One schema for every process, made before any of them starts.
        let status = command(&env).arg("migrate").status().unwrap();
        assert!(status.success(), "douyin migrate: {status:?}");
        env.extend(owned(&[
            ("DOUYIN_MIGRATE", "false"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ]));
        env.extend(owned(extra));
        let procs = Processes::start(&env).await;
        let http = procs.http.clone();
        Mesh { procs, http, _dir: dir }
    }

    fn base(&self) -> String {
        self.procs.base()
    }

    async fn call(&self, method: &str, path: &str, query: &[(&str, &str)]) -> Value {
        let url = format!("{}{path}", self.base());
        let request = if method == "GET" { self.http.get(url) } else { self.http.post(url) };
        let response = request.query(query).send().await.unwrap();
        let text = response.text().await.unwrap();
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert_eq!(value["status_code"], 0, "{path}: {value}");
        value
    }

    async fn publish(&self, token: &str, title: &str) -> Value {
        let form = reqwest::multipart::Form::new()
            .text("token", token.to_owned())
            .text("title", title.to_owned())
            .part("data", reqwest::multipart::Part::bytes(sample_mp4()).file_name("v.mp4"));
        let response =
            self.http.post(format!("{}/douyin/publish/action/", self.base())).multipart(form).send().await.unwrap();
        let value: Value = response.json().await.unwrap();
        assert_eq!(value["status_code"], 0, "publish: {value}");
        value
    }

    async fn metrics(&self, url: String) -> HashMap<String, f64> {
        parse_metrics(&self.metrics_text(url).await)
    }

    async fn metrics_text(&self, url: String) -> String {
        let response = self.http.get(url).send().await.unwrap();
        assert!(response.status().is_success());
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
        response.text().await.unwrap()
    }
}

/// Spans of the trace whose gateway span served `route`, once that trace has
/// spans from every one of `services` and every parent it names arrived.
fn complete_trace(spans: &[Received], route: &str, services: &[&str]) -> Option<Vec<Received>> {
    let root = spans.iter().find(|s| s.service == "douyin-api" && s.attr("http.route") == Some(route))?;
    let trace: Vec<Received> = spans.iter().filter(|s| s.trace_id == root.trace_id).cloned().collect();
    let have: HashSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    let ids: HashSet<&[u8]> = trace.iter().map(|s| s.span_id.as_slice()).collect();
    let linked = trace.iter().all(|s| s.parent.is_empty() || ids.contains(s.parent.as_slice()));
    (services.iter().all(|s| have.contains(s)) && linked).then_some(trace)
}

/// Asserts that `trace` holds a gRPC server span of `method` in `service`
/// whose parent is the matching client span in `caller`.
#[track_caller]
fn assert_called_from(trace: &[Received], service: &str, method: &str, caller: &str) {
    let spans: Vec<&Received> = trace
        .iter()
        .filter(|s| s.service == service && s.kind == SPAN_KIND_SERVER && s.attr("rpc.method") == Some(method))
        .collect();
    assert!(!spans.is_empty(), "no {method} server span in {service}");
    let called_from_caller = spans.iter().any(|span| {
        let parent = parent_of(trace, span).unwrap();
        span.attr("rpc.system") == Some("grpc")
            && parent.service == caller
            && parent.kind == SPAN_KIND_CLIENT
            && parent.attr("rpc.method") == Some(method)
    });
    assert!(called_from_caller, "{service} {method} is called from a {caller} client span");
}

async fn wait_for_trace(collector: &Collector, route: &str, services: &[&str]) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = collector.spans();
        if let Some(trace) = complete_trace(&spans, route, services) {
            return trace;
        }
        if Instant::now() > deadline {
            let summary: Vec<String> =
                spans.iter().map(|s| format!("{} {} {:?}", s.service, s.name, s.attributes)).collect();
            panic!("no complete trace for {route} across {services:?}; received:\n{}", summary.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The span `span` is a child of.
fn parent_of<'a>(trace: &'a [Received], span: &Received) -> Option<&'a Received> {
    trace.iter().find(|p| p.span_id == span.parent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_processes() {
    let mut collector = Collector::start();
    let mesh = Mesh::start(&collector.endpoint()).await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let username = format!("tracer{tag}");
    let password = format!("pw-{tag}-secret");
    let title = format!("title-{tag}-private");

    let registered =
        mesh.call("POST", "/douyin/user/register/", &[("username", &username), ("password", &password)]).await;
    let token = registered["token"].as_str().unwrap().to_owned();
    mesh.publish(&token, &title).await;
    let feed = mesh.call("GET", "/douyin/feed/", &[("token", &token)]).await;
    assert_eq!(feed["video_list"][0]["title"], title.as_str());

    // One trace holds the gateway and the roles behind it. Counts come from
    // the counter's cache when it is shared (Redis), which the counter filled
    // as the publish committed; with a cache per process the video role asks
    // the counter.
    let feed_services: &[&str] = if redis_url().is_some() {
        &["douyin-api", "douyin-video", "douyin-user"]
    } else {
        &["douyin-api", "douyin-video", "douyin-user", "douyin-counter"]
    };
    let feed_trace = wait_for_trace(&collector, "/douyin/feed/", feed_services).await;
    let roots: Vec<&Received> = feed_trace.iter().filter(|s| s.parent.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root span: {roots:?}");
    assert_eq!(roots[0].service, "douyin-api");
    assert_eq!(roots[0].kind, SPAN_KIND_SERVER);
    assert_eq!(roots[0].attr("http.request.method"), Some("GET"));
    assert_eq!(roots[0].attr("http.response.status_code"), Some("200"));
    assert_eq!(roots[0].attr("app.status_code"), Some("0"));

    // Parent/child links cross process boundaries: gateway → video → user
    // (and counter, for counts the cache lacks: one Counts call for the page's
    // videos and authors together).
    let mut links = vec![("douyin-video", "Feed", "douyin-api"), ("douyin-user", "GetUsers", "douyin-video")];
    if redis_url().is_none() {
        links.push(("douyin-counter", "Counts", "douyin-video"));
    }
    for (service, method, caller) in links {
        assert_called_from(&feed_trace, service, method, caller);
    }

    // SQL spans under the RPCs, naming operation and table.
    let sql: Vec<&Received> = feed_trace.iter().filter(|s| s.attr("db.system") == Some("sqlite")).collect();
    assert!(
        sql.iter().any(|s| s.service == "douyin-video"
            && s.attr("db.operation.name") == Some("SELECT")
            && s.attr("db.collection.name").is_some()),
        "video's SELECT: {sql:?}"
    );
    assert!(sql.iter().all(|s| s.kind == SPAN_KIND_CLIENT && parent_of(&feed_trace, s).is_some()));

    if redis_url().is_some() {
        let redis: Vec<&Received> = feed_trace.iter().filter(|s| s.attr("db.system") == Some("redis")).collect();
        assert!(
            redis.iter().any(|s| s.service == "douyin-video" && s.attr("db.operation.name") == Some("MGET")),
            "video reads the counter's cached counts with MGET: {redis:?}"
        );
    }

    // The publish hands the new counts to the counter under its trace.
    let publish_trace =
        wait_for_trace(&collector, "/douyin/publish/action/", &["douyin-api", "douyin-video", "douyin-counter"]).await;
    assert_called_from(&publish_trace, "douyin-counter", "Refresh", "douyin-video");
    assert!(
        publish_trace
            .iter()
            .any(|s| s.attr("db.system") == Some("sqlite") && s.attr("db.operation.name") == Some("INSERT")),
        "publish writes a row under its trace"
    );

    // Nothing sent, not the name, password, title or token, appears in any span.
    let spans = collector.spans();
    for span in &spans {
        for text in &span.texts {
            for secret in [&username, &password, &title, &token] {
                assert!(
                    !text.contains(secret.as_str()),
                    "{} span {:?} leaks {secret:?}: {text}",
                    span.service,
                    span.name
                );
            }
        }
    }

    // /metrics on every admin listener, the gateway's too; never on its public port.
    let public = mesh.http.get(format!("{}/metrics", mesh.base())).send().await.unwrap();
    assert_eq!(public.status(), 404, "the public port serves no metrics");
    assert_eq!(public.headers()["content-type"], "application/json; charset=utf-8");
    let body: Value = public.json().await.unwrap();
    assert!(body["status_code"].as_i64().is_some_and(|c| c != 0) && body["status_msg"].is_string(), "{body}");
    let gateway_metrics = format!("http://127.0.0.1:{}/metrics", mesh.procs.get("api").admin);
    let gateway = mesh.metrics(gateway_metrics.clone()).await;
    let requests = |route: &str, method: &str| {
        gateway
            .get(&format!(
                r#"douyin_http_server_requests_total{{http_route="{route}",http_request_method="{method}"}}"#
            ))
            .copied()
            .unwrap_or_default()
    };
    assert_eq!(requests("/douyin/feed/", "GET"), 1.0);
    assert_eq!(requests("/douyin/publish/action/", "POST"), 1.0);
    assert_eq!(requests("/douyin/user/register/", "POST"), 1.0);
    let feed_latency =
        r#"douyin_http_server_request_duration_seconds_count{http_route="/douyin/feed/",http_request_method="GET"}"#;
    assert_eq!(gateway.get(feed_latency).copied(), Some(1.0));
    let video = mesh.metrics(format!("http://127.0.0.1:{}/metrics", mesh.procs.get("video").admin)).await;
    let feed_rpcs = r#"douyin_rpc_server_requests_total{rpc_service="douyin.video.v1.VideoService",rpc_method="Feed"}"#;
    assert_eq!(video.get(feed_rpcs).copied(), Some(1.0));
    let used = r#"douyin_db_client_connection_count{db_client_connection_state="used"}"#;
    assert!(video.contains_key(used), "pool gauges: {video:?}");
    assert!(video.get("douyin_db_client_connection_max").is_some_and(|max| *max >= 1.0), "{video:?}");
    // Each statement waited for a connection, and the wait was measured.
    assert!(video["douyin_db_client_connection_wait_time_seconds_count"] >= 1.0, "{video:?}");
    // Every role names its build.
    for p in &mesh.procs.procs {
        let text = mesh.metrics_text(format!("http://127.0.0.1:{}/metrics", p.admin)).await;
        let build = text.lines().find(|l| l.starts_with("douyin_build_info{")).unwrap_or_else(|| panic!("{text}"));
        let version = format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"));
        assert!(build.contains(&version) && build.contains("commit=\"") && build.ends_with(" 1"), "{build}");
    }
    // The feed's latency carries its trace as the exemplar.
    let feed_trace_id: String = roots[0].trace_id.iter().map(|b| format!("{b:02x}")).collect();
    let exemplars = exemplar_traces(&mesh.metrics_text(gateway_metrics.clone()).await);
    assert!(
        exemplars
            .iter()
            .any(|(series, trace)| series.starts_with("douyin_http_server_request_duration_seconds_bucket{")
                && series.contains(r#"http_route="/douyin/feed/""#)
                && *trace == feed_trace_id),
        "no exemplar of trace {feed_trace_id} on the feed's latency: {exemplars:?}"
    );
    // The upload was counted, and is over.
    assert!(gateway["douyin_upload_received_bytes_total"] >= sample_mp4().len() as f64, "{gateway:?}");
    assert_eq!(gateway["douyin_upload_active_requests"], 0.0);
    // Counts are looked up, and the lookups counted, where they are read.
    let counter = mesh.metrics(format!("http://127.0.0.1:{}/metrics", mesh.procs.get("video").admin)).await;
    let lookups = counter.get(r#"douyin_cache_hits_total{cache="counts"}"#).copied().unwrap_or_default()
        + counter.get(r#"douyin_cache_misses_total{cache="counts"}"#).copied().unwrap_or_default();
    assert!(lookups >= 1.0, "cache lookups counted: {counter:?}");
    if redis_url().is_some() {
        let mget =
            r#"douyin_db_client_operation_duration_seconds_count{db_system_name="redis",db_operation_name="MGET"}"#;
        assert!(counter.get(mget).is_some_and(|n| *n >= 1.0), "Redis commands timed: {counter:?}");
    }

    // The collector goes away: requests still succeed, without waiting on it.
    collector.stop();
    for round in 0..3 {
        let started = Instant::now();
        mesh.call("GET", "/douyin/feed/", &[("token", &token)]).await;
        mesh.publish(&token, &format!("after-{round}")).await;
        let elapsed = started.elapsed();
        // Generous for a loaded machine; export waits (10 s timeouts) would show.
        assert!(elapsed < Duration::from_secs(5), "requests with the collector down took {elapsed:?}");
    }
    let gateway = mesh.metrics(gateway_metrics).await;
    assert_eq!(
        gateway[r#"douyin_http_server_requests_total{http_route="/douyin/feed/",http_request_method="GET"}"#],
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_carries_one_trace_across_processes() {
    let collector = Collector::start_with(Wire::HttpProtobuf);
    let mesh = Mesh::start_with(&collector.endpoint(), &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let registered = mesh
        .call("POST", "/douyin/user/register/", &[("username", &format!("http{tag}")), ("password", "secret123")])
        .await;
    let token = registered["token"].as_str().unwrap().to_owned();
    mesh.publish(&token, &format!("http-{tag}")).await;
    mesh.call("GET", "/douyin/feed/", &[("token", &token)]).await;
    let trace = wait_for_trace(&collector, "/douyin/feed/", &["douyin-api", "douyin-video", "douyin-user"]).await;
    let roots: Vec<&Received> = trace.iter().filter(|s| s.parent.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root span: {roots:?}");
    assert_eq!(roots[0].service, "douyin-api");
    let feed = trace
        .iter()
        .find(|s| s.service == "douyin-video" && s.kind == SPAN_KIND_SERVER && s.attr("rpc.method") == Some("Feed"))
        .expect("video's Feed span");
    let caller = parent_of(&trace, feed).expect("Feed has its parent in the trace");
    assert_eq!((caller.service.as_str(), caller.kind), ("douyin-api", SPAN_KIND_CLIENT));
}

/// `douyin serve` with `env` on top of a minimal environment: its exit status
/// and stderr, or None when it is still running after the deadline.
fn refused_start(env: &[(&str, &str)]) -> Option<(std::process::ExitStatus, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mut base: Vec<(String, String)> = vec![
        ("DOUYIN_DATA_DIR".into(), dir.path().display().to_string()),
        ("DOUYIN_HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("DOUYIN_GRPC_ADDR".into(), "127.0.0.1:0".into()),
        ("DOUYIN_ADMIN_ADDR".into(), "127.0.0.1:0".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), "http://127.0.0.1:4317".into()),
    ];
    base.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let mut child = command(&base).args(["serve", "all"]).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return Some((status, stderr));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_otlp_protocol_it_cannot_speak_refuses_the_start() {
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")], "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\""),
        (&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")], "OTEL_EXPORTER_OTLP_PROTOCOL=\"thrift\""),
        // The traces-specific variable wins over the general one.
        (
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http")],
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\"http\"",
        ),
    ];
    for (env, named) in cases {
        let (status, stderr) = refused_start(env).unwrap_or_else(|| panic!("{env:?} was not refused"));
        assert!(!status.success(), "{env:?}: {status:?}");
        assert!(stderr.contains(named), "{env:?}: the refusal names the setting: {stderr}");
        assert!(stderr.contains("grpc or http/protobuf"), "{env:?}: and what is supported: {stderr}");
    }
}

#[test]
fn the_metrics_parser_refuses_malformed_text() {
    let good = "# TYPE a counter\n# HELP a help\na_total{x=\"1\",y=\"a\\\"b\"} 3\n# EOF\n";
    assert_eq!(parse_metrics(good)[r#"a_total{x="1",y="a\"b"}"#], 3.0);
    let with_exemplar = "# TYPE h histogram\nh_bucket{le=\"0.5\"} 2 # {trace_id=\"ab12\"} 0.25 1700000000.5\n# EOF\n";
    assert_eq!(parse_metrics(with_exemplar)[r#"h_bucket{le="0.5"}"#], 2.0);
    assert_eq!(exemplar_traces(with_exemplar), [(r#"h_bucket{le="0.5"}"#.to_owned(), "ab12".to_owned())]);
    for bad in [
        "# TYPE a counter\na_total 3\n",
        "# TYPE a counter\na_total{x=\"1} 3\n# EOF\n",
        "b_total 1\n# EOF\n",
        "# TYPE a counter\na_total three\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2 # trace 0.2\n# EOF\n",
    ] {
        assert!(std::panic::catch_unwind(|| parse_metrics(bad)).is_err(), "{bad:?}");
    }
}
