//! Every store backend runs the same conformance suite.

mod support;

use bytes::Bytes;
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

/// A process killed mid-write leaves the local store's staging file (`KEY#N`), which listings
/// never show: it is an incomplete upload, removed when aborted.
#[tokio::test]
async fn a_killed_writers_staging_file_is_an_incomplete_upload_of_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/store", dir.path().display());
    let store = open_store(&url).unwrap();
    let mut upload = store.put_stream("acme/data/1/www").await.unwrap();
    upload
        .write(Bytes::from(vec![1; 3 * 1024 * 1024]))
        .await
        .unwrap();
    // As if killed: no completion, no abort, no drop.
    std::mem::forget(upload);
    let staging = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir.join("store/acme/data/1"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(staging(dir.path()).len(), 1, "{:?}", staging(dir.path()));
    assert!(store.list("acme").await.unwrap().is_empty());

    let found = store.incomplete_uploads("acme/data").await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "acme/data/1/www");
    assert!(found[0].initiated > jiff::Timestamp::now() - jiff::SignedDuration::from_mins(1));
    store.abort_incomplete_upload(&found[0]).await.unwrap();
    assert_eq!(staging(dir.path()), Vec::<String>::new());
    assert!(store.incomplete_uploads("acme").await.unwrap().is_empty());
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
