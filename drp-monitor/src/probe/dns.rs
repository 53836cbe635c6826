//! DNS probe, through the system resolver (`getaddrinfo`: /etc/hosts, then DNS), as the
//! services being checked resolve names.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::{
    Attempt, DnsProbeSpec, HealthProbe, Observation, ProbeError, ProbeKind, ProbeResult, after,
    parse_conditions, timed,
};
use crate::condition::Condition;
use crate::duration::HumanDuration;

/// A name resolution, optionally to exact addresses. Build it from a [`DnsProbeSpec`].
#[derive(Debug)]
pub struct DnsProbe {
    name: String,
    expect: Vec<IpAddr>,
    timeout: Duration,
    conditions: Vec<Condition>,
}

impl DnsProbe {
    /// Checks the spec.
    pub fn new(spec: &DnsProbeSpec) -> Result<DnsProbe, ProbeError> {
        if spec.name.trim().is_empty() {
            return Err(ProbeError::invalid("name", "it is empty"));
        }
        let mut expect = spec.expect.clone();
        expect.sort();
        expect.dedup();
        Ok(DnsProbe {
            name: spec.name.clone(),
            expect,
            timeout: spec.timeout.unwrap_or(super::DEFAULT_TIMEOUT),
            conditions: parse_conditions(ProbeKind::Dns, &spec.conditions, None)?,
        })
    }
}

fn list(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl HealthProbe for DnsProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Dns
    }

    fn target(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> ProbeResult {
        let time = Timestamp::now();
        let (outcome, elapsed) = timed(
            self.timeout,
            tokio::net::lookup_host((self.name.as_str(), 0)),
        )
        .await;
        let mut observation = Observation {
            response_time: elapsed,
            ..Observation::default()
        };
        let mut headline = String::new();
        let error = match outcome {
            Some(Ok(addresses)) => {
                for address in addresses {
                    if !observation.addresses.contains(&address.ip()) {
                        observation.addresses.push(address.ip());
                    }
                }
                headline = format!(
                    "{} resolved to {} {}",
                    self.name,
                    list(&observation.addresses),
                    after(elapsed)
                );
                let mut resolved = observation.addresses.clone();
                resolved.sort();
                if self.expect.is_empty() || resolved == self.expect {
                    None
                } else {
                    let missing: Vec<IpAddr> = self
                        .expect
                        .iter()
                        .filter(|a| !resolved.contains(a))
                        .copied()
                        .collect();
                    let extra: Vec<IpAddr> = resolved
                        .iter()
                        .filter(|a| !self.expect.contains(a))
                        .copied()
                        .collect();
                    let mut why = Vec::new();
                    if !missing.is_empty() {
                        why.push(format!("missing {}", list(&missing)));
                    }
                    if !extra.is_empty() {
                        why.push(format!("unexpected {}", list(&extra)));
                    }
                    Some(format!(
                        "{headline}; expected exactly {} ({})",
                        list(&self.expect),
                        why.join("; ")
                    ))
                }
            }
            Some(Err(error)) => Some(format!(
                "cannot resolve {} {}: {error}",
                self.name,
                after(elapsed)
            )),
            None => Some(format!(
                "cannot resolve {}: no answer within {}",
                self.name,
                HumanDuration(self.timeout)
            )),
        };
        Attempt {
            kind: ProbeKind::Dns,
            target: self.name.clone(),
            time,
            observation,
            headline,
            error,
        }
        .evaluate(&self.conditions)
    }
}
