//! Garbage collection: content (`sha256/…`) that no pointer names is removed once it is older
//! than a grace period. Pointers (caches, artifact versions) are never removed, so everything a
//! build can still ask for stays.

use crate::content::digest_key;
use pipewright_core::{BlobStore, Result};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

/// What [`collect_garbage`] does.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Content written more recently than this is kept even when nothing names it yet: a put
    /// stores its content before its pointer.
    pub grace: Duration,
    /// Report what would go, remove nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(3600),
            dry_run: false,
        }
    }
}

/// What a collection found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Pointers read.
    pub pointers: usize,
    /// Content blobs some pointer names (kept).
    pub referenced: usize,
    /// Unnamed content younger than the grace period (kept).
    pub young: usize,
    /// Unnamed content removed (or, in a dry run, that would be).
    pub removed: Vec<String>,
    /// Pointers naming content that is not stored: reported, never changed.
    pub dangling: Vec<(String, String)>,
    /// Keys outside `sha256/` that do not hold a digest: left alone (and the content they
    /// might name is not known).
    pub not_pointers: Vec<String>,
}

const CONTENT: &str = "sha256/";

/// Removes the content of `store` that no pointer names and that is older than
/// `opts.grace`. Pointers are read before content is listed, and re-read before each removal
/// batch ends, so content a put names while the collection runs is kept.
pub async fn collect_garbage(store: &dyn BlobStore, opts: GcOptions) -> Result<GcReport> {
    let mut report = GcReport::default();
    let keys = store.list("").await?;
    let (content, pointers): (Vec<String>, Vec<String>) =
        keys.into_iter().partition(|k| k.starts_with(CONTENT));
    let mut named = read_pointers(store, &pointers, &mut report).await?;
    let stored: BTreeSet<&String> = content.iter().collect();
    report.pointers = pointers.len() - report.not_pointers.len();
    report.referenced = content.iter().filter(|k| named.contains(*k)).count();
    let now = SystemTime::now();
    let mut candidates = Vec::new();
    for key in content.iter().filter(|k| !named.contains(*k)) {
        let Some(at) = store.modified(key).await? else {
            continue; // removed meanwhile
        };
        if now.duration_since(at).unwrap_or_default() < opts.grace {
            report.young += 1;
        } else {
            candidates.push(key.clone());
        }
    }
    // A pointer written since the first read may name a candidate: read them again.
    if !candidates.is_empty() {
        let again = store.list("").await?;
        let fresh: Vec<String> = again
            .into_iter()
            .filter(|k| !k.starts_with(CONTENT))
            .collect();
        let mut scratch = GcReport::default();
        named.extend(read_pointers(store, &fresh, &mut scratch).await?);
    }
    for key in candidates {
        if named.contains(&key) {
            report.referenced += 1;
            continue;
        }
        if !opts.dry_run {
            match store.delete(&key).await {
                Ok(_) => tracing::info!(key, store = store.describe(), "removed unnamed blob"),
                Err(e) => return Err(e.with_context("blob", key)),
            }
        }
        report.removed.push(key);
    }
    report.dangling.retain(|(_, k)| !stored.contains(k));
    Ok(report)
}

/// The content keys `pointers` name; pointers to missing content go to `report.dangling`.
async fn read_pointers(
    store: &dyn BlobStore,
    pointers: &[String],
    report: &mut GcReport,
) -> Result<BTreeSet<String>> {
    let mut named = BTreeSet::new();
    for p in pointers {
        // Any failure stops the collection: content whose pointer could not be read must stay.
        let bytes = match store.get_bytes(p).await {
            Ok(Some(b)) => b,
            Ok(None) => continue, // replaced or removed meanwhile
            Err(e) => {
                return Err(e.with_context("pointer", p.clone()));
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        match digest_key(text.trim()) {
            Ok(key) => {
                report.dangling.push((p.clone(), key.clone()));
                named.insert(key);
            }
            Err(_) => report.not_pointers.push(p.clone()),
        }
    }
    Ok(named)
}
