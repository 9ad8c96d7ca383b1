//! The command line of `flat-manager-client`, compatible with flat-manager's clients (reference
//! §6.1): global options before one sub-command. The doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use flatbucket::domain::token::Scope;

use super::gentoken::{parse_scope, GentokenArgs};
use super::push::PushArgs;
use super::wire::CommitRequest;

/// Create, upload, commit and publish Flatpak builds on a flat-manager compatible server.
#[derive(Debug, Parser)]
#[command(name = "flat-manager-client", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options that apply to every sub-command (given before it).
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Log what the client does on stderr.
    #[arg(short, long)]
    pub verbose: bool,
    /// Log every HTTP request and more on stderr.
    #[arg(long)]
    pub debug: bool,
    /// Write the result document (JSON) to FILE.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print the result document (JSON) on stdout, instead of the plain output of create and
    /// create-token.
    #[arg(long)]
    pub print_output: bool,
    /// The API token (default: $REPO_TOKEN).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the API token from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl GlobalArgs {
    /// Sends `tracing` output to stderr: warnings by default, more with -v or --debug, or what
    /// `RUST_LOG` says.
    pub fn init_logging(&self) {
        let level = match (self.debug, self.verbose) {
            (true, _) => "flatbucket_cli=debug,flatbucket=debug,reqwest=debug",
            (false, true) => "flatbucket_cli=info,warn",
            (false, false) => "warn",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
        let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).try_init();
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new build and print its URL (the build_url the other commands take).
    Create {
        /// The server's root URL, e.g. http://127.0.0.1:8080.
        manager_url: String,
        /// The repository the build will be published to.
        repo: String,
        /// The app the build is for (limits it to tokens allowed that app).
        app_id: Option<String>,
        /// Allow anyone to download the build (the default without an app id).
        #[arg(long = "public_download")]
        public_download: bool,
        /// Require a download token for the build (the default with an app id).
        #[arg(long = "no_public_download", conflicts_with = "public_download")]
        no_public_download: bool,
        /// A link to the build's log, stored on the build.
        #[arg(long, value_name = "URL")]
        build_log_url: Option<String>,
    },
    /// Upload refs of a local archive repository to a build; optionally commit and publish it.
    Push(PushArgs),
    /// Commit a build and wait for the commit job.
    Commit {
        /// The build's URL, as printed by create.
        build_url: String,
        /// Wait for the commit job (always done; accepted for compatibility).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        commit: CommitArgs,
    },
    /// Publish a committed build.
    Publish {
        /// The build's URL, as printed by create.
        build_url: String,
        /// Wait for the publish job.
        #[arg(long)]
        wait: bool,
        /// Wait for the publish job and the repository update it queues.
        #[arg(long)]
        wait_update: bool,
    },
    /// Delete a build's files (a build in use is left alone).
    Purge {
        /// The build's URL, as printed by create.
        build_url: String,
    },
    /// Remove objects no ref of a repository needs anymore (needs the tokenmanagement scope).
    Prune {
        /// The server's root URL.
        manager_url: String,
        /// The repository to prune.
        repo: String,
    },
    /// Create a token with a subset of the rights of the current one and print it.
    CreateToken {
        /// The server's root URL.
        manager_url: String,
        /// A label for the new token.
        name: String,
        /// Its subject, e.g. build/7.
        subject: String,
        /// Its scopes (each must be in the current token).
        #[arg(value_parser = parse_scope)]
        scope: Vec<Scope>,
        /// Its lifetime in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 86400)]
        duration: i64,
    },
    /// Follow a job until it ends, printing its log.
    FollowJob {
        /// The job's URL, e.g. http://127.0.0.1:8080/api/v1/job/3.
        job_url: String,
    },
    /// Mint a token signed with the server's secret (needs no server).
    Gentoken(GentokenArgs),
}

impl Command {
    /// The name the output document records.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::Push(_) => "push",
            Self::Commit { .. } => "commit",
            Self::Publish { .. } => "publish",
            Self::Purge { .. } => "purge",
            Self::Prune { .. } => "prune",
            Self::CreateToken { .. } => "create-token",
            Self::FollowJob { .. } => "follow-job",
            Self::Gentoken(_) => "gentoken",
        }
    }
}

/// What a commit may set on the new commits.
#[derive(Debug, Clone, Default, Args)]
pub struct CommitArgs {
    /// Mark the refs end-of-life with this message.
    #[arg(long, value_name = "MESSAGE")]
    pub end_of_life: Option<String>,
    /// Mark the app end-of-life in favour of this new app id.
    #[arg(long, value_name = "NEW_ID")]
    pub end_of_life_rebase: Option<String>,
    /// The token type the commits require for download (xa.token-type).
    #[arg(long, value_name = "N")]
    pub token_type: Option<i32>,
}

impl CommitArgs {
    pub fn request(&self) -> CommitRequest {
        CommitRequest {
            endoflife: self.end_of_life.clone(),
            endoflife_rebase: self.end_of_life_rebase.clone(),
            token_type: self.token_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("flat-manager-client").chain(args.iter().copied())).unwrap()
    }

    fn words(line: &str) -> Vec<&str> {
        line.split_whitespace().collect()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_flat_managers_push_invocation() {
        let cli = parse(&words(
            "--token T --print-output push --commit --publish --wait --extra-id a --extra-id b --end-of-life old \
             --token-type 2 --ignore-delta *.Debug http://h/api/v1/build/1 repo app/a/x86_64/stable",
        ));
        assert_eq!(cli.global.token.as_deref(), Some("T"));
        assert!(cli.global.print_output);
        let Command::Push(push) = cli.command else { panic!("not push") };
        assert!(push.commit && push.publish && push.wait && !push.wait_update && !push.all_objects);
        assert_eq!(push.extra_ids, ["a", "b"]);
        assert_eq!(push.refs, ["app/a/x86_64/stable"]);
        assert_eq!(push.commit_args.request().token_type, Some(2));
        assert_eq!(push.commit_args.request().endoflife.as_deref(), Some("old"));
    }

    #[test]
    fn create_takes_underscored_download_flags() {
        let cli = parse(&["create", "--no_public_download", "http://h", "stable", "org.x.Y"]);
        let Command::Create { no_public_download, public_download, app_id, .. } = cli.command else { panic!() };
        assert!(no_public_download && !public_download);
        assert_eq!(app_id.as_deref(), Some("org.x.Y"));
        let conflicting = ["flat-manager-client", "create", "--public_download", "--no_public_download", "h", "r"];
        assert!(Cli::try_parse_from(conflicting).is_err());
    }

    #[test]
    fn create_token_parses_scopes_and_duration() {
        let cli = parse(&["create-token", "--duration", "60", "http://h", "n", "build/1", "upload", "build"]);
        let Command::CreateToken { scope, duration, .. } = cli.command else { panic!() };
        assert_eq!((scope, duration), (vec![Scope::Upload, Scope::Build], 60));
        assert!(Cli::try_parse_from(["flat-manager-client", "create-token", "h", "n", "s", "bogus"]).is_err());
    }

    #[test]
    fn gentoken_is_a_sub_command_too() {
        let cli = parse(&["gentoken", "--secret", "s", "-v"]);
        assert!(matches!(cli.command, Command::Gentoken(GentokenArgs { verbose: true, .. })));
        assert_eq!(cli.command.name(), "gentoken");
    }
}
