//! What the seeder, the load generator and the baseline agree on: ids, names,
//! times, the shared password and session tokens.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// Every seeded user's password.
pub const PASSWORD: &str = "bench-password";
/// Publish time of video 0; video `id` is published `id` seconds later.
pub const SEED_EPOCH_MS: i64 = 1_600_000_000_000;
/// The JWT key the suite gives the system and the baseline.
pub const DEFAULT_SECRET: &str = "douyin-bench-secret-0123456789abcdef";

pub fn username(id: u64) -> String {
    format!("bench{id}")
}

pub fn published_at_ms(video: u64) -> i64 {
    SEED_EPOCH_MS + video as i64 * 1_000
}

/// Seeded conversations are between users 2k-1 and 2k, k = 1..=chat_pairs.
pub fn chat_pairs(users: u64) -> u64 {
    (users / 2).min(200)
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: String,
    iss: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Mints session tokens the way the system does (HS256, iss "douyin").
pub struct TokenMint {
    key: EncodingKey,
}

impl TokenMint {
    pub fn new(secret: &str) -> Self {
        Self { key: EncodingKey::from_secret(secret.as_bytes()) }
    }

    pub fn token(&self, user: u64) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims { sub: user.to_string(), iss: "douyin", iat: now, nbf: now - 60, exp: now + 86_400 };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key).expect("signing a token")
    }
}
