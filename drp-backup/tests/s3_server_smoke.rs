//! Proves the S3 test harness: a real moto server, reached by object_store exactly as drp
//! reaches S3 (`s3://` URL plus `AWS_*` settings), round-trips small and multipart objects.

mod support;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};

use support::s3::S3Server;

/// Builds the client the way `AmazonS3Builder::from_env().with_url(..)` would, but from
/// `S3Server::env()` instead of the process environment (tests must not mutate it).
fn store_for(server: &S3Server) -> AmazonS3 {
    let mut builder = AmazonS3Builder::new();
    for (name, value) in server.env() {
        let key = name
            .to_ascii_lowercase()
            .parse()
            .unwrap_or_else(|e| panic!("{name} is not an object_store S3 setting: {e}"));
        builder = builder.with_config(key, value);
    }
    builder
        .with_url(server.url("smoke"))
        .build()
        .expect("building the S3 client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_and_multipart_round_trip() {
    let server = S3Server::start();
    let store = store_for(&server);

    // Small object: one PUT.
    let small = Path::from("smoke/small.txt");
    let small_data = b"hello from drp".to_vec();
    store
        .put(&small, small_data.clone().into())
        .await
        .expect("put small object");
    let got = store
        .get(&small)
        .await
        .expect("get small object")
        .bytes()
        .await
        .expect("read small object");
    assert_eq!(got.as_ref(), small_data.as_slice());

    // 12 MiB through WriteMultipart: 5 MiB parts, so three parts (5 + 5 + 2).
    let big = Path::from("smoke/big.bin");
    let big_data: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let upload = store.put_multipart(&big).await.expect("start multipart");
    let mut writer = WriteMultipart::new(upload);
    for chunk in big_data.chunks(1024 * 1024 + 7) {
        writer.write(chunk);
    }
    writer.finish().await.expect("complete multipart upload");

    let meta = store.head(&big).await.expect("head multipart object");
    assert_eq!(meta.size, big_data.len() as u64);
    let got = store
        .get(&big)
        .await
        .expect("get multipart object")
        .bytes()
        .await
        .expect("read multipart object");
    assert!(
        got.as_ref() == big_data.as_slice(),
        "multipart object differs"
    );
}

#[test]
fn url_and_env_describe_the_server() {
    let server = S3Server::start();
    assert_eq!(server.url("a/b"), format!("s3://{}/a/b", server.bucket));
    let env = server.env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("AWS_ENDPOINT"), Some(server.endpoint.as_str()));
    assert_eq!(get("AWS_ALLOW_HTTP"), Some("true"));
    assert!(server.endpoint.starts_with("http://127.0.0.1:"));
}
