//! Media objects: a local directory (embedded default, served by the gateway at
//! `/media/…` with Range support) or an S3-API bucket (MinIO in clusters), whose
//! objects clients fetch with presigned GET URLs against the public endpoint.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region},
    presigning::PresigningConfig,
    primitives::ByteStream,
};
use tracing::Instrument;

use crate::{Config, Error, Result};

/// Where the gateway serves local media.
pub const MEDIA_PREFIX: &str = "/media/";

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores the file at `path` under `key`.
    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<()>;
    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    async fn exists(&self, key: &str) -> Result<bool>;
    /// Every key starting with `prefix` ("" for all), in no particular order.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// What a client GETs: an absolute URL, or a gateway path under `/media/`.
    async fn public_url(&self, key: &str) -> Result<String>;
    async fn ping(&self) -> Result<()>;
    /// The directory behind a local store (the gateway serves it).
    fn local_dir(&self) -> Option<&Path>;
}

pub async fn from_config(config: &Config) -> Result<Arc<dyn ObjectStore>> {
    Ok(match &config.s3_endpoint {
        Some(endpoint) if !endpoint.is_empty() => Arc::new(S3Store::new(config, endpoint).await?),
        _ => Arc::new(LocalStore::new(config.data_dir.join("media"))?),
    })
}

/// True for keys made of safe path segments (`a-z0-9._-`, no `..`).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 256
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

fn check_key(key: &str) -> Result<()> {
    if valid_key(key) { Ok(()) } else { Err(Error::internal(format!("invalid object key {key:?}"))) }
}

/// Objects as files under one directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&root).map_err(|e| Error::internal(format!("creating media dir: {e}")))?;
        Ok(Self { root })
    }

    /// The file of `key`, or None for keys that could escape the root.
    pub fn path_of(&self, key: &str) -> Option<PathBuf> {
        valid_key(key).then(|| self.root.join(key))
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_file(&self, key: &str, path: &Path, _content_type: &str) -> Result<()> {
        check_key(key)?;
        let target = self.root.join(key);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| Error::internal(format!("media dir: {e}")))?;
        }
        // Copy to a temporary name first so a reader never sees half a file.
        let tmp = PartFile(target.with_extension(format!("part-{}", uuid::Uuid::new_v4().simple())));
        tokio::fs::copy(path, &tmp.0).await.map_err(|e| Error::internal(format!("storing media: {e}")))?;
        tokio::fs::rename(&tmp.0, &target).await.map_err(|e| Error::internal(format!("storing media: {e}")))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        match tokio::fs::remove_file(self.root.join(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::internal(format!("deleting media: {e}"))),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        Ok(tokio::fs::try_exists(self.root.join(key)).await.unwrap_or(false))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        let keys = tokio::task::spawn_blocking(move || walk(&root, &root))
            .await
            .map_err(|e| Error::internal(format!("listing media: {e}")))?
            .map_err(|e| Error::internal(format!("listing media: {e}")))?;
        Ok(keys.into_iter().filter(|k| k.starts_with(&prefix)).collect())
    }

    async fn public_url(&self, key: &str) -> Result<String> {
        Ok(format!("{MEDIA_PREFIX}{key}"))
    }

    async fn ping(&self) -> Result<()> {
        tokio::fs::metadata(&self.root).await.map(|_| ()).map_err(|e| Error::Unavailable(format!("media dir: {e}")))
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.root)
    }
}

/// A file being written; removed unless renamed into place (a failed or
/// cancelled copy leaves nothing).
struct PartFile(PathBuf);

impl Drop for PartFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(%error, path = %self.0.display(), "could not remove a partial media file")
            }
        }
    }
}

/// Keys (paths relative to `root`, `/`-separated) of every file under `dir`.
fn walk(root: &Path, dir: &Path) -> std::io::Result<Vec<String>> {
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            keys.extend(walk(root, &path)?);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<_> = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect();
            keys.push(parts.join("/"));
        }
    }
    Ok(keys)
}

/// Objects in an S3-API bucket, path-style addressing (as MinIO deployments use).
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    /// Signs URLs for the address clients see, which may differ from the
    /// in-cluster endpoint.
    presigner: aws_sdk_s3::Client,
    bucket: String,
    expiry: Duration,
}

fn s3_client(config: &Config, endpoint: &str) -> aws_sdk_s3::Client {
    let credentials = Credentials::new(
        config.s3_access_key.clone().unwrap_or_default(),
        config.s3_secret_key.clone().unwrap_or_default(),
        None,
        None,
        "douyin-config",
    );
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.s3_region.clone()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A client span for one S3 call inside a request (none outside: health checks).
fn s3_span(operation: &str, bucket: &str) -> tracing::Span {
    if tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "s3",
        otel.name = %format!("S3.{operation}"),
        otel.kind = "client",
        rpc.system = "aws-api",
        rpc.service = "S3",
        rpc.method = %operation,
        aws.s3.bucket = %bucket,
    )
}

fn s3_error(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Unavailable(format!("s3 {what}: {e:?}"))
}

impl S3Store {
    /// Connects and creates the bucket when it is missing (a store that cannot
    /// be reached yet is reported by health checks, not by a failed start).
    pub async fn new(config: &Config, endpoint: &str) -> Result<Self> {
        let public = config.s3_public_endpoint.as_deref().filter(|e| !e.is_empty()).unwrap_or(endpoint);
        let store = Self {
            client: s3_client(config, endpoint),
            presigner: s3_client(config, public),
            bucket: config.s3_bucket.clone(),
            expiry: Duration::from_secs(config.s3_presign_secs.clamp(60, 7 * 24 * 3600)),
        };
        if let Err(error) = store.ensure_bucket().await {
            tracing::warn!(%error, "object storage not ready yet");
        }
        Ok(store)
    }

    pub async fn ensure_bucket(&self) -> Result<()> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let already = e
                    .as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists());
                if already { Ok(()) } else { Err(s3_error("create bucket", e)) }
            }
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<()> {
        check_key(key)?;
        let body = ByteStream::from_path(path).await.map_err(|e| Error::internal(format!("reading upload: {e}")))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .instrument(s3_span("PutObject", &self.bucket))
            .await
            .map_err(|e| s3_error("put", e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .instrument(s3_span("DeleteObject", &self.bucket))
            .await
            .map_err(|e| s3_error("delete", e))?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        let head = self.client.head_object().bucket(&self.bucket).key(key).send();
        match head.instrument(s3_span("HeadObject", &self.bucket)).await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(s3_error("head", e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().instrument(s3_span("ListObjectsV2", &self.bucket)).await {
            let page = page.map_err(|e| s3_error("list", e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        Ok(keys)
    }

    async fn public_url(&self, key: &str) -> Result<String> {
        let presigning = PresigningConfig::expires_in(self.expiry).map_err(Error::internal)?;
        let request = self
            .presigner
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| Error::internal(format!("presigning: {e:?}")))?;
        Ok(request.uri().to_owned())
    }

    async fn ping(&self) -> Result<()> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(|e| s3_error("head bucket", e))?;
        Ok(())
    }

    fn local_dir(&self) -> Option<&Path> {
        None
    }
}

/// One behaviour suite for every implementation.
pub mod suite {
    use super::*;

    pub async fn stores_and_deletes(store: &dyn ObjectStore) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clip.mp4");
        std::fs::write(&file, b"\x00\x00\x00\x18ftypmp42 test bytes").unwrap();
        let key = format!("videos/{}.mp4", uuid::Uuid::new_v4().simple());
        assert!(!store.exists(&key).await.unwrap());
        store.put_file(&key, &file, "video/mp4").await.unwrap();
        assert!(store.exists(&key).await.unwrap());
        assert!(store.list("videos/").await.unwrap().contains(&key));
        assert!(!store.list("covers/").await.unwrap().contains(&key));
        let url = store.public_url(&key).await.unwrap();
        assert!(url.contains(&key), "{url}");
        store.delete(&key).await.unwrap();
        assert!(!store.exists(&key).await.unwrap());
        assert!(!store.list("").await.unwrap().contains(&key));
        store.delete(&key).await.unwrap();
        assert!(store.put_file("../escape", &file, "video/mp4").await.is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        assert!(valid_key("videos/abc.mp4"));
        for bad in ["", "../x", "a/../../b", "/abs", "a//b", "a\0b", "a b", "a/./b"] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn local_store_behaves() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("media")).unwrap();
        suite::stores_and_deletes(&store).await;
        assert!(store.public_url("covers/a.jpg").await.unwrap().starts_with(MEDIA_PREFIX));
    }
}
