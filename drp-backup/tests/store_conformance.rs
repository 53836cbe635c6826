//! Every store backend runs the same conformance suite.

mod support;

use drp_backup::store::conformance;
use drp_backup::{open_store, open_store_with};
use support::s3::S3Server;

#[tokio::test]
async fn memory_store_conforms() {
    let store = open_store("memory://").unwrap();
    conformance::run(store.as_ref()).await;
}

#[tokio::test]
async fn local_filesystem_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/store", dir.path().display());
    let store = open_store(&url).unwrap();
    conformance::run(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_conforms() {
    let server = S3Server::start();
    let env: Vec<(String, String)> = server
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let store = open_store_with(&server.url("conformance"), env).unwrap();
    conformance::run(store.as_ref()).await;
}

#[test]
fn store_urls_that_cannot_work_are_refused_with_the_reason() {
    for (url, expected) in [
        (
            "/var/backups",
            "expected file:///path, s3://bucket/prefix or memory://",
        ),
        ("ftp://host/x", "unsupported scheme \"ftp\""),
        ("s3:///prefix", "no bucket name"),
    ] {
        let err = open_store(url).unwrap_err().to_string();
        assert!(err.contains(expected), "{url}: {err}");
    }
    let err = open_store_with("s3://bucket/x", [("aws_endpoint_typo", "x")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown S3 option \"aws_endpoint_typo\""),
        "{err}"
    );
}
