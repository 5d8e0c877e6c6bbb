//! Who is calling: the `token` parameter or `Authorization: Bearer`, verified
//! as a JWT and checked against the account it names: the user must exist and
//! the token must carry that account's key.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, header::AUTHORIZATION};
use douyin_kit::{
    Error, Result,
    auth::{Bearer, Tokens},
    grpc::Clients,
};
use douyin_proto::common::Ids;

use crate::params::Params;

/// Account keys the user role confirmed recently, so most requests do not ask
/// it. Bounded in time (an account deleted or restored away is noticed within
/// the TTL) and in size (expired entries are swept when full, then the rest).
pub struct Accounts {
    keys: Mutex<HashMap<i64, (String, Instant)>>,
    ttl: Duration,
    cap: usize,
}

/// How long a confirmed account key is believed.
pub const ACCOUNT_TTL: Duration = Duration::from_secs(30);
const ACCOUNTS_CAP: usize = 100_000;

impl Default for Accounts {
    fn default() -> Self {
        Self::new(ACCOUNT_TTL, ACCOUNTS_CAP)
    }
}

impl Accounts {
    pub fn new(ttl: Duration, cap: usize) -> Self {
        Self { keys: Mutex::default(), ttl, cap: cap.max(1) }
    }

    /// Whether `bearer`'s key was confirmed for its user within the TTL.
    fn confirmed(&self, bearer: &Bearer) -> bool {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(&bearer.user_id).is_some_and(|(key, at)| *key == bearer.account_key && at.elapsed() < self.ttl)
    }

    /// Records the stored key of `user_id`.
    pub fn remember(&self, user_id: i64, key: String) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= self.cap && !keys.contains_key(&user_id) {
            keys.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if keys.len() >= self.cap {
                keys.clear();
            }
        }
        keys.insert(user_id, (key, Instant::now()));
    }

    fn forget(&self, user_id: i64) {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).remove(&user_id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The raw token of a request, if any ("" counts as none).
pub fn token<'a>(params: &'a Params, headers: &'a HeaderMap) -> Option<&'a str> {
    params.get("token").map(str::trim).filter(|t| !t.is_empty()).or_else(|| {
        headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    })
}

/// Verifies `token`, that its user exists and that it carries that account's
/// key; returns the user id.
pub async fn verify(tokens: &Tokens, accounts: &Accounts, clients: &Clients, token: &str) -> Result<i64> {
    let bearer = tokens.verify(token)?;
    if accounts.confirmed(&bearer) {
        return Ok(bearer.user_id);
    }
    let mut user = clients.user.clone();
    let stored = user.account_keys(Ids { ids: vec![bearer.user_id] }).await?.into_inner().keys;
    let Some(stored) = stored.into_iter().find(|k| k.user_id == bearer.user_id) else {
        accounts.forget(bearer.user_id);
        return Err(Error::Unauthenticated("token names a user that does not exist".into()));
    };
    let matches = !stored.key.is_empty() && stored.key == bearer.account_key;
    accounts.remember(bearer.user_id, stored.key);
    if !matches {
        return Err(Error::Unauthenticated("token was issued to another account; sign in again".into()));
    }
    Ok(bearer.user_id)
}

/// Remembers the account of a token the user role just issued (register,
/// login), so a new account that reuses an id is known at once.
pub fn issued(tokens: &Tokens, accounts: &Accounts, token: &str) {
    if let Ok(bearer) = tokens.verify(token) {
        accounts.remember(bearer.user_id, bearer.account_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(user_id: i64, key: &str) -> Bearer {
        Bearer { user_id, account_key: key.into() }
    }

    #[test]
    fn confirmed_keys_expire_and_the_memory_stays_bounded() {
        let accounts = Accounts::new(Duration::from_secs(3600), 3);
        accounts.remember(1, "a".into());
        assert!(accounts.confirmed(&bearer(1, "a")));
        assert!(!accounts.confirmed(&bearer(1, "b")), "another account's key");
        assert!(!accounts.confirmed(&bearer(2, "a")), "another user");
        for id in 2..=10 {
            accounts.remember(id, "k".into());
            assert!(accounts.len() <= 3, "{} entries", accounts.len());
        }
        assert!(accounts.confirmed(&bearer(10, "k")), "the newest entry is kept");
        accounts.forget(10);
        assert!(!accounts.confirmed(&bearer(10, "k")));

        let expired = Accounts::new(Duration::ZERO, 10);
        expired.remember(1, "a".into());
        assert!(!expired.confirmed(&bearer(1, "a")), "past the TTL the user role is asked again");
    }
}
