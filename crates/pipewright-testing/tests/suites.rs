//! The suites themselves: each accepts a correct plug-in and rejects a broken one naming the
//! rule it broke.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use pipewright_core::{
    Ctx, Error, ErrorKind, ExitStatus, LogSink, Metadata, Params, Resource, Result, Runner,
    SecretMap, SecretRef, SecretSource, SecretValue, Service, Stream, TaskSpec, Version, Workspace,
};
use pipewright_testing::resource::{FixtureResult, ResourceFixture, check_resource};
use pipewright_testing::{
    RecordingSink, RunnerSuite, SecretFixture, check_secret_source, check_service,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs `f` on its own task and returns its panic message (or `None` when it passed).
async fn panic_of(f: impl Future<Output = ()> + Send + 'static) -> Option<String> {
    let err = tokio::spawn(f).await.err()?;
    let payload = err.into_panic();
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default(),
    )
}

fn script_task(script: &str) -> TaskSpec {
    let mut params = Params::new();
    params.insert("cmd", script);
    TaskSpec {
        name: "t".into(),
        params,
        ..TaskSpec::default()
    }
}

/// A runner with a classic bug: its task has a process group, but cancel and timeout kill
/// only the main process, and background processes are left when the task exits. The groups
/// it made are recorded so the test can clean up after it.
#[derive(Default)]
struct GroupForgetting {
    groups: Mutex<Vec<i32>>,
    merge_streams: bool,
}

#[async_trait]
impl Runner for GroupForgetting {
    async fn run(&self, ctx: &Ctx, task: &TaskSpec, ws: &Workspace) -> Result<ExitStatus> {
        let cmd = task.params.get_str("cmd").unwrap_or_default();
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(["-c", &cmd])
            .current_dir(&ws.dir)
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        self.groups.lock().unwrap().push(child.id().unwrap() as i32);
        let merge = self.merge_streams;
        for (pipe, stream) in [
            (
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                Stream::Stdout,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                Stream::Stderr,
            ),
        ] {
            let log = ctx.log.clone();
            let stream = if merge { Stream::Stdout } else { stream };
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let Some(mut pipe) = pipe else { return };
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    log.write(stream, &buf[..n]);
                }
            });
        }
        let deadline = async {
            match ctx.remaining() {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            s = child.wait() => {
                // Give the pumps a moment to deliver the output.
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(ExitStatus::Code(s?.code().unwrap_or(-1)))
            }
            () = ctx.cancel.cancelled() => { let _ = child.kill().await; Err(Error::cancelled()) }
            () = deadline => { let _ = child.kill().await; Err(Error::new(ErrorKind::Timeout, "deadline")) }
        }
    }
}

impl Drop for GroupForgetting {
    fn drop(&mut self) {
        for g in self.groups.lock().unwrap().iter() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(*g),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runner_suite_catches_a_runner_that_forgets_the_process_group() {
    let cancel = panic_of(async {
        let runner = GroupForgetting::default();
        RunnerSuite::new(&runner, script_task)
            .cancel_kills_the_process_tree()
            .await;
    });
    let exit = panic_of(async {
        let runner = GroupForgetting::default();
        RunnerSuite::new(&runner, script_task)
            .nothing_left_running()
            .await;
    });
    let timeout = panic_of(async {
        let runner = GroupForgetting::default();
        RunnerSuite::new(&runner, script_task)
            .timeout_kills_the_process_tree()
            .await;
    });
    let (cancel, exit, timeout) = tokio::join!(cancel, exit, timeout);
    for (got, rule) in [
        (cancel, "cancel kills the process tree"),
        (exit, "nothing left running"),
        (timeout, "timeout"),
    ] {
        let msg = got.unwrap_or_else(|| panic!("`{rule}` passed a runner that leaves processes"));
        assert!(
            msg.starts_with(&format!("runner rule `{rule}` broke:")),
            "{msg}"
        );
        assert!(msg.contains("still running after `run` returned"), "{msg}");
    }
    // The same runner gets exit codes right, so that rule passes.
    let runner = GroupForgetting::default();
    RunnerSuite::new(&runner, script_task).exit_codes().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runner_suite_catches_merged_streams() {
    let msg = panic_of(async {
        let runner = GroupForgetting {
            merge_streams: true,
            groups: Mutex::default(),
        };
        RunnerSuite::new(&runner, script_task)
            .streams_kept_apart()
            .await;
    })
    .await
    .expect("merged streams pass");
    assert!(
        msg.starts_with("runner rule `streams kept apart` broke: stdout was"),
        "{msg}"
    );
}

/// Versions `0..n` in memory; each has the marker `m<i>`. `bug` picks a mistake to make.
#[derive(Clone, Copy, PartialEq)]
enum Bug {
    None,
    ReplaysHistory,
    NewestFirst,
    GetsNewest,
    IncludesLast,
}

struct Memory {
    count: Arc<Mutex<usize>>,
    bug: Bug,
}

fn v(i: usize) -> Version {
    Version::from_pairs([("i", i.to_string())])
}

#[async_trait]
impl Resource for Memory {
    async fn check(&self, _ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>> {
        let n = *self.count.lock().unwrap();
        let all: Vec<Version> = (0..n).map(v).collect();
        let mut out: Vec<Version> = match last.and_then(|l| l.get("i")?.parse::<usize>().ok()) {
            None if self.bug == Bug::ReplaysHistory => all,
            None => all.last().cloned().into_iter().collect(),
            Some(i) if self.bug == Bug::IncludesLast => all[i..].to_vec(),
            Some(i) => all[i + 1..].to_vec(),
        };
        if self.bug == Bug::NewestFirst {
            out.reverse();
        }
        Ok(out)
    }
    async fn get(&self, _ctx: &Ctx, version: &Version, dest: &Path) -> Result<Metadata> {
        let mut i: usize = version.get("i").unwrap().parse().unwrap();
        if self.bug == Bug::GetsNewest {
            i = *self.count.lock().unwrap() - 1;
        }
        std::fs::write(dest.join("marker"), format!("m{i}"))?;
        Ok(Metadata::new())
    }
    async fn put(&self, _ctx: &Ctx, _src: &Path, _params: &Params) -> Result<Vec<Version>> {
        let mut n = self.count.lock().unwrap();
        *n += 1;
        Ok(vec![v(*n - 1)])
    }
}

struct MemoryFixture(Arc<Mutex<usize>>);

#[async_trait]
impl ResourceFixture for MemoryFixture {
    async fn new_version(&mut self) -> FixtureResult<String> {
        let mut n = self.0.lock().unwrap();
        *n += 1;
        Ok(format!("m{}", *n - 1))
    }
    fn marker(&self, dir: &Path) -> FixtureResult<String> {
        Ok(std::fs::read_to_string(dir.join("marker"))?)
    }
    async fn prepare_put(&mut self, _src: &Path) -> FixtureResult<(Params, String)> {
        Ok((Params::new(), format!("m{}", *self.0.lock().unwrap())))
    }
}

async fn resource_with(bug: Bug) -> Option<String> {
    panic_of(async move {
        let count = Arc::new(Mutex::new(0));
        let r = Memory {
            count: count.clone(),
            bug,
        };
        check_resource(&r, &mut MemoryFixture(count)).await;
    })
    .await
}

#[tokio::test]
async fn the_resource_suite_names_each_broken_rule() {
    assert_eq!(
        resource_with(Bug::None).await,
        None,
        "a correct resource passes"
    );
    for (bug, rule) in [
        (
            Bug::ReplaysHistory,
            "first check returns the newest version only",
        ),
        (
            Bug::NewestFirst,
            "check from a version returns newer ones oldest first",
        ),
        (
            Bug::IncludesLast,
            "check from a version returns newer ones oldest first",
        ),
        (Bug::GetsNewest, "get of an exact version"),
    ] {
        let msg = resource_with(bug).await.expect("a broken resource fails");
        assert!(
            msg.starts_with(&format!("resource rule `{rule}` broke")),
            "{msg}"
        );
    }
}

/// A TCP listener as a service. `bug` picks a mistake.
struct Listener {
    socket: Mutex<Option<std::net::TcpListener>>,
    port: Mutex<u16>,
    bug: &'static str,
}

#[async_trait]
impl Service for Listener {
    async fn start(&self, _ctx: &Ctx) -> Result<()> {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        *self.port.lock().unwrap() = l.local_addr()?.port();
        *self.socket.lock().unwrap() = Some(l);
        Ok(())
    }
    async fn ready(&self, _ctx: &Ctx) -> Result<bool> {
        Ok(self.bug != "never ready" && self.socket.lock().unwrap().is_some())
    }
    async fn stop(&self, _ctx: &Ctx) -> Result<()> {
        let s = self.socket.lock().unwrap().take();
        match self.bug {
            "stop needs start" if s.is_none() => Err(Error::new(ErrorKind::Other, "not started")),
            "keeps the port" => {
                std::mem::forget(s);
                Ok(())
            }
            _ => Ok(()),
        }
    }
    fn exports(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("PORT".to_owned(), self.port.lock().unwrap().to_string())])
    }
    fn ready_policy(&self) -> Option<(Duration, Duration)> {
        Some((Duration::from_millis(20), Duration::from_millis(300)))
    }
}

async fn service_with(bug: &'static str) -> Option<String> {
    panic_of(async move {
        let factory = move || {
            Ok(Arc::new(Listener {
                socket: Mutex::new(None),
                port: Mutex::new(0),
                bug,
            }) as Arc<dyn Service>)
        };
        check_service(&factory).await;
    })
    .await
}

#[tokio::test]
async fn the_service_suite_names_each_broken_rule() {
    assert_eq!(service_with("").await, None, "a correct service passes");
    for (bug, rule, detail) in [
        (
            "never ready",
            "ready policy honoured",
            "not ready within its timeout of 300ms",
        ),
        ("stop needs start", "stop always called", "never started"),
        (
            "keeps the port",
            "stop frees what it holds",
            "still accepts connections",
        ),
    ] {
        let msg = service_with(bug).await.expect("a broken service fails");
        assert!(
            msg.starts_with(&format!("service rule `{rule}` broke")),
            "{msg}"
        );
        assert!(msg.contains(detail), "{msg}");
    }
}

/// One secret at `db`/`password`. `bug` picks a mistake.
struct Fixed {
    value: String,
    bug: &'static str,
}

impl std::fmt::Debug for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bug {
            "leaky debug" => write!(f, "Fixed {{ value: {:?} }}", self.value),
            _ => f.write_str("Fixed"),
        }
    }
}

#[async_trait]
impl SecretSource for Fixed {
    async fn get(&self, _ctx: &Ctx, r: &SecretRef) -> Result<SecretMap> {
        if r.path != "db" {
            let kind = if self.bug == "failed" {
                ErrorKind::Failed
            } else {
                ErrorKind::NotFound
            };
            return Err(Error::new(kind, format!("no secret at {}", r.path)));
        }
        Ok(SecretMap::from([(
            "password".to_owned(),
            SecretValue::from(self.value.as_str()),
        )]))
    }
}

#[tokio::test]
async fn the_secret_suite_names_each_broken_rule() {
    let fixture = SecretFixture::new("db", "password", "pw-123", "nowhere");
    let ok = Fixed {
        value: "pw-123".into(),
        bug: "",
    };
    check_secret_source(&ok, &fixture).await;
    let wrong = Fixed {
        value: "other".into(),
        bug: "",
    };
    let failed = Fixed {
        value: "pw-123".into(),
        bug: "failed",
    };
    for (source, rule) in [
        (wrong, "a present secret is returned"),
        (failed, "missing key is NotFound"),
    ] {
        let f = fixture.clone();
        let msg = panic_of(async move { check_secret_source(&source, &f).await })
            .await
            .expect("a broken source fails");
        assert!(
            msg.starts_with(&format!("secret rule `{rule}` broke")),
            "{msg}"
        );
    }
    // A Debug that shows the value: a leak the suite reports without repeating the value.
    let f = fixture.clone();
    let leaky = Fixed {
        value: "pw-123".into(),
        bug: "leaky debug",
    };
    let msg = panic_of(async move { check_secret_source(&leaky, &f).await })
        .await
        .expect("a leaky Debug fails");
    assert!(
        msg.starts_with("secret rule `values never in Debug` broke: the source's Debug"),
        "{msg}"
    );
    assert!(!msg.contains("pw-123"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_recording_sink_wakes_waiters_and_times_out() {
    let sink = RecordingSink::new();
    let writer = sink.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.write(Stream::Stderr, b"hal");
        writer.write(Stream::Stderr, b"f done\n");
    });
    assert!(
        sink.wait_for(Stream::Stderr, "half done", Duration::from_secs(30))
            .await
    );
    assert!(
        !sink
            .wait_for(Stream::Stdout, "half done", Duration::from_millis(50))
            .await
    );
    assert_eq!(sink.text(Stream::Stdout), "");
    sink.clear();
    assert!(sink.chunks().is_empty());
}
