//! MariaDB: the relational database, one pod with one volume.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ExecAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Environment, PodPlan, container, plain_env, probe, secret_env};
use crate::crd::StorageSpec;
use crate::credentials::{MYSQL_DATABASE, MYSQL_PASSWORD, MYSQL_ROOT_PASSWORD, MYSQL_USER};
use crate::names::Backend;

/// UID of the `mysql` user in the official MariaDB image.
const MYSQL_UID: i64 = 999;

pub fn statefulset(env: &Environment, storage: &StorageSpec) -> StatefulSet {
    let spec = &env.spec.mysql;
    let secret = env.credentials_secret();
    let mut container = container(Backend::Mysql, &spec.image, &spec.resources);
    container.env = Some(vec![
        secret_env("MARIADB_ROOT_PASSWORD", &secret, MYSQL_ROOT_PASSWORD),
        plain_env("MARIADB_DATABASE", MYSQL_DATABASE),
        plain_env("MARIADB_USER", MYSQL_USER),
        secret_env("MARIADB_PASSWORD", &secret, MYSQL_PASSWORD),
        // A newer pinned image upgrades the system tables of an existing data dir.
        plain_env("MARIADB_AUTO_UPGRADE", "1"),
    ]);
    container.readiness_probe = Some(readiness_probe());
    container.liveness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::String("mysql".into()), ..Default::default() }),
        // The first start initialises the data dir without networking.
        ..probe(60, 20, 6)
    });
    super::statefulset(
        env,
        Backend::Mysql,
        storage,
        PodPlan { container, replicas: spec.replicas, user: MYSQL_UID, termination_grace_seconds: 60 },
    )
}

/// Ready once InnoDB is initialised and a client can connect, checked with the
/// image's own `healthcheck.sh` (its healthcheck user is created on first start).
fn readiness_probe() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["healthcheck.sh".into(), "--connect".into(), "--innodb_initialized".into()]),
        }),
        ..probe(10, 10, 6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::tests::test_env;
    use crate::crd::DouyinEnvironmentSpec;

    #[test]
    fn runs_the_pinned_image_with_credentials_from_the_secret() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let sts = statefulset(&e, &e.spec.mysql.storage);
        assert_eq!(sts.metadata.name.as_deref(), Some("dev-mysql"));
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("dev-mysql-headless"));
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("mariadb:11.4.4"));
        let env_vars = c.env.as_ref().unwrap();
        let password = env_vars.iter().find(|v| v.name == "MARIADB_PASSWORD").unwrap();
        let selector = password.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!(selector.name, "dev-douyin-credentials");
        assert_eq!(selector.key, MYSQL_PASSWORD);
        assert!(env_vars.iter().all(|v| v.value.as_deref().is_none_or(|v| !v.is_empty())));
        assert_eq!(pod.security_context.unwrap().run_as_user, Some(999));
    }

    #[test]
    fn readiness_uses_the_image_healthcheck() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let c = &statefulset(&e, &e.spec.mysql.storage).spec.unwrap().template.spec.unwrap().containers[0];
        let command = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap().command.clone().unwrap();
        assert_eq!(command[0], "healthcheck.sh");
        assert!(c.liveness_probe.as_ref().unwrap().tcp_socket.is_some());
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["memory"].0, "1Gi");
    }
}
