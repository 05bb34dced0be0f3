//! Who is calling: the bearer token's role, checked against what a route needs.

use super::{ApiError, AppState};
use crate::error::ServerError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use pipewright_api::Role;

/// The caller of a request: its role and name, if it sent a valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None`: no token (allowed only for reads on a `--public` server).
    pub role: Option<Role>,
    /// The token's name (recorded as who triggered, approved or cancelled).
    pub name: String,
    public: bool,
}

impl Caller {
    /// Allows the request if the caller's role is at least `needed` (reads on a public server
    /// need no token). 401 without a valid token, 403 naming the role otherwise.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if needed == Role::Viewer && self.public {
            return Ok(());
        }
        match self.role {
            None => Err(ApiError(ServerError::Unauthorized(format!(
                "this needs a token with the `{needed}` role: send `Authorization: Bearer <token>`"
            )))),
            Some(r) if r >= needed => Ok(()),
            Some(r) => Err(ApiError(ServerError::Forbidden(format!(
                "this needs the `{needed}` role; the token `{}` has `{r}`",
                self.name
            )))),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let public = st.hub.options.public;
        let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(Caller {
                role: None,
                name: "anonymous".into(),
                public,
            });
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                ApiError(ServerError::Unauthorized(
                    "the Authorization header must be `Bearer <token>`".into(),
                ))
            })?;
        match st.tokens.check(token) {
            Some((role, name)) => Ok(Caller {
                role: Some(role),
                name,
                public,
            }),
            None => Err(ApiError(ServerError::Unauthorized(
                "the token is not valid (unknown or revoked)".into(),
            ))),
        }
    }
}
