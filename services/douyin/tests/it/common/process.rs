//! A launcher for `douyin` OS processes on free ports, with the environment
//! given explicitly (nothing inherited but `PATH`): one role or `all` per
//! process, or every role its own process pointed at each other.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::free_port;

pub const BIN: &str = env!("CARGO_BIN_EXE_douyin");
pub const ROLES: [&str; 7] = ["user", "video", "interaction", "relation", "chat", "counter", "api"];

/// `douyin` with `env` on top of an empty environment.
pub fn command(env: &[(String, String)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// Owned environment pairs from borrowed ones.
pub fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// One `douyin serve <role>` process, killed when dropped.
pub struct Proc {
    pub role: &'static str,
    pub child: Child,
    pub grpc: u16,
    pub admin: u16,
    pub http: u16,
    env: Vec<(String, String)>,
}

impl Proc {
    /// Starts `douyin serve role` with `env` and its listeners on the given
    /// (grpc, admin, http) ports; JSON logs at `warn` on stderr. The test
    /// service secret is set unless `env` names one.
    pub fn spawn(role: &'static str, env: &[(String, String)], (grpc, admin, http): (u16, u16, u16)) -> Proc {
        let mut command = command(env);
        if !env.iter().any(|(k, _)| k == "DOUYIN_SERVICE_SECRET") {
            command.env("DOUYIN_SERVICE_SECRET", super::SERVICE_SECRET);
        }
        let child = command
            .args(["serve", role])
            .env("DOUYIN_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
            .env("DOUYIN_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
            .env("DOUYIN_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("DOUYIN_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn douyin");
        Proc { role, child, grpc, admin, http, env: env.to_vec() }
    }

    /// Starts it on free ports.
    pub fn spawn_free(role: &'static str, env: &[(String, String)]) -> Proc {
        Proc::spawn(role, env, (free_port(), free_port(), free_port()))
    }

    /// Kills it and starts it again with the same environment and ports.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Proc::spawn(self.role, &self.env, (self.grpc, self.admin, self.http));
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// Waits until its `/readyz` answers 200.
    pub async fn ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = http.get(format!("http://127.0.0.1:{}/readyz", self.admin)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "{} did not become ready", self.role);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every role its own process with `env`, each role's endpoint set to its
/// process; killed when dropped.
pub struct Processes {
    pub procs: Vec<Proc>,
    pub http: reqwest::Client,
}

impl Processes {
    /// Starts all seven and returns once every one is ready.
    pub async fn start(env: &[(String, String)]) -> Processes {
        let ports: HashMap<&str, (u16, u16, u16)> =
            ROLES.iter().map(|r| (*r, (free_port(), free_port(), free_port()))).collect();
        let mut env = env.to_vec();
        for role in ROLES.iter().filter(|r| **r != "api") {
            env.push((
                format!("DOUYIN_{}_ENDPOINT", role.to_uppercase()),
                format!("http://127.0.0.1:{}", ports[role].0),
            ));
        }
        let procs: Vec<Proc> = ROLES.iter().map(|role| Proc::spawn(role, &env, ports[role])).collect();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        for p in &procs {
            p.ready(&http).await;
        }
        Processes { procs, http }
    }

    pub fn get(&self, role: &str) -> &Proc {
        self.procs.iter().find(|p| p.role == role).unwrap()
    }

    pub fn get_mut(&mut self, role: &str) -> &mut Proc {
        self.procs.iter_mut().find(|p| p.role == role).unwrap()
    }

    /// The gateway's base URL.
    pub fn base(&self) -> String {
        self.get("api").base()
    }
}
