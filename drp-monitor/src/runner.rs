//! Running probes repeatedly: thresholds turn single results into a health state, and the
//! executor waits on it (`wait_until_healthy` after a restore, `wait_until_unhealthy` to
//! measure time to detect in a drill).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::duration::serialize_millis;
use crate::probe::{HealthProbe, ProbeResult};

/// How often to probe, and how many consecutive results flip the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerOptions {
    /// Time from the start of one probe to the start of the next (default 10s).
    pub interval: Duration,
    /// Consecutive failures before the state becomes unhealthy (default 3).
    pub failure_threshold: u32,
    /// Consecutive successes before the state becomes healthy (default 1).
    pub success_threshold: u32,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            interval: Duration::from_secs(10),
            failure_threshold: 3,
            success_threshold: 1,
        }
    }
}

/// What the thresholds make of the results so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Not enough results yet to cross either threshold.
    Unknown,
    /// `success_threshold` consecutive successes (and no `failure_threshold` failures since).
    Healthy,
    /// `failure_threshold` consecutive failures (and no `success_threshold` successes since).
    Unhealthy,
}

/// One probe, run again and again, with its state.
#[derive(Debug)]
pub struct ProbeRunner {
    probe: Arc<dyn HealthProbe>,
    options: RunnerOptions,
    state: HealthState,
    consecutive_successes: u32,
    consecutive_failures: u32,
    last: Option<ProbeResult>,
    attempts: u32,
}

/// How a wait ended.
#[derive(Debug, Clone, Serialize)]
pub struct WaitOutcome {
    /// What was probed.
    pub target: String,
    /// Whether the awaited state was reached before the deadline.
    pub reached: bool,
    /// The state at the end.
    pub state: HealthState,
    /// Probes run during the wait.
    pub attempts: u32,
    /// From the start of the wait to the end.
    #[serde(rename = "elapsed_ms", serialize_with = "serialize_millis")]
    pub elapsed: Duration,
    /// The last result (none if the deadline passed before one probe finished).
    pub last: Option<ProbeResult>,
}

impl ProbeRunner {
    /// A runner in the [`HealthState::Unknown`] state. Thresholds of 0 count as 1.
    pub fn new(probe: Arc<dyn HealthProbe>, options: RunnerOptions) -> Self {
        ProbeRunner {
            probe,
            options: RunnerOptions {
                failure_threshold: options.failure_threshold.max(1),
                success_threshold: options.success_threshold.max(1),
                ..options
            },
            state: HealthState::Unknown,
            consecutive_successes: 0,
            consecutive_failures: 0,
            last: None,
            attempts: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// The last result.
    pub fn last(&self) -> Option<&ProbeResult> {
        self.last.as_ref()
    }

    /// The probe.
    pub fn probe(&self) -> &Arc<dyn HealthProbe> {
        &self.probe
    }

    /// Probes once and updates the state. Returns the result and the state afterwards.
    pub async fn check(&mut self) -> (&ProbeResult, HealthState) {
        let result = self.probe.check().await;
        self.record(result);
        (self.last.as_ref().expect("just recorded"), self.state)
    }

    fn record(&mut self, result: ProbeResult) {
        self.attempts += 1;
        if result.healthy {
            self.consecutive_successes += 1;
            self.consecutive_failures = 0;
            if self.consecutive_successes >= self.options.success_threshold {
                self.state = HealthState::Healthy;
            }
        } else {
            self.consecutive_failures += 1;
            self.consecutive_successes = 0;
            if self.consecutive_failures >= self.options.failure_threshold {
                self.state = HealthState::Unhealthy;
            }
        }
        if result.healthy {
            tracing::debug!(target = %result.target, "{}", result.message);
        } else {
            tracing::info!(target = %result.target, "{}", result.message);
        }
        self.last = Some(result);
    }

    /// Probes every `interval` until the state is healthy or `deadline` passes. A probe still
    /// running at the deadline is abandoned.
    pub async fn wait_until_healthy(&mut self, deadline: Instant) -> WaitOutcome {
        self.wait_for(HealthState::Healthy, deadline, &CancellationToken::new())
            .await
    }

    /// Probes every `interval` until the state is unhealthy or `deadline` passes: the time
    /// a drill's fault takes to be detected.
    pub async fn wait_until_unhealthy(&mut self, deadline: Instant) -> WaitOutcome {
        self.wait_for(HealthState::Unhealthy, deadline, &CancellationToken::new())
            .await
    }

    /// Probes until `wanted`, the deadline, or `stop` (another probe of a [`Monitor`] got
    /// there first).
    async fn wait_for(
        &mut self,
        wanted: HealthState,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> WaitOutcome {
        let started = Instant::now();
        let attempts_before = self.attempts;
        let reached = loop {
            let probe_started = Instant::now();
            let result = tokio::select! {
                result = tokio::time::timeout_at(deadline, self.probe.check()) => result,
                () = stop.cancelled() => break false,
            };
            let Ok(result) = result else {
                break false;
            };
            self.record(result);
            if self.state == wanted {
                break true;
            }
            let next = probe_started + self.options.interval;
            if next >= deadline {
                break false;
            }
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = stop.cancelled() => break false,
            }
        };
        WaitOutcome {
            target: self.probe.target().to_owned(),
            reached,
            state: self.state,
            attempts: self.attempts - attempts_before,
            elapsed: started.elapsed(),
            last: self.last.clone(),
        }
    }
}

/// Several probes (a stack's), healthy when every one is.
#[derive(Debug, Default)]
pub struct Monitor {
    runners: Vec<ProbeRunner>,
}

/// How a [`Monitor`] wait ended.
#[derive(Debug, Clone, Serialize)]
pub struct MonitorOutcome {
    /// Whether every probe reached the awaited state before the deadline.
    pub reached: bool,
    /// Per probe, in the order they were added.
    pub probes: Vec<WaitOutcome>,
}

impl MonitorOutcome {
    /// The messages of the probes that did not reach the state, for an error report.
    pub fn failures(&self) -> Vec<String> {
        self.probes
            .iter()
            .filter(|p| !p.reached)
            .map(|p| match &p.last {
                Some(result) => result.message.clone(),
                None => format!("{}: no result before the deadline", p.target),
            })
            .collect()
    }
}

impl Monitor {
    /// An empty monitor (healthy: nothing to wait for).
    pub fn new() -> Self {
        Monitor::default()
    }

    /// Adds a probe.
    pub fn add(&mut self, probe: Arc<dyn HealthProbe>, options: RunnerOptions) -> &mut Self {
        self.runners.push(ProbeRunner::new(probe, options));
        self
    }

    /// The runners, for their states and last results.
    pub fn runners(&self) -> &[ProbeRunner] {
        &self.runners
    }

    /// Runs every probe concurrently until each is healthy or `deadline` passes.
    pub async fn wait_until_healthy(&mut self, deadline: Instant) -> MonitorOutcome {
        let probes = futures::future::join_all(
            self.runners
                .iter_mut()
                .map(|r| r.wait_until_healthy(deadline)),
        )
        .await;
        MonitorOutcome {
            reached: probes.iter().all(|p| p.reached),
            probes,
        }
    }

    /// Runs every probe concurrently until one is unhealthy (a fault is detected) or
    /// `deadline` passes. `reached` is true as soon as any probe turned unhealthy.
    pub async fn wait_until_any_unhealthy(&mut self, deadline: Instant) -> MonitorOutcome {
        let detected = CancellationToken::new();
        let probes = futures::future::join_all(self.runners.iter_mut().map(|runner| {
            let detected = &detected;
            async move {
                let outcome = runner
                    .wait_for(HealthState::Unhealthy, deadline, detected)
                    .await;
                if outcome.reached {
                    detected.cancel();
                }
                outcome
            }
        }))
        .await;
        MonitorOutcome {
            reached: probes.iter().any(|p| p.reached),
            probes,
        }
    }
}
