# The smallest useful pipeline: one job, one task, run on the host by the built-in `shell` runner.

variable "greeting" {
  type    = string
  default = "hello"
}

job "hello" {
  task "say" {
    run "shell" {
      cmd = "echo \"${var.greeting} from $BUILD_JOB_NAME\""
    }
  }
}
