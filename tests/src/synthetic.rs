//! Small Flatpak commits made with flatbucket's own writer: fast fixtures for API tests that need
//! objects to upload but no `flatpak` run. (Suites that prove compatibility use [`crate::fixture`].)

use std::collections::BTreeMap;

use flatbucket::repo::commit::Commit;
use flatbucket::repo::dirs::{DirEntry, DirMeta, DirTree};
use flatbucket::repo::filez::{encode_filez, FileHeader};
use flatbucket::repo::gv::{variant, VarDict};
use flatbucket::repo::{Checksum, ObjectName, ObjectType};
use gvariant::gv;

/// A commit and every object of its closure, serialized.
pub struct SyntheticCommit {
    pub commit: Checksum,
    /// Every object, the commit included, in upload order (content, then metadata).
    pub objects: Vec<(ObjectName, Vec<u8>)>,
}

impl SyntheticCommit {
    /// An app `app_id` whose `files/` holds `files` (path → content), root-owned 0644.
    pub fn app(app_id: &str, files: &[(&str, &[u8])]) -> Self {
        let mut objects = BTreeMap::new();
        let metadata = format!("[Application]\nname={app_id}\nruntime=org.example.Platform/x86_64/stable\n");
        let meta = add(&mut objects, ObjectType::DirMeta, DirMeta::flatpak_default().to_bytes());
        let mut tree = Tree::default();
        for (path, content) in files {
            tree.insert(&format!("files/{path}"), content);
        }
        tree.insert("metadata", metadata.as_bytes());
        let root = tree.write(&mut objects, meta);
        let mut dict = VarDict::new();
        dict.set("xa.metadata", variant(gv!("s"), metadata.as_str()));
        dict.set("xa.ref", variant(gv!("s"), format!("app/{app_id}/x86_64/master").as_str()));
        let commit = Commit {
            metadata: dict,
            parent: None,
            related: Vec::new(),
            subject: format!("Export {app_id}"),
            body: String::new(),
            timestamp: 1_700_000_000,
            root_tree: root,
            root_meta: meta,
        };
        let commit = add(&mut objects, ObjectType::Commit, commit.to_bytes());
        let mut objects: Vec<(ObjectName, Vec<u8>)> = objects.into_iter().collect();
        objects.sort_by_key(|(name, _)| (name.kind != ObjectType::File, name.kind == ObjectType::Commit));
        Self { commit, objects }
    }

    /// The bytes of one object.
    pub fn object(&self, name: &ObjectName) -> &[u8] {
        &self.objects.iter().find(|(n, _)| n == name).expect("object of this commit").1
    }

    /// Every object name as the upload API spells it.
    pub fn names(&self) -> Vec<String> {
        self.objects.iter().map(|(name, _)| name.to_string()).collect()
    }
}

fn add(objects: &mut BTreeMap<ObjectName, Vec<u8>>, kind: ObjectType, bytes: Vec<u8>) -> Checksum {
    let checksum = Checksum::of(&bytes);
    objects.insert(ObjectName::new(checksum, kind), bytes);
    checksum
}

/// A directory being assembled: files and subdirectories by name.
#[derive(Default)]
struct Tree {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeMap<String, Tree>,
}

impl Tree {
    fn insert(&mut self, path: &str, content: &[u8]) {
        match path.split_once('/') {
            Some((dir, rest)) => self.dirs.entry(dir.to_owned()).or_default().insert(rest, content),
            None => {
                self.files.insert(path.to_owned(), content.to_vec());
            }
        }
    }

    /// Writes the tree's objects and returns its dirtree checksum.
    fn write(&self, objects: &mut BTreeMap<ObjectName, Vec<u8>>, meta: Checksum) -> Checksum {
        let mut tree = DirTree::default();
        for (name, content) in &self.files {
            let (checksum, filez) = encode_filez(&FileHeader::regular(content.len() as u64, 0o644), content, 6);
            objects.insert(ObjectName::new(checksum, ObjectType::File), filez);
            tree.files.push((name.clone(), checksum));
        }
        for (name, dir) in &self.dirs {
            let sub = dir.write(objects, meta);
            tree.dirs.push(DirEntry { name: name.clone(), tree: sub, meta });
        }
        tree.sort();
        add(objects, ObjectType::DirTree, tree.to_bytes())
    }
}
