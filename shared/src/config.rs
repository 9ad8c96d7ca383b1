//! Typed configuration, loaded once at start-up from flat-manager's `config.json` format.
//! Unknown keys are refused with a message naming them; flat-manager keys flatbucket does not act
//! on yet are accepted so existing configs load, and logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// `config.json`: flat-manager's keys, kebab-case.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// `sqlite:PATH` (default `sqlite:flatbucket.sqlite`); flat-manager's `postgres://` is refused.
    #[serde(default)]
    pub database_url: Option<String>,
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Public URL of the server; `http://<host>:<port>` when empty.
    #[serde(default)]
    pub base_url: String,
    /// The GnuPG home holding the `gpg-key` keys of repositories (GnuPG's default home when
    /// absent).
    #[serde(default)]
    pub gpg_homedir: Option<String>,
    /// Base64 HMAC key for API tokens.
    pub secret: String,
    /// Base64 HMAC key for `/repo` download tokens; `secret` when absent.
    #[serde(default)]
    pub repo_secret: Option<String>,
    /// Optional prefix stripped from bearer tokens (secret-scanning friendly tokens).
    #[serde(default)]
    pub token_prefix: Option<String>,
    pub repos: BTreeMap<String, RepoConfig>,
    /// Where build repositories live.
    pub build_repo_base: PathBuf,
    /// Ids of keys in `gpg-homedir` that sign build repositories' commits and summaries.
    #[serde(default)]
    pub build_gpg_key: Option<OneOrMany>,
    /// Seconds to wait before a summary update, to batch publishes (flatbucket publishes at once).
    #[serde(default)]
    pub delay_update_secs: u64,
    #[serde(default)]
    pub local_delta_threads: Option<u32>,
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(default)]
    pub storefront_info_endpoint: Option<String>,
    /// Keep builds and repositories in S3 buckets instead of local directories (AWS deployment).
    #[serde(default)]
    pub s3: Option<S3Config>,
    /// Feed jobs to the worker through this SQS queue instead of in process (AWS deployment).
    #[serde(default)]
    pub queue_url: Option<String>,
    /// Send update-repo jobs (static deltas) to this SQS queue instead, read by the `deltas`
    /// function, the one that links libostree (AWS deployment).
    #[serde(default)]
    pub deltas_queue_url: Option<String>,
}

/// Buckets for the AWS deployment. Each repository lives in the public bucket under its `path`
/// used as a key prefix; builds live in the staging bucket under `staging-prefix`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct S3Config {
    pub staging_bucket: String,
    #[serde(default = "default_staging_prefix")]
    pub staging_prefix: String,
    pub public_bucket: String,
}

fn default_staging_prefix() -> String {
    "build".into()
}

/// One repository (`repos.<name>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RepoConfig {
    /// The archive-z2 repository directory; created at start-up when missing.
    pub path: PathBuf,
    #[serde(default)]
    pub collection_id: Option<String>,
    #[serde(default)]
    pub deploy_collection_id: bool,
    #[serde(default)]
    pub suggested_repo_name: Option<String>,
    #[serde(default)]
    pub runtime_repo_url: Option<String>,
    /// Ids of keys in `gpg-homedir` that sign the repository (flat-manager's setting).
    #[serde(default)]
    pub gpg_key: Option<OneOrMany>,
    /// A file of armored secret keys, without passphrase, that sign the repository (flatbucket's
    /// setting; several keys: each signs, for key rotation). Used together with `gpg-key`.
    #[serde(default)]
    pub gpg_key_file: Option<PathBuf>,
    /// A Secrets Manager secret (name or ARN) holding armored secret keys that sign the
    /// repository (AWS deployments; read once at start-up).
    #[serde(default)]
    pub gpg_key_secret: Option<String>,
    /// An SSM Parameter Store parameter (a SecureString) holding armored secret keys that sign the
    /// repository (AWS deployments; read once at start-up).
    #[serde(default)]
    pub gpg_key_parameter: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub subsets: BTreeMap<String, SubsetConfig>,
    #[serde(default)]
    pub post_publish_script: Option<PathBuf>,
    #[serde(default)]
    pub hooks: Option<HooksConfig>,
    #[serde(default)]
    pub deltas: Vec<DeltaConfig>,
    #[serde(default)]
    pub appstream_delta_depth: Option<u32>,
    #[serde(default)]
    pub default_token_type: i32,
    #[serde(default)]
    pub require_auth_for_token_types: Vec<i32>,
}

/// A string or a list of strings (flat-manager's key-id fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, one or many.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SubsetConfig {
    pub collection_id: String,
    #[serde(default)]
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HooksConfig {
    #[serde(default)]
    pub publish: Option<Vec<String>>,
    #[serde(default)]
    pub checks: BTreeMap<String, CheckHookConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CheckHookConfig {
    pub command: Vec<String>,
    #[serde(default)]
    pub reviewable: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DeltaConfig {
    pub id: Vec<String>,
    #[serde(default)]
    pub arch: Option<Vec<String>>,
    pub depth: u32,
}

/// Where state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    /// One DynamoDB table (`dynamodb://TABLE`).
    DynamoDb(String),
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_port() -> u16 {
    8080
}

impl Config {
    /// Reads and validates `path`; relative paths inside are resolved against `base_dir`.
    pub fn load(path: &Path, base_dir: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let invalid = |message: String| ConfigError::Invalid { path: path.into(), message };
        let mut config: Config = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        config.resolve_paths(base_dir);
        Ok(config)
    }

    /// Parses configuration JSON given directly (Lambda passes it in the environment); paths stay
    /// as written.
    pub fn parse(json: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: "(inline)".into(), message };
        let config: Config = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        self.secret_key()?;
        self.repo_secret_key()?;
        self.database()?;
        if self.repos.is_empty() {
            return Err("`repos` must name at least one repository".into());
        }
        for name in self.repos.keys() {
            crate::repo::refs::validate_ref(name).map_err(|_| format!("invalid repo name {name:?}"))?;
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base_dir: &Path) {
        self.build_repo_base = base_dir.join(&self.build_repo_base);
        if let Some(homedir) = &mut self.gpg_homedir {
            *homedir = base_dir.join(&*homedir).to_string_lossy().into_owned();
        }
        for repo in self.repos.values_mut() {
            if let Some(file) = &mut repo.gpg_key_file {
                *file = base_dir.join(&*file);
            }
        }
        // In buckets, repository paths are key prefixes, not directories.
        if self.s3.is_none() {
            for repo in self.repos.values_mut() {
                repo.path = base_dir.join(&repo.path);
            }
        }
        if let Ok(DatabaseUrl::Sqlite(path)) = self.database() {
            self.database_url = Some(format!("sqlite:{}", base_dir.join(path).display()));
        }
    }

    /// The HMAC key for API tokens.
    pub fn secret_key(&self) -> Result<Vec<u8>, String> {
        decode_secret("secret", &self.secret)
    }

    /// The HMAC key for `/repo` tokens.
    pub fn repo_secret_key(&self) -> Result<Vec<u8>, String> {
        match &self.repo_secret {
            Some(secret) => decode_secret("repo-secret", secret),
            None => self.secret_key(),
        }
    }

    /// The state store selected by `database-url`.
    pub fn database(&self) -> Result<DatabaseUrl, String> {
        let url = self.database_url.as_deref().unwrap_or("sqlite:flatbucket.sqlite");
        if let Some(path) = url.strip_prefix("sqlite:") {
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path.trim_start_matches("//"))));
        }
        if let Some(table) = url.strip_prefix("dynamodb://") {
            let valid = !table.is_empty() && table.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            return match valid {
                true => Ok(DatabaseUrl::DynamoDb(table.to_owned())),
                false => Err(format!("database-url {url:?}: invalid DynamoDB table name")),
            };
        }
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            return Err(format!(
                "database-url {url:?}: flatbucket needs no PostgreSQL server; use `sqlite:PATH` (the default) for \
                 the embedded state store, or `dynamodb://TABLE` on AWS"
            ));
        }
        Err(format!("database-url {url:?} is not supported: use `sqlite:PATH` or `dynamodb://TABLE`"))
    }

    /// The public URL of the server, without a trailing slash.
    pub fn public_base_url(&self) -> String {
        match self.base_url.trim_end_matches('/') {
            "" => format!("http://{}:{}", self.host, self.port),
            url => url.to_owned(),
        }
    }

    /// Settings flatbucket accepts for compatibility but does not act on yet, for a start-up log.
    pub fn inactive_settings(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for (name, repo) in &self.repos {
            if repo.hooks.is_some() || repo.post_publish_script.is_some() {
                notes.push(format!("repos.{name}: hooks and post-publish-script are not run"));
            }
        }
        notes
    }
}

fn decode_secret(key: &str, value: &str) -> Result<Vec<u8>, String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| format!("`{key}` must be base64: {e}"))?;
    if decoded.is_empty() {
        return Err(format!("`{key}` must not be empty"));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        Config::load(&path, dir.path())
    }

    const MINIMAL: &str = r#"{"secret": "c2VjcmV0", "build-repo-base": "build-repo",
        "repos": {"stable": {"path": "repo", "collection-id": "org.test.Stable", "subsets": {}}}}"#;

    #[test]
    fn loads_flat_managers_keys_with_defaults() {
        let config = load(MINIMAL).unwrap();
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 8080));
        assert_eq!(config.secret_key().unwrap(), b"secret");
        assert_eq!(config.public_base_url(), "http://127.0.0.1:8080");
        assert!(config.repos["stable"].path.ends_with("repo"));
        assert!(matches!(config.database(), Ok(DatabaseUrl::Sqlite(p)) if p.ends_with("flatbucket.sqlite")));
    }

    #[test]
    fn names_unknown_keys() {
        let err = load(&MINIMAL.replace("\"secret\"", "\"colour\": 1, \"secret\"")).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
        let err = load(&MINIMAL.replace("\"subsets\"", "\"flavour\": 1, \"subsets\"")).unwrap_err().to_string();
        assert!(err.contains("flavour"), "{err}");
    }

    #[test]
    fn refuses_postgres_with_a_way_forward() {
        let json = MINIMAL
            .replace("\"secret\"", "\"database-url\": \"postgres://%2Fvar%2Frun%2Fpostgresql/repo\", \"secret\"");
        let err = load(&json).unwrap_err().to_string();
        assert!(err.contains("sqlite:PATH"), "{err}");
    }

    #[test]
    fn selects_the_aws_backends() {
        let json = MINIMAL.replace(
            "\"secret\"",
            r#""database-url": "dynamodb://flatbucket-state", "queue-url": "https://sqs.example/q",
               "s3": {"staging-bucket": "stage", "public-bucket": "pub"}, "secret""#,
        );
        let config = load(&json).unwrap();
        assert_eq!(config.database(), Ok(DatabaseUrl::DynamoDb("flatbucket-state".into())));
        assert_eq!(config.s3.as_ref().unwrap().staging_prefix, "build");
        assert_eq!(config.repos["stable"].path, std::path::Path::new("repo"), "a key prefix, not a directory");
        assert!(load(&MINIMAL.replace("\"secret\"", "\"database-url\": \"dynamodb://\", \"secret\"")).is_err());
    }

    #[test]
    fn resolves_key_paths_and_reports_signing_active() {
        let json = MINIMAL
            .replace("\"secret\"", "\"gpg-homedir\": \"gnupg\", \"secret\"")
            .replace("\"subsets\"", "\"gpg-key\": [\"A\", \"B\"], \"gpg-key-file\": \"keys/repo.asc\", \"subsets\"");
        let config = load(&json).unwrap();
        assert!(Path::new(config.gpg_homedir.as_deref().unwrap()).is_absolute());
        let repo = &config.repos["stable"];
        assert!(repo.gpg_key_file.as_ref().unwrap().is_absolute());
        assert!(repo.gpg_key_file.as_ref().unwrap().ends_with("keys/repo.asc"));
        assert_eq!(repo.gpg_key.as_ref().unwrap().as_slice(), ["A", "B"]);
        assert!(
            config.inactive_settings().iter().all(|note| !note.contains("gpg")),
            "{:?}",
            config.inactive_settings()
        );
    }

    #[test]
    fn refuses_a_secret_that_is_not_base64() {
        assert!(load(&MINIMAL.replace("c2VjcmV0", "not base64!")).is_err());
    }
}
