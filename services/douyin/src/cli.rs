//! Command-line interface of the `douyin` binary.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};
use douyin_kit::{Config, Role, config::ListenAddr};
use figment::providers::Serialized;
use serde::Serialize;

/// douyin-rs: the backend of the "minimal Douyin" short-video app.
#[derive(Parser, Debug)]
#[command(name = "douyin", version, about, long_about = None, after_help = CONFIG_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// A TOML configuration file (keys as in the README table, lower case).
    #[arg(long, global = true, env = "DOUYIN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run roles: `all` (the default) or any of api, user, video, interaction,
    /// relation, chat, counter. Roles in one process call each other in-process;
    /// other roles are reached at DOUYIN_<ROLE>_ENDPOINT
    /// (default http://douyin-<role>:50051).
    Serve {
        /// Roles to run.
        #[arg(value_name = "ROLE", default_value = "all")]
        roles: Vec<String>,
    },
    /// Apply every database migration and exit.
    Migrate,
    /// After restoring a database backup: give the database a new generation,
    /// so no cache of its contents before the restore is read again (running
    /// counters switch within 5 seconds).
    NewGeneration,
    /// Ask a gRPC health endpoint whether a service is SERVING (exit 0) or not (exit 1).
    Health {
        /// Address of the gRPC listener.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// Service name ("" for the whole process).
        #[arg(long, default_value = "")]
        service: String,
    },
}

/// Flags that override the file and the environment.
#[derive(Args, Debug, Serialize, Default)]
pub struct Overrides {
    /// Gateway listen address [env: DOUYIN_HTTP_ADDR, default 0.0.0.0:8080].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listen address, host:port or a port [env: DOUYIN_GRPC_ADDR; default
    /// none for `serve all`, 0.0.0.0:50051 for split roles].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_addr: Option<ListenAddr>,
    /// Admin (metrics, health) listen address [env: DOUYIN_ADMIN_ADDR, default 0.0.0.0:9090].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_addr: Option<SocketAddr>,
    /// Data directory of the embedded mode [env: DOUYIN_DATA_DIR, default ./data].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// sqlite://… or mysql://… [env: DOUYIN_DATABASE_URL].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// redis://… [env: DOUYIN_REDIS_URL].
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
}

const CONFIG_HELP: &str = "\
Configuration is layered: defaults, then --config FILE, then DOUYIN_* environment
variables, then flags. Common keys: DOUYIN_HTTP_ADDR, DOUYIN_GRPC_ADDR,
DOUYIN_ADMIN_ADDR, DOUYIN_DATA_DIR, DOUYIN_DATABASE_URL, DOUYIN_REDIS_URL,
DOUYIN_S3_ENDPOINT (+ _BUCKET, _REGION, _ACCESS_KEY, _SECRET_KEY, _PUBLIC_ENDPOINT),
DOUYIN_PUBLIC_URL, DOUYIN_JWT_SECRET, DOUYIN_SERVICE_SECRET, DOUYIN_<ROLE>_ENDPOINT, DOUYIN_DEMO_CONTENT.
Traces: OTEL_EXPORTER_OTLP_ENDPOINT. The README lists every key.";

impl Cli {
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let figment = Config::figment(self.config.as_deref()).merge(Serialized::defaults(&self.overrides));
        Ok(Config::extract(&figment)?)
    }
}

/// Parses role names; `all` means every role.
pub fn parse_roles(names: &[String]) -> anyhow::Result<Vec<Role>> {
    let mut roles = Vec::new();
    for name in names {
        for part in name.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                roles.extend(Role::ALL);
            } else {
                roles.push(Role::parse(part).ok_or_else(|| {
                    let names: Vec<_> = Role::ALL.into_iter().map(Role::name).collect();
                    anyhow::anyhow!("unknown role {part:?}; roles are all, {}", names.join(", "))
                })?);
            }
        }
    }
    if roles.is_empty() {
        roles.extend(Role::ALL);
    }
    roles.sort();
    roles.dedup();
    Ok(roles)
}
