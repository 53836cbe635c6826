//! What the executor runs: plain data. A [`RunSpec`] is stacks with dependencies; a stack
//! is ordered [`StepSpec`]s; a step says what to do ([`StepKind`]) and how patiently
//! (timeout, [`RetryPolicy`]). Nothing here knows how a step is done: a
//! [`StepRunner`](super::StepRunner) does.

use std::time::Duration;

use serde::Serialize;

use crate::plan::RestoreTarget;

/// A whole run: what [`execute`](super::execute) takes.
#[derive(Debug, Clone, Serialize)]
pub struct RunSpec {
    /// The plan's name (journal, messages).
    pub plan: String,
    /// The plan's digest: a resumed run checks it is the same plan.
    pub plan_digest: String,
    /// Stacks recovered at once (at least 1).
    pub parallelism: usize,
    /// Once a stack fails, start no other stack and stop the running ones between steps.
    pub fail_fast: bool,
    /// The stacks (any order: dependencies decide).
    pub stacks: Vec<StackSpec>,
}

/// One stack: its steps in order, and what to do if one fails.
#[derive(Debug, Clone, Serialize)]
pub struct StackSpec {
    /// Unique name.
    pub name: String,
    /// Stacks that must be recovered before this one starts.
    pub depends_on: Vec<String>,
    /// Run in order; a failed step (after its retries) fails the stack.
    pub steps: Vec<StepSpec>,
    /// Run once (best effort) after a step failed, e.g. to tell people.
    pub on_failure: Vec<StepSpec>,
}

/// One step of a stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepSpec {
    /// Unique within the stack (`restore:db`); the journal knows steps by it.
    pub name: String,
    /// What it does.
    pub kind: StepKind,
    /// Time limit of one attempt (`None`: none).
    #[serde(serialize_with = "serialize_option_duration")]
    pub timeout: Option<Duration>,
    /// Retries of failed attempts.
    pub retry: RetryPolicy,
}

impl StepSpec {
    /// A step with no timeout and no retries.
    pub fn new(name: impl Into<String>, kind: StepKind) -> StepSpec {
        StepSpec {
            name: name.into(),
            kind,
            timeout: None,
            retry: RetryPolicy::none(),
        }
    }

    /// Sets the timeout of each attempt.
    pub fn with_timeout(mut self, timeout: Duration) -> StepSpec {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> StepSpec {
        self.retry = retry;
        self
    }
}

/// Where a command of a stack runs in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandPhase {
    /// After the data is restored (fix permissions, migrate, ...).
    Restore,
    /// Starting the stack's services.
    Start,
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// The stack is healthy again.
    Recovered,
    /// Its recovery failed.
    Failed,
}

/// What a step does. The executor never looks inside: it is the
/// [`StepRunner`](super::StepRunner)'s to interpret, and the runbook's and dry run's to show.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepKind {
    /// Get a host with `role` in `datacenter` (a free spare, else from its provisioner).
    AcquireHost {
        /// The role.
        role: String,
        /// The datacenter.
        datacenter: String,
    },
    /// Run an Ansible playbook on the acquired host.
    Prepare {
        /// The playbook, as written in the plan.
        playbook: String,
    },
    /// Restore one source of the stack's chosen snapshot onto the host.
    Restore {
        /// The source's name.
        source: String,
        /// Where it goes.
        target: RestoreTarget,
    },
    /// Run a shell command on the host.
    Command {
        /// The command line (`sh -c`).
        command: String,
        /// Restore or start.
        phase: CommandPhase,
    },
    /// Wait for an operator's approval.
    Approve {
        /// What the operator approves.
        question: String,
    },
    /// Wait until every probe of the stack is healthy (the step's timeout bounds the wait).
    WaitHealthy {
        /// The probes' names.
        probes: Vec<String>,
    },
    /// Tell the stack's audiences.
    Notify {
        /// What happened.
        event: NotifyEvent,
        /// Through these notifiers.
        notifiers: Vec<String>,
    },
    /// Anything else (drills add fault injection and verification steps; tests use it).
    Custom {
        /// A short label.
        label: String,
        /// What it does, for people.
        detail: String,
    },
}

/// How a failed attempt is retried: `retries` more attempts, waiting `backoff` before the
/// first retry and twice as long before each next one, at most `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Wait before the first retry.
    #[serde(serialize_with = "serialize_duration")]
    pub backoff: Duration,
    /// Longest wait.
    #[serde(serialize_with = "serialize_duration")]
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// One attempt only.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            retries: 0,
            backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
        }
    }

    /// `retries` retries with exponential backoff from `backoff` up to `max_backoff`.
    pub fn exponential(retries: u32, backoff: Duration, max_backoff: Duration) -> RetryPolicy {
        RetryPolicy {
            retries,
            backoff,
            max_backoff,
        }
    }

    /// Attempts in all.
    pub fn attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The wait after failed attempt `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff.max(self.backoff))
    }
}

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::plan::format_duration(*d))
}

fn serialize_option_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => serialize_duration(d, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_limit() {
        let policy = RetryPolicy::exponential(5, Duration::from_secs(10), Duration::from_secs(60));
        let delays: Vec<u64> = (1..=5).map(|a| policy.delay_after(a).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 40, 60, 60]);
        assert_eq!(policy.attempts(), 6);
    }
}
