//! The worker link over NATS (feature `nats`): a remote worker's claims, heartbeats, events
//! and results are requests on `<prefix>.<op>`; the server answers each once it has
//! committed it, so a worker keeps (and retries) whatever is not answered yet. Every request
//! carries the worker's token; the server checks it has the `worker` role (or `admin`) and
//! takes the token's name as the worker's identity, so a worker can only report on builds
//! it claimed itself.

use crate::hub::{Hub, WorkerInfo};
use crate::link::{Beat, Claim, LinkError, WorkerLink};
use crate::tokens::Tokens;
use async_trait::async_trait;
use futures_util::StreamExt;
use pipewright_api::Role;
use pipewright_core::{BuildStatus, CancellationToken, Event};
use pipewright_store::BuildId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The subject prefix of link requests.
pub const LINK_PREFIX: &str = "pipewright.link";

/// One request from a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Request {
    token: String,
    build: BuildId,
    attempt: u32,
    #[serde(flatten)]
    op: Op,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Hello {
        tags: Vec<String>,
        concurrency: usize,
        /// The name the worker was started with (`--name`), checked against its token's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Claim {
        tags: Vec<String>,
        concurrency: usize,
    },
    Heartbeat,
    Events {
        events: Vec<Event>,
    },
    Finish {
        status: BuildStatus,
        reason: Option<String>,
    },
}

/// The server's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Reply {
    refused: Option<String>,
    fenced: Option<String>,
    error: Option<String>,
    cancel: bool,
}

/// A remote worker's side: requests over a NATS connection.
#[derive(Debug)]
pub struct NatsLink {
    client: async_nats::Client,
    token: String,
    tags: Vec<String>,
    concurrency: usize,
    /// The name this worker must have (its token's), if it was given one.
    name: Option<String>,
    /// Cancel tokens of the builds this worker runs, fired by a heartbeat's answer.
    cancels: Mutex<HashMap<BuildId, CancellationToken>>,
}

impl NatsLink {
    /// A link on `client`, authenticating with `token`, for a worker advertising `tags`.
    pub fn new(
        client: async_nats::Client,
        token: String,
        tags: Vec<String>,
        concurrency: usize,
    ) -> Self {
        Self {
            client,
            token,
            tags,
            concurrency,
            name: None,
            cancels: Mutex::new(HashMap::new()),
        }
    }

    /// Expects the server to know this worker as `name`: the server refuses the worker when
    /// its token's name is another (the token's name is the worker's identity).
    pub fn expecting_name(mut self, name: Option<String>) -> Self {
        self.name = name;
        self
    }

    async fn ask(&self, build: BuildId, attempt: u32, op: Op) -> Result<Reply, LinkError> {
        let name = match &op {
            Op::Hello { .. } => "hello",
            Op::Claim { .. } => "claim",
            Op::Heartbeat => "heartbeat",
            Op::Events { .. } => "events",
            Op::Finish { .. } => "finish",
        };
        let body = serde_json::to_vec(&Request {
            token: self.token.clone(),
            build,
            attempt,
            op,
        })
        .map_err(|e| LinkError::Unavailable(format!("a {name} request does not serialize: {e}")))?;
        let subject = format!("{LINK_PREFIX}.{name}");
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            self.client.request(subject, body.into()),
        )
        .await
        .map_err(|_| {
            LinkError::Unavailable(format!("the server did not answer a {name} within 10s"))
        })?
        .map_err(|e| LinkError::Unavailable(format!("the {name} request failed: {e}")))?;
        let reply: Reply = serde_json::from_slice(&answer.payload).map_err(|e| {
            LinkError::Unavailable(format!(
                "the server's answer to a {name} is not understood: {e}"
            ))
        })?;
        if let Some(why) = &reply.refused {
            return Err(LinkError::Refused(why.clone()));
        }
        if let Some(why) = &reply.fenced {
            return Err(LinkError::Fenced(why.clone()));
        }
        if let Some(e) = &reply.error {
            return Err(LinkError::Unavailable(e.clone()));
        }
        Ok(reply)
    }
}

#[async_trait]
impl WorkerLink for NatsLink {
    async fn claim(&self, build: BuildId, attempt: u32, _worker: &str) -> Result<Claim, LinkError> {
        self.ask(
            build,
            attempt,
            Op::Claim {
                tags: self.tags.clone(),
                concurrency: self.concurrency,
            },
        )
        .await?;
        let cancel = CancellationToken::new();
        if let Ok(mut c) = self.cancels.lock() {
            c.insert(build, cancel.clone());
        }
        Ok(Claim { cancel })
    }

    async fn announce(
        &self,
        _worker: &str,
        tags: &[String],
        concurrency: usize,
    ) -> Result<(), LinkError> {
        self.ask(
            BuildId(0),
            0,
            Op::Hello {
                tags: tags.to_vec(),
                concurrency,
                name: self.name.clone(),
            },
        )
        .await
        .map(|_| ())
    }

    async fn heartbeat(
        &self,
        build: BuildId,
        attempt: u32,
        _worker: &str,
    ) -> Result<Beat, LinkError> {
        let reply = self.ask(build, attempt, Op::Heartbeat).await?;
        Ok(Beat {
            cancel: reply.cancel,
        })
    }

    async fn events(
        &self,
        build: BuildId,
        attempt: u32,
        events: Vec<Event>,
    ) -> Result<(), LinkError> {
        self.ask(build, attempt, Op::Events { events })
            .await
            .map(|_| ())
    }

    async fn finish(
        &self,
        build: BuildId,
        attempt: u32,
        status: BuildStatus,
        reason: Option<String>,
    ) -> Result<(), LinkError> {
        let done = self
            .ask(build, attempt, Op::Finish { status, reason })
            .await
            .map(|_| ());
        if let Ok(mut c) = self.cancels.lock() {
            c.remove(&build);
        }
        done
    }
}

/// Answers link requests for `hub` until `stop`: one subscription in the queue group
/// `pipewright-server`, each request handled in its own task.
pub async fn serve(
    hub: Arc<Hub>,
    client: async_nats::Client,
    tokens: Arc<Tokens>,
    stop: CancellationToken,
) -> Result<(), String> {
    let mut sub = client
        .queue_subscribe(format!("{LINK_PREFIX}.*"), "pipewright-server".into())
        .await
        .map_err(|e| format!("cannot subscribe to {LINK_PREFIX}.*: {e}"))?;
    tracing::info!(subjects = %format!("{LINK_PREFIX}.*"), "taking worker reports over NATS");
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                () = stop.cancelled() => break,
                m = sub.next() => match m { Some(m) => m, None => break },
            };
            let (hub, client, tokens) = (hub.clone(), client.clone(), tokens.clone());
            tokio::spawn(async move {
                let reply = handle(&hub, &tokens, &msg.payload).await;
                if let Some(to) = msg.reply {
                    let body = serde_json::to_vec(&reply).unwrap_or_default();
                    if let Err(e) = client.publish(to, body.into()).await {
                        tracing::warn!(error = %e, "could not answer a worker");
                    }
                }
            });
        }
        let _ = sub.unsubscribe().await;
    });
    Ok(())
}

async fn handle(hub: &Arc<Hub>, tokens: &Tokens, payload: &[u8]) -> Reply {
    let req: Request = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            return Reply {
                fenced: Some(format!("the request is not understood: {e}")),
                ..Reply::default()
            };
        }
    };
    let worker = match tokens.check(&req.token) {
        Some((Role::Worker | Role::Admin, name)) => name,
        Some((role, name)) => {
            tracing::warn!(token = %name, %role, "a worker request with a token that is not a worker's was refused");
            return Reply {
                refused: Some(format!(
                    "the token `{name}` has the `{role}` role, not `worker`"
                )),
                ..Reply::default()
            };
        }
        None => {
            tracing::warn!(build = %req.build, "a worker request with an unknown token was refused");
            return Reply {
                refused: Some("the worker token is not valid (unknown or revoked)".into()),
                ..Reply::default()
            };
        }
    };
    let (build, attempt) = (req.build, req.attempt);
    let done = match req.op {
        Op::Hello { name: Some(n), .. } if n != worker => Err(LinkError::Refused(format!(
            "this worker's token is `{worker}`'s, not `{n}`'s: a worker's name is its token's name"
        ))),
        Op::Hello {
            tags, concurrency, ..
        } => {
            hub.register_worker(
                &worker,
                WorkerInfo {
                    tags,
                    concurrency,
                    last_seen_ms: 0,
                },
            );
            hub.wake_dispatcher();
            Ok(false)
        }
        Op::Claim { tags, concurrency } => {
            hub.register_worker(
                &worker,
                WorkerInfo {
                    tags,
                    concurrency,
                    last_seen_ms: 0,
                },
            );
            hub.claim(build, attempt, &worker).await.map(|_| false)
        }
        Op::Heartbeat => hub.heartbeat(build, attempt, &worker).map(|b| b.cancel),
        Op::Events { events } => match hub.renew(build, attempt, &worker) {
            Ok(()) => hub
                .take_events(build, attempt, events)
                .await
                .map(|()| false),
            Err(e) => Err(e),
        },
        Op::Finish { status, reason } => match hub.renew(build, attempt, &worker) {
            Ok(()) => hub
                .take_result(build, attempt, status, reason)
                .await
                .map(|()| false),
            Err(e) => Err(e),
        },
    };
    match done {
        Ok(cancel) => Reply {
            cancel,
            ..Reply::default()
        },
        Err(LinkError::Fenced(why)) => Reply {
            fenced: Some(why),
            ..Reply::default()
        },
        Err(LinkError::Unavailable(e)) => Reply {
            error: Some(e),
            ..Reply::default()
        },
        Err(LinkError::Refused(e)) => Reply {
            refused: Some(e),
            ..Reply::default()
        },
    }
}
