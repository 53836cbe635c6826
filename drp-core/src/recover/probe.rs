//! Probes of a recovered stack: the plan's probe specs with `{host}` and `{stack}` filled
//! in, and command probes with `on = "host"` run on the recovered host through its transport,
//! judged by drp-monitor's own [`Attempt::evaluate`] so they read like every other probe.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drp_monitor::probe::ProbeKind;
use drp_monitor::{Attempt, Condition, HealthProbe, Observation, ProbeResult, ProbeSpec};
use drp_provision::{RunOptions, Transport, TransportExt};

use crate::plan::{Probe, RunOn};

/// `{host}` and `{stack}` filled into every text field of `spec`.
pub fn fill_placeholders(spec: &ProbeSpec, host: &str, stack: &str) -> ProbeSpec {
    let fill = |text: &mut String| *text = text.replace("{host}", host).replace("{stack}", stack);
    let mut spec = spec.clone();
    match &mut spec {
        ProbeSpec::Http(s) => fill(&mut s.url),
        ProbeSpec::Tcp(s) => fill(&mut s.host),
        ProbeSpec::Command(s) => fill(&mut s.command),
        ProbeSpec::Dns(s) => fill(&mut s.name),
        ProbeSpec::Tls(s) => fill(&mut s.host),
        _ => {}
    }
    spec
}

/// Builds the probe of a recovered stack.
pub fn build(
    probe: &Probe,
    host: &str,
    stack: &str,
    transport: Arc<dyn Transport>,
) -> Result<Arc<dyn HealthProbe>, String> {
    let spec = fill_placeholders(&probe.spec, host, stack);
    match (&spec, probe.on) {
        (ProbeSpec::Command(command), RunOn::Host) => {
            let conditions = spec
                .parsed_conditions()
                .map_err(|e| format!("probe {}: {e}", probe.name))?;
            Ok(Arc::new(HostCommandProbe {
                target: format!("{} on {transport}", command.command),
                command: command.command.clone(),
                conditions,
                timeout: spec.timeout(),
                transport,
            }))
        }
        _ => spec
            .build()
            .map_err(|e| format!("probe {}: {e}", probe.name)),
    }
}

/// A command probe run on the recovered host.
#[derive(Debug)]
struct HostCommandProbe {
    target: String,
    command: String,
    conditions: Vec<Condition>,
    timeout: Duration,
    transport: Arc<dyn Transport>,
}

#[async_trait]
impl HealthProbe for HostCommandProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Command
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn check(&self) -> ProbeResult {
        let time = jiff::Timestamp::now();
        let started = tokio::time::Instant::now();
        let options = RunOptions {
            check: false,
            ..RunOptions::default()
        };
        let outcome = tokio::time::timeout(
            self.timeout,
            self.transport.run_with(&self.command, &options),
        )
        .await;
        let mut observation = Observation {
            response_time: started.elapsed(),
            ..Observation::default()
        };
        let (headline, error) = match outcome {
            Ok(Ok(output)) => {
                observation.exit_code = output.status.code();
                observation.body = Some(output.stdout_str());
                let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
                if !stderr.is_empty() {
                    observation.stderr = Some(stderr);
                }
                (
                    format!("{} exited with {:?}", self.target, output.status),
                    None,
                )
            }
            Ok(Err(e)) => (
                String::new(),
                Some(format!("cannot run {}: {e}", self.target)),
            ),
            Err(_) => (
                String::new(),
                Some(format!(
                    "{} did not finish within {}",
                    self.target,
                    crate::plan::format_duration(self.timeout)
                )),
            ),
        };
        Attempt {
            kind: ProbeKind::Command,
            target: self.target.clone(),
            time,
            observation,
            headline,
            error,
        }
        .evaluate(&self.conditions)
    }
}
