//! S3 and S3-compatible stores (MinIO, Ceph, moto) through `object_store`. Credentials come
//! from the usual `AWS_*` environment (or the instance's role); a PUT, single or multipart,
//! becomes visible only once complete.

use crate::{S3Location, check_key, checked_size, not_small, partial_beside, persist};
use async_trait::async_trait;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pipewright_core::{BlobStore, Error, ErrorKind, Result, SMALL_BLOB_MAX};
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Multipart parts: over S3's 5 MiB minimum, and the most a put holds in memory per part.
const PART_BYTES: usize = 8 << 20;

/// How to reach an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Bucket, prefix, endpoint and region.
    pub location: S3Location,
    /// The size cap of one blob.
    pub max_bytes: u64,
}

/// A [`BlobStore`] in an S3 bucket under a prefix.
#[derive(Clone)]
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    location: S3Location,
    max_bytes: u64,
}

// By hand: the client's own Debug would show its credentials.
impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("location", &self.location)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

fn failed(what: &str, key: &str, e: object_store::Error) -> Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => ErrorKind::Unauthorized,
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("{what} `{key}`: {e}"))
}

impl S3BlobStore {
    /// A store from `opts` and the `AWS_*` environment; the region defaults to `us-east-1`.
    pub fn new(opts: S3Options) -> Result<Self> {
        Self::from_builder(AmazonS3Builder::from_env(), opts)
    }

    /// A store from `opts` and a builder the caller configured (credentials, retries); the
    /// bucket, region and endpoint of `opts` take precedence.
    pub fn from_builder(builder: AmazonS3Builder, opts: S3Options) -> Result<Self> {
        let loc = opts.location;
        let mut b = builder.with_bucket_name(&loc.bucket);
        if let Some(r) = &loc.region {
            b = b.with_region(r);
        } else if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            b = b.with_region("us-east-1");
        }
        let endpoint = loc
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if let Some(e) = &endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        let s3 = b.build().map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("s3://{}: {e}", loc.bucket),
            )
        })?;
        Ok(Self {
            store: Arc::new(s3),
            location: loc,
            max_bytes: opts.max_bytes,
        })
    }

    /// Over any `object_store` backend (GCS, Azure, in memory) with a prefix.
    pub fn from_store(store: Arc<dyn ObjectStore>, location: S3Location, max_bytes: u64) -> Self {
        Self {
            store,
            location,
            max_bytes,
        }
    }

    fn path(&self, key: &str) -> Result<ObjectPath> {
        check_key(key)?;
        Ok(if self.location.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.location.prefix))
        })
    }

    async fn upload(&self, key: &str, path: ObjectPath, file: &Path) -> Result<()> {
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(|e| Error::from(e).with_context("file", file.display().to_string()))?;
        let mut w =
            BufWriter::with_capacity(self.store.clone(), path, PART_BYTES).with_max_concurrency(2);
        let copied = tokio::io::copy(&mut f, &mut w).await;
        let done = match copied {
            Ok(_) => w.shutdown().await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            // An unfinished multipart upload is never visible; abort it to free its parts.
            let _ = w.abort().await;
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("cannot store `{key}`: {e}"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, file: &Path) -> Result<()> {
        let path = self.path(key)?;
        checked_size(key, file, self.max_bytes).await?;
        self.upload(key, path, file).await
    }

    async fn get(&self, key: &str, to: &Path) -> Result<bool> {
        let path = self.path(key)?;
        let got = match self.store.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(failed("cannot read", key, e)),
        };
        let tmp = partial_beside(to)?;
        let mut out = tokio::fs::File::create(tmp.path()).await?;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| failed("cannot read", key, e))?;
            out.write_all(&chunk).await?;
        }
        out.sync_all().await?;
        persist(tmp, to)?;
        Ok(true)
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(failed("cannot look up", key, e)),
        }
    }

    async fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        if bytes.len() > SMALL_BLOB_MAX {
            return Err(not_small(key));
        }
        self.store
            .put(&path, PutPayload::from(bytes.to_vec()))
            .await
            .map_err(|e| failed("cannot store", key, e))?;
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        let got = match self.store.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(failed("cannot read", key, e)),
        };
        if got.meta.size > SMALL_BLOB_MAX as u64 {
            return Err(not_small(key));
        }
        let bytes = got
            .bytes()
            .await
            .map_err(|e| failed("cannot read", key, e))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        // `object_store` lists whole segments: list the directory, filter by the rest.
        let dir = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let base = match (self.location.prefix.is_empty(), dir.is_empty()) {
            (true, _) => dir.to_owned(),
            (false, true) => self.location.prefix.clone(),
            (false, false) => format!("{}/{dir}", self.location.prefix),
        };
        let base = (!base.is_empty()).then(|| ObjectPath::from(base));
        let strip = if self.location.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.location.prefix)
        };
        let mut stream = self.store.list(base.as_ref());
        let mut keys = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| failed("cannot list", prefix, e))?;
            let full = meta.location.as_ref();
            if let Some(key) = full.strip_prefix(&strip)
                && key.starts_with(prefix)
            {
                keys.push(key.to_owned());
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn describe(&self) -> String {
        let mut s = format!("s3://{}", self.location.bucket);
        if !self.location.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.location.prefix);
        }
        if let Some(e) = &self.location.endpoint {
            s.push_str(" at ");
            s.push_str(e);
        }
        s
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        if !self.contains(key).await? {
            return Ok(false);
        }
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(failed("cannot delete", key, e)),
        }
    }

    async fn modified(&self, key: &str) -> Result<Option<std::time::SystemTime>> {
        let path = self.path(key)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.last_modified.into())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("cannot look up", key, e)),
        }
    }
}
