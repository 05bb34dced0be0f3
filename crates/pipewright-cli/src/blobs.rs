//! `--blobs URL`: where artifacts and task caches go, shared by the server and its workers.
//! Each process takes the URL (and the store's credentials) from its own flags and
//! environment; the server never hands either to a worker.

use clap::Args;
use pipewright_blobs::{BlobStore, BlobUrl, DirBlobStore, NatsBlobStore, S3BlobStore, S3Options};
use std::sync::Arc;

/// The blob store flags of `pipewright server` and `pipewright worker`.
#[derive(Debug, Args)]
pub struct BlobArgs {
    /// Where artifacts and task caches are kept: a directory (`/srv/blobs`, `file:///srv/blobs`),
    /// `s3://BUCKET[/PREFIX][?endpoint=URL&region=R]` (credentials from the AWS_* environment),
    /// or `nats:[BUCKET]` (the JetStream object store of --queue's NATS). Default: `nats:` with
    /// a NATS queue, else $XDG_CACHE_HOME/pipewright/cache/blobs.
    #[arg(long, env = "PIPEWRIGHT_BLOBS", value_name = "URL")]
    blobs: Option<String>,
    /// The largest blob (an artifact's or a cache's tarball) the store takes: `512M`, `2G`, bytes.
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = parse_size)]
    blob_max_size: u64,
}

impl BlobArgs {
    /// Whether artifacts go to the blob store: when one is named or the queue is NATS.
    /// Otherwise an `artifact` resource keeps its own `dir`, as `pipewright run` does.
    pub(crate) fn artifacts_shared(&self, nats: bool) -> bool {
        self.blobs.is_some() || nats
    }
}

/// `512M`, `2G`, `100K` or bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}` is not a size (like 512M, 2G or a number of bytes)"))
}

/// Opens the store the flags name; `nats` is the queue's connection, when it is NATS.
pub(crate) async fn open(
    args: &BlobArgs,
    nats: Option<async_nats::Client>,
) -> Result<Arc<dyn BlobStore>, String> {
    let url = match (&args.blobs, &nats) {
        (Some(u), _) => BlobUrl::parse(u).map_err(|e| e.to_string())?,
        (None, Some(_)) => BlobUrl::Nats { bucket: None },
        (None, None) => BlobUrl::Dir(crate::run::default_cache_root().join("blobs")),
    };
    let max = args.blob_max_size;
    Ok(match url {
        BlobUrl::Dir(dir) => {
            let dir = std::path::absolute(&dir).map_err(|e| format!("--blobs: {e}"))?;
            Arc::new(DirBlobStore::new(dir).with_max_bytes(max))
        }
        BlobUrl::S3(location) => Arc::new(
            S3BlobStore::new(S3Options {
                location,
                max_bytes: max,
            })
            .map_err(|e| format!("--blobs: {e}"))?,
        ),
        BlobUrl::Nats { bucket } => {
            let client = nats.ok_or(
                "--blobs nats: needs a NATS queue (--queue nats://…): it uses that connection",
            )?;
            let bucket = bucket
                .as_deref()
                .unwrap_or(pipewright_blobs::DEFAULT_BUCKET);
            Arc::new(
                NatsBlobStore::open(client, bucket, max)
                    .await
                    .map_err(|e| format!("--blobs: {e}"))?,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::parse_size;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("100K").unwrap(), 100 << 10);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "0", "G", "-1M", "1T", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
