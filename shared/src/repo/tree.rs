//! Writing new trees: an in-memory directory tree (regular files from bytes or existing content
//! objects, symlinks, directories with flatpak's default dirmeta) stored as content, dirmeta and
//! dirtree objects children-first, and commits made on it. This is how the appstream and
//! `ostree-metadata` branches are built without libostree.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::commit::Commit;
use super::dirs::{validate_filename, DirEntry, DirMeta, DirTree};
use super::filez::{encode_filez, FileHeader};
use super::gv::VarDict;
use super::record::TreeSizes;
use super::{Checksum, FormatError, ObjectName, ObjectType};
use crate::store::{ObjectStore, StoreError};

/// zlib level of new content objects (ostree's default for archive repositories).
const COMPRESSION_LEVEL: u32 = 6;

/// One file of a [`Tree`]: its content object, and the object's bytes when it is new.
#[derive(Debug, Clone)]
struct FileNode {
    checksum: Checksum,
    /// The `.filez` to write; `None` for an object the store already has.
    encoded: Option<Bytes>,
    /// What the file adds to the tree's installed and download sizes (§7.2).
    sizes: TreeSizes,
}

#[derive(Debug, Clone, Default)]
struct DirNode {
    files: BTreeMap<String, FileNode>,
    dirs: BTreeMap<String, DirNode>,
}

/// A directory tree being assembled. Every directory gets flatpak's default dirmeta (root-owned,
/// 040755); new regular files are root-owned 0644.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    root: DirNode,
}

/// The objects naming a written tree, and its sizes as flatpak counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenTree {
    pub tree: Checksum,
    pub meta: Checksum,
    pub sizes: TreeSizes,
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a root-owned 0644 regular file holding `content` at `path` (`a/b/c`).
    pub fn add_file(&mut self, path: &str, content: &[u8]) -> Result<Checksum, FormatError> {
        let header = FileHeader::regular(content.len() as u64, 0o644);
        let (checksum, encoded) = encode_filez(&header, content, COMPRESSION_LEVEL);
        let sizes = TreeSizes { installed: round_up_512(content.len() as u64), download: encoded.len() as u64 };
        self.insert(path, FileNode { checksum, encoded: Some(Bytes::from(encoded)), sizes })?;
        Ok(checksum)
    }

    /// Adds a root-owned symlink to `target` at `path`.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<Checksum, FormatError> {
        if target.is_empty() || target.contains('\0') {
            return Err(FormatError::Malformed(format!("invalid symlink target {target:?}")));
        }
        let (checksum, encoded) = encode_filez(&FileHeader::symlink(target), b"", COMPRESSION_LEVEL);
        self.insert(path, FileNode { checksum, encoded: Some(Bytes::from(encoded)), sizes: TreeSizes::default() })?;
        Ok(checksum)
    }

    /// Adds an existing regular-file content object at `path`: the store must already hold it.
    /// `content_size` is its file size and `stored_size` the length of its `.filez`.
    pub fn add_object(
        &mut self,
        path: &str,
        checksum: Checksum,
        content_size: u64,
        stored_size: u64,
    ) -> Result<(), FormatError> {
        let sizes = TreeSizes { installed: round_up_512(content_size), download: stored_size };
        self.insert(path, FileNode { checksum, encoded: None, sizes })
    }

    /// Makes sure the directory `path` exists ("" is the root).
    pub fn add_dir(&mut self, path: &str) -> Result<(), FormatError> {
        let mut dir = &mut self.root;
        for name in components(path)? {
            if dir.files.contains_key(name) {
                return Err(FormatError::Malformed(format!("{path:?} is a file")));
            }
            dir = dir.dirs.entry(name.to_owned()).or_default();
        }
        Ok(())
    }

    fn insert(&mut self, path: &str, node: FileNode) -> Result<(), FormatError> {
        let mut names = components(path)?;
        let name = names.pop().ok_or_else(|| FormatError::Malformed("empty file path".into()))?;
        let mut dir = &mut self.root;
        for component in names {
            if dir.files.contains_key(component) {
                return Err(FormatError::Malformed(format!("a parent of {path:?} is a file")));
            }
            dir = dir.dirs.entry(component.to_owned()).or_default();
        }
        if dir.dirs.contains_key(name) {
            return Err(FormatError::Malformed(format!("{path:?} is a directory")));
        }
        dir.files.insert(name.to_owned(), node);
        Ok(())
    }

    /// Writes the tree's new content objects, then its dirmeta, then its dirtrees children-first,
    /// so every object written names only objects that exist. Objects the store has are kept.
    pub async fn write(&self, store: &dyn ObjectStore) -> Result<WrittenTree, StoreError> {
        write_files(&self.root, store).await?;
        let meta = DirMeta::flatpak_default().to_bytes();
        let meta_sum = Checksum::of(&meta);
        store.put_if_absent(&ObjectName::new(meta_sum, ObjectType::DirMeta).key(), Bytes::from(meta)).await?;
        let (tree, sizes) = write_dirtrees(&self.root, meta_sum, store).await?;
        Ok(WrittenTree { tree, meta: meta_sum, sizes })
    }
}

/// The components of a relative path; "" has none.
fn components(path: &str) -> Result<Vec<&str>, FormatError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = path.split('/').collect();
    for name in &names {
        validate_filename(name)?;
    }
    Ok(names)
}

fn round_up_512(size: u64) -> u64 {
    size.div_ceil(512) * 512
}

async fn write_files(dir: &DirNode, store: &dyn ObjectStore) -> Result<(), StoreError> {
    let mut pending = vec![dir];
    while let Some(dir) = pending.pop() {
        for file in dir.files.values() {
            if let Some(encoded) = &file.encoded {
                store.put_if_absent(&ObjectName::new(file.checksum, ObjectType::File).key(), encoded.clone()).await?;
            }
        }
        pending.extend(dir.dirs.values());
    }
    Ok(())
}

/// Writes the dirtrees below and of `dir`, deepest first; returns its checksum and sizes.
async fn write_dirtrees(
    root: &DirNode,
    meta: Checksum,
    store: &dyn ObjectStore,
) -> Result<(Checksum, TreeSizes), StoreError> {
    // Post-order without recursion in async code: directories in pre-order, then processed
    // backwards, so every child is written before its parent.
    let mut order: Vec<(Vec<&str>, &DirNode)> = vec![(Vec::new(), root)];
    let mut i = 0;
    while i < order.len() {
        let (path, dir) = order[i].clone();
        for (name, child) in &dir.dirs {
            let mut child_path = path.clone();
            child_path.push(name.as_str());
            order.push((child_path, child));
        }
        i += 1;
    }
    let mut written: BTreeMap<Vec<&str>, (Checksum, TreeSizes)> = BTreeMap::new();
    for (path, dir) in order.into_iter().rev() {
        let mut sizes = TreeSizes::default();
        let mut tree = DirTree::default();
        for (name, file) in &dir.files {
            tree.files.push((name.clone(), file.checksum));
            sizes.installed += file.sizes.installed;
            sizes.download += file.sizes.download;
        }
        for name in dir.dirs.keys() {
            let mut child_path = path.clone();
            child_path.push(name.as_str());
            let (child, child_sizes) = written[&child_path];
            tree.dirs.push(DirEntry { name: name.clone(), tree: child, meta });
            sizes.installed += child_sizes.installed;
            sizes.download += child_sizes.download;
        }
        tree.sort();
        let bytes = tree.to_bytes();
        let checksum = Checksum::of(&bytes);
        store.put_if_absent(&ObjectName::new(checksum, ObjectType::DirTree).key(), Bytes::from(bytes)).await?;
        written.insert(path, (checksum, sizes));
    }
    Ok(written[&Vec::new()])
}

/// A commit of `tree` as ostree writes one for a generated branch: no related objects, the given
/// subject and metadata, empty body.
pub fn commit_tree(
    tree: &WrittenTree,
    parent: Option<Checksum>,
    subject: &str,
    metadata: VarDict,
    timestamp: u64,
) -> Commit {
    Commit {
        metadata,
        parent,
        related: Vec::new(),
        subject: subject.to_owned(),
        body: String::new(),
        timestamp,
        root_tree: tree.tree,
        root_meta: tree.meta,
    }
}

/// Stores `commit` (after its `.commitmeta`, which the caller writes first when it signs) and
/// returns its checksum and the object's length.
pub async fn write_commit(store: &dyn ObjectStore, commit: &Commit) -> Result<(Checksum, u64), StoreError> {
    let bytes = commit.to_bytes();
    let checksum = Checksum::of(&bytes);
    let len = bytes.len() as u64;
    store.put_if_absent(&ObjectName::new(checksum, ObjectType::Commit).key(), Bytes::from(bytes)).await?;
    Ok((checksum, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::layout::init_local_repo;
    use crate::store::LocalStore;
    use std::process::Command;

    fn ostree(repo: &std::path::Path, args: &[&str]) -> String {
        let out = Command::new("ostree").arg(format!("--repo={}", repo.display())).args(args).output().unwrap();
        assert!(out.status.success(), "ostree {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    #[tokio::test]
    async fn written_trees_pass_ostree_fsck_and_list_as_built() {
        let dir = tempfile::tempdir().unwrap();
        init_local_repo(dir.path(), None).unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let mut tree = Tree::new();
        let existing = tree.add_file("a/b/hello.txt", b"hello world\n").unwrap();
        tree.add_symlink("a/link", "b/hello.txt").unwrap();
        tree.add_dir("empty").unwrap();
        tree.add_file("top", &[7u8; 1000]).unwrap();
        let written = tree.write(&store).await.unwrap();
        assert_eq!(written.sizes.installed, 512 + 1024);

        // A second tree reusing the first tree's object by checksum.
        let mut reuse = Tree::new();
        reuse.add_object("copy.txt", existing, 12, 0).unwrap();
        let reused = reuse.write(&store).await.unwrap();

        let mut metadata = VarDict::new();
        metadata.set("ostree.ref-binding", crate::repo::gv::variant(gvariant::gv!("as"), ["test"].iter()));
        let commit = commit_tree(&written, None, "Update", metadata, 1_700_000_000);
        let (first, _) = write_commit(&store, &commit).await.unwrap();
        let second = commit_tree(&reused, Some(first), "Update", VarDict::new(), 1_700_000_001);
        let (second, _) = write_commit(&store, &second).await.unwrap();
        store.put("refs/heads/test", Bytes::from(format!("{second}\n"))).await.unwrap();
        store.put("refs/heads/first", Bytes::from(format!("{first}\n"))).await.unwrap();

        ostree(dir.path(), &["fsck"]);
        // ostree lists a directory's files before its subdirectories.
        let listing = ostree(dir.path(), &["ls", "-R", "first"]);
        let entries: Vec<String> = listing
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                format!("{} {}", f[0], f[4..].join(" "))
            })
            .collect();
        assert_eq!(
            entries,
            [
                "d00755 /",
                "-00644 /top",
                "d00755 /a",
                "l00777 /a/link -> b/hello.txt",
                "d00755 /a/b",
                "-00644 /a/b/hello.txt",
                "d00755 /empty",
            ]
        );
        assert!(ostree(dir.path(), &["cat", "test", "/copy.txt"]) == "hello world\n");
        assert_eq!(ostree(dir.path(), &["rev-parse", "test^"]).trim(), first.to_hex());
    }

    #[test]
    fn refuses_bad_paths_and_clashes() {
        let mut tree = Tree::new();
        tree.add_file("a/b", b"x").unwrap();
        assert!(tree.add_file("a/b/c", b"x").is_err());
        assert!(tree.add_dir("a/b").is_err());
        assert!(tree.add_file("a", b"x").is_err());
        for bad in ["", "../x", "a//b", "/abs", "a/./b"] {
            assert!(tree.add_file(bad, b"x").is_err(), "{bad:?}");
        }
        assert!(tree.add_symlink("l", "").is_err());
    }
}
