//! Cost counters read from the backends themselves: the statements MariaDB ran
//! for the system's own database user (`information_schema.USER_STATISTICS`,
//! SELECT + UPDATE + OTHER commands, so BEGIN/COMMIT count too) and the sum of
//! `INFO commandstats` calls of the suite's private Redis. Deltas around a fixed
//! number of sequential requests give statements and commands per request;
//! other clients of the same MariaDB server do not disturb them.

use sqlx::{AnyPool, Row, any::AnyPoolOptions};

pub struct Counters {
    mysql: AnyPool,
    user: String,
    redis: Option<redis::aio::MultiplexedConnection>,
}

/// Statements and commands per request of one workload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub sql_per_request: f64,
    pub redis_per_request: Option<f64>,
}

impl Counters {
    /// `mysql_server`: an account that may read USER_STATISTICS; `user`: the system's account.
    pub async fn connect(mysql_server: &str, user: &str, redis_url: Option<&str>) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let mysql = AnyPoolOptions::new().max_connections(1).connect(mysql_server).await?;
        let redis = match redis_url {
            Some(url) => Some(redis::Client::open(url)?.get_multiplexed_async_connection().await?),
            None => None,
        };
        Ok(Self { mysql, user: user.to_owned(), redis })
    }

    /// (statements so far, Redis commands so far).
    async fn snapshot(&mut self) -> anyhow::Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS), 0) AS CHAR) \
             FROM information_schema.USER_STATISTICS WHERE USER = ?",
        )
        .bind(&self.user)
        .fetch_one(&self.mysql)
        .await?;
        let questions: String = row.try_get(0)?;
        let commands = match &mut self.redis {
            Some(conn) => {
                let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
                commandstats_calls(&info)
            }
            None => 0,
        };
        Ok((questions.trim().parse()?, commands))
    }

    /// Runs `requests` (which sends `count` requests) between two snapshots.
    pub async fn measure<F: Future<Output = u64>>(&mut self, count: u64, requests: F) -> anyhow::Result<(Cost, u64)> {
        let before = self.snapshot().await?;
        let errors = requests.await;
        let after = self.snapshot().await?;
        let statements = after.0.saturating_sub(before.0);
        let commands = after.1.saturating_sub(before.1);
        let n = count.max(1) as f64;
        let cost = Cost {
            sql_per_request: statements as f64 / n,
            redis_per_request: self.redis.as_ref().map(|_| commands as f64 / n),
        };
        Ok((cost, errors))
    }
}

/// Sum of `calls=` over every command except INFO itself.
fn commandstats_calls(info: &str) -> u64 {
    info.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_calls_without_info() {
        let info = "# Commandstats\r\ncmdstat_get:calls=7,usec=10,usec_per_call=1.4\r\ncmdstat_info:calls=3,usec=1\r\ncmdstat_mget:calls=2,usec=1\r\n";
        assert_eq!(super::commandstats_calls(info), 9);
    }
}
