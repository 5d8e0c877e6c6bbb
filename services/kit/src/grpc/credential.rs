//! Service credentials: every call a process makes to a role in another
//! process carries a short-lived HS256 JWT signed with the shared service
//! secret (`DOUYIN_SERVICE_SECRET`), whose audience is the called role and
//! whose issuer is the calling process. The gRPC listener refuses any other
//! call with UNAUTHENTICATED, the health service excepted (kubelet probes
//! carry no credential). Calls between roles of one process never leave it
//! and carry none.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use http::{HeaderValue, header::AUTHORIZATION};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tower::Service;

use crate::{Error, Result, Role};

/// How long a minted credential is valid.
const LIFETIME: Duration = Duration::from_secs(60);
/// How long a client reuses a credential before minting the next one, so the
/// hot path does not sign per call and a credential is never sent stale.
const REUSE: Duration = Duration::from_secs(30);
/// Clock difference tolerated between processes, seconds.
const LEEWAY_SECS: u64 = 10;
/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

const HEALTH: &str = "/grpc.health.v1.Health/";
/// Marks a refusal for want of a valid credential, so the caller reports a
/// misconfigured deployment instead of passing UNAUTHENTICATED on as if its
/// user's token were bad.
const REFUSED: &str = "douyin-credential-refused";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    iat: u64,
    exp: u64,
}

/// The signing and checking keys of one deployment.
#[derive(Clone)]
pub struct ServiceKey {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    validations: Arc<HashMap<Role, Validation>>,
}

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceKey").finish_non_exhaustive()
    }
}

/// The issuer names a process may sign as: `douyin-<role>` for one role,
/// `douyin` for several.
fn issuers() -> Vec<String> {
    std::iter::once("douyin".to_owned()).chain(Role::ALL.iter().map(|r| format!("douyin-{r}"))).collect()
}

impl ServiceKey {
    /// The shared secret; shorter than [`MIN_SECRET_LEN`] bytes is refused.
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::invalid(format!(
                "DOUYIN_SERVICE_SECRET must be at least {MIN_SECRET_LEN} bytes, got {}",
                secret.len()
            )));
        }
        let issuers = issuers();
        let validations = Role::GRPC
            .iter()
            .map(|role| {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.set_audience(&[role.name()]);
                validation.set_issuer(&issuers);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                validation.leeway = LEEWAY_SECS;
                (*role, validation)
            })
            .collect();
        Ok(Self {
            encoding: Arc::new(EncodingKey::from_secret(secret)),
            decoding: Arc::new(DecodingKey::from_secret(secret)),
            validations: Arc::new(validations),
        })
    }

    /// A key nobody else holds: a listener checking with it answers only the
    /// health service.
    pub fn random() -> Self {
        let secret: [u8; 48] = rand::random();
        Self::new(&secret).expect("48 random bytes are long enough")
    }

    /// A credential from `issuer` for calls to `audience`, valid [`LIFETIME`].
    pub fn mint(&self, issuer: &str, audience: Role) -> Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims =
            Claims { iss: issuer.to_owned(), aud: audience.name().to_owned(), iat: now, exp: now + LIFETIME.as_secs() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::internal(format!("signing service credential: {e}")))
    }

    /// Checks that `token` is a valid credential for calls to `audience`.
    pub fn check(&self, token: &str, audience: Role) -> Result<()> {
        let validation =
            self.validations.get(&audience).ok_or_else(|| Error::Unauthenticated("no such service".into()))?;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, validation).map(|_| ()).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            Error::Unauthenticated(match e.kind() {
                ErrorKind::ExpiredSignature => "service credential has expired".into(),
                ErrorKind::InvalidAudience => "service credential is for another service".into(),
                ErrorKind::InvalidSignature => "service credential signature is invalid".into(),
                _ => "service credential is invalid".into(),
            })
        })
    }
}

/// The credential header a client sends to one audience, minted again once
/// it is [`REUSE`] old.
#[derive(Clone)]
pub struct Credential {
    key: ServiceKey,
    issuer: Arc<str>,
    audience: Role,
    cached: Arc<Mutex<Option<(HeaderValue, Instant)>>>,
}

impl Credential {
    pub fn new(key: ServiceKey, issuer: &str, audience: Role) -> Self {
        Self { key, issuer: issuer.into(), audience, cached: Arc::default() }
    }

    /// `Bearer <credential>`, from the cache while it is fresh.
    pub fn header(&self) -> Result<HeaderValue> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((value, minted)) = cached.as_ref()
            && minted.elapsed() < REUSE
        {
            return Ok(value.clone());
        }
        let token = self.key.mint(&self.issuer, self.audience)?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| Error::internal(format!("service credential header: {e}")))?;
        value.set_sensitive(true);
        *cached = Some((value.clone(), Instant::now()));
        Ok(value)
    }
}

/// A client transport that adds the credential to every call.
#[derive(Clone)]
pub struct WithCredential<S> {
    pub inner: S,
    pub credential: Credential,
}

impl<S, B, R> Service<http::Request<B>> for WithCredential<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Error: Into<super::BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = super::BoxError;
    type Future = BoxFuture<'static, Result<S::Response, super::BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.credential.header() {
            Ok(value) => {
                req.headers_mut().insert(AUTHORIZATION, value);
                let call = self.inner.call(req);
                let audience = self.credential.audience;
                Box::pin(async move {
                    let response = call.await.map_err(Into::into)?;
                    if response.headers().contains_key(REFUSED) {
                        tracing::error!(
                            %audience,
                            "the {audience} role refused this process's service credential: \
                             DOUYIN_SERVICE_SECRET differs between the processes"
                        );
                        return Err(Box::new(tonic::Status::unavailable("service temporarily unavailable")) as _);
                    }
                    Ok(response)
                })
            }
            Err(error) => {
                tracing::error!(%error, "no service credential");
                Box::pin(async { Err(Box::new(tonic::Status::internal("service credential unavailable")) as _) })
            }
        }
    }
}

/// The role a gRPC path belongs to (`/douyin.user.v1.UserService/GetUsers` is
/// `user`); None for paths of no role.
fn callee(path: &str) -> Option<Role> {
    let service = path.trim_start_matches('/').split('/').next()?;
    Role::GRPC.into_iter().find(|r| r.grpc_service() == service)
}

/// Why a call is refused, or None when it may proceed.
fn refusal(key: &ServiceKey, path: &str, headers: &http::HeaderMap) -> Option<String> {
    if path.starts_with(HEALTH) {
        return None;
    }
    let Some(role) = callee(path) else {
        return Some("unknown service".into());
    };
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Some("a service credential is required".into());
    };
    key.check(token, role).err().map(|e| e.public_message())
}

/// The server side: every call but health checks needs a valid credential
/// for the role it calls.
#[derive(Clone, Debug)]
pub struct RequireCredential {
    key: ServiceKey,
}

impl RequireCredential {
    pub fn new(key: ServiceKey) -> Self {
        Self { key }
    }
}

impl<S> tower::Layer<S> for RequireCredential {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Checked { inner, key: self.key.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct Checked<S> {
    inner: S,
    key: ServiceKey,
}

impl<S, B, R> Service<http::Request<B>> for Checked<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match refusal(&self.key, req.uri().path(), req.headers()) {
            None => Box::pin(self.inner.call(req)),
            Some(reason) => {
                tracing::warn!(path = %req.uri().path(), %reason, "gRPC call refused");
                let mut response = tonic::Status::unauthenticated(reason).into_http::<R>();
                response.headers_mut().insert(REFUSED, HeaderValue::from_static("1"));
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"service-secret-for-tests-0123456789abcdef";

    fn bearer(token: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        headers
    }

    #[test]
    fn credentials_are_bound_to_their_audience_and_key() {
        let key = ServiceKey::new(SECRET).unwrap();
        let token = key.mint("douyin-api", Role::Chat).unwrap();
        let history = "/douyin.chat.v1.ChatService/History";
        assert_eq!(refusal(&key, history, &bearer(&token)), None);
        let users = "/douyin.user.v1.UserService/GetUsers";
        assert!(refusal(&key, users, &bearer(&token)).unwrap().contains("another service"));
        assert!(refusal(&key, history, &http::HeaderMap::new()).unwrap().contains("required"));
        let other = ServiceKey::new(b"another-service-secret-0123456789abcdef").unwrap();
        assert!(refusal(&other, history, &bearer(&token)).is_some(), "another deployment's key");
        assert!(refusal(&ServiceKey::random(), history, &bearer(&token)).is_some());
        assert!(refusal(&key, "/douyin.chat.v1.Other/History", &bearer(&token)).is_some(), "unknown service");
        assert_eq!(refusal(&key, "/grpc.health.v1.Health/Check", &http::HeaderMap::new()), None);
    }

    #[test]
    fn expired_foreign_and_unsigned_credentials_are_refused() {
        let key = ServiceKey::new(SECRET).unwrap();
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
        };
        let now = jsonwebtoken::get_current_timestamp();
        let expired = sign(serde_json::json!({"iss": "douyin-api", "aud": "chat", "iat": now - 600, "exp": now - 300}));
        assert!(key.check(&expired, Role::Chat).unwrap_err().public_message().contains("expired"));
        let stranger = sign(serde_json::json!({"iss": "someone", "aud": "chat", "iat": now, "exp": now + 60}));
        assert!(key.check(&stranger, Role::Chat).is_err(), "unknown issuer");
        let forever = sign(serde_json::json!({"iss": "douyin-api", "aud": "chat"}));
        assert!(key.check(&forever, Role::Chat).is_err(), "no expiry");
        let user_token = crate::auth::Tokens::new(SECRET, Duration::from_secs(60)).issue(1, "k1").unwrap();
        assert!(key.check(&user_token, Role::Chat).is_err(), "a session token is no service credential");
        assert!(ServiceKey::new(b"short").is_err());
    }

    #[test]
    fn a_client_reuses_its_credential() {
        let credential = Credential::new(ServiceKey::new(SECRET).unwrap(), "douyin-api", Role::User);
        let first = credential.header().unwrap();
        assert_eq!(credential.header().unwrap(), first);
        assert!(first.is_sensitive());
    }
}
