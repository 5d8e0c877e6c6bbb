//! Sign-in protection: failed attempts are counted per account and per
//! client address, each in a bucket that refills over [`WINDOW`]. Past half a
//! bucket, every attempt waits (doubling from 250 ms, at most 8 s); an empty
//! bucket refuses until failures age out. A successful sign-in costs nothing.
//!
//! Each attempt reserves one token of both buckets before the password is
//! checked (so parallel guesses cannot slip past the count) and gives them
//! back unless the credentials were wrong.

use std::{net::IpAddr, time::Duration};

use douyin_kit::{Config, Result};

use super::{Limits, Rule, client::address_key, limited};

/// The time over which a full bucket of failures is forgiven.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Longest wait put on one attempt.
const MAX_DELAY: Duration = Duration::from_secs(8);

#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub(super) account: Rule,
    pub(super) address: Rule,
}

impl Rules {
    pub fn new(config: &Config) -> Self {
        let rule = |name, n: u32| Rule::new(name, f64::from(n) / WINDOW.as_secs_f64(), n);
        Self {
            account: rule("login-account", config.rate_limit_login_failures_per_account),
            address: rule("login-ip", config.rate_limit_login_failures_per_ip),
        }
    }
}

/// A sign-in under way, holding one token of each bucket it counts in.
pub struct Attempt<'a> {
    limits: &'a Limits,
    held: Vec<(Rule, String)>,
}

/// The account key: the username as sent, when it could be a username at
/// all (longer ones are refused by the user role and count per address only).
fn account_key(username: &str) -> Option<String> {
    let length = username.chars().count();
    (1..=32).contains(&length).then(|| username.to_owned())
}

/// How long an attempt waits when `used` of `burst` tokens are taken.
fn delay(used: f64, burst: u32) -> Duration {
    let free = f64::from(burst) / 2.0;
    if used <= free {
        return Duration::ZERO;
    }
    let steps = (used - free).ceil().min(16.0) as u32;
    (Duration::from_millis(250) * 2u32.pow(steps.saturating_sub(1))).min(MAX_DELAY)
}

/// Reserves the attempt, waits as the failures so far ask, or refuses it.
pub async fn begin<'a>(limits: &'a Limits, ip: Option<IpAddr>, username: &str) -> Result<Attempt<'a>> {
    let rules = limits.signin;
    let address = ip.map_or_else(|| "unknown".to_owned(), address_key);
    let mut attempt = Attempt { limits, held: Vec::new() };
    let mut wait = Duration::ZERO;
    let counted = [
        (rules.account, account_key(username), "failed sign-ins for this account"),
        (rules.address, Some(address), "failed sign-ins from this address"),
    ];
    for (rule, key, what) in counted {
        let (Some(bucket), Some(key)) = (rule.bucket, key) else {
            continue;
        };
        match limits.take_tokens(rule, &key, 1).await {
            Some(taken) if taken.allowed => {
                wait = wait.max(delay(f64::from(bucket.burst) - taken.tokens, bucket.burst));
                attempt.held.push((rule, key));
            }
            Some(taken) => {
                attempt.give_back().await;
                return Err(limited(what, taken.wait));
            }
            None => {}
        }
    }
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    Ok(attempt)
}

impl Attempt<'_> {
    /// The attempt did not fail on wrong credentials: it costs nothing.
    pub async fn give_back(self) {
        for (rule, key) in &self.held {
            self.limits.take_tokens(*rule, key, -1).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn attempts_slow_down_past_half_the_bucket() {
        assert_eq!(delay(5.0, 10), Duration::ZERO);
        assert_eq!(delay(6.0, 10), Duration::from_millis(250));
        assert_eq!(delay(7.0, 10), Duration::from_millis(500));
        assert_eq!(delay(9.0, 10), Duration::from_secs(2));
        assert_eq!(delay(10.0, 10), Duration::from_secs(4));
        assert_eq!(delay(100.0, 100), MAX_DELAY);
        assert_eq!(delay(50.0, 100), Duration::ZERO);
    }

    #[tokio::test]
    async fn failures_are_refused_past_the_bucket_and_successes_never_count() {
        let cache: Arc<dyn douyin_kit::cache::Cache> = Arc::new(douyin_kit::cache::MemoryCache::default());
        let config = Config {
            rate_limit_login_failures_per_account: 2,
            rate_limit_login_failures_per_ip: 0,
            ..Config::default()
        };
        let limits = Limits::new(&config, cache);
        let ip = Some("198.51.100.1".parse().unwrap());
        for _ in 0..20 {
            begin(&limits, ip, "alice").await.expect("successful sign-ins are not counted").give_back().await;
        }
        begin(&limits, ip, "alice").await.unwrap();
        begin(&limits, ip, "alice").await.unwrap();
        let refused = begin(&limits, ip, "alice").await.err().expect("a third failure is refused");
        assert_eq!(refused.status_code(), 429);
        assert!(refused.public_message().contains("this account"), "{}", refused.public_message());
        assert!(begin(&limits, ip, "bob").await.is_ok(), "another account is counted apart");
    }
}
