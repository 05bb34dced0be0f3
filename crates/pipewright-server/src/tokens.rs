//! Bearer tokens with roles. Only hashes are kept (SHA-256), compared in constant time; the
//! admin token comes from `--token-file`, which is created (mode 0600) with a random token
//! when missing; tokens made through the API are kept, hashed, in a file beside it.

use crate::error::{ServerError, ServerResult};
use pipewright_api::{Role, TokenView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    id: String,
    name: String,
    role: Role,
    hash: String,
    created_at_ms: u64,
}

/// The tokens a server accepts.
#[derive(Debug)]
pub struct Tokens {
    admin: Option<[u8; 32]>,
    entries: Mutex<Vec<Entry>>,
    file: Option<PathBuf>,
}

/// A random token: `pw_` and 64 hex digits.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("pw_{}", hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// Reads the admin token from `path`, creating the file (mode 0600) with a random token when it
/// does not exist. Returns the token and whether it was created.
pub fn admin_token(path: &Path) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_owned(), false)),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is empty: put a token in it, or delete it to have one made",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let token = random_token();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    Ok((token, true))
}

impl Tokens {
    /// No tokens: every request that needs one is refused.
    pub fn none() -> Self {
        Tokens {
            admin: None,
            entries: Mutex::new(Vec::new()),
            file: None,
        }
    }

    /// The admin token `admin`, and the API-made tokens kept in `file` (read now if it exists).
    pub fn new(admin: &str, file: Option<PathBuf>) -> ServerResult<Self> {
        let entries = match &file {
            Some(f) => match std::fs::read_to_string(f) {
                Ok(text) => serde_json::from_str(&text).map_err(|e| {
                    ServerError::Internal(format!("{} is not a token list: {e}", f.display()))
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    return Err(ServerError::Internal(format!(
                        "reading {}: {e}",
                        f.display()
                    )));
                }
            },
            None => Vec::new(),
        };
        Ok(Tokens {
            admin: Some(digest(admin)),
            entries: Mutex::new(entries),
            file,
        })
    }

    /// The role and name of `token`, if it is valid. Every stored hash is compared, in
    /// constant time, so timing says nothing about which one (if any) matched.
    pub fn check(&self, token: &str) -> Option<(Role, String)> {
        let d = digest(token);
        let mut found = None;
        if let Some(a) = &self.admin
            && bool::from(a.ct_eq(&d))
        {
            found = Some((Role::Admin, "admin".to_owned()));
        }
        let hex_d = hex(&d);
        if let Ok(entries) = self.entries.lock() {
            for e in entries.iter() {
                if bool::from(e.hash.as_bytes().ct_eq(hex_d.as_bytes())) {
                    found = Some((e.role, e.name.clone()));
                }
            }
        }
        found
    }

    /// Makes a token; its secret is in the answer and nowhere else.
    pub fn create(&self, name: &str, role: Role) -> ServerResult<TokenView> {
        // A worker's token name is its identity: two tokens of one name would be one worker.
        if name == "admin"
            || self
                .entries
                .lock()
                .map(|e| e.iter().any(|x| x.name == name))
                .unwrap_or(false)
        {
            return Err(ServerError::Conflict(format!(
                "a token named `{name}` exists: revoke it first or choose another name"
            )));
        }
        let token = random_token();
        let entry = Entry {
            id: hex(&rand::random::<[u8; 8]>()),
            name: name.to_owned(),
            role,
            hash: hex(&digest(&token)),
            created_at_ms: crate::hub::now_ms(),
        };
        let mut view = view(&entry);
        view.token = Some(token);
        self.update(|v| v.push(entry))?;
        Ok(view)
    }

    /// The tokens made through the API.
    pub fn list(&self) -> Vec<TokenView> {
        self.entries
            .lock()
            .map(|e| e.iter().map(view).collect())
            .unwrap_or_default()
    }

    /// Revokes token `id`.
    pub fn revoke(&self, id: &str) -> ServerResult<()> {
        let mut found = false;
        self.update(|v| {
            let before = v.len();
            v.retain(|e| e.id != id);
            found = v.len() != before;
        })?;
        if found {
            Ok(())
        } else {
            Err(ServerError::NotFound(format!("no token `{id}`")))
        }
    }

    fn update(&self, f: impl FnOnce(&mut Vec<Entry>)) -> ServerResult<()> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| ServerError::Internal("the token list's lock is poisoned".into()))?;
        let mut next = entries.clone();
        f(&mut next);
        if let Some(file) = &self.file {
            save(file, &next)
                .map_err(|e| ServerError::Internal(format!("saving {}: {e}", file.display())))?;
        }
        *entries = next;
        Ok(())
    }
}

fn view(e: &Entry) -> TokenView {
    TokenView {
        id: e.id.clone(),
        name: e.name.clone(),
        role: e.role,
        created_at_ms: e.created_at_ms,
        token: None,
    }
}

/// Writes the list to a temporary file (0600) and renames it into place.
fn save(file: &Path, entries: &[Entry]) -> std::io::Result<()> {
    let tmp = file.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(
        serde_json::to_string_pretty(entries)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_checked_and_revoked_tokens_stop_working() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, made) = admin_token(&dir.path().join("token")).unwrap();
        assert!(made);
        let tokens = Tokens::new(&admin, Some(dir.path().join("tokens.json"))).unwrap();
        assert_eq!(tokens.check(&admin).map(|r| r.0), Some(Role::Admin));
        let op = tokens.create("ci-bot", Role::Operator).unwrap();
        let secret = op.token.clone().unwrap();
        assert_eq!(
            tokens.check(&secret),
            Some((Role::Operator, "ci-bot".into()))
        );
        assert_eq!(tokens.check("pw_nope"), None);
        // Kept across restarts, hashed.
        let again = Tokens::new(&admin, Some(dir.path().join("tokens.json"))).unwrap();
        assert_eq!(again.check(&secret).map(|r| r.0), Some(Role::Operator));
        let stored = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!stored.contains(&secret));
        again.revoke(&op.id).unwrap();
        assert_eq!(again.check(&secret), None);
        assert!(matches!(
            again.revoke(&op.id),
            Err(ServerError::NotFound(_))
        ));
        // The admin file is the same token on the next start, and private.
        let (same, made) = admin_token(&dir.path().join("token")).unwrap();
        assert_eq!((same, made), (admin, false));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
