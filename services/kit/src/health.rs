//! Readiness of a process: every hosted role is SERVING over gRPC health (and
//! `/readyz` answers 200) only while the backends it depends on answer (a
//! query on each of its own tables, not just a ping, so a missing table is
//! found), and the admin `/readyz` names the checks that fail; all
//! flip to NOT_SERVING when shutdown begins (the lame-duck period, before
//! any listener stops accepting). Liveness is separate: the gRPC
//! health service [`LIVENESS`] (and the admin `/healthz`) says the process
//! runs, SERVING from start until exit whatever the backends do, so a
//! database outage never gets pods restarted.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{Result, Role, shutdown::Shutdown};

/// The gRPC health service name of liveness probes.
pub const LIVENESS: &str = "liveness";

/// Marks the process alive for gRPC liveness probes; nothing turns it off.
pub async fn report_alive(reporter: &HealthReporter) {
    reporter.set_service_status(LIVENESS, ServingStatus::Serving).await;
}

/// How long one dependency check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Rounds in a row a required check must fail before a ready role reports
/// not ready: a blip of one round (a database failover, a slow query) does
/// not take the role out of its Service and put it back.
pub const UNREADY_AFTER: u32 = 2;

type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// One dependency check (a query on a role's table, a Redis ping, a bucket
/// head…), named for the readiness report. A required check decides
/// readiness; an optional one (a dependency the role degrades without) is
/// only reported.
#[derive(Clone)]
pub struct Probe {
    pub name: String,
    pub required: bool,
    check: Check,
}

pub fn probe<F, Fut>(name: impl Into<String>, f: F) -> Probe
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    Probe { name: name.into(), required: true, check: Arc::new(move || Box::pin(f())) }
}

impl Probe {
    /// The same check, reported but not deciding readiness.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    async fn run(&self) -> std::result::Result<(), String> {
        match tokio::time::timeout(CHECK_TIMEOUT, (self.check)()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
        }
    }
}

/// Whether this process is ready, shared with the HTTP `/readyz` handlers,
/// with the last round's report (the admin port's `/readyz` body).
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    report: Arc<Mutex<String>>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// `ready` or `not ready`, then one line per failing check:
    /// `<role>: <check>: <error>`, marked `(optional)` for checks that do not
    /// decide readiness.
    pub fn report(&self) -> String {
        let report = self.report.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if report.is_empty() { if self.is_ready() { "ready".into() } else { "not ready".into() } } else { report }
    }

    fn set(&self, ready: bool, failures: &[String]) {
        self.ready.store(ready, Ordering::Relaxed);
        let head = if ready { "ready" } else { "not ready" };
        let report = std::iter::once(head.to_owned()).chain(failures.iter().cloned()).collect::<Vec<_>>().join("\n");
        *self.report.lock().unwrap_or_else(|e| e.into_inner()) = report;
    }
}

/// A role's checks and how many rounds in a row a required one failed.
struct Watched {
    role: Role,
    probes: Vec<Probe>,
    failing_rounds: u32,
    ready: bool,
}

impl Watched {
    /// Runs the role's checks at once; appends what failed to `failures`.
    async fn round(&mut self, failures: &mut Vec<String>) -> bool {
        let results = futures::future::join_all(self.probes.iter().map(Probe::run)).await;
        let mut ok = true;
        for (probe, result) in self.probes.iter().zip(results) {
            if let Err(error) = result {
                let optional = if probe.required { "" } else { " (optional)" };
                tracing::warn!(role = %self.role, check = %probe.name, %error, "dependency check failed");
                failures.push(format!("{}: {}: {error}{optional}", self.role, probe.name));
                ok &= !probe.required;
            }
        }
        self.failing_rounds = if ok { 0 } else { self.failing_rounds.saturating_add(1) };
        // Ready on the first good round; not ready once the failures last.
        self.ready = ok || (self.ready && self.failing_rounds < UNREADY_AFTER);
        self.ready
    }
}

/// Runs every probe each `interval` and publishes the result for each role
/// (its named gRPC service) and for the process ("" and `readiness`).
pub async fn watch(
    reporter: Option<HealthReporter>,
    roles: Vec<(Role, Vec<Probe>)>,
    readiness: Readiness,
    interval: Duration,
    shutdown: Shutdown,
) {
    let mut roles: Vec<Watched> =
        roles.into_iter().map(|(role, probes)| Watched { role, probes, failing_rounds: 0, ready: false }).collect();
    loop {
        let mut all_ok = true;
        let mut failures = Vec::new();
        for watched in &mut roles {
            let ok = watched.round(&mut failures).await;
            all_ok &= ok;
            let service = watched.role.grpc_service();
            if let (Some(reporter), false) = (&reporter, service.is_empty()) {
                reporter.set_service_status(service, status(ok)).await;
            }
        }
        if shutdown.is_shutting_down() {
            break;
        }
        if let Some(reporter) = &reporter {
            reporter.set_service_status("", status(all_ok)).await;
        }
        readiness.set(all_ok, &failures);
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            // The lame-duck period: NOT_SERVING while the listeners still accept.
            () = shutdown.clone().began() => break,
        }
    }
    readiness.set(false, &["shutting down".to_owned()]);
    if let Some(reporter) = &reporter {
        for watched in &roles {
            if !watched.role.grpc_service().is_empty() {
                reporter.set_service_status(watched.role.grpc_service(), ServingStatus::NotServing).await;
            }
        }
        reporter.set_service_status("", ServingStatus::NotServing).await;
    }
}

fn status(ok: bool) -> ServingStatus {
    if ok { ServingStatus::Serving } else { ServingStatus::NotServing }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// A check that fails while `failing` is set.
    fn switch() -> (Arc<AtomicBool>, Probe) {
        let failing = Arc::new(AtomicBool::new(false));
        let flag = failing.clone();
        let check = probe("database table t", move || {
            let fail = flag.load(Ordering::Relaxed);
            async move { if fail { Err(crate::Error::Unavailable("down".into())) } else { Ok(()) } }
        });
        (failing, check)
    }

    #[tokio::test]
    async fn one_failed_round_does_not_flip_a_ready_role_and_lasting_failures_do() {
        let (failing, check) = switch();
        let mut watched = Watched { role: Role::Chat, probes: vec![check], failing_rounds: 0, ready: false };
        let mut failures = Vec::new();
        assert!(watched.round(&mut failures).await, "ready on the first good round");
        failing.store(true, Ordering::Relaxed);
        assert!(watched.round(&mut failures).await, "one failed round is a blip");
        assert_eq!(failures, ["chat: database table t: service temporarily unavailable: down"]);
        assert!(!watched.round(&mut failures).await, "two in a row: not ready");
        failing.store(false, Ordering::Relaxed);
        assert!(watched.round(&mut Vec::new()).await, "ready again at once");
    }

    #[tokio::test]
    async fn a_role_that_never_answered_is_not_ready_and_optional_checks_only_report() {
        let (failing, check) = switch();
        failing.store(true, Ordering::Relaxed);
        let mut watched = Watched { role: Role::User, probes: vec![check], failing_rounds: 0, ready: false };
        assert!(!watched.round(&mut Vec::new()).await, "never ready: no grace");
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let redis = probe("redis", move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async { Err(crate::Error::Unavailable("no redis".into())) }
        })
        .optional();
        let mut watched = Watched { role: Role::Counter, probes: vec![redis], failing_rounds: 0, ready: false };
        let mut failures = Vec::new();
        assert!(watched.round(&mut failures).await, "an optional check decides nothing");
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert!(failures[0].ends_with("(optional)"), "{failures:?}");
        let readiness = Readiness::default();
        readiness.set(false, &failures);
        assert_eq!(readiness.report(), format!("not ready\n{}", failures[0]));
    }
}
