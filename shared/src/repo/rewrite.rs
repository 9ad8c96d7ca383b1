//! Commit rewriting, as `flatpak build-commit-from` does it for flat-manager: the same root tree
//! committed anew on the destination ref with fresh bindings, timestamp, parent, sizes and the
//! options of the build (end of life, rebase, token type, subsets).

use gvariant::gv;

use super::commit::Commit;
use super::gv::{variant, VarDict};
use super::record::TreeSizes;
use super::refs::{validate_app_id, FlatpakRef};
use super::{Checksum, FormatError};

/// Keys the rewrite sets itself; any value the source has for them is dropped.
const REPLACED_KEYS: &[&str] =
    &["xa.ref", "xa.from_commit", "ostree.collection-binding", "ostree.collection-refs-binding", "ostree.ref-binding"];

/// How to rewrite a commit.
#[derive(Debug, Clone, Default)]
pub struct RewriteOptions {
    /// The ref the new commit is published under.
    pub ref_name: String,
    /// The current tip of that ref in the destination, if any.
    pub parent: Option<Checksum>,
    /// Seconds since the epoch.
    pub timestamp: u64,
    pub collection_id: Option<String>,
    pub extra_collection_ids: Vec<String>,
    pub end_of_life: Option<String>,
    /// `(old id, new id)`: refs whose id is `old id` or starts with `old id.` move to `new id`.
    pub end_of_life_rebase: Option<(String, String)>,
    pub token_type: Option<i32>,
    pub subsets: Option<Vec<String>>,
    /// Verified installed and download sizes; they replace whatever the source claimed.
    pub sizes: Option<TreeSizes>,
}

impl RewriteOptions {
    /// GVariant strings cannot hold NUL: refuse such options before they reach a serializer.
    fn check_strings(&self) -> Result<(), FormatError> {
        let rebase = self.end_of_life_rebase.iter().flat_map(|(old, new)| [old, new]);
        let mut strings = std::iter::once(&self.ref_name)
            .chain(&self.collection_id)
            .chain(&self.extra_collection_ids)
            .chain(&self.end_of_life)
            .chain(rebase)
            .chain(self.subsets.iter().flatten());
        match strings.find(|s| s.contains('\0')) {
            Some(bad) => Err(FormatError::Malformed(format!("option value {bad:?} contains NUL"))),
            None => Ok(()),
        }
    }
}

/// Builds the rewritten commit. Its checksum (`Commit::checksum`) is its new object name.
pub fn rewrite_commit(
    source: &Commit,
    source_checksum: Checksum,
    options: &RewriteOptions,
) -> Result<Commit, FormatError> {
    options.check_strings()?;
    let flatpak_ref = options.ref_name.parse::<FlatpakRef>().ok();
    if flatpak_ref.is_some() && !source.metadata.contains("xa.metadata") {
        return Err(FormatError::Malformed(format!("commit {source_checksum} has no xa.metadata")));
    }
    let eol_rebase = match (&options.end_of_life_rebase, &flatpak_ref) {
        (Some((old, new)), Some(r)) => rebased_ref(r, old, new)?,
        _ => None,
    };
    let mut metadata = bindings(options);
    metadata.set("xa.from_commit", variant(gv!("s"), source_checksum.to_hex().as_str()));
    if let Some(sizes) = options.sizes {
        metadata.set("xa.installed-size", variant(gv!("t"), sizes.installed.to_be()));
        metadata.set("xa.download-size", variant(gv!("t"), sizes.download.to_be()));
    }
    let replaced = replaced_keys(options, eol_rebase.is_some());
    for (key, value) in source.metadata.iter() {
        if !REPLACED_KEYS.contains(&key) && !replaced.contains(&key) {
            metadata.set(key, value.to_owned());
        }
    }
    if let Some(reason) = options.end_of_life.as_deref().filter(|r| !r.is_empty()) {
        metadata.set("ostree.endoflife", variant(gv!("s"), reason));
    }
    if let Some(new_ref) = &eol_rebase {
        metadata.set("ostree.endoflife-rebase", variant(gv!("s"), new_ref.as_str()));
    }
    if let Some(token_type) = options.token_type {
        metadata.set("xa.token-type", variant(gv!("i"), token_type.to_le()));
    }
    if let Some(subsets) = &options.subsets {
        let subsets: Vec<&str> = subsets.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
        metadata.set("xa.subsets", variant(gv!("as"), subsets.iter()));
    }
    Ok(Commit {
        metadata,
        parent: options.parent,
        related: Vec::new(),
        subject: source.subject.clone(),
        body: source.body.clone(),
        timestamp: options.timestamp,
        root_tree: source.root_tree,
        root_meta: source.root_meta,
    })
}

/// `ostree.collection-binding`, `ostree.collection-refs-binding`, `ostree.ref-binding`, `xa.ref`.
fn bindings(options: &RewriteOptions) -> VarDict {
    let mut metadata = VarDict::new();
    let mut ids: Vec<&str> =
        options.collection_id.iter().chain(&options.extra_collection_ids).map(String::as_str).collect();
    let main_id = ids.first().copied().unwrap_or("");
    metadata.set("ostree.collection-binding", variant(gv!("s"), main_id));
    if !ids.is_empty() {
        ids.sort_unstable();
        ids.dedup();
        let pairs: Vec<(&str, &str)> = ids.iter().map(|id| (*id, options.ref_name.as_str())).collect();
        metadata.set("ostree.collection-refs-binding", variant(gv!("a(ss)"), pairs.iter()));
    }
    metadata.set("ostree.ref-binding", variant(gv!("as"), [options.ref_name.as_str()].iter()));
    metadata.set("xa.ref", variant(gv!("s"), options.ref_name.as_str()));
    metadata
}

/// Source keys that an option replaces.
fn replaced_keys(options: &RewriteOptions, rebasing: bool) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if options.sizes.is_some() {
        keys.extend(["xa.installed-size", "xa.download-size"]);
    }
    if options.end_of_life.as_deref().is_some_and(|r| !r.is_empty()) {
        keys.push("ostree.endoflife");
    }
    if rebasing {
        keys.push("ostree.endoflife-rebase");
    }
    if options.token_type.is_some() {
        keys.push("xa.token-type");
    }
    if options.subsets.is_some() {
        keys.push("xa.subsets");
    }
    keys
}

/// The ref `r` moves to when `old` is renamed `new` (extensions such as `old.Locale` follow).
fn rebased_ref(r: &FlatpakRef, old: &str, new: &str) -> Result<Option<String>, FormatError> {
    validate_app_id(new).map_err(|why| FormatError::InvalidRef(new.to_owned(), why))?;
    let suffix = match r.id.strip_prefix(old) {
        Some(rest) if rest.is_empty() || rest.starts_with('.') => rest,
        _ => return Ok(None),
    };
    let rebased = FlatpakRef { id: format!("{new}{suffix}"), ..r.clone() };
    Ok(Some(rebased.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REF: &str = "app/org.example.App/x86_64/stable";

    fn source() -> (Commit, Checksum) {
        let mut metadata = VarDict::new();
        metadata.set("xa.ref", variant(gv!("s"), "app/org.example.App/x86_64/master"));
        metadata.set("xa.metadata", variant(gv!("s"), "[Application]\nname=org.example.App\n"));
        metadata.set("xa.installed-size", variant(gv!("t"), 1u64.to_be()));
        metadata.set("xa.custom", variant(gv!("u"), 7u32));
        metadata.set("ostree.endoflife", variant(gv!("s"), "old reason"));
        let commit = Commit {
            metadata,
            parent: Some(Checksum::of(b"old parent")),
            related: Vec::new(),
            subject: "Export org.example.App".into(),
            body: "body".into(),
            timestamp: 5,
            root_tree: Checksum::of(b"tree"),
            root_meta: Checksum::of(b"meta"),
        };
        let sum = commit.checksum();
        (commit, sum)
    }

    #[test]
    fn binds_the_ref_and_keeps_the_tree_and_other_keys() {
        let (src, sum) = source();
        let options = RewriteOptions {
            ref_name: REF.into(),
            timestamp: 1000,
            collection_id: Some("org.example.Repo".into()),
            sizes: Some(TreeSizes { installed: 4096, download: 900 }),
            ..Default::default()
        };
        let out = rewrite_commit(&src, sum, &options).unwrap();
        let m = &out.metadata;
        assert_eq!(m.get_str("xa.ref"), Some(REF));
        assert_eq!(m.get_str_list("ostree.ref-binding").unwrap(), [REF]);
        assert_eq!(m.get_str("ostree.collection-binding"), Some("org.example.Repo"));
        assert_eq!(m.get_str("xa.from_commit"), Some(sum.to_hex().as_str()));
        assert_eq!(m.get_be_u64("xa.installed-size"), Some(4096));
        assert_eq!(m.get_be_u64("xa.download-size"), Some(900));
        assert_eq!(m.get_str("ostree.endoflife"), Some("old reason"));
        assert!(m.get("xa.custom").is_some());
        assert_eq!(
            (out.root_tree, out.root_meta, out.timestamp, out.parent),
            (src.root_tree, src.root_meta, 1000, None)
        );
        let bytes = out.to_bytes();
        assert_eq!(Commit::parse(&bytes).unwrap().checksum(), Checksum::of(&bytes));
    }

    #[test]
    fn applies_end_of_life_rebase_token_type_and_subsets() {
        let (src, sum) = source();
        let options = RewriteOptions {
            ref_name: "runtime/org.example.App.Locale/x86_64/stable".into(),
            parent: Some(Checksum::of(b"tip")),
            end_of_life: Some("renamed".into()),
            end_of_life_rebase: Some(("org.example.App".into(), "org.example.NewApp".into())),
            token_type: Some(1),
            subsets: Some(vec!["verified".into(), String::new()]),
            ..Default::default()
        };
        let out = rewrite_commit(&src, sum, &options).unwrap();
        let m = &out.metadata;
        assert_eq!(m.get_str("ostree.endoflife"), Some("renamed"));
        assert_eq!(m.get_str("ostree.endoflife-rebase"), Some("runtime/org.example.NewApp.Locale/x86_64/stable"));
        assert_eq!(m.get_le_i32("xa.token-type"), Some(1));
        assert_eq!(m.get_str_list("xa.subsets").unwrap(), ["verified"]);
        assert_eq!(m.get_str("ostree.collection-binding"), Some(""));
        assert!(m.get("ostree.collection-refs-binding").is_none());
        assert_eq!(out.parent, options.parent);
    }

    #[test]
    fn refuses_app_commits_without_metadata_and_bad_rebase_ids() {
        let (mut src, sum) = source();
        let rebase = RewriteOptions {
            ref_name: REF.into(),
            end_of_life_rebase: Some(("org.example.App".into(), "not-an-id".into())),
            ..Default::default()
        };
        assert!(rewrite_commit(&src, sum, &rebase).is_err());
        let nul = RewriteOptions { ref_name: REF.into(), end_of_life: Some("a\0b".into()), ..Default::default() };
        assert!(rewrite_commit(&src, sum, &nul).is_err());
        src.metadata.remove("xa.metadata");
        assert!(rewrite_commit(&src, sum, &RewriteOptions { ref_name: REF.into(), ..Default::default() }).is_err());
    }
}
