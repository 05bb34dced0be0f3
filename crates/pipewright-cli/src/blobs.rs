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

/// `pipewright blobs gc`: removes content no cache or artifact pointer names.
#[derive(Debug, Args)]
pub struct GcCmd {
    #[command(flatten)]
    blobs: BlobArgs,
    /// The NATS server whose object store `--blobs nats:` names (the queue's URL).
    #[arg(long, value_name = "URL", env = "PIPEWRIGHT_QUEUE")]
    queue: Option<String>,
    #[command(flatten)]
    nats: crate::server::NatsArgs,
    /// Content written more recently than this is kept even when nothing names it yet (a
    /// put stores its content just before its pointer).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = crate::parse_grace)]
    grace: std::time::Duration,
    /// List what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The blob store subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BlobsCmd {
    /// Remove content (`sha256/…`) that no cache or artifact pointer names, once older than
    /// `--grace`. Pointers are never removed, so every artifact version a build can still ask
    /// for stays. Run it from cron on one machine; the server and workers may keep running.
    ///
    /// Example: pipewright blobs gc --blobs s3://ci-blobs/pipewright --dry-run
    Gc(GcCmd),
}

async fn nats_client(url: &str, n: &crate::server::NatsArgs) -> Result<async_nats::Client, String> {
    let opts = n.options(url, false, std::time::Duration::from_secs(30));
    let mut conn = async_nats::ConnectOptions::new()
        .name("pipewright-blobs")
        .connection_timeout(std::time::Duration::from_secs(10));
    if let Some(t) = opts.token {
        conn = conn.token(t);
    }
    if let Some((u, p)) = opts.user {
        conn = conn.user_and_password(u, p);
    }
    if let Some(creds) = &opts.credentials {
        conn = conn
            .credentials_file(creds)
            .await
            .map_err(|e| format!("the NATS credentials file {}: {e}", creds.display()))?;
    }
    conn.connect(url)
        .await
        .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))
}

async fn gc(c: &GcCmd) -> Result<bool, String> {
    let nats = match &c.queue {
        Some(u) if u.starts_with("nats://") || u.starts_with("tls://") => {
            Some(nats_client(u, &c.nats).await?)
        }
        _ => None,
    };
    // A mistyped directory would look like an empty store.
    let dir = match (&c.blobs.blobs, &nats) {
        (Some(u), _) => match BlobUrl::parse(u) {
            Ok(BlobUrl::Dir(d)) => Some(d),
            _ => None,
        },
        (None, None) => Some(crate::run::default_cache_root().join("blobs")),
        (None, Some(_)) => None,
    };
    if let Some(d) = dir.filter(|d| !d.is_dir()) {
        return Err(format!(
            "there is no blob store at {}: name the directory the server and workers use with --blobs",
            d.display()
        ));
    }
    let store = open(&c.blobs, nats).await?;
    let report = pipewright_blobs::collect_garbage(
        store.as_ref(),
        pipewright_blobs::GcOptions {
            grace: c.grace,
            dry_run: c.dry_run,
        },
    )
    .await
    .map_err(|e| format!("{}: {e}", store.describe()))?;
    let (verb, done) = if c.dry_run {
        ("would remove", "to remove")
    } else {
        ("removed", "removed")
    };
    for key in &report.removed {
        println!("{verb} {key}");
    }
    for (pointer, key) in &report.dangling {
        eprintln!("warning: `{pointer}` names {key}, which is not stored");
    }
    let n = |count: usize, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    println!(
        "{}: {}, {} kept, {} kept for --grace, {} {done}",
        store.describe(),
        n(report.pointers, "pointer", "pointers"),
        n(report.referenced, "named blob", "named blobs"),
        n(report.young, "unnamed blob", "unnamed blobs"),
        report.removed.len()
    );
    Ok(report.dangling.is_empty())
}

/// Runs a `blobs` subcommand: exit 0, 1 when a pointer names missing content, 2 on errors.
pub fn blobs_cmd(c: BlobsCmd) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let BlobsCmd::Gc(gc_cmd) = c;
    match runtime.block_on(gc(&gc_cmd)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
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
