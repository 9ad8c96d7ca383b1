//! Finding the token a command presents (`--token`, `--token-file`, `$REPO_TOKEN`) and checking
//! its expiry client-side, as flat-manager's Rust client does: an expired token is refused before
//! any request, one that expires within 30 days gets a warning.

use std::io::BufRead;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use super::error::ClientError;

/// Tokens that expire sooner than this are warned about.
const WARN_BEFORE_SECS: i64 = 30 * 24 * 3600;

/// Where a token may come from, in order of preference.
#[derive(Debug, Clone, Default)]
pub struct TokenSources<'a> {
    pub token: Option<&'a str>,
    pub token_file: Option<&'a Path>,
    /// The value of `$REPO_TOKEN`.
    pub env: Option<String>,
}

/// What the client can tell about a token's expiry without its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Not a JWT this client can read (e.g. a server-specific prefix): left to the server.
    Unknown,
    Expired,
    ExpiresSoon {
        days: i64,
    },
    Valid,
}

impl TokenSources<'_> {
    /// The token to present, or a usage error when there is none.
    pub fn resolve(&self) -> Result<String, ClientError> {
        if let Some(token) = self.token {
            return Ok(token.trim().to_owned());
        }
        if let Some(path) = self.token_file {
            return read_first_line(path);
        }
        match self.env.as_deref().map(str::trim) {
            Some(token) if !token.is_empty() => Ok(token.to_owned()),
            _ => Err(ClientError::Usage("No token available, pass with --token, --token-file or $REPO_TOKEN".into())),
        }
    }
}

/// The first line of a token file, trimmed.
fn read_first_line(path: &Path) -> Result<String, ClientError> {
    let usage = |e: std::io::Error| ClientError::Usage(format!("Cannot read token file {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(usage)?;
    let mut line = String::new();
    std::io::BufReader::new(file).read_line(&mut line).map_err(usage)?;
    Ok(line.trim().to_owned())
}

/// Reads the `exp` claim of a JWT without verifying it.
pub fn expiry(token: &str, now: i64) -> Expiry {
    #[derive(Deserialize)]
    struct Exp {
        exp: i64,
    }
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok())
        .and_then(|json| serde_json::from_slice::<Exp>(&json).ok());
    match exp {
        None => Expiry::Unknown,
        Some(Exp { exp }) if exp < now => Expiry::Expired,
        Some(Exp { exp }) if exp - now < WARN_BEFORE_SECS => Expiry::ExpiresSoon { days: (exp - now) / 86400 },
        Some(_) => Expiry::Valid,
    }
}

/// Refuses an expired token and warns on stderr about one expiring soon.
pub fn check_expiry(token: &str, now: i64) -> Result<(), ClientError> {
    match expiry(token, now) {
        Expiry::Expired => Err(ClientError::Usage("The token has expired".into())),
        Expiry::ExpiresSoon { days } => {
            eprintln!("Warning: the token expires in {days} day(s)");
            Ok(())
        }
        Expiry::Unknown | Expiry::Valid => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use flatbucket::domain::token::Claims;

    use super::*;

    fn token(exp: i64) -> String {
        let claims: Claims = serde_json::from_value(serde_json::json!({"sub": "build", "exp": exp})).unwrap();
        claims.encode(b"secret")
    }

    #[test]
    fn prefers_the_flag_then_the_file_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, " from-file \nsecond line\n").unwrap();
        let env = Some("from-env".to_owned());
        let all = TokenSources { token: Some("from-flag"), token_file: Some(&file), env: env.clone() };
        assert_eq!(all.resolve().unwrap(), "from-flag");
        let no_flag = TokenSources { token: None, ..all.clone() };
        assert_eq!(no_flag.resolve().unwrap(), "from-file");
        assert_eq!(TokenSources { env, ..Default::default() }.resolve().unwrap(), "from-env");
    }

    #[test]
    fn no_token_is_a_usage_error() {
        let sources = TokenSources { env: Some("  ".into()), ..Default::default() };
        assert!(matches!(sources.resolve(), Err(ClientError::Usage(_))));
        let missing = Path::new("/nonexistent/token");
        let sources = TokenSources { token_file: Some(missing), ..Default::default() };
        assert!(matches!(sources.resolve(), Err(ClientError::Usage(_))));
    }

    #[test]
    fn reads_expiry_without_the_secret() {
        let now = 1_000_000_000;
        assert_eq!(expiry(&token(now - 1), now), Expiry::Expired);
        assert_eq!(expiry(&token(now + 2 * 86400 + 5), now), Expiry::ExpiresSoon { days: 2 });
        assert_eq!(expiry(&token(now + 365 * 86400), now), Expiry::Valid);
        assert_eq!(expiry("not-a-jwt", now), Expiry::Unknown);
        assert!(check_expiry(&token(now - 1), now).is_err());
        assert!(check_expiry("prefix_opaque", now).is_ok());
    }
}
