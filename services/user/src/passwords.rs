//! Password hashes (argon2id): only the user role stores and checks them.

use std::sync::Arc;

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use douyin_kit::{Error, Result};

/// Password hashing with argon2id, always off the async runtime.
#[derive(Clone, Debug)]
pub struct Passwords {
    dummy: Arc<String>,
}

impl Passwords {
    pub fn new() -> Self {
        // A hash of a random password, verified against when a login names an
        // unknown user so both paths cost the same.
        let dummy = hash_blocking(&douyin_kit::auth::new_account_key()).unwrap_or_default();
        Self { dummy: Arc::new(dummy) }
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| Error::internal(format!("hashing task: {e}")))?
    }

    /// Checks `password` against `hash`, or against a dummy hash when the user
    /// does not exist (`hash` is None) so timing does not reveal which.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_ref().clone());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .map_err(|e| Error::internal(format!("hashing task: {e}")))?;
        Ok(ok && known)
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

fn hash_blocking(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("hashing password: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_only_the_right_one() {
        let passwords = Passwords::new();
        let hash = passwords.hash("secret-1").await.unwrap();
        assert!(passwords.verify("secret-1", Some(hash.clone())).await.unwrap());
        assert!(!passwords.verify("secret-2", Some(hash)).await.unwrap());
        assert!(!passwords.verify("secret-1", None).await.unwrap());
    }
}
