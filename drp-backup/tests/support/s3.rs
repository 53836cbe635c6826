//! A throwaway S3-compatible server (moto) on loopback, one per test.
//!
//! ```ignore
//! let s3 = support::s3::S3Server::start();
//! let store = AmazonS3Builder::new()
//!     .with_endpoint(&s3.endpoint)
//!     .with_bucket_name(&s3.bucket)
//!     // ... or the same values from `s3.env()` / `s3.url("prefix")`
//! ```
//!
//! moto keeps every object whole in one Python process and reads whole objects into memory
//! on each request: fine for megabytes, not for multi-GiB tests.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// How long `start` waits for moto to answer HTTP before giving up.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Timeout of each connect/read/write on the helper's own HTTP requests.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A moto S3 server on `127.0.0.1`, with one empty bucket created for this test.
///
/// The server process is killed and reaped when this value is dropped, also when the test
/// panics. Its output goes to a log file; on a panic the log is kept and its path printed.
#[derive(Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// The bucket created for this test (unique per server).
    pub bucket: String,
    /// moto accepts any credentials; these are what clients should sign with.
    pub access_key: String,
    pub secret_key: String,
    /// Region the clients should use (`us-east-1`).
    pub region: String,
    addr: SocketAddr,
    child: Child,
    log_path: PathBuf,
    /// Holds the log file; `None` once it has been kept for post-mortem.
    log_dir: Option<TempDir>,
}

impl S3Server {
    /// Starts `moto_server` on a free loopback port and creates a uniquely named bucket.
    ///
    /// Panics with a clear message if the server cannot be started, does not answer within
    /// 30 s, or refuses to create the bucket.
    pub fn start() -> S3Server {
        let log_dir = tempfile::Builder::new()
            .prefix("drp-moto-")
            .tempdir()
            .expect("creating a temporary directory for the moto_server log");
        let log_path = log_dir.path().join("moto_server.log");
        let log = File::create(&log_path).expect("creating the moto_server log file");
        let log_err = log.try_clone().expect("duplicating the log file handle");

        let port = free_loopback_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                panic!("moto_server not found on PATH: run .ci/install-deps")
            }
            Err(e) => panic!("cannot start moto_server: {e}"),
        };

        let mut server = S3Server {
            endpoint: format!("http://{addr}"),
            bucket: unique_bucket_name(),
            access_key: "drp-test-access-key".to_owned(),
            secret_key: "drp-test-secret-key".to_owned(),
            region: "us-east-1".to_owned(),
            addr,
            child,
            log_path,
            log_dir: Some(log_dir),
        };
        // From here on, a panic drops `server`, which kills moto and keeps the log.
        server.wait_until_ready();
        server.create_bucket();
        server
    }

    /// `s3://BUCKET/PREFIX`, the URL form users give drp.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.bucket, prefix.trim_start_matches('/'))
    }

    /// The `AWS_*` variables that `AmazonS3Builder::from_env()` reads, pointing at this
    /// server (set them on a child process with `Command::envs`, or feed them to
    /// `AmazonS3Builder::with_config` after lowercasing the name). The bucket is not among
    /// them: it comes from [`S3Server::url`].
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
            ("AWS_REGION", self.region.as_str()),
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The server's `127.0.0.1:PORT` (e.g. for a fault proxy in front of it).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The keys of the multipart uploads started in the bucket and neither completed nor
    /// aborted (S3 ListMultipartUploads, `GET /BUCKET?uploads`, unsigned: moto accepts it).
    pub fn incomplete_uploads(&self) -> Vec<String> {
        let path = format!("/{}?uploads", self.bucket);
        let (status, body) = http_request_full(self.addr, "GET", &path)
            .unwrap_or_else(|e| panic!("listing multipart uploads: {e}"));
        assert_eq!(status, 200, "listing multipart uploads: {body}");
        body.split("<Upload>")
            .skip(1)
            .filter_map(|upload| {
                let key = upload.split_once("<Key>")?.1.split_once("</Key>")?.0;
                Some(key.to_owned())
            })
            .collect()
    }

    /// Path of the server's log file (stdout and stderr of moto_server).
    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// Polls until moto answers `GET /` with HTTP 200, or panics after the deadline.
    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling moto_server") {
                self.fail(&format!("moto_server exited during startup ({status})"));
            }
            let last_error = match http_request(self.addr, "GET", "/") {
                Ok((200, _)) => return,
                Ok((status, body)) => format!("GET / answered {status}: {body}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "moto_server did not answer on {} within {START_DEADLINE:?} \
                     (last attempt: {last_error})",
                    self.endpoint
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates the bucket with a plain, unsigned `PUT /BUCKET` (moto accepts it).
    fn create_bucket(&mut self) {
        let path = format!("/{}", self.bucket);
        match http_request(self.addr, "PUT", &path) {
            Ok((200, _)) => {}
            Ok((status, body)) => self.fail(&format!(
                "creating bucket {}: HTTP {status}: {body}",
                self.bucket
            )),
            Err(e) => self.fail(&format!("creating bucket {}: {e}", self.bucket)),
        }
    }

    /// Panics with `msg`, the log's path and its tail. (Drop then kills the server.)
    fn fail(&mut self, msg: &str) -> ! {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let mut text = String::new();
        for line in tail.into_iter().rev() {
            let _ = writeln!(text, "    {line}");
        }
        panic!(
            "{msg}\nmoto_server log: {} (last lines below)\n{text}",
            self.log_path.display()
        );
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // Kill and reap, so no server outlives its test (even when the test panicked).
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Some(dir) = self.log_dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "moto_server log kept: {}",
                kept.join("moto_server.log").display()
            );
        }
    }
}

/// A port that was free a moment ago: bind port 0 on loopback, read it, release it.
fn free_loopback_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local address of the probe listener")
        .port()
}

/// A bucket name unique across tests and runs (lowercase, digits and dashes, < 63 chars).
fn unique_bucket_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "drp-test-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One HTTP/1.1 request with an empty body; returns the status code and the response body
/// (its first 500 characters).
fn http_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let (status, body) = http_request_full(addr, method, path)?;
    Ok((status, truncate(&body, 500).to_owned()))
}

/// [`http_request`] with the whole body.
fn http_request_full(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                ErrorKind::InvalidData,
                format!("not an HTTP response: {:?}", truncate(&response, 200)),
            )
        })?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status, body.to_owned()))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
