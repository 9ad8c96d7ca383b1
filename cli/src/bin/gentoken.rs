//! gentoken: mints an API token signed with the server's secret.

use std::process::ExitCode;

use clap::Parser;
use flatbucket_cli::client::gentoken::{self, GentokenArgs};

/// Mint a flat-manager API token and print it.
#[derive(Parser)]
#[command(name = "gentoken", version)]
struct Cli {
    #[command(flatten)]
    args: GentokenArgs,
}

fn main() -> ExitCode {
    match gentoken::run(&Cli::parse().args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
