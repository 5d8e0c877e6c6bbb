//! Prometheus metrics of the reconciler, served at `/metrics`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub reconciliations: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciliations: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        }
    }
}

impl Metrics {
    /// Registers the metrics under `douyin_operator_`.
    pub fn register(self, registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("douyin_operator");
        registry.register("reconciliations", "Reconciliations started", self.reconciliations.clone());
        registry.register("reconcile_failures", "Reconciliations that failed, by error", self.failures.clone());
        registry.register("reconcile_duration_seconds", "Time one reconciliation took", self.duration.clone());
        self
    }

    /// Counts a reconciliation and measures it until the guard drops.
    pub fn start_reconcile(&self) -> ReconcileTimer {
        self.reconciliations.inc();
        ReconcileTimer { started: Instant::now(), histogram: self.duration.clone() }
    }

    pub fn reconcile_failed(&self, error: &crate::Error) {
        self.failures.get_or_create(&ErrorLabels { error: error.metric_label().into() }).inc();
    }
}

pub struct ReconcileTimer {
    started: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// The registry in Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reconciliations_and_failures() {
        let mut registry = Registry::default();
        let metrics = Metrics::default().register(&mut registry);
        drop(metrics.start_reconcile());
        metrics.reconcile_failed(&crate::Error::MissingObjectKey("metadata.uid"));
        let text = encode(&registry);
        assert!(text.contains("douyin_operator_reconciliations_total 1"), "{text}");
        assert!(text.contains("douyin_operator_reconcile_failures_total{error=\"missing_object_key\"} 1"), "{text}");
        assert!(text.contains("douyin_operator_reconcile_duration_seconds_count 1"), "{text}");
    }
}
