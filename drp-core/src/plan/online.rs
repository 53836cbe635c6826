//! `drp plan check --online`: does the store answer, do the hosts answer over SSH, do the
//! notifiers deliver? Each failure is a [`Problem`] at the definition that failed.
//!
//! Notifiers are checked the only way that proves they work: each sends drp-monitor's test
//! message, once, to the team (as `drp notify test` does); customers and partners are never
//! written to by a check.

use std::time::Duration;

use futures::stream::{self, StreamExt};

use drp_monitor::{Event, Notifications, RetryPolicy};

use super::{Notifier, Plan, Problem, ProblemKind};
use crate::executor::journal::RUNS_PREFIX;

/// Limits of the online checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnlineOptions {
    /// Time limit of the store check, and of each host's (connect, authenticate, run
    /// `true`).
    pub timeout: Duration,
    /// Hosts checked at once.
    pub concurrency: usize,
}

impl Default for OnlineOptions {
    fn default() -> Self {
        OnlineOptions {
            timeout: Duration::from_secs(30),
            concurrency: 8,
        }
    }
}

/// Checks that the store and every host answer and every notifier delivers. Returns the
/// problems, by position.
pub async fn check_online(plan: &Plan, options: OnlineOptions) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(problem) = check_store(plan, options.timeout).await {
        problems.push(problem);
    }
    let hosts: Vec<Problem> = stream::iter(&plan.hosts)
        .map(|host| async move {
            let transport = host.transport();
            let failure = match tokio::time::timeout(options.timeout, transport.run("true")).await {
                Ok(Ok(_)) => return None,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "{transport}: no answer within {}",
                    super::format_duration(options.timeout)
                ),
            };
            Some(Problem::error(
                &plan.file,
                ProblemKind::Unreachable,
                Some(host.at),
                format!("host {}: {failure}", host.name),
            ))
        })
        .buffered(options.concurrency.max(1))
        .filter_map(|p| async move { p })
        .collect()
        .await;
    problems.extend(hosts);
    for notifier in plan.notifiers.values() {
        if let Some(problem) = check_notifier(plan, notifier, options.timeout).await {
            problems.push(problem);
        }
    }
    super::problem::sort(&mut problems);
    problems
}

/// Builds the notifier (reading its secret here) and sends the test message to the team.
async fn check_notifier(plan: &Plan, notifier: &Notifier, timeout: Duration) -> Option<Problem> {
    let problem = |kind, message: String| {
        Some(Problem::error(
            &plan.file,
            kind,
            Some(notifier.at),
            format!("notifier {}: {message}", notifier.name),
        ))
    };
    let spec = plan.notifier_spec(&notifier.name)?;
    let built = match spec.build() {
        Ok(built) => built,
        Err(e) => return problem(ProblemKind::Environment, e.reason),
    };
    let mut notifications = Notifications::new(RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    });
    notifications.add(built);
    let report = match tokio::time::timeout(timeout, notifications.send(&Event::Test)).await {
        Ok(report) => report,
        Err(_) => {
            return problem(
                ProblemKind::Unreachable,
                format!("no answer within {}", super::format_duration(timeout)),
            );
        }
    };
    let failure = report.failures().next()?;
    problem(
        ProblemKind::Unreachable,
        failure
            .error
            .clone()
            .unwrap_or_else(|| "delivery failed".into()),
    )
}

async fn check_store(plan: &Plan, timeout: Duration) -> Option<Problem> {
    let storage = &plan.storage;
    let failure = match drp_backup::open_store_with(&storage.url, storage.options.clone()) {
        Err(e) => e.to_string(),
        Ok(store) => match tokio::time::timeout(timeout, store.list(RUNS_PREFIX)).await {
            Ok(Ok(_)) => return None,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "{}: no answer within {}",
                storage.url,
                super::format_duration(timeout)
            ),
        },
    };
    Some(Problem::error(
        &plan.file,
        ProblemKind::Unreachable,
        Some(storage.url_at),
        format!("store: {failure}"),
    ))
}
