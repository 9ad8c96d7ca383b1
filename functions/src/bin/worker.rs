//! The `worker` function: runs the commit, publish and prune jobs SQS delivers, reporting the ones
//! it could not record as batch item failures. Update-repo jobs go to the `deltas` function when
//! the deployment gives them their own queue (`deltas-queue-url`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    flatbucket_functions::init_tracing();
    let app = flatbucket_functions::load_app().await.map_err(|e| format!("{e:#}"))?;
    flatbucket_functions::run_worker(app).await
}
