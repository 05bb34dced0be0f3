//! `GET /builds/{id}/events`: the build's events as Server-Sent Events. `id:` is the event's
//! `seq`; a client that reconnects with `Last-Event-ID` gets every later event exactly once;
//! a comment every 15 s keeps proxies from closing an idle stream; the stream ends after the
//! build's last event.

use super::{ApiError, AppState, Caller};
use crate::error::ServerError;
use crate::hub::Hub;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use pipewright_api::Role;
use pipewright_store::{BuildId, EventRecord};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

pub(super) async fn events(
    State(st): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    who.require(Role::Viewer)?;
    let id = id
        .parse::<u64>()
        .map(BuildId)
        .map_err(|_| ApiError(ServerError::BadRequest(format!("`{id}` is not a build id"))))?;
    st.hub.get_build(id).await?;
    let last = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError(ServerError::BadRequest(
                        "Last-Event-ID must be an event seq (an integer)".into(),
                    ))
                })?,
        ),
        // `?after=N` for clients that cannot set the header.
        None => match q.get("after") {
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                ApiError(ServerError::BadRequest(format!(
                    "`after` must be an event seq, got `{v}`"
                )))
            })?),
            None => None,
        },
    };
    let state = Tail {
        hub: st.hub.clone(),
        id,
        after: last,
        buf: VecDeque::new(),
        rx: st.hub.subscribe(),
        done: false,
    };
    let stream =
        futures_util::stream::unfold(
            state,
            |mut t| async move { t.next().await.map(|e| (Ok(e), t)) },
        );
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("heartbeat"),
    ))
}

struct Tail {
    hub: Arc<Hub>,
    id: BuildId,
    after: Option<u64>,
    buf: VecDeque<EventRecord>,
    rx: broadcast::Receiver<BuildId>,
    done: bool,
}

impl Tail {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(r) = self.buf.pop_front() {
                self.after = Some(r.seq);
                let name = r
                    .body
                    .get("event")
                    .and_then(|v| v.as_str())
                    .unwrap_or("event")
                    .to_owned();
                return Some(
                    Event::default()
                        .id(r.seq.to_string())
                        .event(name)
                        .data(r.body.to_string()),
                );
            }
            if self.done {
                return None;
            }
            // Subscribed before reading, so news between the read and the wait is not missed.
            let page = self
                .hub
                .store
                .events_after(self.id, self.after, 500)
                .await
                .ok()?;
            if !page.is_empty() {
                self.buf.extend(page);
                continue;
            }
            let ended = self
                .hub
                .store
                .build(self.id)
                .await
                .ok()
                .flatten()
                .is_none_or(|b| b.state.is_terminal());
            if ended {
                // Results are written after the last events: one more read catches a race.
                let page = self
                    .hub
                    .store
                    .events_after(self.id, self.after, 500)
                    .await
                    .ok()?;
                self.buf.extend(page);
                self.done = true;
                continue;
            }
            self.wait().await;
        }
    }

    /// Until the build has news (or a while passes, in case a message was missed).
    async fn wait(&mut self) {
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if self.hub.shutdown.is_cancelled() {
                self.done = true;
                return;
            }
            let next = tokio::select! {
                () = self.hub.shutdown.cancelled() => continue,
                r = tokio::time::timeout_at(until, self.rx.recv()) => r,
            };
            match next {
                Ok(Ok(id)) if id == self.id => return,
                Ok(Ok(_)) => continue,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => return,
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    // The server is going away; do not spin.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return;
                }
                Err(_) => return,
            }
        }
    }
}

/// `GET /pipelines/{p}/events`: a `build` event (the build's JSON) whenever a build of the
/// pipeline changes status or finishes a step, so pages stay live without polling. Changes
/// are gathered for 100 ms and a build is sent only when its status or steps changed, so a
/// build printing megabytes of log costs its watchers nothing.
pub(super) async fn pipeline_events(
    State(st): State<AppState>,
    who: Caller,
    Path(p): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    who.require(Role::Viewer)?;
    if st.hub.pipeline(&p).is_none() {
        return Err(ApiError(ServerError::NotFound(format!(
            "no pipeline `{p}`"
        ))));
    }
    let state = Watch {
        hub: st.hub.clone(),
        pipeline: p,
        rx: st.hub.subscribe(),
        sent: std::collections::HashMap::new(),
        buf: VecDeque::new(),
    };
    let stream =
        futures_util::stream::unfold(
            state,
            |mut w| async move { w.next().await.map(|e| (Ok(e), w)) },
        );
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("heartbeat"),
    ))
}

struct Watch {
    hub: Arc<Hub>,
    pipeline: String,
    rx: broadcast::Receiver<BuildId>,
    /// What was last sent per build: (status, steps and their statuses).
    sent: std::collections::HashMap<u64, String>,
    buf: VecDeque<Event>,
}

impl Watch {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.buf.pop_front() {
                return Some(e);
            }
            // A stopping server ends its streams, or graceful shutdown would wait for every
            // open page forever.
            let first = tokio::select! {
                () = self.hub.shutdown.cancelled() => return None,
                r = self.rx.recv() => r,
            };
            let first = match first {
                Ok(id) => id,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed some: tell the page to read everything again.
                    return Some(Event::default().event("resync").data("{}"));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            let mut ids = vec![first];
            let until = tokio::time::Instant::now() + Duration::from_millis(100);
            while let Ok(Ok(id)) = tokio::time::timeout_at(until, self.rx.recv()).await {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            for id in ids {
                let Ok(Some(b)) = self.hub.store.build(id).await else {
                    continue;
                };
                if b.pipeline != self.pipeline {
                    continue;
                }
                let Ok(view) = self.hub.build_view(&b).await else {
                    continue;
                };
                let shape = format!(
                    "{}|{}",
                    view.status,
                    view.steps
                        .iter()
                        .map(|s| format!("{}:{}", s.step, s.status))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                if self.sent.get(&id.0) == Some(&shape) {
                    continue;
                }
                self.sent.insert(id.0, shape);
                if let Ok(json) = serde_json::to_string(&view) {
                    self.buf
                        .push_back(Event::default().event("build").data(json));
                }
            }
        }
    }
}
