#![doc = include_str!("../README.md")]

mod content;
mod dir;
mod gc;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "testing")]
pub mod testing;

pub use content::{ContentStore, digest_key, sha256_file};
pub use dir::DirBlobStore;
pub use gc::{GcOptions, GcReport, collect_garbage};
#[cfg(feature = "nats")]
pub use nats::{DEFAULT_BUCKET, NatsBlobStore};
/// The `object_store` crate the S3 backend is built on (for [`S3BlobStore::from_builder`]).
#[cfg(feature = "s3")]
pub use object_store;
#[cfg(feature = "s3")]
pub use s3::{S3BlobStore, S3Options};

pub use pipewright_core::{BlobStore, SMALL_BLOB_MAX};
use pipewright_core::{Error, ErrorKind, Result};
use std::path::PathBuf;

/// The default size cap of one blob: 2 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// Where blobs go, parsed from a `--blobs` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobUrl {
    /// `file:///path` or a plain path: a local directory.
    Dir(PathBuf),
    /// `s3://bucket/prefix?endpoint=http://host:port&region=r`: an S3-compatible store;
    /// credentials come from the usual `AWS_*` environment, never from the URL.
    S3(S3Location),
    /// `nats:` or `nats:BUCKET`: the JetStream object store on the queue's own NATS
    /// connection (default bucket `pipewright-blobs`).
    Nats {
        /// The bucket, `None` for the default.
        bucket: Option<String>,
    },
}

/// The parts of an `s3://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// A key prefix inside it (no leading or trailing `/`), possibly empty.
    pub prefix: String,
    /// The endpoint of an S3-compatible server (`?endpoint=`), else `AWS_ENDPOINT_URL` or AWS.
    pub endpoint: Option<String>,
    /// The region (`?region=`), else `AWS_REGION`.
    pub region: Option<String>,
}

impl BlobUrl {
    /// Parses `url`; errors say which part is wrong. Userinfo (`s3://key:secret@…`) is
    /// refused so credentials never sit in a flag or a log line.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "--blobs: {why} (expected a directory, file:///DIR, s3://BUCKET[/PREFIX][?endpoint=URL&region=R] or nats:[BUCKET])"
                ),
            )
        };
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(bad("file:// needs a path"));
            }
            return Ok(Self::Dir(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (loc, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = loc.split_once('/').unwrap_or((loc, ""));
            if bucket.contains('@') {
                return Err(bad(
                    "credentials do not go in the URL: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                ));
            }
            if bucket.is_empty() {
                return Err(bad("s3:// needs a bucket"));
            }
            let mut s3 = S3Location {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                endpoint: None,
                region: None,
            };
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("endpoint", v)) if !v.is_empty() => s3.endpoint = Some(v.to_owned()),
                    Some(("region", v)) if !v.is_empty() => s3.region = Some(v.to_owned()),
                    _ => return Err(bad(&format!("unknown s3 option `{pair}`"))),
                }
            }
            return Ok(Self::S3(s3));
        }
        if let Some(bucket) = url.strip_prefix("nats:") {
            let bucket = bucket.trim_start_matches('/');
            return Ok(Self::Nats {
                bucket: (!bucket.is_empty()).then(|| bucket.to_owned()),
            });
        }
        if url.is_empty() || url.contains("://") {
            return Err(bad(&format!("`{url}` is not a blob store URL")));
        }
        Ok(Self::Dir(PathBuf::from(url)))
    }
}

/// Checks a key: `/`-separated segments of printable ASCII, none empty, `.` or `..`.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && key.bytes().all(|b| b.is_ascii_graphic())
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("`{key}` is not a valid blob key"),
        ))
    }
}

/// The error for a file over the cap; nothing was stored.
pub(crate) fn too_large(key: &str, size: u64, max: u64) -> Error {
    Error::new(
        ErrorKind::InvalidConfig,
        format!("blob `{key}` is {size} bytes, over the store's cap of {max} bytes: not stored"),
    )
}

/// The error for a small blob that is not small.
pub(crate) fn not_small(key: &str) -> Error {
    Error::new(
        ErrorKind::Other,
        format!("blob `{key}` is larger than {SMALL_BLOB_MAX} bytes: not a pointer"),
    )
}

/// The size of the file at `file`, refused when over `max`.
pub(crate) async fn checked_size(key: &str, file: &std::path::Path, max: u64) -> Result<u64> {
    let size = tokio::fs::metadata(file)
        .await
        .map_err(|e| Error::from(e).with_context("file", file.display().to_string()))?
        .len();
    if size > max {
        return Err(too_large(key, size, max));
    }
    Ok(size)
}

/// A temporary file beside `to`, renamed over it once complete: a reader of `to` never sees
/// half a blob.
pub(crate) fn partial_beside(to: &std::path::Path) -> Result<tempfile::NamedTempFile> {
    let dir = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    Ok(tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)?)
}

/// Renames the complete temporary file over `to`.
pub(crate) fn persist(tmp: tempfile::NamedTempFile, to: &std::path::Path) -> Result<()> {
    tmp.persist(to)
        .map_err(|e| Error::from(e.error).with_context("file", to.display().to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_parse_into_their_backends() {
        assert_eq!(
            BlobUrl::parse("/var/blobs").unwrap(),
            BlobUrl::Dir("/var/blobs".into())
        );
        assert_eq!(
            BlobUrl::parse("file:///var/blobs").unwrap(),
            BlobUrl::Dir("/var/blobs".into())
        );
        assert_eq!(
            BlobUrl::parse("s3://ci/pw/blobs/?endpoint=http://127.0.0.1:9000&region=eu").unwrap(),
            BlobUrl::S3(S3Location {
                bucket: "ci".into(),
                prefix: "pw/blobs".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu".into()),
            })
        );
        assert_eq!(
            BlobUrl::parse("nats:").unwrap(),
            BlobUrl::Nats { bucket: None }
        );
        assert_eq!(
            BlobUrl::parse("nats:ci-blobs").unwrap(),
            BlobUrl::Nats {
                bucket: Some("ci-blobs".into())
            }
        );
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_credentials() {
        let e = BlobUrl::parse("s3://AKIA:hunter2@bucket/x").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(BlobUrl::parse("s3://b?colour=red").is_err());
        assert!(BlobUrl::parse("gs://b").is_err());
        assert!(BlobUrl::parse("").is_err());
    }

    #[test]
    fn keys_are_checked() {
        for ok in ["a", "caches/p/j/x.tar", "sha256/ab/abcd"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a//b", "a/../b", "a b", "a/./b", "a/"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
