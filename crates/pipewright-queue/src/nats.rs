//! [`NatsQueue`]: the queue on a NATS JetStream work-queue stream.
//!
//! One stream (file storage, work-queue retention: a message is gone once acknowledged)
//! takes subjects `<prefix>.<tag set>`, where the tag set is the message's tags sorted and
//! joined with `+` (`any` when it has none). Each tag set has one durable pull consumer, so
//! every worker with fitting tags competes for the same messages. A worker pulls from the
//! consumers of every subset of its tags. `Nats-Msg-Id` de-duplicates within the stream's
//! duplicate window; deliveries are acknowledged with a double ack (the server confirms), and
//! `progress` sends an in-progress ack that restarts the ack wait.

use crate::{Acker, Delivery, Message, Queue, QueueError, QueueResult};
use async_nats::jetstream::{self, AckKind, consumer, stream};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// How to reach NATS and what the stream looks like.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// `nats://HOST:PORT` (several separated by commas).
    pub url: String,
    /// The stream's name.
    pub stream: String,
    /// The subject prefix.
    pub subject_prefix: String,
    /// Stream replicas (1 on a single server; 3 on a cluster).
    pub replicas: usize,
    /// How long a delivery may go without an ack or a progress report before it is
    /// delivered again.
    pub ack_wait: Duration,
    /// Deliveries after which NATS stops delivering a message (the server's own bound on
    /// attempts is lower and ends the build `errored`).
    pub max_deliver: i64,
    /// How long a message id is remembered for de-duplication.
    pub duplicate_window: Duration,
    /// A token for NATS authentication.
    pub token: Option<String>,
    /// A user and password for NATS authentication.
    pub user: Option<(String, String)>,
    /// A `.creds` file (JWT and nkey) for NATS authentication.
    pub credentials: Option<PathBuf>,
    /// Create the stream when it is missing (the server does; workers only look it up).
    pub create: bool,
}

impl NatsOptions {
    /// Defaults for `url`: stream `PIPEWRIGHT_JOBS`, subjects `pipewright.jobs.*`, one replica,
    /// a 30 s ack wait, 10 deliveries, a 2 minute de-duplication window, creating the stream.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "PIPEWRIGHT_JOBS".into(),
            subject_prefix: "pipewright.jobs".into(),
            replicas: 1,
            ack_wait: Duration::from_secs(30),
            max_deliver: 10,
            duplicate_window: Duration::from_secs(120),
            token: None,
            user: None,
            credentials: None,
            create: true,
        }
    }
}

/// The queue on NATS JetStream.
pub struct NatsQueue {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: Mutex<stream::Stream>,
    opts: NatsOptions,
    consumers: Mutex<std::collections::HashMap<String, consumer::PullConsumer>>,
    next: AtomicUsize,
    closed: AtomicBool,
    close: tokio::sync::Notify,
}

impl std::fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueue")
            .field("url", &self.opts.url)
            .field("stream", &self.opts.stream)
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(format!("{what}: {e}"))
}

/// A tag as a subject token: letters, digits, `-` and `_` kept, anything else `_`.
fn token(tag: &str) -> String {
    tag.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The tag-set key of `tags`: sorted, de-duplicated, joined with `+`; `any` for none.
fn tag_key(tags: &[String]) -> String {
    let mut t: Vec<String> = tags.iter().map(|t| token(t)).collect();
    t.sort();
    t.dedup();
    if t.is_empty() {
        "any".into()
    } else {
        t.join("+")
    }
}

/// Every subset of `tags` (at most 2^8: more tags than that are refused).
fn subsets(tags: &[String]) -> QueueResult<Vec<Vec<String>>> {
    let mut t: Vec<String> = tags.to_vec();
    t.sort();
    t.dedup();
    if t.len() > 8 {
        return Err(QueueError::Invalid(format!(
            "a worker may advertise at most 8 tags over NATS, not {}",
            t.len()
        )));
    }
    Ok((0..1u32 << t.len())
        .map(|mask| {
            t.iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, s)| s.clone())
                .collect()
        })
        .collect())
}

impl NatsQueue {
    /// Connects, then creates the stream (when `opts.create`) or looks it up, and checks that
    /// an existing stream has the settings this queue needs.
    pub async fn connect(opts: NatsOptions) -> QueueResult<Self> {
        let mut conn = async_nats::ConnectOptions::new()
            .name("pipewright")
            .connection_timeout(Duration::from_secs(10));
        if let Some(t) = &opts.token {
            conn = conn.token(t.clone());
        }
        if let Some((u, p)) = &opts.user {
            conn = conn.user_and_password(u.clone(), p.clone());
        }
        if let Some(creds) = &opts.credentials {
            conn = conn.credentials_file(creds).await.map_err(|e| {
                QueueError::Invalid(format!(
                    "the NATS credentials file {}: {e}",
                    creds.display()
                ))
            })?;
        }
        let client = conn
            .connect(opts.url.as_str())
            .await
            .map_err(|e| unavailable(&format!("cannot connect to NATS at {}", opts.url), e))?;
        let js = jetstream::new(client.clone());
        let wanted = stream::Config {
            name: opts.stream.clone(),
            subjects: vec![format!("{}.*", opts.subject_prefix)],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: opts.replicas,
            duplicate_window: opts.duplicate_window,
            ..Default::default()
        };
        let stream = if opts.create {
            js.get_or_create_stream(wanted.clone())
                .await
                .map_err(|e| unavailable(&format!("cannot create the stream {}", opts.stream), e))?
        } else {
            js.get_stream(&opts.stream).await.map_err(|e| {
                unavailable(
                    &format!(
                        "cannot find the stream {} (start the server first)",
                        opts.stream
                    ),
                    e,
                )
            })?
        };
        let have = &stream.cached_info().config;
        if have.retention != wanted.retention
            || have.storage != wanted.storage
            || have.subjects != wanted.subjects
        {
            return Err(QueueError::Invalid(format!(
                "the stream {} exists with other settings (retention {:?}, storage {:?}, subjects {:?}); \
                 this queue needs work-queue retention, file storage and subjects {:?}: delete the stream or choose another name",
                opts.stream, have.retention, have.storage, have.subjects, wanted.subjects
            )));
        }
        if have.num_replicas != wanted.num_replicas {
            tracing::warn!(stream = %opts.stream, have = have.num_replicas, want = wanted.num_replicas, "the stream has another number of replicas than asked for");
        }
        Ok(NatsQueue {
            client,
            js,
            stream: Mutex::new(stream),
            opts,
            consumers: Mutex::new(std::collections::HashMap::new()),
            next: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
        })
    }

    /// The NATS connection (for other traffic, such as a worker's reports).
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    fn subject(&self, key: &str) -> String {
        format!("{}.{key}", self.opts.subject_prefix)
    }

    /// The durable consumer of tag set `key`, created on first use.
    async fn consumer(&self, key: &str) -> QueueResult<consumer::PullConsumer> {
        let mut cache = self.consumers.lock().await;
        if let Some(c) = cache.get(key) {
            return Ok(c.clone());
        }
        let name = format!("{}-{}", self.opts.stream, key.replace('+', "_"));
        let cfg = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: self.subject(key),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.opts.ack_wait,
            max_deliver: self.opts.max_deliver,
            ..Default::default()
        };
        let c = self
            .stream
            .lock()
            .await
            .get_or_create_consumer(&name, cfg)
            .await
            .map_err(|e| unavailable(&format!("cannot create the consumer {name}"), e))?;
        cache.insert(key.to_owned(), c.clone());
        Ok(c)
    }

    /// One pull from `c`: a message, or none within `wait`.
    async fn pull(
        &self,
        c: &consumer::PullConsumer,
        wait: Duration,
    ) -> QueueResult<Option<jetstream::Message>> {
        let mut batch = c
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| unavailable("cannot pull from the stream", e))?;
        match batch.next().await {
            Some(Ok(m)) => Ok(Some(m)),
            Some(Err(e)) => Err(unavailable("pulling a message failed", e)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl Queue for NatsQueue {
    async fn publish(&self, message: Message) -> QueueResult<bool> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(QueueError::Closed);
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", message.id.as_str());
        headers.insert("Pipewright-Tags", message.tags.join(",").as_str());
        let ack = self
            .js
            .publish_with_headers(
                self.subject(&tag_key(&message.tags)),
                headers,
                message.body.into(),
            )
            .await
            .map_err(|e| unavailable("cannot publish", e))?
            .await
            .map_err(|e| unavailable("the stream did not confirm a publish", e))?;
        Ok(!ack.duplicate)
    }

    async fn receive(&self, tags: &[String]) -> QueueResult<Delivery> {
        let mut consumers = Vec::new();
        for set in subsets(tags)? {
            consumers.push(self.consumer(&tag_key(&set)).await?);
        }
        // One consumer: a long pull answers at once when a message arrives. Several: short
        // pulls in turn, starting at a rotating one so no tag set starves.
        let wait = if consumers.len() == 1 {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(200)
        };
        loop {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..consumers.len() {
                if self.closed.load(Ordering::SeqCst) {
                    return Err(QueueError::Closed);
                }
                let c = &consumers[(start + i) % consumers.len()];
                let pulled = tokio::select! {
                    p = self.pull(c, wait) => p?,
                    () = self.close.notified() => return Err(QueueError::Closed),
                };
                if let Some(m) = pulled {
                    let deliveries = m.info().map(|i| i.delivered).unwrap_or(1);
                    let tags = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Pipewright-Tags"))
                        .map(|v| {
                            v.as_str()
                                .split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    let id = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default();
                    let message = Message {
                        id,
                        tags,
                        body: m.payload.to_vec(),
                    };
                    return Ok(Delivery::new(
                        message,
                        u64::try_from(deliveries).unwrap_or(1),
                        Box::new(NatsAcker(m)),
                    ));
                }
            }
        }
    }

    async fn depth(&self) -> QueueResult<u64> {
        let mut s = self.stream.lock().await;
        let info = s
            .info()
            .await
            .map_err(|e| unavailable("cannot read the stream's state", e))?;
        Ok(info.state.messages)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.close.notify_waiters();
    }
}

struct NatsAcker(jetstream::Message);

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> QueueResult<()> {
        self.0
            .double_ack()
            .await
            .map_err(|e| unavailable("the stream did not confirm an ack", e))
    }

    async fn progress(&self) -> QueueResult<()> {
        self.0
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| unavailable("cannot send a progress ack", e))
    }

    async fn nak(&self, delay: Duration) -> QueueResult<()> {
        self.0
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| unavailable("cannot give a message back", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_sets_have_one_key_whatever_the_order() {
        let s = |t: &[&str]| t.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(tag_key(&s(&[])), "any");
        assert_eq!(
            tag_key(&s(&["linux", "gpu"])),
            tag_key(&s(&["gpu", "linux", "gpu"]))
        );
        assert_eq!(tag_key(&s(&["a.b"])), "a_b");
        assert_eq!(subsets(&s(&["a", "b"])).unwrap().len(), 4);
        assert!(subsets(&s(&["1", "2", "3", "4", "5", "6", "7", "8", "9"])).is_err());
    }
}
