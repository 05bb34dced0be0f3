//! A real headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use fantoccini::{Client, ClientBuilder};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Whether chromedriver is installed; false (after a visible SKIPPED line) on a developer's
/// machine without it, a failure in CI.
pub fn available() -> bool {
    pipewright_testing::servers::require("chromedriver", "apt-get install chromium chromium-driver")
}

impl Browser {
    pub async fn start() -> Browser {
        let port = pipewright_testing::servers::free_port().unwrap();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--hide-scrollbars",
            ]}),
        );
        // Plain HTTP to the local driver: no TLS stack needed.
        let http = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(http)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        Browser { client, driver }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Evaluates `expr` in the page.
    pub async fn eval(&self, expr: &str) -> serde_json::Value {
        self.client
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap()
    }

    /// Waits (up to `secs`) until `expr` is truthy in the page; panics with `what` otherwise.
    pub async fn until(&self, expr: &str, secs: u64, what: &str) {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self
                .client
                .execute(
                    &format!("try {{ return !!({expr}); }} catch (e) {{ return false; }}"),
                    vec![],
                )
                .await
                .unwrap();
            if v == serde_json::Value::Bool(true) {
                return;
            }
            if Instant::now() > until {
                let body = self.eval("document.body.innerText").await;
                panic!("gave up waiting for {what} ({expr}); the page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Clicks the button whose text is `text`.
    pub async fn click_button(&self, text: &str) {
        let found = self
            .eval(&format!(
                "(() => {{ const b = [...document.querySelectorAll('button')].find((b) => b.textContent.trim() === {text:?}); if (b) b.click(); return !!b; }})()"
            ))
            .await;
        assert_eq!(found, serde_json::Value::Bool(true), "no button `{text}`");
    }

    /// Saves a screenshot to `dir/name.png` when `PIPEWRIGHT_SCREENSHOTS=dir` is set.
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("PIPEWRIGHT_SCREENSHOTS") else {
            return;
        };
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }

    /// Ends the session (the browser exits); the driver is killed on drop.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}
