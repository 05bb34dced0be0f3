//! GitHub App authentication for `github-check`: a JWT signed with the app's private key
//! (RS256) is exchanged for an installation token, which then sets the status.

use crate::{NotifyError, Transport};
use aws_lc_rs::{rand::SystemRandom, signature};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

const KIND: &str = "github-check";

/// An app installation that can ask for tokens.
pub(crate) struct App {
    app_id: String,
    installation_id: String,
    key: signature::RsaKeyPair,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

impl App {
    /// `private_key` is the PEM file GitHub gives (`BEGIN RSA PRIVATE KEY`, PKCS#1) or its
    /// PKCS#8 form (`BEGIN PRIVATE KEY`).
    pub(crate) fn new(
        app_id: String,
        installation_id: String,
        private_key: &str,
    ) -> Result<Self, NotifyError> {
        if installation_id.is_empty() || !installation_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(NotifyError::config(
                KIND,
                "`installation_id` must be the installation's number",
            ));
        }
        let bad = || NotifyError::config(KIND, "`private_key` is not a PEM RSA private key");
        let pkcs1 = private_key.contains("BEGIN RSA PRIVATE KEY");
        let b64: String = private_key
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(b64).map_err(|_| bad())?;
        let key = if pkcs1 {
            signature::RsaKeyPair::from_der(&der)
        } else {
            signature::RsaKeyPair::from_pkcs8(&der)
        }
        .map_err(|_| bad())?;
        Ok(Self {
            app_id,
            installation_id,
            key,
        })
    }

    /// The app's JWT at `now` (seconds since the epoch): valid from a minute before (clock
    /// drift) for nine minutes (GitHub allows ten).
    pub(crate) fn jwt(&self, now: u64) -> Result<String, NotifyError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iat": now.saturating_sub(60),
            "exp": now + 540,
            "iss": self.app_id,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| NotifyError::config(KIND, "cannot sign the app's JWT"))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// An installation token from `{base}/app/installations/{id}/access_tokens`.
    pub(crate) async fn token(
        &self,
        transport: &Transport,
        base: &reqwest::Url,
    ) -> Result<String, NotifyError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|()| NotifyError::config(KIND, "`base_url` cannot be a base for paths"))?
            .pop_if_empty()
            .extend([
                "app",
                "installations",
                &self.installation_id,
                "access_tokens",
            ]);
        let headers = [
            ("authorization", format!("Bearer {}", self.jwt(now)?)),
            ("accept", "application/vnd.github+json".to_owned()),
            ("x-github-api-version", "2022-11-28".to_owned()),
        ];
        let answer = transport.post_json(KIND, &url, &headers, "{}").await?;
        serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("token")?.as_str().map(str::to_owned))
            .ok_or_else(|| {
                NotifyError::config(
                    KIND,
                    "GitHub's answer for an installation token has no token",
                )
            })
    }
}
