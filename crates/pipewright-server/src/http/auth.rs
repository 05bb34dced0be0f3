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

/// The cookie holding a browser's token (HttpOnly: page scripts cannot read it).
pub const SESSION_COOKIE: &str = "pw_session";
/// The cookie holding the CSRF token, which page scripts echo in [`CSRF_HEADER`].
pub const CSRF_COOKIE: &str = "pw_csrf";
/// The header a cookie-authenticated request that changes state must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name` in the request, if sent.
pub(crate) fn cookie<'p>(parts: &'p Parts, name: &str) -> Option<&'p str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let public = st.hub.options.public;
        let anonymous = Caller {
            role: None,
            name: "anonymous".into(),
            public,
        };
        let token = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            Some(value) => value
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
                })?,
            None => match cookie(parts, SESSION_COOKIE) {
                Some(t) => {
                    check_csrf(parts)?;
                    t
                }
                None => return Ok(anonymous),
            },
        };
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

/// A browser session may change state only when the request echoes the CSRF cookie in
/// [`CSRF_HEADER`]: another site can make the browser send the cookies, but cannot read them.
fn check_csrf(parts: &Parts) -> Result<(), ApiError> {
    use axum::http::Method;
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let sent = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let expected = cookie(parts, CSRF_COOKIE).unwrap_or_default();
    let same: bool = subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), expected.as_bytes()).into();
    if expected.is_empty() || !same {
        return Err(ApiError(ServerError::Forbidden(
            "a request from the web UI that changes something needs the X-CSRF-Token header \
             (reload the page and try again)"
                .into(),
        )));
    }
    Ok(())
}
