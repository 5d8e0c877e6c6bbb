//! Redis: counters, caches, rankings and pub/sub. A cache by design (the database
//! holds every number), so one pod with an append-only file is enough.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ExecAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Environment, PodPlan, container, probe, secret_env};
use crate::crd::StorageSpec;
use crate::credentials::REDIS_PASSWORD;
use crate::names::Backend;

/// UID of the `redis` user in the official image.
const REDIS_UID: i64 = 999;

pub fn statefulset(env: &Environment, storage: &StorageSpec) -> StatefulSet {
    let spec = &env.spec.redis;
    let secret = env.credentials_secret();
    let mut container = container(Backend::Redis, &spec.image, &spec.resources);
    container.env = Some(vec![
        secret_env("REDIS_PASSWORD", &secret, REDIS_PASSWORD),
        // redis-cli authenticates with this, so the probe needs no password argument.
        secret_env("REDISCLI_AUTH", &secret, REDIS_PASSWORD),
    ]);
    container.args = Some(
        ["redis-server", "--requirepass", "$(REDIS_PASSWORD)", "--appendonly", "yes", "--dir", "/data"]
            .map(String::from)
            .to_vec(),
    );
    container.readiness_probe = Some(Probe {
        exec: Some(ExecAction {
            command: Some(["sh", "-c", "redis-cli -h 127.0.0.1 ping | grep -q PONG"].map(String::from).to_vec()),
        }),
        ..probe(5, 10, 3)
    });
    container.liveness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::String("redis".into()), ..Default::default() }),
        ..probe(30, 20, 6)
    });
    super::statefulset(
        env,
        Backend::Redis,
        storage,
        PodPlan { container, replicas: spec.replicas, user: REDIS_UID, termination_grace_seconds: 30 },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::tests::test_env;
    use crate::crd::DouyinEnvironmentSpec;

    #[test]
    fn requires_the_generated_password_and_probes_with_ping() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let spec = statefulset(&e, &e.spec.redis.storage).spec.unwrap();
        let c = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("redis:7.4.2"));
        let args = c.args.as_ref().unwrap();
        assert!(args.windows(2).any(|w| w == ["--requirepass", "$(REDIS_PASSWORD)"]));
        let probe = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        assert!(probe.command.as_ref().unwrap()[2].contains("ping"));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 6379);
    }
}
