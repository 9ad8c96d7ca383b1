//! Bearer tokens on API routes: parsing the header, verifying the JWT, tracking its `jti`, and the
//! permission checks each route makes, with flat-manager's messages.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::error::ApiError;
use crate::app::AppState;
use crate::domain::build::Build;
use crate::domain::token::{Claims, Scope};

/// The verified claims of the request's token.
#[derive(Debug, Clone)]
pub struct Token(pub Claims);

impl FromRequestParts<AppState> for Token {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let claims = verified_claims(app, &parts.headers, app.secret()).await?;
        tracing::debug!(token = claims.name.as_deref().unwrap_or("-"), sub = %claims.sub, "authenticated");
        Ok(Token(claims))
    }
}

/// The claims of the request's bearer token signed with `key`, not expired, and not revoked (its
/// `jti`, if any, is recorded as used).
pub async fn verified_claims(app: &AppState, headers: &HeaderMap, key: &[u8]) -> Result<Claims, ApiError> {
    let text = bearer(headers, app.token_prefix())?;
    let claims =
        Claims::decode(text, key, chrono::Utc::now().timestamp()).map_err(|e| ApiError::InvalidToken(e.to_string()))?;
    if let Some(jti) = &claims.jti {
        app.state.use_token(jti, claims.exp).await?;
    }
    Ok(claims)
}

/// The token text of an `Authorization: Bearer …` header, without the configured prefix.
pub fn bearer<'h>(headers: &'h HeaderMap, prefix: Option<&str>) -> Result<&'h str, ApiError> {
    let invalid = |m: &str| ApiError::InvalidToken(m.to_owned());
    let value = headers.get(AUTHORIZATION).ok_or_else(|| invalid("No Authorization header"))?;
    if value.len() < 8 {
        return Err(invalid("Header length too short"));
    }
    let value = value.to_str().map_err(|_| invalid("Cannot convert header to string"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(invalid("Token scheme is not Bearer"));
    }
    let token = token.trim();
    let token = prefix.and_then(|p| token.strip_prefix(p)).unwrap_or(token);
    if token.is_empty() {
        return Err(invalid("No token value in header"));
    }
    Ok(token)
}

impl Token {
    pub fn require_sub(&self, required: &str) -> Result<(), ApiError> {
        match self.0.sub_allows(required) {
            true => Ok(()),
            false => Err(ApiError::forbidden(format!("Not matching sub '{required}' in token"))),
        }
    }

    /// At least one of `scopes`.
    pub fn require_scope(&self, scopes: &[Scope]) -> Result<(), ApiError> {
        match scopes.iter().any(|s| self.0.has_scope(*s)) {
            true => Ok(()),
            false => Err(ApiError::forbidden(format!("Not matching scope '{}' in token", scope_name(scopes[0])))),
        }
    }

    pub fn require_repo(&self, repo: &str) -> Result<(), ApiError> {
        match self.0.repo_allows(repo) {
            true => Ok(()),
            false => Err(ApiError::forbidden("Not matching repo in token")),
        }
    }

    pub fn require_prefix(&self, id: &str) -> Result<(), ApiError> {
        match self.0.prefix_allows(id) {
            true => Ok(()),
            false => Err(ApiError::forbidden(format!("Id {id} not matching prefix in token"))),
        }
    }

    /// What every per-build route checks: subject `build/<id>`, one of `scopes`, the build's repo
    /// and, when it has one, its app id (without revealing it).
    pub fn require_build(&self, build: &Build, scopes: &[Scope]) -> Result<(), ApiError> {
        self.require_sub(&format!("build/{}", build.id))?;
        self.require_scope(scopes)?;
        self.require_repo(&build.repo)?;
        match &build.app_id {
            Some(app) if !self.0.prefix_allows(app) => {
                Err(ApiError::forbidden("Build's app ID not matching prefix in token"))
            }
            _ => Ok(()),
        }
    }
}

fn scope_name(scope: Scope) -> String {
    serde_json::to_value(scope).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn parses_bearer_headers_like_flat_manager() {
        assert_eq!(bearer(&headers("Bearer abc.def.ghi"), None).unwrap(), "abc.def.ghi");
        assert_eq!(bearer(&headers("Bearer fm_abc.def"), Some("fm_")).unwrap(), "abc.def");
        let message = |v: &str| bearer(&headers(v), None).unwrap_err().to_string();
        assert_eq!(message("Bear"), "Header length too short");
        assert_eq!(message("Basic dXNlcjpwYXNz"), "Token scheme is not Bearer");
        assert_eq!(message("Bearer         "), "No token value in header");
        assert_eq!(bearer(&HeaderMap::new(), None).unwrap_err().to_string(), "No Authorization header");
    }
}
