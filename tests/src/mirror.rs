//! Re-commits refs of an existing repository into a new archive repository with flatbucket's own
//! writer: verify the source closure, rewrite each commit, copy objects children-first, write
//! commits, refs and summaries. What the publish path does, without the API around it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use flatbucket::repo::layout::init_local_repo;
use flatbucket::repo::local::resolve_ref;
use flatbucket::repo::publish::{build_summaries, copy_objects, write_refs, write_summaries, SummaryFiles};
use flatbucket::repo::record::RefRecord;
use flatbucket::repo::rewrite::{rewrite_commit, RewriteOptions};
use flatbucket::repo::summary::SummarySettings;
use flatbucket::repo::verify::verify_commit;
use flatbucket::repo::{ObjectName, ObjectType};
use flatbucket::store::{LocalStore, ObjectStore};

/// A repository written only by flatbucket.
pub struct Mirror {
    pub store: Arc<dyn ObjectStore>,
    pub records: BTreeMap<String, RefRecord>,
    pub settings: SummarySettings,
}

impl Mirror {
    /// Starts an empty archive repository at `path`.
    pub async fn create(path: &Path) -> anyhow::Result<Self> {
        init_local_repo(path, None)?;
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(path)?);
        Ok(Self { store, records: BTreeMap::new(), settings: SummarySettings::default() })
    }

    /// Imports `refs` from the repository at `source` under their own names, then publishes.
    pub async fn import(&mut self, source: &Path, refs: &[&str]) -> anyhow::Result<SummaryFiles> {
        for name in refs {
            let options = RewriteOptions { ref_name: (*name).to_owned(), ..Default::default() };
            self.import_as(source, name, options).await?;
        }
        self.publish().await
    }

    /// Re-commits `src_ref` of `source` as `options.ref_name` (with `options`' build settings); the
    /// parent, timestamp and sizes are filled in here.
    pub async fn import_as(&mut self, source: &Path, src_ref: &str, mut options: RewriteOptions) -> anyhow::Result<()> {
        let src: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(source)?);
        let source_commit = resolve_ref(&*src, src_ref).await?;
        let verified = verify_commit(src.clone(), source_commit, 4, None).await?;
        if !verified.is_ok() {
            bail!("{src_ref} does not verify: {:?}", verified.problems());
        }
        options.parent = self.records.get(&options.ref_name).map(|r| r.commit);
        options.timestamp = now();
        options.sizes = Some(verified.sizes);
        let source = verified.closure.commit.as_ref().context("verified closure has its commit")?;
        let commit = rewrite_commit(source, source_commit, &options)?;
        let names: Vec<ObjectName> = verified.closure.object_names().filter(|n| n.kind != ObjectType::Commit).collect();
        copy_objects(&*src, &*self.store, &names).await?;
        let bytes = commit.to_bytes();
        let checksum = commit.checksum();
        let key = ObjectName::new(checksum, ObjectType::Commit).key();
        self.store.put_if_absent(&key, Bytes::from(bytes.clone())).await?;
        let record = RefRecord::from_commit(&options.ref_name, checksum, &commit, bytes.len() as u64, None)?;
        self.records.insert(options.ref_name, record);
        Ok(())
    }

    /// Writes refs and summaries for the current records.
    pub async fn publish(&self) -> anyhow::Result<SummaryFiles> {
        let records: Vec<RefRecord> = self.records.values().cloned().collect();
        write_refs(&*self.store, &records).await?;
        let files = build_summaries(&*self.store, &records, &self.settings, &[], now()).await?;
        write_summaries(&*self.store, &files).await?;
        Ok(files)
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}
