//! `flat-manager`: the flatbucket server on the embedded default.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // flat-manager reads `.env` from the working directory or a parent.
    let _ = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match flatbucket_cli::server::serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flat-manager: {e:#}");
            ExitCode::FAILURE
        }
    }
}
