//! Who is calling: the `token` parameter or `Authorization: Bearer`, verified
//! as a JWT and checked against the users that exist.

use std::{collections::HashSet, sync::Mutex};

use axum::http::{HeaderMap, header::AUTHORIZATION};
use douyin_kit::{Error, Result, auth::Tokens, grpc::Clients};
use douyin_proto::common::Ids;

use crate::params::Params;

/// Ids known to exist. Users are never deleted, so a positive answer never
/// goes stale; the set is bounded and simply cleared when full.
#[derive(Default)]
pub struct KnownUsers {
    ids: Mutex<HashSet<i64>>,
}

const KNOWN_USERS_CAP: usize = 200_000;

impl KnownUsers {
    fn contains(&self, id: i64) -> bool {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).contains(&id)
    }

    fn insert(&self, id: i64) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.len() >= KNOWN_USERS_CAP {
            ids.clear();
        }
        ids.insert(id);
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

/// Verifies `token` and that its user exists; returns the user id.
pub async fn verify(tokens: &Tokens, known: &KnownUsers, clients: &Clients, token: &str) -> Result<i64> {
    let user_id = tokens.verify(token)?;
    if known.contains(user_id) {
        return Ok(user_id);
    }
    let mut user = clients.user.clone();
    let found = user.existing_users(Ids { ids: vec![user_id] }).await?.into_inner().ids;
    if found.is_empty() {
        return Err(Error::Unauthenticated("token names a user that does not exist".into()));
    }
    known.insert(user_id);
    Ok(user_id)
}
