//! `registry-image` end to end through `pipewright run`: the registry password comes from a
//! secret, a job builds and pushes, the next job gets the image into the engine and runs it
//! with `pull = "never"`; the password appears nowhere in the output, and a wrong one fails
//! the run with an error naming the registry. Real `docker-registry` with basic auth, real
//! Docker engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_testing::servers::{DOCKER_TEST_IMAGE, ImageRegistry, require, require_docker};
use std::process::{Command, Output};

const PASSWORD: &str = "Reg1stry-Pa55word-xyz";

fn pipeline(host: &str) -> String {
    format!(
        r#"
variable "registry_password" {{
  type = string
  secret "env" {{ key = "REG_PW" }}
}}

resource "registry-image" "app" {{
  params {{
    repository = "{host}/cli/app"
    tag_regex  = "[0-9.]+"
    username   = "ci"
    password   = var.registry_password
    insecure   = true
  }}
}}

job "build" {{
  task "context" {{
    run "shell" {{
      cmd = <<-SH
        mkdir ctx
        printf 'FROM {DOCKER_TEST_IMAGE}\nARG REF\nCOPY hello.txt /hello.txt\nRUN echo "ref=$REF" > /ref.txt\n' > ctx/Dockerfile
        echo hello-from-the-pushed-image > ctx/hello.txt
        echo 1.0.0 > tag
        echo REF=from-an-earlier-step >> "$PIPEWRIGHT_OUTPUT"
      SH
    }}
  }}
  put "registry-image" "app" {{
    build      = "ctx"
    tag_file   = "tag"
    build_args = {{ REF = "$TASK_CONTEXT_REF" }}
  }}
}}

job "use" {{
  get "registry-image" "app" {{
    passed  = ["build"]
    trigger = true
  }}
  task "inside" {{
    run "docker" {{
      image = "{host}/cli/app:1.0.0"
      pull  = "never"
      cmd   = "cat /hello.txt /ref.txt"
    }}
  }}
  task "leak" {{
    env = {{ PW = var.registry_password }}
    run "shell" {{ cmd = "echo \"password: $PW\"; cat app/digest" }}
  }}
}}
"#
    )
}

fn run(dir: &std::path::Path, password: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["run", "--no-history", "--color", "never", "--pipeline"])
        .arg(dir.join("p.hcl"))
        .env("REG_PW", password)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn an_image_is_pushed_with_a_secret_password_then_pulled_and_run() {
    if !require("docker-registry", "apt-get install docker-registry")
        || !require("htpasswd", "apt-get install apache2-utils")
        || !require_docker()
    {
        return;
    }
    let registry = ImageRegistry::with_basic_auth("ci", PASSWORD).unwrap();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.hcl"), pipeline(&host)).unwrap();
    // The image must come from the get, not from the build's local copy.
    let _ = Command::new("docker")
        .args(["image", "rm", "-f", &format!("{host}/cli/app:1.0.0")])
        .output();

    let out = run(dir.path(), PASSWORD);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("hello-from-the-pushed-image"), "{text}");
    assert!(
        text.contains("ref=from-an-earlier-step"),
        "put params expand $TASK_*:\n{text}"
    );
    assert!(text.contains("password: "), "{text}");
    assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
    let digest_line = text
        .lines()
        .find(|l| l.contains("sha256:") && l.contains("use/leak"))
        .unwrap_or_else(|| panic!("no digest printed:\n{text}"));
    assert!(digest_line.contains("sha256:"), "{digest_line}");

    let wrong = "wrong-Pa55word-abc";
    let out = run(dir.path(), wrong);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("registry {host} refused")), "{text}");
    assert!(
        !text.contains("Successfully built"),
        "refused credentials are found before the build:\n{text}"
    );
    assert!(!text.contains(wrong), "the wrong password leaked:\n{text}");
}
