//! Plan → [`RunSpec`]: the exact steps of every stack. The runbook, the dry run and the
//! executor all work from this one translation.
//!
//! Steps of a stack, in order (names are what the journal and reports call them):
//!
//! | step | when |
//! | --- | --- |
//! | `acquire-host` | always: a spare with the stack's role in the target datacenter |
//! | `prepare` | the stack has a `playbook` |
//! | `restore:SOURCE` | per source |
//! | `restore-command:N` | per `restore_commands` entry |
//! | `approve-start` | `approve_before_start` |
//! | `start:N` | per `start_commands` entry |
//! | `wait-healthy` | the stack has probes (timeout: `healthy_within`) |
//! | `notify-recovered` | the stack has notifiers |
//!
//! and, if a step fails, `notify-failed` (when the stack has notifiers).

use std::collections::BTreeSet;

use super::{Plan, PlanError, Stack};
use crate::executor::{
    CommandPhase, NotifyEvent, RetryPolicy, RunSpec, StackSpec, StepKind, StepSpec,
};

/// Compiles `plan` into a run of `only` those stacks (empty: every stack). Dependencies on
/// stacks outside the selection are dropped: they are taken to be up.
pub fn compile(plan: &Plan, only: &[String]) -> Result<RunSpec, PlanError> {
    for name in only {
        if !plan.stacks.contains_key(name) {
            return Err(PlanError::Unknown {
                what: "stack",
                name: name.clone(),
            });
        }
    }
    let selected: BTreeSet<&str> = if only.is_empty() {
        plan.stacks.keys().map(String::as_str).collect()
    } else {
        only.iter().map(String::as_str).collect()
    };
    let stacks = plan
        .stacks
        .values()
        .filter(|s| selected.contains(s.name.as_str()))
        .map(|s| StackSpec {
            name: s.name.clone(),
            depends_on: s
                .depends_on
                .iter()
                .filter(|d| selected.contains(d.as_str()))
                .cloned()
                .collect(),
            steps: stack_steps(plan, s),
            on_failure: failure_steps(plan, s),
        })
        .collect();
    Ok(RunSpec {
        plan: plan.name.clone(),
        plan_digest: plan.digest.clone(),
        parallelism: plan.recovery.parallelism,
        fail_fast: plan.recovery.fail_fast,
        stacks,
    })
}

fn retry_policy(plan: &Plan) -> RetryPolicy {
    let r = &plan.recovery;
    RetryPolicy::exponential(r.retries, r.backoff, r.max_backoff)
}

/// The steps of one stack, in order.
pub fn stack_steps(plan: &Plan, stack: &Stack) -> Vec<StepSpec> {
    let retry = retry_policy(plan);
    let step = |name: String, kind: StepKind| {
        StepSpec::new(name, kind)
            .with_timeout(stack.step_timeout)
            .with_retry(retry)
    };
    let mut steps = vec![step(
        "acquire-host".into(),
        StepKind::AcquireHost {
            role: stack.role.clone(),
            datacenter: plan.recovery.target_datacenter.clone(),
        },
    )];
    if let Some(playbook) = &stack.playbook {
        steps.push(step(
            "prepare".into(),
            StepKind::Prepare {
                playbook: playbook.written.clone(),
            },
        ));
    }
    for source in &stack.sources {
        steps.push(step(
            format!("restore:{}", source.name()),
            StepKind::Restore {
                source: source.name().to_string(),
                target: source.restore.clone(),
            },
        ));
    }
    for (i, command) in stack.restore_commands.iter().enumerate() {
        steps.push(step(
            format!("restore-command:{}", i + 1),
            StepKind::Command {
                command: command.clone(),
                phase: CommandPhase::Restore,
            },
        ));
    }
    if stack.approve_before_start {
        // An operator's answer is not retried, and takes as long as it takes.
        steps.push(StepSpec::new(
            "approve-start",
            StepKind::Approve {
                question: format!(
                    "Start {} on its new host? Make sure the original is really down.",
                    stack.name
                ),
            },
        ));
    }
    for (i, command) in stack.start_commands.iter().enumerate() {
        steps.push(step(
            format!("start:{}", i + 1),
            StepKind::Command {
                command: command.clone(),
                phase: CommandPhase::Start,
            },
        ));
    }
    if !stack.probes.is_empty() {
        // The wait polls on its own until healthy: its time limit is `healthy_within`, and
        // a retry would only wait longer.
        steps.push(
            StepSpec::new(
                "wait-healthy",
                StepKind::WaitHealthy {
                    probes: stack.probes.iter().map(|p| p.name.clone()).collect(),
                },
            )
            .with_timeout(stack.healthy_within),
        );
    }
    if !stack.notify.is_empty() {
        steps.push(step(
            "notify-recovered".into(),
            StepKind::Notify {
                event: NotifyEvent::Recovered,
                notifiers: stack.notify.clone(),
            },
        ));
    }
    steps
}

/// What runs when a step of the stack failed.
pub fn failure_steps(plan: &Plan, stack: &Stack) -> Vec<StepSpec> {
    if stack.notify.is_empty() {
        return Vec::new();
    }
    vec![
        StepSpec::new(
            "notify-failed",
            StepKind::Notify {
                event: NotifyEvent::Failed,
                notifiers: stack.notify.clone(),
            },
        )
        .with_timeout(stack.step_timeout)
        .with_retry(retry_policy(plan)),
    ]
}
