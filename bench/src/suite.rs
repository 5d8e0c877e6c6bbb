//! The standard suite: for each data size and each target, seed, measure the
//! baseline and the system back to back on the same data, run every workload
//! (at the first size) with cost counters, check the counts, and write the
//! Markdown report.

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, bail};
use sqlx::any::AnyPoolOptions;

use crate::{
    check,
    costs::Counters,
    load::{self, Target, Workload},
    procs::Servers,
    report::{self, Results, Row},
    seed::{self, SeedArgs},
    shape::{DEFAULT_SECRET, Seeded},
};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `douyin serve all` on SQLite with the in-process cache.
    AllSqlite,
    /// `douyin serve all` on MariaDB and Redis.
    AllMariadb,
    /// Seven processes (api + six roles) on MariaDB and Redis.
    Mesh,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::AllSqlite => "all-sqlite",
            Self::AllMariadb => "all-mariadb",
            Self::Mesh => "mesh",
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct SuiteArgs {
    /// The douyin binary [default: `douyin` beside this binary].
    #[arg(long, env = "DOUYIN_BIN")]
    pub douyin_bin: Option<PathBuf>,
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all-sqlite,all-mariadb,mesh")]
    pub targets: Vec<Kind>,
    /// Video counts; every workload runs at the first, the feed at all of them.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub sizes: Vec<u64>,
    #[arg(long, default_value_t = 1_000)]
    pub users: u64,
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Measured seconds per workload.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Sequential requests per workload for the SQL/Redis cost counters.
    #[arg(long, default_value_t = 200)]
    pub cost_requests: u64,
    /// MariaDB server, as an account that may create schemas and users: the suite
    /// (re)creates the schema and user `douyin_bench` and turns `userstat` on.
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    pub mysql_url: String,
    /// Redis for the MariaDB targets [default: a private redis-server on a free port].
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Where the report goes [default: bench/results; a temp dir with --smoke].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Scratch space: SQLite files, media, server logs [default: a new temp dir].
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Tiny data, a few seconds, SQLite only: for CI.
    #[arg(long)]
    pub smoke: bool,
}

struct Suite {
    args: SuiteArgs,
    bin: PathBuf,
    workdir: PathBuf,
    results: Results,
    redis: Option<Servers>,
}

/// The MariaDB account and schema the system uses.
const BENCH_USER: &str = "douyin_bench";

/// A seeded database the servers are pointed at.
pub struct Data {
    pub url: String,
    pub data_dir: PathBuf,
    /// The system runs with Redis (MariaDB targets).
    pub redis: bool,
}

pub async fn main(mut args: SuiteArgs) -> anyhow::Result<()> {
    if args.smoke {
        args.targets = vec![Kind::AllSqlite];
        args.sizes = vec![1_000];
        args.users = 100;
        args.concurrency = 8;
        args.duration = 0.4;
        args.warmup = 0.1;
        args.cost_requests = 0;
    }
    let bin = match &args.douyin_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("douyin"),
    };
    if !bin.exists() {
        bail!("{} does not exist: build it (cargo build -p douyin) or pass --douyin-bin", bin.display());
    }
    let workdir = match &args.workdir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("douyin-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&workdir)?;
    let mut suite = Suite { args, bin, workdir, results: Results::default(), redis: None };
    suite.settings();
    for (index, videos) in suite.args.sizes.clone().into_iter().enumerate() {
        let mut mariadb: Option<Data> = None;
        for kind in suite.args.targets.clone() {
            let data = match kind {
                Kind::AllSqlite => suite.seed_sqlite(videos).await,
                Kind::AllMariadb | Kind::Mesh => match mariadb.take() {
                    Some(data) => Ok(data),
                    None => suite.seed_mariadb(videos).await,
                },
            };
            let data = match data {
                Ok(data) => data,
                Err(error) => {
                    let note = format!("seeding for {} at {videos} videos failed: {error:#}", kind.name());
                    eprintln!("!! {note}");
                    suite.results.failures.push(note);
                    continue;
                }
            };
            if let Err(error) = suite.measure(kind, &data, videos, index == 0).await {
                // Keep what was measured: report the failure and go on with the next target.
                let note = format!("{} at {videos} videos failed: {error:#}", kind.name());
                eprintln!("!! {note}");
                suite.results.failures.push(note);
            }
            if data.redis {
                mariadb = Some(data);
            }
        }
    }
    if let Some(redis) = suite.redis.take() {
        redis.stop().await;
    }
    suite.finish()
}

impl Suite {
    fn settings(&mut self) {
        let a = &self.args;
        let profile = if self.bin.components().any(|c| c.as_os_str() == "release") { "release" } else { "dev" };
        self.results.settings = vec![
            ("douyin binary".into(), format!("{} ({profile} profile)", self.bin.display())),
            ("users".into(), a.users.to_string()),
            ("video counts".into(), a.sizes.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
            (
                "concurrency".into(),
                format!("{} closed-loop clients (load generator on the same machine)", a.concurrency),
            ),
            ("time per workload".into(), format!("{} s measured after {} s warmup", a.duration, a.warmup)),
            (
                "feed requests".into(),
                "half the newest page, half a random page (latest_time in the seeded range), 30 videos each".into(),
            ),
        ];
    }

    fn seed_args(&self, url: String, data_dir: PathBuf, videos: u64) -> SeedArgs {
        SeedArgs {
            database_url: url,
            data_dir,
            douyin_bin: self.bin.clone(),
            users: self.args.users,
            videos,
            likes_per_user: 20,
            follows_per_user: 10,
            comments_per_video: 0.5,
            messages_per_pair: 10,
            seed: 42,
            quiet: self.args.smoke,
        }
    }

    async fn seed_sqlite(&self, videos: u64) -> anyhow::Result<Data> {
        let data_dir = self.workdir.join(format!("sqlite-{videos}"));
        if data_dir.exists() {
            std::fs::remove_dir_all(&data_dir)?;
        }
        std::fs::create_dir_all(&data_dir)?;
        let url = format!("sqlite://{}/douyin.db?mode=rwc", data_dir.display());
        println!("== seeding SQLite: {} users, {videos} videos", self.args.users);
        seed::run(&self.seed_args(url.clone(), data_dir.clone(), videos)).await?;
        Ok(Data { url, data_dir, redis: false })
    }

    async fn seed_mariadb(&self, videos: u64) -> anyhow::Result<Data> {
        sqlx::any::install_default_drivers();
        let server = self.args.mysql_url.trim_end_matches('/');
        let admin = AnyPoolOptions::new().max_connections(1).connect(server).await.context("connecting to MariaDB")?;
        for sql in [
            "DROP DATABASE IF EXISTS douyin_bench",
            "CREATE DATABASE douyin_bench",
            "CREATE USER IF NOT EXISTS 'douyin_bench'@'%' IDENTIFIED BY 'douyin_bench'",
            "CREATE USER IF NOT EXISTS 'douyin_bench'@'localhost' IDENTIFIED BY 'douyin_bench'",
            "GRANT ALL ON douyin_bench.* TO 'douyin_bench'@'%'",
            "GRANT ALL ON douyin_bench.* TO 'douyin_bench'@'localhost'",
            "SET GLOBAL userstat = 1",
        ] {
            sqlx::raw_sql(sql).execute(&admin).await.with_context(|| sql.to_owned())?;
        }
        admin.close().await;
        let data_dir = self.workdir.join(format!("mariadb-{videos}"));
        std::fs::create_dir_all(&data_dir)?;
        let host = server.rsplit('@').next().unwrap_or(server).trim_start_matches("mysql://");
        let url = format!("mysql://{BENCH_USER}:{BENCH_USER}@{host}/douyin_bench");
        println!("== seeding MariaDB: {} users, {videos} videos", self.args.users);
        seed::run(&self.seed_args(url.clone(), data_dir.clone(), videos)).await?;
        Ok(Data { url, data_dir, redis: true })
    }

    /// The Redis the MariaDB targets use: --redis-url, else a private server.
    async fn redis_url(&mut self) -> anyhow::Result<String> {
        if let Some(url) = &self.args.redis_url {
            return Ok(url.clone());
        }
        if self.redis.is_none() {
            self.redis = Some(Servers::redis(&self.workdir.join("logs")).await?);
        }
        Ok(self.redis.as_ref().map(|r| r.url.clone()).unwrap_or_default())
    }

    fn env(&self, data: &Data, run: &str, redis_url: &str) -> Vec<(String, String)> {
        system_env(data, run, redis_url)
    }

    async fn counters(&self, data: &Data, redis_url: &str) -> anyhow::Result<Option<Counters>> {
        if !data.redis || self.args.cost_requests == 0 {
            return Ok(None);
        }
        Ok(Some(Counters::connect(self.args.mysql_url.trim_end_matches('/'), BENCH_USER, Some(redis_url)).await?))
    }

    async fn measure(&mut self, kind: Kind, data: &Data, videos: u64, full: bool) -> anyhow::Result<()> {
        let a = self.args.clone();
        let logs = self.workdir.join("logs").join(format!("{}-{videos}", kind.name()));
        let feeds: &[Workload] = if full { &[Workload::FeedToken, Workload::FeedAnon] } else { &[Workload::FeedToken] };
        let redis_url = if data.redis { self.redis_url().await? } else { String::new() };
        let mut counters = self.counters(data, &redis_url).await?;
        let seeded = Seeded { users: a.users, videos, secret: DEFAULT_SECRET.into() };

        println!("== {} at {videos} videos: baseline", kind.name());
        let baseline = Servers::baseline(&data.url, DEFAULT_SECRET, &logs).await?;
        let target = Target::new(&baseline.url, &seeded, a.concurrency)?;
        for workload in feeds {
            self.run_one(kind, videos, true, &target, *workload, counters.as_mut()).await?;
        }
        baseline.stop().await;

        println!("== {} at {videos} videos: system", kind.name());
        let env = self.env(data, &format!("{}-{videos}", kind.name()), &redis_url);
        let system = match kind {
            Kind::Mesh => Servers::mesh(&self.bin, &env, &logs).await?,
            _ => Servers::all(&self.bin, &env, &logs).await?,
        };
        let target = Target::new(&system.url, &seeded, a.concurrency)?;
        let workloads: &[Workload] = if full { &Workload::ALL } else { feeds };
        for workload in workloads {
            self.run_one(kind, videos, false, &target, *workload, counters.as_mut()).await?;
        }
        if full {
            let check = check::counts(kind, data, &system.url).await?;
            println!(
                "   counts: {} stats rows disagree, {}/{} feed videos disagree via the API",
                check.db_mismatches, check.api_mismatches, check.api_checked
            );
            self.results.checks.push(check);
        }
        system.stop().await;
        Ok(())
    }

    async fn run_one(
        &mut self,
        kind: Kind,
        videos: u64,
        baseline: bool,
        target: &Arc<Target>,
        workload: Workload,
        counters: Option<&mut Counters>,
    ) -> anyhow::Result<()> {
        let a = &self.args;
        let report = load::run(target, workload, a.concurrency, a.warmup, a.duration).await;
        println!("   {} {}", if baseline { "baseline" } else { "system  " }, report.line());
        let cost = match counters {
            Some(counters) => {
                let n = a.cost_requests;
                let (cost, errors) = counters.measure(n, load::run_sequential(target, workload, n)).await?;
                if errors > 0 {
                    println!("   ({errors} errors while counting costs)");
                }
                println!(
                    "            {:.2} SQL statements, {} Redis commands per request",
                    cost.sql_per_request,
                    cost.redis_per_request.map_or("n/a".into(), |x| format!("{x:.2}"))
                );
                Some(cost)
            }
            None => None,
        };
        self.results.rows.push(Row { target: kind.name(), videos, baseline, report, cost });
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        let date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!("[year]-[month]-[day]"))
            .unwrap_or_else(|_| "today".into());
        let host = report::hostname();
        let out = match (&self.args.out, self.args.smoke) {
            (Some(out), _) => out.clone(),
            (None, true) => self.workdir.clone(),
            (None, false) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"),
        };
        std::fs::create_dir_all(&out)?;
        let path = out.join(format!("{date}-{host}.md"));
        let title = format!("douyin-rs benchmark, {date}, {host}{}", if self.args.smoke { " (smoke)" } else { "" });
        std::fs::write(&path, self.results.markdown(&title))?;
        println!("== report written to {}", path.display());
        let errors = self.results.errors();
        let bad_counts = self.results.checks.iter().filter(|c| !c.ok()).count();
        let failures = self.results.failures.len();
        if errors > 0 || bad_counts > 0 || failures > 0 {
            bail!("{errors} failed requests, {bad_counts} targets with wrong counts, {failures} failed runs");
        }
        if self.args.workdir.is_none() && !self.args.smoke {
            let _ = std::fs::remove_dir_all(&self.workdir);
        }
        Ok(())
    }
}

/// The environment of the system under test on `data`: every rate limit and
/// every per-address or per-user cap off (all load comes from one address),
/// demo content off, health probes hourly, the bench's JWT secret; Redis keys
/// under a prefix of its own (`run`).
pub fn system_env(data: &Data, run: &str, redis_url: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("DOUYIN_DATABASE_URL", data.url.as_str()),
        ("DOUYIN_JWT_SECRET", DEFAULT_SECRET),
        ("DOUYIN_DEMO_CONTENT", "false"),
        ("DOUYIN_MIGRATE", "false"),
        ("DOUYIN_RATE_LIMIT_IP_PER_SEC", "0"),
        ("DOUYIN_RATE_LIMIT_USER_PER_SEC", "0"),
        ("DOUYIN_RATE_LIMIT_REGISTER_PER_MIN", "0"),
        ("DOUYIN_RATE_LIMIT_PUBLISH_PER_MIN", "0"),
        ("DOUYIN_RATE_LIMIT_CONNECTIONS_PER_SEC", "0"),
        ("DOUYIN_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "0"),
        ("DOUYIN_UPLOADS_MAX_PER_ADDRESS", "0"),
        ("DOUYIN_UPLOADS_MAX_PER_USER", "0"),
        ("DOUYIN_HEALTH_INTERVAL_SECS", "3600"),
        ("DOUYIN_SHUTDOWN_GRACE_SECS", "2"),
        ("DOUYIN_LOG_FORMAT", "json"),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.push(("DOUYIN_DATA_DIR".into(), data.data_dir.display().to_string()));
    if data.redis {
        env.push(("DOUYIN_REDIS_URL".into(), redis_url.to_owned()));
        env.push(("DOUYIN_REDIS_PREFIX".into(), format!("bench-{run}-{}", std::process::id())));
    }
    env
}
