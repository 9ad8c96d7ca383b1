//! Builds: a staging area a client uploads into, then commits and publishes. Two state machines
//! run side by side: the build repository's (`repo_state`) and its publication's.

use serde::{Deserialize, Serialize};

/// Where a build's repository is in its life. Numbers are flat-manager's wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoState {
    /// Accepting uploads and refs.
    Uploading = 0,
    /// The commit job is verifying and committing the uploads.
    Committing = 1,
    /// Committed: installable from `/build-repo/<id>` and publishable.
    Ready = 2,
    /// Commit (or purge) failed; the reason says why. Final.
    Failed = 3,
    /// Its files are being deleted.
    Purging = 4,
    /// Its files are gone. Final.
    Purged = 5,
    /// Check hooks are running.
    Validating = 6,
}

/// Where a build's publication is. Numbers are flat-manager's wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishedState {
    /// Not published (yet).
    Unpublished = 0,
    /// The publish job is running or queued.
    Publishing = 1,
    /// Its refs are in the repository.
    Published = 2,
    /// The publish job failed; the reason says why. Final.
    Failed = 3,
}

macro_rules! wire_enum {
    ($name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $name {
            /// The name flat-manager uses in `current-state`/`expected-state`.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn from_i64(value: i64) -> Option<Self> {
                [$(Self::$variant),+].into_iter().find(|v| *v as i64 == value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i64(*self as i64)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = i64::deserialize(d)?;
                Self::from_i64(value).ok_or_else(|| serde::de::Error::custom(format!("invalid {} {value}", stringify!($name))))
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum!(RepoState {
    Uploading = "uploading",
    Committing = "committing",
    Ready = "ready",
    Failed = "failed",
    Purging = "purging",
    Purged = "purged",
    Validating = "validating",
});

wire_enum!(PublishedState {
    Unpublished = "unpublished",
    Publishing = "publishing",
    Published = "published",
    Failed = "failed",
});

/// A build as the API shows it, keys in flat-manager's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Build {
    pub id: i64,
    /// Naive UTC timestamp, `2026-06-22T15:07:26.123456`.
    pub created: String,
    pub repo_state: RepoState,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repo_state_reason: Option<String>,
    pub published_state: PublishedState,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub published_state_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub commit_job_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub publish_job_id: Option<i64>,
    pub repo: String,
    pub extra_ids: Vec<String>,
    pub app_id: Option<String>,
    pub public_download: bool,
    pub build_log_url: Option<String>,
    pub token_name: Option<String>,
    pub token_type: Option<String>,
}

/// What creating a build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBuild {
    pub repo: String,
    pub app_id: Option<String>,
    pub public_download: bool,
    pub build_log_url: Option<String>,
    pub token_name: Option<String>,
    pub token_type: Option<String>,
}

/// A ref registered for a build: the local commit the client uploaded for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRef {
    pub id: i64,
    pub build_id: i64,
    pub ref_name: String,
    pub commit: String,
    pub build_log_url: Option<String>,
}

/// A state transition was refused: the build is not where the caller expected it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WrongState {
    pub kind: StateKind,
    pub current: &'static str,
    pub expected: &'static str,
    /// flat-manager's message for this situation, e.g. `Build is already committed`.
    pub message: String,
}

/// Which of the two state machines refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    Repo,
    Published,
}

/// The two state machines of a build, so every backend's conditional move is written once.
pub trait BuildStateMachine: Copy + PartialEq + Send + Sync + 'static {
    /// The field (column, attribute) holding the state, and the one holding its reason.
    const FIELD: &'static str;
    const REASON_FIELD: &'static str;
    const KIND: StateKind;
    fn of(build: &Build) -> Self;
    fn value(self) -> i64;
    fn name(self) -> &'static str;

    /// The refusal of a move to a build in `current` when it had to be in one of `from`.
    fn unexpected(current: Self, from: &[Self]) -> WrongState {
        let expected: Vec<&str> = from.iter().map(|s| s.name()).collect();
        WrongState {
            kind: Self::KIND,
            current: current.name(),
            expected: expected.first().copied().unwrap_or(""),
            message: format!("Unexpected state {}, expected one of {}", current.name(), expected.join(", ")),
        }
    }
}

impl BuildStateMachine for RepoState {
    const FIELD: &'static str = "repo_state";
    const REASON_FIELD: &'static str = "repo_state_reason";
    const KIND: StateKind = StateKind::Repo;
    fn of(build: &Build) -> Self {
        build.repo_state
    }
    fn value(self) -> i64 {
        self as i64
    }
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl BuildStateMachine for PublishedState {
    const FIELD: &'static str = "published_state";
    const REASON_FIELD: &'static str = "published_state_reason";
    const KIND: StateKind = StateKind::Published;
    fn of(build: &Build) -> Self {
        build.published_state
    }
    fn value(self) -> i64 {
        self as i64
    }
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Build {
    /// May a commit start? Only from `uploading`, with flat-manager's messages otherwise.
    pub fn check_can_commit(&self) -> Result<(), WrongState> {
        let message = match self.repo_state {
            RepoState::Uploading => return Ok(()),
            RepoState::Committing => "Build is currently being committed".to_owned(),
            RepoState::Ready | RepoState::Validating => "Build is already committed".to_owned(),
            RepoState::Failed => format!("Commit already failed: {}", self.repo_state_reason.as_deref().unwrap_or("")),
            RepoState::Purging | RepoState::Purged => "Build has been purged".to_owned(),
        };
        Err(self.wrong_repo_state(RepoState::Uploading, message))
    }

    /// May a publish start? Published state first (expected `unpublished`), then repo state
    /// (expected `ready`).
    pub fn check_can_publish(&self) -> Result<(), WrongState> {
        let reason = |r: &Option<String>| r.clone().unwrap_or_default();
        let published = match self.published_state {
            PublishedState::Unpublished => None,
            PublishedState::Publishing => Some("Build is currently being published".to_owned()),
            PublishedState::Published => Some("Build has already been published".to_owned()),
            PublishedState::Failed => {
                Some(format!("Previous publish failed: {}", reason(&self.published_state_reason)))
            }
        };
        if let Some(message) = published {
            return Err(WrongState {
                kind: StateKind::Published,
                current: self.published_state.as_str(),
                expected: PublishedState::Unpublished.as_str(),
                message,
            });
        }
        let message = match self.repo_state {
            RepoState::Ready => return Ok(()),
            RepoState::Uploading | RepoState::Committing => "Build is not committed".to_owned(),
            RepoState::Validating => "Build is still validating".to_owned(),
            RepoState::Failed => format!("Build failed: {}", reason(&self.repo_state_reason)),
            RepoState::Purging | RepoState::Purged => "Build has been purged".to_owned(),
        };
        Err(self.wrong_repo_state(RepoState::Ready, message))
    }

    /// May objects still be uploaded? Only while the build is uploading: later writes would land
    /// after its objects were verified.
    pub fn check_uploading(&self) -> Result<(), WrongState> {
        if self.repo_state == RepoState::Uploading {
            return Ok(());
        }
        Err(self.wrong_repo_state(RepoState::Uploading, "Build is not in uploading state".to_owned()))
    }

    /// May the build's files be purged? Not while a job works on them.
    pub fn can_purge(&self) -> bool {
        let busy = matches!(self.repo_state, RepoState::Committing | RepoState::Purging | RepoState::Validating);
        !busy && self.published_state != PublishedState::Publishing
    }

    fn wrong_repo_state(&self, expected: RepoState, message: String) -> WrongState {
        WrongState { kind: StateKind::Repo, current: self.repo_state.as_str(), expected: expected.as_str(), message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(repo_state: RepoState, published_state: PublishedState) -> Build {
        Build {
            id: 1,
            created: "2026-01-01T00:00:00".into(),
            repo_state,
            repo_state_reason: Some("boom".into()),
            published_state,
            published_state_reason: None,
            commit_job_id: None,
            publish_job_id: None,
            repo: "stable".into(),
            extra_ids: Vec::new(),
            app_id: None,
            public_download: true,
            build_log_url: None,
            token_name: None,
            token_type: None,
        }
    }

    #[test]
    fn commit_is_refused_with_flat_managers_messages() {
        assert!(build(RepoState::Uploading, PublishedState::Unpublished).check_can_commit().is_ok());
        let err = build(RepoState::Failed, PublishedState::Unpublished).check_can_commit().unwrap_err();
        assert_eq!(
            (err.message.as_str(), err.current, err.expected),
            ("Commit already failed: boom", "failed", "uploading")
        );
        let err = build(RepoState::Validating, PublishedState::Unpublished).check_can_commit().unwrap_err();
        assert_eq!(err.message, "Build is already committed");
    }

    #[test]
    fn publish_checks_published_state_before_repo_state() {
        let err = build(RepoState::Uploading, PublishedState::Published).check_can_publish().unwrap_err();
        assert_eq!((err.kind, err.current, err.expected), (StateKind::Published, "published", "unpublished"));
        let err = build(RepoState::Validating, PublishedState::Unpublished).check_can_publish().unwrap_err();
        assert_eq!((err.message.as_str(), err.expected), ("Build is still validating", "ready"));
        assert!(build(RepoState::Ready, PublishedState::Unpublished).check_can_publish().is_ok());
    }

    #[test]
    fn serializes_like_flat_manager() {
        let json = serde_json::to_value(build(RepoState::Ready, PublishedState::Unpublished)).unwrap();
        assert_eq!(json["repo_state"], 2);
        assert_eq!(json["repo_state_reason"], "boom");
        assert!(json.get("published_state_reason").is_none());
        assert!(json.get("commit_job_id").is_none());
        assert_eq!(json["app_id"], serde_json::Value::Null);
    }
}
