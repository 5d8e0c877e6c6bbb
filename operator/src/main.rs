//! `douyin-operator`: reconciles `DouyinEnvironment` resources.

use std::net::SocketAddr;

use clap::Parser;
use douyin_operator::controller::Scope;
use douyin_operator::manager::{self, Config};
use douyin_operator::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(version, about = "Provisions MySQL, Redis and MinIO for each DouyinEnvironment")]
struct Args {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "DOUYIN_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "DOUYIN_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    #[arg(long, env = "DOUYIN_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = telemetry::init(args.log_format)?;
    let scope = match args.namespace.filter(|ns| !ns.is_empty()) {
        Some(ns) => Scope::Namespace(ns),
        None => Scope::Cluster,
    };
    manager::run(Config { http_addr: args.http_addr, scope }).await?;
    Ok(())
}
