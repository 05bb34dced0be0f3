# Every kind of user-defined type: resource, runner, service and secret types, inline and from a
# file; chained secrets; a resource type re-targeted to another runner.

resource_type "http-file" {
  source = "./types/http-file.hcl"
}

resource_type "semver" {
  params = ["initial"]
  check "exec" {
    path = "/bin/sh"
    args = ["-ec", "echo \"[{\\\"number\\\":\\\"$${version_number:-$param_initial}\\\"}]\""]
  }
  pull "exec" {
    path = "/bin/sh"
    args = ["-ec", "mkdir -p version && echo \"$version_number\" > version/number"]
  }
  push "exec" {
    path = "/bin/sh"
    args = ["-ec", "n=$(cat \"$put_file\"); echo \"[{\\\"number\\\":\\\"$n\\\"}]\""]
  }
  runner "docker" {
    image = "alpine:3.20"
    cmd   = "unused"
  }
}

runner_type "nice" {
  run {
    path = "nice"
    args = ["-n", "10", "$path", "$args"]
  }
}

secret_type "pass" {
  params = ["store"]
  store  = "~/.password-store"
  get "shell" {
    cmd = "printf '{\"%s\":\"%s\"}\\n' \"$param_key\" \"$(pass show \"$param_path\")\""
  }
}

service_type "redis" {
  params = ["port"]
  start "shell" {
    cmd = "redis-server --port $${param_port:-6399} --daemonize yes"
  }
  ready_check "shell" {
    cmd      = "redis-cli -p $${param_port:-6399} ping"
    interval = "500ms"
    timeout  = "20s"
  }
  stop "shell" {
    cmd = "redis-cli -p $${param_port:-6399} shutdown nosave"
  }
}

variable "team" {
  type    = string
  default = "platform"
}

variable "vault_role" {
  type = string
  secret "env" {
    key = "CI_ROLE"
  }
}

variable "deploy_token" {
  type = string
  secret "vault" {
    path = "secret/data/${var.team}/${var.vault_role}"
    key  = "token"
  }
}

variable "replicas" {
  type    = number
  default = 2
}

variable "dry_run" {
  type    = bool
  default = true
}

resource "http-file" "schema" {
  params {
    url  = "https://example.com/schema.json"
    name = "schema"
  }
  check_interval = "@every 10m"
  tags           = ["linux"]
}

resource "semver" "version" {
  params {
    initial = "0.1.0"
  }
  cache = false
}

job "package" {
  get "http-file" "schema" {
    trigger = true
  }
  get "semver" "version" {
    version = "every"
  }
  service "redis" {
    port = "6400"
  }
  task "bundle" {
    run "nice" {
      path = "/bin/sh"
      args = ["-ec", "echo ${var.replicas} replicas, dry run ${var.dry_run}"]
    }
    env = {
      TOKEN = var.deploy_token
      TEAM  = upper(var.team)
    }
    caches = [".cache"]
  }
  put "semver" "version" {
    file = "version/number"
  }
}
