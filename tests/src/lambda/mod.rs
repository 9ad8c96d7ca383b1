//! flatbucket's Lambda functions run the way `template.yaml` deploys them, on moto: the function
//! binaries under `cargo lambda watch` ([`Emulator`]), a stand-in HTTP API invoking them by the
//! template's route table ([`Gateway`]), and a stand-in SQS event source mapping feeding the job
//! queue to the worker ([`EventSource`]).

mod emulator;
mod event_source;
mod gateway;
mod template;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::{json, Value};

pub use emulator::Emulator;
pub use event_source::{Activity, EventSource};
pub use gateway::{Gateway, Traffic};
pub use template::{QueueConsumer, Route, Template};

use crate::aws::unique_suffix;

/// Variables of the test's environment the functions get too: the AWS endpoint and credentials.
const PASSED_ENV: &[&str] =
    &["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"];
/// How much of the end of the emulator's log [`LambdaStack::diagnostics`] shows.
const LOG_TAIL: usize = 64 * 1024;

/// The template's functions running against moto; stopped on drop.
pub struct LambdaStack {
    /// The HTTP API (fields drop in order: the gateway and the event source before the functions).
    pub gateway: Gateway,
    /// The job queue's event source mapping.
    pub jobs: EventSource,
    pub emulator: Emulator,
    /// The job queue.
    pub queue_url: String,
}

impl LambdaStack {
    /// Creates a job queue, sets it as `config`'s `queue-url` and starts the template's functions
    /// with that configuration (flatbucket's JSON, passed as `FLATBUCKET_CONFIG`), the HTTP API in
    /// front of them and the queue feeding its consumer.
    pub async fn start(mut config: Value) -> anyhow::Result<Self> {
        let template = Template::load(&workspace_root().join("template.yaml"))?;
        let consumer = match template.queue_consumers.as_slice() {
            [consumer] => consumer.clone(),
            other => bail!("the template should feed the job queue to one function, not {other:?}"),
        };
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let queue = sqs.create_queue().queue_name(format!("jobs-{}", unique_suffix())).send().await?;
        let queue_url = queue.queue_url().context("CreateQueue answered no URL")?.to_owned();
        config["queue-url"] = json!(queue_url);

        let env = function_env(&config);
        let binaries = template.binaries();
        let emulator = tokio::task::spawn_blocking(move || Emulator::start(&binaries, &env)).await??;
        let urls = template.binaries().into_iter().map(|b| (b.clone(), emulator.invoke_url(&b))).collect();
        let jobs = EventSource::start(sqs, &queue_url, consumer.clone(), emulator.invoke_url(&consumer.binary)).await?;
        let gateway = Gateway::start(template, urls).await?;
        Ok(Self { gateway, jobs, emulator, queue_url })
    }

    /// The API's base URL, the manager URL for `flat-manager-client`.
    pub fn url(&self) -> String {
        self.gateway.url()
    }

    /// What went through the gateway and the queue, and the end of the emulator's and the
    /// functions' output: what to read when a test against the stack fails.
    pub fn diagnostics(&self) -> String {
        let log = self.emulator.log();
        let start = log.len().saturating_sub(LOG_TAIL);
        let start = (start..log.len()).find(|&i| log.is_char_boundary(i)).unwrap_or(log.len());
        format!(
            "gateway traffic: {:#?}\njob queue activity: {:#?}\nend of the emulator's and functions' log:\n{}",
            self.gateway.traffic(),
            self.jobs.activity(),
            &log[start..],
        )
    }
}

/// The functions' environment: the configuration, the AWS settings, and `RUST_LOG` (`info` unless
/// the test's says otherwise).
fn function_env(config: &Value) -> Vec<(String, String)> {
    let mut env = vec![
        ("FLATBUCKET_CONFIG".to_owned(), config.to_string()),
        ("RUST_LOG".to_owned(), std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
    ];
    env.extend(PASSED_ENV.iter().filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?))));
    env
}

/// The workspace's root directory, where `template.yaml` is.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate is in the workspace").to_path_buf()
}
