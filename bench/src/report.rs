//! The suite's results as Markdown: machine, settings, feed ratios against the
//! baseline, every workload with its cost counters, the scale curve, the counts
//! check and the targets.

use std::fmt::Write;

use crate::{costs::Cost, load::Report};

/// One measured workload.
pub struct Row {
    pub target: &'static str,
    pub videos: u64,
    pub baseline: bool,
    pub report: Report,
    pub cost: Option<Cost>,
}

/// Counts compared after the write workloads.
pub struct CountsCheck {
    pub target: &'static str,
    /// Stats rows that disagree with the rows they count.
    pub db_mismatches: u64,
    /// Videos of the newest feed page whose API counts disagree with the database.
    pub api_mismatches: u64,
    pub api_checked: u64,
}

impl CountsCheck {
    pub fn ok(&self) -> bool {
        self.db_mismatches == 0 && self.api_mismatches == 0 && self.api_checked > 0
    }
}

#[derive(Default)]
pub struct Results {
    pub settings: Vec<(String, String)>,
    pub rows: Vec<Row>,
    pub checks: Vec<CountsCheck>,
    /// Runs that could not be measured, with the reason.
    pub failures: Vec<String>,
}

impl Results {
    fn find(&self, target: &str, videos: u64, baseline: bool, workload: &str) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.target == target && r.videos == videos && r.baseline == baseline && r.report.workload == workload
        })
    }

    fn sizes(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = self.rows.iter().map(|r| r.videos).collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }

    fn targets(&self) -> Vec<&'static str> {
        let mut targets: Vec<&'static str> = Vec::new();
        for row in &self.rows {
            if !targets.contains(&row.target) {
                targets.push(row.target);
            }
        }
        targets
    }

    pub fn errors(&self) -> u64 {
        self.rows.iter().map(|r| r.report.errors).sum()
    }

    pub fn markdown(&self, title: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {title}\n");
        let _ = writeln!(md, "## Machine and settings\n");
        for (key, value) in machine().into_iter().chain(self.settings.iter().cloned()) {
            let _ = writeln!(md, "- {key}: {value}");
        }
        md.push_str(&self.ratios());
        md.push_str(&self.workloads());
        md.push_str(&self.scale());
        md.push_str(&self.checks());
        md.push_str(&self.targets_section());
        if !self.failures.is_empty() {
            md.push_str("\n## Runs that failed\n\n");
            for failure in &self.failures {
                let _ = writeln!(md, "- {failure}");
            }
        }
        md
    }

    fn ratios(&self) -> String {
        let mut md = String::from(
            "\n## Feed against the direct-SQL baseline (same data, back to back)\n\n\
             | target | videos | workload | system req/s | baseline req/s | ratio | system p50 ms | baseline p50 ms | system p99 ms | baseline p99 ms |\n\
             |---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for videos in self.sizes() {
            for target in self.targets() {
                for workload in ["feed-token", "feed-anon"] {
                    let (Some(s), Some(b)) =
                        (self.find(target, videos, false, workload), self.find(target, videos, true, workload))
                    else {
                        continue;
                    };
                    let (s, b) = (&s.report, &b.report);
                    let _ = writeln!(
                        md,
                        "| {target} | {videos} | {workload} | {:.0} | {:.0} | **{:.2}×** | {:.2} | {:.2} | {:.2} | {:.2} |",
                        s.rps,
                        b.rps,
                        s.rps / b.rps.max(1e-9),
                        s.p50_ms,
                        b.p50_ms,
                        s.p99_ms,
                        b.p99_ms
                    );
                }
            }
        }
        md
    }

    fn workloads(&self) -> String {
        let mut md = String::from(
            "\n## Workloads\n\nSQL = statements MariaDB ran for the system's account (USER_STATISTICS) per request, Redis = `INFO commandstats` calls of the suite's Redis per request, \
             both measured over sequential requests after the timed run (n/a on SQLite with the in-process cache).\n\n\
             | target | videos | server | workload | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | SQL/req | Redis/req |\n\
             |---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let first = self.sizes().first().copied().unwrap_or(0);
        for row in self.rows.iter().filter(|r| r.videos == first) {
            let r = &row.report;
            let (sql, redis) = match row.cost {
                Some(c) => (
                    format!("{:.2}", c.sql_per_request),
                    c.redis_per_request.map_or("n/a".into(), |x| format!("{x:.2}")),
                ),
                None => ("n/a".into(), "n/a".into()),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {sql} | {redis} |",
                row.target,
                row.videos,
                if row.baseline { "baseline" } else { "system" },
                r.workload,
                r.rps,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                r.max_ms,
                r.errors
            );
        }
        for row in self.rows.iter().filter(|r| r.report.first_error.is_some()) {
            let _ = writeln!(
                md,
                "\nFirst error of {} {}: `{}`",
                row.target,
                row.report.workload,
                row.report.first_error.as_deref().unwrap_or("")
            );
        }
        md
    }

    fn scale(&self) -> String {
        let mut md = String::from(
            "\n## Scale curve (feed with token)\n\n| target | videos | system req/s | system p50 ms | p50 / p50 at smallest | baseline req/s | baseline p50 ms |\n|---|---:|---:|---:|---:|---:|---:|\n",
        );
        let sizes = self.sizes();
        for target in self.targets() {
            let smallest =
                sizes.first().and_then(|v| self.find(target, *v, false, "feed-token")).map(|r| r.report.p50_ms);
            for videos in &sizes {
                let Some(s) = self.find(target, *videos, false, "feed-token") else {
                    continue;
                };
                let b = self.find(target, *videos, true, "feed-token");
                let _ = writeln!(
                    md,
                    "| {target} | {videos} | {:.0} | {:.2} | {:.2} | {} | {} |",
                    s.report.rps,
                    s.report.p50_ms,
                    s.report.p50_ms / smallest.unwrap_or(s.report.p50_ms).max(1e-9),
                    b.map_or("-".into(), |b| format!("{:.0}", b.report.rps)),
                    b.map_or("-".into(), |b| format!("{:.2}", b.report.p50_ms)),
                );
            }
        }
        md
    }

    fn checks(&self) -> String {
        let mut md = String::from(
            "\n## Counts after the write workloads\n\n| target | stats rows disagreeing with rows | feed videos checked via API | API counts disagreeing |\n|---|---:|---:|---:|\n",
        );
        for c in &self.checks {
            let _ = writeln!(md, "| {} | {} | {} | {} |", c.target, c.db_mismatches, c.api_checked, c.api_mismatches);
        }
        md
    }

    fn targets_section(&self) -> String {
        let mut md = String::from("\n## Against the issue's targets\n\n");
        let first = self.sizes().first().copied().unwrap_or(0);
        let ratio = |target: &str, workload: &str| {
            let s = self.find(target, first, false, workload)?;
            let b = self.find(target, first, true, workload)?;
            Some(s.report.rps / b.report.rps.max(1e-9))
        };
        let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
        for (target, want) in [("all-sqlite", 2.0), ("all-mariadb", 1.5), ("mesh", 1.0)] {
            for (workload, name) in [("feed-token", "feed with token"), ("feed-anon", "anonymous feed")] {
                if let Some(r) = ratio(target, workload) {
                    let _ = writeln!(
                        md,
                        "- {name}, {target}: {r:.2}× the baseline (target ≥ {want}×): {}",
                        verdict(r >= want)
                    );
                }
            }
        }
        // Redis commands are counted by `INFO commandstats`, which counts the
        // commands a script runs too: they are not round trips (the test
        // suite asserts those), so only the statements get a verdict.
        for target in ["all-mariadb", "mesh"] {
            if let Some(cost) = self.find(target, first, false, "feed-token").and_then(|r| r.cost) {
                let redis = cost.redis_per_request.unwrap_or(0.0);
                let _ = writeln!(
                    md,
                    "- warm feed page with token, {target}: {:.2} SQL statements per page (target 0), \
                     {redis:.2} Redis commands (scripts' own commands included): {}",
                    cost.sql_per_request,
                    verdict(cost.sql_per_request == 0.0)
                );
            }
        }
        let sizes = self.sizes();
        if let (Some(&small), Some(&large)) = (sizes.first(), sizes.last())
            && small != large
        {
            for target in self.targets() {
                if let (Some(a), Some(b)) =
                    (self.find(target, small, false, "feed-token"), self.find(target, large, false, "feed-token"))
                {
                    let r = b.report.p50_ms / a.report.p50_ms.max(1e-9);
                    let _ = writeln!(
                        md,
                        "- feed p50 at {large} videos vs {small}, {target}: {r:.2}× (target ≤ 1.1× from 10k to 1M): {}",
                        verdict(r <= 1.1)
                    );
                }
            }
        }
        for target in ["all-mariadb", "mesh"] {
            if let Some(row) = self.find(target, first, false, "like-unlike") {
                let counts = self.checks.iter().find(|c| c.target == target).is_some_and(CountsCheck::ok);
                let _ = writeln!(
                    md,
                    "- like/unlike on MariaDB+Redis, {target}: {:.0} req/s (target ≥ 3000), counts exact afterwards: {} — {}",
                    row.report.rps,
                    if counts { "yes" } else { "no" },
                    verdict(row.report.rps >= 3000.0 && counts)
                );
            }
        }
        md
    }
}

/// CPU model, cores, memory, kernel and host name.
pub fn machine() -> Vec<(String, String)> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let memory = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    vec![
        ("host".into(), hostname()),
        ("CPU".into(), cpu),
        ("cores (nproc)".into(), cores.to_string()),
        ("memory".into(), memory),
        ("kernel".into(), read("/proc/sys/kernel/osrelease").trim().to_owned()),
    ]
}

pub fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    if name.is_empty() { "localhost".into() } else { name.to_owned() }
}
