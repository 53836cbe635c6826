//! SshTransport against a real OpenSSH sshd on 127.0.0.1.

mod support {
    pub mod conformance;
    pub mod sshd;
}

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use drp_provision::{
    HostKeyChecking, PassphraseSource, SshOptions, SshTarget, SshTransport, Transport,
    TransportError,
};
use support::sshd::{self, Sshd};

fn options(server: &Sshd) -> SshOptions {
    let target: SshTarget = server.target().parse().unwrap();
    SshOptions::from_target(&target)
        .with_identity_file(server.client_key())
        .with_known_hosts(server.known_hosts())
        .with_connect_timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_transport_conformance() {
    let server = Sshd::start();
    let t = SshTransport::connect(options(&server)).await.unwrap();
    assert_eq!(
        t.to_string(),
        format!("ssh://{}@127.0.0.1:{}", server.user(), server.port())
    );
    let dir = tempfile::tempdir().unwrap();
    support::conformance::conformance(&t, dir.path().to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_share_one_connection() {
    let server = Sshd::start();
    let t = SshTransport::new(options(&server)); // connects on first use
    // Each command checks in, then waits (up to 20 s) until all 8 have: run one after
    // another, the first would give up and print nothing.
    let barrier = tempfile::tempdir().unwrap();
    let b = barrier.path().display().to_string();
    let runs = (0..8).map(|i| {
        let t = &t;
        let script = format!(
            "touch {b}/{i}; for n in $(seq 1 200); do [ $(ls {b} | wc -l) -ge 8 ] && break; \
             sleep 0.1; done; [ $(ls {b} | wc -l) -ge 8 ] && echo {i}"
        );
        async move { t.run(&script).await.unwrap().stdout_str() }
    });
    let outputs = futures_join_all(runs).await;
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(
            out,
            &format!("{i}\n"),
            "command {i} did not run alongside the others"
        );
    }
    let log = server.log();
    assert_eq!(
        log.matches("Accepted publickey").count(),
        1,
        "one connection expected:\n{log}"
    );
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.collect();
    let mut out = Vec::new();
    // Poll them all concurrently with a tokio JoinSet-free approach: join pairwise.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    for r in results {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test]
async fn unknown_host_key_is_refused_with_its_fingerprint() {
    let server = Sshd::start();
    let empty = server.dir().join("empty_known_hosts");
    std::fs::write(&empty, "# nothing here\n").unwrap();
    let err = SshTransport::connect(options(&server).with_known_hosts(&empty))
        .await
        .unwrap_err();
    let fingerprint = server.host_key_fingerprint();
    match &err {
        TransportError::HostKeyUnknown { fingerprint: f, .. } => assert_eq!(f, &fingerprint),
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&fingerprint), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", server.port())),
        "{message}"
    );
    assert!(
        message.contains(&format!("ssh-keyscan -p {}", server.port())),
        "{message}"
    );
    // A known_hosts file that does not exist is the same.
    let err = SshTransport::connect(options(&server).with_known_hosts(server.dir().join("none")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn changed_host_key_is_refused() {
    let server = Sshd::start();
    let other = server.dir().join("other_hostkey");
    sshd::keygen(&other, "");
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let known = server.dir().join("changed_known_hosts");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {}", server.port(), other_pub),
    )
    .unwrap();
    let err = SshTransport::connect(options(&server).with_known_hosts(&known))
        .await
        .unwrap_err();
    match &err {
        TransportError::HostKeyMismatch { fingerprint, .. } => {
            assert_eq!(fingerprint, &server.host_key_fingerprint())
        }
        other => panic!("expected HostKeyMismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("CHANGED") && message.contains(&server.host_key_fingerprint()),
        "{message}"
    );
    // accept-new does not accept a changed key either.
    let err = SshTransport::connect(
        options(&server)
            .with_known_hosts(&known)
            .with_host_key_checking(HostKeyChecking::AcceptNew),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, TransportError::HostKeyMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn accept_new_records_the_key_and_off_skips_checking() {
    let server = Sshd::start();
    let known = server.dir().join("sub").join("known_hosts");
    let t = SshTransport::connect(
        options(&server)
            .with_known_hosts(&known)
            .with_host_key_checking(HostKeyChecking::AcceptNew),
    )
    .await
    .unwrap();
    assert_eq!(t.run("echo ok").await.unwrap().stdout_str(), "ok\n");
    let recorded = std::fs::read_to_string(&known).unwrap();
    let host_key = server.host_public_key();
    let key_part: Vec<&str> = host_key.split_whitespace().take(2).collect();
    assert_eq!(
        recorded.trim(),
        format!("[127.0.0.1]:{} {}", server.port(), key_part.join(" "))
    );
    // Now strict checking accepts it; OpenSSH's ssh accepts the file too.
    SshTransport::connect(options(&server).with_known_hosts(&known))
        .await
        .unwrap();
    let status = std::process::Command::new("ssh")
        .args(server.ssh_args().iter().map(|a| {
            if a.starts_with("UserKnownHostsFile=") {
                format!("UserKnownHostsFile={}", known.display())
            } else {
                a.clone()
            }
        }))
        .arg("true")
        .status()
        .unwrap();
    assert!(status.success());

    let t = SshTransport::connect(
        options(&server)
            .with_known_hosts(server.dir().join("nothing"))
            .with_host_key_checking(HostKeyChecking::Off),
    )
    .await
    .unwrap();
    assert_eq!(t.run("echo ok").await.unwrap().stdout_str(), "ok\n");
    assert!(!server.dir().join("nothing").exists());
}

#[tokio::test]
async fn closed_port_is_connection_refused() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = SshTransport::connect(SshOptions::new("127.0.0.1").with_port(port))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::ConnectionRefused { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test]
async fn unresolvable_host_is_unreachable() {
    let err = SshTransport::connect(SshOptions::new("no-such-host.invalid").with_port(22))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
}

#[tokio::test]
async fn silent_server_times_out_within_the_connect_timeout() {
    // Accepts TCP connections but never speaks SSH.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let _acceptor = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let err = SshTransport::connect(
        SshOptions::new("127.0.0.1")
            .with_port(port)
            .with_connect_timeout(Duration::from_millis(1500)),
    )
    .await
    .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, TransportError::TimedOut { .. }), "{err:?}");
    assert!(
        elapsed >= Duration::from_millis(1400),
        "gave up too early: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_millis(3000), "took {elapsed:?}");
    let message = err.to_string();
    assert!(
        message.contains("timed out after 1.5s") && message.contains(&format!(":{port}")),
        "{message}"
    );
}

#[tokio::test]
async fn authentication_failure_names_user_and_key() {
    let server = Sshd::start();
    let stranger = server.dir().join("stranger");
    sshd::keygen(&stranger, "");
    let err = SshTransport::connect(options(&server).with_identity_file(&stranger))
        .await
        .unwrap_err();
    match &err {
        TransportError::AuthenticationFailed { user, method, .. } => {
            assert_eq!(user, server.user());
            assert!(method.contains(&stranger.display().to_string()), "{method}");
        }
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("\"{}\"", server.user())) && message.contains("stranger"),
        "{message}"
    );
    // A missing key file.
    let err = SshTransport::connect(options(&server).with_identity_file(server.dir().join("nope")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::AuthenticationFailed { .. }),
        "{err:?}"
    );
}

const PASSPHRASE: &str = "correct horse battery staple";

fn protected_key(server: &Sshd) -> std::path::PathBuf {
    let key = server.dir().join("protected");
    sshd::keygen(&key, PASSPHRASE);
    server.authorize(&key.with_extension("pub"));
    key
}

#[tokio::test]
async fn passphrase_protected_key_from_env() {
    // Tests cannot set environment variables without `unsafe`; HOME is always set, so the key
    // is protected with HOME's value and the passphrase is read from HOME.
    let home = std::env::var("HOME").expect("HOME is set");
    let server = Sshd::start();
    let key = server.dir().join("protected-by-home");
    sshd::keygen(&key, &home);
    server.authorize(&key.with_extension("pub"));
    let t = SshTransport::connect(
        options(&server)
            .with_identity_file(&key)
            .with_passphrase(PassphraseSource::Env("HOME".into())),
    )
    .await
    .unwrap();
    assert_eq!(t.run("echo in").await.unwrap().stdout_str(), "in\n");
}

#[tokio::test]
async fn passphrase_from_file_and_wrong_or_missing_passphrases() {
    let server = Sshd::start();
    let key = protected_key(&server);
    let file = server.dir().join("passphrase");
    std::fs::write(&file, format!("{PASSPHRASE}\n")).unwrap();
    let t = SshTransport::connect(
        options(&server)
            .with_identity_file(&key)
            .with_passphrase(PassphraseSource::File(file.clone())),
    )
    .await
    .unwrap();
    assert_eq!(t.run("echo in").await.unwrap().stdout_str(), "in\n");

    std::fs::write(&file, "wrong passphrase\n").unwrap();
    let err = SshTransport::connect(
        options(&server)
            .with_identity_file(&key)
            .with_passphrase(PassphraseSource::File(file)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, TransportError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("wrong passphrase\n"), "{err}");
    assert!(err.to_string().contains("passphrase"), "{err}");

    let err = SshTransport::connect(options(&server).with_identity_file(&key))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::AuthenticationFailed { .. }),
        "{err:?}"
    );

    let err = SshTransport::connect(
        options(&server)
            .with_identity_file(&key)
            .with_passphrase(PassphraseSource::Env("DRP_TEST_UNSET_VARIABLE_9F2".into())),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TransportError::Config { .. }), "{err:?}");
    assert!(
        err.to_string().contains("DRP_TEST_UNSET_VARIABLE_9F2"),
        "{err}"
    );
}

#[tokio::test]
async fn broken_connection_is_an_error_not_an_end_of_file() {
    let server = Sshd::start();
    let t = SshTransport::connect(options(&server)).await.unwrap();
    let mut child = t
        .spawn("head -c 1000000 /dev/zero; kill -KILL $PPID; sleep 5")
        .await
        .unwrap();
    let result = support::conformance::count_and_hash(&mut child.stdout).await;
    // The sshd session process died: the stream must not end cleanly.
    assert!(result.is_err(), "{result:?}");
    assert!(child.wait().await.is_err());
    // The transport reconnects on the next use.
    assert_eq!(t.run("echo again").await.unwrap().stdout_str(), "again\n");
}

/// drp's copy of libssh2 en/decrypts the middle of each packet in one call (vendor/README.md):
/// every cipher and MAC family it can negotiate must still move data byte-exact in both
/// directions, whatever the packet sizes. `cat` echoes stdin to stdout, so one command
/// exercises both the encrypting (upload) and the decrypting (download) side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cipher_moves_data_byte_exact_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // Sizes around packet and block boundaries, and a large one for many full packets.
    let data: Vec<u8> = (0..3_000_017u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut sizes = vec![0, 1, 15, 16, 17, 47, 48, 49, 32_768, 32_769, 100_003];
    sizes.push(data.len());
    for config in [
        "Ciphers aes128-gcm@openssh.com",
        "Ciphers aes256-gcm@openssh.com",
        "Ciphers aes128-ctr\nMACs hmac-sha2-256",
        "Ciphers aes256-ctr\nMACs hmac-sha2-512-etm@openssh.com",
        "Ciphers aes192-ctr\nMACs hmac-sha2-256-etm@openssh.com",
        "Ciphers chacha20-poly1305@openssh.com",
    ] {
        // The server offers only this cipher (and MAC): connecting means it was negotiated.
        let server = Sshd::start_with(config);
        let t = SshTransport::connect(options(&server))
            .await
            .unwrap_or_else(|e| panic!("{config:?}: {e}"));
        for &size in &sizes {
            let mut child = t.spawn("cat").await.unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let input = &data[..size];
            let write = async {
                stdin.write_all(input).await.unwrap();
                stdin.shutdown().await.unwrap();
            };
            let mut echoed = Vec::with_capacity(size);
            let read = child.stdout.read_to_end(&mut echoed);
            let ((), read) = tokio::join!(write, read);
            read.unwrap();
            assert!(child.wait().await.unwrap().success());
            assert!(
                echoed == input,
                "{config:?}: {size} bytes came back as {} different bytes",
                echoed.len()
            );
        }
    }
}
