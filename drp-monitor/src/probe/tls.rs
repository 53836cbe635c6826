//! TLS certificate probe: a handshake (rustls), then the server certificate's expiry and
//! whether it is trusted.
//!
//! The verifier records its verdict instead of aborting the handshake, so an untrusted or
//! expired certificate is still reported with its dates: "not trusted, and expired 3 days
//! ago" explains more than "handshake failed".

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::tcp::host_port;
use super::{
    Attempt, CertificateInfo, HealthProbe, Observation, ProbeError, ProbeKind, ProbeResult,
    TlsProbeSpec, after, error_chain, parse_conditions, read_ca_file, timed,
};
use crate::condition::Condition;
use crate::duration::HumanDuration;

/// A TLS handshake that reports the server certificate. Build it from a [`TlsProbeSpec`].
#[derive(Debug)]
pub struct TlsProbe {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    target: String,
    provider: Arc<CryptoProvider>,
    /// `None`: insecure, the certificate is reported but not checked.
    verifier: Option<Arc<dyn ServerCertVerifier>>,
    timeout: Duration,
    conditions: Vec<Condition>,
}

impl TlsProbe {
    /// Checks the spec and loads the trusted roots (the system's, plus `ca_file`).
    pub fn new(spec: &TlsProbeSpec) -> Result<TlsProbe, ProbeError> {
        if spec.host.is_empty() {
            return Err(ProbeError::invalid("host", "it is empty"));
        }
        let port = spec.port.unwrap_or(443);
        let name = spec
            .server_name
            .clone()
            .unwrap_or_else(|| spec.host.clone());
        let server_name = ServerName::try_from(
            name.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
        .map_err(|e| ProbeError::invalid("server_name", format!("'{name}': {e}")))?;
        // Explicit provider: the workspace's rustls has aws-lc-rs; if another crate ever
        // enables ring too, a process-wide default would be ambiguous.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Option<Arc<dyn ServerCertVerifier>> = if spec.insecure {
            None
        } else {
            let extra_roots = match &spec.ca_file {
                Some(path) => read_ca_file(path)?,
                None => Vec::new(),
            };
            let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
                extra_roots,
                provider.clone(),
            )
            .map_err(|e| {
                ProbeError::invalid("ca_file", format!("cannot load trusted certificates: {e}"))
            })?;
            Some(Arc::new(verifier))
        };
        Ok(TlsProbe {
            target: host_port(&spec.host, port),
            host: spec.host.clone(),
            port,
            server_name,
            provider,
            verifier,
            timeout: spec.timeout.unwrap_or(super::DEFAULT_TIMEOUT),
            conditions: parse_conditions(
                ProbeKind::Tls,
                &spec.conditions,
                Some(TlsProbeSpec::DEFAULT_CONDITION),
            )?,
        })
    }

    /// Connects and shakes hands; fills `observation`. Returns the verifier's verdict.
    async fn observe(&self, observation: &mut Observation) -> Result<Result<(), String>, Stage> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::net::TcpStream::connect((host, self.port))
            .await
            .map_err(|e| Stage::Connect(e.to_string()))?;
        observation.connected = Some(true);
        observation
            .addresses
            .extend(tcp.peer_addr().ok().map(|a| a.ip()));
        let recorder = Arc::new(RecordingVerifier {
            inner: self.verifier.clone(),
            provider: self.provider.clone(),
            verdict: Mutex::new(None),
        });
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Stage::Handshake(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| Stage::Handshake(error_chain(&e)))?;
        let (_, connection) = stream.get_ref();
        if let Some(der) = connection
            .peer_certificates()
            .and_then(|certs| certs.first())
        {
            observation.certificate =
                Some(CertificateInfo::from_der(der, Timestamp::now()).map_err(Stage::Handshake)?);
        }
        let verdict = recorder.verdict.lock().expect("verdict lock").take();
        Ok(verdict.unwrap_or(Ok(())))
    }
}

/// Where the probe stopped.
enum Stage {
    Connect(String),
    Handshake(String),
}

#[async_trait]
impl HealthProbe for TlsProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Tls
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn check(&self) -> ProbeResult {
        let time = Timestamp::now();
        let mut observation = Observation::default();
        let (outcome, elapsed) = timed(self.timeout, self.observe(&mut observation)).await;
        observation.response_time = elapsed;
        let certificate = observation.certificate.as_ref().map_or_else(
            || "no certificate".to_owned(),
            |c| format!("certificate {} {}", c.subject, c.describe_expiry()),
        );
        let mut headline = String::new();
        let error = match outcome {
            Some(Ok(Ok(()))) => {
                headline = format!(
                    "{} presented {certificate}, {}",
                    self.target,
                    after(elapsed)
                );
                None
            }
            Some(Ok(Err(untrusted))) => {
                let hint = if untrusted.contains("UnknownIssuer") {
                    " (give its CA with ca_file, or set insecure to only check expiry)"
                } else {
                    ""
                };
                Some(format!(
                    "{} presented an untrusted {certificate}, {}: {untrusted}{hint}",
                    self.target,
                    after(elapsed)
                ))
            }
            Some(Err(Stage::Connect(reason))) => {
                observation.connected = Some(false);
                headline = format!(
                    "cannot connect to {} {}: {reason}",
                    self.target,
                    after(elapsed)
                );
                None
            }
            Some(Err(Stage::Handshake(reason))) => Some(format!(
                "TLS handshake with {} failed {}: {reason}",
                self.target,
                after(elapsed)
            )),
            None => Some(format!(
                "no TLS handshake with {} within {}",
                self.target,
                HumanDuration(self.timeout)
            )),
        };
        Attempt {
            kind: ProbeKind::Tls,
            target: self.target.clone(),
            time,
            observation,
            headline,
            error,
        }
        .evaluate(&self.conditions)
    }
}

/// Checks the chain with the real verifier but lets the handshake finish, keeping the
/// verdict. Handshake signatures are always checked: the server must own the key.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<CryptoProvider>,
    verdict: Mutex<Option<Result<(), String>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(inner) = &self.inner {
            let verdict = inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
                .map_err(|e| e.to_string());
            *self.verdict.lock().expect("verdict lock") = Some(verdict);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
