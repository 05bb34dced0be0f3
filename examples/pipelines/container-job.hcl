# A job whose steps all run in one container: the container starts once, before the first
# step, and every `shell` and `exec` step is a `docker exec` into it. A step with its own
# runner (`run "docker"`, a `runner_type`) runs as it would anywhere else.

job "test" {
  container {
    image  = "pipewright-test/busybox:latest"
    pull   = "never"
    env    = { CACHE_DIR = "/workdir/.cache" }
    mounts = ["/etc/hostname:/host-hostname:ro"]
  }

  task "prepare" {
    run "shell" {
      # Outside the workspace, yet the next step sees it: both run in the same container.
      cmd = "mkdir -p $CACHE_DIR && echo ready > /tmp/state"
    }
  }

  task "check" {
    run "shell" {
      cmd = "test \"$(cat /tmp/state)\" = ready && echo \"status=ok\" >> $PIPEWRIGHT_OUTPUT"
    }
  }

  task "report" {
    # Values reach the step through its environment, expanded from earlier steps' outputs.
    env = { STATUS = "$TASK_CHECK_STATUS" }
    run "exec" {
      path = "/bin/sh"
      args = ["-c", "echo \"check said $STATUS\""]
    }
  }
}
