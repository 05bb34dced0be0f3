//! The web UI's files and its browser session: `POST /ui/login` turns a token into an
//! HttpOnly cookie (never in a URL), `POST /ui/logout` drops it, `GET /api/v1/me` says who the
//! page is talking as.

use super::auth::{CSRF_COOKIE, SESSION_COOKIE};
use super::{ApiError, AppState, Caller, JsonBody};
use crate::error::ServerError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Scripts, styles and data only from this server; no frames, no plug-ins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// How long a browser session lasts.
const SESSION_SECS: u64 = 30 * 24 * 3600;

fn file(name: &str) -> Response {
    let Some(a) = pipewright_ui::asset(name) else {
        return ApiError(ServerError::NotFound(format!(
            "the UI has no file `{name}`"
        )))
        .into_response();
    };
    let cache = if name == "index.html" {
        "no-cache"
    } else {
        "public, max-age=300"
    };
    (
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CACHE_CONTROL, cache),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        a.body,
    )
        .into_response()
}

pub(super) async fn index() -> Response {
    file("index.html")
}

pub(super) async fn asset(Path(name): Path<String>) -> Response {
    file(&name)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Login {
    token: String,
}

/// `Secure` when the browser reached us over HTTPS (directly or through a proxy that says so).
fn secure(h: &HeaderMap) -> &'static str {
    let https = h
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if https { "; Secure" } else { "" }
}

pub(super) async fn login(
    State(st): State<AppState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<Login>,
) -> Result<Response, ApiError> {
    let token = req.token.trim();
    let Some((role, name)) = st.tokens.check(token) else {
        return Err(ApiError(ServerError::Unauthorized(
            "the token is not valid (unknown or revoked)".into(),
        )));
    };
    if token.contains([';', ',', ' ']) {
        return Err(ApiError(ServerError::BadRequest(
            "a token cannot contain `;`, `,` or spaces".into(),
        )));
    }
    let csrf = hex::encode(rand::random::<[u8; 16]>());
    let sec = secure(&headers);
    let mut resp = (
        StatusCode::OK,
        Json(serde_json::json!({"name": name, "role": role})),
    )
        .into_response();
    for c in [
        format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}{sec}"
        ),
        format!("{CSRF_COOKIE}={csrf}; Path=/; SameSite=Strict; Max-Age={SESSION_SECS}{sec}"),
    ] {
        let v = HeaderValue::from_str(&c)
            .map_err(|_| ApiError(ServerError::BadRequest("the token is not valid".into())))?;
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

pub(super) async fn logout() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        let c = format!("{name}=; Path=/; Max-Age=0; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// `GET /api/v1/me`: the caller's name and role (`null` without a token), and whether the
/// server lets anyone read.
pub(super) async fn me(State(st): State<AppState>, who: Caller) -> Response {
    Json(serde_json::json!({
        "name": who.role.map(|_| who.name.clone()),
        "role": who.role,
        "public": st.hub.options.public,
    }))
    .into_response()
}

fn limit(
    q: &std::collections::HashMap<String, String>,
    key: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError(ServerError::BadRequest(format!(
                    "`{key}` must be a number from 1 to {max}, got `{v}`"
                )))
            }),
    }
}

/// `GET /pipelines/{p}/graph`: nodes placed and edges routed.
pub(super) async fn graph(
    State(st): State<AppState>,
    who: Caller,
    Path(p): Path<String>,
) -> Result<Response, ApiError> {
    who.require(pipewright_api::Role::Viewer)?;
    let l = st.hub.graph_layout(&p).await?;
    Ok(Json(&*l).into_response())
}

/// `GET /pipelines/{p}/flow?resource=&limit=`: where the recent versions are.
pub(super) async fn flow(
    State(st): State<AppState>,
    who: Caller,
    Path(p): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    who.require(pipewright_api::Role::Viewer)?;
    let n = limit(&q, "limit", 10, 100)?;
    let f = st
        .hub
        .flow(&p, q.get("resource").map(String::as_str), n)
        .await?;
    Ok(Json(f).into_response())
}

/// `GET /pipelines/{p}/stats?last=`: durations and failure rates.
pub(super) async fn stats(
    State(st): State<AppState>,
    who: Caller,
    Path(p): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    who.require(pipewright_api::Role::Viewer)?;
    let n = limit(&q, "last", 50, 500)?;
    Ok(Json(st.hub.stats(&p, n).await?).into_response())
}
