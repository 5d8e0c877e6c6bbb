//! The `douyin` binary: parse flags, load configuration, run.

use clap::Parser;
use douyin::cli::{Cli, Command, parse_roles};
use douyin_kit::shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.load_config()?;
    match &cli.command {
        Command::Serve { roles } => {
            let roles = parse_roles(roles)?;
            let _telemetry = douyin_kit::telemetry::init(&config, &douyin::service_name(&roles))?;
            douyin_kit::metrics::build_info(env!("CARGO_PKG_VERSION"), env!("DOUYIN_BUILD_COMMIT"));
            let (trigger, stop) = shutdown::channel();
            tokio::spawn(shutdown::on_signal(trigger, config.shutdown_delay()));
            let running = douyin::start(config, &roles, stop).await?;
            running.wait().await?;
        }
        Command::Migrate => {
            let _telemetry = douyin_kit::telemetry::init(&config, "douyin-migrate")?;
            douyin::migrate(&config).await?;
        }
        Command::Health { addr, service } => {
            if !douyin::health_check(addr, service).await? {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
