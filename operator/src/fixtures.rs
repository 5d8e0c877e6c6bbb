//! A fake API server behind a `tower-test` mock: it records every request the
//! reconciler sends and answers from an in-memory object store, so tests assert the
//! exact request sequence and what ended up stored.
//!
//! Every request is also recorded as the RBAC check sees it (`ApiCall`: verb,
//! group, resource, namespaced or not); with `DOUYIN_RBAC_AUDIT=<file>` set, the
//! calls are appended to that file as JSON lines, which `.ci/operator-check.sh`
//! compares with the operator's RBAC rules.

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

mod patch;
mod paths;
use patch::{json_patch, merge_patch};
pub use paths::*;

pub const NS: &str = "shop";

/// Objects by API path, e.g. `/api/v1/namespaces/shop/secrets/dev-douyin-backends`.
#[derive(Debug, Default)]
pub struct FakeApiServer {
    pub objects: BTreeMap<String, Value>,
    /// `VERB path` per request but Events, VERB one of GET, LIST, APPLY, JSONPATCH,
    /// MERGE, DELETE.
    pub requests: Vec<String>,
    /// Events the operator published (bodies of their create requests).
    pub events: Vec<Value>,
    /// Every request, as RBAC authorizes it.
    pub calls: Vec<ApiCall>,
    /// Answer every request with 500, to exercise error handling.
    pub fail_everything: bool,
    /// Events one watch delivers, for tests that run the whole controller.
    pub scripted_watch: Option<ScriptedWatch>,
    /// Told of every request (`VERB path`) once answered, so a test can wait for one.
    pub observer: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// The first watch of `resource` is answered with `events` once the server has
/// answered the request `after` (`VERB path`); the objects at `deletes` go from the
/// store at that moment (as if deleted by hand). Other watches stay open, silent.
#[derive(Debug)]
pub struct ScriptedWatch {
    pub resource: String,
    pub after: String,
    pub events: Vec<Value>,
    pub deletes: Vec<String>,
}

/// One request as the RBAC authorizer sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct ApiCall {
    pub verb: String,
    pub group: String,
    pub resource: String,
    /// Sent to a namespace's path (a Role there can allow it), or cluster-wide.
    pub namespaced: bool,
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
            // Watches stay open (never answered) until the client goes away.
            let mut open_watches = Vec::new();
            let mut scripted = None;
            let mut script_armed = false;
            let mut script_delivered = false;
            while let Some((request, respond)) = handle.next_request().await {
                if request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "watch=true")) {
                    let path = request.uri().path().to_string();
                    self.record("watch", &path);
                    let line = format!("WATCH {path}");
                    self.requests.push(line.clone());
                    self.notify(&line);
                    let wanted = self.scripted_watch.as_ref().is_some_and(|w| parse_path(&path).resource == w.resource);
                    if wanted && !script_delivered && scripted.is_none() {
                        if script_armed {
                            self.deliver_script(respond);
                            script_delivered = true;
                        } else {
                            scripted = Some(respond);
                        }
                    } else {
                        open_watches.push(respond);
                    }
                    continue;
                }
                let answered = self.requests.len();
                let (status, body) = self.answer(request).await;
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).expect("json")))
                    .expect("response");
                respond.send_response(response);
                if let Some(line) = self.requests.get(answered).cloned() {
                    self.notify(&line);
                    if !script_armed && self.scripted_watch.as_ref().is_some_and(|w| w.after == line) {
                        script_armed = true;
                        if let Some(respond) = scripted.take() {
                            self.deliver_script(respond);
                            script_delivered = true;
                        }
                    }
                }
            }
            drop(open_watches);
            self
        });
        (ctx, task)
    }

    fn notify(&self, line: &str) {
        if let Some(observer) = &self.observer {
            let _ = observer.send(line.to_string());
        }
    }

    /// Answers the scripted watch, if it is waiting, with its events.
    fn deliver_script(&mut self, respond: mock::SendResponse<Response<Body>>) {
        let script = self.scripted_watch.as_ref().expect("scripted");
        for path in &script.deletes {
            self.objects.remove(path);
        }
        let lines: Vec<String> = script.events.iter().map(|e| serde_json::to_string(e).expect("json")).collect();
        let response = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(lines.join("\n").into_bytes()))
            .expect("response");
        respond.send_response(response);
    }

    fn record(&mut self, verb: &str, path: &str) {
        let parsed = parse_path(path);
        let call = ApiCall {
            verb: verb.into(),
            group: parsed.group,
            resource: parsed.resource,
            namespaced: parsed.namespace.is_some(),
        };
        if let Ok(file) = std::env::var("DOUYIN_RBAC_AUDIT") {
            use std::io::Write;
            let line = serde_json::to_string(&call).expect("json") + "\n";
            let mut out = std::fs::OpenOptions::new().create(true).append(true).open(file).expect("audit file");
            out.write_all(line.as_bytes()).expect("audit write");
        }
        self.calls.push(call);
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

        let parsed = parse_path(&path);
        let collection = parsed.name.is_none();
        let verb = match (&method, content_type.as_str()) {
            (&Method::GET, _) if collection => "LIST",
            (&Method::GET, _) => "GET",
            (&Method::POST, _) => "CREATE",
            (&Method::DELETE, _) => "DELETE",
            (&Method::PATCH, "application/apply-patch+yaml") => "APPLY",
            (&Method::PATCH, "application/json-patch+json") => "JSONPATCH",
            (&Method::PATCH, "application/merge-patch+json") => "MERGE",
            _ => panic!("unexpected request {method} {path} ({content_type})"),
        };
        let rbac_verb = match verb {
            "LIST" => "list",
            "GET" => "get",
            "CREATE" => "create",
            "DELETE" if collection => "deletecollection",
            "DELETE" => "delete",
            _ => "patch",
        };
        self.record(rbac_verb, &path);
        // Server-side apply of an object that does not exist creates it, which RBAC
        // authorizes as create too.
        if verb == "APPLY" && !self.objects.contains_key(&path) && !path.ends_with("/status") {
            self.record("create", &path);
        }
        if parsed.resource == "events" {
            assert!(!self.fail_everything || verb == "CREATE", "events only after a failure: {verb} {path}");
            if self.fail_everything {
                return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
            }
            self.events.push(body.clone());
            return (StatusCode::CREATED, body);
        }
        self.requests.push(format!("{verb} {path}"));
        if self.fail_everything {
            return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
        }
        if verb == "APPLY" {
            assert!(query.contains("fieldManager=douyin-operator"), "apply without field manager: {query}");
            assert!(query.contains("force=true"), "apply without force: {query}");
        }

        self.serve(verb, path, &query, collection, body)
    }

    /// The stored objects' answer to one classified request.
    fn serve(&mut self, verb: &str, path: String, query: &str, collection: bool, body: Value) -> (StatusCode, Value) {
        match verb {
            "LIST" => self.list(&path, query),
            "GET" => match self.objects.get(&path) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            "APPLY" => self.apply(path, body),
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
            "DELETE" if collection => {
                let kind = path.rsplit('/').next().unwrap_or_default().to_string();
                let selector = query_param(query, "labelSelector").unwrap_or_default();
                self.objects.retain(|p, o| !(p.starts_with(&format!("{path}/")) && matches_selector(o, &selector)));
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

    fn list(&self, path: &str, query: &str) -> (StatusCode, Value) {
        let selector = query_param(query, "labelSelector").unwrap_or_default();
        let prefix = format!("{path}/");
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(p, o)| {
                p.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('/')) && matches_selector(o, &selector)
            })
            .map(|(_, o)| o.clone())
            .collect();
        (
            StatusCode::OK,
            json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": "1" }, "items": items }),
        )
    }

    /// Server-side apply: of an object's status, or of the object (keeping
    /// the status it has).
    fn apply(&mut self, path: String, body: Value) -> (StatusCode, Value) {
        match path.strip_suffix("/status") {
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

/// A context whose client is never answered, for tests that make no request.
pub fn offline_context() -> Arc<Context> {
    let (service, _handle) = mock::pair::<Request<Body>, Response<Body>>();
    Arc::new(Context::new(Client::new(service, "default"), Metrics::default()))
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
