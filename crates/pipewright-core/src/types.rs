//! Versions, params and metadata: the data that flows between resources, steps and builds.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One version of a resource: an ordered map of string fields, e.g. `{"ref": "abc123"}`.
///
/// Keys are kept sorted so two equal versions always serialize, hash and compare the same way,
/// which is what deduplication in a version history relies on.
///
/// ```
/// use pipewright_core::Version;
/// let v = Version::from_pairs([("ref", "abc123"), ("branch", "main")]);
/// assert_eq!(v.get("ref"), Some("abc123"));
/// assert_eq!(v.to_string(), "branch=main,ref=abc123");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub BTreeMap<String, String>);

impl Version {
    /// An empty version.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a version from key/value pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The value of one field.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Sets one field, returning the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.into(), value.into())
    }

    /// Iterates the fields in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when the version has no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields as environment variables `<prefix><key>` (keys sanitized by [`env_key`]).
    pub fn to_env(&self, prefix: &str) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (format!("{prefix}{}", env_key(k)), v.to_owned()))
            .collect()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// Parameters given to a plug-in: string keys to JSON values (strings in most pipelines, lists and
/// maps where the HCL gives them).
///
/// ```
/// use pipewright_core::Params;
/// let mut p = Params::new();
/// p.insert("url", "https://example.com/repo.git");
/// p.insert("paths", serde_json::json!(["src", "Cargo.toml"]));
/// let env = p.to_env("param_");
/// assert_eq!(env["param_url"], "https://example.com/repo.git");
/// assert_eq!(env["param_paths_1"], "Cargo.toml");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Params(pub BTreeMap<String, serde_json::Value>);

impl Params {
    /// Empty params.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one parameter.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) {
        self.0.insert(key.into(), value.into());
    }

    /// A parameter's raw value.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }

    /// A parameter as a string: strings as they are, numbers and booleans printed, `None` for
    /// missing, null, lists and maps.
    pub fn get_str(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Flattens the params into environment variables `<prefix><key>`; nested lists and maps
    /// become `<prefix><key>_<index|subkey>` (see [`flatten_json`]).
    pub fn to_env(&self, prefix: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            flatten_json(&format!("{prefix}{}", env_key(k)), v, &mut out);
        }
        out
    }
}

/// Flattens a JSON value into `name=value` environment pairs: scalars under `name`, arrays as
/// `name_0`, `name_1`…, objects as `name_<key>`. Null becomes the empty string.
pub fn flatten_json(name: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Null => {
            out.insert(name.to_owned(), String::new());
        }
        serde_json::Value::Bool(b) => {
            out.insert(name.to_owned(), b.to_string());
        }
        serde_json::Value::Number(n) => {
            out.insert(name.to_owned(), n.to_string());
        }
        serde_json::Value::String(s) => {
            out.insert(name.to_owned(), s.clone());
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten_json(&format!("{name}_{i}"), item, out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten_json(&format!("{name}_{}", env_key(k)), v, out);
            }
        }
    }
}

/// Makes a string safe as (part of) an environment variable name: ASCII letters, digits and `_`
/// are kept, everything else becomes `_`.
///
/// ```
/// assert_eq!(pipewright_core::env_key("run-tests.v2"), "run_tests_v2");
/// ```
pub fn env_key(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One field of [`Metadata`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataField {
    /// Field name, e.g. `author`.
    pub name: String,
    /// Field value.
    pub value: String,
}

/// Facts about a fetched version that are shown to people but are not part of its identity
/// (author, commit message, date…). Kept in the order the resource reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata(pub Vec<MetadataField>);

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push(MetadataField {
            name: name.into(),
            value: value.into(),
        });
    }

    /// The first field with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_env_is_sanitized() {
        let v = Version::from_pairs([("ref", "abc"), ("commit-date", "x")]);
        let env = v.to_env("version_");
        assert_eq!(env["version_commit_date"], "x");
        assert_eq!(env["version_ref"], "abc");
    }

    #[test]
    fn nested_params_flatten() {
        let mut p = Params::new();
        p.insert("meta", serde_json::json!({"sha": "1", "tags": ["a", "b"]}));
        let env = p.to_env("version_");
        assert_eq!(env["version_meta_sha"], "1");
        assert_eq!(env["version_meta_tags_1"], "b");
    }
}
