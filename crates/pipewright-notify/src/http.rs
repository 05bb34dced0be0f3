//! The one HTTP client every HTTP notification goes through: timeouts, and retries with
//! exponential back-off on 5xx answers and connection errors.

use crate::NotifyError;
use std::time::Duration;

/// How often and how fast a delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Requests in all (1: no retry).
    pub attempts: u32,
    /// The wait before the second request; doubled before each further one.
    pub backoff: Duration,
    /// The longest wait between two requests.
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl Retry {
    /// The wait after failed request number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Settings shared by every notification: the HTTP client (with its timeouts) and the retry
/// policy. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Transport {
    pub(crate) client: reqwest::Client,
    pub(crate) retry: Retry,
    pub(crate) timeout: Duration,
}

impl Transport {
    /// A transport with `retry` whose requests and SMTP sessions time out after `timeout`.
    pub fn new(timeout: Duration, retry: Retry) -> Result<Self, NotifyError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("pipewright/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::config("http", e.without_url().to_string()))?;
        Ok(Self {
            client,
            retry,
            timeout,
        })
    }

    /// The retry policy.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// POSTs `body` as JSON to `url` with `headers`, retrying 5xx answers and connection
    /// errors; returns the answer's body. `kind` names the notification type in errors.
    pub(crate) async fn post_json(
        &self,
        kind: &'static str,
        url: &reqwest::Url,
        headers: &[(&str, String)],
        body: &str,
    ) -> Result<String, NotifyError> {
        let host = url.host_str().unwrap_or("?").to_owned();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned());
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let retryable = match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    tracing::debug!(kind, %host, attempt, "notification delivered");
                    return Ok(resp.text().await.unwrap_or_default());
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    let err = NotifyError::Status {
                        kind,
                        host: host.clone(),
                        status: status.as_u16(),
                        attempts: attempt,
                        detail: excerpt(&text),
                    };
                    let retry = status.is_server_error() || status.as_u16() == 429;
                    (retry, err)
                }
                Err(e) => {
                    let retry = e.is_connect() || e.is_timeout() || e.is_request();
                    let err = NotifyError::Transport {
                        kind,
                        host: host.clone(),
                        attempts: attempt,
                        message: e.without_url().to_string(),
                    };
                    (retry, err)
                }
            };
            match retryable {
                (true, err) if attempt < self.retry.attempts => {
                    let wait = self.retry.delay(attempt);
                    tracing::info!(kind, %host, attempt, error = %err, ?wait, "notification failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                (_, err) => return Err(err),
            }
        }
    }
}

/// The first line of an error answer, shortened, as `: …` (empty when there is none).
fn excerpt(body: &str) -> String {
    let line = body.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return String::new();
    }
    let short: String = line.chars().take(200).collect();
    format!(": {short}")
}

/// Parses `url` (a param) and keeps only `http`/`https`.
pub(crate) fn parse_url(
    kind: &'static str,
    param: &str,
    url: &str,
) -> Result<reqwest::Url, NotifyError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| NotifyError::config(kind, format!("`{param}` is not a URL: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(NotifyError::config(
            kind,
            format!("`{param}` must be an http or https URL, not `{other}:`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let r = Retry {
            attempts: 6,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        let waits: Vec<u128> = (1..=4).map(|a| r.delay(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
    }

    #[test]
    fn error_answers_are_shortened_to_their_first_line() {
        assert_eq!(excerpt(""), "");
        assert_eq!(excerpt("bad token\nmore"), ": bad token");
        assert_eq!(excerpt(&"x".repeat(500)).len(), 202);
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(parse_url("webhook", "url", "https://example.com/x").is_ok());
        let e = parse_url("webhook", "url", "file:///etc/passwd").unwrap_err();
        assert!(e.to_string().contains("http or https"), "{e}");
    }
}
