//! flat-manager-client: create, push, commit and publish builds on a flat-manager compatible server.

use std::process::ExitCode;

use clap::Parser;
use flatbucket_cli::client::args::Cli;
use flatbucket_cli::client::commands;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    commands::run(cli).await
}
