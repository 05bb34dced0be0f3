//! The HTTP API v1 (`docs/server.md` lists every route): JSON in and out, errors as
//! `{"error", "code"}` with a 4xx/5xx status, bearer tokens with roles.

mod auth;
mod routes;
mod sse;
mod ui;
mod webhook;

use crate::error::ServerError;
use crate::hub::Hub;
use crate::tokens::Tokens;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use pipewright_api::ErrorBody;
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub use auth::Caller;

/// Request bodies above this are refused with 413 before they are read whole.
pub const MAX_BODY: usize = 1 << 20;

/// What every handler sees.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The server.
    pub hub: Arc<Hub>,
    /// The tokens it accepts.
    pub tokens: Arc<Tokens>,
}

/// The API's router.
pub fn router(hub: Arc<Hub>, tokens: Arc<Tokens>) -> Router {
    let state = AppState { hub, tokens };
    let v1 = Router::new()
        .route("/pipelines", get(routes::pipelines))
        .route("/pipelines/{p}", get(routes::pipeline))
        .route(
            "/pipelines/{p}/jobs/{j}/builds",
            get(routes::job_builds).post(routes::trigger),
        )
        .route(
            "/pipelines/{p}/resources/{r}/versions",
            get(routes::versions),
        )
        .route("/pipelines/{p}/resources/{r}/check", post(routes::check))
        .route(
            "/pipelines/{p}/resources/{r}/pin",
            put(routes::pin).delete(routes::unpin),
        )
        .route(
            "/pipelines/{p}/resources/{r}/webhooks",
            get(webhook::deliveries),
        )
        .route("/webhooks/{p}/{r}", post(webhook::receive))
        .route("/builds/{id}", get(routes::build))
        .route("/builds/{id}/events", get(sse::events))
        .route("/builds/{id}/log", get(routes::log))
        .route("/builds/{id}/cancel", post(routes::cancel))
        .route("/builds/{id}/rerun", post(routes::rerun))
        .route("/builds/{id}/approve", post(routes::approve))
        .route("/tokens", get(routes::tokens).post(routes::create_token))
        .route("/tokens/{id}", delete(routes::revoke_token))
        .route("/workers", get(routes::workers))
        .route("/me", get(ui::me))
        .route("/pipelines/{p}/graph", get(ui::graph))
        .route("/pipelines/{p}/flow", get(ui::flow))
        .route("/pipelines/{p}/stats", get(ui::stats))
        .route("/pipelines/{p}/events", get(sse::pipeline_events));
    let pages = Router::new()
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(routes::metrics))
        .route("/ui/login", post(ui::login))
        .route("/ui/logout", post(ui::logout))
        .merge(pages)
        .nest(pipewright_api::PREFIX, v1)
        .fallback(|| async {
            ApiError(ServerError::NotFound(
                "no such route: the API is under /api/v1 (see docs/server.md)".into(),
            ))
        })
        .method_not_allowed_fallback(|| async {
            ApiError(ServerError::MethodNotAllowed(
                "this route does not take that method (see docs/server.md)".into(),
            ))
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Counts requests by method and status.
async fn count(State(st): State<AppState>, req: Request, next: axum::middleware::Next) -> Response {
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    st.hub.metrics.http_request(&method, resp.status().as_u16());
    resp
}

/// A [`ServerError`] as an HTTP answer.
#[derive(Debug)]
pub struct ApiError(pub ServerError);

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        ApiError(e)
    }
}

impl From<pipewright_store::StoreError> for ApiError {
    fn from(e: pipewright_store::StoreError) -> Self {
        ApiError(e.into())
    }
}

impl From<pipewright_versions::StoreError> for ApiError {
    fn from(e: pipewright_versions::StoreError) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        }
        let body = ErrorBody {
            error: self.0.to_string(),
            code: self.0.code().to_owned(),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// A JSON body: at most [`MAX_BODY`] bytes (else 413), parsed into `T` (else 400 naming the
/// problem). An empty body is `{}`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| {
                let body = ErrorBody {
                    error: format!("the request body is larger than {MAX_BODY} bytes"),
                    code: "payload_too_large".into(),
                };
                (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
            })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(JsonBody).map_err(|e| {
            ApiError(ServerError::BadRequest(format!(
                "the request body is not valid: {e}"
            )))
            .into_response()
        })
    }
}
