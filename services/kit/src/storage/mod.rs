//! Media objects: a local directory (embedded default) or an S3-API bucket
//! (MinIO in clusters). The gateway serves either at `/media/…` (streamed,
//! with Range, HEAD and validators); with a public S3 endpoint configured,
//! clients fetch S3 objects directly with presigned GET URLs instead.

#[cfg(feature = "s3")]
mod s3;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

#[cfg(feature = "s3")]
pub use s3::S3Store;

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
    /// What is known of `key` without reading it; None when there is no such object.
    async fn info(&self, key: &str) -> Result<Option<ObjectInfo>>;
    /// `len` bytes of `key` from `start`, as a stream (never the whole object
    /// in memory). The caller asks only for bytes [`ObjectStore::info`] reported.
    async fn read(&self, key: &str, start: u64, len: u64) -> Result<ObjectStream>;
}

/// A stored object's size and validators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub len: u64,
    /// The type it was stored with (S3); None for local files.
    pub content_type: Option<String>,
    /// A strong entity tag, quoted as HTTP sends it (`"…"`).
    pub etag: Option<String>,
    pub modified: Option<SystemTime>,
}

/// Object bytes as they are read.
pub type ObjectStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Chunk size of streamed reads.
const READ_CHUNK: usize = 64 * 1024;

/// The configured store: S3 when `s3_endpoint` is set, else files under the
/// data dir.
pub async fn from_config(config: &Config) -> Result<Arc<dyn ObjectStore>> {
    Ok(match &config.s3_endpoint {
        Some(endpoint) if !endpoint.is_empty() => s3_store(config, endpoint).await?,
        _ => Arc::new(LocalStore::new(config.data_dir.join("media"))?),
    })
}

#[cfg(feature = "s3")]
async fn s3_store(config: &Config, endpoint: &str) -> Result<Arc<dyn ObjectStore>> {
    Ok(Arc::new(S3Store::new(config, endpoint).await?))
}

#[cfg(not(feature = "s3"))]
async fn s3_store(_: &Config, _: &str) -> Result<Arc<dyn ObjectStore>> {
    Err(crate::Error::internal("DOUYIN_S3_ENDPOINT is set, but this build has no S3 support (feature `s3`)"))
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

    async fn info(&self, key: &str) -> Result<Option<ObjectInfo>> {
        check_key(key)?;
        let meta = match tokio::fs::metadata(self.root.join(key)).await {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::internal(format!("media file: {e}"))),
        };
        let modified = meta.modified().ok();
        // Files are replaced by rename, never rewritten: size and mtime identify a version.
        let nanos = modified.and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        let etag = format!("\"{:x}-{nanos:x}\"", meta.len());
        Ok(Some(ObjectInfo { len: meta.len(), content_type: None, etag: Some(etag), modified }))
    }

    async fn read(&self, key: &str, start: u64, len: u64) -> Result<ObjectStream> {
        check_key(key)?;
        let mut file = tokio::fs::File::open(self.root.join(key))
            .await
            .map_err(|e| Error::internal(format!("opening media: {e}")))?;
        file.seek(std::io::SeekFrom::Start(start)).await.map_err(|e| Error::internal(format!("seeking media: {e}")))?;
        Ok(tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_CHUNK).boxed())
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

/// One behaviour suite for every implementation.
pub mod suite {
    use super::*;

    async fn read_all(store: &dyn ObjectStore, key: &str, start: u64, len: u64) -> Vec<u8> {
        let mut stream = store.read(key, start, len).await.unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

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
        let info = store.info(&key).await.unwrap().expect("stored object");
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(info.len, bytes.len() as u64);
        assert!(info.etag.as_deref().is_some_and(|t| t.len() > 2 && t.starts_with('"') && t.ends_with('"')));
        assert_eq!(read_all(store, &key, 4, 8).await, b"ftypmp42");
        assert_eq!(read_all(store, &key, 0, info.len).await, bytes);
        assert_eq!(read_all(store, &key, info.len - 5, 5).await, b"bytes");
        store.delete(&key).await.unwrap();
        assert!(store.info(&key).await.unwrap().is_none());
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
