//! From what the reconciler observed to the status it writes: conditions and phase.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{DouyinEnvironmentStatus, Phase};
use crate::names::Backend;
use crate::validate::InvalidSpec;

pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";

/// What the reconciler found for one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendState {
    /// `enabled: false`: not part of the environment.
    Disabled,
    /// Disabled or made external, and its StatefulSet is still being removed.
    Removing,
    /// Uses an existing instance; `problem` says why its settings could not be read.
    External { problem: Option<String> },
    /// Runs as a StatefulSet.
    Provisioned {
        replicas: i32,
        ready_replicas: i32,
        /// The StatefulSet controller has not yet rolled out the latest spec.
        rolling_out: bool,
        /// A storage change the claim template cannot take, described.
        storage_drift: Option<String>,
        setup: Setup,
    },
}

/// One-off setup after the backend is up (MinIO's bucket Job).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    NotNeeded,
    Pending,
    Done,
    Failed,
}

/// The three backends' states, in `Backend::ALL` order.
pub type Observed = [(Backend, BackendState); 3];

struct Verdict {
    ready: bool,
    reason: &'static str,
    message: String,
}

fn verdict(backend: Backend, state: &BackendState) -> Verdict {
    let key = backend.key();
    let (ready, reason, message) = match state {
        BackendState::Disabled => {
            (true, "Disabled", format!("spec.{key}.enabled is false; the Secret leaves its keys out"))
        }
        BackendState::Removing => (
            false,
            "Removing",
            format!("spec.{key} is no longer provisioned; removing its StatefulSet, keeping its volume claims"),
        ),
        BackendState::External { problem: None } => {
            (true, "External", format!("uses the instance named in spec.{key}.external"))
        }
        BackendState::External { problem: Some(problem) } => (false, "ExternalUnavailable", problem.clone()),
        BackendState::Provisioned { replicas: 0, .. } => {
            (false, "ScaledToZero", format!("spec.{key}.replicas is 0; the volume is kept"))
        }
        BackendState::Provisioned { replicas, ready_replicas, rolling_out, setup, .. } => {
            let counts = format!("{ready_replicas}/{replicas} replicas ready");
            if *rolling_out {
                (false, "RollingOut", format!("{counts}; rolling out the latest spec"))
            } else if ready_replicas < replicas {
                (false, "Provisioning", counts)
            } else {
                match setup {
                    Setup::NotNeeded | Setup::Done => (true, "StatefulSetReady", counts),
                    Setup::Pending => (false, "CreatingBucket", format!("{counts}; waiting for the bucket Job")),
                    Setup::Failed => {
                        (false, "BucketSetupFailed", format!("{counts}; the bucket Job failed (delete it to retry)"))
                    }
                }
            }
        }
    };
    Verdict { ready, reason, message }
}

/// A condition, keeping the previous transition time when its status did not change.
fn condition(
    previous: &[Condition],
    type_: &str,
    ready: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if ready { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Status after a reconcile that applied everything and observed `observed`.
pub fn reconciled(
    previous: Option<&DouyinEnvironmentStatus>,
    generation: Option<i64>,
    secret_name: &str,
    observed: &Observed,
    now: Timestamp,
) -> DouyinEnvironmentStatus {
    let prev = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let verdicts: Vec<_> = observed.iter().map(|(b, s)| (*b, verdict(*b, s))).collect();

    let not_ready: Vec<_> = verdicts.iter().filter(|(_, v)| !v.ready).map(|(b, _)| b.key()).collect();
    let ready = not_ready.is_empty();
    let mut conditions = vec![if ready {
        condition(prev, READY, true, "AllBackendsReady", "every backend is ready".into(), generation, now)
    } else {
        condition(
            prev,
            READY,
            false,
            "BackendsNotReady",
            format!("not ready: {}", not_ready.join(", ")),
            generation,
            now,
        )
    }];
    for (backend, v) in &verdicts {
        conditions.push(condition(
            prev,
            backend.condition_type(),
            v.ready,
            v.reason,
            v.message.clone(),
            generation,
            now,
        ));
    }

    let mut problems: Vec<(&'static str, String)> = Vec::new();
    for (backend, state) in observed {
        match state {
            BackendState::Provisioned { storage_drift: Some(drift), .. } => {
                problems.push(("StorageChangeRejected", drift.clone()))
            }
            BackendState::External { problem: Some(problem) } => {
                problems.push(("ExternalUnavailable", problem.clone()))
            }
            BackendState::Provisioned { setup: Setup::Failed, .. } => problems
                .push(("BucketSetupFailed", format!("{}: the bucket Job failed (delete it to retry)", backend.key()))),
            _ => {}
        }
    }
    let degraded = match problems.first() {
        Some((reason, _)) => {
            let message = problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
            condition(prev, DEGRADED, true, reason, message, generation, now)
        }
        None => condition(prev, DEGRADED, false, "Reconciled", "the spec is applied".into(), generation, now),
    };
    let phase = if degraded.status == "True" {
        Phase::Degraded
    } else if ready {
        Phase::Ready
    } else {
        Phase::Pending
    };
    conditions.push(degraded);
    DouyinEnvironmentStatus {
        observed_generation: generation,
        phase: Some(phase),
        secret_name: Some(secret_name.into()),
        conditions,
    }
}

/// Why the operator applied nothing: a CamelCase reason and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `Ready`'s reason.
    pub ready_reason: &'static str,
    /// `Degraded`'s reason and message.
    pub reason: &'static str,
    pub message: String,
}

impl From<&InvalidSpec> for Refusal {
    fn from(invalid: &InvalidSpec) -> Self {
        Self { ready_reason: "InvalidSpec", reason: invalid.reason, message: invalid.message.clone() }
    }
}

/// Status for a spec the operator refuses: backend conditions stay as last seen,
/// `Ready` is false and `Degraded` carries the reason.
pub fn invalid(
    previous: Option<&DouyinEnvironmentStatus>,
    generation: Option<i64>,
    invalid: &InvalidSpec,
    now: Timestamp,
) -> DouyinEnvironmentStatus {
    refused(previous, generation, &Refusal::from(invalid), now)
}

/// Status when the operator stopped before applying anything (an invalid spec,
/// credentials lost while their data exists): `Ready` false, `Degraded` true with
/// the reason and the way out, backend conditions as last seen.
pub fn refused(
    previous: Option<&DouyinEnvironmentStatus>,
    generation: Option<i64>,
    refusal: &Refusal,
    now: Timestamp,
) -> DouyinEnvironmentStatus {
    let prev = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let mut conditions = vec![condition(
        prev,
        READY,
        false,
        refusal.ready_reason,
        format!("nothing was applied: {}; see Degraded", refusal.reason),
        generation,
        now,
    )];
    conditions.extend(prev.iter().filter(|c| Backend::ALL.iter().any(|b| b.condition_type() == c.type_)).cloned());
    conditions.push(condition(prev, DEGRADED, true, refusal.reason, refusal.message.clone(), generation, now));
    DouyinEnvironmentStatus {
        observed_generation: generation,
        phase: Some(Phase::Degraded),
        secret_name: previous.and_then(|s| s.secret_name.clone()),
        conditions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provisioned(ready_replicas: i32) -> BackendState {
        BackendState::Provisioned {
            replicas: 1,
            ready_replicas,
            rolling_out: false,
            storage_drift: None,
            setup: Setup::NotNeeded,
        }
    }

    fn find<'a>(status: &'a DouyinEnvironmentStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn ready_only_when_every_backend_is_ready() {
        let now = Timestamp::now();
        let pending: Observed = [
            (Backend::Mysql, provisioned(1)),
            (Backend::Redis, provisioned(0)),
            (Backend::Minio, BackendState::Disabled),
        ];
        let status = reconciled(None, Some(2), "s", &pending, now);
        assert_eq!(status.phase, Some(Phase::Pending));
        assert_eq!(find(&status, READY).status, "False");
        assert_eq!(find(&status, READY).message, "not ready: redis");
        assert_eq!(find(&status, "MysqlReady").status, "True");
        assert_eq!(find(&status, "MinioReady").reason, "Disabled");
        assert_eq!(status.observed_generation, Some(2));

        let all: Observed =
            [(Backend::Mysql, provisioned(1)), (Backend::Redis, provisioned(1)), (Backend::Minio, provisioned(1))];
        let status = reconciled(Some(&status), Some(2), "s", &all, now);
        assert_eq!(status.phase, Some(Phase::Ready));
        assert_eq!(find(&status, DEGRADED).status, "False");
        let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, "MysqlReady", "RedisReady", "MinioReady", DEGRADED]);
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let then = Timestamp::from_second(1_700_000_000).unwrap();
        let later = Timestamp::from_second(1_700_000_600).unwrap();
        let observed: Observed =
            [(Backend::Mysql, provisioned(0)), (Backend::Redis, provisioned(1)), (Backend::Minio, provisioned(1))];
        let first = reconciled(None, Some(1), "s", &observed, then);
        let observed: Observed =
            [(Backend::Mysql, provisioned(1)), (Backend::Redis, provisioned(1)), (Backend::Minio, provisioned(1))];
        let second = reconciled(Some(&first), Some(1), "s", &observed, later);
        assert_eq!(find(&second, "RedisReady").last_transition_time, Time(then));
        assert_eq!(find(&second, "MysqlReady").last_transition_time, Time(later));
    }

    #[test]
    fn storage_drift_degrades_but_keeps_the_backend_ready() {
        let drift = BackendState::Provisioned {
            replicas: 1,
            ready_replicas: 1,
            rolling_out: false,
            storage_drift: Some("mysql: storage 10Gi -> 20Gi".into()),
            setup: Setup::NotNeeded,
        };
        let observed: Observed =
            [(Backend::Mysql, drift), (Backend::Redis, provisioned(1)), (Backend::Minio, provisioned(1))];
        let status = reconciled(None, Some(3), "s", &observed, Timestamp::now());
        assert_eq!(status.phase, Some(Phase::Degraded));
        assert_eq!(find(&status, "MysqlReady").status, "True");
        assert_eq!(find(&status, DEGRADED).reason, "StorageChangeRejected");
    }

    #[test]
    fn minio_waits_for_its_bucket() {
        let minio = BackendState::Provisioned {
            replicas: 1,
            ready_replicas: 1,
            rolling_out: false,
            storage_drift: None,
            setup: Setup::Pending,
        };
        let observed: Observed =
            [(Backend::Mysql, provisioned(1)), (Backend::Redis, provisioned(1)), (Backend::Minio, minio)];
        let status = reconciled(None, Some(1), "s", &observed, Timestamp::now());
        assert_eq!(find(&status, "MinioReady").reason, "CreatingBucket");
        assert_eq!(status.phase, Some(Phase::Pending));
    }

    #[test]
    fn an_invalid_spec_keeps_backend_conditions_and_degrades() {
        let observed: Observed =
            [(Backend::Mysql, provisioned(1)), (Backend::Redis, provisioned(1)), (Backend::Minio, provisioned(1))];
        let good = reconciled(None, Some(1), "s", &observed, Timestamp::now());
        let refused = InvalidSpec { reason: "UnpinnedImage", message: "spec.redis.image".into() };
        let status = invalid(Some(&good), Some(2), &refused, Timestamp::now());
        assert_eq!(status.phase, Some(Phase::Degraded));
        assert_eq!(find(&status, READY).reason, "InvalidSpec");
        assert_eq!(find(&status, DEGRADED).reason, "UnpinnedImage");
        assert_eq!(find(&status, "MysqlReady").status, "True");
        assert_eq!(status.secret_name.as_deref(), Some("s"));
    }
}
