# A commit of this repository flows through test → build (which puts an artifact) → deploy (which
# gets the artifact that passed build). Run it from the repository root:
#
#   pipewright run --pipeline examples/pipelines/git-to-deploy.hcl
#
# `run` checks the git resource, gets its newest commit, and hands each job the versions that
# passed the jobs before it, exactly as the server does.

variable "repo" {
  type        = string
  default     = "."
  description = "The git repository to build (a path or URL)."
}

variable "artifacts" {
  type    = string
  default = "target/pipewright-example/artifacts"
}

resource "git" "source" {
  params {
    url = var.repo
  }
  check_interval = "@every 1m"
}

resource "artifact" "bundle" {
  params {
    dir = var.artifacts
  }
}

job "test" {
  get "git" "source" {
    trigger = true
  }
  task "check" {
    run "shell" {
      cmd = <<-SH
        cd source
        test -f Cargo.toml
        echo "testing commit $GET_SOURCE_REF: $(ls crates | wc -l) crates"
      SH
    }
  }
}

job "build" {
  get "git" "source" {
    trigger = true
    passed  = ["test"]
  }
  task "package" {
    run "shell" {
      cmd = "mkdir -p out && cp source/README.md out/ && echo \"$GET_SOURCE_REF\" > out/REVISION"
    }
    outputs = ["out/REVISION"]
  }
  put "artifact" "bundle" {
    from = "out"
  }
}

job "deploy" {
  get "artifact" "bundle" {
    trigger = true
    passed  = ["build"]
  }
  task "release" {
    run "shell" {
      cmd = "echo \"deploying revision $(cat bundle/REVISION) from $GET_BUNDLE_DIGEST\""
    }
  }
}
