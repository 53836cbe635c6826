//! ≥ 100 MB of stdout through SSH with bounded memory (its own test binary, so that the
//! process's peak memory is this test's alone).

mod support {
    pub mod conformance;
    pub mod sshd;
}

use std::time::Duration;

use drp_provision::{SshOptions, SshTarget, SshTransport, Transport};
use sha2::{Digest, Sha256};
use support::sshd::Sshd;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_of_stdout_streamed_with_bounded_memory() {
    let server = Sshd::start();
    let target: SshTarget = server.target().parse().unwrap();
    let t = SshTransport::connect(
        SshOptions::from_target(&target)
            .with_identity_file(server.client_key())
            .with_known_hosts(server.known_hosts())
            .with_connect_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let before = peak_rss_kib();

    // `seq -w` gives a deterministic, non-periodic stream: 13 M lines of 9 bytes.
    const LINES: u64 = 13_000_000;
    let mut child = t.spawn(&format!("seq -w 1 {LINES}")).await.unwrap();
    let (n, hash) = support::conformance::count_and_hash(&mut child.stdout)
        .await
        .unwrap();
    assert!(child.wait().await.unwrap().success());

    let mut expected = Sha256::new();
    let mut line = Vec::with_capacity(16);
    for i in 1..=LINES {
        line.clear();
        use std::io::Write;
        writeln!(line, "{i:08}").unwrap();
        expected.update(&line);
    }
    assert_eq!(n, LINES * 9);
    assert_eq!(hash, hex::encode(expected.finalize()));

    let after = peak_rss_kib();
    eprintln!("peak RSS: {before} KiB before, {after} KiB after streaming {n} bytes");
    assert!(
        after < before + 48 * 1024,
        "memory grew from {before} KiB to {after} KiB while streaming {n} bytes"
    );
}
