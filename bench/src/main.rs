//! `douyin-bench`: seed data, load a server, run a mesh for other tools, run
//! the direct-SQL baseline, or run the whole suite and write a report. See bench/README.md.

mod baseline;
mod check;
mod costs;
mod load;
mod mesh;
mod procs;
mod report;
mod rollout;
mod seed;
mod shape;
mod suite;
mod traffic;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "douyin-bench", about = "Benchmark harness of douyin-rs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write users, videos, likes, follows, comments, messages and their counts.
    Seed(seed::SeedArgs),
    /// Closed-loop load against a loopback server; prints throughput and latency.
    Load(load::LoadArgs),
    /// The app's mix against a gateway Service name during a rollout; figures per phase.
    Rollout(rollout::RolloutArgs),
    /// The mesh (seven processes) on seeded data, running until SIGTERM or stdin closes.
    Mesh(mesh::MeshArgs),
    /// Serve GET /douyin/feed/ straight from SQL (the baseline).
    Baseline(baseline::BaselineArgs),
    /// The standard suite: every target, baseline ratios, costs, scale curve, report.
    Suite(suite::SuiteArgs),
    /// A paced stream of the app's users against any gateway, on accounts it registers.
    Traffic(traffic::TrafficArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Seed(args) => seed::run(&args).await,
        Command::Load(args) => load::main(&args).await,
        Command::Rollout(args) => rollout::main(&args).await,
        Command::Mesh(args) => mesh::main(&args).await,
        Command::Baseline(args) => baseline::main(&args).await,
        Command::Suite(args) => suite::main(args).await,
        Command::Traffic(args) => traffic::main(&args).await,
    }
}
