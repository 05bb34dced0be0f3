# A local CI run with nothing to install: `pipewright run --pipeline examples/pipelines/local-ci.hcl`.
# Shows fan-out/fan-in with in_parallel, outputs passed between steps, retries, timeouts,
# if/else on an output, and hooks at step and job level.

variable "version" {
  type    = string
  default = "1.4.0"
}

job "build" {
  timeout = "10m"

  task "prepare" {
    env = { VERSION = var.version }
    run "shell" {
      cmd = <<-SH
        mkdir -p src
        printf 'int main(void) { return 0; }\n' > src/main.c
        echo "VERSION=$VERSION" >> "$PIPEWRIGHT_OUTPUT"
        echo "CHANNEL=stable" >> "$PIPEWRIGHT_OUTPUT"
        echo "prepared version $VERSION"
      SH
    }
    outputs = ["src/main.c"]
  }

  # Fan out: three checks, at most two at a time; the build waits for all of them (fan in).
  in_parallel {
    limit     = 2
    fail_fast = true

    task "lint" {
      run "shell" {
        cmd = "grep -q 'int main' src/main.c && echo 'lint: 0 findings'"
      }
    }

    # Fails once (a simulated network blip), then passes on the second attempt.
    task "unit-tests" {
      attempts = 2
      timeout  = "1m"
      run "shell" {
        cmd = <<-SH
          if [ ! -f .blip ]; then touch .blip; echo 'fetching fixtures: connection reset' >&2; exit 1; fi
          echo 'test result: ok. 42 passed; 0 failed'
          echo "PASSED=42" >> "$PIPEWRIGHT_OUTPUT"
        SH
      }
    }

    task "docs" {
      run "shell" {
        cmd = "mkdir -p docs && echo '# app' > docs/index.md && echo 'docs: 1 page'"
      }
    }
  }

  task "package" {
    inputs  = ["src/main.c", "docs/index.md"]
    outputs = ["dist/app-${var.version}.tar"]
    run "shell" {
      cmd = "mkdir -p dist && tar -cf \"dist/app-$TASK_PREPARE_VERSION.tar\" src docs && echo \"packaged $TASK_UNIT_TESTS_PASSED-test build $TASK_PREPARE_VERSION\""
    }
    on_success "shell" {
      cmd = "ls -l dist"
    }
  }

  if "stable" {
    condition = "$TASK_PREPARE_CHANNEL == 'stable' && $TASK_UNIT_TESTS_PASSED > 0"
    task "publish" {
      run "shell" {
        cmd = "echo \"publishing app $TASK_PREPARE_VERSION to the stable channel\""
      }
    }
  }
  else {
    task "publish-preview" {
      run "shell" {
        cmd = "echo 'publishing a preview'"
      }
    }
  }

  on_failure "shell" {
    cmd = "echo \"build $BUILD_NUMBER failed\" >&2"
  }
  ensure "shell" {
    cmd = "echo \"build $BUILD_JOB_NAME #$BUILD_NUMBER finished: $BUILD_STATUS\""
  }
}
