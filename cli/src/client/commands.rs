//! Running a parsed command line: resolve the token, run the sub-command, print its plain output
//! and write the output document. The sub-commands other than `push` are small enough to live
//! here.

use std::process::ExitCode;

use flatbucket::domain::build::Build;
use flatbucket::domain::token::Scope;
use serde::Serialize;

use super::api::Api;
use super::args::{Cli, Command};
use super::error::ClientError;
use super::follow::follow_job;
use super::gentoken::{self, unix_now};
use super::output::{Document, ErrorShape, JobReport, Located, Outcome, OutputTarget};
use super::progress::ProgressMode;
use super::push::{push, PushReport};
use super::steps::{commit_build, publish_build, PublishOutcome, PublishWait};
use super::token::{check_expiry, TokenSources};
use super::urls::{BuildUrl, ManagerUrl};
use super::wire::{CreateBuildRequest, Empty, TokenResponse, TokenSubsetRequest};

/// The purge message both clients treat as success.
const PURGE_IN_USE: &str = "Can't prune build while in use";

/// What a command produced.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum CommandResult {
    Build(Box<Located<Build>>),
    Push(Box<PushReport>),
    Job(Box<JobReport>),
    Publish(PublishOutcome),
    Purge(PurgeResult),
    Token(TokenResponse),
}

/// What `purge` answers.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PurgeResult {
    Purged(Box<Build>),
    /// The build is in use (being committed or published): nothing to do, shown as `{}`.
    InUse(Empty),
    NotFound {
        status: &'static str,
    },
}

impl CommandResult {
    /// What create and create-token print on stdout without `--print-output`.
    fn plain(&self) -> Option<&str> {
        match self {
            Self::Build(build) => Some(&build.location),
            Self::Token(token) => Some(&token.token),
            _ => None,
        }
    }
}

/// Runs the command line and returns the process's exit code.
pub async fn run(cli: Cli) -> ExitCode {
    if let Command::Gentoken(args) = &cli.command {
        return match gentoken::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("Error: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let target = OutputTarget { print: cli.global.print_output, file: cli.global.output.as_deref() };
    let command = cli.command.name();
    let outcome = execute(&cli).await;
    let (written, code) = match &outcome {
        Ok(result) => {
            if let (false, Some(text)) = (target.print, result.plain()) {
                println!("{text}");
            }
            (target.write(&Document { command, outcome: Outcome::Result(result) }), ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("Error: {error}");
            let document = Document::<()> { command, outcome: Outcome::Error(ErrorShape::of(error)) };
            (target.write(&document), ExitCode::FAILURE)
        }
    };
    match written {
        Ok(()) => code,
        Err(error) => {
            eprintln!("Error: cannot write the output document: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves the token and dispatches to the sub-command.
async fn execute(cli: &Cli) -> Result<CommandResult, ClientError> {
    let sources = TokenSources {
        token: cli.global.token.as_deref(),
        token_file: cli.global.token_file.as_deref(),
        env: std::env::var("REPO_TOKEN").ok(),
    };
    let token = sources.resolve()?;
    check_expiry(&token, unix_now())?;
    let api = Api::new(&token)?;
    match &cli.command {
        Command::Create { manager_url, .. } => {
            create(&api, &ManagerUrl::new(manager_url), &create_request(&cli.command)).await
        }
        Command::Push(args) => Ok(CommandResult::Push(Box::new(push(&api, args, ProgressMode::detect()).await?))),
        Command::Commit { build_url, commit, .. } => {
            let report = commit_build(&api, &BuildUrl::parse(build_url)?, &commit.request()).await?;
            Ok(CommandResult::Job(Box::new(report)))
        }
        Command::Publish { build_url, wait, wait_update } => {
            let wait = PublishWait { publish: *wait, update: *wait_update };
            Ok(CommandResult::Publish(publish_build(&api, &BuildUrl::parse(build_url)?, wait).await?))
        }
        Command::Purge { build_url } => Ok(CommandResult::Purge(purge(&api, &BuildUrl::parse(build_url)?).await?)),
        Command::Prune { manager_url, repo } => {
            let job = api.prune(&ManagerUrl::new(manager_url), repo).await?;
            Ok(CommandResult::Job(Box::new(JobReport::new(job, None))))
        }
        Command::CreateToken { manager_url, name, subject, scope, duration } => {
            create_token(&api, &ManagerUrl::new(manager_url), name, subject, scope, *duration).await
        }
        Command::FollowJob { job_url } => Ok(CommandResult::Job(Box::new(follow_job(&api, job_url).await?))),
        Command::Gentoken(_) => unreachable!("gentoken runs without a token"),
    }
}

/// The create request the `create` command line asks for; the server picks the download default
/// unless a flag says otherwise.
fn create_request(command: &Command) -> CreateBuildRequest {
    let Command::Create { repo, app_id, public_download, no_public_download, build_log_url, .. } = command else {
        unreachable!("only called for create")
    };
    let public_download = match (public_download, no_public_download) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    CreateBuildRequest {
        repo: repo.clone(),
        app_id: app_id.clone(),
        public_download,
        build_log_url: build_log_url.clone(),
    }
}

/// Creates a build; its URL is the `Location` the server answers with.
async fn create(api: &Api, manager: &ManagerUrl, request: &CreateBuildRequest) -> Result<CommandResult, ClientError> {
    let reply = api.create_build(manager, request).await?;
    let location = reply.location.ok_or_else(|| {
        ClientError::other("invalid-response", "the server created the build but sent no Location header")
    })?;
    Ok(CommandResult::Build(Box::new(Located { inner: reply.body, location })))
}

/// Purges a build; a build in use or already gone is not an error.
async fn purge(api: &Api, build: &BuildUrl) -> Result<PurgeResult, ClientError> {
    match api.purge(build).await {
        Ok(purged) => Ok(PurgeResult::Purged(Box::new(purged))),
        Err(error) if error.status() == Some(404) => Ok(PurgeResult::NotFound { status: "build not found" }),
        Err(error) if is_in_use(&error) => Ok(PurgeResult::InUse(Empty {})),
        Err(error) => Err(error),
    }
}

fn is_in_use(error: &ClientError) -> bool {
    error.status() == Some(400) && error.api_details().is_some_and(|d| d.message == PURGE_IN_USE)
}

async fn create_token(
    api: &Api,
    manager: &ManagerUrl,
    name: &str,
    subject: &str,
    scope: &[Scope],
    duration: i64,
) -> Result<CommandResult, ClientError> {
    let request =
        TokenSubsetRequest { name: name.to_owned(), sub: subject.to_owned(), scope: scope.to_vec(), duration };
    let token = api.token_subset(manager, &request).await?;
    Ok(CommandResult::Token(TokenResponse { token }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::client::wire::ApiErrorBody;

    fn api_error(status: u16, message: &str) -> ClientError {
        let details = ApiErrorBody { status: Some(status), message: message.into(), ..Default::default() };
        ClientError::Api { url: "http://h/api/v1/build/1/purge".into(), status, details: Box::new(details) }
    }

    #[test]
    fn purging_a_build_in_use_is_not_an_error() {
        assert!(is_in_use(&api_error(400, PURGE_IN_USE)));
        assert!(!is_in_use(&api_error(400, "No such repo")));
        assert!(!is_in_use(&api_error(500, PURGE_IN_USE)));
        assert_eq!(serde_json::to_value(PurgeResult::InUse(Empty {})).unwrap(), json!({}));
        let gone = PurgeResult::NotFound { status: "build not found" };
        assert_eq!(serde_json::to_value(gone).unwrap(), json!({"status": "build not found"}));
    }

    #[test]
    fn create_prints_the_location_and_records_it() {
        let build: Build = serde_json::from_value(json!({"id": 1, "created": "2026-01-01T00:00:00",
            "repo_state": 0, "published_state": 0, "repo": "stable", "extra_ids": [], "app_id": null,
            "public_download": true, "build_log_url": null, "token_name": "-", "token_type": null}))
        .unwrap();
        let result =
            CommandResult::Build(Box::new(Located { inner: build, location: "http://h/api/v1/build/1".into() }));
        assert_eq!(result.plain(), Some("http://h/api/v1/build/1"));
        let value = serde_json::to_value(&result).unwrap();
        assert_eq!((value["id"].as_i64(), value["location"].as_str()), (Some(1), Some("http://h/api/v1/build/1")));
        assert_eq!(CommandResult::Token(TokenResponse { token: "t".into() }).plain(), Some("t"));
    }
}
