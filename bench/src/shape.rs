//! What the seeder, the load generator and the baseline agree on: ids, names,
//! times, account keys, the shared password and session tokens.

use std::time::Duration;

use douyin_kit::auth::Tokens;

/// What a load run knows of the seeded data and the server: the flags that
/// `load` and `rollout` share.
#[derive(clap::Args, Debug, Clone)]
pub struct Seeded {
    /// Seeded users and videos (ids are 1..=N).
    #[arg(long, default_value_t = 1_000)]
    pub users: u64,
    #[arg(long, default_value_t = 10_000)]
    pub videos: u64,
    /// HS256 key of the server's tokens.
    #[arg(long, env = "DOUYIN_JWT_SECRET", default_value = DEFAULT_SECRET)]
    pub secret: String,
}

/// Every seeded user's password.
pub const PASSWORD: &str = "bench-password";
/// Publish time of video 0; video `id` is published `id` seconds later.
pub const SEED_EPOCH_MS: i64 = 1_600_000_000_000;
/// The JWT key the suite gives the system and the baseline.
pub const DEFAULT_SECRET: &str = "douyin-bench-secret-0123456789abcdef";

pub fn username(id: u64) -> String {
    format!("bench{id}")
}

/// The account key of seeded user `id`, carried in the tokens the load
/// generator mints for it.
pub fn account_key(id: u64) -> String {
    format!("bench-account-{id}")
}

pub fn published_at_ms(video: u64) -> i64 {
    SEED_EPOCH_MS + video as i64 * 1_000
}

/// Seeded conversations are between users 2k-1 and 2k, k = 1..=chat_pairs.
pub fn chat_pairs(users: u64) -> u64 {
    (users / 2).min(200)
}

/// Session tokens minted and checked as the system does (the kit's own),
/// valid for a day: longer than any run.
pub fn tokens(secret: &str) -> Tokens {
    Tokens::new(secret.as_bytes(), Duration::from_secs(86_400))
}
