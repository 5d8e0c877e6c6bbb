//! The user role's logic, on plain types.

use std::collections::{HashMap, HashSet};

use douyin_counts as counts;
use douyin_kit::{
    Error, Result,
    auth::{Tokens, new_account_key},
    cache::{Flags, RowCache, rows::CachedRow},
    ids,
    text::{self, check_length},
};
use douyin_proto::common::User;

use crate::{
    passwords::Passwords,
    repo::{NewAccount, Profile, UserRepo},
};

/// A profile as the cache holds it.
impl CachedRow for Profile {
    fn id(&self) -> i64 {
        self.id
    }

    fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn decode(id: i64, payload: &str) -> Option<Self> {
        serde_json::from_str::<Profile>(payload).ok().filter(|profile| profile.id == id)
    }
}

#[derive(Clone)]
pub struct UserService {
    repo: UserRepo,
    passwords: Passwords,
    tokens: Tokens,
    counts: counts::Reader,
    profiles: RowCache<Profile>,
    /// Each user's follows, cached.
    follows: Flags,
}

/// A signed-in user.
#[derive(Clone, Debug)]
pub struct Session {
    pub user_id: i64,
    pub token: String,
}

/// Longest account name, in characters (after normalisation).
const MAX_NAME_CHARS: usize = 32;

/// Checks the form of a sign-in's name and password. Names stored before
/// names were normalised keep signing in, so only the length is checked here;
/// registration checks the name fully ([`text::account_name`]).
fn check_credentials(username: &str, password: &str) -> Result<()> {
    if username.is_empty() {
        return Err(Error::invalid("username is required"));
    }
    check_length("username", username, 1, MAX_NAME_CHARS)?;
    if password.is_empty() {
        return Err(Error::invalid("password is required"));
    }
    let chars = password.chars().count();
    if !(6..=32).contains(&chars) {
        return Err(Error::invalid(format!("password must be 6 to 32 characters, got {chars}")));
    }
    Ok(())
}

/// A registration's name as it will be stored (NFKC), or why it is refused.
fn check_registration(username: &str, password: &str) -> Result<String> {
    if username.is_empty() {
        return Err(Error::invalid("username is required"));
    }
    let name = text::account_name("username", username, MAX_NAME_CHARS)?;
    check_credentials(&name, password)?;
    Ok(name)
}

impl UserService {
    pub fn new(
        repo: UserRepo,
        tokens: Tokens,
        counts: counts::Reader,
        profiles: RowCache<Profile>,
        follows: Flags,
    ) -> Self {
        Self { repo, passwords: Passwords::new(), tokens, counts, profiles, follows }
    }

    pub async fn register(&self, username: &str, password: &str) -> Result<Session> {
        let name = check_registration(username, password)?;
        let hash = self.passwords.hash(password).await?;
        let account_key = new_account_key();
        let name_key = text::skeleton(&name);
        let account = NewAccount {
            username: &name,
            name_key: &name_key,
            password_hash: &hash,
            account_key: &account_key,
            name: &name,
            signature: "",
        };
        let (user_id, created_at_ms) = self.repo.create(account).await?;
        tracing::info!(user_id, "user registered");
        // Replaces the entry of an account that had this id before a restore.
        let profile = Profile { id: user_id, name, ..Profile::default() };
        self.profiles.put(&[(profile, created_at_ms)]).await;
        Ok(Session { user_id, token: self.tokens.issue(user_id, &account_key)? })
    }

    /// An unknown user and a wrong password get the same refusal and cost the
    /// same time.
    pub async fn login(&self, username: &str, password: &str) -> Result<Session> {
        check_credentials(username, password)?;
        let name = text::nfkc(username);
        let stored = self.repo.credentials(username, &name, &text::skeleton(&name)).await?;
        let (user_id, hash, account_key) = match stored {
            Some((id, hash, key)) => (id, Some(hash), key),
            None => (0, None, String::new()),
        };
        if !self.passwords.verify(password, hash).await? {
            return Err(Error::Unauthenticated("username or password is incorrect".into()));
        }
        Ok(Session { user_id, token: self.tokens.issue(user_id, &account_key)? })
    }

    /// Users in the order of `ids` (unknown ones left out), with counts and
    /// `is_follow` relative to `viewer_id`: the profiles from the cache (the
    /// misses in one query), the viewer's follows among them from the cache
    /// (or one query),
    /// and one read of counts for the whole list (none when `with_counts` is
    /// false: every count is then 0).
    /// `viewer_version` is the version of the viewer's counts when the caller
    /// read them from the counter (0 when not).
    pub async fn users(
        &self,
        ids: &[i64],
        viewer_id: i64,
        viewer_version: i64,
        with_counts: bool,
    ) -> Result<Vec<User>> {
        let wanted = ids::unique(ids);
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        // The viewer's follows do not depend on the profiles: both read at once.
        let followed = async {
            let followed = self.repo.followed_among(&self.follows, viewer_id, viewer_version, &wanted).await?;
            Ok::<HashSet<i64>, Error>(followed.into_iter().collect())
        };
        let (profiles, followed) = tokio::try_join!(self.profiles(&wanted), followed)?;
        let found: Vec<i64> = wanted.iter().copied().filter(|id| profiles.contains_key(id)).collect();
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let counts = if with_counts { self.counts.users(&found).await? } else { HashMap::new() };
        Ok(found
            .iter()
            .filter_map(|id| {
                let p = profiles.get(id)?;
                let c = counts.get(id).copied().unwrap_or_default();
                Some(User {
                    id: p.id,
                    name: p.name.clone(),
                    follow_count: c.follow_count,
                    follower_count: c.follower_count,
                    is_follow: followed.contains(id),
                    avatar: p.avatar.clone(),
                    background_image: p.background_image.clone(),
                    signature: p.signature.clone(),
                    total_favorited: c.total_favorited,
                    work_count: c.work_count,
                    favorite_count: c.favorite_count,
                })
            })
            .collect())
    }

    /// Profiles of `ids` by id (unknown ones absent): from the row cache,
    /// the rest from one query, then cached.
    async fn profiles(&self, ids: &[i64]) -> Result<HashMap<i64, Profile>> {
        let load = |missing: Vec<i64>| async move { self.repo.profiles(&missing).await };
        Ok(self.profiles.rows(ids, load).await?.into_iter().map(|p| (p.id, p)).collect())
    }

    /// `(id, account key)` of those of `ids` that exist.
    pub async fn account_keys(&self, ids: &[i64]) -> Result<Vec<(i64, String)>> {
        self.repo.account_keys(&ids::unique(ids)).await
    }

    pub async fn existing(&self, ids: &[i64]) -> Result<Vec<i64>> {
        let wanted = ids::unique(ids);
        let found: std::collections::HashSet<i64> = self.repo.existing(&wanted).await?.into_iter().collect();
        Ok(wanted.into_iter().filter(|id| found.contains(id)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_checked_with_clear_messages() {
        assert!(check_credentials("alice", "secret").is_ok());
        assert!(check_credentials(&"a".repeat(32), &"p".repeat(32)).is_ok());
        let msg = |u: &str, p: &str| check_credentials(u, p).unwrap_err().public_message();
        assert!(msg("", "secret").contains("username"));
        assert!(msg(&"a".repeat(33), "secret").contains("username"));
        assert!(msg("alice", "").contains("password"));
        assert!(msg("alice", "12345").contains("password"));
        assert!(msg("alice", &"p".repeat(33)).contains("password"));
        assert!(check_credentials("名字", "密码密码密码").is_ok());
    }

    #[test]
    fn registration_stores_the_normalised_name() {
        assert_eq!(check_registration("cafe\u{301}", "secret").unwrap(), "caf\u{E9}");
        let msg = |u: &str| check_registration(u, "secret").unwrap_err().public_message();
        assert!(msg("a\u{200B}b").contains("U+200B"));
        assert!(msg(" alice").contains("spaces"));
        assert!(msg(&"a".repeat(33)).contains("username"));
        assert!(check_registration("alice", "12345").unwrap_err().public_message().contains("password"));
    }
}
