//! LocalTransport against the shared conformance suite.

mod support {
    pub mod conformance;
}

use drp_provision::{LocalTransport, Transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_transport_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let t = LocalTransport::new();
    assert_eq!(t.to_string(), "local");
    support::conformance::conformance(&t, dir.path().to_str().unwrap()).await;
}

#[tokio::test]
async fn local_run_reports_the_host() {
    let err = LocalTransport::new().run("exit 2").await.unwrap_err();
    assert!(err.to_string().starts_with("local: command"), "{err}");
}
