//! The `flat-manager` server on the embedded default: configuration from `config.json` (or
//! `$REPO_CONFIG`) and `.env`, local directories and SQLite, the in-process worker, and the API
//! plus `/repo` and `/build-repo` on one port, shut down gracefully on SIGINT/SIGTERM. Static
//! deltas are generated in process with libostree.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use flatbucket::app::AppState;
use flatbucket::config::Config;
use flatbucket::jobs::Worker;
use flatbucket_deltas::LibostreeGenerator;

/// Loads the configuration and serves until a shutdown signal.
pub async fn serve() -> anyhow::Result<()> {
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let path = std::env::var_os("REPO_CONFIG").map_or_else(|| PathBuf::from("config.json"), PathBuf::from);
    let config = Config::load(&path, &cwd)?;
    for note in config.inactive_settings() {
        tracing::warn!("{note}");
    }
    let address = (config.host.clone(), config.port);
    let (app, receiver) = AppState::from_config(config).await.context("opening repositories and state")?;
    let app = app.with_delta_generator(Arc::new(LibostreeGenerator::new()));
    match receiver {
        Some(receiver) => drop(tokio::spawn(Worker::new(app.clone(), receiver).run())),
        None => tracing::info!("jobs go to the SQS queue; the worker function runs them"),
    }
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("listening on {}:{}", address.0, address.1))?;
    tracing::info!(address = %listener.local_addr()?, "flat-manager listening");
    // Small responses (summary.idx, job polls) must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, flatbucket::api::router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}
