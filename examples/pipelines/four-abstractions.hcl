# The seed system's showcase, corrected so it validates: a git resource, a Vault secret, a Postgres
# service and a Docker task in one job. (The original leaves `type` off the variable and names the
# service `postgresql` while declaring `postgres`; see docs/pipeline-language.md.)

resource_type "git" {
  source = "pipewright://git"
}

resource "git" "my-app" {
  params {
    url  = "https://github.com/org/app"
    name = "app"
  }
  check_interval = "@every 1m"
}

# A user-defined runner equivalent to the built-in `docker` runner.
runner_type "docker-cli" {
  run {
    path = "docker"
    args = ["run", "--rm", "-v", "$WORKDIR:/workdir", "-w", "/workdir", "$env", "$args", "$image", "/bin/sh", "-ec", "$cmd"]
  }
}

secret_type "vault" {
  source = "pipewright://vault"
}

variable "db_password" {
  type = string
  secret "vault" {
    path = "secret/data/db"
    key  = "password"
  }
}

service_type "postgres" {
  params = ["version", "port", "password"]
  start "exec" {
    path = "/bin/sh"
    args = ["-ec", "docker run -d --name db -e POSTGRES_PASSWORD=\"$param_password\" -p $param_port:5432 postgres:$param_version"]
  }
  ready_check "exec" {
    path     = "/bin/sh"
    args     = ["-ec", "pg_isready -h localhost -p $param_port"]
    interval = "2s"
    timeout  = "30s"
  }
  stop "exec" {
    path = "/bin/sh"
    args = ["-ec", "docker rm -f db"]
  }
}

job "test" {
  get "git" "my-app" {
    trigger = true
  }
  service "postgres" {
    version  = "17"
    port     = "5432"
    password = var.db_password
  }
  task "run-tests" {
    run "docker-cli" {
      image = "golang:1.25"
      cmd   = "cd app && make integration-test"
      args  = ["-v", "/cache/go:/root/go/pkg/mod"]
    }
    env = {
      PGPASSWORD = var.db_password
    }
  }
}
