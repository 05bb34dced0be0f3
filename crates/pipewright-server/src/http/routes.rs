//! The handlers of the JSON routes.

use super::{ApiError, AppState, Caller, JsonBody};
use crate::error::ServerError;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pipewright_api::{
    BuildView, PinRequest, RerunRequest, Role, TokenRequest, TriggerRequest, VersionView,
};
use pipewright_store::BuildId;
use pipewright_versions::{VersionId, VersionStore};
use std::collections::HashMap;

type Answer<T> = Result<T, ApiError>;

fn build_id(raw: &str) -> Result<BuildId, ApiError> {
    raw.parse::<u64>().map(BuildId).map_err(|_| {
        ApiError(ServerError::BadRequest(format!(
            "`{raw}` is not a build id (a positive integer)"
        )))
    })
}

pub(super) async fn metrics(State(st): State<AppState>) -> Response {
    if let Ok(depth) = st.hub.queue.depth().await {
        st.hub.metrics.set_queue_depth(depth);
    }
    st.hub.refresh_worker_metrics();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.hub.metrics.render(),
    )
        .into_response()
}

pub(super) async fn pipelines(State(st): State<AppState>, who: Caller) -> Answer<Response> {
    who.require(Role::Viewer)?;
    Ok(Json(st.hub.pipeline_summaries()).into_response())
}

pub(super) async fn pipeline(
    State(st): State<AppState>,
    who: Caller,
    Path(p): Path<String>,
) -> Answer<Response> {
    who.require(Role::Viewer)?;
    match st.hub.pipeline_view(&p).await? {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(ApiError(ServerError::NotFound(format!(
            "no pipeline `{p}`"
        )))),
    }
}

/// `?limit=&before=`, each a positive integer when given (else a 400 naming it).
#[derive(Debug, Default)]
pub(super) struct Page {
    limit: Option<usize>,
    before: Option<u64>,
}

impl Page {
    fn parse(q: &HashMap<String, String>) -> Result<Page, ApiError> {
        let num = |k: &str| -> Result<Option<u64>, ApiError> {
            q.get(k)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        ApiError(ServerError::BadRequest(format!(
                            "`{k}` must be a non-negative integer, got `{v}`"
                        )))
                    })
                })
                .transpose()
        };
        if let Some(k) = q.keys().find(|k| !matches!(k.as_str(), "limit" | "before")) {
            return Err(ApiError(ServerError::BadRequest(format!(
                "unknown query parameter `{k}` (known: limit, before)"
            ))));
        }
        Ok(Page {
            limit: num("limit")?.map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
            before: num("before")?,
        })
    }
}

pub(super) async fn job_builds(
    State(st): State<AppState>,
    who: Caller,
    Path((p, j)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer<Response> {
    who.require(Role::Viewer)?;
    let page = Page::parse(&q)?;
    let pipeline = st
        .hub
        .pipeline(&p)
        .ok_or_else(|| ApiError(ServerError::NotFound(format!("no pipeline `{p}`"))))?;
    if !pipeline.jobs.contains_key(&j) {
        return Err(ApiError(ServerError::NotFound(format!(
            "pipeline `{p}` has no job `{j}`"
        ))));
    }
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let builds = st.hub.store.job_builds(&p, &j, limit, page.before).await?;
    let mut out: Vec<BuildView> = Vec::with_capacity(builds.len());
    for b in &builds {
        out.push(st.hub.build_view(b).await?);
    }
    Ok(Json(out).into_response())
}

pub(super) async fn trigger(
    State(st): State<AppState>,
    who: Caller,
    Path((p, j)): Path<(String, String)>,
    JsonBody(req): JsonBody<TriggerRequest>,
) -> Answer<Response> {
    who.require(Role::Operator)?;
    let b = st.hub.trigger(&p, &j, req.inputs, &who.name).await?;
    Ok((StatusCode::CREATED, Json(st.hub.build_view(&b).await?)).into_response())
}

pub(super) async fn build(
    State(st): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
) -> Answer<Response> {
    who.require(Role::Viewer)?;
    let b = st.hub.get_build(build_id(&id)?).await?;
    Ok(Json(st.hub.build_view(&b).await?).into_response())
}

pub(super) async fn log(
    State(st): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
) -> Answer<Response> {
    who.require(Role::Viewer)?;
    let id = build_id(&id)?;
    st.hub.get_build(id).await?;
    let text = st.hub.store.log_text(id).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

pub(super) async fn cancel(
    State(st): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
) -> Answer<Response> {
    who.require(Role::Operator)?;
    let b = st
        .hub
        .cancel(build_id(&id)?, &format!("cancelled by {}", who.name))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(st.hub.build_view(&b).await?)).into_response())
}

pub(super) async fn rerun(
    State(st): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RerunRequest>,
) -> Answer<Response> {
    who.require(Role::Operator)?;
    let b = st.hub.rerun(build_id(&id)?, req.from, &who.name).await?;
    Ok((StatusCode::CREATED, Json(st.hub.build_view(&b).await?)).into_response())
}

pub(super) async fn approve(
    State(st): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
) -> Answer<Response> {
    who.require(Role::Operator)?;
    let b = st.hub.approve(build_id(&id)?, &who.name).await?;
    Ok((StatusCode::ACCEPTED, Json(st.hub.build_view(&b).await?)).into_response())
}

pub(super) async fn versions(
    State(st): State<AppState>,
    who: Caller,
    Path((p, r)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer<Response> {
    who.require(Role::Viewer)?;
    let page = Page::parse(&q)?;
    st.hub.resource_exists(&p, &r)?;
    let store = st.hub.versions(&p);
    let pinned = store.pinned(&r).await?;
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let list = store
        .versions(&r, limit, page.before.map(VersionId))
        .await?;
    let out: Vec<VersionView> = list
        .into_iter()
        .map(|(id, version)| VersionView {
            id: id.0,
            version,
            pinned: Some(id) == pinned,
        })
        .collect();
    Ok(Json(out).into_response())
}

pub(super) async fn check(
    State(st): State<AppState>,
    who: Caller,
    Path((p, r)): Path<(String, String)>,
) -> Answer<Response> {
    who.require(Role::Operator)?;
    st.hub.check_now(&p, &r)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"checking": r, "check": st.hub.check_state(&p, &r)})),
    )
        .into_response())
}

pub(super) async fn pin(
    State(st): State<AppState>,
    who: Caller,
    Path((p, r)): Path<(String, String)>,
    JsonBody(req): JsonBody<PinRequest>,
) -> Answer<Response> {
    who.require(Role::Operator)?;
    st.hub.pin(&p, &r, Some(&req.version)).await?;
    Ok(Json(serde_json::json!({"pinned": req.version})).into_response())
}

pub(super) async fn unpin(
    State(st): State<AppState>,
    who: Caller,
    Path((p, r)): Path<(String, String)>,
) -> Answer<Response> {
    who.require(Role::Operator)?;
    st.hub.pin(&p, &r, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn tokens(State(st): State<AppState>, who: Caller) -> Answer<Response> {
    who.require(Role::Admin)?;
    Ok(Json(st.tokens.list()).into_response())
}

pub(super) async fn create_token(
    State(st): State<AppState>,
    who: Caller,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Answer<Response> {
    who.require(Role::Admin)?;
    if req.name.trim().is_empty() {
        return Err(ApiError(ServerError::BadRequest(
            "a token needs a name".into(),
        )));
    }
    let t = st.tokens.create(req.name.trim(), req.role)?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

pub(super) async fn revoke_token(
    State(st): State<AppState>,
    who: Caller,
    Path(id): Path<String>,
) -> Answer<Response> {
    who.require(Role::Admin)?;
    st.tokens.revoke(&id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn workers(State(st): State<AppState>, who: Caller) -> Answer<Response> {
    who.require(Role::Viewer)?;
    let list: Vec<serde_json::Value> = st
        .hub
        .workers()
        .into_iter()
        .map(|(name, w)| {
            let running = st.hub.running_on(&name);
            serde_json::json!({
                "name": name,
                "tags": w.tags,
                "concurrency": w.concurrency,
                "running": running,
                "last_seen_ms": w.last_seen_ms,
            })
        })
        .collect();
    Ok(Json(list).into_response())
}
