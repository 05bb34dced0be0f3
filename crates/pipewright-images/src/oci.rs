//! The registry HTTP API v2, through `oci-client`: tags, digests, and OCI image layouts pulled
//! and pushed without a daemon.

use crate::settings::Settings;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
    OciImageManifest,
};
use oci_client::{Client, Reference};
use pipewright_core::{Error, ErrorKind, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The manifest types `get` accepts and `put` sends.
const MANIFEST_TYPES: &[&str] = &[OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE];

/// A client for one resource's registry.
pub struct Registry {
    client: Client,
    settings: Settings,
}

impl Registry {
    /// A client with TLS verified unless the resource says `insecure = true` (then plain HTTP,
    /// or HTTPS without verification, for that registry only).
    pub fn new(settings: &Settings) -> Self {
        let mut config = ClientConfig {
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(300)),
            ..ClientConfig::default()
        };
        if settings.insecure {
            config.protocol = ClientProtocol::HttpsExcept(vec![settings.registry.clone()]);
            config.accept_invalid_certificates = true;
        }
        Self {
            client: Client::new(config),
            settings: settings.clone(),
        }
    }

    /// The error for a failed call, naming the registry and who asked, never a secret.
    pub fn error(&self, what: &str, e: OciDistributionError) -> Error {
        let registry = &self.settings.registry;
        match &e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => self.refused(what),
            OciDistributionError::RequestError(r)
                if matches!(r.status().map(|s| s.as_u16()), Some(401 | 403)) =>
            {
                self.refused(what)
            }
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => self.refused(what),
            OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
                let hint = if self.settings.insecure {
                    ""
                } else {
                    " (a registry that serves plain HTTP needs `insecure = true`)"
                };
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "cannot reach registry {registry} to {what} `{}`{hint}: {r}",
                        self.settings.repository
                    ),
                )
            }
            _ => Error::new(
                ErrorKind::Other,
                format!(
                    "registry {registry}: cannot {what} `{}`: {e}",
                    self.settings.repository
                ),
            ),
        }
    }

    fn refused(&self, what: &str) -> Error {
        let registry = &self.settings.registry;
        let who = self.settings.credentials.who();
        Error::new(
            ErrorKind::Unauthorized,
            format!(
                "registry {registry} refused {who} while trying to {what} \
                     `{}`: check the username and password (or token) the resource is given",
                self.settings.repository
            ),
        )
    }

    fn not_found(e: &OciDistributionError) -> bool {
        match e {
            OciDistributionError::ImageManifestNotFoundError(_) => true,
            OciDistributionError::ServerError { code, .. } => *code == 404,
            OciDistributionError::RegistryError { envelope, .. } => envelope
                .errors
                .iter()
                .any(|e| format!("{:?}", e.code).contains("Unknown")),
            _ => false,
        }
    }

    /// The digest `tag` points at, or `None` when the tag does not exist.
    pub async fn digest_of(&self, tag: &str) -> Result<Option<String>> {
        let auth = self.settings.credentials.auth();
        match self
            .client
            .fetch_manifest_digest(&self.settings.tagged(tag), &auth)
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(e) if Self::not_found(&e) => Ok(None),
            Err(e) => Err(self.error("read a tag of", e)),
        }
    }

    /// Every tag of the repository (empty when the repository does not exist yet).
    pub async fn tags(&self) -> Result<Vec<String>> {
        let auth = self.settings.credentials.auth();
        let reference = self.settings.tagged("latest");
        let mut all: Vec<String> = Vec::new();
        loop {
            let page = match self
                .client
                .list_tags(
                    &reference,
                    &auth,
                    Some(1000),
                    all.last().map(String::as_str),
                )
                .await
            {
                Ok(p) => p.tags,
                Err(e) if Self::not_found(&e) => Vec::new(),
                Err(e) => return Err(self.error("list the tags of", e)),
            };
            let full = page.len() >= 1000;
            all.extend(page);
            // A registry that ignores `n` returns everything at once.
            if !full || all.len() > 100_000 {
                return Ok(all);
            }
        }
    }

    /// Writes the image `digest` as an OCI image layout into `dir` (`oci-layout`, `index.json`,
    /// `blobs/sha256/…`), each blob checked against its digest. Returns the manifest.
    pub async fn pull_layout(&self, digest: &str, dir: &Path) -> Result<OciImageManifest> {
        let auth = self.settings.credentials.auth();
        let reference = self.settings.by_digest(digest);
        let (raw, got) = self
            .client
            .pull_manifest_raw(&reference, &auth, MANIFEST_TYPES)
            .await
            .map_err(|e| self.error("pull", e))?;
        let manifest: OciImageManifest = serde_json::from_slice(&raw).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("the manifest of {digest} is not an image manifest: {e}"),
            )
        })?;
        let blobs = dir.join("blobs").join("sha256");
        tokio::fs::create_dir_all(&blobs)
            .await
            .map_err(io(&blobs))?;
        write_blob(&blobs, &got, &raw).await?;
        for layer in std::iter::once(&manifest.config).chain(&manifest.layers) {
            let mut data = Vec::new();
            self.client
                .pull_blob(&reference, layer, &mut data)
                .await
                .map_err(|e| self.error("pull a layer of", e))?;
            write_blob(&blobs, &layer.digest, &data).await?;
        }
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_IMAGE_MEDIA_TYPE.to_owned());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
            "manifests": [{ "mediaType": media_type, "digest": got, "size": raw.len() }],
        });
        write_file(
            &dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .await?;
        write_file(&dir.join("index.json"), index.to_string().as_bytes()).await?;
        Ok(manifest)
    }

    /// Pushes the image of the OCI layout in `dir` (its first manifest) under `tags`, sending
    /// only the blobs the registry lacks. Returns the manifest digest.
    pub async fn push_layout(&self, dir: &Path, tags: &[String]) -> Result<String> {
        let index_path = dir.join("index.json");
        let index: serde_json::Value = serde_json::from_slice(
            &tokio::fs::read(&index_path)
                .await
                .map_err(io(&index_path))?,
        )
        .map_err(|e| invalid_layout(dir, &format!("index.json is not JSON: {e}")))?;
        let first = index
            .get("manifests")
            .and_then(|m| m.get(0))
            .ok_or_else(|| invalid_layout(dir, "index.json lists no manifest"))?;
        let digest = first
            .get("digest")
            .and_then(|d| d.as_str())
            .ok_or_else(|| invalid_layout(dir, "the first manifest has no digest"))?;
        let media_type = first
            .get("mediaType")
            .and_then(|d| d.as_str())
            .unwrap_or(OCI_IMAGE_MEDIA_TYPE)
            .to_owned();
        let raw = read_blob(dir, digest).await?;
        let manifest: OciImageManifest = serde_json::from_slice(&raw)
            .map_err(|e| invalid_layout(dir, &format!("{digest} is not an image manifest: {e}")))?;
        let first_tag = tags.first().map(String::as_str).unwrap_or("latest");
        let reference = self.settings.tagged(first_tag);
        let auth = self.settings.credentials.auth();
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &auth)
            .await;
        // Authenticate for push up front, so a refusal is reported once, clearly.
        self.client
            .auth(&reference, &auth, oci_client::RegistryOperation::Push)
            .await
            .map_err(|e| self.error("push to", e))?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            self.push_blob(dir, &reference, blob).await?;
        }
        let content_type = reqwest::header::HeaderValue::from_str(&media_type)
            .map_err(|_| invalid_layout(dir, &format!("media type `{media_type}` is invalid")))?;
        for tag in tags {
            self.client
                .push_manifest_raw(
                    &self.settings.tagged(tag),
                    raw.clone(),
                    content_type.clone(),
                )
                .await
                .map_err(|e| self.error("push a manifest to", e))?;
        }
        Ok(digest.to_owned())
    }

    async fn push_blob(
        &self,
        dir: &Path,
        reference: &Reference,
        blob: &OciDescriptor,
    ) -> Result<()> {
        let present = self
            .client
            .blob_exists(reference, &blob.digest)
            .await
            .map_err(|e| self.error("look for a layer in", e))?;
        if present {
            return Ok(());
        }
        let data = read_blob(dir, &blob.digest).await?;
        self.client
            .push_blob(reference, data, &blob.digest)
            .await
            .map_err(|e| self.error("push a layer to", e))?;
        Ok(())
    }
}

fn invalid_layout(dir: &Path, why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidConfig,
        format!("`{}` is not an OCI image layout: {why}", dir.display()),
    )
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Other, format!("{}: {e}", path.display()))
}

fn hex_of(digest: &str) -> Result<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                format!("`{digest}` is not a sha256 digest"),
            )
        })
}

/// Reads blob `digest` of the layout in `dir` and checks its content against the digest.
async fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>> {
    let path = dir.join("blobs").join("sha256").join(hex_of(digest)?);
    let data = tokio::fs::read(&path).await.map_err(io(&path))?;
    if format!("sha256:{:x}", Sha256::digest(&data)) != digest {
        return Err(invalid_layout(
            dir,
            &format!("blob {digest} does not match its digest"),
        ));
    }
    Ok(data)
}

async fn write_blob(blobs: &Path, digest: &str, data: &[u8]) -> Result<()> {
    if format!("sha256:{:x}", Sha256::digest(data)) != digest {
        return Err(Error::new(
            ErrorKind::Other,
            format!("the registry sent content that does not match digest {digest}"),
        ));
    }
    write_file(&blobs.join(hex_of(digest)?), data).await
}

/// Written aside and renamed into place, so nothing half-written is left.
async fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    tokio::fs::write(&tmp, data).await.map_err(io(&tmp))?;
    tokio::fs::rename(&tmp, path).await.map_err(io(path))
}
