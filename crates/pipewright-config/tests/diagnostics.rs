//! Snapshot tests of rendered diagnostics: one case per kind of mistake.

use pipewright_config::{LoadOptions, load_str};

fn render(src: &str) -> String {
    render_with(src, &LoadOptions::default())
}

fn render_with(src: &str, opts: &LoadOptions) -> String {
    match load_str("pipeline.hcl", src, opts) {
        Ok(l) if l.warnings.is_empty() => {
            panic!("expected diagnostics, the pipeline loaded cleanly")
        }
        Ok(l) => pipewright_config::render(&l.warnings, &l.sources, false),
        Err(e) => e.render(false),
    }
}

macro_rules! case {
    ($name:ident, $src:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(render($src));
        }
    };
}

case!(
    syntax_error,
    "job \"a\" {\n  task \"t\" {\n    run \"shell\" { cmd = \"x\" \n}\n"
);

case!(
    unknown_attribute_typo,
    r#"
resource "git" "app" {
  params { url = "u" }
}
job "test" {
  get "git" "app" {
    triggr = true
  }
}
"#
);

case!(
    job_container_errors,
    r#"
job "test" {
  container {
    imgae  = "busybox"
    mounts = ["cache:/cache"]
    pull   = "sometimes"
  }
  container {
    image = "alpine"
  }
  task "a" {
    run "shell" { cmd = "true" }
  }
}
"#
);

case!(
    unknown_block,
    r#"
job "test" {
  taks "unit" {
    run "shell" { cmd = "true" }
  }
}
"#
);

case!(
    unknown_top_level_block,
    "runner \"k8s\" {\n  run { path = \"kubectl\" }\n}\n"
);

case!(top_level_attribute, "name = \"my pipeline\"\n");

case!(
    undeclared_resource,
    r#"
resource "git" "app" {
  params { url = "u" }
}
job "test" {
  get "git" "ap" { trigger = true }
}
"#
);

case!(
    undeclared_resource_type,
    r#"
resource "gti" "app" {
  params { url = "u" }
}
"#
);

case!(
    unknown_runner,
    r#"
job "test" {
  task "unit" {
    run "dokcer" {
      image = "alpine"
      cmd   = "true"
    }
  }
}
"#
);

case!(
    builtin_runner_missing_param,
    r#"
job "test" {
  task "unit" {
    run "shell" {
      cmd  = "make"
      file = "build.sh"
    }
  }
  task "other" {
    run "exec" {
      args = ["x"]
    }
  }
}
"#
);

case!(
    unknown_service_type,
    r#"
service_type "postgres" {
  start "exec" { path = "pg_ctl" }
  stop "exec" { path = "pg_ctl" }
}
job "test" {
  service "postgrse" {}
}
"#
);

case!(
    unknown_secret_type,
    r#"
variable "token" {
  type = string
  secret "valut" {
    key = "token"
  }
}
"#
);

case!(
    unknown_passed_job,
    r#"
resource "git" "app" {
  params { url = "u" }
}
job "build" {
  get "git" "app" { trigger = true }
}
job "deploy" {
  get "git" "app" {
    passed = ["biuld"]
  }
}
"#
);

case!(
    passed_cycle,
    r#"
resource "git" "app" {
  params { url = "u" }
}
job "a" {
  get "git" "app" { passed = ["c"] }
}
job "b" {
  get "git" "app" { passed = ["a"] }
}
job "c" {
  get "git" "app" { passed = ["b"] }
}
"#
);

case!(
    passed_job_without_resource,
    r#"
resource "git" "app" {
  params { url = "u" }
}
job "lint" {
  task "t" {
    run "shell" { cmd = "true" }
  }
}
job "deploy" {
  get "git" "app" { passed = ["lint"] }
}
"#
);

case!(
    variable_type_mismatch,
    r#"
variable "replicas" {
  type    = number
  default = "three"
}
"#
);

case!(
    variable_unknown_type,
    r#"
variable "replicas" {
  type    = integer
  default = 3
}
"#
);

case!(
    variable_without_value,
    r#"
variable "region" {
  type = string
}
"#
);

case!(
    unknown_variable_reference,
    r#"
variable "region" {
  type    = string
  default = "eu"
}
job "test" {
  task "t" {
    run "shell" { cmd = "echo ${var.regoin}" }
  }
}
"#
);

case!(
    unknown_function,
    r#"
job "test" {
  task "t" {
    run "shell" { cmd = uper("x") }
  }
}
"#
);

case!(
    invalid_duration,
    r#"
job "test" {
  timeout = "10 minutes"
  task "t" {
    run "shell" { cmd = "true" }
  }
}
"#
);

case!(
    invalid_cron,
    r#"
resource "git" "app" {
  params { url = "u" }
  check_interval = "61 * * * *"
}
"#
);

case!(
    check_interval_too_short,
    r#"
resource "git" "app" {
  params { url = "u" }
  check_interval = "@every 5s"
}
"#
);

case!(
    invalid_condition,
    r#"
job "test" {
  if "main" {
    condition = "$BRANCH = 'main'"
    task "t" {
      run "shell" { cmd = "true" }
    }
  }
}
"#
);

case!(
    else_without_if,
    r#"
job "test" {
  else {
    task "t" {
      run "shell" { cmd = "true" }
    }
  }
}
"#
);

case!(
    duplicate_job,
    r#"
job "test" {
  task "t" {
    run "shell" { cmd = "true" }
  }
}
job "test" {
  task "t" {
    run "shell" { cmd = "true" }
  }
}
"#
);

case!(
    duplicate_attribute,
    r#"
job "test" {
  concurrency = 1
  concurrency = 2
  task "t" {
    run "shell" { cmd = "true" }
  }
}
"#
);

case!(
    wrong_label_count,
    r#"
resource "app" {
  params { url = "u" }
}
"#
);

case!(
    task_without_run,
    r#"
job "test" {
  task "t" {
    timeout = "5m"
  }
}
"#
);

case!(
    nested_in_parallel,
    r#"
job "test" {
  in_parallel {
    in_parallel {
      task "t" {
        run "shell" { cmd = "true" }
      }
    }
  }
}
"#
);

case!(
    source_and_inline,
    r#"
resource_type "git" {
  source = "pipewright://git"
  check "exec" { path = "true" }
}
"#
);

case!(
    unknown_builtin_source,
    r#"
resource_type "repo" {
  source = "pikoci://gti"
}
"#
);

case!(
    put_without_push,
    r#"
resource_type "feed" {
  check "exec" { path = "true" }
  pull "exec" { path = "true" }
}
resource "feed" "news" {}
job "publish" {
  put "feed" "news" {}
}
"#
);

case!(
    bad_slug_and_attempts,
    r#"
job "test" {
  tags = ["Linux Box"]
  task "t" {
    run "shell" { cmd = "true" }
    attempts = 0
  }
}
"#
);

case!(
    input_options_on_number,
    r#"
job "deploy" {
  input "count" {
    type    = number
    options = ["1", "2"]
  }
  task "t" {
    run "shell" { cmd = "true" }
  }
}
"#
);

case!(
    notification_filter_without_on,
    r#"
notification_type "chat" {
  notify "shell" { cmd = "true" }
}
notification "chat" "team" {
  jobs = ["build"]
}
job "build" {
  task "t" {
    run "shell" { cmd = "true" }
  }
}
"#
);

case!(
    builtin_notification_unknown_param,
    r#"
notification "slack" "team" {
  params {
    url     = "https://hooks.slack.example/services/T/B/X"
    chanel  = "ci-alerts"
  }
  on = ["broken", "fixd"]
}
job "build" {
  task "t" {
    run "shell" { cmd = "true" }
  }
  notify "slack" "team" {
    colour = "red"
  }
}
"#
);

case!(
    builtin_notification_missing_param,
    r#"
notification "github-check" "status" {
  params {
    repository = "acme/shop"
  }
  on = ["all"]
}
job "build" {
  task "t" {
    run "shell" { cmd = "true" }
  }
}
"#
);

case!(
    builtin_notification_through_source_checks_params,
    r#"
notification_type "chat" {
  source = "pipewright://discord"
}
notification "chat" "team" {
  params {
    url      = "https://discord.example/api/webhooks/1/x"
    avatar   = "https://example.com/ci.png"
  }
}
"#
);

case!(
    secret_chain_cycle,
    r#"
variable "a" {
  type = string
  secret "env" {
    key = "A_${var.b}"
  }
}
variable "b" {
  type = string
  secret "env" {
    key = "B_${var.a}"
  }
}
"#
);

case!(
    put_param_typo_warning,
    r#"
resource "git" "app" {
  params { url = "u" }
}
job "push" {
  put "git" "app" {
    timout = "5m"
  }
}
"#
);

case!(
    each_outside_for_each,
    r#"
job "test" {
  task "t" {
    run "shell" { cmd = each.key }
  }
}
"#
);

case!(
    literal_dollar_brace_hint,
    "job \"t\" {\n  task \"t\" {\n    run \"shell\" { cmd = \"echo ${HOME:-/root}\" }\n  }\n}\n"
);

case!(
    many_errors_in_one_pass,
    r#"
resource "git" "app" {
  params { url = "u" }
  check_intervall = "@every 1m"
}
job "test" {
  get "git" "app" { trigger = "yes" }
  task "t" {
    run "shell" { cmd = "true" }
    timeout = "soon"
  }
}
job "deploy" {
  get "git" "app" { passed = ["tests"] }
}
"#
);

case!(
    git_values_git_would_read_as_options,
    r#"
variable "branch" {
  type    = string
  default = "--output=/tmp/x"
}
resource "git" "app" {
  params {
    url    = "--upload-pack=touch /tmp/pwned"
    branch = var.branch
    paths  = ["-docs"]
  }
}
resource "fs" "out" {
  params { path = "-out" }
}
job "release" {
  get "git" "app" {
    version = { ref = "--all" }
  }
  put "git" "app" {
    tag = "-d"
  }
  put "fs" "out" {}
}
"#
);

#[test]
fn cli_var_errors() {
    let src = "variable \"replicas\" {\n  type = number\n  default = 1\n}\n";
    let opts = LoadOptions {
        vars: vec![
            ("replicas".into(), "many".into()),
            ("replica".into(), "2".into()),
        ],
        ..LoadOptions::default()
    };
    insta::assert_snapshot!(render_with(src, &opts));
}

/// The seed document's example loads unchanged: a `variable` without `type` is a string and
/// `service "postgresql"` is the built-in postgres service.
#[test]
fn seed_example_loads_unchanged() {
    let src = include_str!("fixtures/seed.hcl");
    let loaded = match load_str("seed.hcl", src, &LoadOptions::default()) {
        Ok(l) => l,
        Err(e) => panic!("{}", e.render(false)),
    };
    let p = &loaded.pipeline;
    assert_eq!(
        p.variables["db_password"].ty,
        pipewright_config::VarType::String
    );
    assert!(
        p.jobs["test"]
            .all_steps()
            .iter()
            .any(|s| s.name == "postgresql")
    );
}

case!(
    runner_param_typos,
    r#"
job "test" {
  task "a" {
    run "shell" {
      comd = "true"
      shel = "/bin/bash"
    }
  }
  task "b" {
    run "exec" {
      path = "/bin/true"
      pth  = "/bin/false"
    }
  }
}
"#
);

case!(
    env_inside_a_run_block,
    r#"
job "test" {
  task "a" {
    run "shell" {
      cmd = "echo $TOKEN"
      env = { TOKEN = "x" }
    }
  }
}
"#
);

case!(
    step_names_that_export_the_same_variables,
    r#"
job "test" {
  task "a-b" {
    run "shell" { cmd = "true" }
  }
  task "A_B" {
    run "shell" { cmd = "true" }
  }
  task "line\nbreak" {
    run "shell" { cmd = "true" }
  }
}
"#
);

case!(
    variable_spliced_into_a_shell_command,
    r#"
variable "greeting" {
  type    = string
  default = "hi"
}
job "test" {
  task "a" {
    run "shell" { cmd = "echo ${var.greeting} ${shellquote(var.greeting)} $${HOME}" }
  }
}
"#
);

case!(
    builtin_resource_param_typo,
    r#"
resource "git" "app" {
  params {
    url         = "https://example.com/app.git"
    ignore_path = ["README.md"]
  }
}
job "build" {
  get "git" "app" { trigger = true }
  put "git" "app" {
    repositry = "app"
  }
}
"#
);

case!(
    output_glob_that_does_not_parse,
    r#"
job "build" {
  task "wheel" {
    outputs = ["dist/*.whl", "dist/[x"]
    run "shell" { cmd = "true" }
  }
}
"#
);

case!(
    declared_resource_type_param_typo,
    r#"
resource_type "semver" {
  params = ["initial"]
  check "shell" { cmd = "echo '[]'" }
}
resource "semver" "v" {
  params { intial = "1.0.0" }
}
"#
);
