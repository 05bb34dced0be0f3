# The smallest useful pipeline: one job, one task, run on the host by the built-in `shell` runner.

variable "greeting" {
  type    = string
  default = "hello"
}

job "hello" {
  task "say" {
    # Values reach commands through the environment, never spliced into the script: a
    # `--var greeting='$(rm -rf ~)'` stays text.
    env = { GREETING = var.greeting }
    run "shell" {
      cmd = "echo \"$GREETING from $BUILD_JOB_NAME\""
    }
  }
}
