//! A fake API server behind a `tower-test` mock: it records every request the
//! reconciler sends and answers from an in-memory object store, so tests assert the
//! exact request sequence and what ended up stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock;

use crate::controller::Context;
use crate::crd::DouyinEnvironment;
use crate::metrics::Metrics;

pub const NS: &str = "shop";

/// Objects by API path, e.g. `/api/v1/namespaces/shop/secrets/dev-douyin-backends`.
#[derive(Debug, Default)]
pub struct FakeApiServer {
    pub objects: BTreeMap<String, Value>,
    /// `VERB path` per request, VERB one of GET, APPLY, JSONPATCH, MERGE, DELETE.
    pub requests: Vec<String>,
    /// Answer every request with 500, to exercise error handling.
    pub fail_everything: bool,
}

pub fn env_path(name: &str) -> String {
    format!("/apis/douyin.rs/v1alpha1/namespaces/{NS}/douyinenvironments/{name}")
}
pub fn secret_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/secrets/{name}")
}
pub fn service_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/services/{name}")
}
pub fn sts_path(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/statefulsets/{name}")
}
pub fn job_path(name: &str) -> String {
    format!("/apis/batch/v1/namespaces/{NS}/jobs/{name}")
}

impl FakeApiServer {
    /// A server holding `env`, as the API server would after it was created.
    pub fn with(env: &DouyinEnvironment) -> Self {
        let mut server = Self::default();
        let name = env.metadata.name.clone().expect("named");
        server.objects.insert(env_path(&name), serde_json::to_value(env).expect("serializable"));
        server
    }

    pub fn insert(&mut self, path: String, object: impl serde::Serialize) {
        self.objects.insert(path, serde_json::to_value(object).expect("serializable"));
    }

    pub fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Option<T> {
        self.objects.get(path).map(|v| serde_json::from_value(v.clone()).expect("stored object parses"))
    }

    /// Starts serving; the task ends, returning the server, once every client
    /// handle (the context) is dropped.
    pub fn start(mut self) -> (Arc<Context>, JoinHandle<FakeApiServer>) {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let ctx = Arc::new(Context::new(Client::new(service, "default"), Metrics::default()));
        let task = tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (status, body) = self.answer(request).await;
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).expect("json")))
                    .expect("response");
                respond.send_response(response);
            }
            self
        });
        (ctx, task)
    }

    async fn answer(&mut self, request: Request<Body>) -> (StatusCode, Value) {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = request.into_body().collect_bytes().await.expect("request body");
        let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).expect("json body") };

        let verb = match (&method, content_type.as_str()) {
            (&Method::GET, _) => "GET",
            (&Method::DELETE, _) => "DELETE",
            (&Method::PATCH, "application/apply-patch+yaml") => "APPLY",
            (&Method::PATCH, "application/json-patch+json") => "JSONPATCH",
            (&Method::PATCH, "application/merge-patch+json") => "MERGE",
            _ => panic!("unexpected request {method} {path} ({content_type})"),
        };
        self.requests.push(format!("{verb} {path}"));
        if self.fail_everything {
            return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
        }
        if verb == "APPLY" {
            assert!(query.contains("fieldManager=douyin-operator"), "apply without field manager: {query}");
            assert!(query.contains("force=true"), "apply without force: {query}");
        }

        match verb {
            "GET" => match self.objects.get(&path) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            "APPLY" => match path.strip_suffix("/status") {
                Some(owner) => {
                    let Some(object) = self.objects.get_mut(owner) else {
                        return status(StatusCode::NOT_FOUND, "NotFound");
                    };
                    object["status"] = body["status"].clone();
                    (StatusCode::OK, object.clone())
                }
                None => {
                    let mut object = body;
                    if let Some(existing_status) = self.objects.get(&path).and_then(|o| o.get("status")) {
                        object["status"] = existing_status.clone();
                    }
                    self.objects.insert(path, object.clone());
                    (StatusCode::OK, object)
                }
            },
            "JSONPATCH" | "MERGE" => {
                let Some(object) = self.objects.get_mut(&path) else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                if verb == "MERGE" {
                    merge_patch(object, &body);
                } else {
                    json_patch(object, &body);
                }
                (StatusCode::OK, object.clone())
            }
            "DELETE" if query.contains("labelSelector") => {
                let kind = path.rsplit('/').next().unwrap_or_default().to_string();
                self.objects.retain(|p, _| !p.starts_with(&format!("{path}/")));
                (
                    StatusCode::OK,
                    json!({ "apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {}, "items": [] }),
                )
            }
            _ => match self.objects.remove(&path) {
                Some(_) => (
                    StatusCode::OK,
                    json!({ "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success" }),
                ),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
        }
    }
}

fn status(code: StatusCode, reason: &str) -> (StatusCode, Value) {
    let body = json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": reason, "reason": reason, "code": code.as_u16(),
    });
    (code, body)
}

/// RFC 7386 merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let target = target.as_object_mut().expect("object");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The JSON patch operations the finalizer helper sends: test, add and remove.
fn json_patch(target: &mut Value, ops: &Value) {
    for op in ops.as_array().expect("json patch is a list") {
        let pointer = op["path"].as_str().expect("path");
        let (parent, last) = pointer.rsplit_once('/').expect("pointer");
        match op["op"].as_str().expect("op") {
            "test" => {
                let found = target.pointer(pointer).cloned().unwrap_or(Value::Null);
                assert_eq!(found, op["value"], "json patch test failed at {pointer}");
            }
            "add" => match target.pointer_mut(parent).expect("parent exists") {
                Value::Array(items) if last == "-" => items.push(op["value"].clone()),
                Value::Array(items) => items.insert(last.parse().expect("index"), op["value"].clone()),
                Value::Object(map) => {
                    map.insert(last.to_string(), op["value"].clone());
                }
                other => panic!("cannot add under {other}"),
            },
            "remove" => match target.pointer_mut(parent).expect("parent exists") {
                Value::Array(items) => {
                    items.remove(last.parse().expect("index"));
                }
                Value::Object(map) => {
                    map.remove(last);
                }
                other => panic!("cannot remove under {other}"),
            },
            other => panic!("unsupported json patch op {other}"),
        }
    }
}

/// Runs `f` against the server and returns the server once the context is gone.
pub async fn serve<F, Fut, T>(server: FakeApiServer, f: F) -> (T, FakeApiServer)
where
    F: FnOnce(Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let (ctx, task) = server.start();
    let result = f(ctx).await;
    let server = tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("the reconciler let go of the client")
        .expect("the fake API server did not panic");
    (result, server)
}
