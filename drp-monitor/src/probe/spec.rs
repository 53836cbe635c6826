//! Probe configuration, as written in plan files (TOML) and built by the CLI's flags.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{CommandProbe, DnsProbe, HealthProbe, HttpProbe, ProbeError, TcpProbe, TlsProbe};
use crate::condition::Condition;
use crate::runner::RunnerOptions;

/// How long a probe waits before it gives up, unless its spec says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A probe, tagged by `kind`:
///
/// ```toml
/// kind = "http"
/// url = "https://acme.example/health"
/// conditions = ["[STATUS] == 200", "[BODY].status == UP"]
/// timeout = "5s"
/// interval = "10s"
/// failure_threshold = 3
/// success_threshold = 1
/// ```
///
/// Fields that belong to another kind are refused (`deny_unknown_fields`), so a typo is an
/// error, not a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProbeSpec {
    /// An HTTP(S) request.
    Http(HttpProbeSpec),
    /// A TCP connection.
    Tcp(TcpProbeSpec),
    /// A local shell command.
    Command(CommandProbeSpec),
    /// A DNS resolution.
    Dns(DnsProbeSpec),
    /// A TLS server certificate.
    Tls(TlsProbeSpec),
}

/// Fields every kind of probe has.
macro_rules! common_accessors {
    ($($variant:ident),*) => {
        impl ProbeSpec {
            /// The conditions as written (empty: the kind's default).
            pub fn conditions(&self) -> &[String] {
                match self { $(ProbeSpec::$variant(s) => &s.conditions),* }
            }

            /// How long one probe may take (the spec's `timeout`, or [`DEFAULT_TIMEOUT`]).
            pub fn timeout(&self) -> Duration {
                match self { $(ProbeSpec::$variant(s) => s.timeout),* }.unwrap_or(DEFAULT_TIMEOUT)
            }

            /// Interval and thresholds for a [`ProbeRunner`](crate::ProbeRunner).
            pub fn runner_options(&self) -> RunnerOptions {
                let (interval, failure_threshold, success_threshold) = match self {
                    $(ProbeSpec::$variant(s) => (s.interval, s.failure_threshold, s.success_threshold)),*
                };
                let defaults = RunnerOptions::default();
                RunnerOptions {
                    interval: interval.unwrap_or(defaults.interval),
                    failure_threshold: failure_threshold.unwrap_or(defaults.failure_threshold),
                    success_threshold: success_threshold.unwrap_or(defaults.success_threshold),
                }
            }
        }
    };
}

common_accessors!(Http, Tcp, Command, Dns, Tls);

impl ProbeSpec {
    /// The kind of probe.
    pub fn kind(&self) -> super::ProbeKind {
        match self {
            ProbeSpec::Http(_) => super::ProbeKind::Http,
            ProbeSpec::Tcp(_) => super::ProbeKind::Tcp,
            ProbeSpec::Command(_) => super::ProbeKind::Command,
            ProbeSpec::Dns(_) => super::ProbeKind::Dns,
            ProbeSpec::Tls(_) => super::ProbeKind::Tls,
        }
    }

    /// Builds the probe: parses the conditions, checks them against what the kind observes,
    /// reads CA files. Every configuration error surfaces here, before any probing.
    pub fn build(&self) -> Result<Arc<dyn HealthProbe>, ProbeError> {
        Ok(match self {
            ProbeSpec::Http(spec) => Arc::new(HttpProbe::new(spec)?),
            ProbeSpec::Tcp(spec) => Arc::new(TcpProbe::new(spec)?),
            ProbeSpec::Command(spec) => Arc::new(CommandProbe::new(spec)?),
            ProbeSpec::Dns(spec) => Arc::new(DnsProbe::new(spec)?),
            ProbeSpec::Tls(spec) => Arc::new(TlsProbe::new(spec)?),
        })
    }

    /// The parsed conditions (the kind's default when none are written), or the first that
    /// does not parse or does not fit the kind. For validators that want the errors without
    /// building the probe.
    pub fn parsed_conditions(&self) -> Result<Vec<Condition>, ProbeError> {
        let (kind, default) = match self {
            ProbeSpec::Http(_) => (
                super::ProbeKind::Http,
                Some(HttpProbeSpec::DEFAULT_CONDITION),
            ),
            ProbeSpec::Tcp(_) => (super::ProbeKind::Tcp, Some(TcpProbeSpec::DEFAULT_CONDITION)),
            ProbeSpec::Command(_) => (
                super::ProbeKind::Command,
                Some(CommandProbeSpec::DEFAULT_CONDITION),
            ),
            ProbeSpec::Dns(_) => (super::ProbeKind::Dns, None),
            ProbeSpec::Tls(_) => (super::ProbeKind::Tls, Some(TlsProbeSpec::DEFAULT_CONDITION)),
        };
        super::parse_conditions(kind, self.conditions(), default)
    }
}

/// `kind = "http"`: a request, by default `GET`, healthy when `[STATUS] < 400` unless
/// conditions say otherwise. TLS certificates are verified against the system's roots (plus
/// `ca_file`) unless `insecure = true`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeSpec {
    /// `http://` or `https://` URL.
    pub url: String,
    /// HTTP method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default)]
    pub body: Option<String>,
    /// Accept any server certificate (self-signed, expired, wrong name). Off by default.
    #[serde(default)]
    pub insecure: bool,
    /// PEM file of extra trusted CA certificates.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Conditions that must all hold (default `[STATUS] < 400`).
    #[serde(default)]
    pub conditions: Vec<String>,
    /// How long to wait for the whole response (default 10s).
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
    /// Time between probes when run repeatedly.
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub interval: Option<Duration>,
    /// Consecutive failures before a healthy probe counts as unhealthy.
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    /// Consecutive successes before an unhealthy probe counts as healthy.
    #[serde(default)]
    pub success_threshold: Option<u32>,
}

impl HttpProbeSpec {
    /// The condition when none is written.
    pub const DEFAULT_CONDITION: &'static str = "[STATUS] < 400";
}

/// `kind = "tcp"`: a TCP connection, healthy when `[CONNECTED] == true` unless conditions
/// say otherwise (`[CONNECTED] == false` checks that a port is closed).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbeSpec {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Conditions that must all hold (default `[CONNECTED] == true`).
    #[serde(default)]
    pub conditions: Vec<String>,
    /// How long to wait for the connection (default 10s).
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
    /// Time between probes when run repeatedly.
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub interval: Option<Duration>,
    /// Consecutive failures before a healthy probe counts as unhealthy.
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    /// Consecutive successes before an unhealthy probe counts as healthy.
    #[serde(default)]
    pub success_threshold: Option<u32>,
}

impl TcpProbeSpec {
    /// The condition when none is written.
    pub const DEFAULT_CONDITION: &'static str = "[CONNECTED] == true";
}

/// `kind = "command"`: `sh -c COMMAND` on this machine, healthy when `[EXIT_CODE] == 0`
/// unless conditions say otherwise; `[BODY]` is its standard output.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandProbeSpec {
    /// The shell command.
    pub command: String,
    /// Conditions that must all hold (default `[EXIT_CODE] == 0`).
    #[serde(default)]
    pub conditions: Vec<String>,
    /// How long it may run before it is killed (default 10s).
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
    /// Time between probes when run repeatedly.
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub interval: Option<Duration>,
    /// Consecutive failures before a healthy probe counts as unhealthy.
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    /// Consecutive successes before an unhealthy probe counts as healthy.
    #[serde(default)]
    pub success_threshold: Option<u32>,
}

impl CommandProbeSpec {
    /// The condition when none is written.
    pub const DEFAULT_CONDITION: &'static str = "[EXIT_CODE] == 0";
}

/// `kind = "dns"`: resolves `name` with the system resolver; healthy when it resolves and,
/// if `expect` is given, to exactly those addresses (in any order).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsProbeSpec {
    /// The name to resolve.
    pub name: String,
    /// The addresses it must resolve to, all of them and no other.
    #[serde(default)]
    pub expect: Vec<IpAddr>,
    /// Conditions that must all hold (none by default: resolving, to `expect` if given, is
    /// the check).
    #[serde(default)]
    pub conditions: Vec<String>,
    /// How long to wait for the resolver (default 10s).
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
    /// Time between probes when run repeatedly.
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub interval: Option<Duration>,
    /// Consecutive failures before a healthy probe counts as unhealthy.
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    /// Consecutive successes before an unhealthy probe counts as healthy.
    #[serde(default)]
    pub success_threshold: Option<u32>,
}

/// `kind = "tls"`: a TLS handshake with `host:port`; healthy when the certificate is trusted
/// (unless `insecure = true`) and `[CERTIFICATE_EXPIRATION] > 72h` unless conditions say
/// otherwise.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsProbeSpec {
    /// Host name or address.
    pub host: String,
    /// Port (default 443).
    #[serde(default)]
    pub port: Option<u16>,
    /// Name sent in SNI and checked against the certificate (default: `host`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Report the certificate without checking that it is trusted.
    #[serde(default)]
    pub insecure: bool,
    /// PEM file of extra trusted CA certificates.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Conditions that must all hold (default `[CERTIFICATE_EXPIRATION] > 72h`).
    #[serde(default)]
    pub conditions: Vec<String>,
    /// How long to wait for the handshake (default 10s).
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub timeout: Option<Duration>,
    /// Time between probes when run repeatedly.
    #[serde(default, deserialize_with = "crate::duration::deserialize_option")]
    pub interval: Option<Duration>,
    /// Consecutive failures before a healthy probe counts as unhealthy.
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    /// Consecutive successes before an unhealthy probe counts as healthy.
    #[serde(default)]
    pub success_threshold: Option<u32>,
}

impl TlsProbeSpec {
    /// The condition when none is written.
    pub const DEFAULT_CONDITION: &'static str = "[CERTIFICATE_EXPIRATION] > 72h";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_kind_from_toml() {
        let spec: ProbeSpec = toml::from_str(
            r#"
            kind = "http"
            url = "https://acme.example/health"
            method = "POST"
            headers = { Accept = "application/json" }
            conditions = ["[STATUS] == 200", "[BODY].status == UP"]
            timeout = "5s"
            interval = "2s"
            failure_threshold = 2
            "#,
        )
        .unwrap();
        let ProbeSpec::Http(http) = &spec else {
            panic!("{spec:?}")
        };
        assert_eq!(http.url, "https://acme.example/health");
        assert_eq!(http.timeout, Some(Duration::from_secs(5)));
        assert_eq!(spec.timeout(), Duration::from_secs(5));
        assert_eq!(spec.kind(), super::super::ProbeKind::Http);
        let options = spec.runner_options();
        assert_eq!(options.interval, Duration::from_secs(2));
        assert_eq!(options.failure_threshold, 2);
        assert_eq!(
            options.success_threshold,
            RunnerOptions::default().success_threshold
        );
        assert_eq!(spec.parsed_conditions().unwrap().len(), 2);

        let dns: ProbeSpec =
            toml::from_str("kind = \"dns\"\nname = \"acme.example\"\nexpect = [\"10.0.0.1\"]")
                .unwrap();
        assert!(
            matches!(dns, ProbeSpec::Dns(DnsProbeSpec { ref expect, .. }) if expect.len() == 1)
        );
        for text in [
            "kind = \"tcp\"\nhost = \"db\"\nport = 5432",
            "kind = \"command\"\ncommand = \"true\"",
            "kind = \"tls\"\nhost = \"acme.example\"",
        ] {
            toml::from_str::<ProbeSpec>(text).unwrap();
        }
    }

    #[test]
    fn refuses_fields_of_another_kind_and_unknown_kinds() {
        let error =
            toml::from_str::<ProbeSpec>("kind = \"tcp\"\nhost = \"db\"\nport = 5432\nurl = \"x\"")
                .unwrap_err()
                .to_string();
        assert!(error.contains("unknown field `url`"), "{error}");
        let error = toml::from_str::<ProbeSpec>("kind = \"ping\"\nhost = \"db\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown variant `ping`"), "{error}");
        let error = toml::from_str::<ProbeSpec>("kind = \"http\"\nurl = \"x\"\ntimeout = \"5\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid duration '5'"), "{error}");
    }

    #[test]
    fn reports_conditions_that_do_not_parse_or_do_not_fit_the_kind() {
        let spec: ProbeSpec = toml::from_str(
            "kind = \"http\"\nurl = \"http://x/\"\nconditions = [\"[STATUS] == 200\", \"[STATUS] == any(200,)\"]",
        )
        .unwrap();
        let error = spec.parsed_conditions().unwrap_err();
        let super::ProbeError::Condition {
            index, ref source, ..
        } = error
        else {
            panic!("{error:?}")
        };
        assert_eq!(index, 1);
        assert_eq!(source.position(), 21);
        assert_eq!(
            error.to_string(),
            "condition 2 '[STATUS] == any(200,)': unexpected ')' at column 21: expected a value"
        );

        let spec: ProbeSpec = toml::from_str(
            "kind = \"tcp\"\nhost = \"db\"\nport = 1\nconditions = [\"[STATUS] == 200\"]",
        )
        .unwrap();
        assert_eq!(
            spec.parsed_conditions().unwrap_err().to_string(),
            "condition '[STATUS] == 200': a tcp probe does not observe [STATUS] (it observes \
             [CONNECTED], [RESPONSE_TIME], [IP])"
        );
    }
}
