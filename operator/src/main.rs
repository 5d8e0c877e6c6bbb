//! `douyin-operator`: reconciles `DouyinEnvironment` resources, or (`render`) prints
//! what it would create for one.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use douyin_operator::controller::Scope;
use douyin_operator::manager::{self, Config};
use douyin_operator::render::{self, SecretsMode};
use douyin_operator::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(version, about = "Provisions MySQL, Redis and MinIO for each DouyinEnvironment")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "DOUYIN_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Serve only these namespaces (comma-separated; default: every namespace),
    /// each with its own watches, so a Role in each is all the RBAC it needs.
    /// `WATCH_NAMESPACE` is read too when this is unset.
    #[arg(long, env = "DOUYIN_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    #[arg(long, env = "DOUYIN_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Print, as a YAML stream, every object the operator would create for the
    /// DouyinEnvironments in a file (for review and `kubectl diff`); no cluster needed.
    Render {
        /// The file holding DouyinEnvironment resources; `-` reads stdin.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Namespace of resources that name none.
        #[arg(short = 'n', long = "namespace")]
        namespace: Option<String>,
        /// Print the Secrets with placeholder values, or leave them out.
        #[arg(long, value_enum, default_value_t = SecretsMode::Placeholder)]
        secrets: SecretsMode,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Render { file, namespace, secrets }) = args.command {
        if let Err(error) = render_file(&file, namespace.as_deref(), secrets) {
            eprintln!("douyin-operator render: {error:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let _telemetry = telemetry::init(args.log_format)?;
    let namespaces = args.namespace.or_else(|| std::env::var("WATCH_NAMESPACE").ok()).unwrap_or_default();
    manager::run(Config { http_addr: args.http_addr, scopes: Scope::parse_list(&namespaces) }).await?;
    Ok(())
}

fn render_file(file: &PathBuf, namespace: Option<&str>, secrets: SecretsMode) -> anyhow::Result<()> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut out = String::new();
    for env in render::parse(&text, namespace)? {
        let objects = render::objects(&env, secrets)?;
        out.push_str(&render::to_yaml(&env, &objects)?);
    }
    print!("{out}");
    Ok(())
}
