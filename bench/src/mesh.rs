//! `douyin-bench mesh`: the suite's mesh target, seven `douyin serve <role>`
//! processes on freshly seeded data, kept running for another tool until
//! SIGTERM, Ctrl-C or the end of standard input. `.ci/monitoring-check.sh`
//! scrapes it with Prometheus while `douyin-bench load` runs against it.
//!
//! Data: SQLite in the work dir, or with `--mysql-url` a MariaDB schema of its
//! own (dropped and created, dropped again at the end) with Redis beside it.
//! Object storage is the one the `DOUYIN_S3_*` variables name, else local files.
//! At the end the schema is dropped and the mesh's Redis keys are deleted.
//! Once every process is ready, `--listeners` gets one JSON object: the
//! gateway's URL and each process's role and ports.

use std::path::PathBuf;

use anyhow::{Context, bail};
use redis::AsyncCommands;
use sqlx::any::AnyPoolOptions;
use tokio::{io::AsyncReadExt, signal::unix::SignalKind};

use crate::{
    procs::Servers,
    seed::{self, SeedArgs},
    suite::{Data, system_env},
};

#[derive(clap::Args, Debug, Clone)]
pub struct MeshArgs {
    /// The douyin binary [default: `douyin` beside this binary].
    #[arg(long, env = "DOUYIN_BIN")]
    pub douyin_bin: Option<PathBuf>,
    /// A MariaDB server, as an account that may create schemas [default: SQLite in the work dir].
    #[arg(long)]
    pub mysql_url: Option<String>,
    /// The schema made on --mysql-url.
    #[arg(long, default_value = "douyin_mesh")]
    pub schema: String,
    /// Redis, with --mysql-url [default: in-process caches].
    #[arg(long)]
    pub redis_url: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub users: u64,
    #[arg(long, default_value_t = 1_000)]
    pub videos: u64,
    /// Seeded files and the processes' logs (`logs/<role>.log`).
    #[arg(long)]
    pub workdir: PathBuf,
    /// Where the gateway URL and the processes' ports go (JSON), once all are ready.
    #[arg(long)]
    pub listeners: PathBuf,
    /// Seconds between the processes' dependency checks.
    #[arg(long, default_value_t = 5)]
    pub health_interval_secs: u64,
}

/// Settings passed on to the processes from this environment, when set.
const PASSED_ON: [&str; 5] =
    ["DOUYIN_S3_ENDPOINT", "DOUYIN_S3_ACCESS_KEY", "DOUYIN_S3_SECRET_KEY", "DOUYIN_S3_BUCKET", "DOUYIN_S3_REGION"];

pub async fn main(args: &MeshArgs) -> anyhow::Result<()> {
    let bin = match &args.douyin_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("douyin"),
    };
    if !bin.exists() {
        bail!("{} does not exist: build it (cargo build -p douyin) or pass --douyin-bin", bin.display());
    }
    if !args.schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || args.schema.is_empty() {
        bail!("--schema must be letters, digits and underscores: {:?}", args.schema);
    }
    let data_dir = args.workdir.join("data");
    std::fs::create_dir_all(&data_dir)?;
    let data = match &args.mysql_url {
        Some(server) => {
            let server = server.trim_end_matches('/');
            schema(server, &format!("DROP DATABASE IF EXISTS {0}; CREATE DATABASE {0}", args.schema)).await?;
            Data {
                url: format!("{server}/{}", args.schema),
                data_dir: data_dir.clone(),
                redis: args.redis_url.is_some(),
            }
        }
        None => {
            let url = format!("sqlite://{}/douyin.db?mode=rwc", data_dir.display());
            Data { url, data_dir: data_dir.clone(), redis: false }
        }
    };
    seed::run(&SeedArgs {
        database_url: data.url.clone(),
        data_dir,
        douyin_bin: bin.clone(),
        users: args.users,
        videos: args.videos,
        likes_per_user: 20,
        follows_per_user: 10,
        comments_per_video: 0.5,
        messages_per_pair: 10,
        seed: 42,
        quiet: true,
    })
    .await?;

    let mut env = system_env(&data, "mesh", args.redis_url.as_deref().unwrap_or_default());
    env.push(("DOUYIN_HEALTH_INTERVAL_SECS".into(), args.health_interval_secs.to_string()));
    for key in PASSED_ON {
        if let Ok(value) = std::env::var(key) {
            env.push((key.into(), value));
        }
    }
    let servers = Servers::mesh(&bin, &env, &args.workdir.join("logs")).await?;
    let listeners = serde_json::json!({ "url": servers.url, "processes": servers.listeners });
    std::fs::write(&args.listeners, serde_json::to_vec_pretty(&listeners)?)
        .with_context(|| format!("writing {}", args.listeners.display()))?;
    println!("mesh: {} processes ready, gateway {}", servers.listeners.len(), servers.url);

    let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    let stdin_closed = async { while stdin.read(&mut buf).await.is_ok_and(|n| n > 0) {} };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        () = stdin_closed => {}
    }
    servers.stop().await;
    let prefix = env.iter().find(|(k, _)| k == "DOUYIN_REDIS_PREFIX").map(|(_, v)| v.clone());
    if let (Some(url), Some(prefix)) = (&args.redis_url, prefix) {
        forget(url, &prefix).await?;
    }
    if let Some(server) = &args.mysql_url {
        schema(server.trim_end_matches('/'), &format!("DROP DATABASE IF EXISTS {}", args.schema)).await?;
    }
    Ok(())
}

/// Deletes the keys the mesh wrote under `prefix`.
async fn forget(url: &str, prefix: &str) -> anyhow::Result<()> {
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await.context("connecting to Redis")?;
    let keys: Vec<String> = {
        let mut iter: redis::AsyncIter<String> = conn.scan_match(format!("{prefix}:*")).await?;
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key?);
        }
        keys
    };
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
    }
    Ok(())
}

/// Runs `sql` (statements split on `;`) on the server.
async fn schema(server: &str, sql: &str) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let admin = AnyPoolOptions::new().max_connections(1).connect(server).await.context("connecting to MariaDB")?;
    for statement in sql.split(';').map(str::trim) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&admin)
            .await
            .with_context(|| statement.to_owned())?;
    }
    admin.close().await;
    Ok(())
}
