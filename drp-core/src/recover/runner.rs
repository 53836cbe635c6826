//! [`PlanRunner`]: the [`StepRunner`] of `drp recover` — each step kind done for real, on
//! the plan's store, spare hosts (over SSH), Ansible, probes and notifiers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use drp_backup::{
    BackupStore, BackupStoreExt, Passphrase, Repository, RestoreDestination, RestoreOptions,
    SecretKeys, SnapshotSelector, StoreError, TrustedSigners,
};
use drp_monitor::{Monitor, Notifications, StackRef};
use drp_provision::{
    AnsibleOptions, AnsibleRunner, HostRequest, HostSpec, Provisioner, ScriptOptions,
    ScriptProvisioner, Transport,
};
use serde::{Deserialize, Serialize};

use super::Approver;
use super::probe;
use crate::executor::measure::{SNAPSHOT_FACT, SNAPSHOT_TIME_FACT};
use crate::executor::{
    FAILED_ERROR_FACT, FAILED_STEP_FACT, NotifyEvent, StepCall, StepError, StepKind, StepOutput,
    StepRunner,
};
use crate::plan::dry_run::choose_snapshot;
use crate::plan::{Host, Plan, ProvisionerKind, Reach, RestoreTarget, SecretRef, Stack};
use crate::remote::TransportHost;

/// Where host leases live in the store: `.drp/leases/HOST.json`.
pub const LEASES_PREFIX: &str = ".drp/leases";

/// Facts the `acquire-host` step hands to later steps (and to the journal).
pub const HOST_FACT: &str = "host";
/// The host's `[USER@]HOST[:PORT]`.
pub const ADDRESS_FACT: &str = "address";
/// What `{host}` becomes in probes: the host part of the address.
pub const HOST_ADDRESS_FACT: &str = "host_address";
/// The datacenter of a host a provisioner created (its SSH settings reach it).
pub const DATACENTER_FACT: &str = "datacenter";

/// Who holds a spare host (the lease object's content, JSON): a run, for one stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLease {
    /// The host.
    pub host: String,
    /// The run that took it.
    pub run_id: String,
    /// The stack it was taken for.
    pub stack: String,
    /// When.
    pub acquired_at: jiff::Timestamp,
}

/// The key of the lease of `host`.
pub fn lease_key(host: &str) -> String {
    format!("{LEASES_PREFIX}/{host}.json")
}

/// Runs the steps of a plan's stacks for real.
pub struct PlanRunner {
    plan: Arc<Plan>,
    store: Arc<dyn BackupStore>,
    approver: Arc<dyn Approver>,
    /// Snapshots at or before this time.
    at: Option<jiff::Timestamp>,
    /// RPO and notification times are measured from here.
    incident_start: jiff::Timestamp,
    trust: Option<TrustedSigners>,
    /// Per customer, loaded once.
    keys: Mutex<HashMap<String, SecretKeys>>,
    /// Per host name, connected once.
    transports: Mutex<HashMap<String, Arc<dyn Transport>>>,
    /// Spares this run has leased, host → stack. A spare here is known to be taken without
    /// asking the store: otherwise the k-th stack to look for a spare would try every spare
    /// the earlier ones took again, N²/2 store requests for N stacks (20,100 for 200).
    leased: Mutex<HashMap<String, String>>,
    /// Restore hosts by host name: one per host for the whole run, so that a restore that was
    /// cut off leaves its staging directory to the next restore on that host to remove (see
    /// [`crate::remote`]).
    restore_hosts: Mutex<HashMap<String, TransportHost>>,
    /// Secret values: hidden from what notifiers send (a failed command's stderr may echo
    /// one; the journal has its own [`Redact`](crate::executor::Redact)).
    secrets: Vec<String>,
}

impl std::fmt::Debug for PlanRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanRunner")
            .field("plan", &self.plan.name)
            .field("store", &self.store.to_string())
            .finish_non_exhaustive()
    }
}

impl PlanRunner {
    /// A runner over `plan`'s `store`.
    pub fn new(
        plan: Arc<Plan>,
        store: Arc<dyn BackupStore>,
        approver: Arc<dyn Approver>,
        at: Option<jiff::Timestamp>,
        incident_start: jiff::Timestamp,
    ) -> Result<PlanRunner, drp_backup::KeyError> {
        let plan_for_secrets = plan.clone();
        let trust = if plan.storage.trust.is_empty() {
            None
        } else {
            let paths: Vec<PathBuf> = plan.storage.trust.iter().map(|c| c.path.clone()).collect();
            Some(TrustedSigners::from_files(&paths)?)
        };
        Ok(PlanRunner {
            plan,
            store,
            approver,
            at,
            incident_start,
            trust,
            keys: Mutex::default(),
            transports: Mutex::default(),
            leased: Mutex::default(),
            restore_hosts: Mutex::default(),
            secrets: super::plan_secrets(&plan_for_secrets),
        })
    }

    fn stack(&self, name: &str) -> Result<&Stack, StepError> {
        self.plan
            .stacks
            .get(name)
            .ok_or_else(|| StepError::permanent(format!("stack {name} is not in the plan")))
    }

    fn transport(&self, host: &Host) -> Arc<dyn Transport> {
        let mut transports = self.transports.lock().unwrap_or_else(|e| e.into_inner());
        transports
            .entry(host.name.clone())
            .or_insert_with(|| host.transport())
            .clone()
    }

    /// The [`drp_backup::Host`] that restores onto `host` (inside the runtime).
    fn restore_host(&self, host: &Host) -> TransportHost {
        let transport = self.transport(host);
        let mut hosts = self.restore_hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .entry(host.name.clone())
            .or_insert_with(|| TransportHost::new(transport))
            .clone()
    }

    /// The host `acquire-host` took for the stack: a spare of the plan, or one its
    /// datacenter's provisioner created (reached with the datacenter's SSH settings).
    fn acquired(&self, call: &StepCall<'_>) -> Result<Host, StepError> {
        let facts = call.facts;
        let name = facts.get(HOST_FACT).ok_or_else(|| {
            StepError::permanent(format!(
                "stack {}: no host acquired before step {}",
                call.stack.name, call.step.name
            ))
        })?;
        if let Some(host) = self.plan.host(name) {
            return Ok(host.clone());
        }
        let (Some(address), Some(dc)) = (facts.get(ADDRESS_FACT), facts.get(DATACENTER_FACT))
        else {
            return Err(StepError::permanent(format!(
                "host {name} (acquired earlier) is not in the plan"
            )));
        };
        let address = address
            .parse()
            .map_err(|e| StepError::permanent(format!("host {name}: {e}")))?;
        Ok(self.provisioned_host(name, address, dc))
    }

    /// A host a provisioner created in `dc`, reached with the datacenter's SSH settings.
    fn provisioned_host(&self, name: &str, address: drp_provision::SshTarget, dc: &str) -> Host {
        let ssh = self
            .plan
            .datacenters
            .get(dc)
            .map(|d| d.ssh.clone())
            .unwrap_or_default();
        Host {
            name: name.to_string(),
            datacenter: dc.to_string(),
            address,
            roles: Vec::new(),
            spare: false,
            ssh,
            vars: Default::default(),
            reach: Reach::Ssh,
            at: crate::plan::Location { line: 0, column: 0 },
        }
    }

    fn redact(&self, mut text: String) -> String {
        for secret in &self.secrets {
            if secret.len() >= 4 && text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }

    /// Whether `host` runs `true` over SSH, within three connect timeouts.
    async fn answers(&self, host: &Host) -> Result<(), String> {
        let transport = self.transport(host);
        let limit = host.ssh.connect_timeout.unwrap_or(Duration::from_secs(10)) * 3;
        match tokio::time::timeout(limit, transport.run("true")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer over SSH within {}",
                crate::plan::format_duration(limit)
            )),
        }
    }

    /// No spare answered: the datacenter's provisioner creates a host, if it has one.
    async fn provision(
        &self,
        call: &StepCall<'_>,
        role: &str,
        dc: &str,
    ) -> Option<Result<StepOutput, StepError>> {
        let name = self.plan.datacenters.get(dc)?.provisioner.as_ref()?;
        let provisioner = self.plan.provisioners.get(name)?;
        let ProvisionerKind::Script {
            acquire,
            release,
            timeout,
            env,
        } = &provisioner.kind;
        let mut options = ScriptOptions::new(acquire.clone()).with_timeout(*timeout);
        if let Some(release) = release {
            options = options.with_release_command(release.clone());
        }
        for (key, value) in env {
            options = options.with_env(key.clone(), value.clone());
        }
        options.current_dir = Some(self.plan.dir.clone());
        let request = HostRequest::new(role, call.run_id).in_datacenter(dc);
        let lease = match ScriptProvisioner::new(options).acquire(&request).await {
            Ok(lease) => lease,
            Err(e) => {
                return Some(Err(StepError::retryable(format!(
                    "stack {}: provisioner {name}: {e}",
                    call.stack.name
                ))));
            }
        };
        let host = lease.host;
        let reached = self.provisioned_host(&host.name, host.address.clone(), dc);
        if let Err(problem) = self.answers(&reached).await {
            return Some(Err(StepError::retryable(format!(
                "stack {}: host {} created by provisioner {name} does not answer: {problem}",
                call.stack.name, host.name
            ))));
        }
        Some(Ok(StepOutput::done()
            .with_fact(HOST_FACT, host.name.clone())
            .with_fact(ADDRESS_FACT, host.address.to_string())
            .with_fact(HOST_ADDRESS_FACT, host.address.host.clone())
            .with_fact(DATACENTER_FACT, dc.to_string())
            .with_summary(format!(
                "{} ({}), created by provisioner {name}",
                host.name, host.address
            ))))
    }

    async fn acquire_host(
        &self,
        call: StepCall<'_>,
        role: &str,
        dc: &str,
    ) -> Result<StepOutput, StepError> {
        let stack = &call.stack.name;
        let mut skipped = Vec::new();
        // Owned: an iterator of the plan's closures held across awaits is not `Send` for
        // every lifetime, which async_trait needs.
        let spares: Vec<Host> = self.plan.spares_for(dc, role).cloned().collect();
        for host in &spares {
            let leased_for = self
                .leased
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&host.name)
                .filter(|holder| *holder != stack)
                .cloned();
            if let Some(holder) = leased_for {
                skipped.push(format!(
                    "{}: held by run {} for stack {holder}",
                    host.name, call.run_id
                ));
                continue;
            }
            let key = lease_key(&host.name);
            let lease = HostLease {
                host: host.name.clone(),
                run_id: call.run_id.to_string(),
                stack: stack.clone(),
                acquired_at: jiff::Timestamp::now(),
            };
            let data = serde_json::to_vec(&lease).expect("a lease serializes");
            let created = self
                .store
                .put_if_absent(&key, Bytes::from(data))
                .await
                .map_err(|e| StepError::retryable(format!("leasing {}: {e}", host.name)))?;
            if !created {
                // Ours from an attempt cut short (a resumed run): take it again.
                let holder: Option<HostLease> = match self.store.get_bytes(&key).await {
                    Ok(bytes) => serde_json::from_slice(&bytes).ok(),
                    Err(StoreError::NotFound { .. }) => None,
                    Err(e) => return Err(StepError::retryable(format!("reading {key}: {e}"))),
                };
                match holder {
                    Some(h) if h.run_id == call.run_id && h.stack == *stack => {}
                    Some(h) => {
                        skipped.push(format!(
                            "{}: held by run {} for stack {}",
                            host.name, h.run_id, h.stack
                        ));
                        continue;
                    }
                    None => {
                        skipped.push(format!("{}: its lease {key} is unreadable", host.name));
                        continue;
                    }
                }
            }
            if let Err(problem) = self.answers(host).await {
                skipped.push(format!("{}: {problem}", host.name));
                let _ = self.store.delete(&key).await;
                continue;
            }
            self.leased
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(host.name.clone(), stack.clone());
            return Ok(StepOutput::done()
                .with_fact(HOST_FACT, host.name.clone())
                .with_fact(ADDRESS_FACT, host.address.to_string())
                .with_fact(HOST_ADDRESS_FACT, host.address.host.clone())
                .with_summary(format!("{} ({})", host.name, host.address)));
        }
        if let Some(provisioned) = self.provision(&call, role, dc).await {
            return provisioned;
        }
        let reasons = if skipped.is_empty() {
            "there is none".to_string()
        } else {
            skipped.join("; ")
        };
        Err(StepError::retryable(format!(
            "stack {stack}: no free spare with role {role} in datacenter {dc} answers: {reasons}"
        )))
    }

    async fn prepare(&self, call: StepCall<'_>) -> Result<StepOutput, StepError> {
        let stack = self.stack(&call.stack.name)?;
        let host = &self.acquired(&call)?;
        let Some(playbook) = &stack.playbook else {
            return Ok(StepOutput::done());
        };
        let mut options = AnsibleOptions::new(&playbook.path);
        if let Some(key) = &host.ssh.key {
            options = options.with_private_key(&key.path);
        }
        if let Some(known_hosts) = &host.ssh.known_hosts {
            options = options.with_known_hosts(&known_hosts.path);
        }
        if let Some(timeout) = call.step.timeout {
            options = options.with_timeout(timeout);
        }
        let spec = HostSpec {
            name: host.name.clone(),
            address: host.address.clone(),
            datacenter: Some(host.datacenter.clone()),
            roles: host.roles.clone(),
            vars: host.vars.clone(),
        };
        AnsibleRunner::new(options)
            .run(&[spec])
            .await
            .map_err(|e| {
                StepError::retryable(format!(
                    "stack {}: playbook {} on {}: {e}",
                    stack.name, playbook, host.name
                ))
            })?;
        Ok(StepOutput::done().with_summary(format!("{playbook} on {}", host.name)))
    }

    fn secret_keys(&self, stack: &Stack) -> Result<SecretKeys, StepError> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(loaded) = keys.get(&stack.customer) {
            return Ok(loaded.clone());
        }
        let customer = self.plan.customers.get(&stack.customer).ok_or_else(|| {
            StepError::permanent(format!("customer {} is not in the plan", stack.customer))
        })?;
        let path = customer.secret_key.as_ref().ok_or_else(|| {
            StepError::permanent(format!(
                "customer {} has no secret_key: its backups cannot be decrypted here",
                customer.name
            ))
        })?;
        let passphrase = match &customer.passphrase {
            None => None,
            Some(SecretRef::Env(var)) => Some(Passphrase::from_env(var)),
            Some(SecretRef::File(file)) => Some(Passphrase::from_file(&file.path)),
        }
        .transpose()
        .map_err(|e| StepError::permanent(format!("customer {}: {e}", customer.name)))?;
        let loaded = SecretKeys::from_file(&path.path, passphrase.as_ref())
            .map_err(|e| StepError::permanent(format!("customer {}: {e}", customer.name)))?;
        keys.insert(stack.customer.clone(), loaded.clone());
        Ok(loaded)
    }

    async fn restore(
        &self,
        call: StepCall<'_>,
        source: &str,
        target: &RestoreTarget,
    ) -> Result<StepOutput, StepError> {
        let stack = self.stack(&call.stack.name)?;
        let host = &self.acquired(&call)?;
        // Every source of a stack comes from one snapshot: the first restore chooses it
        // (and journals it), the others — also after a resume — take the same.
        let (snapshot, snapshot_time) = match (
            call.facts.get(SNAPSHOT_FACT),
            call.facts.get(SNAPSHOT_TIME_FACT),
        ) {
            (Some(id), Some(time)) => (id.clone(), time.clone()),
            _ => {
                let (owned, store, trust, at, now) = (
                    stack.clone(),
                    self.store.clone(),
                    self.trust.clone(),
                    self.at,
                    self.incident_start,
                );
                let choice = off_thread(move || async move {
                    choose_snapshot(&owned, store, trust.as_ref(), at, now).await
                })
                .await
                .map_err(|e| StepError::permanent(format!("choosing a snapshot: {e}")))?
                .map_err(|e| StepError::retryable(format!("stack {}: {e}", stack.name)))?;
                for passed in &choice.passed_over {
                    call.note(format!(
                        "snapshot {} passed over: {}",
                        passed.id, passed.reason
                    ))
                    .await;
                }
                let chosen = choice.snapshot.ok_or_else(|| {
                    StepError::permanent(format!(
                        "stack {}: {}",
                        stack.name,
                        choice.no_snapshot.unwrap_or_else(|| "no snapshot".into())
                    ))
                })?;
                (chosen.id, chosen.time.to_string())
            }
        };
        let keys = self.secret_keys(stack)?;
        let destination = match target {
            RestoreTarget::Directory(dir) => RestoreDestination::Directory(PathBuf::from(dir)),
            RestoreTarget::PipeTo(command) => RestoreDestination::Command(command.clone()),
        };
        let repo = Repository::new(self.store.clone(), &stack.name)
            .map_err(|e| StepError::permanent(e.to_string()))?;
        let mut options = RestoreOptions::new(keys, destination);
        options.snapshot = SnapshotSelector::Id(snapshot.clone());
        options.sources = vec![source.to_string()];
        options.trust = self.trust.clone();
        options.host = Arc::new(self.restore_host(host));
        let report = off_thread(move || async move { repo.restore(options).await })
            .await
            .map_err(|e| StepError::permanent(format!("restoring {source}: {e}")))?
            .map_err(|e| {
                let message = format!(
                    "stack {}: restoring {source} of snapshot {snapshot} onto {}: {e}",
                    stack.name, host.name
                );
                // Bad data or a wrong key stays bad; a network hiccup may pass.
                if e.is_integrity_failure()
                    || matches!(
                        e,
                        drp_backup::Error::Key(_) | drp_backup::Error::WrongKey { .. }
                    )
                {
                    StepError::permanent(message)
                } else {
                    StepError::retryable(message)
                }
            })?;
        let bytes: u64 = report.sources.iter().map(|s| s.plain_bytes).sum();
        call.progress(bytes);
        Ok(StepOutput::done()
            .with_fact(SNAPSHOT_FACT, snapshot.clone())
            .with_fact(SNAPSHOT_TIME_FACT, snapshot_time)
            .with_bytes(bytes)
            .with_summary(format!("{source} of {snapshot} {target} on {}", host.name)))
    }

    async fn command(&self, call: StepCall<'_>, command: &str) -> Result<StepOutput, StepError> {
        let host = &self.acquired(&call)?;
        let output = self.transport(host).run(command).await.map_err(|e| {
            StepError::retryable(format!(
                "stack {}, step {}: {e}",
                call.stack.name, call.step.name
            ))
        })?;
        let stdout = output.stdout_str();
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
        let mut out = StepOutput::done();
        if let Some(last) = last {
            out = out.with_summary(last.chars().take(200).collect::<String>());
        }
        Ok(out)
    }

    async fn wait_healthy(&self, call: StepCall<'_>) -> Result<StepOutput, StepError> {
        let stack = self.stack(&call.stack.name)?;
        let host = &self.acquired(&call)?;
        let address = call
            .facts
            .get(HOST_ADDRESS_FACT)
            .cloned()
            .unwrap_or_else(|| host.address.host.clone());
        let transport = self.transport(host);
        let mut monitor = Monitor::new();
        for p in &stack.probes {
            let built = probe::build(p, &address, &stack.name, transport.clone())
                .map_err(|e| StepError::permanent(format!("stack {}: {e}", stack.name)))?;
            monitor.add(built, p.spec.runner_options());
        }
        // Leave the executor's time limit (the same `healthy_within`) a moment to spare,
        // so the probes' last results are reported rather than cut off.
        let within = stack.healthy_within;
        let margin = (within / 10).min(Duration::from_secs(1));
        let deadline = tokio::time::Instant::now() + within.saturating_sub(margin);
        let outcome = monitor.wait_until_healthy(deadline).await;
        for probe in &outcome.probes {
            if let Some(last) = &probe.last {
                call.note(format!("probe {}: {}", probe.target, last.message))
                    .await;
            }
        }
        if outcome.reached {
            Ok(StepOutput::done().with_summary(format!(
                "{} probe{} healthy",
                outcome.probes.len(),
                if outcome.probes.len() == 1 { "" } else { "s" }
            )))
        } else {
            Err(StepError::retryable(format!(
                "stack {}: not healthy within {}: {}",
                stack.name,
                crate::plan::format_duration(within),
                outcome.failures().join("; ")
            )))
        }
    }

    /// Tells people. A notifier that fails (or cannot even be built, e.g. its secret is
    /// missing) never fails the step: the failure is journaled as a note.
    async fn notify(
        &self,
        call: StepCall<'_>,
        event: NotifyEvent,
        notifiers: &[String],
    ) -> Result<StepOutput, StepError> {
        let stack = self.stack(&call.stack.name)?;
        let mut notifications = Notifications::new(drp_monitor::RetryPolicy::default());
        for name in notifiers {
            match self.plan.notifier_spec(name).map(|spec| spec.build()) {
                Some(Ok(built)) => {
                    notifications.add(built);
                }
                Some(Err(e)) => {
                    call.note(format!("notifier {name} not used: {}", e.reason))
                        .await
                }
                None => {
                    call.note(format!("notifier {name} is not in the plan"))
                        .await
                }
            }
        }
        let stack_ref = StackRef::new(&stack.name, &stack.customer);
        let message = match event {
            NotifyEvent::Recovered => drp_monitor::Event::StackRecovered {
                run_id: call.run_id.to_string(),
                stack: stack_ref,
                elapsed: Duration::try_from(
                    jiff::Timestamp::now().duration_since(self.incident_start),
                )
                .unwrap_or_default(),
            },
            NotifyEvent::Failed => drp_monitor::Event::StepFailed {
                run_id: call.run_id.to_string(),
                stack: stack_ref,
                step: call
                    .facts
                    .get(FAILED_STEP_FACT)
                    .cloned()
                    .unwrap_or_else(|| "recovery".into()),
                error: self.redact(
                    call.facts
                        .get(FAILED_ERROR_FACT)
                        .cloned()
                        .unwrap_or_else(|| "see the run's journal".into()),
                ),
            },
        };
        let report = notifications.send(&message).await;
        let mut sent = 0;
        for delivery in &report.deliveries {
            let audience = delivery
                .audience
                .map_or_else(String::new, |a| format!(" ({})", a.as_str()));
            match &delivery.error {
                None => {
                    sent += 1;
                    call.note(format!("notified through {}{audience}", delivery.notifier))
                        .await;
                }
                Some(error) => {
                    call.note(format!(
                        "notification through {}{audience} failed: {error}",
                        delivery.notifier
                    ))
                    .await
                }
            }
        }
        Ok(StepOutput::done().with_summary(format!(
            "{sent} of {} notification{} sent",
            report.deliveries.len(),
            if report.deliveries.len() == 1 {
                ""
            } else {
                "s"
            }
        )))
    }
}

#[async_trait]
impl StepRunner for PlanRunner {
    async fn run(&self, call: StepCall<'_>) -> Result<StepOutput, StepError> {
        let step = call.step;
        match &step.kind {
            StepKind::AcquireHost { role, datacenter } => {
                self.acquire_host(call, role, datacenter).await
            }
            StepKind::Prepare { .. } => self.prepare(call).await,
            StepKind::Restore { source, target } => self.restore(call, source, target).await,
            StepKind::Command { command, .. } => self.command(call, command).await,
            StepKind::Approve { question } => self
                .approver
                .approve(&call.stack.name, question)
                .await
                .map(|()| StepOutput::done().with_summary("approved"))
                .map_err(|refusal| {
                    StepError::permanent(format!(
                        "stack {}, step {}: {refusal}",
                        call.stack.name, call.step.name
                    ))
                }),
            StepKind::WaitHealthy { .. } => self.wait_healthy(call).await,
            StepKind::Notify { event, notifiers } => self.notify(call, *event, notifiers).await,
            other => Err(StepError::permanent(format!(
                "step {} of stack {}: drp recover cannot run {other:?}",
                call.step.name, call.stack.name
            ))),
        }
    }
}

/// Runs a future that is not `Send` (drp-backup's listing and restore streams hold closures
/// the compiler cannot prove `Send` for every lifetime) on a blocking thread, driven by the
/// current runtime: its I/O and spawned tasks still run on the runtime's workers.
fn off_thread<F, Fut>(make: F) -> tokio::task::JoinHandle<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future,
    Fut::Output: Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(make()))
}
