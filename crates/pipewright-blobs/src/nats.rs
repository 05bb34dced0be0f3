//! The NATS JetStream object store: blobs on the NATS the queue already uses, stored as
//! 128 KiB chunks in the stream `OBJ_<bucket>` (file storage). An object's chunks are written
//! before its metadata, so a reader sees the old object or the new one.

use crate::{check_key, checked_size, not_small, partial_beside, persist};
use async_nats::jetstream::object_store::{Config, GetErrorKind, InfoErrorKind, ObjectStore};
use async_trait::async_trait;
use futures_util::StreamExt;
use pipewright_core::{BlobStore, Error, ErrorKind, Result, SMALL_BLOB_MAX};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a read waits for a chunk before it checks whether the object was replaced.
const POLL: Duration = Duration::from_millis(500);
/// How long a read may wait for a chunk in all before it fails.
const IDLE_MAX: Duration = Duration::from_secs(60);
/// Reads restarted because the object was replaced under them, at most.
const RESTARTS: usize = 5;

/// How a read ended.
enum Read {
    Done,
    /// Replaced (or deleted) while being read: its old chunks are purged, read it again.
    Replaced,
}

/// The bucket used when the URL names none.
pub const DEFAULT_BUCKET: &str = "pipewright-blobs";

/// A [`BlobStore`] in a JetStream object store bucket.
#[derive(Clone)]
pub struct NatsBlobStore {
    bucket: String,
    store: ObjectStore,
    max_bytes: u64,
}

impl std::fmt::Debug for NatsBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBlobStore")
            .field("bucket", &self.bucket)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

fn unavailable(what: &str, key: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unavailable, format!("{what} `{key}`: {e}"))
}

impl NatsBlobStore {
    /// The bucket `bucket` on `client`'s NATS, created (file storage, one replica) when
    /// missing; each blob capped at `max_bytes`.
    pub async fn open(client: async_nats::Client, bucket: &str, max_bytes: u64) -> Result<Self> {
        let js = async_nats::jetstream::new(client);
        let store = match js.get_object_store(bucket).await {
            Ok(s) => s,
            Err(_) => js
                .create_object_store(Config {
                    bucket: bucket.to_owned(),
                    description: Some("Pipewright artifacts and caches".into()),
                    max_bytes: -1,
                    storage: async_nats::jetstream::stream::StorageType::File,
                    num_replicas: 1,
                    ..Config::default()
                })
                .await
                .map_err(|e| unavailable("cannot open the object store", bucket, e))?,
        };
        Ok(Self {
            bucket: bucket.to_owned(),
            store,
            max_bytes,
        })
    }
}

fn replaced_too_often(key: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("cannot read `{key}`: replaced {RESTARTS} times while being read"),
    )
}

impl NatsBlobStore {
    /// Copies the object under `key` to `out`; `None` when there is none. The object checks
    /// its SHA-256 at the end, so a short or damaged read is an error. A reader that started
    /// just before a replacement waits for chunks that were purged: it notices the new
    /// object and says so instead of waiting for ever.
    async fn read(
        &self,
        key: &str,
        out: &mut (impl AsyncWrite + Unpin + Send),
        limit: Option<usize>,
    ) -> Result<Option<Read>> {
        let mut object = match self.store.get(key).await {
            Ok(o) => o,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable("cannot read", key, e)),
        };
        if limit.is_some_and(|l| object.info().size > l) {
            return Err(not_small(key));
        }
        let nuid = object.info().nuid.clone();
        let mut buf = vec![0u8; 128 * 1024];
        let mut idle = Duration::ZERO;
        loop {
            match tokio::time::timeout(POLL, object.read(&mut buf)).await {
                Ok(Ok(0)) => return Ok(Some(Read::Done)),
                Ok(Ok(n)) => {
                    out.write_all(&buf[..n]).await?;
                    idle = Duration::ZERO;
                }
                Ok(Err(e)) => return Err(unavailable("cannot read", key, e)),
                Err(_) => {
                    idle += POLL;
                    match self.store.info(key).await {
                        Ok(now) if now.nuid == nuid => {}
                        Err(e) if e.kind() != InfoErrorKind::NotFound => {}
                        _ => return Ok(Some(Read::Replaced)),
                    }
                    if idle >= IDLE_MAX {
                        return Err(unavailable("cannot read", key, "no data for a minute"));
                    }
                }
            }
        }
    }
}

#[async_trait]
impl BlobStore for NatsBlobStore {
    async fn put(&self, key: &str, file: &Path) -> Result<()> {
        check_key(key)?;
        checked_size(key, file, self.max_bytes).await?;
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(|e| Error::from(e).with_context("file", file.display().to_string()))?;
        self.store
            .put(key, &mut f)
            .await
            .map_err(|e| unavailable("cannot store", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str, to: &Path) -> Result<bool> {
        check_key(key)?;
        for _ in 0..RESTARTS {
            let tmp = partial_beside(to)?;
            let mut out = tokio::fs::File::create(tmp.path()).await?;
            match self.read(key, &mut out, None).await? {
                None => return Ok(false),
                Some(Read::Replaced) => continue,
                Some(Read::Done) => {
                    out.sync_all().await?;
                    persist(tmp, to)?;
                    return Ok(true);
                }
            }
        }
        Err(replaced_too_often(key))
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        match self.store.info(key).await {
            // A deleted object keeps its info, marked deleted.
            Ok(info) => Ok(!info.deleted),
            Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(false),
            Err(e) => Err(unavailable("cannot look up", key, e)),
        }
    }

    async fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        check_key(key)?;
        if bytes.len() > SMALL_BLOB_MAX {
            return Err(not_small(key));
        }
        let mut reader = bytes;
        self.store
            .put(key, &mut reader)
            .await
            .map_err(|e| unavailable("cannot store", key, e))?;
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        for _ in 0..RESTARTS {
            let mut bytes = Vec::new();
            match self.read(key, &mut bytes, Some(SMALL_BLOB_MAX)).await? {
                None => return Ok(None),
                Some(Read::Replaced) => continue,
                Some(Read::Done) => return Ok(Some(bytes)),
            }
        }
        Err(replaced_too_often(key))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut list = self
            .store
            .list()
            .await
            .map_err(|e| unavailable("cannot list", prefix, e))?;
        let mut keys = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| unavailable("cannot list", prefix, e))?;
            if info.name.starts_with(prefix) {
                keys.push(info.name);
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn describe(&self) -> String {
        format!("the NATS object store `{}`", self.bucket)
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        if !self.contains(key).await? {
            return Ok(false);
        }
        self.store
            .delete(key)
            .await
            .map_err(|e| unavailable("cannot delete", key, e))?;
        Ok(true)
    }

    async fn modified(&self, key: &str) -> Result<Option<std::time::SystemTime>> {
        check_key(key)?;
        match self.store.info(key).await {
            // A blob without a time is treated as new, so it is never collected by mistake.
            Ok(info) if info.deleted => Ok(None),
            Ok(info) => Ok(Some(
                info.modified
                    .map(Into::into)
                    .unwrap_or_else(std::time::SystemTime::now),
            )),
            Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable("cannot look up", key, e)),
        }
    }
}
