//! `drp plan check --online`: does the store answer, do the hosts answer over SSH? Each
//! failure is a [`Problem`] at the definition that failed.

use std::time::Duration;

use drp_provision::{SshTransport, Transport};
use futures::stream::{self, StreamExt};

use super::{Plan, Problem, ProblemKind};
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

/// Checks that the store and every host answer. Returns the problems, by position.
// TODO(monitor): also check that the notifiers answer, once drp-monitor's notifiers land.
pub async fn check_online(plan: &Plan, options: OnlineOptions) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(problem) = check_store(plan, options.timeout).await {
        problems.push(problem);
    }
    let hosts: Vec<Problem> = stream::iter(&plan.hosts)
        .map(|host| async move {
            let transport = SshTransport::new(host.ssh_options());
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
    super::problem::sort(&mut problems);
    problems
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
