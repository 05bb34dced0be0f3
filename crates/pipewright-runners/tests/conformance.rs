//! The host runners through the plug-in kit's runner suite (docker runs it in `docker.rs`,
//! which has the daemon check).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{Params, TaskSpec};
use pipewright_runners::{ExecRunner, ShellRunner};
use pipewright_testing::RunnerSuite;
use std::time::Duration;

fn task(params: &[(&str, &str)], args: &[&str]) -> TaskSpec {
    let mut p = Params::new();
    for (k, v) in params {
        p.insert(*k, *v);
    }
    TaskSpec {
        name: "conformance".into(),
        params: p,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..TaskSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_conforms() {
    let runner = ExecRunner::new().with_grace(Duration::from_millis(300));
    RunnerSuite::new(&runner, |script| {
        task(&[("path", "/bin/sh")], &["-c", script])
    })
    .with_detached_daemons()
    .run_all()
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_conforms() {
    let runner = ShellRunner::new().with_grace(Duration::from_millis(300));
    RunnerSuite::new(&runner, |script| task(&[("cmd", script)], &[]))
        .with_detached_daemons()
        .run_all()
        .await;
}
