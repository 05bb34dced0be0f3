//! The [`Resource`] conformance suite.
//!
//! The suite drives a resource through a short history that a [`ResourceFixture`] creates
//! outside it (commits in a repository, files in a directory, ticks of a clock) and checks:
//!
//! - **first check returns the newest version only**: after two versions exist, `check(None)`
//!   returns exactly one version, and a `get` of it holds the second.
//! - **check from a version returns newer ones oldest first**: `check(Some(newest))` returns
//!   nothing; after two more versions, `check(Some(old))` returns both, oldest first, and never
//!   `old` itself. A resource without history ([`ResourceFixture::keeps_history`] is `false`:
//!   it can only see the present, like `fs` or `cron`) returns the newest one alone.
//! - **get of an exact version** (checked between the two checks above): once newer versions
//!   exist, `get` of an older one fetches that version, not the newest (a resource without
//!   history is only asked for its newest, as part of the other rules).
//! - **put produces a version**: when [`ResourceCapabilities::put`] is set, a `put` of content
//!   the fixture prepared returns at least one version; the last one can be fetched, and a
//!   check finds it. When it is not set, `put` fails with [`ErrorKind::Unsupported`].
//!
//! Versions are told apart by a *marker*: a string the fixture puts in each version's content
//! and reads back from a directory a `get` filled.
//!
//! [`ResourceCapabilities::put`]: pipewright_core::ResourceCapabilities::put

use crate::log::RecordingSink;
use async_trait::async_trait;
use pipewright_core::{Ctx, ErrorKind, Params, Resource, Stream, Version};
use std::path::Path;
use std::sync::Arc;

/// What a fixture method returns.
pub type FixtureResult<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Creates versions of one resource from the outside, and recognises them.
#[async_trait]
pub trait ResourceFixture: Send + Sync {
    /// Whether `check` can list every version since a given one (git, an artifact store), as
    /// opposed to only the present one (a directory, a clock). Defaults to `true`.
    fn keeps_history(&self) -> bool {
        true
    }

    /// Makes a new version appear (a commit, a changed file, the next tick) and returns its
    /// marker. Markers of different versions differ.
    async fn new_version(&mut self) -> FixtureResult<String>;

    /// The marker of the version a `get` wrote into `dir`.
    fn marker(&self, dir: &Path) -> FixtureResult<String>;

    /// Fills `src`, the put's workspace (an existing, empty directory), with a new version's
    /// content; returns the put's params and the version's marker. Only called when the
    /// resource can put; the default refuses.
    async fn prepare_put(&mut self, src: &Path) -> FixtureResult<(Params, String)> {
        let _ = src;
        Err("this fixture does not prepare puts".into())
    }
}

fn broke(rule: &str, detail: impl std::fmt::Display) -> ! {
    panic!("resource rule `{rule}` broke: {detail}")
}

const FIRST: &str = "first check returns the newest version only";
const NEWER: &str = "check from a version returns newer ones oldest first";
const EXACT: &str = "get of an exact version";
const PUT: &str = "put produces a version";

struct Driver<'a> {
    resource: &'a dyn Resource,
    fixture: &'a mut dyn ResourceFixture,
    log: Arc<RecordingSink>,
    ctx: Ctx,
}

impl Driver<'_> {
    async fn new_version(&mut self, rule: &str) -> String {
        match self.fixture.new_version().await {
            Ok(m) => m,
            Err(e) => broke(rule, format!("the fixture cannot make a version: {e}")),
        }
    }

    async fn check(&self, rule: &str, last: Option<&Version>) -> Vec<Version> {
        match self.resource.check(&self.ctx, last).await {
            Ok(v) => v,
            Err(e) => broke(
                rule,
                format!(
                    "check from {} failed ({}): {e}; log: {:?}",
                    last.map_or("nothing".to_owned(), Version::to_string),
                    e.kind(),
                    self.log.text(Stream::Stderr)
                ),
            ),
        }
    }

    /// Gets `version` into a fresh empty directory and returns the marker found there.
    async fn marker_of(&self, rule: &str, version: &Version) -> String {
        let dir = match tempfile::Builder::new().prefix("pipewright-get-").tempdir() {
            Ok(d) => d,
            Err(e) => broke(rule, format!("cannot make a directory: {e}")),
        };
        if let Err(e) = self.resource.get(&self.ctx, version, dir.path()).await {
            broke(rule, format!("get of {version} failed ({}): {e}", e.kind()));
        }
        match self.fixture.marker(dir.path()) {
            Ok(m) => m,
            Err(e) => broke(
                rule,
                format!("get of {version} wrote no recognisable content: {e}"),
            ),
        }
    }

    async fn markers(&self, rule: &str, versions: &[Version]) -> Vec<String> {
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            out.push(self.marker_of(rule, v).await);
        }
        out
    }
}

/// Runs every resource rule against `resource`, whose versions `fixture` makes. The rules share
/// one history, so they run together, in the order listed in the [module docs](self).
pub async fn check_resource(resource: &dyn Resource, fixture: &mut dyn ResourceFixture) {
    let log = RecordingSink::new();
    let ctx = Ctx::new().with_log(log.clone());
    let mut d = Driver {
        resource,
        fixture,
        log,
        ctx,
    };
    let history = d.fixture.keeps_history();

    // First check: only the newest.
    let _m1 = d.new_version(FIRST).await;
    let m2 = d.new_version(FIRST).await;
    let first = d.check(FIRST, None).await;
    if first.len() != 1 {
        broke(
            FIRST,
            format!(
                "expected one version, got {}: {}",
                first.len(),
                list(&first)
            ),
        );
    }
    let v2 = first[0].clone();
    let got = d.marker_of(FIRST, &v2).await;
    if got != m2 {
        broke(
            FIRST,
            format!("the version returned, {v2}, holds {got:?}, not the newest {m2:?}"),
        );
    }

    // Check from a version.
    let none = d.check(NEWER, Some(&v2)).await;
    if !none.is_empty() {
        broke(
            NEWER,
            format!(
                "nothing is newer than {v2}, yet check returned {}",
                list(&none)
            ),
        );
    }
    let m3 = d.new_version(NEWER).await;
    let m4 = d.new_version(NEWER).await;

    // Get of an exact version: an older one, while newer ones exist.
    if history {
        let got = d.marker_of(EXACT, &v2).await;
        if got != m2 {
            broke(
                EXACT,
                format!("get of {v2} holds {got:?}, expected {m2:?} (the newest is {m4:?})"),
            );
        }
    }

    let newer = d.check(NEWER, Some(&v2)).await;
    if newer.contains(&v2) {
        broke(
            NEWER,
            format!("check from {v2} returned {v2} itself: {}", list(&newer)),
        );
    }
    let markers = d.markers(NEWER, &newer).await;
    if history && markers != [m3.clone(), m4.clone()] {
        broke(
            NEWER,
            format!(
                "expected the versions holding {m3:?} then {m4:?}, got {} holding {markers:?}",
                list(&newer)
            ),
        );
    }
    if !history && markers != [m4.clone()] {
        broke(
            NEWER,
            format!(
                "expected the newest version, holding {m4:?}; got {} holding {markers:?}",
                list(&newer)
            ),
        );
    }
    let newest = newer.last().cloned().unwrap_or_else(|| v2.clone());

    put_rule(&mut d, &newest, history).await;
}

async fn put_rule(d: &mut Driver<'_>, newest: &Version, history: bool) {
    let src = match tempfile::Builder::new().prefix("pipewright-put-").tempdir() {
        Ok(s) => s,
        Err(e) => broke(PUT, format!("cannot make a directory: {e}")),
    };
    if !d.resource.capabilities().put {
        match d.resource.put(&d.ctx, src.path(), &Params::new()).await {
            Err(e) if e.kind() == ErrorKind::Unsupported => return,
            Err(e) => broke(
                PUT,
                format!(
                    "a resource that cannot put must say Unsupported, got {}: {e}",
                    e.kind()
                ),
            ),
            Ok(v) => broke(
                PUT,
                format!("a resource that cannot put returned {}", list(&v)),
            ),
        }
    }
    let (params, marker) = match d.fixture.prepare_put(src.path()).await {
        Ok(p) => p,
        Err(e) => broke(PUT, format!("the fixture cannot prepare a put: {e}")),
    };
    let produced = match d.resource.put(&d.ctx, src.path(), &params).await {
        Ok(v) => v,
        Err(e) => broke(PUT, format!("put failed ({}): {e}", e.kind())),
    };
    let Some(last) = produced.last() else {
        broke(PUT, "put returned no version")
    };
    let got = d.marker_of(PUT, last).await;
    if got != marker {
        broke(
            PUT,
            format!("the version put returned, {last}, holds {got:?}, not {marker:?}"),
        );
    }
    let seen = d.check(PUT, Some(newest)).await;
    let found = if history {
        seen.contains(last)
    } else {
        seen.last() == Some(last)
    };
    if !found {
        broke(
            PUT,
            format!(
                "a check from {newest} does not find the put's {last}: {}",
                list(&seen)
            ),
        );
    }
}

fn list(versions: &[Version]) -> String {
    let parts: Vec<String> = versions.iter().map(Version::to_string).collect();
    format!("[{}]", parts.join(", "))
}
