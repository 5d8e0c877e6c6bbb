//! Session tokens (HS256 JWTs). A token names
//! a user id and carries that account's random key, so it speaks only for the
//! account it was issued to: the gateway compares the key with the stored one.

use std::{path::Path, sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{Config, Error, Result};

const ISSUER: &str = "douyin";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// The account key of `sub` when the token was issued.
    key: String,
    iss: String,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Whom a valid token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bearer {
    pub user_id: i64,
    /// The account key the token carries; valid only while it is the user's.
    pub account_key: String,
}

/// A fresh account key: 128 random bits, hex.
pub fn new_account_key() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Issues and verifies session tokens with one HS256 key.
#[derive(Clone)]
pub struct Tokens {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    validation: Arc<Validation>,
    ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl Tokens {
    /// The key from `DOUYIN_JWT_SECRET`, else the one kept in the data dir
    /// (generated on first start).
    pub fn from_config(config: &Config) -> Result<Self> {
        let secret = match &config.jwt_secret {
            Some(secret) if !secret.is_empty() => secret.as_bytes().to_vec(),
            _ => load_or_generate_key(&config.data_dir)?,
        };
        Ok(Self::new(&secret, Duration::from_secs(config.jwt_ttl_secs)))
    }

    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "nbf"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Self {
            encoding: Arc::new(EncodingKey::from_secret(secret)),
            decoding: Arc::new(DecodingKey::from_secret(secret)),
            validation: Arc::new(validation),
            ttl,
        }
    }

    /// A token for `user_id` carrying its account key.
    pub fn issue(&self, user_id: i64, account_key: &str) -> Result<String> {
        if account_key.is_empty() {
            return Err(Error::internal(format!("user {user_id} has no account key")));
        }
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            key: account_key.to_owned(),
            iss: ISSUER.into(),
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::internal(format!("signing token: {e}")))
    }

    /// The user and account key a valid token names (the caller checks the
    /// key against the account). Every failure is `Unauthenticated`; a token
    /// without an account key (issued before keys existed) is invalid.
    pub fn verify(&self, token: &str) -> Result<Bearer> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            Error::Unauthenticated(match e.kind() {
                ErrorKind::ExpiredSignature => "token has expired".into(),
                ErrorKind::ImmatureSignature => "token is not valid yet".into(),
                ErrorKind::InvalidSignature => "token signature is invalid".into(),
                _ => "token is invalid; sign in again".into(),
            })
        })?;
        let user_id = data.claims.sub.parse::<i64>().ok().filter(|id| *id > 0);
        match user_id {
            Some(user_id) if !data.claims.key.is_empty() => Ok(Bearer { user_id, account_key: data.claims.key }),
            _ => Err(Error::Unauthenticated("token is invalid; sign in again".into())),
        }
    }
}

fn load_or_generate_key(dir: &Path) -> Result<Vec<u8>> {
    use std::io::Write;
    let path = dir.join("jwt.key");
    if let Ok(existing) = std::fs::read(&path)
        && existing.len() >= 32
    {
        return Ok(existing);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("creating data dir: {e}")))?;
    let key: [u8; 48] = rand::random();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    // Write to a temporary file, then link it into place so that concurrent
    // first starts agree on one key.
    let tmp = dir.join(format!(".jwt.key.{}", uuid::Uuid::new_v4()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::internal(format!("writing jwt key: {e}")))?;
        f.write_all(hex.as_bytes()).map_err(|e| Error::internal(format!("writing jwt key: {e}")))?;
        f.sync_all().ok();
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).ok();
    }
    let _ = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    std::fs::read(&path).map_err(|e| Error::internal(format!("reading jwt key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_forged_ones_do_not() {
        let tokens = Tokens::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let token = tokens.issue(42, "k42").unwrap();
        assert_eq!(tokens.verify(&token).unwrap(), Bearer { user_id: 42, account_key: "k42".into() });
        assert!(tokens.issue(42, "").is_err(), "no token without an account key");

        let other = Tokens::new(b"another-key-another-key-another!!", Duration::from_secs(60));
        assert!(other.verify(&token).is_err(), "wrong key");
        assert!(tokens.verify(&token[..token.len() - 3]).is_err(), "truncated");
        assert!(tokens.verify("garbage").is_err());

        // alg: none with the same claims
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = token.split('.').nth(1).unwrap();
        let none = format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), payload);
        assert!(tokens.verify(&none).is_err(), "alg none");

        let now = jsonwebtoken::get_current_timestamp();
        let sign = |nbf: u64, exp: u64| {
            let claims = Claims { sub: "42".into(), key: "k42".into(), iss: ISSUER.into(), iat: nbf, nbf, exp };
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &tokens.encoding).unwrap()
        };
        assert!(tokens.verify(&sign(now - 7200, now - 3600)).is_err(), "expired");
        assert!(tokens.verify(&sign(now + 3600, now + 7200)).is_err(), "not yet valid");
        assert_eq!(tokens.verify(&sign(now - 10, now + 60)).unwrap().user_id, 42);

        // A token of before account keys: signed right, no key.
        let keyless = serde_json::json!({"sub": "42", "iss": ISSUER, "iat": now, "nbf": now, "exp": now + 60});
        let keyless = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &keyless, &tokens.encoding).unwrap();
        assert!(tokens.verify(&keyless).is_err(), "no account key");
        assert_ne!(new_account_key(), new_account_key());
        assert_eq!(new_account_key().len(), 32);
    }

    #[test]
    fn generated_key_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_generate_key(dir.path()).unwrap();
        let b = load_or_generate_key(dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 64);
    }
}
