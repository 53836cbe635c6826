//! LocalTransport against the shared conformance suite, also in a directory of its own
//! (`LocalTransport::in_dir`).

mod support {
    pub mod conformance;
}

use drp_provision::{LocalTransport, Transport};
use tokio::io::AsyncReadExt;

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

/// A transport in its own directory: the whole suite with relative paths only, so every
/// command, upload and download must resolve against that directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_transport_in_dir_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let t = LocalTransport::in_dir(dir.path());
    assert_eq!(t.to_string(), format!("local:{}", dir.path().display()));
    assert_eq!(t.dir(), Some(dir.path()));
    support::conformance::conformance(&t, ".").await;
    // It all happened in the directory, none of it in the process's.
    assert!(dir.path().join("blob.bin").exists());
    assert!(!std::path::Path::new("blob.bin").exists());
}

#[tokio::test]
async fn local_hosts_in_dirs_are_separate() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (ta, tb) = (
        LocalTransport::in_dir(a.path()),
        LocalTransport::in_dir(b.path()),
    );
    assert_eq!(
        ta.run("pwd").await.unwrap().stdout_str().trim(),
        a.path().to_str().unwrap()
    );
    ta.upload("conf/app.toml", Box::new(&b"a"[..]), 0o600)
        .await
        .unwrap_err(); // conf/ does not exist in a: relative to a, not to the process
    ta.run("mkdir conf").await.unwrap();
    ta.upload("conf/app.toml", Box::new(&b"a"[..]), 0o600)
        .await
        .unwrap();
    tb.upload("app.toml", Box::new(&b"b"[..]), 0o600)
        .await
        .unwrap();
    assert_eq!(std::fs::read(a.path().join("conf/app.toml")).unwrap(), b"a");
    assert_eq!(std::fs::read(b.path().join("app.toml")).unwrap(), b"b");
    let mut text = String::new();
    tb.download("app.toml")
        .await
        .unwrap()
        .read_to_string(&mut text)
        .await
        .unwrap();
    assert_eq!(text, "b");
    // Absolute paths stay absolute.
    let abs = a.path().join("conf/app.toml");
    assert!(tb.download(abs.to_str().unwrap()).await.is_ok());
    // A missing directory is named in the error, with the host.
    let gone = LocalTransport::in_dir(a.path().join("missing"));
    let err = gone.run("true").await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{gone}: ")) && err.contains("missing"),
        "{err}"
    );
}
