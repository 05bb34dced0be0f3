//! The [`SecretSource`] conformance suite.
//!
//! The caller stores one secret where the source can read it and describes it in a
//! [`SecretFixture`]. The rules:
//!
//! - **a present secret is returned**: `get` of the fixture's ref returns a map whose entry for
//!   its key holds the stored value.
//! - **missing key is NotFound**: `get` of a ref to nothing (a path that does not exist, or
//!   for a source whose refs are just keys, like `env`, a key that is not set) fails with
//!   [`ErrorKind::NotFound`].
//! - **values never in Debug**: neither the `Debug` of the returned map, nor of the source, nor
//!   of the error for the missing ref shows the value or any of the fixture's other sensitive
//!   strings (a token the source was configured with).

use pipewright_core::{Ctx, ErrorKind, SecretRef, SecretSource};
use std::fmt::Debug;

/// One stored secret, a ref to nothing, and strings that must never be printed.
#[derive(Debug, Clone)]
pub struct SecretFixture {
    /// Where the stored secret is.
    pub present: SecretRef,
    /// Its value at `present.key`.
    pub value: String,
    /// A ref the source has nothing for.
    pub missing: SecretRef,
    /// Other strings that must not appear in any `Debug` output (tokens, passwords of the
    /// source's own configuration).
    pub sensitive: Vec<String>,
}

impl SecretFixture {
    /// A fixture for the secret `value` at `path`/`key`, with `missing_path`/`key` as the ref
    /// to nothing.
    pub fn new(path: &str, key: &str, value: &str, missing_path: &str) -> Self {
        Self {
            present: SecretRef {
                path: path.to_owned(),
                key: key.to_owned(),
            },
            value: value.to_owned(),
            missing: SecretRef {
                path: missing_path.to_owned(),
                key: key.to_owned(),
            },
            sensitive: Vec::new(),
        }
    }

    /// Replaces the ref to nothing.
    pub fn with_missing(mut self, missing: SecretRef) -> Self {
        self.missing = missing;
        self
    }

    /// Adds a string that must never appear in `Debug` output.
    pub fn with_sensitive(mut self, s: impl Into<String>) -> Self {
        self.sensitive.push(s.into());
        self
    }
}

fn broke(rule: &str, detail: impl std::fmt::Display) -> ! {
    panic!("secret rule `{rule}` broke: {detail}")
}

const PRESENT: &str = "a present secret is returned";
const MISSING: &str = "missing key is NotFound";
const DEBUG: &str = "values never in Debug";

/// Runs every secret rule against `source`.
pub async fn check_secret_source<S>(source: &S, fixture: &SecretFixture)
where
    S: SecretSource + Debug + ?Sized,
{
    let ctx = Ctx::new();
    let secrets: Vec<&str> = std::iter::once(fixture.value.as_str())
        .chain(fixture.sensitive.iter().map(String::as_str))
        .filter(|s| !s.is_empty())
        .collect();
    let leaks = |what: &str, text: &str| {
        if let Some(s) = secrets.iter().find(|s| text.contains(**s)) {
            let shown = if *s == fixture.value {
                "the secret's value"
            } else {
                "a sensitive string"
            };
            broke(DEBUG, format!("{what} shows {shown} ({} bytes)", s.len()));
        }
    };

    let map = match source.get(&ctx, &fixture.present).await {
        Ok(m) => m,
        Err(e) => broke(
            PRESENT,
            format!("get of {:?} failed ({}): {e}", fixture.present, e.kind()),
        ),
    };
    match map.get(&fixture.present.key) {
        Some(v) if v.expose() == fixture.value => {}
        Some(_) => broke(
            PRESENT,
            format!(
                "the value at key `{}` is not the stored one",
                fixture.present.key
            ),
        ),
        None => broke(
            PRESENT,
            format!(
                "no key `{}` in the map; keys: {:?}",
                fixture.present.key,
                map.keys().collect::<Vec<_>>()
            ),
        ),
    }
    leaks("the returned map's Debug", &format!("{map:?}"));
    leaks("the source's Debug", &format!("{source:?}"));

    match source.get(&ctx, &fixture.missing).await {
        Ok(m) => broke(
            MISSING,
            format!(
                "get of {:?} returned keys {:?}",
                fixture.missing,
                m.keys().collect::<Vec<_>>()
            ),
        ),
        Err(e) => {
            leaks("the missing ref's error", &format!("{e} {e:?}"));
            if e.kind() != ErrorKind::NotFound {
                broke(
                    MISSING,
                    format!(
                        "get of {:?} failed as {}, not not_found: {e}",
                        fixture.missing,
                        e.kind()
                    ),
                );
            }
        }
    }
}
