//! Token routes: subsetting a token into a weaker one, and listing or revoking tracked tokens.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Token;
use super::body::{read_json, JSON_LIMIT};
use super::error::ApiError;
use crate::app::AppState;
use crate::domain::token::{id_matches_prefix, sub_is_prefix, Claims, Scope};
use crate::state::TokenRecord;

#[derive(Debug, Deserialize)]
struct SubsetRequest {
    sub: String,
    scope: Vec<Scope>,
    duration: i64,
    name: String,
    prefixes: Option<Vec<String>>,
    apps: Option<Vec<String>>,
    repos: Option<Vec<String>>,
}

pub async fn subset(
    State(app): State<AppState>,
    token: Token,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let request: SubsetRequest = read_json(&headers, body, JSON_LIMIT).await?;
    let claims = subset_claims(&token.0, request, chrono::Utc::now().timestamp())
        .ok_or_else(|| ApiError::forbidden("No token presented"))?;
    Ok(Json(json!({ "token": claims.encode(app.secret()) })))
}

/// The weaker token `request` asks for, if `parent` may grant it: no later expiry, a narrower
/// subject, a subset of scopes, and prefixes, apps and repos the parent allows. `jti` is
/// inherited so revoking the parent revokes its children.
fn subset_claims(parent: &Claims, request: SubsetRequest, now: i64) -> Option<Claims> {
    let exp = now + request.duration.max(0);
    let grants = exp <= parent.exp
        && sub_is_prefix(&parent.sub, &request.sub)
        && request.scope.iter().all(|s| *s != Scope::Unknown && parent.scope.contains(s))
        && request.prefixes.iter().flatten().all(|p| parent.prefixes.iter().any(|pp| id_matches_prefix(p, pp)))
        && request.apps.iter().flatten().all(|a| parent.apps.contains(a))
        && request.repos.iter().flatten().all(|r| parent.repo_allows(r));
    grants.then(|| Claims {
        sub: request.sub,
        exp,
        name: Some(format!("{}/{}", parent.name.as_deref().unwrap_or(""), request.name)),
        jti: parent.jti.clone(),
        scope: request.scope,
        prefixes: request.prefixes.unwrap_or_else(|| parent.prefixes.clone()),
        apps: request.apps.unwrap_or_else(|| parent.apps.clone()),
        repos: request.repos.unwrap_or_else(|| parent.repos.clone()),
        branches: parent.branches.clone(),
        token_type: parent.token_type.clone(),
    })
}

#[derive(Debug, Deserialize)]
struct TokenIds {
    token_ids: Vec<String>,
}

pub async fn get_list(
    State(app): State<AppState>,
    token: Token,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Vec<TokenRecord>>, ApiError> {
    let request: TokenIds = read_json(&headers, body, JSON_LIMIT).await?;
    require_management(&token)?;
    Ok(Json(app.state.get_tokens(&request.token_ids).await?))
}

pub async fn revoke(
    State(app): State<AppState>,
    token: Token,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let request: TokenIds = read_json(&headers, body, JSON_LIMIT).await?;
    require_management(&token)?;
    app.state.revoke_tokens(&request.token_ids).await?;
    tracing::info!(count = request.token_ids.len(), "revoked tokens");
    Ok(StatusCode::NO_CONTENT)
}

/// Token management needs `sub: ""` exactly and the `tokenmanagement` scope.
fn require_management(token: &Token) -> Result<(), ApiError> {
    token.require_sub("")?;
    token.require_scope(&[Scope::Tokenmanagement])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> Claims {
        Claims {
            sub: "build".into(),
            exp: 10_000,
            name: Some("ci".into()),
            jti: Some("j1".into()),
            scope: vec![Scope::Build, Scope::Upload],
            prefixes: vec!["org.example".into()],
            apps: vec![],
            repos: vec!["stable".into()],
            branches: vec![],
            token_type: None,
        }
    }

    fn request(sub: &str, scope: Vec<Scope>, duration: i64) -> SubsetRequest {
        SubsetRequest { sub: sub.into(), scope, duration, name: "up".into(), prefixes: None, apps: None, repos: None }
    }

    #[test]
    fn grants_a_narrower_token_that_inherits_the_jti() {
        let child = subset_claims(&parent(), request("build/7", vec![Scope::Upload], 100), 1_000).unwrap();
        assert_eq!((child.sub.as_str(), child.exp, child.jti.as_deref()), ("build/7", 1_100, Some("j1")));
        assert_eq!(child.name.as_deref(), Some("ci/up"));
        assert_eq!(child.prefixes, ["org.example"]);
    }

    #[test]
    fn refuses_every_escalation() {
        let now = 1_000;
        assert!(subset_claims(&parent(), request("build/7", vec![Scope::Publish], 100), now).is_none());
        assert!(subset_claims(&parent(), request("", vec![Scope::Upload], 100), now).is_none());
        assert!(subset_claims(&parent(), request("build/7", vec![Scope::Upload], 100_000), now).is_none());
        assert!(subset_claims(&parent(), request("build/7", vec![Scope::Unknown], 1), now).is_none());
        let wider_prefix = SubsetRequest { prefixes: Some(vec!["org".into()]), ..request("build/7", vec![], 1) };
        assert!(subset_claims(&parent(), wider_prefix, now).is_none());
        let other_repo = SubsetRequest { repos: Some(vec!["beta".into()]), ..request("build/7", vec![], 1) };
        assert!(subset_claims(&parent(), other_repo, now).is_none());
        let apps = SubsetRequest { apps: Some(vec!["org.example.App".into()]), ..request("build/7", vec![], 1) };
        assert!(subset_claims(&parent(), apps, now).is_none());
    }
}
