//! The user role's logic, on plain types.

use std::collections::HashMap;

use douyin_kit::{
    Error, Result,
    auth::{Passwords, Tokens, new_account_key},
    counts, ids,
    text::{self, check_length},
};
use douyin_proto::common::User;

use crate::repo::UserRepo;

#[derive(Clone)]
pub struct UserService {
    repo: UserRepo,
    passwords: Passwords,
    tokens: Tokens,
    counts: counts::Reader,
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
    pub fn new(repo: UserRepo, tokens: Tokens, counts: counts::Reader) -> Self {
        Self { repo, passwords: Passwords::new(), tokens, counts }
    }

    pub async fn register(&self, username: &str, password: &str) -> Result<Session> {
        let name = check_registration(username, password)?;
        let hash = self.passwords.hash(password).await?;
        let account_key = new_account_key();
        let user_id = self.repo.create(&name, &text::skeleton(&name), &hash, &account_key).await?;
        tracing::info!(user_id, "user registered");
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
    /// `is_follow` relative to `viewer_id` — one query (profiles and follow
    /// flags together) and one read of counts for the whole list.
    pub async fn users(&self, ids: &[i64], viewer_id: i64) -> Result<Vec<User>> {
        let wanted = ids::unique(ids);
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let profiles = self.repo.profiles(&wanted, viewer_id.max(0)).await?;
        let found: Vec<i64> = profiles.iter().map(|(p, _)| p.id).collect();
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let counts = self.counts.users(&found).await?;
        let profiles: HashMap<i64, _> = profiles.into_iter().map(|(p, follows)| (p.id, (p, follows))).collect();
        Ok(wanted
            .iter()
            .filter_map(|id| {
                let (p, is_follow) = profiles.get(id)?;
                let c = counts.get(id).copied().unwrap_or_default();
                Some(User {
                    id: p.id,
                    name: p.name.clone(),
                    follow_count: c.follow_count,
                    follower_count: c.follower_count,
                    is_follow: *is_follow,
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
