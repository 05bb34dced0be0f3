//! The web UI in a real headless Chromium against a real server: login is required for
//! actions, the graph shows every job, statuses change live when builds finish, a task's log
//! line appears while it runs, a trigger with typed inputs and a rerun work from the page,
//! and a public server's read-only view hides the actions. The session cookie is HttpOnly and
//! state-changing requests from it need the CSRF header.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "common/browser.rs"]
mod browser;

use browser::Browser;
use common::{ADMIN, Ci, repo};
use pipewright_core::BuildStatus;
use std::time::Duration;

/// Browsers are heavy on two cores: one test at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pipeline(repo: &std::path::Path, gate: &std::path::Path) -> String {
    format!(
        r#"
resource "git" "src" {{
  params {{
    url = "{repo}"
  }}
  check_interval = "@every 24h"
  webhook_secret = "ui-webhook-token"
}}

job "test" {{
  get "git" "src" {{
    trigger = true
  }}
  task "unit" {{
    run "shell" {{
      cmd = "printf '\\033[32mok\\033[0m unit tests passed\\n'"
    }}
  }}
}}

job "build" {{
  get "git" "src" {{
    trigger = true
    passed  = ["test"]
  }}
  task "compile" {{
    run "shell" {{
      cmd = "echo compiled"
    }}
  }}
}}

job "release" {{
  input "greeting" {{
    type        = string
    description = "what to print"
  }}
  input "times" {{
    type    = number
    default = 2
  }}
  task "announce" {{
    run "shell" {{
      cmd = "echo \"say $INPUT_GREETING x$INPUT_TIMES\"; while [ ! -f {gate} ]; do sleep 0.05; done; echo released"
    }}
  }}
}}
"#,
        repo = repo.display(),
        gate = gate.display()
    )
}

/// A server (public or not) whose `release` job does not wait: its gate is open. The
/// directory holds the repository and must outlive the server.
async fn open_gate(public: bool) -> (tempfile::TempDir, Ci) {
    let src = tempfile::tempdir().unwrap();
    let repo = repo(src.path());
    let gate = src.path().join("gate");
    std::fs::write(&gate, "").unwrap();
    let store = std::sync::Arc::new(pipewright_store::MemoryStore::new());
    let ci = Ci::start_with(&pipeline(&repo, &gate), store, public).await;
    (src, ci)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_graph_live_statuses_streaming_logs_trigger_with_inputs_and_rerun() {
    if !browser::available() {
        return;
    }
    let _turn = TURN.lock().await;
    let src = tempfile::tempdir().unwrap();
    let repo = repo(src.path());
    let gate = src.path().join("gate");
    let ci = Ci::start(&pipeline(&repo, &gate)).await;
    let b = Browser::start().await;

    // Without a session the pages send the user to the login form.
    b.goto(&format!("{}/#/p/p", ci.base)).await;
    b.until("location.hash.startsWith('#/login')", 10, "the login page")
        .await;
    b.until("document.getElementById('token')", 10, "the token field")
        .await;
    b.screenshot("login").await;
    b.client
        .find(fantoccini::Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(ADMIN)
        .await
        .unwrap();
    b.click("form button[type=submit]").await;
    b.until(
        "location.hash === '#/p/p'",
        10,
        "the pipeline page after login",
    )
    .await;
    // The session is an HttpOnly cookie: page scripts cannot read it.
    let cookies = b.eval("document.cookie").await;
    assert!(
        !cookies.as_str().unwrap().contains("pw_session"),
        "{cookies}"
    );
    assert!(cookies.as_str().unwrap().contains("pw_csrf"), "{cookies}");

    // The graph shows every job and the resource; the first commit goes test → build.
    b.until(
        "document.querySelectorAll('.graph .node.job').length === 3",
        10,
        "three jobs in the graph",
    )
    .await;
    let names = b
        .eval("[...document.querySelectorAll('.graph .node')].map((n) => n.dataset.id).sort().join(',')")
        .await;
    assert_eq!(names, "build,git.src,release,test");
    b.until(
        "document.querySelector('.node[data-id=\"build\"]').dataset.status === 'succeeded'",
        30,
        "build to succeed, shown live",
    )
    .await;
    b.until(
        "document.querySelector('#flow table')",
        10,
        "the flow of versions",
    )
    .await;
    b.screenshot("pipeline").await;

    // A webhook delivery shows on the resource, refusals too.
    for token in ["ui-webhook-token", "wrong"] {
        ci.http
            .post(ci.url("/webhooks/p/git.src"))
            .header("X-Gitlab-Event", "Push Hook")
            .header("X-Gitlab-Token", token)
            .body("{}")
            .send()
            .await
            .unwrap();
    }
    b.click_button("Webhooks").await;
    b.until(
        "document.querySelectorAll('table.webhooks tbody tr').length === 2",
        10,
        "the two deliveries",
    )
    .await;
    let results = b
        .eval("[...document.querySelectorAll('table.webhooks tbody tr')].map((r) => r.children[4].textContent).join(',')")
        .await;
    assert_eq!(results, "rejected,checking");

    // Trigger with typed inputs from the job page.
    b.goto(&format!("{}/#/p/p/jobs/release", ci.base)).await;
    b.until(
        "document.getElementById('trigger')",
        10,
        "the trigger button",
    )
    .await;
    b.click("#trigger").await;
    b.until(
        "document.getElementById('in-greeting')",
        10,
        "the input form",
    )
    .await;
    b.client
        .find(fantoccini::Locator::Id("in-greeting"))
        .await
        .unwrap()
        .send_keys("hello-ui")
        .await
        .unwrap();
    let times = b
        .client
        .find(fantoccini::Locator::Id("in-times"))
        .await
        .unwrap();
    times.clear().await.unwrap();
    times.send_keys("3").await.unwrap();
    b.screenshot("trigger").await;
    b.click("dialog button[type=submit]").await;
    b.until(
        "location.hash.startsWith('#/builds/')",
        10,
        "the new build's page",
    )
    .await;

    // The task's first line shows while the task still runs.
    b.until(
        "[...document.querySelectorAll('.log .tx')].some((l) => l.textContent.includes('say hello-ui x3'))",
        30,
        "the log line of the running task",
    )
    .await;
    let id: u64 = b
        .eval("location.hash.split('/')[2]")
        .await
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        ci.build(id).await.status,
        BuildStatus::Running,
        "the line came while it ran"
    );
    b.screenshot("build").await;

    // The pipeline page shows it running, then finished, without a reload.
    b.goto(&format!("{}/#/p/p", ci.base)).await;
    b.until(
        "document.querySelector('.node[data-id=\"release\"]').dataset.status === 'running'",
        10,
        "release running in the graph",
    )
    .await;
    b.eval("(window.__same = 1)").await;
    std::fs::write(&gate, "").unwrap();
    b.until(
        "document.querySelector('.node[data-id=\"release\"]').dataset.status === 'succeeded' && window.__same === 1",
        20,
        "release to turn succeeded live",
    )
    .await;

    // Rerun from the build page creates the build.
    b.goto(&format!("{}/#/builds/{id}", ci.base)).await;
    b.until(
        "[...document.querySelectorAll('button')].some((x) => x.textContent === 'Rerun')",
        10,
        "the rerun button",
    )
    .await;
    b.click_button("Rerun").await;
    let builds = ci
        .wait_builds("release", Duration::from_secs(20), |b| b.len() == 2)
        .await;
    assert_eq!(builds[0].rerun_of, Some(id));
    assert_eq!(builds[0].input_values["greeting"], "hello-ui");
    b.until(
        &format!("location.hash === '#/builds/{}'", builds[0].id),
        10,
        "the rerun's page",
    )
    .await;

    b.goto(&format!("{}/#/p/p/stats", ci.base)).await;
    b.until("document.getElementById('job-stats')", 10, "the statistics")
        .await;
    b.screenshot("stats").await;
    b.close().await;
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_server_is_read_only_without_login() {
    if !browser::available() {
        return;
    }
    let _turn = TURN.lock().await;
    let (_src, ci) = open_gate(true).await;
    let b = Browser::start().await;
    b.goto(&format!("{}/#/p/p/jobs/release", ci.base)).await;
    b.until("document.querySelector('h1') && document.querySelector('h1').textContent.includes('read-only')", 10, "the read-only job page").await;
    assert_eq!(b.eval("!!document.getElementById('trigger')").await, false);
    b.goto(&format!("{}/#/p/p", ci.base)).await;
    b.until(
        "document.querySelectorAll('.graph .node.job').length === 3",
        10,
        "the graph, without login",
    )
    .await;
    assert_eq!(
        b.eval(
            "[...document.querySelectorAll('button')].some((x) => x.textContent === 'Check now')"
        )
        .await,
        false,
        "no actions for a reader"
    );
    b.close().await;
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sessions_are_httponly_cookies_and_changes_need_the_csrf_header() {
    let (_src, ci) = open_gate(false).await;
    let login = ci
        .http
        .post(format!("{}/ui/login", ci.base))
        .json(&serde_json::json!({"token": ADMIN}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let set: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set.iter().find(|c| c.starts_with("pw_session=")).unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let csrf = set
        .iter()
        .find_map(|c| c.strip_prefix("pw_csrf="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let cookies = format!("pw_session={ADMIN}; pw_csrf={csrf}");
    let trigger = |header: Option<&str>| {
        let mut r = ci
            .http
            .post(ci.url("/pipelines/p/jobs/release/builds"))
            .header("Cookie", &cookies)
            .json(&serde_json::json!({"inputs": {"greeting": "from a cookie"}}));
        if let Some(h) = header {
            r = r.header("X-CSRF-Token", h);
        }
        r.send()
    };
    // Reads work from the cookie alone; a change without the header (what another site
    // could make the browser send) is refused; with it, it works.
    let me = ci
        .http
        .get(ci.url("/me"))
        .header("Cookie", &cookies)
        .send()
        .await
        .unwrap();
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["role"], "admin");
    assert_eq!(trigger(None).await.unwrap().status(), 403);
    assert_eq!(trigger(Some("forged")).await.unwrap().status(), 403);
    assert_eq!(trigger(Some(&csrf)).await.unwrap().status(), 201);
    // A wrong token cannot log in; the pages and their files are served with a CSP.
    let bad = ci
        .http
        .post(format!("{}/ui/login", ci.base))
        .json(&serde_json::json!({"token": "pw_nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let page = ci.http.get(&ci.base).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(page.text().await.unwrap().contains("/ui/app.js"));
    let missing = ci
        .http
        .get(format!("{}/ui/nope.js", ci.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stops_while_pages_hold_event_streams_open() {
    let (_src, ci) = open_gate(false).await;
    let b = ci
        .trigger("release", serde_json::json!({"greeting": "x"}))
        .await;
    ci.wait_done(b.id).await;
    // An open page: the pipeline's stream never ends by itself.
    let stream = ci.get("/pipelines/p/events").send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let stopped = tokio::time::timeout(Duration::from_secs(30), ci.stop()).await;
    assert!(stopped.is_ok(), "shutdown waited for the open event stream");
    drop(stream);
}
