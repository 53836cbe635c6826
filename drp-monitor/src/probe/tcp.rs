//! TCP connect probe.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::{
    Attempt, HealthProbe, Observation, ProbeError, ProbeKind, ProbeResult, TcpProbeSpec, after,
    parse_conditions, timed,
};
use crate::condition::Condition;
use crate::duration::HumanDuration;

/// A TCP connection attempt. Build it from a [`TcpProbeSpec`].
#[derive(Debug)]
pub struct TcpProbe {
    host: String,
    port: u16,
    target: String,
    timeout: Duration,
    conditions: Vec<Condition>,
}

impl TcpProbe {
    /// Checks the spec.
    pub fn new(spec: &TcpProbeSpec) -> Result<TcpProbe, ProbeError> {
        if spec.host.is_empty() {
            return Err(ProbeError::invalid("host", "it is empty"));
        }
        if spec.port == 0 {
            return Err(ProbeError::invalid(
                "port",
                "0 is not a port one can connect to",
            ));
        }
        Ok(TcpProbe {
            target: host_port(&spec.host, spec.port),
            host: spec.host.clone(),
            port: spec.port,
            timeout: spec.timeout.unwrap_or(super::DEFAULT_TIMEOUT),
            conditions: parse_conditions(
                ProbeKind::Tcp,
                &spec.conditions,
                Some(TcpProbeSpec::DEFAULT_CONDITION),
            )?,
        })
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[async_trait]
impl HealthProbe for TcpProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Tcp
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn check(&self) -> ProbeResult {
        let time = Timestamp::now();
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let (outcome, elapsed) = timed(
            self.timeout,
            tokio::net::TcpStream::connect((host, self.port)),
        )
        .await;
        let mut observation = Observation {
            response_time: elapsed,
            ..Observation::default()
        };
        let headline = match outcome {
            Some(Ok(stream)) => {
                observation.connected = Some(true);
                let peer = stream.peer_addr().ok();
                observation.addresses.extend(peer.map(|a| a.ip()));
                match peer {
                    Some(peer) if peer.ip().to_string() != host => {
                        format!("connected to {} ({peer}) {}", self.target, after(elapsed))
                    }
                    _ => format!("connected to {} {}", self.target, after(elapsed)),
                }
            }
            Some(Err(error)) => {
                observation.connected = Some(false);
                format!(
                    "cannot connect to {} {}: {error}",
                    self.target,
                    after(elapsed)
                )
            }
            None => {
                observation.connected = Some(false);
                format!(
                    "cannot connect to {}: no answer within {}",
                    self.target,
                    HumanDuration(self.timeout)
                )
            }
        };
        Attempt {
            kind: ProbeKind::Tcp,
            target: self.target.clone(),
            time,
            observation,
            headline,
            error: None,
        }
        .evaluate(&self.conditions)
    }
}
