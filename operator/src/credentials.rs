//! Credentials generated once per environment and kept in its credentials Secret.
//!
//! Every reconcile reads the Secret first and only fills in what is missing, so the
//! values survive reconciles, operator restarts and (with `deletionPolicy: Retain`)
//! re-creating the environment, which must open the retained volumes again.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::names::Backend;

pub const MYSQL_ROOT_PASSWORD: &str = "mysql-root-password";
pub const MYSQL_PASSWORD: &str = "mysql-password";
pub const REDIS_PASSWORD: &str = "redis-password";
pub const MINIO_ROOT_USER: &str = "minio-root-user";
pub const MINIO_ROOT_PASSWORD: &str = "minio-root-password";
pub const S3_ACCESS_KEY: &str = "s3-access-key";
pub const S3_SECRET_KEY: &str = "s3-secret-key";

/// The database user and name the application connects with.
pub const MYSQL_USER: &str = "douyin";
pub const MYSQL_DATABASE: &str = "douyin";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub mysql_root_password: String,
    pub mysql_password: String,
    pub redis_password: String,
    pub minio_root_user: String,
    pub minio_root_password: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
}

impl Credentials {
    /// Keeps every value found in `existing` (a Secret's `data`) and generates the
    /// missing ones with `generate(length)`.
    pub fn fill_missing(
        existing: Option<&BTreeMap<String, ByteString>>,
        mut generate: impl FnMut(usize) -> String,
    ) -> Self {
        let mut take = |key: &str, length: usize| -> String {
            existing
                .and_then(|data| data.get(key))
                .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| generate(length))
        };
        Self {
            mysql_root_password: take(MYSQL_ROOT_PASSWORD, 32),
            mysql_password: take(MYSQL_PASSWORD, 32),
            redis_password: take(REDIS_PASSWORD, 32),
            minio_root_user: take(MINIO_ROOT_USER, 20),
            minio_root_password: take(MINIO_ROOT_PASSWORD, 40),
            s3_access_key: take(S3_ACCESS_KEY, 20),
            s3_secret_key: take(S3_SECRET_KEY, 40),
        }
    }

    /// Values clearly marked as not real, for `render`: the operator generates the
    /// real ones once, in the cluster, and keeps them.
    pub fn placeholders() -> Self {
        Self::fill_missing(None, |_| String::new()).with_each(|key| format!("GENERATED-{key}"))
    }

    fn with_each(mut self, value: impl Fn(&str) -> String) -> Self {
        self.mysql_root_password = value(MYSQL_ROOT_PASSWORD);
        self.mysql_password = value(MYSQL_PASSWORD);
        self.redis_password = value(REDIS_PASSWORD);
        self.minio_root_user = value(MINIO_ROOT_USER);
        self.minio_root_password = value(MINIO_ROOT_PASSWORD);
        self.s3_access_key = value(S3_ACCESS_KEY);
        self.s3_secret_key = value(S3_SECRET_KEY);
        self
    }

    /// The Secret's `data`.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        [
            (MYSQL_ROOT_PASSWORD, &self.mysql_root_password),
            (MYSQL_PASSWORD, &self.mysql_password),
            (REDIS_PASSWORD, &self.redis_password),
            (MINIO_ROOT_USER, &self.minio_root_user),
            (MINIO_ROOT_PASSWORD, &self.minio_root_password),
            (S3_ACCESS_KEY, &self.s3_access_key),
            (S3_SECRET_KEY, &self.s3_secret_key),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), ByteString(value.clone().into_bytes())))
        .collect()
    }
}

/// The keys of the credentials Secret that open one backend's data: generated
/// into a fresh volume on first start, so they cannot change while it exists.
pub fn keys_of(backend: Backend) -> &'static [&'static str] {
    match backend {
        Backend::Mysql => &[MYSQL_ROOT_PASSWORD, MYSQL_PASSWORD],
        Backend::Redis => &[REDIS_PASSWORD],
        Backend::Minio => &[MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, S3_ACCESS_KEY, S3_SECRET_KEY],
    }
}

/// The backends some of whose keys are missing (or empty) in `existing`.
pub fn missing_for(existing: Option<&BTreeMap<String, ByteString>>) -> Vec<Backend> {
    let present = |key: &&str| existing.and_then(|data| data.get(*key)).is_some_and(|value| !value.0.is_empty());
    Backend::ALL.into_iter().filter(|b| !keys_of(*b).iter().all(present)).collect()
}

/// A random alphanumeric string: safe inside URLs and shell words without escaping.
pub fn random_token(length: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(length).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_value_for_a_new_environment() {
        let creds = Credentials::fill_missing(None, random_token);
        let data = creds.to_data();
        assert_eq!(data.len(), 7);
        assert_eq!(creds.mysql_password.len(), 32);
        assert!(creds.mysql_password.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(creds.mysql_password, creds.mysql_root_password);
    }

    #[test]
    fn keeps_existing_values_and_fills_only_the_gaps() {
        let first = Credentials::fill_missing(None, random_token);
        let mut data = first.to_data();
        data.remove(REDIS_PASSWORD);
        let second = Credentials::fill_missing(Some(&data), |_| "fresh".to_string());
        assert_eq!(second.mysql_password, first.mysql_password);
        assert_eq!(second.s3_secret_key, first.s3_secret_key);
        assert_eq!(second.redis_password, "fresh");
    }

    #[test]
    fn missing_keys_are_reported_per_backend() {
        assert_eq!(missing_for(None), Backend::ALL);
        let mut data = Credentials::fill_missing(None, random_token).to_data();
        assert!(missing_for(Some(&data)).is_empty());
        data.remove(S3_SECRET_KEY);
        data.insert(MYSQL_PASSWORD.into(), ByteString(Vec::new()));
        assert_eq!(missing_for(Some(&data)), [Backend::Mysql, Backend::Minio]);
    }

    #[test]
    fn placeholders_say_they_are_not_real() {
        let fake = Credentials::placeholders();
        assert_eq!(fake.mysql_password, "GENERATED-mysql-password");
        assert_eq!(fake.to_data().len(), 7);
    }

    #[test]
    fn round_trips_through_secret_data() {
        let creds = Credentials::fill_missing(None, random_token);
        let again = Credentials::fill_missing(Some(&creds.to_data()), |_| unreachable!("nothing is missing"));
        assert_eq!(again, creds);
    }
}
