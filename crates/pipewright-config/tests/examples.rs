//! Loads every example pipeline and checks the typed model, not just "no error".

use pipewright_config::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipelines")
}

fn load(name: &str) -> Pipeline {
    match load_file(&examples_dir().join(name), &LoadOptions::default()) {
        Ok(l) => {
            assert!(
                l.warnings.is_empty(),
                "{}",
                render(&l.warnings, &l.sources, false)
            );
            l.pipeline
        }
        Err(e) => panic!("{name}:\n{}", e.render(false)),
    }
}

fn step<'a>(job: &'a Job, name: &str) -> &'a Step {
    job.all_steps()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name} in {}", job.name))
}

#[test]
fn every_example_is_covered_by_a_test() {
    let mut names: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".hcl"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "container-job.hcl",
            "custom-types.hcl",
            "deploy-compose.hcl",
            "fan-out-fan-in.hcl",
            "four-abstractions.hcl",
            "git-to-deploy.hcl",
            "hello.hcl",
            "hooks-and-conditions.hcl",
            "image-service.hcl",
            "local-ci.hcl",
            "notifications.hcl",
            "python-project.hcl"
        ]
    );
}

#[test]
fn hello() {
    let p = load("hello.hcl");
    assert_eq!(p.variables["greeting"].value, "hello");
    assert_eq!(p.variables["greeting"].origin, VarOrigin::Default);
    let job = &p.jobs["hello"];
    let StepKind::Task(t) = &job.steps[0].kind else {
        panic!("not a task")
    };
    assert_eq!(t.run.runner, "shell");
    assert_eq!(
        t.run.params.get_str("cmd").unwrap(),
        "echo \"$GREETING from $BUILD_JOB_NAME\""
    );
    assert_eq!(t.env["GREETING"], "hello");
}

#[test]
fn image_service_example() {
    let p = load("image-service.hcl");
    let job = &p.jobs["integration"];
    let StepKind::Service(s) = &step(job, "db").kind else {
        panic!("not a service")
    };
    assert!(
        pipewright_config::image_service(&p, s),
        "`image` makes it a container service"
    );
    assert_eq!(
        s.params.get_str("image").unwrap(),
        "pipewright-test/postgres:latest"
    );
    assert_eq!(s.params.get("ports"), Some(&serde_json::json!([5432])));
    assert_eq!(
        s.params.get("env"),
        Some(&serde_json::json!({"POSTGRES_PASSWORD": "test"}))
    );
}

#[test]
fn container_job() {
    let p = load("container-job.hcl");
    let job = &p.jobs["test"];
    let c = job.container.as_ref().expect("a container block");
    assert_eq!(
        c.params.get_str("image").as_deref(),
        Some("pipewright-test/busybox:latest")
    );
    assert_eq!(c.params.get_str("pull").as_deref(), Some("never"));
    assert_eq!(
        c.params.get("env"),
        Some(&serde_json::json!({ "CACHE_DIR": "/workdir/.cache" }))
    );
    assert_eq!(c.mounts, ["/etc/hostname:/host-hostname:ro"]);
    assert_eq!(job.steps.len(), 3);
    // Jobs without the block have none.
    let p = load("hello.hcl");
    assert!(p.jobs["hello"].container.is_none());
}

#[test]
fn git_to_deploy() {
    let p = load("git-to-deploy.hcl");
    assert_eq!(
        p.resources["git.source"].params.get_str("url").unwrap(),
        "."
    );
    assert_eq!(
        p.resources["git.source"].check_interval,
        Some(Schedule::Every(Duration::from_secs(60)))
    );
    let edges = passed_edges(&p);
    assert_eq!(
        edges,
        [
            (
                "test".to_owned(),
                "build".to_owned(),
                "git.source".to_owned()
            ),
            (
                "build".to_owned(),
                "deploy".to_owned(),
                "artifact.bundle".to_owned()
            ),
        ]
    );
    let StepKind::Put(put) = &p.jobs["build"].steps[2].kind else {
        panic!("build ends with a put")
    };
    assert_eq!(put.params.get_str("from").unwrap(), "out");
}

#[test]
fn local_ci() {
    let p = load("local-ci.hcl");
    let job = &p.jobs["build"];
    assert_eq!(job.timeout, Some(Duration::from_secs(600)));
    let StepKind::InParallel(par) = &job.steps[1].kind else {
        panic!("the second step fans out")
    };
    assert_eq!((par.limit, par.fail_fast, par.steps.len()), (2, true, 3));
    let unit = step(job, "unit-tests");
    assert_eq!(
        (unit.attempts, unit.timeout),
        (2, Some(Duration::from_secs(60)))
    );
    let StepKind::Task(package) = &step(job, "package").kind else {
        panic!("package is a task")
    };
    assert_eq!(package.outputs, ["dist/app-1.4.0.tar"]);
    let StepKind::If(chain) = &job.steps[3].kind else {
        panic!("then a condition")
    };
    assert_eq!(
        chain.branches[0].condition.variables(),
        ["TASK_PREPARE_CHANNEL", "TASK_UNIT_TESTS_PASSED"]
    );
    assert!(chain.else_steps.is_some());
    assert_eq!(job.hooks.on_failure.len(), 1);
    assert_eq!(job.hooks.ensure.len(), 1);
}

#[test]
fn notifications() {
    let p = load("notifications.hcl");
    let slack = &p.notifications["slack.team"];
    assert_eq!(slack.on, ["broken", "fixed"]);
    assert!(
        p.notification_types.is_empty(),
        "built-in types need no block"
    );
    let status = &p.notifications["github-check.status"];
    assert_eq!(status.params.get_str("repository").unwrap(), "acme/shop");
    // A secret param stays a placeholder until the notification is sent.
    assert_eq!(
        status.params.get_str("token").unwrap(),
        secret_placeholder("github_token")
    );
    let email = &p.notifications["email.oncall"];
    assert_eq!(
        (email.on.as_slice(), email.jobs.as_slice()),
        (&["failure".to_owned()][..], &["release".to_owned()][..])
    );
    let StepKind::Notify(n) = &step(&p.jobs["release"], "team").kind else {
        panic!("not a notify step")
    };
    assert_eq!(n.notification, "slack.team");
    assert_eq!(n.message.as_deref(), Some("releasing $GET_SRC_REF"));
}

#[test]
fn hello_with_var_override() {
    let opts = LoadOptions {
        vars: vec![("greeting".into(), "hi".into())],
        ..LoadOptions::default()
    };
    let l = load_file(&examples_dir().join("hello.hcl"), &opts).unwrap();
    assert_eq!(l.pipeline.variables["greeting"].origin, VarOrigin::Cli);
    let StepKind::Task(t) = &l.pipeline.jobs["hello"].steps[0].kind else {
        panic!()
    };
    assert!(t.env["GREETING"] == "hi");
}

#[test]
fn four_abstractions() {
    let p = load("four-abstractions.hcl");
    assert_eq!(
        p.resource_types["git"].source,
        TypeSource::Builtin { name: "git".into() }
    );
    let r = &p.resources["git.my-app"];
    assert_eq!(
        r.params.get_str("url").unwrap(),
        "https://github.com/org/app"
    );
    assert_eq!(
        r.check_interval,
        Some(Schedule::Every(Duration::from_secs(60)))
    );
    let v = &p.variables["db_password"];
    assert_eq!(v.origin, VarOrigin::Secret);
    assert_eq!(v.value, "((secret:db_password))");
    assert_eq!(
        v.secret,
        Some(SecretBinding {
            secret_type: "vault".into(),
            path: "secret/data/db".into(),
            key: "password".into()
        })
    );
    let svc = &p.service_types["postgres"];
    assert_eq!(svc.params, ["version", "port", "password"]);
    assert_eq!(svc.commands.keys().collect::<Vec<_>>(), ["start", "stop"]);
    let rc = svc.ready_check.as_ref().unwrap();
    assert_eq!(
        (rc.interval, rc.timeout),
        (Duration::from_secs(2), Duration::from_secs(30))
    );
    assert_eq!(
        p.runner_types["docker-cli"].run.as_ref().unwrap().path,
        "docker"
    );

    let job = &p.jobs["test"];
    let kinds: Vec<&str> = job.steps.iter().map(|s| s.kind.keyword()).collect();
    assert_eq!(kinds, ["get", "service", "task"]);
    let StepKind::Get(g) = &job.steps[0].kind else {
        panic!()
    };
    assert!(g.trigger);
    let StepKind::Service(s) = &job.steps[1].kind else {
        panic!()
    };
    assert_eq!(
        s.params.get_str("password").unwrap(),
        "((secret:db_password))"
    );
    let StepKind::Task(t) = &job.steps[2].kind else {
        panic!()
    };
    assert_eq!(t.run.args, ["-v", "/cache/go:/root/go/pkg/mod"]);
    assert_eq!(t.env["PGPASSWORD"], "((secret:db_password))");
}

#[test]
fn fan_out_fan_in() {
    let p = load("fan-out-fan-in.hcl");
    assert_eq!(
        p.groups["test"],
        [
            "test--linux-stable",
            "test--linux-1-88",
            "test--macos-stable",
            "test--macos-1-88"
        ]
    );
    assert_eq!(
        p.groups["integration"],
        ["integration--postgres", "integration--sqlite"]
    );
    let t = &p.jobs["test--macos-1-88"];
    assert_eq!(t.tags, ["macos"]);
    assert_eq!(t.group.as_deref(), Some("test"));
    let StepKind::Task(unit) = &step(t, "unit").kind else {
        panic!()
    };
    assert_eq!(
        unit.run.params.get_str("cmd").unwrap(),
        "cd app && cargo +1.88 test"
    );
    assert_eq!(step(t, "unit").attempts, 2);
    let StepKind::Task(suite) = &step(&p.jobs["integration--sqlite"], "suite").kind else {
        panic!()
    };
    assert!(
        suite
            .run
            .params
            .get_str("cmd")
            .unwrap()
            .contains("DB=sqlite")
    );

    let build = &p.jobs["build"];
    let StepKind::InParallel(par) = &build.steps[0].kind else {
        panic!()
    };
    let StepKind::Get(g) = &par.steps[0].kind else {
        panic!()
    };
    // Group names in `passed` expand to every instance (fan-in needs all of them).
    assert_eq!(g.passed.len(), 7);
    assert!(g.passed.contains(&"integration--postgres".to_string()));
    assert_eq!(build.serial_groups, ["release"]);
    let StepKind::Task(compile) = &build.steps[1].kind else {
        panic!()
    };
    assert_eq!(compile.outputs, ["out/app"]);
    let StepKind::Put(put) = &build.steps[2].kind else {
        panic!()
    };
    assert_eq!(put.resource, "artifact.binary");
    assert_eq!(put.params.get_str("from").unwrap(), "out");

    let deploy = &p.jobs["deploy"];
    assert_eq!(deploy.concurrency, 1);
    assert!(deploy.interruptible && deploy.disable_retry);
    assert_eq!(deploy.timeout, Some(Duration::from_secs(1800)));
    assert_eq!(deploy.inputs[0].options, ["staging", "production"]);
    let approve = deploy.approve.as_ref().unwrap();
    assert_eq!(
        (approve.label.as_str(), approve.approvals),
        ("production", 2)
    );
    assert_eq!(
        p.resources["cron.nightly"].check_interval,
        Some(Schedule::Cron("0 3 * * *".into()))
    );

    let edges = passed_edges(&p);
    assert!(edges.contains(&("build".into(), "deploy".into(), "artifact.binary".into())));
    assert_eq!(edges.len(), 8);
    let mermaid = to_mermaid(&p);
    assert!(mermaid.contains("j_build -->|artifact.binary| j_deploy"));
    let dot = to_dot(&p);
    assert!(dot.contains("\"j:build\" -> \"j:deploy\" [label=\"artifact.binary\"];"));
}

#[test]
fn hooks_and_conditions() {
    let p = load("hooks-and-conditions.hcl");
    let n = &p.notifications["webhook.team"];
    assert_eq!(n.on, ["failure", "cancel"]);
    assert_eq!(n.jobs, ["release"]);
    assert_eq!(
        p.notification_types["webhook"].commands["notify"].runner,
        "shell"
    );

    let job = &p.jobs["release"];
    assert_eq!(job.timeout, Some(Duration::from_secs(3600)));
    let get = step(job, "src");
    assert_eq!(
        (get.attempts, get.timeout),
        (3, Some(Duration::from_secs(120)))
    );

    let StepKind::If(chain) = &job.steps[2].kind else {
        panic!("not an if")
    };
    assert_eq!(
        chain
            .branches
            .iter()
            .map(|b| b.label.as_str())
            .collect::<Vec<_>>(),
        ["stable", "beta"]
    );
    let env = |k: &str| match k {
        "TASK_VERSION_CHANNEL" => Some("stable".to_string()),
        "TASK_VERSION_VERSION" => Some("1.4.0".to_string()),
        _ => None,
    };
    assert!(chain.branches[0].condition.eval(&env));
    assert!(!chain.branches[1].condition.eval(&env));
    assert_eq!(chain.else_steps.as_ref().unwrap()[0].name, "skip");
    let publish = step(job, "publish");
    assert_eq!(publish.attempts, 3);
    assert!(matches!(&publish.hooks.on_failure[0], HookAction::Command(c) if c.runner == "shell"));

    let StepKind::InParallel(par) = &job.steps[3].kind else {
        panic!()
    };
    assert_eq!((par.limit, par.fail_fast, par.steps.len()), (2, true, 3));
    assert_eq!(job.steps[3].hooks.ensure.len(), 1);

    let HookAction::Step(s) = &job.hooks.on_success[0] else {
        panic!()
    };
    let StepKind::Notify(ns) = &s.kind else {
        panic!()
    };
    assert_eq!(ns.message.as_deref(), Some("released"));
    assert_eq!(job.hooks.on_failure.len(), 1);
    assert_eq!(job.hooks.on_cancel.len(), 1);
    assert_eq!(job.hooks.ensure.len(), 1);
}

#[test]
fn custom_types() {
    let p = load("custom-types.hcl");
    let http = &p.resource_types["http-file"];
    assert!(
        matches!(&http.source, TypeSource::File { path, sha256: None } if path.ends_with("types/http-file.hcl"))
    );
    assert!(http.cache);
    assert_eq!(http.params, ["url", "name"]);
    assert_eq!(http.commands.keys().collect::<Vec<_>>(), ["check", "pull"]);

    let semver = &p.resource_types["semver"];
    assert_eq!(
        semver.commands.keys().collect::<Vec<_>>(),
        ["check", "pull", "push"]
    );
    assert_eq!(semver.runner.as_ref().unwrap().runner, "docker");
    assert!(semver.commands["check"].args[1].contains("${version_number:-$param_initial}"));

    assert_eq!(
        p.runner_types["nice"].run.as_ref().unwrap().args,
        ["-n", "10", "$path", "$args"]
    );
    assert_eq!(
        p.secret_types["pass"].config.get_str("store").unwrap(),
        "~/.password-store"
    );
    assert_eq!(
        p.service_types["redis"]
            .ready_check
            .as_ref()
            .unwrap()
            .interval,
        Duration::from_millis(500)
    );

    // Chained secret: the path carries the other secret's placeholder, resolved at run time.
    let token = p.variables["deploy_token"].secret.as_ref().unwrap();
    assert_eq!(token.path, "secret/data/platform/((secret:vault_role))");
    assert_eq!(secret_placeholders(&token.path), ["vault_role"]);
    assert_eq!(p.variables["replicas"].value, 2);
    assert_eq!(p.variables["dry_run"].value, true);

    let job = &p.jobs["package"];
    let StepKind::Get(v) = &step(job, "version").kind else {
        panic!()
    };
    assert_eq!(v.version, VersionPolicy::Every);
    let StepKind::Task(t) = &step(job, "bundle").kind else {
        panic!()
    };
    assert_eq!(t.run.runner, "nice");
    assert_eq!(t.run.args[1], "echo 2 replicas, dry run true");
    assert_eq!(t.env["TEAM"], "PLATFORM");
    assert_eq!(t.caches, [".cache"]);
    assert_eq!(p.resources["http-file.schema"].tags, ["linux"]);
}

#[test]
fn pinned_sources_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let def = "resource_type \"x\" {\n  check \"exec\" { path = \"true\" }\n}\n";
    std::fs::write(dir.path().join("x.hcl"), def).unwrap();
    let good = "6d5d1c1b1a0f3c9c7f6e8d2b7e0c8a1f4b3e2d1c0b9a8f7e6d5c4b3a29180706";
    let pipeline =
        format!("resource_type \"x\" {{\n  source = \"./x.hcl\"\n  sha256 = \"{good}\"\n}}\n");
    std::fs::write(dir.path().join("p.hcl"), &pipeline).unwrap();
    let err = load_file(&dir.path().join("p.hcl"), &LoadOptions::default()).unwrap_err();
    let text = err.render(false);
    assert!(text.contains("does not match its pinned sha256"), "{text}");
    assert!(text.contains(good), "names the expected hash: {text}");
    // The help names the real hash; pinning it makes the pipeline load.
    let actual = text
        .split("got ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(actual.len(), 64);
    std::fs::write(dir.path().join("p.hcl"), pipeline.replace(good, &actual)).unwrap();
    let ok = load_file(&dir.path().join("p.hcl"), &LoadOptions::default()).unwrap();
    assert!(
        ok.pipeline.resource_types["x"]
            .commands
            .contains_key("check")
    );
}

#[test]
fn vars_files_and_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let src = r#"
variable "a" {
  type    = string
  default = "default"
}
variable "n" {
  type = number
}
variable "flag" {
  type    = bool
  default = false
}
"#;
    std::fs::write(dir.path().join("p.hcl"), src).unwrap();
    std::fs::write(dir.path().join("v.json"), r#"{"a": "json", "n": "4"}"#).unwrap();
    std::fs::write(dir.path().join("v.hcl"), "a = \"hcl\"\nflag = true\n").unwrap();
    let opts = LoadOptions {
        vars_files: vec![dir.path().join("v.json"), dir.path().join("v.hcl")],
        vars: vec![("n".into(), "7".into())],
        ..LoadOptions::default()
    };
    let p = load_file(&dir.path().join("p.hcl"), &opts)
        .unwrap()
        .pipeline;
    assert_eq!(p.variables["a"].value, "hcl");
    assert!(matches!(&p.variables["a"].origin, VarOrigin::VarsFile(f) if f.ends_with("v.hcl")));
    assert_eq!(p.variables["n"].value, 7);
    assert_eq!(p.variables["n"].origin, VarOrigin::Cli);
    assert_eq!(p.variables["flag"].value, true);
}

#[test]
fn url_sources_go_through_the_fetcher() {
    struct Fixed;
    impl TypeFetcher for Fixed {
        fn fetch(&self, url: &str, _sha256: Option<&str>) -> Result<String, String> {
            if url.ends_with("/ok.hcl") {
                Ok("runner_type \"remote\" {\n  run {\n    path = \"kubectl\"\n  }\n}\n".into())
            } else {
                Err("404 Not Found".into())
            }
        }
    }
    let src = "runner_type \"k8s\" {\n  source = \"https://types.example.com/ok.hcl\"\n}\nrunner_type \"bad\" {\n  source = \"https://types.example.com/missing.hcl\"\n}\n";
    let opts = LoadOptions {
        fetcher: Some(std::sync::Arc::new(Fixed)),
        ..LoadOptions::default()
    };
    let err = load_str("p.hcl", src, &opts).unwrap_err();
    assert_eq!(err.error_count(), 1);
    assert!(
        err.render(false)
            .contains("cannot fetch `https://types.example.com/missing.hcl`: 404 Not Found")
    );
    let ok = load_str(
        "p.hcl",
        &src[..src.find("runner_type \"bad\"").unwrap()],
        &opts,
    )
    .unwrap();
    assert_eq!(
        ok.pipeline.runner_types["k8s"].run.as_ref().unwrap().path,
        "kubectl"
    );
    // Without a fetcher the error says what to do instead.
    let err = load_str("p.hcl", src, &LoadOptions::default()).unwrap_err();
    assert!(
        err.render(false)
            .contains("download the file and set `source` to its path")
    );
}

#[test]
fn python_project() {
    let p = load("python-project.hcl");
    assert_eq!(
        p.groups["test"],
        [
            "test--3-11-linux",
            "test--3-12-linux",
            "test--3-13-linux",
            "test--3-13-macos",
            "test--3-14-linux"
        ]
    );
    let StepKind::Task(t) = &step(&p.jobs["test--3-13-linux"], "pytest").kind else {
        panic!("not a task")
    };
    assert_eq!(t.env["COVERAGE"], "yes");
    assert_eq!(
        t.env["PIP_CACHE_DIR"], "$WORKDIR/.pip",
        "expanded when the task runs"
    );
    let StepKind::Task(t) = &step(&p.jobs["test--3-12-linux"], "pytest").kind else {
        panic!("not a task")
    };
    assert_eq!(t.env["COVERAGE"], "");
    let StepKind::Task(t) = &step(&p.jobs["package"], "build").kind else {
        panic!("not a task")
    };
    assert_eq!(t.outputs, ["dist/*.whl", "dist/*.tar.gz"]);
    let StepKind::Get(g) = &step(&p.jobs["package"], "src").kind else {
        panic!("not a get")
    };
    assert_eq!(
        g.passed.len(),
        5 + 2,
        "the group `test` means every instance"
    );
}

#[test]
fn deploy_compose() {
    let p = load("deploy-compose.hcl");
    let image = &p.resources["registry-image.web-image"];
    assert_eq!(
        image.params.get_str("repository").unwrap(),
        "127.0.0.1:5000/examples/web"
    );
    let StepKind::Put(put) = &step(&p.jobs["build"], "web-image").kind else {
        panic!("not a put")
    };
    assert_eq!(put.params.get_str("tag_file").unwrap(), "tag");
    let deploy = &p.jobs["deploy"];
    let StepKind::Get(g) = &step(deploy, "web-image").kind else {
        panic!("not a get")
    };
    assert_eq!(g.passed, ["build"]);
    assert_eq!(
        deploy.hooks.on_failure.len(),
        1,
        "a failed smoke test rolls back"
    );
}
