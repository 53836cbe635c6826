//! Health probes: one async trait, five kinds (HTTP(S), TCP, command, DNS, TLS certificate),
//! each checked against [conditions](crate::condition), each result explained in one line.

mod command;
mod dns;
mod http;
mod spec;
mod tcp;
mod tls;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;

use crate::condition::{Condition, ConditionResult, Placeholder};
use crate::duration::{HumanDuration, serialize_millis};

pub use command::CommandProbe;
pub use dns::DnsProbe;
pub use http::HttpProbe;
pub use spec::{
    CommandProbeSpec, DEFAULT_TIMEOUT, DnsProbeSpec, HttpProbeSpec, ProbeSpec, TcpProbeSpec,
    TlsProbeSpec,
};
pub use tcp::TcpProbe;
pub(crate) use tcp::host_port as tcp_host_port;
pub use tls::TlsProbe;

/// Something that says whether a service is up, and explains why when it is not.
///
/// A probe never returns an error: a failure is a [`ProbeResult`] whose message says what went
/// wrong. A probe enforces its own timeout.
#[async_trait]
pub trait HealthProbe: fmt::Debug + Send + Sync {
    /// The kind of probe.
    fn kind(&self) -> ProbeKind;

    /// What is probed, as shown in messages: a URL, `HOST:PORT`, a command, a name.
    fn target(&self) -> &str;

    /// Probes once.
    async fn check(&self) -> ProbeResult;
}

/// The kinds of probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProbeKind {
    /// An HTTP(S) request.
    Http,
    /// A TCP connection.
    Tcp,
    /// A shell command.
    Command,
    /// A DNS resolution.
    Dns,
    /// A TLS handshake, for the server certificate.
    Tls,
}

impl ProbeKind {
    /// The placeholders a probe of this kind observes (and so its conditions may use).
    pub fn placeholders(self) -> &'static [Placeholder] {
        use Placeholder::*;
        match self {
            ProbeKind::Http => &[
                Status,
                ResponseTime,
                Body,
                Connected,
                CertificateExpiration,
                Ip,
            ],
            ProbeKind::Tcp => &[Connected, ResponseTime, Ip],
            ProbeKind::Command => &[ExitCode, Body, ResponseTime],
            ProbeKind::Dns => &[Ip, ResponseTime],
            ProbeKind::Tls => &[CertificateExpiration, Connected, ResponseTime, Ip],
        }
    }

    /// How it is written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Http => "http",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Command => "command",
            ProbeKind::Dns => "dns",
            ProbeKind::Tls => "tls",
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a probe saw. Conditions are evaluated against it; absent values are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observation {
    /// HTTP status code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long the probe took (`[RESPONSE_TIME]`).
    #[serde(rename = "response_time_ms", serialize_with = "serialize_millis")]
    pub response_time: Duration,
    /// The response body or standard output. In a [`ProbeResult`], only its first
    /// [`BODY_EXCERPT_CHARS`] characters are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Whether the body in a result was cut to the excerpt.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
    /// Whether a connection was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    /// The server certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateInfo>,
    /// The address connected to, or the addresses a name resolved to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    /// A command's exit status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The end of a command's standard error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
}

/// The end-entity certificate a TLS server presented.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertificateInfo {
    /// Its subject (`CN=...`).
    pub subject: String,
    /// When it expires.
    pub not_after: Timestamp,
    /// Milliseconds from the observation until it expires; negative once expired.
    pub expires_in_ms: i64,
}

impl CertificateInfo {
    /// Reads a DER certificate, measuring its remaining validity from `now`.
    pub fn from_der(der: &[u8], now: Timestamp) -> Result<CertificateInfo, String> {
        let cert = openssl::x509::X509::from_der(der)
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        let epoch = openssl::asn1::Asn1Time::from_unix(0).map_err(|e| e.to_string())?;
        let since_epoch = epoch.diff(cert.not_after()).map_err(|e| e.to_string())?;
        let seconds = i64::from(since_epoch.days) * 86_400 + i64::from(since_epoch.secs);
        let not_after = Timestamp::from_second(seconds).map_err(|e| e.to_string())?;
        let subject = cert
            .subject_name()
            .entries()
            .map(|entry| {
                let name = entry.object().nid().short_name().unwrap_or("?");
                let value = entry.data().to_string().unwrap_or_default();
                format!("{name}={value}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let expires_in_ms = (not_after.as_millisecond()).saturating_sub(now.as_millisecond());
        Ok(CertificateInfo {
            subject,
            not_after,
            expires_in_ms,
        })
    }

    /// "expires 2026-12-01T10:00:00Z (in 47h 59m)" or "expired 2026-... (3h 2m ago)".
    pub fn describe_expiry(&self) -> String {
        let left = Duration::from_millis(self.expires_in_ms.unsigned_abs());
        if self.expires_in_ms >= 0 {
            format!("expires {} (in {})", self.not_after, HumanDuration(left))
        } else {
            format!("expired {} ({} ago)", self.not_after, HumanDuration(left))
        }
    }
}

/// How much of a body a result keeps.
pub const BODY_EXCERPT_CHARS: usize = 1024;

/// How much of a body or output a probe reads at most; conditions see this much.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeResult {
    /// The kind of probe.
    pub kind: ProbeKind,
    /// What was probed.
    pub target: String,
    /// Whether every check passed.
    pub healthy: bool,
    /// When the probe started.
    pub time: Timestamp,
    /// How long it took.
    #[serde(rename = "latency_ms", serialize_with = "serialize_millis")]
    pub latency: Duration,
    /// What it saw.
    pub observation: Observation,
    /// Each condition and whether it held.
    pub conditions: Vec<ConditionResult>,
    /// What prevented an observation (timeout, handshake failure, untrusted certificate...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// One line for people: what was observed and, when unhealthy, why.
    pub message: String,
}

/// The raw material of a [`ProbeResult`], before conditions are checked.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The kind of probe.
    pub kind: ProbeKind,
    /// What was probed.
    pub target: String,
    /// When it started.
    pub time: Timestamp,
    /// What was seen (with `response_time` set).
    pub observation: Observation,
    /// What was seen, in words: `HTTP 502 from URL after 120 ms`.
    pub headline: String,
    /// Set when something prevented a meaningful observation (it becomes the message, and
    /// the result is unhealthy whatever the conditions say).
    pub error: Option<String>,
}

impl Attempt {
    /// Checks `conditions` and writes the message. Public so that probes composed elsewhere
    /// (a command on a remote host, in drp-core) give the same results as these.
    pub fn evaluate(self, conditions: &[Condition]) -> ProbeResult {
        let Attempt {
            kind,
            target,
            time,
            mut observation,
            headline,
            error,
        } = self;
        let results: Vec<ConditionResult> = conditions
            .iter()
            .map(|c| c.evaluate(&observation))
            .collect();
        let healthy = error.is_none() && results.iter().all(|r| r.ok);
        let message = match &error {
            Some(error) => error.clone(),
            None if healthy => headline,
            None => {
                let failed: Vec<String> = conditions
                    .iter()
                    .zip(&results)
                    .filter(|(_, r)| !r.ok)
                    .map(|(c, r)| explain_failed(c, r))
                    .collect();
                format!("{headline}; expected {}", failed.join(", "))
            }
        };
        if let Some(body) = &mut observation.body
            && let Some((cut, _)) = body.char_indices().nth(BODY_EXCERPT_CHARS)
        {
            body.truncate(cut);
            observation.body_truncated = true;
        }
        ProbeResult {
            kind,
            target,
            healthy,
            time,
            latency: observation.response_time,
            observation,
            conditions: results,
            error,
            message,
        }
    }
}

/// `[STATUS] == 200` (the headline shows the status), or `[BODY].status == UP (got DOWN)`.
fn explain_failed(condition: &Condition, result: &ConditionResult) -> String {
    let in_headline = matches!(
        condition.placeholder(),
        Placeholder::Status
            | Placeholder::Connected
            | Placeholder::ExitCode
            | Placeholder::ResponseTime
    );
    if in_headline || !result.observed {
        condition.to_string()
    } else {
        format!("{condition} (got {})", excerpt(&result.actual, 80))
    }
}

/// At most `max` characters of `text`, on one line, with `...` when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
    }
}

/// An error and its causes on one line: `error sending request: client error (Connect): tcp
/// connect error: Connection refused (os error 111)`.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// The conditions of a probe spec, parsed and checked against what its kind observes.
pub(crate) fn parse_conditions(
    kind: ProbeKind,
    texts: &[String],
    default: Option<&str>,
) -> Result<Vec<Condition>, ProbeError> {
    let texts: Vec<&str> = if texts.is_empty() {
        default.into_iter().collect()
    } else {
        texts.iter().map(String::as_str).collect()
    };
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let condition = Condition::parse(text).map_err(|source| ProbeError::Condition {
                index,
                condition: (*text).to_owned(),
                source,
            })?;
            if !kind.placeholders().contains(&condition.placeholder()) {
                return Err(ProbeError::Placeholder {
                    condition: (*text).to_owned(),
                    kind,
                    placeholder: condition.placeholder(),
                });
            }
            Ok(condition)
        })
        .collect()
}

/// A probe that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A condition does not parse.
    #[error("condition {} '{condition}': {source}", index + 1)]
    Condition {
        /// Which condition (0-based).
        index: usize,
        /// Its text.
        condition: String,
        /// Where and why it does not parse.
        source: crate::condition::ConditionError,
    },
    /// A condition reads something this kind of probe does not observe.
    #[error(
        "condition '{condition}': a {kind} probe does not observe {placeholder} (it observes {})",
        kind.placeholders().iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
    )]
    Placeholder {
        /// Its text.
        condition: String,
        /// The probe's kind.
        kind: ProbeKind,
        /// What it reads.
        placeholder: Placeholder,
    },
    /// Some other field is invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field (`url`, `method`, `headers`, `port`, `ca_file`...).
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl ProbeError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ProbeError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Runs `work` within `timeout`, measuring it; `None` when time ran out.
pub(crate) async fn timed<T>(
    timeout: Duration,
    work: impl std::future::Future<Output = T>,
) -> (Option<T>, Duration) {
    let started = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(timeout, work).await.ok();
    (outcome, started.elapsed())
}

/// "after 120 ms".
pub(crate) fn after(elapsed: Duration) -> String {
    format!("after {}", HumanDuration(elapsed))
}

/// Reads certificates (PEM, one or more) from a CA file.
pub(crate) fn read_ca_file(
    path: &std::path::Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, ProbeError> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ProbeError::invalid("ca_file", format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ProbeError::invalid(
            "ca_file",
            format!("{}: no PEM certificate in it", path.display()),
        ));
    }
    Ok(certs)
}
