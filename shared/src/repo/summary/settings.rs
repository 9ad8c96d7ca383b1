//! Repository-level settings that flatpak publishes in summary metadata (`add_summary_metadata`).

use std::collections::BTreeMap;

use gvariant::gv;

use crate::repo::gv::{variant, VarDict};

/// `xa.cache-version`: 2 means subsummaries carry `ot.ts`.
const CACHE_VERSION: u32 = 2;

/// What a repository says about itself in `summary` and `summary.idx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummarySettings {
    /// `core.mode` of the repository.
    pub mode: String,
    pub tombstone_commits: bool,
    pub collection_id: Option<String>,
    pub title: Option<String>,
    pub comment: Option<String>,
    pub description: Option<String>,
    pub homepage: Option<String>,
    pub icon: Option<String>,
    pub redirect_url: Option<String>,
    pub default_branch: Option<String>,
    /// Publish the collection ID as `ostree.deploy-collection-id` (all clients adopt it).
    pub deploy_collection_id: bool,
    /// Publish it as `xa.deploy-collection-id` (flatpak ≥ 1.7 only).
    pub deploy_sideload_collection_id: bool,
    pub authenticator_name: Option<String>,
    pub authenticator_install: Option<bool>,
    pub authenticator_options: BTreeMap<String, String>,
    /// Binary keyring clients import (`xa.gpg-keys`).
    pub gpg_keys: Option<Vec<u8>>,
    /// Arches the compat summary is restricted to (`[flatpak] summary-arches`).
    pub summary_arches: Option<Vec<String>>,
    /// How many earlier subsummaries keep deltas (`summary-history-length`).
    pub history_length: usize,
}

impl Default for SummarySettings {
    fn default() -> Self {
        Self {
            mode: "archive-z2".into(),
            tombstone_commits: false,
            collection_id: None,
            title: None,
            comment: None,
            description: None,
            homepage: None,
            icon: None,
            redirect_url: None,
            default_branch: None,
            deploy_collection_id: false,
            deploy_sideload_collection_id: false,
            authenticator_name: None,
            authenticator_install: None,
            authenticator_options: BTreeMap::new(),
            gpg_keys: None,
            summary_arches: None,
            history_length: 16,
        }
    }
}

impl SummarySettings {
    /// The metadata shared by `summary` and `summary.idx`, in flatpak's order.
    pub fn repo_metadata(&self, last_modified: u64) -> VarDict {
        let mut meta = VarDict::new();
        meta.set("ostree.summary.mode", variant(gv!("s"), self.mode.as_str()));
        meta.set("ostree.summary.tombstone-commits", variant(gv!("b"), &self.tombstone_commits));
        meta.set("ostree.summary.indexed-deltas", variant(gv!("b"), &true));
        meta.set("ostree.summary.last-modified", variant(gv!("t"), last_modified.to_be()));
        if let Some(id) = &self.collection_id {
            meta.set("ostree.summary.collection-id", variant(gv!("s"), id.as_str()));
        }
        let strings = [
            ("xa.title", &self.title),
            ("xa.comment", &self.comment),
            ("xa.description", &self.description),
            ("xa.homepage", &self.homepage),
            ("xa.icon", &self.icon),
            ("xa.redirect-url", &self.redirect_url),
            ("xa.default-branch", &self.default_branch),
        ];
        for (key, value) in strings {
            if let Some(value) = value {
                meta.set(key, variant(gv!("s"), value.as_str()));
            }
        }
        if let Some(id) = &self.collection_id {
            if self.deploy_collection_id {
                meta.set("ostree.deploy-collection-id", variant(gv!("s"), id.as_str()));
            } else if self.deploy_sideload_collection_id {
                meta.set("xa.deploy-collection-id", variant(gv!("s"), id.as_str()));
            }
        }
        if let Some(name) = &self.authenticator_name {
            meta.set("xa.authenticator-name", variant(gv!("s"), name.as_str()));
        }
        if let Some(install) = self.authenticator_install {
            meta.set("xa.authenticator-install", variant(gv!("b"), &install));
        }
        meta.set("xa.cache-version", variant(gv!("u"), CACHE_VERSION.to_le()));
        for (key, value) in &self.authenticator_options {
            meta.set(&format!("xa.authenticator-options.{key}"), variant(gv!("s"), value.as_str()));
        }
        if let Some(keys) = &self.gpg_keys {
            meta.set("xa.gpg-keys", variant(gv!("ay"), &keys[..]));
        }
        meta
    }
}
