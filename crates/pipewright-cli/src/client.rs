//! The client of a running server (what `fly` is to Concourse): trigger, builds, watch, logs,
//! cancel, rerun, approve, check, pin and tokens. Exit codes: 0 done (for `watch`: the build
//! succeeded), 1 the build did not succeed, 2 the request was refused (bad input, unknown
//! name, no permission), 3 the server could not be reached or failed.

use clap::{Args, Subcommand};
use pipewright_api::{BuildView, ErrorBody, PipelineView, Role, TokenView};
use pipewright_core::BuildStatus;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Where the server is and who we are.
#[derive(Debug, Args, Clone)]
pub struct Conn {
    /// The server's URL.
    #[arg(
        long,
        env = "PIPEWRIGHT_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// The token (default: $PIPEWRIGHT_TOKEN, else the file `--token-file`).
    #[arg(long, env = "PIPEWRIGHT_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A file holding the token (default: $XDG_CONFIG_HOME/pipewright/token, which a local
    /// `pipewright server` writes).
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
}

/// Client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCmd {
    /// Start a build of a job on the server: `pipewright trigger PIPELINE/JOB`.
    ///
    /// Example: pipewright trigger app/deploy --param target=staging --watch
    Trigger {
        /// `PIPELINE/JOB`.
        job: String,
        /// A value for the job's `input` block: `--param NAME=VALUE` (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = crate::parse_var)]
        params: Vec<(String, String)>,
        /// Follow the build's log and exit with its result.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// List a job's builds, newest first: `pipewright builds PIPELINE/JOB`.
    Builds {
        /// `PIPELINE/JOB`.
        job: String,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follow a build's log until it ends (resuming after a dropped connection); exits 0 when
    /// it succeeded, 1 otherwise.
    Watch {
        /// The build id.
        build: u64,
    },
    /// Print a build's log so far (`-f` follows it, like `watch`).
    Logs {
        /// The build id.
        build: u64,
        /// Follow until the build ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Cancel a build.
    Cancel {
        /// The build id.
        build: u64,
    },
    /// Start a new build with the same versions and inputs as a finished one.
    Rerun {
        /// The build id.
        build: u64,
        /// `job` (from the first step) or `failed-step`.
        #[arg(long, value_name = "FROM", default_value = "job")]
        from: String,
        /// Follow the new build and exit with its result.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Approve a build waiting at its job's `approve` gate.
    Approve {
        /// The build id.
        build: u64,
    },
    /// Check a resource now: `pipewright check PIPELINE/TYPE.NAME`.
    Check {
        /// `PIPELINE/TYPE.NAME`.
        resource: String,
    },
    /// List a resource's last webhook deliveries and what became of each:
    /// `pipewright webhooks PIPELINE/TYPE.NAME`.
    Webhooks {
        /// `PIPELINE/TYPE.NAME`.
        resource: String,
    },
    /// Pin a resource to one of its versions, given whole (`ref=<full sha>`), or `--unpin` it:
    /// `pipewright pin PIPELINE/TYPE.NAME ref=3f2a9c4e…`.
    Pin {
        /// `PIPELINE/TYPE.NAME`.
        resource: String,
        /// The version's fields, `KEY=VALUE`, as `versions` lists them.
        #[arg(value_name = "KEY=VALUE", value_parser = crate::parse_var, required_unless_present = "unpin")]
        fields: Vec<(String, String)>,
        /// Remove the pin.
        #[arg(long, conflicts_with = "fields")]
        unpin: bool,
    },
    /// Manage API tokens (needs the admin token).
    #[command(subcommand)]
    Token(TokenCmd),
}

/// `pipewright token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Make a token: `pipewright token create --role operator --name ci-bot`. Prints it once.
    Create {
        /// `worker`, `viewer`, `operator` or `admin`.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Who or what holds it.
        #[arg(long)]
        name: String,
    },
    /// List tokens (not their secrets).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token's id.
        id: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("`{s}` is not a role: worker, viewer, operator or admin"))
}

/// A failed client call, with the exit code it means.
struct Failure(u8, String);

type Done = Result<u8, Failure>;

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(conn: &Conn) -> Result<Self, Failure> {
        let token = match &conn.token {
            Some(t) => Some(t.trim().to_owned()),
            None => {
                let file = conn
                    .token_file
                    .clone()
                    .unwrap_or_else(crate::server::default_token_file);
                match std::fs::read_to_string(&file) {
                    Ok(t) => Some(t.trim().to_owned()),
                    Err(_) if conn.token_file.is_none() => None,
                    Err(e) => {
                        return Err(Failure(2, format!("--token-file {}: {e}", file.display())));
                    }
                }
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Failure(3, format!("cannot make an HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: conn.server.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(
            method,
            format!("{}{}{path}", self.base, pipewright_api::PREFIX),
        );
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
        let resp = r
            .send()
            .await
            .map_err(|e| {
                Failure(
                    3,
                    format!(
                        "cannot reach the server at {}: {e} (is it running? `--server URL` or PIPEWRIGHT_SERVER says where it is)",
                        self.base
                    ),
                )
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or(text);
        let code = if status.is_client_error() { 2 } else { 3 };
        Err(Failure(
            code,
            format!("the server answered {status}: {msg}"),
        ))
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        r: reqwest::RequestBuilder,
    ) -> Result<T, Failure> {
        self.send(r).await?.json().await.map_err(|e| {
            Failure(
                3,
                format!("the server's answer is not what this client expects: {e}"),
            )
        })
    }
}

fn split<'a>(what: &str, s: &'a str) -> Result<(&'a str, &'a str), Failure> {
    s.split_once('/')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| Failure(2, format!("expected PIPELINE/{what}, got `{s}`")))
}

/// Runs a client command.
pub fn client_cmd(cmd: ClientCmd, conn: &Conn) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match rt.block_on(run(cmd, conn)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure(code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

async fn run(cmd: ClientCmd, conn: &Conn) -> Done {
    let c = Client::new(conn)?;
    use reqwest::Method;
    match cmd {
        ClientCmd::Trigger { job, params, watch } => {
            let (p, j) = split("JOB", &job)?;
            let inputs = typed_params(&c, p, j, &params).await?;
            let b: BuildView = c
                .json(
                    c.req(Method::POST, &format!("/pipelines/{p}/jobs/{j}/builds"))
                        .json(&serde_json::json!({ "inputs": inputs })),
                )
                .await?;
            announce(&b);
            if watch { follow(&c, b.id).await } else { Ok(0) }
        }
        ClientCmd::Builds { job, limit, json } => {
            let (p, j) = split("JOB", &job)?;
            let list: Vec<BuildView> = c
                .json(c.req(
                    Method::GET,
                    &format!("/pipelines/{p}/jobs/{j}/builds?limit={limit}"),
                ))
                .await?;
            if json {
                crate::write_out(format_args!(
                    "{}\n",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                ));
            } else {
                print_builds(&list);
            }
            Ok(0)
        }
        ClientCmd::Watch { build }
        | ClientCmd::Logs {
            build,
            follow: true,
        } => follow(&c, build).await,
        ClientCmd::Logs {
            build,
            follow: false,
        } => {
            let text = c
                .send(c.req(Method::GET, &format!("/builds/{build}/log")))
                .await?
                .text()
                .await
                .map_err(|e| Failure(3, e.to_string()))?;
            crate::write_out(format_args!("{text}"));
            Ok(0)
        }
        ClientCmd::Cancel { build } => {
            let b: BuildView = c
                .json(c.req(Method::POST, &format!("/builds/{build}/cancel")))
                .await?;
            eprintln!(
                "cancelling build {} ({}/{} #{})",
                b.id, b.pipeline, b.job, b.number
            );
            Ok(0)
        }
        ClientCmd::Rerun { build, from, watch } => {
            if from != "job" && from != "failed-step" {
                return Err(Failure(
                    2,
                    format!("--from {from}: expected `job` or `failed-step`"),
                ));
            }
            let b: BuildView = c
                .json(
                    c.req(Method::POST, &format!("/builds/{build}/rerun"))
                        .json(&serde_json::json!({ "from": from })),
                )
                .await?;
            announce(&b);
            if watch { follow(&c, b.id).await } else { Ok(0) }
        }
        ClientCmd::Approve { build } => {
            let b: BuildView = c
                .json(c.req(Method::POST, &format!("/builds/{build}/approve")))
                .await?;
            eprintln!(
                "approved build {} ({}/{} #{}): {}",
                b.id, b.pipeline, b.job, b.number, b.status
            );
            Ok(0)
        }
        ClientCmd::Check { resource } => {
            let (p, r) = split("TYPE.NAME", &resource)?;
            c.send(c.req(Method::POST, &format!("/pipelines/{p}/resources/{r}/check")))
                .await?;
            eprintln!("checking {r} of {p}");
            Ok(0)
        }
        ClientCmd::Webhooks { resource } => {
            let (p, r) = split("TYPE.NAME", &resource)?;
            let list: Vec<pipewright_api::WebhookDelivery> = c
                .json(c.req(
                    Method::GET,
                    &format!("/pipelines/{p}/resources/{r}/webhooks"),
                ))
                .await?;
            print_deliveries(&list);
            Ok(0)
        }
        ClientCmd::Pin {
            resource,
            fields: version,
            unpin,
        } => {
            let (p, r) = split("TYPE.NAME", &resource)?;
            let path = format!("/pipelines/{p}/resources/{r}/pin");
            if unpin {
                c.send(c.req(Method::DELETE, &path)).await?;
                eprintln!("unpinned {r}");
            } else {
                let v: std::collections::BTreeMap<String, String> = version.into_iter().collect();
                c.send(
                    c.req(Method::PUT, &path)
                        .json(&serde_json::json!({ "version": v })),
                )
                .await?;
                eprintln!("pinned {r}");
            }
            Ok(0)
        }
        ClientCmd::Token(t) => token(&c, t).await,
    }
}

async fn token(c: &Client, t: TokenCmd) -> Done {
    use reqwest::Method;
    match t {
        TokenCmd::Create { role, name } => {
            let v: TokenView = c
                .json(
                    c.req(Method::POST, "/tokens")
                        .json(&serde_json::json!({"name": name, "role": role})),
                )
                .await?;
            eprintln!("token `{}` ({}) made; it is shown once:", v.name, v.role);
            crate::write_out(format_args!("{}\n", v.token.unwrap_or_default()));
        }
        TokenCmd::List => {
            let list: Vec<TokenView> = c.json(c.req(Method::GET, "/tokens")).await?;
            for v in list {
                crate::write_out(format_args!(
                    "{}  {:<8}  {}\n",
                    v.id,
                    v.role.as_str(),
                    v.name
                ));
            }
        }
        TokenCmd::Revoke { id } => {
            c.send(c.req(Method::DELETE, &format!("/tokens/{id}")))
                .await?;
            eprintln!("revoked {id}");
        }
    }
    Ok(0)
}

/// `--param` strings typed by what the job declares (numbers and booleans parsed).
async fn typed_params(
    c: &Client,
    p: &str,
    j: &str,
    params: &[(String, String)],
) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    let mut out = serde_json::Map::new();
    if params.is_empty() {
        return Ok(out);
    }
    let view: PipelineView = c
        .json(c.req(reqwest::Method::GET, &format!("/pipelines/{p}")))
        .await?;
    let job = view.jobs.iter().find(|x| x.name == j);
    for (k, raw) in params {
        let ty = job
            .and_then(|x| x.inputs.iter().find(|i| i.name == *k))
            .map(|i| i.type_name.as_str());
        let v = match ty {
            Some("number") => raw
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .ok_or_else(|| Failure(2, format!("--param {k}: `{raw}` is not a number")))?,
            Some("bool") => match raw.as_str() {
                "true" => serde_json::Value::Bool(true),
                "false" => serde_json::Value::Bool(false),
                _ => {
                    return Err(Failure(
                        2,
                        format!("--param {k}: `{raw}` is not true or false"),
                    ));
                }
            },
            // Unknown names go as strings: the server names the problem.
            _ => serde_json::Value::String(raw.clone()),
        };
        out.insert(k.clone(), v);
    }
    Ok(out)
}

fn announce(b: &BuildView) {
    eprintln!(
        "build {} created: {}/{} #{} ({}){}",
        b.id,
        b.pipeline,
        b.job,
        b.number,
        b.trigger,
        if b.status == BuildStatus::WaitingForApproval {
            format!(" — waiting for approval: pipewright approve {}", b.id)
        } else {
            String::new()
        }
    );
}

fn print_deliveries(list: &[pipewright_api::WebhookDelivery]) {
    if list.is_empty() {
        eprintln!("no webhook deliveries since the server started");
        return;
    }
    crate::write_out(format_args!(
        "{:<20}  {:<7}  {:<12}  {:<38}  {:<9}  {:>3}  REASON\n",
        "TIME (UTC)", "FORGE", "EVENT", "DELIVERY", "RESULT", "HTTP"
    ));
    for d in list {
        let at = i64::try_from(d.at_ms)
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let result = serde_json::to_value(d.result)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        crate::write_out(format_args!(
            "{:<20}  {:<7}  {:<12}  {:<38}  {:<9}  {:>3}  {}\n",
            at,
            d.forge,
            d.event.as_deref().unwrap_or("-"),
            d.delivery_id.as_deref().unwrap_or("-"),
            result,
            d.status,
            d.reason.as_deref().unwrap_or("")
        ));
    }
}

fn print_builds(list: &[BuildView]) {
    crate::write_out(format_args!(
        "{:>6}  {:>4}  {:<20}  {:>9}  TRIGGER\n",
        "ID", "#", "STATUS", "DURATION"
    ));
    for b in list {
        let dur = match (b.started_at_ms, b.finished_at_ms) {
            (Some(s), Some(f)) => format!("{:.1}s", f.saturating_sub(s) as f64 / 1000.0),
            _ => "-".into(),
        };
        crate::write_out(format_args!(
            "{:>6}  {:>4}  {:<20}  {:>9}  {}\n",
            b.id,
            b.number,
            b.status.as_str(),
            dur,
            b.trigger
        ));
    }
}

/// Follows build `id`'s events, printing its log, until the build ends; reconnects with
/// `Last-Event-ID` when the connection drops. The exit code says how the build ended.
async fn follow(c: &Client, id: u64) -> Done {
    let b: BuildView = c
        .json(c.req(reqwest::Method::GET, &format!("/builds/{id}")))
        .await?;
    if matches!(
        b.status,
        BuildStatus::Pending | BuildStatus::WaitingForApproval
    ) {
        eprintln!(
            "build {} ({}/{} #{}) is {}{}",
            b.id,
            b.pipeline,
            b.job,
            b.number,
            b.status,
            b.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    let mut last: Option<u64> = None;
    let mut failures = 0u32;
    loop {
        let mut r = c.req(reqwest::Method::GET, &format!("/builds/{id}/events"));
        if let Some(seq) = last {
            r = r.header("Last-Event-ID", seq.to_string());
        }
        match stream_events(c, r, &mut last).await {
            Ok(()) => break,
            Err(Failure(code @ 2, msg)) => return Err(Failure(code, msg)),
            Err(Failure(_, msg)) if failures < 30 => {
                failures += 1;
                eprintln!("(connection lost: {msg}; resuming)");
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures.min(6)))).await;
            }
            Err(f) => return Err(f),
        }
    }
    let b: BuildView = c
        .json(c.req(reqwest::Method::GET, &format!("/builds/{id}")))
        .await?;
    eprintln!(
        "build {} ({}/{} #{}) {}{}",
        b.id,
        b.pipeline,
        b.job,
        b.number,
        b.status,
        b.reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    Ok(match b.status {
        BuildStatus::Succeeded | BuildStatus::Warning => 0,
        _ => 1,
    })
}

/// Reads one SSE connection to its end, printing log data and step changes.
async fn stream_events(
    c: &Client,
    r: reqwest::RequestBuilder,
    last: &mut Option<u64>,
) -> Result<(), Failure> {
    let mut resp = c.send(r).await?;
    let mut pending = String::new();
    let mut id: Option<u64> = None;
    let mut data = String::new();
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| Failure(3, format!("reading events: {e}")))?;
        let Some(chunk) = chunk else {
            return Ok(());
        };
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(nl) = pending.find('\n') {
            let line: String = pending.drain(..=nl).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() {
                    show(&data);
                    if id.is_some() {
                        *last = id;
                    }
                }
                data.clear();
                id = None;
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
}

fn show(data: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
        return;
    };
    match v.get("event").and_then(|e| e.as_str()) {
        Some("log") => {
            if let Some(text) = v.get("data").and_then(|d| d.as_str()) {
                crate::write_out(format_args!("{text}"));
            }
        }
        Some("step_finished") if v.get("final").and_then(|f| f.as_bool()) == Some(true) => {
            let name = v
                .pointer("/step/path")
                .and_then(|p| p.as_array())
                .and_then(|p| p.last())
                .and_then(|s| s.as_str())
                .unwrap_or("?");
            let status = v.get("status").and_then(|s| s.as_str()).unwrap_or("?");
            match v.get("reason").and_then(|r| r.as_str()) {
                Some(r) => eprintln!("--- {name}: {status} ({r})"),
                None => eprintln!("--- {name}: {status}"),
            }
        }
        _ => {}
    }
}
