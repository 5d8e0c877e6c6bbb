//! Redis: counters, caches, rankings and pub/sub. A cache by design (the database
//! holds every number), so one pod with an append-only file is enough.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, ExecAction, Probe, TCPSocketAction, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Environment, PodPlan, container, probe, secret_env};
use crate::crd::StorageSpec;
use crate::credentials::REDIS_PASSWORD;
use crate::names::Backend;

/// UID of the `redis` user in the official image.
const REDIS_UID: i64 = 999;

/// Where the generated `redis.conf` lives: a memory-backed emptyDir of the pod.
const CONFIG_DIR: &str = "/etc/redis-auth";

/// Starts Redis with its password from a config file written at start, so the
/// password never appears on a command line (`ps`, `/proc/*/cmdline`) or in the pod
/// spec. The file is readable by the Redis user only, and the server's own
/// environment drops the password (probes get `REDISCLI_AUTH` from the container
/// spec, not from the server process).
const START_SCRIPT: &str = r#"set -eu
umask 077
printf 'requirepass "%s"\n' "$REDIS_PASSWORD" > /etc/redis-auth/redis.conf
unset REDIS_PASSWORD REDISCLI_AUTH
exec redis-server /etc/redis-auth/redis.conf --appendonly yes --dir /data
"#;

pub fn statefulset(env: &Environment, storage: &StorageSpec) -> StatefulSet {
    let spec = &env.spec.redis;
    let secret = env.credentials_secret();
    let mut container = container(Backend::Redis, &spec.image, &spec.resources);
    container.env = Some(vec![
        secret_env("REDIS_PASSWORD", &secret, REDIS_PASSWORD),
        // redis-cli authenticates with this, so the probe needs no password argument.
        secret_env("REDISCLI_AUTH", &secret, REDIS_PASSWORD),
    ]);
    container.command = Some(vec!["/bin/sh".into(), "-c".into(), START_SCRIPT.into()]);
    if let Some(mounts) = container.volume_mounts.as_mut() {
        mounts.push(VolumeMount { name: "auth".into(), mount_path: CONFIG_DIR.into(), ..Default::default() });
    }
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
    let mut sts = super::statefulset(
        env,
        Backend::Redis,
        storage,
        PodPlan { container, replicas: spec.replicas, user: REDIS_UID, termination_grace_seconds: 30 },
    );
    if let Some(pod) = sts.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.volumes = Some(vec![Volume {
            name: "auth".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity("1Mi".into())),
            }),
            ..Default::default()
        }]);
    }
    sts
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
        let password = c.env.as_ref().unwrap().iter().find(|v| v.name == "REDIS_PASSWORD").unwrap();
        assert_eq!(password.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().key, REDIS_PASSWORD);
        let probe = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        assert!(probe.command.as_ref().unwrap()[2].contains("ping"));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 6379);
    }

    #[test]
    fn the_password_is_on_no_command_line() {
        let env = test_env(DouyinEnvironmentSpec::default());
        let e = Environment::new(&env).unwrap();
        let spec = statefulset(&e, &e.spec.redis.storage).spec.unwrap();
        let pod = spec.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        let words: Vec<&String> = c.command.iter().chain(c.args.iter()).flatten().collect();
        assert!(words.iter().all(|w| !w.contains("--requirepass") && !w.contains("$(REDIS")), "{words:?}");
        // redis-server is started with only the config file and non-secret flags.
        let script = &c.command.as_ref().unwrap()[2];
        let exec = script.lines().find(|l| l.starts_with("exec ")).unwrap();
        assert_eq!(exec, "exec redis-server /etc/redis-auth/redis.conf --appendonly yes --dir /data");
        assert!(script.contains("umask 077"));
        let mount = c.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "auth").unwrap();
        assert_eq!(mount.mount_path, CONFIG_DIR);
        let volume = &pod.volumes.as_ref().unwrap()[0];
        assert_eq!(volume.empty_dir.as_ref().unwrap().medium.as_deref(), Some("Memory"));
    }

    /// The start script, run by a real shell, writes a config redis-server parses
    /// and starts nothing else.
    #[test]
    fn the_start_script_writes_requirepass_into_the_config() {
        let dir = std::env::temp_dir().join(format!("redis-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = START_SCRIPT
            .replace(CONFIG_DIR, dir.to_str().unwrap())
            // What redis-server would see: its environment and arguments.
            .replace("exec redis-server", r#"exec sh -c 'env; echo "$0 $*"' redis-server"#);
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("REDIS_PASSWORD", "s3cretAbc123")
            .env("REDISCLI_AUTH", "s3cretAbc123")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let config = std::fs::read_to_string(dir.join("redis.conf")).unwrap();
        assert_eq!(config, "requirepass \"s3cretAbc123\"\n");
        let started = String::from_utf8(out.stdout).unwrap();
        assert!(started.contains("redis-server"), "{started}");
        assert!(!started.contains("s3cretAbc123"), "the server sees no password: {started}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("redis.conf")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the config is private: {mode:o}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
