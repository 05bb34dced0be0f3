//! `POST /webhooks/{p}/{r}`: signed by the forge, not authenticated by a token; and the list
//! of recorded deliveries.

use super::{ApiError, AppState, Caller};
use crate::error::ServerError;
use crate::webhooks::MAX_WEBHOOK_BODY;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pipewright_api::{ErrorBody, Role, WebhookResult};

pub(super) async fn receive(
    State(st): State<AppState>,
    Path((p, r)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The cap applies while reading: a huge body is refused before it is held in memory.
    let Ok(bytes) = axum::body::to_bytes(body, MAX_WEBHOOK_BODY).await else {
        let body = ErrorBody {
            error: format!("the webhook body is larger than {MAX_WEBHOOK_BODY} bytes"),
            code: "payload_too_large".into(),
        };
        return (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
    };
    match st.hub.receive_webhook(&p, &r, &headers, &bytes).await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            if answer.delivery.result == WebhookResult::Rejected {
                let body = ErrorBody {
                    error: answer.delivery.reason.unwrap_or_default(),
                    code: if status == StatusCode::UNAUTHORIZED {
                        "unauthorized".into()
                    } else if status == StatusCode::NOT_FOUND {
                        "not_found".into()
                    } else {
                        "unavailable".into()
                    },
                };
                return (status, Json(body)).into_response();
            }
            (status, Json(answer.delivery)).into_response()
        }
        Err(e) => ApiError(e).into_response(),
    }
}

pub(super) async fn deliveries(
    State(st): State<AppState>,
    who: Caller,
    Path((p, r)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let list = st
        .hub
        .webhook_deliveries(&p, &r)
        .map_err(|e: ServerError| ApiError(e))?;
    Ok(Json(list).into_response())
}
