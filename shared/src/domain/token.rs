//! API tokens: HS256 JWTs with flat-manager's claims and matching rules.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Jobs,
    Build,
    Upload,
    Publish,
    Generate,
    Download,
    Republish,
    Reviewcheck,
    Tokenmanagement,
    /// A scope this server does not know: matches nothing.
    #[serde(other)]
    Unknown,
}

impl Scope {
    /// Parses a known scope name (gentoken refuses unknown ones).
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok().filter(|s| *s != Scope::Unknown)
    }
}

/// The claims of a token (`common/src/tokens.rs` in flat-manager).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub scope: Vec<Scope>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default)]
    pub repos: Vec<String>,
    #[serde(default)]
    pub branches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

/// Why a token was refused (401); messages are flat-manager's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("Invalid token claims")]
    Invalid,
    #[error("Token is expired")]
    Expired,
}

impl Claims {
    /// Signs the claims with `key`.
    pub fn encode(&self, key: &[u8]) -> String {
        let payload = serde_json::to_vec(self).expect("claims serialize");
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
        let signature = mac(key, &signing_input).finalize().into_bytes();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Verifies an HS256 token signed with `key` and not expired at `now` (unix seconds).
    pub fn decode(token: &str, key: &[u8], now: i64) -> Result<Self, TokenError> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let (header, payload) = signing_input.split_once('.').ok_or(TokenError::Invalid)?;
        let header: serde_json::Value = decode_json(header)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(TokenError::Invalid);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Invalid)?;
        mac(key, signing_input).verify_slice(&signature).map_err(|_| TokenError::Invalid)?;
        let claims: Claims = decode_json(payload)?;
        if claims.exp < now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scope.contains(&scope)
    }

    /// The subject rule: `sub` is `required` or a path prefix of it (`""` allows everything).
    pub fn sub_allows(&self, required: &str) -> bool {
        sub_is_prefix(&self.sub, required)
    }

    /// The prefix rule for app ids: no prefixes, `""`, `id`, `<prefix>.…`, or an exact `apps` entry.
    pub fn prefix_allows(&self, id: &str) -> bool {
        self.prefixes.is_empty()
            || self.prefixes.iter().any(|p| id_matches_prefix(id, p))
            || self.apps.iter().any(|a| a == id)
    }

    /// The repo rule: a `repos` entry equal to `repo` or `""`; `[]` allows none.
    pub fn repo_allows(&self, repo: &str) -> bool {
        self.repos.iter().any(|r| r.is_empty() || r == repo)
    }
}

/// `sub` equals `required` or is a `/`-prefix of it; `""` allows everything.
pub fn sub_is_prefix(sub: &str, required: &str) -> bool {
    sub.is_empty() || required == sub || required.strip_prefix(sub).is_some_and(|rest| rest.starts_with('/'))
}

/// `id` is allowed by `prefix`: empty prefix, equal, or `prefix.` followed by more.
pub fn id_matches_prefix(id: &str, prefix: &str) -> bool {
    prefix.is_empty() || id == prefix || id.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.'))
}

fn mac(key: &[u8], data: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data.as_bytes());
    mac
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Invalid)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            sub: "build".into(),
            exp: 2_000_000_000,
            name: Some("test".into()),
            jti: None,
            scope: vec![Scope::Build, Scope::Upload],
            prefixes: vec!["org.example".into()],
            apps: vec!["com.other.Exact".into()],
            repos: vec!["stable".into()],
            branches: vec!["stable".into()],
            token_type: Some("app".into()),
        }
    }

    #[test]
    fn round_trips_and_rejects_forgeries_and_expiry() {
        let token = claims().encode(b"secret");
        assert_eq!(Claims::decode(&token, b"secret", 1_000).unwrap(), claims());
        assert_eq!(Claims::decode(&token, b"other", 1_000), Err(TokenError::Invalid));
        assert_eq!(Claims::decode(&token, b"secret", 2_000_000_001), Err(TokenError::Expired));
        let mut tampered = token.clone();
        tampered.insert(tampered.find('.').unwrap() + 3, 'x');
        assert_eq!(Claims::decode(&tampered, b"secret", 1_000), Err(TokenError::Invalid));
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), token.split('.').nth(1).unwrap());
        assert_eq!(Claims::decode(&none, b"secret", 1_000), Err(TokenError::Invalid));
    }

    #[test]
    fn matches_like_flat_manager() {
        let c = claims();
        assert!(
            c.prefix_allows("org.example") && c.prefix_allows("org.example.App") && c.prefix_allows("com.other.Exact")
        );
        assert!(!c.prefix_allows("org.examples.App") && !c.prefix_allows("com.other"));
        assert!(c.sub_allows("build") && c.sub_allows("build/7") && !c.sub_allows("buildx"));
        assert!(sub_is_prefix("", "anything") && !sub_is_prefix("build/7", "build"));
        assert!(c.repo_allows("stable") && !c.repo_allows("beta"));
        assert!(!Claims { repos: vec![], ..c.clone() }.repo_allows("stable"));
        assert!(Claims { prefixes: vec![], ..c }.prefix_allows("any.thing.At"));
    }

    #[test]
    fn unknown_scopes_parse_but_match_nothing() {
        let parsed: Claims = serde_json::from_str(r#"{"sub":"","exp":1,"scope":["build","frobnicate"]}"#).unwrap();
        assert_eq!(parsed.scope, [Scope::Build, Scope::Unknown]);
        assert_eq!(Scope::parse("frobnicate"), None);
        assert_eq!(Scope::parse("tokenmanagement"), Some(Scope::Tokenmanagement));
    }
}
