//! What every flatbucket Lambda function shares: JSON logs, the configuration loaded once per
//! container, and the backends built once from it. The API functions serve the shared Router
//! (API Gateway routes each function its paths, see the README); the worker runs jobs from SQS.

use anyhow::Context;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use flatbucket::app::AppState;
use flatbucket::config::Config;
use lambda_runtime::LambdaEvent;

/// Logs as JSON lines, as CloudWatch expects; `RUST_LOG` filters.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .without_time()
        .init();
}

/// The configuration: `FLATBUCKET_CONFIG` (the JSON itself, as the SAM template passes it) or
/// the file `REPO_CONFIG` names. It must select the AWS backends.
pub async fn load_app() -> anyhow::Result<AppState> {
    let config = match std::env::var("FLATBUCKET_CONFIG") {
        Ok(json) => Config::parse(&json).context("FLATBUCKET_CONFIG")?,
        Err(_) => {
            let path = std::env::var("REPO_CONFIG").unwrap_or_else(|_| "config.json".into());
            Config::load(path.as_ref(), &std::env::current_dir()?)?
        }
    };
    anyhow::ensure!(config.queue_url.is_some(), "a Lambda deployment needs `queue-url`: no worker runs in process");
    let (app, _) = AppState::from_config(config).await?;
    Ok(app)
}

/// Lambda's limit on a synchronous invocation's request payload (6 MB).
const LAMBDA_PAYLOAD_LIMIT: u64 = 6 * 1024 * 1024;
/// The largest request body that fits in it: API Gateway base64-encodes binary bodies (4 bytes for
/// every 3) into an event that also carries the request's headers, given 64 KiB here. Larger
/// requests are refused with a 413 that points to presigned uploads (`upload_urls`).
pub const MAX_REQUEST_BODY: u64 = LAMBDA_PAYLOAD_LIMIT / 4 * 3 - 64 * 1024;

/// Serves the flat-manager API through API Gateway.
pub async fn serve_api() -> Result<(), lambda_http::Error> {
    init_tracing();
    let mut app = load_app().await.map_err(|e| format!("{e:#}"))?;
    app.max_request_body = Some(MAX_REQUEST_BODY);
    lambda_http::run(flatbucket::api::router(app)).await
}

/// Runs the jobs SQS delivers to this function until the runtime stops it: the worker's loop,
/// and the deltas function's with a delta generator in `app`.
pub async fn run_worker(app: AppState) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move { run_jobs(&app, event).await }
    }))
    .await
}

/// Runs each job of an SQS batch; jobs whose outcome could not be recorded are reported as
/// failed items so SQS delivers them again. A redelivered message means the previous run died
/// (the queue's visibility timeout outlasts the function's), so its job is put back first.
pub async fn run_jobs(app: &AppState, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let mut response = SqsBatchResponse::default();
    for record in event.payload.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        if let Err(e) = run_record(app, &record).await {
            tracing::error!(%message_id, error = %e, "job not recorded; asking SQS to deliver it again");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}

async fn run_record(app: &AppState, record: &aws_lambda_events::event::sqs::SqsMessage) -> anyhow::Result<()> {
    let body = record.body.as_deref().unwrap_or_default();
    let id = flatbucket::jobs::parse_job_id(body).with_context(|| format!("message body {body:?} is not a job id"))?;
    let redelivered =
        record.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse::<u32>().ok()).unwrap_or(1) > 1;
    if redelivered && app.state.requeue_job(id).await? {
        tracing::warn!(job_id = id, "resuming a job whose worker died");
    }
    flatbucket::jobs::run_job(app, id).await?;
    Ok(())
}
