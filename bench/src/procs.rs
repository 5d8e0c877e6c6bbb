//! Starting and stopping the servers under test: `douyin serve all`, the mesh of
//! seven `douyin serve <role>` processes, and the baseline, each on free
//! loopback ports, ready when its health endpoint answers.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// The roles of the mesh, each its own process; `api` last, it calls the others.
const MESH_ROLES: [&str; 7] = ["user", "video", "interaction", "relation", "chat", "counter", "api"];
const PEER_ROLES: [&str; 6] = ["user", "video", "interaction", "relation", "chat", "counter"];

/// A loopback port nothing listens on, never the same twice in this process.
/// Taken from 12000–20000, below the kernel's ephemeral range (where an
/// outgoing connection could take a port from `bind(0)` before the server
/// that was meant to have it starts) and beside the range the test suites
/// use, so a bench run beside them does not collide.
pub fn free_port() -> anyhow::Result<u16> {
    use std::hash::BuildHasher;
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for attempt in 0u32..10_000 {
        let port = 12_000 + (std::collections::hash_map::RandomState::new().hash_one(attempt) % 8_000) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return Ok(port);
        }
    }
    bail!("no free loopback port in 12000-20000")
}

/// The listeners of one `douyin serve <role>` process.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Listeners {
    pub role: String,
    pub http: u16,
    pub grpc: u16,
    pub admin: u16,
}

/// Running server processes; killed when dropped.
pub struct Servers {
    children: Vec<(String, Child)>,
    pub url: String,
    /// The douyin processes' listeners (none for the baseline and Redis).
    pub listeners: Vec<Listeners>,
}

impl Servers {
    /// `douyin serve all` with `env`.
    pub async fn all(bin: &Path, env: &[(String, String)], logs: &Path) -> anyhow::Result<Self> {
        let (http, grpc, admin) = (free_port()?, free_port()?, free_port()?);
        let child = spawn_douyin(bin, "all", env, http, grpc, admin, logs)?;
        let servers = Self {
            children: vec![("all".into(), child)],
            url: format!("http://127.0.0.1:{http}"),
            listeners: vec![Listeners { role: "all".into(), http, grpc, admin }],
        };
        wait_ready(&format!("http://127.0.0.1:{admin}/readyz"), "serve all").await?;
        Ok(servers)
    }

    /// One process per role, peers addressed through DOUYIN_<ROLE>_ENDPOINT.
    pub async fn mesh(bin: &Path, env: &[(String, String)], logs: &Path) -> anyhow::Result<Self> {
        let mut ports = Vec::new();
        for _ in MESH_ROLES {
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        let mut env = env.to_vec();
        // One service secret for the run, as a deployment has one.
        let secret: [u8; 32] = rand::random();
        env.push(("DOUYIN_SERVICE_SECRET".into(), secret.iter().map(|b| format!("{b:02x}")).collect()));
        for (role, (_, grpc, _)) in PEER_ROLES.iter().zip(&ports) {
            env.push((format!("DOUYIN_{}_ENDPOINT", role.to_uppercase()), format!("http://127.0.0.1:{grpc}")));
        }
        let mut servers =
            Self { children: Vec::new(), url: format!("http://127.0.0.1:{}", ports[6].0), listeners: Vec::new() };
        for (role, &(http, grpc, admin)) in MESH_ROLES.iter().zip(&ports) {
            servers.children.push((role.to_string(), spawn_douyin(bin, role, &env, http, grpc, admin, logs)?));
            servers.listeners.push(Listeners { role: role.to_string(), http, grpc, admin });
        }
        for (role, (_, _, admin)) in MESH_ROLES.iter().zip(&ports) {
            wait_ready(&format!("http://127.0.0.1:{admin}/readyz"), role).await?;
        }
        Ok(servers)
    }

    /// The baseline server (this binary's `baseline` subcommand).
    pub async fn baseline(database_url: &str, secret: &str, logs: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .args(["baseline", "--database-url", database_url, "--secret", secret])
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(log_file(logs, "baseline")?)
            .kill_on_drop(true)
            .spawn()
            .context("starting the baseline")?;
        let servers = Self {
            children: vec![("baseline".into(), child)],
            url: format!("http://127.0.0.1:{port}"),
            listeners: Vec::new(),
        };
        wait_ready(&format!("http://127.0.0.1:{port}/healthz"), "baseline").await?;
        Ok(servers)
    }

    /// A private `redis-server` on a free port, so command counts are the system's alone.
    pub async fn redis(logs: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(log_file(logs, "redis")?)
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (install it, or pass --redis-url)")?;
        let url = format!("redis://127.0.0.1:{port}");
        let servers = Self { children: vec![("redis".into(), child)], url: url.clone(), listeners: Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ping = async {
                let mut conn = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            };
            if ping.await.is_ok() {
                return Ok(servers);
            }
            if Instant::now() > deadline {
                bail!("redis-server on port {port} did not answer within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then SIGKILL after a few seconds.
    pub async fn stop(mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            }
        }
        for (name, child) in self.children.iter_mut().rev() {
            if tokio::time::timeout(Duration::from_secs(8), child.wait()).await.is_err() {
                eprintln!("{name} did not stop on SIGTERM; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

fn log_file(logs: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(logs)?;
    let path: PathBuf = logs.join(format!("{name}.log"));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

fn spawn_douyin(
    bin: &Path,
    role: &str,
    env: &[(String, String)],
    http: u16,
    grpc: u16,
    admin: u16,
    logs: &Path,
) -> anyhow::Result<Child> {
    Command::new(bin)
        .args(["serve", role])
        .env_remove("DOUYIN_REDIS_URL")
        .env_remove("DOUYIN_S3_ENDPOINT")
        .env_remove("DOUYIN_CONFIG")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("DOUYIN_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("DOUYIN_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
        .env("DOUYIN_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .stdout(Stdio::null())
        .stderr(log_file(logs, role)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} serve {role}", bin.display()))
}

async fn wait_ready(url: &str, what: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} was not ready within 60 s ({url})")
}
