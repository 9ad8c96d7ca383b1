//! Fault injection for the job suites: an [`ObjectStore`] wrapper that counts mutating operations
//! and, at the chosen one, stops the process there. The operation never completes (before or after
//! its write lands), every later one hangs too, and [`Faults::run`] drops the job's future: a kill
//! at that exact point, with no cleanup code running, as when a Lambda times out or a server dies.
//! The reader checks say what a client of the repository may see at such a moment.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context};
use async_trait::async_trait;
use bytes::Bytes;
use flatbucket::app::{AppState, Repo};
use flatbucket::repo::local::list_refs;
use flatbucket::repo::summary::{gunzip, parse_index, parse_summary};
use flatbucket::repo::walk::walk_closure;
use flatbucket::repo::{Checksum, ObjectName, ObjectType};
use flatbucket::store::{read_limited, ByteStream, Location, ObjectReader, ObjectStore, StoreError};
use tokio::sync::Notify;

/// Largest summary file the checks read.
const MAX_SUMMARY: u64 = 64 << 20;

/// Whether the process dies just before the operation is sent or just after it took effect (the
/// write landed, its answer never arrived): the second is the harder case for idempotency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Before,
    After,
}

/// The point of death: the `at`-th mutating operation (counting from 1) since [`Faults::arm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub at: usize,
    pub when: When,
}

/// What happens to one mutating operation.
enum Fate {
    Proceed,
    Die(When),
    /// The process is already dead: nothing more is sent.
    Hang,
}

/// The fault plan shared by every wrapped store of one application.
#[derive(Debug, Default)]
pub struct Faults {
    plan: Mutex<Plan>,
    killed: Notify,
}

#[derive(Debug, Default)]
struct Plan {
    /// Every mutating operation sent since [`Faults::arm`], in order.
    trace: Vec<Operation>,
    kill: Option<Kill>,
    dead: bool,
}

/// One mutating operation: the store method and the key it writes (the target of a copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub method: &'static str,
    pub key: String,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.key)
    }
}

impl Operation {
    /// The step of a job this operation belongs to: its method and the shape of its key, with
    /// build ids and object checksums left out, so copying many objects of one kind is one step.
    /// Deletes are one step per store: they are the cleanup once the job's outcome is recorded.
    pub fn step(&self) -> String {
        let shape = |part: &str| match part.split_once('.') {
            Some((name, ext)) if is_id(name) => format!("*.{ext}"),
            _ if is_id(part) => "*".to_owned(),
            _ => part.to_owned(),
        };
        let mut parts: Vec<String> = self.key.split('/').map(shape).collect();
        if self.method == "delete" {
            parts.truncate(parts.iter().take_while(|p| *p == "*").count());
        }
        format!("{} {}", self.method, parts.join("/"))
    }
}

/// A build id, an object checksum, its two-digit directory, or ids joined by `-`.
fn is_id(part: &str) -> bool {
    let one = |id: &str| {
        !id.is_empty()
            && (id.bytes().all(|b| b.is_ascii_digit()) || (id.len() >= 2 && id.bytes().all(|b| b.is_ascii_hexdigit())))
    };
    part.split('-').all(one)
}

/// The 1-based positions in `trace` where a step begins or ends, for the first occurrence of each
/// kind of transition (a step after another, a step before another; the job's first and last
/// operations): killing before and after each of them cuts every kind of transition between
/// steps both ways. A transition repeated later (the same object kinds written for the next ref
/// or appstream branch) is left to the embedded runs, which kill at every operation.
pub fn step_boundaries(trace: &[Operation]) -> Vec<usize> {
    let steps: Vec<String> = trace.iter().map(Operation::step).collect();
    let mut seen = std::collections::BTreeSet::new();
    (0..steps.len())
        .filter(|&i| {
            let first = i == 0 || i + 1 == steps.len();
            let begins = i > 0 && steps[i - 1] != steps[i] && seen.insert(("begins", &steps[i - 1], &steps[i]));
            let ends =
                i + 1 < steps.len() && steps[i + 1] != steps[i] && seen.insert(("ends", &steps[i], &steps[i + 1]));
            first || begins || ends
        })
        .map(|i| i + 1)
        .collect()
}

/// How a job run under [`Faults::run`] ended.
#[derive(Debug)]
pub enum Outcome<T> {
    Finished(T),
    Killed,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Starts counting from zero, killing at `kill` (or never), with the process alive.
    pub fn arm(&self, kill: Option<Kill>) {
        *self.plan.lock().expect("fault plan") = Plan { trace: Vec::new(), kill, dead: false };
    }

    /// The mutating operations sent since [`Faults::arm`].
    pub fn trace(&self) -> Vec<Operation> {
        self.plan.lock().expect("fault plan").trace.clone()
    }

    /// Polls `job` until it finishes or the process is killed; then the job's future is dropped
    /// mid-operation, as a dying process drops everything it was doing.
    pub async fn run<T>(&self, job: impl Future<Output = T>) -> Outcome<T> {
        tokio::select! {
            result = job => Outcome::Finished(result),
            () = self.killed.notified() => Outcome::Killed,
        }
    }

    fn fate(&self, method: &'static str, key: &str) -> Fate {
        let mut plan = self.plan.lock().expect("fault plan");
        if plan.dead {
            return Fate::Hang;
        }
        plan.trace.push(Operation { method, key: key.to_owned() });
        match plan.kill {
            Some(kill) if kill.at == plan.trace.len() => {
                // Operations racing with this one are not sent, even while an `After` one lands.
                plan.dead = true;
                Fate::Die(kill.when)
            }
            _ => Fate::Proceed,
        }
    }

    /// Runs one mutating operation according to the plan.
    async fn mutate<T>(&self, method: &'static str, key: &str, operation: impl Future<Output = T>) -> T {
        match self.fate(method, key) {
            Fate::Proceed => return operation.await,
            Fate::Die(When::Before) => self.killed.notify_one(),
            Fate::Die(When::After) => {
                drop(operation.await);
                self.killed.notify_one();
            }
            Fate::Hang => {}
        }
        std::future::pending().await
    }
}

/// An object store whose mutating operations obey a [`Faults`] plan; reads pass through.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
}

impl FaultyStore {
    pub fn wrap(inner: Arc<dyn ObjectStore>, faults: &Arc<Faults>) -> Arc<dyn ObjectStore> {
        Arc::new(Self { inner, faults: faults.clone() })
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn get(&self, key: &str) -> Result<ObjectReader, StoreError> {
        self.inner.get(key).await
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.inner.head(key).await
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.faults.mutate("put", key, self.inner.put(key, data)).await
    }

    async fn put_stream(&self, key: &str, data: ByteStream) -> Result<u64, StoreError> {
        self.faults.mutate("put_stream", key, self.inner.put_stream(key, data)).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        self.faults.mutate("put_if_absent", key, self.inner.put_if_absent(key, data)).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.faults.mutate("copy", to, self.inner.copy(from, to)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.faults.mutate("delete", key, self.inner.delete(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }

    async fn locate(&self, key: &str) -> Result<Option<Location>, StoreError> {
        self.inner.locate(key).await
    }

    async fn copy_located(&self, source: &Location, to: &str) -> Result<bool, StoreError> {
        self.faults.mutate("copy_located", to, self.inner.copy_located(source, to)).await
    }

    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(key)
    }
}

/// `app` with its staging store and every repository's store under `faults`; state, queue and
/// signing keys are shared with `app`.
pub fn with_faults(app: &AppState, faults: &Arc<Faults>) -> anyhow::Result<AppState> {
    let repos = app
        .repos
        .iter()
        .map(|(name, repo)| {
            let mut faulty = Repo::new(name, repo.config.clone(), FaultyStore::wrap(repo.store.clone(), faults));
            faulty.signer = repo.signer.clone();
            (name.clone(), faulty)
        })
        .collect();
    let staging = FaultyStore::wrap(app.staging.clone(), faults);
    let mut faulty = AppState::new((*app.config).clone(), app.state.clone(), staging, repos, app.queue.clone())?;
    faulty.build_signer = app.build_signer.clone();
    Ok(faulty)
}

/// The refs a reader finds in a repository's entry points.
#[derive(Debug, Default)]
pub struct Readable {
    /// Refs of the subsummaries `summary.idx` names.
    pub indexed: BTreeMap<String, Checksum>,
    /// Refs of the compat `summary`.
    pub compat: BTreeMap<String, Checksum>,
    /// The `refs/heads/` files.
    pub heads: BTreeMap<String, Checksum>,
}

/// What a reader can reach from the files a client fetches first: every subsummary `summary.idx`
/// names exists, and every commit it, the compat `summary` or a `refs/heads/` file names is
/// complete (its whole closure is stored).
pub async fn check_readable(store: &dyn ObjectStore) -> anyhow::Result<Readable> {
    let mut readable = Readable::default();
    if let Some(index) = read_optional(store, "summary.idx").await? {
        let (entries, _) = parse_index(&index).context("summary.idx")?;
        for (name, entry) in entries {
            let key = format!("summaries/{}.gz", entry.digest);
            let compressed = read_optional(store, &key).await?.with_context(|| format!("{name}: {key} is missing"))?;
            readable.indexed.extend(summary_refs(&gunzip(&compressed, MAX_SUMMARY)?).with_context(|| key.clone())?);
        }
    }
    if let Some(summary) = read_optional(store, "summary").await? {
        readable.compat = summary_refs(&summary).context("summary")?;
    }
    readable.heads = list_refs(store).await?;
    let stored: BTreeSet<String> = store.list("objects/").await?.into_iter().collect();
    let mut checked = BTreeSet::new();
    for (name, commit) in readable.indexed.iter().chain(&readable.compat).chain(&readable.heads) {
        if checked.insert(*commit) {
            check_complete(store, *commit, &stored).await.with_context(|| format!("ref {name} → {commit}"))?;
        }
    }
    Ok(readable)
}

/// Checks that `commit`'s closure is stored: its metadata objects are read, its content objects
/// must be among `stored` (the keys under `objects/`).
async fn check_complete(store: &dyn ObjectStore, commit: Checksum, stored: &BTreeSet<String>) -> anyhow::Result<()> {
    let closure = walk_closure(store, commit).await?;
    ensure!(closure.problems.is_empty(), "incomplete closure: {:?}", closure.problems);
    for file in closure.files.keys() {
        let key = ObjectName::new(*file, ObjectType::File).key();
        ensure!(stored.contains(&key), "content object {key} is missing");
    }
    Ok(())
}

fn summary_refs(bytes: &[u8]) -> anyhow::Result<BTreeMap<String, Checksum>> {
    Ok(parse_summary(bytes)?.refs.into_iter().map(|(name, _, commit, _)| (name, commit)).collect())
}

async fn read_optional(store: &dyn ObjectStore, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    match read_limited(store, key, MAX_SUMMARY).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}
