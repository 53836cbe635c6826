//! Running a drill ([`run_drill`]) and reverting one by hand ([`revert_drill`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use drp_backup::{BackupStore, BackupStoreExt, StoreError};
use drp_monitor::{HealthProbe, Monitor, Notifications, RetryPolicy, StackRef};
use drp_provision::{Fault, FaultError, Transport};
use rand::seq::IndexedRandom;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::record::redact;
use super::record::*;
use super::{DRILL_LOCK_KEY, DrillError, fault_id, plan_for_drill};
use crate::executor::journal::{self, new_run_id};
use crate::executor::lock::LockRecord;
use crate::executor::{EventKind, EventSink, StepOutcome};
use crate::plan::{DrillMode, Host, Plan, Probe, Scenario, format_duration};
use crate::recover::{
    ApproveAll, HOST_ADDRESS_FACT, RecoverOptions, probe as stack_probe, recover,
};

/// How to run a drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The scenario's name.
    pub scenario: String,
    /// The drill's id (default: a new one).
    pub drill_id: Option<String>,
    /// How often a surprise drill looks for the stacks (and the team's recovery runs).
    pub poll_interval: Duration,
}

impl DrillOptions {
    /// Defaults: a look every 2 s.
    pub fn new(scenario: impl Into<String>) -> DrillOptions {
        DrillOptions {
            scenario: scenario.into(),
            drill_id: None,
            poll_interval: Duration::from_secs(2),
        }
    }
}

/// Sees a drill as it goes.
pub trait DrillObserver: Send + Sync {
    /// The drill's id, before anything happens.
    fn started(&self, _drill: &str) {}
    /// A line of the drill's story (also kept in its record's timeline).
    fn line(&self, time: jiff::Timestamp, what: &str);
    /// Where the events of drp's own recovery go (automatic mode), besides its journal.
    fn recovery_events(&self) -> Option<Arc<dyn EventSink>> {
        None
    }
}

/// Sees nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl DrillObserver for NoObserver {
    fn line(&self, _time: jiff::Timestamp, _what: &str) {}
}

/// The record, kept in the store as it changes.
struct Recorder {
    record: tokio::sync::Mutex<DrillRecord>,
    store: Arc<dyn BackupStore>,
    observer: Arc<dyn DrillObserver>,
    /// The plan's secret values: hidden from the record and the observer.
    secrets: Vec<String>,
}

impl Recorder {
    /// Adds a line to the story and saves the record. A store that fails does not stop the
    /// drill (the fault must still be reverted); the failure joins the deviations.
    async fn note(&self, what: impl Into<String>) {
        let what = what.into();
        let mut record = self.record.lock().await;
        record.log(what.clone());
        self.observer
            .line(jiff::Timestamp::now(), &redact(&what, &self.secrets));
        self.save_locked(&mut record).await;
    }

    async fn update(&self, change: impl FnOnce(&mut DrillRecord)) {
        let mut record = self.record.lock().await;
        change(&mut record);
        self.save_locked(&mut record).await;
    }

    async fn save_locked(&self, record: &mut DrillRecord) {
        if let Err(e) = record.save(self.store.as_ref(), &self.secrets).await {
            let problem = format!("the drill record could not be saved: {e}");
            if !record.deviations.contains(&problem) {
                record.deviations.push(problem);
            }
        }
    }

    async fn snapshot(&self) -> DrillRecord {
        self.record.lock().await.clone()
    }
}

/// Runs scenario `options.scenario` of `plan` (see the module docs). `cancel` (Ctrl-C)
/// stops it early: the fault is reverted and the drill recorded as aborted.
///
/// Returns the record of a drill that ran, passed or not; an error when it could not start
/// (unknown scenario, another drill running, steady state not holding, injection failed —
/// in which case nothing stays injected).
pub async fn run_drill(
    plan: Arc<Plan>,
    store: Arc<dyn BackupStore>,
    options: DrillOptions,
    observer: Arc<dyn DrillObserver>,
    cancel: CancellationToken,
) -> Result<DrillRecord, DrillError> {
    let scenario = plan
        .scenarios
        .get(&options.scenario)
        .cloned()
        .ok_or_else(|| DrillError::UnknownScenario {
            name: options.scenario.clone(),
            known: if plan.scenarios.is_empty() {
                "it has none".into()
            } else {
                format!(
                    "it has {}",
                    plan.scenarios
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        })?;
    let id = options.drill_id.clone().unwrap_or_else(new_run_id);
    if !journal::valid_run_id(&id) {
        return Err(DrillError::InvalidId(id));
    }

    // The blast radius, resolved once.
    let candidates = scenario.targets.hosts(&plan);
    let count = scenario.blast_radius.of(candidates.len());
    let mut chosen: Vec<Host> = candidates
        .choose_multiple(&mut rand::rng(), count)
        .map(|h| (*h).clone())
        .collect();
    chosen.sort_by_key(|h| plan.hosts.iter().position(|p| p.name == h.name));
    let stacks = scenario.stacks_hit(&plan, &chosen.iter().collect::<Vec<_>>());
    if stacks.is_empty() {
        return Err(DrillError::NoStacks(scenario.name.clone()));
    }

    let holder = LockRecord::for_this_process(&id);
    acquire_drill_lock(store.as_ref(), &holder, &scenario.name).await?;
    observer.started(&id);

    let fault = Fault::new(scenario.fault.clone(), &id);
    let record = DrillRecord {
        drill: id.clone(),
        plan: plan.name.clone(),
        plan_digest: plan.digest.clone(),
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        mode: scenario.mode,
        state: DrillState::Running,
        holder: format!("{} (pid {})", holder.holder, holder.pid),
        started_at: jiff::Timestamp::now(),
        finished_at: None,
        fault: fault.describe(),
        fault_spec: scenario.fault.clone(),
        dead_man_ms: millis(scenario.duration),
        targets_rule: scenario.targets.to_string(),
        blast_radius: scenario.blast_radius.to_string(),
        candidates: candidates.len(),
        targets: chosen
            .iter()
            .map(|h| TargetHost {
                host: h.name.clone(),
                address: h.address.to_string(),
                datacenter: h.datacenter.clone(),
                injected_at: None,
                reverted_at: None,
                reverted_by: None,
                fault_id: Some(fault_id(&id, &h.name)),
            })
            .collect(),
        stacks: stacks.clone(),
        expectations: Expectations {
            detect_within_ms: scenario.detect_within.map(millis),
            recover_within_ms: scenario.recover_within.map(millis),
        },
        steady_state: Vec::new(),
        marks: Marks::default(),
        alerts: Vec::new(),
        recovery_runs: Vec::new(),
        stack_results: Vec::new(),
        notifications: Vec::new(),
        timeline: Vec::new(),
        deviations: Vec::new(),
        abort_reason: None,
        checks: Vec::new(),
    };
    let recorder = Arc::new(Recorder {
        record: tokio::sync::Mutex::new(record),
        store: store.clone(),
        observer,
        secrets: crate::recover::plan_secrets(&plan),
    });
    let drill = Drill {
        plan: Arc::new(plan_for_drill(&plan, &scenario)),
        store: store.clone(),
        scenario,
        hosts: chosen,
        stacks,
        fault,
        recorder: recorder.clone(),
        options,
        cancel,
    };
    let result = drill.run().await;
    let _ = release_drill_lock(store.as_ref(), &id).await;
    result?;
    Ok(recorder.snapshot().await.redacted(&recorder.secrets))
}

struct Drill {
    plan: Arc<Plan>,
    store: Arc<dyn BackupStore>,
    scenario: Scenario,
    hosts: Vec<Host>,
    stacks: Vec<String>,
    fault: Fault,
    recorder: Arc<Recorder>,
    options: DrillOptions,
    cancel: CancellationToken,
}

/// A plan probe made ready to run, or why it cannot be.
type BuiltProbe = Result<Arc<dyn HealthProbe>, String>;

/// How the watch after the injection ended.
enum Ending {
    /// Every stack healthy again.
    Recovered,
    /// The duration cap passed first.
    TimeUp,
    /// The recovery ended without every stack back (why).
    NotRecovered(String),
    /// Stopped early, for this reason.
    Aborted(String),
}

impl Drill {
    async fn run(&self) -> Result<(), DrillError> {
        let r = &self.recorder;
        let hosts: Vec<String> = self.hosts.iter().map(|h| h.name.clone()).collect();
        r.note(format!(
            "drill of scenario {} ({} mode): {} on {} ({} of {} matched by {}, blast radius {}); \
             stacks: {}",
            self.scenario.name,
            self.scenario.mode.as_str(),
            self.fault.describe(),
            hosts.join(", "),
            self.hosts.len(),
            r.snapshot().await.candidates,
            self.scenario.targets,
            self.scenario.blast_radius,
            self.stacks.join(", ")
        ))
        .await;

        // Steady state: nothing is injected into a system that is already unwell.
        let checks = self.steady_state().await;
        let unhealthy: Vec<String> = checks
            .iter()
            .filter(|c| !c.healthy)
            .map(|c| {
                redact(
                    &format!("{} probe {}: {}", c.of, c.probe, c.message),
                    &r.secrets,
                )
            })
            .collect();
        r.update(|rec| rec.steady_state = checks).await;
        if !unhealthy.is_empty() {
            r.update(|rec| {
                rec.state = DrillState::NotStarted;
                rec.finished_at = Some(jiff::Timestamp::now());
            })
            .await;
            r.note("steady state does not hold: nothing injected").await;
            return Err(DrillError::SteadyState(unhealthy));
        }
        r.note("steady state holds").await;

        let receiver = match self.scenario.alert_receiver {
            None => None,
            Some(addr) => Some(
                drp_monitor::AlertReceiver::bind(addr, Default::default())
                    .await
                    .map_err(|source| DrillError::AlertReceiver { addr, source })?,
            ),
        };
        if let Some(receiver) = &receiver {
            r.note(format!(
                "alert receiver listening on http://{}/",
                receiver.local_addr()
            ))
            .await;
        }

        let stack_refs = self.stack_refs();
        self.notify(drp_monitor::Event::DrillStarted {
            run_id: self.id().await,
            scenario: self.scenario.name.clone(),
            stacks: stack_refs.clone(),
        })
        .await;

        self.inject().await?;
        let t0 = r.snapshot().await.marks.injected.expect("set by inject");
        let t0_instant = Instant::now();
        self.notify(drp_monitor::Event::FaultInjected {
            run_id: self.id().await,
            fault: self.fault.describe(),
            hosts: self.hosts.iter().map(|h| h.name.clone()).collect(),
        })
        .await;

        let cap = t0_instant + self.scenario.duration;
        let ending = self.watch(t0, cap, receiver.as_ref()).await;
        match &ending {
            Ending::Recovered => r.note("every stack is healthy again").await,
            Ending::TimeUp => {
                r.note(format!(
                    "the duration cap ({}) passed before every stack was healthy",
                    format_duration(self.scenario.duration)
                ))
                .await;
            }
            Ending::NotRecovered(why) => r.note(why.clone()).await,
            Ending::Aborted(why) => {
                let why = why.clone();
                r.update(|rec| rec.abort_reason = Some(why.clone())).await;
                r.note(format!("aborting: {why}")).await;
            }
        }

        self.revert().await;
        if let Some(receiver) = receiver {
            let alerts: Vec<Detection> = receiver
                .alerts()
                .into_iter()
                .map(|a| Detection {
                    time: a.received_at,
                    source: a.source.clone(),
                    detail: alert_summary(&a),
                })
                .collect();
            receiver.shutdown().await;
            r.update(|rec| rec.alerts = alerts).await;
        }

        let aborted = matches!(ending, Ending::Aborted(_));
        r.update(|rec| {
            rec.state = if aborted {
                DrillState::Aborted
            } else {
                DrillState::Finished
            };
            rec.finished_at = Some(jiff::Timestamp::now());
            rec.checks = checks_of(rec);
        })
        .await;
        let record = r.snapshot().await;
        r.note(format!(
            "drill {}: time to detect {}, downtime {}",
            record.verdict(),
            record
                .time_to_detect_ms()
                .map_or("not detected".into(), crate::report::short_duration),
            record
                .downtime_ms()
                .map_or("not recovered".into(), crate::report::short_duration),
        ))
        .await;
        let problems: Vec<String> = record
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: expected {}, got {}", c.name, c.expected, c.actual))
            .chain(record.abort_reason.iter().cloned())
            .collect();
        self.notify(drp_monitor::Event::DrillFinished {
            run_id: record.drill.clone(),
            passed: record.passed(),
            time_to_detect: record.time_to_detect_ms().map(Duration::from_millis),
            time_to_recover: record.downtime_ms().map(Duration::from_millis),
            problems,
        })
        .await;
        Ok(())
    }

    async fn id(&self) -> String {
        self.recorder.record.lock().await.drill.clone()
    }

    fn stack_refs(&self) -> Vec<StackRef> {
        self.stacks
            .iter()
            .filter_map(|s| self.plan.stacks.get(s))
            .map(|s| StackRef::new(&s.name, &s.customer))
            .collect()
    }

    /// The probes of `stack` pointed at `address` (`{host}`), reached through `transport`.
    fn stack_probes(
        &self,
        stack: &str,
        address: &str,
        transport: &Arc<dyn Transport>,
    ) -> Vec<(Probe, BuiltProbe)> {
        let Some(s) = self.plan.stacks.get(stack) else {
            return Vec::new();
        };
        s.probes
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    stack_probe::build(p, address, stack, transport.clone()),
                )
            })
            .collect()
    }

    /// The drill's fault as it is on `host` (its traces there named after it).
    fn fault_on(&self, host: &Host) -> Fault {
        Fault::new(
            self.scenario.fault.clone(),
            &fault_id(self.fault.id(), &host.name),
        )
    }

    /// Where a stack runs before the fault: its host in the plan.
    fn home(&self, stack: &str) -> Option<Host> {
        let name = self.plan.stacks.get(stack)?.host.as_ref()?;
        self.plan.host(name).cloned()
    }

    fn abort_probes(&self) -> Vec<(Probe, BuiltProbe)> {
        let local: Arc<dyn Transport> = Arc::new(drp_provision::LocalTransport::new());
        self.scenario
            .abort_probes
            .iter()
            .map(|p| (p.clone(), stack_probe::build(p, "", "", local.clone())))
            .collect()
    }

    async fn steady_state(&self) -> Vec<ProbeCheck> {
        let mut waits = Vec::new();
        let deadline = Instant::now() + self.scenario.steady_state_within;
        // `steady_state = false` skips the stacks' probes (e.g. a stack known to be down
        // already); the abort probes are always checked.
        let stacks = if self.scenario.steady_state {
            &self.stacks[..]
        } else {
            &[]
        };
        for stack in stacks {
            let Some(home) = self.home(stack) else {
                continue;
            };
            let transport = home.transport();
            for (probe, built) in self.stack_probes(stack, &home.address.host, &transport) {
                waits.push((stack.clone(), probe, built));
            }
        }
        for (probe, built) in self.abort_probes() {
            waits.push(("abort".to_string(), probe, built));
        }
        let checks = waits.into_iter().map(|(of, probe, built)| async move {
            match built {
                Err(e) => ProbeCheck {
                    of,
                    probe: probe.name.clone(),
                    healthy: false,
                    message: e,
                },
                Ok(built) => {
                    let mut runner = drp_monitor::ProbeRunner::new(
                        built,
                        drp_monitor::RunnerOptions {
                            failure_threshold: u32::MAX,
                            ..probe.spec.runner_options()
                        },
                    );
                    let outcome = runner.wait_until_healthy(deadline).await;
                    ProbeCheck {
                        of,
                        probe: probe.name.clone(),
                        healthy: outcome.reached,
                        message: outcome.last.map_or_else(
                            || "no result before the deadline".to_string(),
                            |l| l.message,
                        ),
                    }
                }
            }
        });
        futures::future::join_all(checks).await
    }

    /// Injects on every target at once; T0 is when the last one holds. If any fails, the
    /// others are reverted and the drill does not start.
    async fn inject(&self) -> Result<(), DrillError> {
        let r = &self.recorder;
        let dead_man = self.scenario.duration;
        let results = futures::future::join_all(self.hosts.iter().map(|host| async move {
            let transport = host.transport();
            let result = self
                .fault_on(host)
                .inject(transport.as_ref(), dead_man)
                .await;
            (host, result, jiff::Timestamp::now())
        }))
        .await;
        let mut failures = Vec::new();
        let mut unreachable = true;
        for (host, result, time) in &results {
            match result {
                Ok(()) => {
                    let (name, time) = (host.name.clone(), *time);
                    r.update(|rec| {
                        if let Some(t) = rec.targets.iter_mut().find(|t| t.host == name) {
                            t.injected_at = Some(time);
                        }
                    })
                    .await;
                    r.note(format!(
                        "{} injected on {} (reverts itself after {} if drp cannot)",
                        self.fault.describe(),
                        host.name,
                        format_duration(dead_man)
                    ))
                    .await;
                }
                Err(e) => {
                    unreachable &= matches!(e, FaultError::Transport { .. });
                    failures.push(redact(&format!("{}: {e}", host.name), &r.secrets));
                }
            }
        }
        if !failures.is_empty() {
            r.note(format!(
                "injection failed ({}): reverting the hosts where it succeeded",
                failures.join("; ")
            ))
            .await;
            self.revert().await;
            r.update(|rec| {
                rec.state = DrillState::NotStarted;
                rec.finished_at = Some(jiff::Timestamp::now());
            })
            .await;
            return Err(DrillError::Inject {
                problems: failures.join("; "),
                unreachable,
            });
        }
        let t0 = results
            .iter()
            .map(|(_, _, t)| *t)
            .max()
            .unwrap_or_else(jiff::Timestamp::now);
        r.update(|rec| rec.marks.injected = Some(t0)).await;
        Ok(())
    }

    /// From T0 until every stack is healthy again, the cap, or an abort.
    async fn watch(
        &self,
        t0: jiff::Timestamp,
        cap: Instant,
        receiver: Option<&drp_monitor::AlertReceiver>,
    ) -> Ending {
        let detected = CancellationToken::new();
        let detect_by_probe = self.detect_by_probe(t0, cap, detected.clone());
        let detect_by_alert = async {
            if let Some(receiver) = receiver {
                // Alerts from before the fault (a flapping check) are not detections.
                let after_t0 =
                    |a: &drp_monitor::ReceivedAlert| a.is_firing() && a.received_at >= t0;
                if let Some(alert) = receiver.wait_for(after_t0, cap).await {
                    let detection = Detection {
                        time: alert.received_at,
                        source: format!("alert from {}", alert.source),
                        detail: alert_summary(&alert),
                    };
                    self.detected(t0, detection, false).await;
                    detected.cancel();
                }
            }
            std::future::pending::<()>().await;
        };
        let aborts = self.abort_watch(cap);
        let recovery = async {
            match self.scenario.mode {
                DrillMode::Automatic => {
                    // Like a real failover: recovery starts when the fault is noticed.
                    tokio::select! {
                        () = detected.cancelled() => {}
                        () = tokio::time::sleep_until(cap) => return Ending::TimeUp,
                    }
                    self.recover_automatically(t0, cap).await
                }
                DrillMode::Surprise => self.observe_team(t0, cap).await,
            }
        };
        tokio::select! {
            ending = recovery => ending,
            why = aborts => Ending::Aborted(why),
            () = self.cancel.cancelled() => Ending::Aborted("interrupted by the operator".into()),
            () = async { detect_by_probe.await; std::future::pending::<()>().await } => unreachable!(),
            () = detect_by_alert => unreachable!(),
        }
    }

    /// T1 by drp's own probes: the stacks' probes, still pointed at their homes.
    async fn detect_by_probe(
        &self,
        t0: jiff::Timestamp,
        cap: Instant,
        detected: CancellationToken,
    ) {
        let mut monitor = Monitor::new();
        let mut names = Vec::new();
        for stack in &self.stacks {
            let Some(home) = self.home(stack) else {
                continue;
            };
            let transport = home.transport();
            for (probe, built) in self.stack_probes(stack, &home.address.host, &transport) {
                if let Ok(built) = built {
                    monitor.add(built, probe.spec.runner_options());
                    names.push(format!("probe {stack}/{}", probe.name));
                }
            }
        }
        let outcome = monitor.wait_until_any_unhealthy(cap).await;
        if !outcome.reached {
            return;
        }
        let time = jiff::Timestamp::now();
        if let Some((i, wait)) = outcome
            .probes
            .iter()
            .enumerate()
            .find(|(_, p)| p.state == drp_monitor::HealthState::Unhealthy)
        {
            let detection = Detection {
                time,
                source: names[i].clone(),
                detail: wait
                    .last
                    .as_ref()
                    .map_or_else(String::new, |l| l.message.clone()),
            };
            self.detected(t0, detection, true).await;
            detected.cancel();
        }
    }

    async fn detected(&self, t0: jiff::Timestamp, detection: Detection, by_probe: bool) {
        let source = detection.source.clone();
        let ttd = millis_between(t0, detection.time);
        let first = {
            let mut record = self.recorder.record.lock().await;
            let first = record.first_detection().is_none();
            if by_probe {
                record.marks.detected_by_probe = Some(detection.clone());
            } else {
                record.marks.detected_by_alert = Some(detection.clone());
            }
            first
        };
        self.recorder
            .note(format!(
                "detected by {source} after {}: {}",
                crate::report::short_duration(ttd),
                detection.detail
            ))
            .await;
        if first {
            self.notify(drp_monitor::Event::FaultDetected {
                run_id: self.id().await,
                detected_by: source,
                time_to_detect: Duration::from_millis(ttd),
            })
            .await;
        }
    }

    /// Resolves with the reason when an abort probe turns unhealthy (never otherwise).
    async fn abort_watch(&self, cap: Instant) -> String {
        let mut monitor = Monitor::new();
        let mut names = Vec::new();
        for (probe, built) in self.abort_probes() {
            if let Ok(built) = built {
                monitor.add(built, probe.spec.runner_options());
                names.push(probe.name.clone());
            }
        }
        if names.is_empty() {
            return std::future::pending().await;
        }
        let outcome = monitor.wait_until_any_unhealthy(cap).await;
        if !outcome.reached {
            return std::future::pending().await;
        }
        outcome
            .probes
            .iter()
            .enumerate()
            .find(|(_, p)| p.state == drp_monitor::HealthState::Unhealthy)
            .map_or_else(
                || "an abort probe failed".into(),
                |(i, p)| {
                    format!(
                        "abort probe {} failed: {}",
                        names[i],
                        p.last.as_ref().map_or("", |l| l.message.as_str())
                    )
                },
            )
    }

    /// Automatic mode: drp's recovery of the hit stacks, an ordinary journaled run.
    async fn recover_automatically(&self, t0: jiff::Timestamp, cap: Instant) -> Ending {
        let r = &self.recorder;
        let run_id = format!("{}-recovery", self.id().await);
        let started = jiff::Timestamp::now();
        r.update(|rec| {
            rec.marks.recovery_started = Some(started);
            rec.recovery_runs.push(run_id.clone());
        })
        .await;
        r.note(format!(
            "recovering {} onto datacenter {} (run {run_id})",
            self.stacks.join(", "),
            self.plan.recovery.target_datacenter
        ))
        .await;
        let options = RecoverOptions {
            stacks: self.stacks.clone(),
            incident_start: Some(t0),
            run_id: Some(run_id.clone()),
            ..RecoverOptions::default()
        };
        let progress: Arc<dyn EventSink> = match r.observer.recovery_events() {
            Some(sink) => sink,
            None => Arc::new(crate::executor::MemorySink::new()),
        };
        let recovery = recover(
            self.plan.clone(),
            self.store.clone(),
            options,
            Arc::new(ApproveAll),
            progress,
        );
        let recovery = match tokio::time::timeout_at(cap, recovery).await {
            Err(_) => return Ending::TimeUp,
            Ok(Err(e)) => {
                let why = format!("recovery could not run: {e}");
                r.update(|rec| rec.deviations.push(why.clone())).await;
                return Ending::NotRecovered(why);
            }
            Ok(Ok(recovery)) => recovery,
        };
        // Facts of the run: where each stack came back.
        let events = journal::read_local_journal(&recovery.local_journal).unwrap_or_default();
        let addresses = recovered_addresses(&events);
        let deviations = deviations_of(&events);
        let mut results = Vec::new();
        for m in &recovery.measurements.stacks {
            results.push(DrillStack {
                stack: m.stack.clone(),
                healthy_at: m
                    .rto_ms
                    .and_then(|ms| t0.checked_add(Duration::from_millis(ms)).ok()),
                healthy_on: addresses.get(&m.stack).cloned(),
                rto_ms: m.rto_ms,
                rpo_ms: m.rpo_ms,
                snapshot: m.snapshot.clone(),
            });
        }
        let all = recovery.all_recovered();
        let healthy = results.iter().filter_map(|s| s.healthy_at).max();
        r.update(|rec| {
            rec.stack_results = results;
            rec.deviations.extend(deviations);
            if all {
                rec.marks.healthy = healthy;
            }
        })
        .await;
        if all {
            Ending::Recovered
        } else {
            Ending::NotRecovered(format!(
                "recovery run {run_id} ended with {} of {} stacks recovered",
                recovery.summary.count("recovered"),
                self.stacks.len()
            ))
        }
    }

    /// Surprise mode: the team recovers; drp looks for the stacks at home and wherever the
    /// team's `drp recover` runs put them, until all are healthy.
    async fn observe_team(&self, t0: jiff::Timestamp, cap: Instant) -> Ending {
        let r = &self.recorder;
        let mut healthy: BTreeMap<String, (jiff::Timestamp, String)> = BTreeMap::new();
        let drill_id = self.id().await;
        loop {
            let (runs, addresses) = team_runs(self.store.as_ref(), &drill_id, t0).await;
            let known: Vec<String> = r.snapshot().await.recovery_runs;
            for (run, started) in &runs {
                if !known.contains(run) {
                    let (run, started) = (run.clone(), *started);
                    r.update(|rec| {
                        rec.recovery_runs.push(run.clone());
                        if rec.marks.recovery_started.is_none() {
                            rec.marks.recovery_started = Some(started);
                        }
                    })
                    .await;
                    r.note(format!("the team started recovery run {run}")).await;
                }
            }
            for stack in &self.stacks {
                if healthy.contains_key(stack) {
                    continue;
                }
                let mut places: Vec<(String, Arc<dyn Transport>)> = Vec::new();
                if let Some(home) = self.home(stack) {
                    places.push((home.address.host.clone(), home.transport()));
                }
                if let Some((address, host)) = addresses.get(stack) {
                    let transport = match self.plan.host(host) {
                        Some(h) => h.transport(),
                        None => Arc::new(drp_provision::LocalTransport::new()),
                    };
                    places.push((address.clone(), transport));
                }
                for (address, transport) in places {
                    let probes = self.stack_probes(stack, &address, &transport);
                    let mut all = !probes.is_empty();
                    for (_, built) in probes {
                        all &= match built {
                            Ok(p) => p.check().await.healthy,
                            Err(_) => false,
                        };
                    }
                    if all {
                        healthy.insert(stack.clone(), (jiff::Timestamp::now(), address.clone()));
                        r.note(format!("stack {stack} is healthy on {address}"))
                            .await;
                        break;
                    }
                }
            }
            if healthy.len() == self.stacks.len() {
                let results: Vec<DrillStack> = healthy
                    .iter()
                    .map(|(stack, (time, address))| DrillStack {
                        stack: stack.clone(),
                        healthy_at: Some(*time),
                        healthy_on: Some(address.clone()),
                        rto_ms: Some(millis_between(t0, *time)),
                        rpo_ms: None,
                        snapshot: None,
                    })
                    .collect();
                let last = healthy.values().map(|(t, _)| *t).max();
                r.update(|rec| {
                    rec.stack_results = results;
                    rec.marks.healthy = last;
                })
                .await;
                return Ending::Recovered;
            }
            if Instant::now() + self.options.poll_interval >= cap {
                let results: Vec<DrillStack> = self
                    .stacks
                    .iter()
                    .map(|stack| DrillStack {
                        stack: stack.clone(),
                        healthy_at: healthy.get(stack).map(|h| h.0),
                        healthy_on: healthy.get(stack).map(|h| h.1.clone()),
                        rto_ms: healthy.get(stack).map(|h| millis_between(t0, h.0)),
                        rpo_ms: None,
                        snapshot: None,
                    })
                    .collect();
                r.update(|rec| rec.stack_results = results).await;
                tokio::time::sleep_until(cap).await;
                return Ending::TimeUp;
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }

    /// Reverts on every target at once. A host drp cannot reach (a blackhole that cut drp
    /// off too) is left to its dead-man timer: drp keeps trying until the timer must have
    /// fired, then records who reverted it.
    async fn revert(&self) {
        let r = &self.recorder;
        let injected: Vec<String> = r
            .snapshot()
            .await
            .targets
            .iter()
            .filter(|t| t.injected_at.is_some() && t.reverted_at.is_none())
            .map(|t| t.host.clone())
            .collect();
        let dead_man = self.scenario.duration;
        let outcomes =
            futures::future::join_all(
                self.hosts
                    .iter()
                    .filter(|h| injected.contains(&h.name))
                    .map(|host| async move {
                        revert_host(&self.fault_on(host), host, dead_man, r).await
                    }),
            )
            .await;
        let all_done = outcomes.iter().all(|done| *done);
        let now = jiff::Timestamp::now();
        r.update(|rec| {
            if all_done {
                rec.marks.reverted = rec
                    .targets
                    .iter()
                    .filter_map(|t| t.reverted_at)
                    .max()
                    .or(Some(now));
            }
        })
        .await;
    }

    async fn notify(&self, event: drp_monitor::Event) {
        let mut notifications = Notifications::new(RetryPolicy::default());
        for name in &self.plan.recovery.notify {
            if let Some(Ok(built)) = self.plan.notifier_spec(name).map(|spec| spec.build()) {
                notifications.add(built);
            }
        }
        let report = notifications.send(&event).await;
        let time = jiff::Timestamp::now();
        let sent: Vec<SentNotification> = report
            .deliveries
            .iter()
            .filter(|d| d.audience.is_some())
            .map(|d| SentNotification {
                time,
                event: report.event.as_str().to_string(),
                notifier: d.notifier.clone(),
                audience: d.audience.map(|a| a.as_str().to_string()),
                error: d.error.clone(),
            })
            .collect();
        self.recorder
            .update(|rec| rec.notifications.extend(sent))
            .await;
    }
}

/// Reverts on one host, retrying until its dead-man timer must have fired. True when the
/// host is known to be reverted.
async fn revert_host(fault: &Fault, host: &Host, dead_man: Duration, r: &Recorder) -> bool {
    let started = jiff::Timestamp::now();
    let injected_at = r
        .snapshot()
        .await
        .targets
        .iter()
        .find(|t| t.host == host.name)
        .and_then(|t| t.injected_at)
        .unwrap_or(started);
    // The timer fires `dead_man` after injection; give the host a minute more to answer.
    let give_up = injected_at
        .checked_add(dead_man + Duration::from_secs(60))
        .unwrap_or(started);
    let mut first_error = None;
    loop {
        let transport = host.transport();
        let attempt =
            tokio::time::timeout(Duration::from_secs(30), fault.revert(transport.as_ref())).await;
        match attempt {
            Ok(Ok(())) => {
                let now = jiff::Timestamp::now();
                let by_timer = first_error.is_some()
                    && now >= injected_at.checked_add(dead_man).unwrap_or(now);
                let by = if by_timer {
                    "its dead-man timer (drp could not reach it before)"
                } else {
                    "drp"
                };
                let name = host.name.clone();
                r.update(|rec| {
                    if let Some(t) = rec.targets.iter_mut().find(|t| t.host == name) {
                        t.reverted_at = Some(now);
                        t.reverted_by = Some(by.to_string());
                    }
                    if by_timer {
                        rec.deviations.push(format!(
                            "{name}: drp could not revert the fault ({}); its dead-man timer did",
                            first_error.as_deref().unwrap_or("")
                        ));
                    }
                })
                .await;
                r.note(format!("fault reverted on {} by {by}", host.name))
                    .await;
                return true;
            }
            Ok(Err(e)) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                first_error.get_or_insert_with(|| "no answer within 30s".to_string());
            }
        }
        if jiff::Timestamp::now() >= give_up {
            let problem = format!(
                "{}: the fault could not be reverted and the host did not answer after its \
                 dead-man timer: {}",
                host.name,
                first_error.as_deref().unwrap_or("")
            );
            r.update(|rec| rec.deviations.push(problem.clone())).await;
            r.note(problem).await;
            return false;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Reverts drill `id` by hand (`drp drill revert`): on every target of its record, whatever
/// state it is in, then records it. Idempotent.
pub async fn revert_drill(
    store: Arc<dyn BackupStore>,
    plan: &Plan,
    id: &str,
) -> Result<DrillRecord, DrillError> {
    let mut record = load_record(store.as_ref(), id).await?;
    let mut problems = Vec::new();
    let mut unreachable = true;
    for target in &mut record.targets {
        let Some(host) = plan.host(&target.host) else {
            problems.push(format!("{}: not in the plan any more", target.host));
            unreachable = false;
            continue;
        };
        // Older records name no per-host id: the drill's id was the fault's everywhere.
        let fault = Fault::new(
            record.fault_spec.clone(),
            target.fault_id.as_deref().unwrap_or(id),
        );
        match fault.revert(host.transport().as_ref()).await {
            Ok(()) => {
                if target.reverted_at.is_none() {
                    target.reverted_at = Some(jiff::Timestamp::now());
                    target.reverted_by = Some("hand (drp drill revert)".into());
                }
            }
            Err(e) => {
                unreachable &= matches!(e, FaultError::Transport { .. });
                problems.push(format!("{}: {e}", target.host));
            }
        }
    }
    let secrets = crate::recover::plan_secrets(plan);
    let problems: Vec<String> = problems.iter().map(|p| redact(p, &secrets)).collect();
    let done = problems.is_empty();
    record.log(if done {
        "reverted by hand (drp drill revert)".to_string()
    } else {
        format!("revert by hand failed: {}", problems.join("; "))
    });
    if done {
        if record.marks.reverted.is_none() && record.marks.injected.is_some() {
            record.marks.reverted = record.targets.iter().filter_map(|t| t.reverted_at).max();
            record
                .deviations
                .push("the fault was reverted by hand (drp drill revert)".into());
        }
        if record.state == DrillState::Running {
            record.state = DrillState::Aborted;
            record.abort_reason = Some("the drill's process ended before it finished".into());
            record.finished_at = Some(jiff::Timestamp::now());
            record.checks = checks_of(&record);
        }
    }
    record.save(store.as_ref(), &secrets).await?;
    let _ = release_drill_lock(store.as_ref(), id).await;
    if done {
        Ok(record)
    } else {
        Err(DrillError::Revert {
            drill: id.to_string(),
            problems,
            unreachable,
        })
    }
}

/// The checks a finished drill is judged by.
fn checks_of(record: &DrillRecord) -> Vec<Check> {
    let mut checks = Vec::new();
    let ttd = record.time_to_detect_ms();
    checks.push(Check {
        name: "detected".into(),
        expected: record.expectations.detect_within_ms.map_or_else(
            || "detected".into(),
            |ms| format!("within {}", crate::report::short_duration(ms)),
        ),
        actual: ttd.map_or("not detected".into(), |ms| {
            format!("after {}", crate::report::short_duration(ms))
        }),
        passed: match (ttd, record.expectations.detect_within_ms) {
            (Some(t), Some(limit)) => t <= limit,
            (Some(_), None) => true,
            (None, _) => false,
        },
    });
    let downtime = record.downtime_ms();
    checks.push(Check {
        name: "recovered".into(),
        expected: record.expectations.recover_within_ms.map_or_else(
            || "every stack healthy again".into(),
            |ms| {
                format!(
                    "every stack healthy within {}",
                    crate::report::short_duration(ms)
                )
            },
        ),
        actual: downtime.map_or_else(
            || {
                let healthy = record
                    .stack_results
                    .iter()
                    .filter(|s| s.healthy_at.is_some())
                    .count();
                format!("{healthy} of {} stacks healthy", record.stacks.len())
            },
            |ms| format!("downtime {}", crate::report::short_duration(ms)),
        ),
        passed: match (downtime, record.expectations.recover_within_ms) {
            (Some(d), Some(limit)) => d <= limit,
            (Some(_), None) => true,
            (None, _) => false,
        },
    });
    checks.push(Check {
        name: "reverted".into(),
        expected: "the fault reverted on every host".into(),
        actual: match record.marks.reverted {
            Some(_) => "reverted".into(),
            None => "not reverted everywhere".into(),
        },
        passed: record.marks.reverted.is_some(),
    });
    if let Some(reason) = &record.abort_reason {
        checks.push(Check {
            name: "not aborted".into(),
            expected: "ran to its end".into(),
            actual: reason.clone(),
            passed: false,
        });
    }
    checks
}

/// Recovery runs started after T0 (ids sort by time, so only newer ids are read), with
/// where each stack was put: stack → (address, host name).
async fn team_runs(
    store: &dyn BackupStore,
    drill_id: &str,
    t0: jiff::Timestamp,
) -> (
    Vec<(String, jiff::Timestamp)>,
    BTreeMap<String, (String, String)>,
) {
    let mut runs = Vec::new();
    let mut addresses = BTreeMap::new();
    let Ok(ids) = journal::list_runs(store).await else {
        return (runs, addresses);
    };
    // Ids start with their UTC start time to the second: runs of the drill's second or
    // later, whatever their random part, except the drill's own.
    let since = time_part(drill_id);
    for id in ids
        .into_iter()
        .filter(|id| time_part(id) >= since && !id.starts_with(drill_id))
    {
        let Ok(events) = journal::read_journal(store, &id).await else {
            continue;
        };
        let Some(started) = events
            .iter()
            .find(|e| matches!(e.kind, EventKind::RunStarted { .. }))
            .map(|e| e.time)
        else {
            continue;
        };
        if started < t0 {
            continue;
        }
        runs.push((id.clone(), started));
        for (stack, (address, host)) in recovered_hosts(&events) {
            addresses.insert(stack, (address, host));
        }
    }
    (runs, addresses)
}

/// The `20261129T101500Z` of a run or drill id.
fn time_part(id: &str) -> &str {
    id.split_once('-').map_or(id, |(time, _)| time)
}

/// stack → (address, host name) from the `acquire-host` steps of a run.
fn recovered_hosts(events: &[crate::executor::Event]) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for e in events {
        if let EventKind::StepFinished {
            stack,
            step,
            outcome: StepOutcome::Succeeded { facts, .. },
            ..
        } = &e.kind
            && step == "acquire-host"
            && let Some(address) = facts.get(HOST_ADDRESS_FACT)
        {
            let host = facts
                .get(crate::recover::HOST_FACT)
                .cloned()
                .unwrap_or_default();
            out.insert(stack.clone(), (address.clone(), host));
        }
    }
    out
}

fn recovered_addresses(events: &[crate::executor::Event]) -> BTreeMap<String, String> {
    recovered_hosts(events)
        .into_iter()
        .map(|(stack, (address, host))| (stack, format!("{address} ({host})")))
        .collect()
}

/// Failed attempts (retried or not) of a recovery run.
fn deviations_of(events: &[crate::executor::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepFinished {
                stack,
                step,
                attempt,
                outcome:
                    StepOutcome::Failed {
                        error, retry_in_ms, ..
                    },
            } => Some(format!(
                "stack {stack}: step {step} failed (attempt {attempt}{}): {error}",
                if retry_in_ms.is_some() {
                    ", retried"
                } else {
                    ""
                }
            )),
            _ => None,
        })
        .collect()
}

fn alert_summary(alert: &drp_monitor::ReceivedAlert) -> String {
    alert
        .label("alertname")
        .map(|name| format!("alert {name}"))
        .unwrap_or_else(|| "an alert".into())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn millis_between(from: jiff::Timestamp, to: jiff::Timestamp) -> u64 {
    Duration::try_from(to.duration_since(from)).map_or(0, millis)
}

/// The drill lock: one drill at a time per store.
async fn acquire_drill_lock(
    store: &dyn BackupStore,
    holder: &LockRecord,
    scenario: &str,
) -> Result<(), DrillError> {
    #[derive(serde::Serialize)]
    struct Held<'a> {
        #[serde(flatten)]
        holder: &'a LockRecord,
        scenario: &'a str,
    }
    let data = serde_json::to_vec(&Held { holder, scenario }).expect("serializes");
    if store
        .put_if_absent(DRILL_LOCK_KEY, Bytes::from(data))
        .await?
    {
        return Ok(());
    }
    let bytes = match store.get_bytes(DRILL_LOCK_KEY).await {
        Ok(bytes) => bytes,
        // Released in between: try once more.
        Err(StoreError::NotFound { .. }) => {
            return Box::pin(acquire_drill_lock(store, holder, scenario)).await;
        }
        Err(e) => return Err(e.into()),
    };
    let held: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let text = |k: &str| {
        held.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    Err(DrillError::Busy {
        drill: text("run_id"),
        scenario: text("scenario"),
        holder: format!(
            "{} pid {}",
            text("holder"),
            held.get("pid").and_then(|p| p.as_u64()).unwrap_or(0)
        ),
        since: text("acquired_at")
            .parse()
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    })
}

/// Releases the drill lock if `id` holds it.
async fn release_drill_lock(store: &dyn BackupStore, id: &str) -> Result<(), StoreError> {
    let bytes = match store.get_bytes(DRILL_LOCK_KEY).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let held: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if held.get("run_id").and_then(|v| v.as_str()) == Some(id) {
        store.delete(DRILL_LOCK_KEY).await?;
    }
    Ok(())
}
