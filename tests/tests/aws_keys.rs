//! Signing keys kept in AWS (moto): an armored secret key in a Secrets Manager secret
//! (`gpg-key-secret`) and another in an SSM SecureString parameter (`gpg-key-parameter`) sign
//! what a publish writes, and `gpg --verify` accepts the summary's signature by each. A secret
//! that does not exist stops the start, naming the setting. Needs moto:
//! `eval "$(bash infra/moto.sh start)"`.
#![cfg(feature = "aws")]

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use aws_config::BehaviorVersion;
use aws_sdk_ssm::types::ParameterType;
use flatbucket::app::AppState;
use flatbucket::config::Config;
use flatbucket::repo::sign::read_signatures;
use flatbucket::store::{LocalStore, ObjectStore};
use flatbucket_tests::aws::{endpoint, unique_suffix};
use flatbucket_tests::fixture::{build_repo, APP_ID, APP_REF, RUNTIME_REF};
use flatbucket_tests::gpg::GnuPg;
use flatbucket_tests::publishing::{publish, resolve_refs};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_secrets_manager_and_ssm_sign_a_publish() -> anyhow::Result<()> {
    endpoint();
    let keys = GnuPg::new()?;
    let (in_secret, in_parameter) = (keys.generate("secret@example.org")?, keys.generate("parameter@example.org")?);
    let dir = tempfile::tempdir()?;
    let armored = |key: &str| -> anyhow::Result<String> {
        let path = keys.export_secret(&[key], &dir.path().join(format!("{key}.asc")))?;
        Ok(std::fs::read_to_string(path)?)
    };
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let suffix = unique_suffix();
    let secret = aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name(format!("flatbucket/repo-key-{suffix}"))
        .secret_string(armored(&in_secret)?)
        .send()
        .await?;
    let secret_arn = secret.arn().context("no ARN")?.to_owned();
    let parameter = format!("/flatbucket/repo-key-{suffix}");
    aws_sdk_ssm::Client::new(&config)
        .put_parameter()
        .name(&parameter)
        .r#type(ParameterType::SecureString)
        .value(armored(&in_parameter)?)
        .send()
        .await?;

    let settings = |repo: serde_json::Value| {
        let json = json!({
            "repos": {"stable": repo},
            "database-url": format!("sqlite:{}", dir.path().join("state.sqlite").display()),
            "build-repo-base": dir.path().join("build-repo"),
            "secret": "c2VjcmV0"
        });
        Config::parse(&json.to_string())
    };
    let repo_dir = dir.path().join("repo");
    let repo = json!({"path": repo_dir, "gpg-key-secret": secret_arn, "gpg-key-parameter": parameter});
    let (app, _) = AppState::from_config(settings(repo)?).await?;
    let signer = app.repo("stable").context("stable")?.signer.clone().context("signed")?;
    assert_eq!(signer.fingerprints(), [in_secret.clone(), in_parameter.clone()]);

    let fixture = tokio::task::spawn_blocking(|| build_repo(1)).await??;
    let source: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&fixture.repo)?);
    let refs = resolve_refs(&*source, &[RUNTIME_REF, APP_REF]).await?;
    publish(&app, "stable", APP_ID, &source, &refs).await?;
    let summary = std::fs::read(repo_dir.join("summary"))?;
    let signatures = read_signatures(&std::fs::read(repo_dir.join("summary.sig"))?)?;
    assert_eq!(signatures.len(), 2);
    for (signature, key) in signatures.iter().zip([&in_secret, &in_parameter]) {
        let report = gpg_verify(&keys, dir.path(), signature, &summary)?;
        assert!(report.contains("Good signature") && report.contains(key.as_str()), "{report}");
    }

    let missing = json!({"path": repo_dir, "gpg-key-secret": format!("flatbucket/missing-{suffix}")});
    let error = format!("{:#}", AppState::from_config(settings(missing)?).await.err().context("started")?);
    assert!(error.contains("repos.stable") && error.contains("gpg-key-secret"), "{error}");
    Ok(())
}

/// `gpg --verify` of `signature` over `data`; returns gpg's report.
fn gpg_verify(keys: &GnuPg, dir: &Path, signature: &[u8], data: &[u8]) -> anyhow::Result<String> {
    let (sig, file) = (dir.join("summary.sig.bin"), dir.join("summary.bin"));
    std::fs::write(&sig, signature)?;
    std::fs::write(&file, data)?;
    let output = keys.gpg().arg("--verify").arg(&sig).arg(&file).output()?;
    let report = String::from_utf8_lossy(&output.stderr).into_owned();
    anyhow::ensure!(output.status.success(), "gpg --verify refused: {report}");
    Ok(report)
}
