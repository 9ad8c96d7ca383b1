//! The `worker` function: runs the commit, publish and prune jobs SQS delivers, reporting the ones
//! it could not record as batch item failures.

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    flatbucket_functions::init_tracing();
    let app = flatbucket_functions::load_app().await.map_err(|e| format!("{e:#}"))?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let app = app.clone();
        async move { flatbucket_functions::run_jobs(&app, event).await }
    }))
    .await
}
