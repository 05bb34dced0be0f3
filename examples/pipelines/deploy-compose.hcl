# Build an image, push it to a registry, deploy it with docker compose on this machine, smoke-test
# it, and roll back to the image that was live before when the smoke test fails.
#
# Needs a Docker engine, docker compose (the v2 plugin or Debian's docker-compose), the base image
# from ci/docker-test-image.sh and a registry on 127.0.0.1:5000 without a login (docs/images.md
# shows a minimal config for Debian's docker-registry). From the repository root:
#
#   pipewright run --pipeline examples/pipelines/deploy-compose.hcl
#   curl http://127.0.0.1:18080/                                # hello from pipewright
#
# A release that fails its smoke test is rolled back, and the run fails:
#
#   pipewright run --pipeline examples/pipelines/deploy-compose.hcl --var message=broken
#   curl http://127.0.0.1:18080/                                # still hello from pipewright
#
# examples/pipelines/deploy-compose/deploy.sh down stops the service.

variable "registry" {
  type        = string
  default     = "127.0.0.1:5000"
  description = "The registry to push to (plain HTTP on this machine)."
}

variable "message" {
  type        = string
  default     = "hello from pipewright"
  description = "What the page of the built release says."
}

variable "expect" {
  type        = string
  default     = "hello from pipewright"
  description = "What the smoke test wants to read."
}

variable "port" {
  type    = string
  default = "18080"
}

resource "fs" "web" {
  params {
    path = "examples/pipelines/deploy-compose"
  }
}

resource "registry-image" "web-image" {
  params {
    repository = "${var.registry}/examples/web"
    tag_regex  = "[0-9]{14}"
    insecure   = true
    # With a registry that needs a login:
    # username = "ci"
    # password = "((secret:REGISTRY_PASSWORD))"
  }
}

job "build" {
  get "fs" "web" {
    trigger = true
  }
  task "release" {
    env = { MESSAGE = var.message }
    run "shell" {
      cmd = <<-SH
        printf '%s\n' "$MESSAGE" > web/www/index.html
        date -u +%Y%m%d%H%M%S > tag
        echo "release $(cat tag): $(cat web/www/index.html)"
      SH
    }
  }
  put "registry-image" "web-image" {
    build    = "web"
    tag_file = "tag"
    tags     = ["latest"]
  }
}

job "deploy" {
  get "fs" "web" {
    passed = ["build"]
  }
  get "registry-image" "web-image" {
    trigger = true
    passed  = ["build"]
  }
  task "up" {
    env = { PORT = var.port }
    run "shell" {
      cmd = "web/deploy.sh up \"$(cat web-image/image)\""
    }
  }
  task "smoke" {
    env = {
      PORT   = var.port
      EXPECT = var.expect
    }
    run "shell" {
      cmd = <<-SH
        page=$(curl -fsS --retry 20 --retry-connrefused --retry-delay 1 "http://127.0.0.1:$PORT/")
        echo "the service says: $page"
        case "$page" in
          *"$EXPECT"*) ;;
          *) echo "smoke test failed: expected \"$EXPECT\"" >&2; exit 1 ;;
        esac
      SH
    }
  }
  on_failure {
    task "rollback" {
      env = { PORT = var.port }
      run "shell" {
        # PREVIOUS_IMAGE: set by `up` through $PIPEWRIGHT_ENV.
        cmd = "web/deploy.sh rollback"
      }
    }
  }
}
