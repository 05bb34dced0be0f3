#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `email` against a real SMTP server (Python's aiosmtpd, started by the test): the mail
//! arrives authenticated with its templated subject and body, masked; a wrong password is
//! reported without the password and not retried.

use pipewright_core::{BuildStatus, Params};
use pipewright_notify::{Notice, Retry, Transport, create};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// aiosmtpd on a free port, killed on drop.
struct Smtp {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aiosmtpd_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the server, or returns `None` (a visible skip; a failure when `CI` is set).
fn smtp() -> Option<Smtp> {
    if !pipewright_testing::servers::require_that(
        aiosmtpd_installed(),
        "aiosmtpd not installed",
        "python3 -m pip install aiosmtpd",
    ) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mail.jsonl");
    let port = pipewright_testing::servers::free_port().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The script prints `ready` once it listens.
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
    Some(Smtp {
        child,
        port,
        out,
        _dir: dir,
    })
}

const SECRET: &str = "deploy-key-0f9e8d7c";

fn notice() -> Notice {
    let vars = BTreeMap::from([
        ("BUILD_PIPELINE_NAME".to_owned(), "shop".to_owned()),
        ("BUILD_JOB_NAME".to_owned(), "deploy".to_owned()),
        ("BUILD_NUMBER".to_owned(), "7".to_owned()),
        ("KEY".to_owned(), SECRET.to_owned()),
    ]);
    Notice {
        pipeline: "shop".into(),
        job: "deploy".into(),
        number: 7,
        status: BuildStatus::Failed,
        versions: BTreeMap::new(),
        url: None,
        message: format!("deploy failed using {SECRET}"),
        vars,
        mask: Arc::new(|s: &str| s.replace(SECRET, "***")),
    }
}

fn transport() -> Transport {
    let retry = Retry {
        attempts: 3,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
    };
    Transport::new(Duration::from_secs(10), retry).unwrap()
}

fn params(port: u16, password: &str) -> Params {
    serde_json::from_value(json!({
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": "ci",
        "password": password,
        "from": "Pipewright <ci@example.com>",
        "to": ["dev@example.com", "ops@example.com"],
        "subject": "[$BUILD_PIPELINE_NAME] $BUILD_JOB_NAME #$BUILD_NUMBER $BUILD_STATUS",
        "body": "Build $BUILD_NUMBER: key $KEY",
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_arrives_authenticated_templated_and_masked() {
    let Some(server) = smtp() else { return };
    create("email", &params(server.port, "smtp-pass-123"), &transport())
        .unwrap()
        .send(&notice())
        .await
        .unwrap();
    let text = std::fs::read_to_string(&server.out).unwrap();
    let mails: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(mails.len(), 1, "{text}");
    let m = &mails[0];
    assert_eq!(m["authenticated"], true);
    assert_eq!(m["from"], "ci@example.com");
    assert_eq!(m["to"], json!(["dev@example.com", "ops@example.com"]));
    let data = m["data"].as_str().unwrap();
    assert!(data.contains("Subject: [shop] deploy #7 failed"), "{data}");
    assert!(data.contains("Build 7: key ***"), "{data}");
    assert!(!data.contains(SECRET), "{data}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_smtp_password_is_reported_once_without_the_password() {
    let Some(server) = smtp() else { return };
    let err = create(
        "email",
        &params(server.port, "not-the-password"),
        &transport(),
    )
    .unwrap()
    .send(&notice())
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("after 1 attempt"),
        "a refused login is final: {err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
    assert!(!server.out.exists(), "no mail was accepted");
}
