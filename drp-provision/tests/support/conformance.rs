//! The behaviour every `Transport` must have (object_store-style shared suite): run it with
//! `conformance(&transport, scratch_dir).await`, where `scratch_dir` is an empty directory
//! on the transport's host.
#![allow(dead_code)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use drp_provision::{ExitStatus, Transport, TransportError};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

/// `len` deterministic pseudo-random bytes (xorshift64), produced on the fly; fails with
/// an I/O error after `fail_after` bytes if set.
#[derive(Debug)]
pub struct Pattern {
    remaining: u64,
    state: u64,
    produced: u64,
    fail_after: Option<u64>,
}

impl Pattern {
    pub fn new(len: u64, seed: u64) -> Self {
        Pattern {
            remaining: len,
            state: seed | 1,
            produced: 0,
            fail_after: None,
        }
    }

    pub fn failing_after(mut self, n: u64) -> Self {
        self.fail_after = Some(n);
        self
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }
}

impl AsyncRead for Pattern {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.fail_after.is_some_and(|limit| self.produced >= limit) {
            return Poll::Ready(Err(io::Error::other("the source broke (test)")));
        }
        let n = (buf.remaining() as u64).min(self.remaining).min(64 * 1024) as usize;
        let n = n - n % 8;
        let n = if n == 0 {
            (buf.remaining() as u64).min(self.remaining) as usize
        } else {
            n
        };
        let mut chunk = Vec::with_capacity(n + 8);
        while chunk.len() < n {
            let v = self.next();
            chunk.extend_from_slice(&v.to_le_bytes());
        }
        chunk.truncate(n);
        buf.put_slice(&chunk);
        self.remaining -= n as u64;
        self.produced += n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Byte count and SHA-256 (hex) of a stream, read in 64 KiB pieces.
pub async fn count_and_hash(mut reader: impl AsyncRead + Unpin) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok((total, hex::encode(hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

pub async fn pattern_hash(len: u64, seed: u64) -> String {
    count_and_hash(Pattern::new(len, seed)).await.unwrap().1
}

async fn exists(t: &dyn Transport, path: &str) -> bool {
    let out = t
        .run(&format!(
            "if test -e '{path}'; then echo yes; else echo no; fi"
        ))
        .await
        .unwrap();
    out.stdout_str().trim() == "yes"
}

/// Runs every check. `dir` must be an empty, writable directory on the host (no quotes in it).
pub async fn conformance(t: &dyn Transport, dir: &str) {
    let host = t.to_string();
    assert!(!host.is_empty());

    // run: stdout and stderr are separate and complete.
    let out = t
        .run("echo hello; echo to-stderr >&2; printf 'no newline'")
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "hello\nno newline");
    assert_eq!(out.stderr, b"to-stderr\n");
    assert!(out.status.success());

    // Shell semantics: pipes, variables, quoting.
    let out = t.run("x='a b'; echo \"$x\" | tr a-z A-Z").await.unwrap();
    assert_eq!(out.stdout_str(), "A B\n");

    // Non-zero exit: CommandFailed with the code and the tail of stderr, naming the host.
    let err = t
        .run("echo first-line >&2; i=0; while [ $i -lt 2000 ]; do echo noise $i >&2; i=$((i+1)); done; echo 'it broke' >&2; exit 3")
        .await
        .unwrap_err();
    match &err {
        TransportError::CommandFailed {
            status,
            stderr_tail,
            host: h,
            ..
        } => {
            assert_eq!(status, &ExitStatus::Code(3));
            assert!(stderr_tail.ends_with("it broke\n"), "{stderr_tail:?}");
            assert!(stderr_tail.len() <= 4096, "stderr tail is bounded");
            assert_eq!(h, &host);
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }
    assert_eq!(err.exit_code(), Some(3));
    let message = err.to_string();
    assert!(
        message.contains(&host) && message.contains("exit code 3") && message.contains("it broke"),
        "{message}"
    );

    // spawn: exit codes and signals through wait().
    let mut child = t.spawn("exit 7").await.unwrap();
    assert_eq!(child.wait().await.unwrap(), ExitStatus::Code(7));
    assert_eq!(
        child.wait().await.unwrap(),
        ExitStatus::Code(7),
        "wait twice"
    );
    let mut child = t.spawn("kill -TERM $$").await.unwrap();
    assert_eq!(
        child.wait().await.unwrap(),
        ExitStatus::Signal("TERM".into())
    );

    // stdin streaming: 20 MB through sha256sum.
    let len = 20_000_000;
    let mut child = t.spawn("sha256sum; echo done >&2").await.unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut source = Pattern::new(len, 42);
    let copied = tokio::io::copy(&mut source, &mut stdin).await.unwrap();
    assert_eq!(copied, len);
    stdin.shutdown().await.unwrap();
    drop(stdin);
    let mut stdout = String::new();
    child.stdout.read_to_string(&mut stdout).await.unwrap();
    let mut stderr = String::new();
    child.stderr.read_to_string(&mut stderr).await.unwrap();
    assert!(child.wait().await.unwrap().success());
    assert_eq!(
        stdout.split_whitespace().next().unwrap(),
        pattern_hash(len, 42).await
    );
    assert_eq!(stderr, "done\n");

    // Both directions at once (no deadlock): 8 MB through `cat`, read while writing.
    let len = 8_000_000;
    let mut child = t.spawn("cat").await.unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = async move {
        tokio::io::copy(&mut Pattern::new(len, 7), &mut stdin)
            .await
            .unwrap();
        stdin.shutdown().await.unwrap();
    };
    let (_, (n, hash)) = tokio::join!(writer, async {
        count_and_hash(&mut child.stdout).await.unwrap()
    });
    assert_eq!(n, len);
    assert_eq!(hash, pattern_hash(len, 7).await);
    assert!(child.wait().await.unwrap().success());

    // kill: the command never sees a clean end of its stdin.
    let marker = format!("{dir}/eof-seen");
    let mut child = t
        .spawn(&format!("cat > {dir}/partial; touch {marker}"))
        .await
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&[1u8; 100_000]).await.unwrap();
    stdin.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().await.unwrap();
    drop(stdin);
    assert_eq!(
        child.wait().await.unwrap(),
        ExitStatus::Signal("KILL".into())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !exists(t, &marker).await,
        "a killed command saw end-of-file"
    );
    // kill after the end is a no-op.
    let mut child = t.spawn("true").await.unwrap();
    assert!(child.wait().await.unwrap().success());
    child.kill().await.unwrap();

    // upload + download round trip, byte-identical, with the mode.
    let len = 12_000_000;
    let path = format!("{dir}/blob.bin");
    let n = t
        .upload(&path, Box::new(Pattern::new(len, 9)), 0o640)
        .await
        .unwrap();
    assert_eq!(n, len);
    let (n, hash) = count_and_hash(t.download(&path).await.unwrap())
        .await
        .unwrap();
    assert_eq!(n, len);
    assert_eq!(hash, pattern_hash(len, 9).await);
    let out = t.run(&format!("stat -c %a {path}")).await.unwrap();
    assert_eq!(out.stdout_str().trim(), "640");
    // Overwrite.
    t.upload(&path, Box::new(&b"small"[..]), 0o600)
        .await
        .unwrap();
    let mut small = String::new();
    t.download(&path)
        .await
        .unwrap()
        .read_to_string(&mut small)
        .await
        .unwrap();
    assert_eq!(small, "small");
    // Empty file.
    let empty = format!("{dir}/empty");
    assert_eq!(
        t.upload(&empty, Box::new(tokio::io::empty()), 0o600)
            .await
            .unwrap(),
        0
    );
    let (n, _) = count_and_hash(t.download(&empty).await.unwrap())
        .await
        .unwrap();
    assert_eq!(n, 0);

    // Atomic upload: a source that breaks midway leaves the target as it was, and no
    // temporary file behind.
    let target = format!("{dir}/atomic.bin");
    t.upload(&target, Box::new(&b"old content"[..]), 0o600)
        .await
        .unwrap();
    let err = t
        .upload(
            &target,
            Box::new(Pattern::new(10_000_000, 3).failing_after(3_000_000)),
            0o600,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&host), "{err}");
    assert!(err.to_string().contains("the source broke"), "{err}");
    let mut content = String::new();
    t.download(&target)
        .await
        .unwrap()
        .read_to_string(&mut content)
        .await
        .unwrap();
    assert_eq!(content, "old content");
    let fresh = format!("{dir}/never.bin");
    t.upload(
        &fresh,
        Box::new(Pattern::new(10_000_000, 3).failing_after(1_000_000)),
        0o600,
    )
    .await
    .unwrap_err();
    assert!(
        !exists(t, &fresh).await,
        "a failed upload created its target"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listing = t.run(&format!("ls -A {dir}")).await.unwrap().stdout_str();
    assert!(
        !listing.contains("drp-tmp"),
        "temporary files left: {listing}"
    );

    // Upload into a missing directory fails clearly.
    let err = t
        .upload(
            &format!("{dir}/no/such/dir/file"),
            Box::new(&b"x"[..]),
            0o600,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&host), "{err}");

    // download of a missing file fails at once.
    let err = t
        .download(&format!("{dir}/missing"))
        .await
        .map(|_| ())
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&host) && message.contains("missing"),
        "{message}"
    );
}
