//! Signing keys kept in AWS: an armored secret key in a Secrets Manager secret (`gpg-key-secret`,
//! a name or ARN) or an SSM Parameter Store SecureString (`gpg-key-parameter`), read once at
//! start-up. A Lambda function has no GnuPG home and no key file, so this is how it signs; the
//! key never lands in the configuration or on disk.

use anyhow::Context;

use crate::config::RepoConfig;
use crate::repo::sign::Signer;

/// The signer of the keys `repo` keeps in Secrets Manager and SSM; `None` when it names none.
pub async fn aws_signer(repo: &RepoConfig) -> anyhow::Result<Option<Signer>> {
    let mut signer: Option<Signer> = None;
    let sources = [(&repo.gpg_key_secret, Source::Secret), (&repo.gpg_key_parameter, Source::Parameter)];
    for (name, source) in sources.iter().filter_map(|(name, source)| Some((name.as_deref()?, source))) {
        let text = aws::read(*source, name).await.with_context(|| format!("{} {name}", source.setting()))?;
        let loaded = Signer::from_armored(&text).with_context(|| format!("{} {name}", source.setting()))?;
        match &mut signer {
            Some(signer) => signer.extend(loaded),
            None => signer = Some(loaded),
        }
    }
    Ok(signer)
}

/// Where a key is kept.
#[derive(Debug, Clone, Copy)]
enum Source {
    Secret,
    Parameter,
}

impl Source {
    fn setting(self) -> &'static str {
        match self {
            Self::Secret => "gpg-key-secret",
            Self::Parameter => "gpg-key-parameter",
        }
    }
}

#[cfg(feature = "aws")]
mod aws {
    use anyhow::Context;
    use aws_config::BehaviorVersion;

    use super::Source;

    /// The armored key text `name` holds; clients come from the environment's configuration
    /// (credentials, region, `AWS_ENDPOINT_URL`).
    pub async fn read(source: Source, name: &str) -> anyhow::Result<String> {
        let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
        match source {
            Source::Secret => {
                let client = aws_sdk_secretsmanager::Client::new(&config);
                let secret = client.get_secret_value().secret_id(name).send().await.context("GetSecretValue")?;
                if let Some(text) = secret.secret_string() {
                    return Ok(text.to_owned());
                }
                let binary = secret.secret_binary().context("the secret holds no value")?;
                String::from_utf8(binary.as_ref().to_vec()).context("the secret is not an armored (text) key")
            }
            Source::Parameter => {
                let client = aws_sdk_ssm::Client::new(&config);
                let output =
                    client.get_parameter().name(name).with_decryption(true).send().await.context("GetParameter")?;
                let value = output.parameter().and_then(|p| p.value()).context("the parameter holds no value")?;
                Ok(value.to_owned())
            }
        }
    }
}

#[cfg(not(feature = "aws"))]
mod aws {
    use super::Source;

    pub async fn read(_source: Source, _name: &str) -> anyhow::Result<String> {
        anyhow::bail!("this build of flatbucket has no AWS backends: build it with `--features aws`")
    }
}
