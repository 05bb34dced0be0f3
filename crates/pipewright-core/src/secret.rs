//! Secret values that zeroize on drop and never print.

use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroize;

/// A credential. Its bytes are wiped when dropped; `Debug` shows `***` and there is no
/// `Display`, so a secret cannot reach a log through formatting by accident.
///
/// ```
/// use pipewright_core::SecretValue;
/// let s = SecretValue::from("hunter2");
/// assert_eq!(format!("{s:?}"), "***");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValue(String);

impl Drop for SecretValue {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The plain value. Call this only where the value goes to a process environment, a file or
    /// a log masker; never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The keys a secret source returned for one path (`{"password": ***, "user": ***}`).
pub type SecretMap = BTreeMap<String, SecretValue>;

/// Where a secret lives: the source's config (from its `secret_type` declaration) and the path
/// within it. `key` picks one entry of the returned [`SecretMap`].
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SecretRef {
    /// Path inside the source (a Vault path, a file name…); empty when the source has none.
    pub path: String,
    /// Key of the value inside the path.
    pub key: String,
}
