//! Repositories of many refs for the benchmarks: one tiny tree shared by every ref, a distinct
//! commit per ref with the metadata flatpak's summaries are built from, and the records the
//! server keeps for them. Written with flatbucket's own writer, quickly, on any object store.

use anyhow::Context;
use bytes::Bytes;
use flatbucket::repo::commit::Commit;
use flatbucket::repo::dirs::{DirEntry, DirMeta, DirTree};
use flatbucket::repo::filez::{encode_filez, FileHeader};
use flatbucket::repo::gv::{variant, VarDict};
use flatbucket::repo::layout::ref_file;
use flatbucket::repo::record::RefRecord;
use flatbucket::repo::{Checksum, ObjectName, ObjectType};
use flatbucket::store::ObjectStore;
use futures::stream::{self, StreamExt, TryStreamExt};
use gvariant::gv;

use crate::bigapp;

/// Commit timestamps of the synthetic refs start here (November 2023).
const BASE_TIMESTAMP: u64 = 1_700_000_000;
/// Objects written at once (a remote store answers each write in a round trip).
const WRITE_CONCURRENCY: usize = 32;

/// Writes `count` synthetic refs into `store`: the shared tree, one commit per ref and
/// `refs/heads/<ref>`. Returns their records, in ref-number order.
pub async fn write_refs(store: &dyn ObjectStore, count: usize) -> anyhow::Result<Vec<RefRecord>> {
    let (root_tree, root_meta) = write_shared_tree(store).await?;
    stream::iter(0..count)
        .map(|i| async move {
            let name = ref_name(i);
            let commit = synthetic_commit(i, &name, root_tree, root_meta);
            let bytes = commit.to_bytes();
            let checksum = Checksum::of(&bytes);
            let size = bytes.len() as u64;
            put_object(store, ObjectName::new(checksum, ObjectType::Commit), bytes).await?;
            store
                .put(&format!("refs/heads/{name}"), Bytes::from(ref_file(&checksum)))
                .await
                .with_context(|| format!("failed to write the ref {name}"))?;
            Ok(RefRecord::from_commit(&name, checksum, &commit, size, None)?)
        })
        .buffered(WRITE_CONCURRENCY)
        .try_collect()
        .await
}

/// The tree every synthetic commit shares: a `metadata` file and an empty `files/`. Returns the
/// root dirtree and dirmeta.
async fn write_shared_tree(store: &dyn ObjectStore) -> anyhow::Result<(Checksum, Checksum)> {
    let content = bigapp::METADATA.as_bytes();
    let (file, filez) = encode_filez(&FileHeader::regular(content.len() as u64, 0o644), content, 6);
    put_object(store, ObjectName::new(file, ObjectType::File), filez).await?;
    let meta = DirMeta::flatpak_default().to_bytes();
    let meta_sum = Checksum::of(&meta);
    put_object(store, ObjectName::new(meta_sum, ObjectType::DirMeta), meta).await?;
    let empty = DirTree::default().to_bytes();
    let empty_sum = Checksum::of(&empty);
    put_object(store, ObjectName::new(empty_sum, ObjectType::DirTree), empty).await?;
    let mut root = DirTree {
        files: vec![("metadata".to_owned(), file)],
        dirs: vec![DirEntry { name: "files".to_owned(), tree: empty_sum, meta: meta_sum }],
    };
    root.sort();
    let root = root.to_bytes();
    let root_sum = Checksum::of(&root);
    put_object(store, ObjectName::new(root_sum, ObjectType::DirTree), root).await?;
    Ok((root_sum, meta_sum))
}

async fn put_object(store: &dyn ObjectStore, name: ObjectName, bytes: Vec<u8>) -> anyhow::Result<()> {
    store.put_if_absent(&name.key(), Bytes::from(bytes)).await.with_context(|| format!("failed to store {name}"))?;
    Ok(())
}

/// Ref `i`: mostly apps, every tenth a runtime; every fourth on aarch64, so there are two arches
/// and so two subsummaries.
pub fn ref_name(i: usize) -> String {
    let arch = if i % 4 == 3 { "aarch64" } else { "x86_64" };
    match i % 10 {
        0 => format!("runtime/org.example.Runtime{i}/{arch}/stable"),
        _ => format!("app/org.example.App{i}/{arch}/stable"),
    }
}

/// A distinct commit for ref `name`, with the metadata flatpak's summaries are built from.
fn synthetic_commit(i: usize, name: &str, root_tree: Checksum, root_meta: Checksum) -> Commit {
    let mut parts = name.split('/');
    let (kind, id, arch) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next());
    let group = if kind == "runtime" { "Runtime" } else { "Application" };
    let runtime = format!("org.example.Platform/{}/stable", arch.unwrap_or_default());
    let keyfile = format!("[{group}]\nname={id}\nruntime={runtime}\nsdk={runtime}\n");
    let mut metadata = VarDict::new();
    metadata.set("xa.metadata", variant(gv!("s"), keyfile.as_str()));
    metadata.set("xa.installed-size", variant(gv!("t"), (4096 + 512 * i as u64).to_be()));
    metadata.set("xa.download-size", variant(gv!("t"), (1024 + 100 * i as u64).to_be()));
    metadata.set("xa.ref", variant(gv!("s"), name));
    metadata.set("ostree.ref-binding", variant(gv!("as"), [name].iter()));
    Commit {
        metadata,
        parent: None,
        related: Vec::new(),
        subject: format!("Export {id}"),
        body: String::new(),
        timestamp: BASE_TIMESTAMP + i as u64,
        root_tree,
        root_meta,
    }
}
