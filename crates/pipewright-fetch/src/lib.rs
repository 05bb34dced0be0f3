//! Fetches type definitions by URL for the pipeline loader: HTTPS (rustls), a disk cache,
//! sha256 pins served without the network, a timeout and a size cap.
//!
//! [`HttpFetcher`] implements [`pipewright_config::TypeFetcher`]; hand it to the loader through
//! [`pipewright_config::LoadOptions::fetcher`].

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Why a definition could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// `http://` to a host that is not loopback, or a scheme other than http(s).
    #[error(
        "`{0}` is not an https:// URL (plain http is allowed only for 127.0.0.1, ::1 and localhost)"
    )]
    Insecure(String),
    /// The server answered with an error status.
    #[error("the server answered {0}")]
    Status(reqwest::StatusCode),
    /// The request took longer than the timeout.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// The body is larger than the cap.
    #[error("the definition is larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not UTF-8 text.
    #[error("the definition is not UTF-8 text")]
    NotText,
    /// Connection, TLS or protocol failure.
    #[error("{0}")]
    Transport(String),
    /// The cache directory could not be written.
    #[error("cannot write the cache at `{path}`: {source}")]
    Cache {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Fetches and caches type definitions. Cheap to clone; shares nothing between clones but the
/// cache directory.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    cache_dir: PathBuf,
    timeout: Duration,
    max_age: Duration,
    max_bytes: usize,
}

impl HttpFetcher {
    /// A fetcher caching under `cache_dir` (created on first write), with a 30 s timeout, a
    /// 1 hour freshness for unpinned URLs and a 1 MiB size cap.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            timeout: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 20,
        }
    }

    /// The limit for one whole request (connect, headers, body).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long an unpinned definition is used from the cache before it is fetched again.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The largest definition accepted, in bytes.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Where a pinned definition is cached: by its content hash, so it never goes stale.
    fn pinned_path(&self, sha256: &str) -> PathBuf {
        self.cache_dir.join("sha256").join(sha256)
    }

    /// Where an unpinned definition is cached: by a hash of its URL.
    fn url_path(&self, url: &str) -> PathBuf {
        self.cache_dir
            .join("url")
            .join(hex(&Sha256::digest(url.as_bytes())))
    }

    /// Returns the definition at `url`. With a pin, a cached copy whose hash matches is used
    /// without the network; a download that does not match is returned uncached so the loader
    /// can report both hashes.
    pub fn fetch_text(&self, url: &str, sha256: Option<&str>) -> Result<String, FetchError> {
        check_url(url)?;
        if let Some(pin) = sha256.map(str::to_ascii_lowercase) {
            let path = self.pinned_path(&pin);
            if let Ok(text) = std::fs::read_to_string(&path) {
                if hex(&Sha256::digest(text.as_bytes())) == pin {
                    tracing::debug!(url, path = %path.display(), "pinned definition from cache");
                    return Ok(text);
                }
                tracing::warn!(path = %path.display(), "cached definition is corrupt; fetching again");
            }
            let text = self.download(url)?;
            if hex(&Sha256::digest(text.as_bytes())) == pin {
                write_atomic(&path, text.as_bytes())?;
            }
            return Ok(text);
        }
        let path = self.url_path(url);
        let cached = std::fs::read_to_string(&path).ok();
        let fresh = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < self.max_age);
        if let (Some(text), true) = (&cached, fresh) {
            tracing::debug!(url, "definition from cache");
            return Ok(text.clone());
        }
        match self.download(url) {
            Ok(text) => {
                write_atomic(&path, text.as_bytes())?;
                Ok(text)
            }
            Err(e) => match cached {
                Some(text) => {
                    tracing::warn!(url, error = %e, "fetch failed; using the cached copy");
                    Ok(text)
                }
                None => Err(e),
            },
        }
    }

    /// One GET on a private current-thread runtime in a scoped thread, so the loader can be
    /// called from inside or outside an async runtime alike.
    fn download(&self, url: &str) -> Result<String, FetchError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| FetchError::Transport(format!("cannot start a runtime: {e}")))?;
                rt.block_on(self.download_async(url))
            })
            .join()
            .unwrap_or_else(|_| Err(FetchError::Transport("the fetch thread panicked".into())))
        })
    }

    async fn download_async(&self, url: &str) -> Result<String, FetchError> {
        let timeout = self.timeout;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("more than 5 redirects")
                } else if check_url(attempt.url().as_str()).is_err() {
                    attempt.error("redirected to an insecure URL")
                } else {
                    attempt.follow()
                }
            }))
            .user_agent(concat!("pipewright/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let map = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::Timeout(timeout)
            } else {
                FetchError::Transport(chain(&e))
            }
        };
        let mut resp = client.get(url).send().await.map_err(map)?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        tracing::info!(url, bytes = body.len(), "fetched type definition");
        String::from_utf8(body).map_err(|_| FetchError::NotText)
    }
}

impl pipewright_config::TypeFetcher for HttpFetcher {
    fn fetch(&self, url: &str, sha256: Option<&str>) -> Result<String, String> {
        self.fetch_text(url, sha256).map_err(|e| e.to_string())
    }
}

/// Accepts `https://`, and `http://` only to a loopback host.
fn check_url(url: &str) -> Result<(), FetchError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::Insecure(url.to_owned()))?;
    let loopback = parsed.host_str().is_some_and(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(FetchError::Insecure(url.to_owned())),
    }
}

/// The error and its causes on one line: reqwest's own message hides the reason.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Writes by temp file + rename so a reader never sees half a definition.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), FetchError> {
    let err = |source| FetchError::Cache {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
