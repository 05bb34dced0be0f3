# A Python project's CI ported from GitHub Actions: tests on several Python versions, typing,
# style, then a wheel and an sdist built and checked in a fresh environment. Runs offline with
# nothing to install (the tools are simulated with the shell), from the repository root:
#
#   pipewright run --pipeline examples/pipelines/python-project.hcl
#   pipewright run --pipeline examples/pipelines/python-project.hcl --job test   # every instance
#
# Shows a matrix with `exclude` and `include`, a group in `passed` and `--job`, job-wide
# variables through `$PIPEWRIGHT_ENV`, expanded `env` values and globbed `outputs`.

resource "fs" "src" {
  params { path = "examples/pipelines/python-project" }
}

# test--3-11-linux, test--3-12-linux, test--3-13-linux (with coverage), test--3-13-macos,
# test--3-14-linux (experimental).
job "test" {
  matrix {
    python  = ["3.11", "3.12", "3.13"]
    os      = ["linux", "macos"]
    exclude = [{ os = "macos", python = "3.11" }, { os = "macos", python = "3.12" }]
    include = [
      { python = "3.13", os = "linux", coverage = "yes" },
      { python = "3.14", os = "linux", experimental = "yes" },
    ]
  }

  get "fs" "src" { trigger = true }

  # What GitHub's `$GITHUB_ENV` does: every later step of the job sees these.
  task "setup-python" {
    env = { PY = each.value.python }
    run "shell" {
      cmd = <<-SH
        mkdir -p "venv-$PY/bin"
        echo "VIRTUAL_ENV=$WORKDIR/venv-$PY" >> "$PIPEWRIGHT_ENV"
        echo "PYTHON_VERSION=$PY" >> "$PIPEWRIGHT_ENV"
        echo "python $PY ready"
      SH
    }
  }

  task "pytest" {
    env = {
      PIP_CACHE_DIR = "$WORKDIR/.pip"
      COVERAGE      = each.value.coverage
      OS            = each.value.os
    }
    outputs = ["reports/junit-*.xml"]
    run "shell" {
      cmd = <<-SH
        test -d "$VIRTUAL_ENV" && mkdir -p "$PIP_CACHE_DIR" reports
        grep -q 'def test_add' src/tests/test_demo.py
        echo "<testsuite tests='1' failures='0'/>" > "reports/junit-$PYTHON_VERSION-$OS.xml"
        echo "python $PYTHON_VERSION on $OS: 1 passed"
        if [ "$COVERAGE" = yes ]; then echo 'coverage: 100%'; fi
      SH
    }
  }
}

job "typing" {
  get "fs" "src" { trigger = true }
  task "mypy" {
    run "shell" {
      cmd = "grep -q -- '-> int' src/src/demo/__init__.py && echo 'Success: no issues found in 1 source file'"
    }
  }
}

job "style" {
  get "fs" "src" { trigger = true }
  task "ruff" {
    run "shell" { cmd = "! grep -n '	' src/src/demo/__init__.py && echo 'All checks passed!'" }
  }
}

job "package" {
  # `test` is the matrix group: every instance must have passed.
  get "fs" "src" { passed = ["test", "typing", "style"] }

  task "build" {
    # The file names carry the version, so the outputs are globs.
    outputs = ["dist/*.whl", "dist/*.tar.gz"]
    run "shell" {
      cmd = <<-SH
        version=$(sed -n 's/^version = "\(.*\)"/\1/p' src/pyproject.toml)
        mkdir -p dist
        tar -czf "dist/demo-$version.tar.gz" -C src .
        tar -cf "dist/demo-$version-py3-none-any.whl" -C src/src demo
        ls dist
      SH
    }
  }

  task "fresh-env" {
    run "shell" { cmd = "mkdir -p fresh && echo \"VIRTUAL_ENV=$WORKDIR/fresh\" >> \"$PIPEWRIGHT_ENV\"" }
  }

  task "verify" {
    inputs = ["dist"]
    run "shell" {
      cmd = <<-SH
        for f in dist/*.whl; do tar -xf "$f" -C "$VIRTUAL_ENV"; done
        test -f "$VIRTUAL_ENV/demo/__init__.py" && echo "wheel installs into $VIRTUAL_ENV"
        tar -tzf dist/*.tar.gz | grep -q pyproject.toml && echo 'sdist has pyproject.toml'
      SH
    }
  }
}
