//! Real servers for the tests: an HTTP(S) server that records requests and answers as told,
//! a small PKI (a CA and a short-lived server certificate, made with OpenSSL), and aiosmtpd.

#![allow(dead_code)] // Each test binary uses part of this module.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {:?}", self.body))
    }
}

/// How the server answers request number `n` (from 0).
pub type Responder = Arc<dyn Fn(usize, &Recorded) -> Response<Full<Bytes>> + Send + Sync>;

pub fn respond(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// An HTTP server on 127.0.0.1 (TLS if given an acceptor) that records every request.
pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(responder: Responder) -> Server {
        Self::start_with(responder, None).await
    }

    pub async fn start_tls(responder: Responder, acceptor: tokio_rustls::TlsAcceptor) -> Server {
        Self::start_with(responder, Some(acceptor)).await
    }

    async fn start_with(responder: Responder, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let responder = responder.clone();
                let recorded = recorded.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: Request<hyper::body::Incoming>| {
                            let responder = responder.clone();
                            let recorded = recorded.clone();
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let request = Recorded {
                                    method: parts.method.to_string(),
                                    path: parts.uri.to_string(),
                                    headers: parts.headers,
                                    body,
                                };
                                let n = {
                                    let mut all = recorded.lock().unwrap();
                                    all.push(request.clone());
                                    all.len() - 1
                                };
                                Ok::<_, Infallible>(responder(n, &request))
                            }
                        },
                    );
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            // A client that refuses the certificate ends the handshake: fine.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = http
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Server {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CA and a server certificate it signed, for 127.0.0.1 and localhost.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate, PEM, in a file (what `ca_file` takes).
    pub ca_file: PathBuf,
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
    pub server_cert_der: Vec<u8>,
    pub server_key_der: Vec<u8>,
    /// The server certificate's notAfter, in Unix seconds.
    pub not_after: i64,
}

impl Pki {
    /// A server certificate valid for `hours` from now.
    pub fn new(hours: i64) -> Pki {
        use openssl::asn1::Asn1Time;
        use openssl::bn::{BigNum, MsbOption};
        use openssl::ec::{EcGroup, EcKey};
        use openssl::hash::MessageDigest;
        use openssl::nid::Nid;
        use openssl::pkey::PKey;
        use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
        use openssl::x509::{X509, X509NameBuilder};

        let key = || {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
        };
        let name = |cn: &str| {
            let mut name = X509NameBuilder::new().unwrap();
            name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
            name.build()
        };
        let serial = || {
            let mut serial = BigNum::new().unwrap();
            serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
            serial.to_asn1_integer().unwrap()
        };
        let now = jiff::Timestamp::now().as_second();

        let ca_key = key();
        let mut ca = X509::builder().unwrap();
        ca.set_version(2).unwrap();
        ca.set_serial_number(&serial()).unwrap();
        ca.set_subject_name(&name("drp test CA")).unwrap();
        ca.set_issuer_name(&name("drp test CA")).unwrap();
        ca.set_pubkey(&ca_key).unwrap();
        ca.set_not_before(&Asn1Time::from_unix(now - 3600).unwrap())
            .unwrap();
        ca.set_not_after(&Asn1Time::from_unix(now + 30 * 86400).unwrap())
            .unwrap();
        ca.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        ca.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        ca.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let ca = ca.build();

        let server_key = key();
        let not_after = now + hours * 3600;
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        cert.set_serial_number(&serial()).unwrap();
        cert.set_subject_name(&name("localhost")).unwrap();
        cert.set_issuer_name(ca.subject_name()).unwrap();
        cert.set_pubkey(&server_key).unwrap();
        cert.set_not_before(&Asn1Time::from_unix(now - 3600).unwrap())
            .unwrap();
        cert.set_not_after(&Asn1Time::from_unix(not_after).unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&cert.x509v3_context(Some(&ca), None))
            .unwrap();
        cert.append_extension(san).unwrap();
        cert.append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        cert.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let cert = cert.build();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.to_pem().unwrap()).unwrap();
        let server_cert_file = dir.path().join("server.pem");
        std::fs::write(&server_cert_file, cert.to_pem().unwrap()).unwrap();
        let server_key_file = dir.path().join("server.key");
        std::fs::write(
            &server_key_file,
            server_key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        Pki {
            dir,
            ca_file,
            server_cert_file,
            server_key_file,
            server_cert_der: cert.to_der().unwrap(),
            server_key_der: server_key.private_key_to_pkcs8().unwrap(),
            not_after,
        }
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.server_cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone())),
            )
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real SMTP server: aiosmtpd with its Mailbox handler, killed when dropped (also when a
/// test panics).
pub struct Smtpd {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
    _dir: tempfile::TempDir,
}

/// Extra aiosmtpd arguments for TLS.
pub enum SmtpdTls<'a> {
    None,
    /// STARTTLS with this certificate and key (required by the server).
    Starttls(&'a Pki),
    /// Implicit TLS ("SMTPS").
    Smtps(&'a Pki),
}

impl Smtpd {
    pub fn start(tls: SmtpdTls<'_>) -> Smtpd {
        let program = std::env::var("DRP_AIOSMTPD").unwrap_or_else(|_| "aiosmtpd".into());
        let dir = tempfile::tempdir().unwrap();
        // aiosmtpd creates the Maildir; an existing (even empty) directory makes every
        // delivery fail.
        let maildir = dir.path().join("maildir");
        let port = free_port();
        let mut command = Command::new(&program);
        command
            .args([
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
        match tls {
            SmtpdTls::None => {}
            SmtpdTls::Starttls(pki) => {
                command
                    .arg("--tlscert")
                    .arg(&pki.server_cert_file)
                    .arg("--tlskey")
                    .arg(&pki.server_key_file);
            }
            SmtpdTls::Smtps(pki) => {
                command
                    .arg("--smtpscert")
                    .arg(&pki.server_cert_file)
                    .arg("--smtpskey")
                    .arg(&pki.server_key_file);
            }
        }
        command.arg(&maildir);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start the SMTP server `{program}` ({e}): aiosmtpd is not installed. \
                 Run .ci/install-deps (as root), or set DRP_AIOSMTPD to its path."
            )
        });
        let mut smtpd = Smtpd {
            child,
            port,
            maildir,
            _dir: dir,
        };
        smtpd.wait_until_accepting();
        smtpd
    }

    fn wait_until_accepting(&mut self) {
        // Readiness, not a timing assertion: poll until it listens, fail if it dies.
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                let stderr =
                    std::fs::read_to_string(self._dir.path().join("stderr")).unwrap_or_default();
                panic!("aiosmtpd exited ({status}) before accepting connections:\n{stderr}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "aiosmtpd did not listen on 127.0.0.1:{} within 30 s",
            self.port
        );
    }

    /// The messages delivered so far.
    pub fn messages(&self) -> Vec<Mail> {
        let new = self.maildir.join("new");
        let Ok(entries) = std::fs::read_dir(&new) else {
            return Vec::new();
        };
        entries
            .map(|e| Mail::parse(&std::fs::read_to_string(e.unwrap().path()).unwrap()))
            .collect()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A received email: headers (unfolded) and the decoded text body.
#[derive(Debug, Clone)]
pub struct Mail {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Mail {
    fn parse(raw: &str) -> Mail {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let mut mail = Mail {
            headers,
            body: String::new(),
        };
        mail.body = match mail
            .header("content-transfer-encoding")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("quoted-printable") => decode_quoted_printable(body),
            Some("base64") => {
                use base64::Engine;
                let compact: String = body.split_whitespace().collect();
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(compact)
                        .unwrap(),
                )
                .unwrap()
            }
            _ => body.to_owned(),
        };
        mail
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The addresses of the To header.
    pub fn to(&self) -> Vec<String> {
        let mut to: Vec<String> = self
            .header("to")
            .unwrap_or("")
            .split(',')
            .map(|a| {
                a.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
            .filter(|a| !a.is_empty())
            .collect();
        to.sort();
        to
    }
}

fn decode_quoted_printable(text: &str) -> String {
    let mut bytes = Vec::new();
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let (line, soft_break) = match line.strip_suffix('=') {
            Some(line) => (line, true),
            None => (line, false),
        };
        let raw = line.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'=' && i + 2 < raw.len() {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).unwrap();
                bytes.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                bytes.push(raw[i]);
                i += 1;
            }
        }
        if !soft_break && lines.peek().is_some() {
            bytes.push(b'\n');
        }
    }
    String::from_utf8(bytes).unwrap()
}

/// The path of a file in `dir`, written with `content`.
pub fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}
