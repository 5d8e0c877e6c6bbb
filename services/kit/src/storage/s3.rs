//! Objects in an S3-API bucket.

use std::{path::Path, time::Duration};

use async_trait::async_trait;
use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region},
    error::SdkError,
    presigning::PresigningConfig,
    primitives::ByteStream,
};
use futures::StreamExt;
use tracing::Instrument;

use super::{MEDIA_PREFIX, ObjectInfo, ObjectStore, ObjectStream, check_key};
use crate::{Config, Error, Result};

/// Objects in an S3-API bucket, path-style addressing (as MinIO deployments use).
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    /// Signs URLs for the public endpoint clients reach, when one is
    /// configured; without it the gateway serves objects at `/media/…`.
    presigner: Option<aws_sdk_s3::Client>,
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

/// Runs one S3 call under its client span and records its latency and
/// outcome; a 404 answer (no such object) is an answer, not a failure.
async fn timed<T, E>(
    operation: &'static str,
    bucket: &str,
    call: impl Future<Output = std::result::Result<T, SdkError<E>>>,
) -> std::result::Result<T, SdkError<E>> {
    let started = std::time::Instant::now();
    let result = call.instrument(s3_span(operation, bucket)).await;
    let ok = match &result {
        Ok(_) => true,
        Err(e) => e.raw_response().is_some_and(|r| r.status().as_u16() == 404),
    };
    crate::metrics::s3_call(operation, ok, started.elapsed());
    result
}

fn s3_error(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Unavailable(format!("s3 {what}: {e:?}"))
}

impl S3Store {
    /// Connects and creates the bucket when it is missing (a store that cannot
    /// be reached yet is reported by health checks, not by a failed start).
    pub async fn new(config: &Config, endpoint: &str) -> Result<Self> {
        let public = config.s3_public_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty());
        let store = Self {
            client: s3_client(config, endpoint),
            presigner: public.map(|public| s3_client(config, public)),
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
        let put = self.client.put_object().bucket(&self.bucket).key(key).content_type(content_type).body(body).send();
        timed("PutObject", &self.bucket, put).await.map_err(|e| s3_error("put", e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let delete = self.client.delete_object().bucket(&self.bucket).key(key).send();
        timed("DeleteObject", &self.bucket, delete).await.map_err(|e| s3_error("delete", e))?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        let head = self.client.head_object().bucket(&self.bucket).key(key).send();
        match timed("HeadObject", &self.bucket, head).await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(s3_error("head", e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        loop {
            let started = std::time::Instant::now();
            let Some(page) = pages.next().instrument(s3_span("ListObjectsV2", &self.bucket)).await else {
                break;
            };
            crate::metrics::s3_call("ListObjectsV2", page.is_ok(), started.elapsed());
            let page = page.map_err(|e| s3_error("list", e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        Ok(keys)
    }

    async fn public_url(&self, key: &str) -> Result<String> {
        let Some(presigner) = &self.presigner else {
            return Ok(format!("{MEDIA_PREFIX}{key}"));
        };
        let presigning = PresigningConfig::expires_in(self.expiry).map_err(Error::internal)?;
        let request = presigner
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| Error::internal(format!("presigning: {e:?}")))?;
        Ok(request.uri().to_owned())
    }

    async fn ping(&self) -> Result<()> {
        let head = self.client.head_bucket().bucket(&self.bucket).send();
        timed("HeadBucket", &self.bucket, head).await.map_err(|e| s3_error("head bucket", e))?;
        Ok(())
    }

    async fn info(&self, key: &str) -> Result<Option<ObjectInfo>> {
        check_key(key)?;
        let head = self.client.head_object().bucket(&self.bucket).key(key).send();
        let head = match timed("HeadObject", &self.bucket, head).await {
            Ok(head) => head,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => return Ok(None),
            Err(e) => return Err(s3_error("head", e)),
        };
        Ok(Some(ObjectInfo {
            len: head.content_length().and_then(|l| u64::try_from(l).ok()).unwrap_or(0),
            content_type: head.content_type().map(str::to_owned),
            etag: head.e_tag().map(quoted),
            modified: head.last_modified().and_then(|t| std::time::SystemTime::try_from(*t).ok()),
        }))
    }

    async fn read(&self, key: &str, start: u64, len: u64) -> Result<ObjectStream> {
        check_key(key)?;
        if len == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let range = format!("bytes={start}-{}", start + len - 1);
        let object = self.client.get_object().bucket(&self.bucket).key(key).range(range).send();
        let object = timed("GetObject", &self.bucket, object).await.map_err(|e| s3_error("get", e))?;
        // The body arrives as the server sends it; each chunk is passed on as it comes.
        let chunks = futures::stream::unfold(object.body, |mut body| async move {
            match body.next().await {
                Some(Ok(bytes)) => Some((Ok(bytes), body)),
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), body)),
                None => None,
            }
        });
        Ok(chunks.boxed())
    }
}

/// An entity tag as HTTP sends it; S3 servers quote theirs, not all do.
fn quoted(tag: &str) -> String {
    let tag = tag.trim();
    if tag.starts_with('"') || tag.starts_with("W/") { tag.to_owned() } else { format!("\"{tag}\"") }
}
