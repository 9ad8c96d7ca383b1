//! `gentoken`: mints an API token signed with the server's secret (reference §2.7). The same
//! arguments serve the `gentoken` binary and `flat-manager-client gentoken`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flatbucket::domain::token::{Claims, Scope};

/// A year: the default lifetime of a token.
const DEFAULT_DURATION_SECS: i64 = 365 * 24 * 3600;
const DEFAULT_SCOPES: [Scope; 5] = [Scope::Build, Scope::Upload, Scope::Download, Scope::Publish, Scope::Jobs];

/// Mint a token signed with the server's secret and print it.
#[derive(Debug, Clone, clap::Args)]
pub struct GentokenArgs {
    /// Also print the token's claims (JSON) on stderr.
    #[arg(short, long)]
    pub verbose: bool,
    /// The secret is base64-encoded, as `secret` in config.json is.
    #[arg(long)]
    pub base64: bool,
    /// The secret (raw bytes are the key unless --base64).
    #[arg(long, conflicts_with = "secret_file", required_unless_present = "secret_file")]
    pub secret: Option<String>,
    /// Read the secret from FILE ("-" for stdin); surrounding whitespace is removed.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// A label for the token, logged by the server and stored on the builds it creates.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// The subject: "build" for all builds, "build/<id>" for one, "" for token management.
    #[arg(long, default_value = "build")]
    pub sub: String,
    /// A scope the token grants (repeatable; default: build, upload, download, publish, jobs).
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
    pub scopes: Vec<Scope>,
    /// An app-id prefix the token is limited to (repeatable; default: "", i.e. all).
    #[arg(long = "prefix", value_name = "PREFIX")]
    pub prefixes: Vec<String>,
    /// A repository the token may use (repeatable; default: "", i.e. all).
    #[arg(long = "repo", value_name = "REPO")]
    pub repos: Vec<String>,
    /// Lifetime in seconds (default: 365 days).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_DURATION_SECS)]
    pub duration: i64,
    /// The token_type claim, copied onto the builds the token creates.
    #[arg(long, default_value = "app")]
    pub token_type: String,
    /// A branch the token is meant for (repeatable; default: stable). Not enforced by servers.
    #[arg(long = "branch", value_name = "BRANCH")]
    pub branches: Vec<String>,
    /// A unique id that lets the server track and revoke the token.
    #[arg(long)]
    pub jti: Option<String>,
}

/// Accepts only the scopes servers know (flat-manager ≥ 0.5 refuses unknown ones too).
pub fn parse_scope(name: &str) -> Result<Scope, String> {
    Scope::parse(name).ok_or_else(|| {
        format!("unknown scope {name:?} (known: jobs, build, upload, publish, generate, download, republish, reviewcheck, tokenmanagement)")
    })
}

impl GentokenArgs {
    /// The claims of the token, expiring `duration` seconds after `now`.
    pub fn claims(&self, now: i64) -> Claims {
        let or_default = |values: &[String], default: &str| match values {
            [] => vec![default.to_owned()],
            values => values.to_vec(),
        };
        Claims {
            sub: self.sub.clone(),
            exp: now.saturating_add(self.duration),
            name: Some(self.name.clone()),
            jti: self.jti.clone(),
            scope: if self.scopes.is_empty() { DEFAULT_SCOPES.to_vec() } else { self.scopes.clone() },
            prefixes: or_default(&self.prefixes, ""),
            apps: Vec::new(),
            repos: or_default(&self.repos, ""),
            branches: or_default(&self.branches, "stable"),
            token_type: Some(self.token_type.clone()),
        }
    }

    /// The HMAC key: the secret's bytes, base64-decoded with `--base64`.
    pub fn key(&self, stdin: impl Read) -> anyhow::Result<Vec<u8>> {
        let secret = match (&self.secret, &self.secret_file) {
            (Some(secret), _) => secret.clone(),
            (None, Some(path)) => read_secret_file(path, stdin)?,
            (None, None) => bail!("pass the secret with --secret or --secret-file"),
        };
        if !self.base64 {
            return Ok(secret.into_bytes());
        }
        STANDARD.decode(secret.trim()).context("the secret is not valid base64 (drop --base64 for a raw secret)")
    }

    /// The signed token and its claims.
    pub fn generate(&self, now: i64, stdin: impl Read) -> anyhow::Result<(String, Claims)> {
        let key = self.key(stdin)?;
        if key.is_empty() {
            bail!("the secret is empty");
        }
        let claims = self.claims(now);
        Ok((claims.encode(&key), claims))
    }
}

fn read_secret_file(path: &Path, mut stdin: impl Read) -> anyhow::Result<String> {
    let mut text = String::new();
    if path == Path::new("-") {
        stdin.read_to_string(&mut text).context("failed to read the secret from stdin")?;
    } else {
        text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    }
    Ok(text.trim().to_owned())
}

/// Runs gentoken: prints the token on stdout (and the claims on stderr with `--verbose`).
pub fn run(args: &GentokenArgs) -> anyhow::Result<()> {
    let (token, claims) = args.generate(unix_now(), std::io::stdin().lock())?;
    if args.verbose {
        eprintln!("{}", serde_json::to_string_pretty(&claims)?);
    }
    println!("{token}");
    Ok(())
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_secs() as i64
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: GentokenArgs,
    }

    fn parse(args: &[&str]) -> GentokenArgs {
        Cli::try_parse_from(std::iter::once("gentoken").chain(args.iter().copied())).unwrap().args
    }

    #[test]
    fn default_claims_match_flat_managers_gentoken() {
        let args = parse(&["--secret", "secret"]);
        let claims = serde_json::to_value(args.claims(1_000)).unwrap();
        assert_eq!(
            claims,
            json!({"sub": "build", "exp": 1_000 + 365 * 86400, "name": "default", "jti": null,
                "scope": ["build", "upload", "download", "publish", "jobs"], "prefixes": [""], "apps": [],
                "repos": [""], "branches": ["stable"], "token_type": "app"})
        );
    }

    #[test]
    fn flags_override_every_claim() {
        let line = "--secret=s --name ci --sub build/7 --scope upload --scope tokenmanagement --prefix org.x \
                    --repo stable --repo beta --duration 60 --token-type dev --branch beta --jti id-1";
        let args = parse(&line.split_whitespace().collect::<Vec<_>>());
        let claims = args.claims(100);
        assert_eq!((claims.sub.as_str(), claims.exp, claims.name.as_deref()), ("build/7", 160, Some("ci")));
        assert_eq!(claims.scope, [Scope::Upload, Scope::Tokenmanagement]);
        assert_eq!((claims.prefixes, claims.repos), (vec!["org.x".to_owned()], vec!["stable".into(), "beta".into()]));
        assert_eq!(
            (claims.branches, claims.token_type, claims.jti),
            (vec!["beta".into()], Some("dev".into()), Some("id-1".into()))
        );
    }

    #[test]
    fn unknown_scopes_and_missing_secrets_are_rejected() {
        assert!(Cli::try_parse_from(["gentoken", "--secret", "s", "--scope", "frobnicate"]).is_err());
        assert!(Cli::try_parse_from(["gentoken"]).is_err());
        assert!(Cli::try_parse_from(["gentoken", "--secret", "s", "--secret-file", "f"]).is_err());
    }

    #[test]
    fn raw_secrets_are_the_key_and_verify_with_decode() {
        let (token, claims) = parse(&["--secret", "secret"]).generate(1_000, std::io::empty()).unwrap();
        assert_eq!(Claims::decode(&token, b"secret", 1_000).unwrap(), claims);
        assert!(Claims::decode(&token, b"c2VjcmV0", 1_000).is_err());
    }

    #[test]
    fn base64_secrets_from_stdin_are_trimmed_and_decoded() {
        // `echo -n secret | base64` prints "c2VjcmV0\n".
        let args = parse(&["--base64", "--secret-file", "-", "--name", "X"]);
        let (token, claims) = args.generate(1_000, &b"c2VjcmV0\n"[..]).unwrap();
        assert_eq!(claims.name.as_deref(), Some("X"));
        assert_eq!(Claims::decode(&token, b"secret", 1_000).unwrap(), claims);
        let bad = parse(&["--base64", "--secret", "not base64!"]);
        assert!(bad.generate(1_000, std::io::empty()).is_err());
    }

    #[test]
    fn secret_files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "  secret \n").unwrap();
        let args = parse(&["--secret-file", file.to_str().unwrap()]);
        let (token, _) = args.generate(1_000, std::io::empty()).unwrap();
        assert!(Claims::decode(&token, b"secret", 1_000).is_ok());
    }
}
