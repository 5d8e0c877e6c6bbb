//! `douyin-bench rollout`: the app's mix, paced, against every address a
//! gateway Service name resolves to now, for as long as a rollout runs. It
//! plays the ingress: the name is resolved again every second through the
//! system resolver (so a hosts file or DNS decides which gateway pods get
//! traffic), requests go round-robin over the addresses, and a request whose
//! connection could not be made (nothing sent), or a GET whose connection
//! broke, is passed once to the next address, as nginx's `proxy_next_upstream
//! error` does. Each request is counted under the phase named in
//! `--phase-file` when it was sent; the tool stops when the phase is `stop`
//! and writes one JSON object of figures per phase.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{
    load::{Target, Worker, Workload},
    shape::Seeded,
};

#[derive(clap::Args, Debug, Clone)]
pub struct RolloutArgs {
    /// The gateway Service, e.g. http://douyin-api:8080 (resolved every second).
    #[arg(long)]
    pub service: String,
    /// Holds the current phase's name; `stop` ends the run.
    #[arg(long)]
    pub phase_file: PathBuf,
    /// Where the figures go (JSON).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Requests per second of each worker.
    #[arg(long, default_value_t = 8.0)]
    pub rate: f64,
    /// A refusal slower than this does not count as clean, milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub deadline_ms: u64,
    #[command(flatten)]
    pub seeded: Seeded,
}

/// The figures of one phase.
#[derive(Default, Serialize)]
struct Phase {
    sent: u64,
    failed: u64,
    failed_reads: u64,
    failed_writes: u64,
    /// Failures answered 503 with the plain message, within the deadline.
    clean_refusals: u64,
    p99_ms: f64,
    max_ms: f64,
    errors: Vec<String>,
    #[serde(skip)]
    histogram: Option<Histogram<u64>>,
}

impl Phase {
    fn record(&mut self, method: &str, elapsed: Duration, outcome: &Outcome) {
        self.sent += 1;
        self.histogram
            .get_or_insert_with(|| Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds"))
            .saturating_record(elapsed.as_micros() as u64);
        if let Outcome::Failed { clean, error } = outcome {
            self.failed += 1;
            if method == "GET" {
                self.failed_reads += 1
            } else {
                self.failed_writes += 1
            }
            self.clean_refusals += u64::from(*clean);
            if self.errors.len() < 5 {
                self.errors.push(error.clone());
            }
        }
    }

    fn finish(&mut self) {
        if let Some(h) = &self.histogram {
            self.p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
            self.max_ms = h.max() as f64 / 1000.0;
        }
    }
}

enum Outcome {
    Ok(bytes::Bytes),
    Failed { clean: bool, error: String },
}

/// The gateway addresses the Service name has now.
struct Upstreams {
    host: String,
    port: u16,
    addrs: RwLock<Vec<SocketAddr>>,
}

impl Upstreams {
    async fn refresh(&self) {
        // A failed lookup keeps the addresses, as an ingress keeps its endpoints
        // until an update removes them (those that are gone refuse connections
        // and the request moves on).
        if let Ok(found) = tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            let mut found: Vec<SocketAddr> = found.filter(|a| a.ip().is_loopback()).collect();
            found.sort();
            found.dedup();
            *self.addrs.write().unwrap_or_else(|e| e.into_inner()) = found;
        }
    }

    fn pick(&self, n: usize) -> Option<SocketAddr> {
        let addrs = self.addrs.read().unwrap_or_else(|e| e.into_inner());
        (!addrs.is_empty()).then(|| addrs[n % addrs.len()])
    }
}

struct Shared {
    upstreams: Upstreams,
    client: reqwest::Client,
    phase: RwLock<String>,
    phases: Mutex<BTreeMap<String, Phase>>,
    deadline: Duration,
}

impl Shared {
    fn phase(&self) -> String {
        self.phase.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One request, passed to the next address when that is safe.
    async fn send(&self, method: &str, path: &str, client_ip: &str, turn: usize) -> Outcome {
        let mut last = String::from("no ready gateway");
        for attempt in 0..2 {
            let Some(addr) = self.upstreams.pick(turn + attempt) else { break };
            let url = format!("http://{addr}{path}");
            let request = if method == "GET" { self.client.get(url) } else { self.client.post(url) };
            let started = Instant::now();
            match request.header("x-forwarded-for", client_ip).send().await {
                Ok(response) => return judge(response, started, self.deadline).await,
                Err(e) if e.is_connect() || method == "GET" => last = format!("{method} {addr}: {e}"),
                Err(e) => return Outcome::Failed { clean: false, error: format!("{method} {addr}: {e}") },
            }
        }
        Outcome::Failed { clean: false, error: last }
    }
}

async fn judge(response: reqwest::Response, started: Instant, deadline: Duration) -> Outcome {
    let status = response.status();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return Outcome::Failed { clean: false, error: format!("body: {e}") },
    };
    if status.is_success() && body.starts_with(b"{\"status_code\":0,") {
        return Outcome::Ok(body);
    }
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    // The contract answers HTTP 200 for every business outcome, a refusal
    // included; 503 is the gateway's own status when it cannot answer at all.
    let clean = matches!(status.as_u16(), 200 | 503)
        && value["status_code"] == 503
        && value["status_msg"] == "service temporarily unavailable"
        && started.elapsed() <= deadline;
    let text = String::from_utf8_lossy(&body[..body.len().min(160)]).into_owned();
    Outcome::Failed { clean, error: format!("{status} {text}") }
}

async fn worker(shared: Arc<Shared>, mut worker: Worker, index: usize, rate: f64) {
    let client_ip = format!("10.{}.{}.{}", 1 + index / 65_536 % 200, index / 256 % 256, index % 256);
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut next = Instant::now() + interval.mul_f64(index as f64 / 16.0 % 1.0);
    let mut turn = index;
    loop {
        tokio::time::sleep_until(next.into()).await;
        next = (next + interval).max(Instant::now());
        let phase = shared.phase();
        if phase == "stop" {
            return;
        }
        let (method, path) = worker.next_request();
        let started = Instant::now();
        let outcome = shared.send(method, &path, &client_ip, turn).await;
        turn += 1;
        if let Outcome::Ok(body) = &outcome {
            worker.answered(body);
        }
        let mut phases = shared.phases.lock().unwrap_or_else(|e| e.into_inner());
        phases.entry(phase).or_default().record(method, started.elapsed(), &outcome);
    }
}

pub async fn main(args: &RolloutArgs) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(&args.service).context("--service")?;
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        bail!("--service needs a host and port");
    };
    let target = Target::new("http://127.0.0.1", &args.seeded, 1)?;
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(30))
        .build()?;
    let shared = Arc::new(Shared {
        upstreams: Upstreams { host: host.to_owned(), port, addrs: RwLock::default() },
        client,
        phase: RwLock::new(String::from("start")),
        phases: Mutex::default(),
        deadline: Duration::from_millis(args.deadline_ms),
    });
    // Workers start with the addresses the name has now.
    shared.upstreams.refresh().await;
    let watcher = {
        let (shared, file) = (shared.clone(), args.phase_file.clone());
        tokio::spawn(async move {
            let mut last_resolve = Instant::now() - Duration::from_secs(10);
            loop {
                if let Ok(text) = tokio::fs::read_to_string(&file).await {
                    let text = text.trim();
                    if !text.is_empty() {
                        *shared.phase.write().unwrap_or_else(|e| e.into_inner()) = text.to_owned();
                    }
                }
                if last_resolve.elapsed() >= Duration::from_secs(1) {
                    shared.upstreams.refresh().await;
                    last_resolve = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let workers: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let w = Worker::new(target.clone(), Workload::ALL[i % Workload::ALL.len()], i as u64);
            tokio::spawn(worker(shared.clone(), w, i, args.rate))
        })
        .collect();
    for w in workers {
        w.await?;
    }
    watcher.abort();
    let mut phases = std::mem::take(&mut *shared.phases.lock().unwrap_or_else(|e| e.into_inner()));
    phases.values_mut().for_each(Phase::finish);
    std::fs::write(&args.out, serde_json::to_vec_pretty(&phases)?)?;
    Ok(())
}
