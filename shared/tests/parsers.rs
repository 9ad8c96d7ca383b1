//! Property tests for every parser of untrusted bytes: arbitrary and mutated input never panics,
//! and what the writers produce parses back to the same value.

use flatbucket::repo::commit::Commit;
use flatbucket::repo::dirs::{DirEntry, DirMeta, DirTree};
use flatbucket::repo::filez::{checksum_filez, encode_filez, FileHeader};
use flatbucket::repo::record::{FlatpakData, RefRecord};
use flatbucket::repo::summary::{apply_diff, parse_index, parse_summary, subsummary, summary_diff};
use flatbucket::repo::Checksum;
use proptest::prelude::*;

fn parse_everything(bytes: &[u8]) {
    let _ = DirTree::parse(bytes);
    let _ = DirMeta::parse(bytes);
    let _ = Commit::parse(bytes);
    let _ = checksum_filez(bytes);
    let _ = parse_summary(bytes);
    let _ = parse_index(bytes);
    let _ = apply_diff(b"some old summary bytes", bytes, 1 << 20);
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,12}".prop_filter("not . or ..", |n| n != "." && n != "..")
}

fn checksum() -> impl Strategy<Value = Checksum> {
    any::<[u8; 32]>().prop_map(Checksum::new)
}

fn dirtree() -> impl Strategy<Value = DirTree> {
    let files = prop::collection::btree_map(name(), checksum(), 0..8);
    let dirs = prop::collection::btree_map(name(), (checksum(), checksum()), 0..8);
    (files, dirs).prop_map(|(files, dirs)| DirTree {
        dirs: dirs
            .into_iter()
            .filter(|(n, _)| !files.contains_key(n))
            .map(|(name, (tree, meta))| DirEntry { name, tree, meta })
            .collect(),
        files: files.into_iter().collect(),
    })
}

fn record() -> impl Strategy<Value = RefRecord> {
    let ref_name = prop::sample::select(vec![
        "app/org.example.A/x86_64/stable",
        "app/org.example.B/aarch64/stable",
        "runtime/org.example.P/x86_64/23.08",
        "appstream2/x86_64",
        "screenshots/x86_64",
    ]);
    // Record strings come from parsed GVariants, which cannot hold NUL.
    (ref_name, checksum(), any::<u32>(), any::<u32>(), "[^\x00]{0,40}").prop_map(
        |(name, commit, size, ts, metadata)| RefRecord {
            name: name.to_owned(),
            commit,
            commit_size: u64::from(size),
            timestamp: u64::from(ts),
            flatpak: flatbucket::repo::refs::is_flatpak_ref(name).then(|| FlatpakData {
                installed_size: u64::from(size) * 7,
                download_size: u64::from(size) * 3,
                metadata,
                ..Default::default()
            }),
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_everything(&bytes);
    }

    #[test]
    fn mutated_valid_objects_never_panic_and_never_change_meaning(
        tree in dirtree(), at in any::<prop::sample::Index>(), xor in 1u8.., cut in any::<prop::sample::Index>()
    ) {
        let bytes = tree.to_bytes();
        prop_assert_eq!(&DirTree::parse(&bytes).unwrap(), &tree);
        let mut flipped = bytes.clone();
        let i = at.index(flipped.len());
        flipped[i] ^= xor;
        parse_everything(&flipped);
        if let Ok(parsed) = DirTree::parse(&flipped) {
            // Only a normal-form encoding is accepted, so any accepted mutation re-encodes exactly.
            prop_assert_eq!(parsed.to_bytes(), flipped);
        }
        parse_everything(&bytes[..cut.index(bytes.len())]);
    }

    #[test]
    fn filez_round_trips_and_mutations_are_caught(
        content in prop::collection::vec(any::<u8>(), 0..4096), at in any::<prop::sample::Index>(), xor in 1u8..
    ) {
        let header = FileHeader::regular(content.len() as u64, 0o644);
        let (sum, bytes) = encode_filez(&header, &content, 6);
        prop_assert_eq!(checksum_filez(&bytes[..]).unwrap().checksum, sum);
        let mut flipped = bytes.clone();
        let i = at.index(flipped.len());
        flipped[i] ^= xor;
        if let Ok(summary) = checksum_filez(&flipped[..]) {
            prop_assert_ne!(summary.checksum, sum, "a changed object must not keep its name");
        }
    }

    #[test]
    fn summary_diffs_reproduce_the_new_subsummary(
        old in prop::collection::vec(record(), 0..6), new in prop::collection::vec(record(), 0..6)
    ) {
        let (old, new) = (subsummary(&old, "", "x86_64"), subsummary(&new, "", "x86_64"));
        prop_assert_eq!(apply_diff(&old, &summary_diff(&old, &new), 1 << 24).unwrap(), new.clone());
        let parsed = parse_summary(&new).unwrap();
        prop_assert!(parsed.refs.windows(2).all(|w| w[0].0 < w[1].0));
    }
}

#[test]
fn a_one_ref_change_in_a_large_subsummary_gives_a_small_delta() {
    let records = |version: u64| -> Vec<RefRecord> {
        (0..2000)
            .map(|i| RefRecord {
                name: format!("app/org.example.App{i}/x86_64/stable"),
                commit: Checksum::of(format!("{i}-{}", if i == 1000 { version } else { 0 }).as_bytes()),
                commit_size: 500,
                timestamp: 1_700_000_000 + if i == 1000 { version } else { 0 },
                flatpak: Some(FlatpakData {
                    metadata: format!("[Application]\nname=org.example.App{i}\n"),
                    ..Default::default()
                }),
            })
            .collect()
    };
    let (old, new) = (subsummary(&records(1), "", "x86_64"), subsummary(&records(2), "", "x86_64"));
    let delta = summary_diff(&old, &new);
    assert_eq!(apply_diff(&old, &delta, 1 << 24).unwrap(), new);
    assert!(delta.len() < 512, "delta of {} bytes for a {}-byte subsummary", delta.len(), new.len());
}
