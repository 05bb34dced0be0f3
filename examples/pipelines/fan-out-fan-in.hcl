# A commit flows through parallel test jobs (a matrix and a for_each), fans in to a build that
# publishes an artifact, and reaches a gated deploy.

variable "repo" {
  type    = string
  default = "https://example.com/org/app.git"
}

resource "git" "app" {
  params {
    url    = var.repo
    branch = "main"
    name   = "app"
  }
  check_interval = "@every 30s"
}

resource "artifact" "binary" {
  params {
    dir = "/var/lib/pipewright/artifacts"
  }
}

resource "cron" "nightly" {
  params {
    schedule = "0 3 * * *"
  }
  check_interval = "0 3 * * *"
}

job "lint" {
  get "git" "app" {
    trigger = true
  }
  task "clippy" {
    run "shell" {
      cmd = "cd app && cargo clippy -- -D warnings"
    }
    timeout = "10m"
  }
}

job "test" {
  matrix {
    os   = ["linux", "macos"]
    rust = ["stable", "1.88"]
  }
  tags = [each.value.os]
  get "git" "app" {
    trigger = true
  }
  task "unit" {
    run "shell" {
      cmd = "cd app && cargo +${each.value.rust} test"
    }
    attempts = 2
  }
}

job "integration" {
  for_each = toset(["postgres", "sqlite"])
  get "git" "app" {
    trigger = true
  }
  task "suite" {
    run "shell" {
      cmd = "cd app && DB=${each.key} cargo test --test integration"
    }
  }
}

job "build" {
  serial_groups = ["release"]
  in_parallel {
    get "git" "app" {
      trigger = true
      passed  = ["lint", "test", "integration"]
    }
    get "cron" "nightly" {}
  }
  task "compile" {
    run "shell" {
      cmd = "cd app && cargo build --release && cp target/release/app ../out/"
    }
    outputs = ["out/app"]
  }
  put "artifact" "binary" {
    from = "out"
  }
}

job "deploy" {
  concurrency   = 1
  serial_groups = ["release"]
  interruptible = true
  disable_retry = true
  timeout       = "30m"
  input "environment" {
    type    = string
    options = ["staging", "production"]
    default = "staging"
  }
  approve "production" {
    approvals = 2
    timeout   = "24h"
  }
  get "artifact" "binary" {
    trigger = true
    passed  = ["build"]
  }
  task "ship" {
    run "exec" {
      path = "/usr/local/bin/deploy"
      args = ["--env", "$INPUT_ENVIRONMENT", "binary/app"]
    }
    inputs = ["binary/app"]
  }
}
