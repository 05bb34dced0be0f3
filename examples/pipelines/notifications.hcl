# Built-in notifications (docs/notifications.md): the team hears when the build breaks and when
# it is fixed, the forge gets a commit status for every build, on-call gets an email when a
# release fails. Validate with `pipewright validate examples/pipelines/notifications.hcl`;
# running it needs the secrets below in the environment.

variable "slack_webhook" {
  type = string
  secret "env" { key = "SLACK_WEBHOOK_URL" }
}

variable "github_token" {
  type = string
  secret "env" { key = "GITHUB_TOKEN" }
}

variable "smtp_password" {
  type = string
  secret "env" { key = "SMTP_PASSWORD" }
}

resource "git" "src" {
  params {
    url    = "https://github.com/acme/shop.git"
    branch = "main"
  }
}

notification "slack" "team" {
  params { url = var.slack_webhook }
  message = "$BUILD_PIPELINE_NAME/$BUILD_JOB_NAME #$BUILD_NUMBER is $BUILD_STATUS ($GET_SRC_REF)"
  on      = ["broken", "fixed"]
}

notification "github-check" "status" {
  params {
    token      = var.github_token
    repository = "acme/shop"
    context    = "pipewright/$BUILD_JOB_NAME"
  }
  on = ["all"]
}

notification "email" "oncall" {
  params {
    host     = "smtp.example.com"
    username = "ci"
    password = var.smtp_password
    from     = "Pipewright <ci@example.com>"
    to       = ["oncall@example.com"]
    subject  = "[$BUILD_PIPELINE_NAME] release #$BUILD_NUMBER $BUILD_STATUS"
  }
  message = "The release of $GET_SRC_REF ended: $BUILD_STATUS."
  on      = ["failure"]
  jobs    = ["release"]
}

job "test" {
  get "git" "src" { trigger = true }
  task "unit" {
    run "shell" { cmd = "cd src && echo testing" }
  }
}

job "release" {
  get "git" "src" {
    trigger = true
    passed  = ["test"]
  }
  notify "slack" "team" {
    message = "releasing $GET_SRC_REF"
  }
  task "publish" {
    run "shell" { cmd = "echo publishing" }
  }
}
