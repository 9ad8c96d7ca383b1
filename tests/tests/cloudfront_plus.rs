//! Static-delta keys contain `+`, which S3 reads as a space in a URL path. The CloudFront function
//! in template.yaml encodes it; this runs that very function under Node.js and fetches what it
//! asks for from the bucket (moto), and checks paths without `+` pass through unchanged.
#![cfg(feature = "aws")]

use std::process::Command;

use bytes::Bytes;
use flatbucket::store::{s3_client, ObjectStore, PutPolicy, S3Store};
use flatbucket_tests::aws::{endpoint, resources};
use flatbucket_tests::tools::run;

/// The `FunctionCode` block of the template's `PlusInKeys` function.
fn function_code() -> String {
    let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    let start = template.find("\n  PlusInKeys:").expect("PlusInKeys in template.yaml");
    let mut lines = template[start..].lines().skip_while(|line| !line.trim_start().starts_with("FunctionCode: |"));
    let header = lines.next().expect("a FunctionCode block");
    let indent = header.len() - header.trim_start().len();
    lines
        .take_while(|line| line.trim().is_empty() || line.len() - line.trim_start().len() > indent)
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The URIs the function hands to the origin for `uris`.
fn viewer_request(uris: &[&str]) -> Vec<String> {
    let script = format!(
        "{}\nconst uris = JSON.parse(process.argv[1]);\n\
         console.log(JSON.stringify(uris.map(uri => handler({{request: {{uri, headers: {{}}}}}}).uri)));\n",
        function_code()
    );
    let out = run(Command::new("node").arg("-e").arg(script).arg(serde_json::to_string(uris).unwrap())).unwrap();
    serde_json::from_str(out.trim()).unwrap()
}

#[tokio::test]
async fn the_cloudfront_function_makes_plus_keys_reachable() {
    let aws = resources().await.expect("moto resources");
    let store = S3Store::new(s3_client(None).await, aws.public.clone(), "stable".into(), PutPolicy::PublicRepository);
    let delta = "deltas/H2/Sr9+k+UNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ/superblock";
    let index = "delta-indexes/ab/c+d.index";
    store.put(delta, Bytes::from_static(b"superblock")).await.unwrap();
    store.put(index, Bytes::from_static(b"index")).await.unwrap();
    store.put("summary.idx", Bytes::from_static(b"idx")).await.unwrap();

    let uris = viewer_request(&[&format!("/{delta}"), &format!("/{index}"), "/summary.idx"]);
    assert_eq!(uris[0], "/deltas/H2/Sr9%2Bk%2BUNVKmqW9vMVOgCYYTWkMqn36pgFxFmOPddQ/superblock");
    assert_eq!(uris[1], "/delta-indexes/ab/c%2Bd.index");
    assert_eq!(uris[2], "/summary.idx", "paths without + are left alone");

    // CloudFront prepends the origin path (`/<RepoName>`) and asks S3 for the URI as given.
    for (uri, body) in uris.iter().zip(["superblock", "index", "idx"]) {
        let url = format!("{}/{}/stable{uri}", endpoint(), aws.public);
        let fetched = run(Command::new("curl").args(["-sSf", "--path-as-is", &url])).unwrap();
        assert_eq!(fetched, body, "{url}");
    }
}
