//! The `douyin` binary: parse flags, load configuration, run. A failure to
//! start (bad configuration, a port in use) is one line on stderr and exit
//! status 1, whatever `RUST_BACKTRACE` says.

use std::process::ExitCode;

use clap::Parser;
use douyin::cli::{Cli, Command, parse_roles};
use douyin_kit::shutdown;

// A page is built from many short-lived allocations on every worker thread
// (protobuf messages, cache keys, JSON); mimalloc's per-thread free lists
// serve them at a fraction of the system allocator's cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&anyhow::Error::new(error).context("starting the runtime")),
    };
    match runtime.block_on(run()) {
        Ok(code) => code,
        Err(error) => fail(&error),
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    // `{:#}` is the cause chain on one line, never a backtrace.
    eprintln!("douyin: {error:#}");
    ExitCode::FAILURE
}

async fn run() -> anyhow::Result<ExitCode> {
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
        Command::NewGeneration => {
            let generation = douyin::new_generation(&config).await?;
            println!("database generation is now {generation}");
        }
        Command::Health { addr, service } => {
            if !douyin::health_check(addr, service).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
