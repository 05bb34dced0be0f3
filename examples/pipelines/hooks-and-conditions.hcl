# Conditions, hooks at every level, retries, timeouts, outputs passed between steps, and
# notifications.

notification_type "webhook" {
  params = ["url"]
  notify "shell" {
    cmd = "curl -fsS -X POST -d \"$NOTIFY_MESSAGE\" \"$param_url\""
  }
}

notification "webhook" "team" {
  params {
    url = "https://chat.example.com/hooks/ci"
  }
  message = "$BUILD_JOB_NAME #$BUILD_NUMBER: $notify_build_status"
  on      = ["failure", "cancel"]
  jobs    = ["release"]
}

resource "fs" "src" {
  params {
    path = "./src"
  }
}

job "release" {
  timeout       = "1h"
  allow_failure = false

  get "fs" "src" {
    trigger  = true
    attempts = 3
    timeout  = "2m"
  }

  task "version" {
    run "shell" {
      cmd = "echo VERSION=1.4.0 >> \"$PIPEWRIGHT_OUTPUT\"; echo CHANNEL=stable >> \"$PIPEWRIGHT_OUTPUT\""
    }
  }

  if "stable" {
    condition = "$TASK_VERSION_CHANNEL == 'stable' && $TASK_VERSION_VERSION !contains 'rc'"
    task "publish" {
      run "shell" {
        cmd = "echo publishing $TASK_VERSION_VERSION"
      }
      attempts = 3
      timeout  = "5m"
      on_failure "shell" {
        cmd = "echo publish failed after retries"
      }
    }
  }
  else_if "beta" {
    condition = "$TASK_VERSION_CHANNEL == beta"
    task "publish-beta" {
      run "shell" {
        cmd = "echo beta"
      }
    }
  }
  else {
    task "skip" {
      run "shell" {
        cmd = "echo nothing to publish"
      }
    }
  }

  in_parallel {
    limit     = 2
    fail_fast = true
    task "docs" {
      run "shell" {
        cmd = "echo docs"
      }
    }
    task "changelog" {
      run "shell" {
        cmd = "echo changelog"
      }
    }
    notify "webhook" "team" {
      message = "release $TASK_VERSION_VERSION is out"
    }
    ensure "shell" {
      cmd = "echo parallel group done"
    }
  }

  on_success {
    notify "webhook" "team" {
      message = "released"
    }
  }
  on_failure "shell" {
    cmd = "echo \"build ended: $BUILD_STATUS\""
  }
  on_cancel "shell" {
    cmd = "echo cancelled"
  }
  ensure "shell" {
    cmd = "echo always runs, status $BUILD_STATUS"
  }
}
