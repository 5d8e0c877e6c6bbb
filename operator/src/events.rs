//! Events about environments (`kubectl describe denv`, `kubectl events`),
//! written with the operator as their reporting controller.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

use crate::builders::Environment;

/// The `reportingController` of the operator's Events.
pub const REPORTER: &str = "douyin-operator";

/// Publishes Events; one that cannot be written is logged, never fails the reconcile.
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: Client) -> Self {
        // The pod name (downward API) tells replicas' Events apart.
        let reporter = Reporter { controller: REPORTER.into(), instance: std::env::var("POD_NAME").ok() };
        Self { recorder: Recorder::new(client, reporter) }
    }

    /// Publishes an Event about the environment.
    pub async fn publish(&self, e: &Environment<'_>, type_: EventType, reason: &str, action: &str, note: String) {
        self.publish_to(&e.reference(), type_, reason, action, note).await;
    }

    pub async fn publish_to(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            warn!(%error, reason, "could not publish an Event");
        }
    }
}
