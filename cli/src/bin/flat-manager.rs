//! `flat-manager`: the flatbucket server on the embedded default.

use std::process::ExitCode;

/// Blocking threads (file I/O, hashing): enough to keep both cores and the disk busy, since stores
/// on directories do a batch of objects per trip. Each thread that runs a verification keeps the
/// stack pages the inflater touched: at 64 threads a 196 MiB commit left the server 20 MiB larger.
const MAX_BLOCKING_THREADS: usize = 16;

fn main() -> ExitCode {
    flatbucket_cli::allocator::tune();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(MAX_BLOCKING_THREADS).build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("flat-manager: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
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
