//! Readiness of a process: every hosted role is SERVING over gRPC health (and
//! `/readyz` answers 200) only while the backends it depends on answer; all
//! flip to NOT_SERVING when shutdown begins (the lame-duck period, before
//! any listener stops accepting). Liveness is separate: the gRPC
//! health service [`LIVENESS`] (and the admin `/healthz`) says the process
//! runs, SERVING from start until exit whatever the backends do, so a
//! database outage never gets pods restarted.

use std::{
    sync::{
        Arc,
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

/// One dependency check (database ping, Redis ping, bucket head…).
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync>;

pub fn probe<F, Fut>(f: F) -> Probe
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

/// Whether this process is ready, shared with the HTTP `/readyz` handlers.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
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
    let deadline = interval.max(Duration::from_secs(1));
    loop {
        let mut all_ok = true;
        for (role, probes) in &roles {
            let mut ok = true;
            for probe in probes {
                match tokio::time::timeout(deadline, probe()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(role = %role, %error, "dependency check failed");
                        ok = false;
                    }
                    Err(_) => {
                        tracing::warn!(role = %role, "dependency check timed out");
                        ok = false;
                    }
                }
            }
            all_ok &= ok;
            if let (Some(reporter), false) = (&reporter, role.grpc_service().is_empty()) {
                reporter.set_service_status(role.grpc_service(), status(ok)).await;
            }
        }
        if shutdown.is_shutting_down() {
            break;
        }
        if let Some(reporter) = &reporter {
            reporter.set_service_status("", status(all_ok)).await;
        }
        readiness.set(all_ok);
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            // The lame-duck period: NOT_SERVING while the listeners still accept.
            () = shutdown.clone().began() => break,
        }
    }
    readiness.set(false);
    if let Some(reporter) = &reporter {
        for (role, _) in &roles {
            if !role.grpc_service().is_empty() {
                reporter.set_service_status(role.grpc_service(), ServingStatus::NotServing).await;
            }
        }
        reporter.set_service_status("", ServingStatus::NotServing).await;
    }
}

fn status(ok: bool) -> ServingStatus {
    if ok { ServingStatus::Serving } else { ServingStatus::NotServing }
}
