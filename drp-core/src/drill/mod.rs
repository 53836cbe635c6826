//! `drp drill`: a real fault on part of the infrastructure, measured.
//!
//! ```text
//! steady state ─▶ inject (dead-man armed first) ─▶ T0
//!   ├─ drp's probes of the hit stacks fail ─────────▶ T1 (probe)
//!   ├─ the team's monitoring posts an alert ────────▶ T1 (alert)
//!   ├─ automatic: drp recovers onto the recovery datacenter; surprise: the team does ─▶ T2
//!   ├─ every hit stack healthy again, wherever it runs ─▶ T3
//!   └─ an abort probe fails, the duration cap passes, or Ctrl-C ─▶ abort
//! revert (explicitly; the dead-man timer on each host if drp cannot) ─▶ T4 ─▶ record, report
//! ```
//!
//! Every drill is a [`DrillRecord`] in the store (`.drp/drills/ID.json`), rewritten at each
//! phase: `drp drill revert ID` finds the hosts and the fault there even when the drill's
//! process died, `drp drill history` lists them, and `drp report ID` renders one. A drill
//! run by drp (automatic mode) recovers through an ordinary journaled recovery run, which
//! the record names, so its timeline and per-stack RTO/RPO are the recovery's own.

mod record;
pub mod report;
mod run;

pub use record::{
    Check, Detection, DrillRecord, DrillStack, DrillState, Expectations, Marks, ProbeCheck,
    SentNotification, TargetHost, TimelineEntry, history, load_record, record_key,
};
pub use run::{DrillObserver, DrillOptions, NoObserver, revert_drill, run_drill};

use std::path::PathBuf;

/// Where drill records live in the store.
pub const DRILLS_PREFIX: &str = ".drp/drills";

/// The object that says a drill is running (one at a time per store).
pub const DRILL_LOCK_KEY: &str = ".drp/drill-lock.json";

/// Why a drill could not run, or stopped before its fault was in place. A drill that ran
/// and did not meet its expectations is an outcome (`DrillRecord::passed`), not this.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrillError {
    /// The scenario is not in the plan.
    #[error("scenario {name} is not in the plan ({known})")]
    UnknownScenario {
        /// The name given.
        name: String,
        /// The plan's scenarios.
        known: String,
    },
    /// The scenario hits no stack.
    #[error("scenario {0}: no stack runs on the hosts it hits")]
    NoStacks(String),
    /// Another drill holds the store.
    #[error(
        "drill {drill} (scenario {scenario}, by {holder} since {since}) is running on this \
         store; wait for it, or revert it with `drp drill revert {drill}`"
    )]
    Busy {
        /// Its id.
        drill: String,
        /// Its scenario.
        scenario: String,
        /// Who runs it (user@host, pid).
        holder: String,
        /// Since when.
        since: jiff::Timestamp,
    },
    /// The steady state does not hold: nothing was injected.
    #[error("the steady state does not hold, nothing was injected: {}", .0.join("; "))]
    SteadyState(Vec<String>),
    /// The fault could not be injected everywhere (what was injected is reverted).
    #[error("injecting the fault failed: {problems}")]
    Inject {
        /// Per host that failed, `HOST: ERROR`, joined with `; `.
        problems: String,
        /// Every failure was the transport's: drp could not reach those hosts (or lost
        /// them), rather than the fault failing on them.
        unreachable: bool,
    },
    /// No drill with that id in the store.
    #[error("no drill {0} in the store (see `drp drill history`)")]
    NotFound(String),
    /// Not a drill id.
    #[error("invalid drill id {0:?}")]
    InvalidId(String),
    /// Reverting by hand failed on some hosts.
    #[error("reverting drill {drill} failed: {}", problems.join("; "))]
    Revert {
        /// The drill.
        drill: String,
        /// Per host.
        problems: Vec<String>,
        /// Every failure was the transport's: drp could not reach those hosts (or lost
        /// them), rather than the revert failing on them; try again when they can be reached.
        unreachable: bool,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] drp_backup::StoreError),
    /// A record in the store does not parse.
    #[error("drill record {key} is unreadable: {reason}")]
    Record {
        /// The object.
        key: String,
        /// Why.
        reason: String,
    },
    /// The alert receiver cannot listen.
    #[error("alert receiver on {addr}: {source}")]
    AlertReceiver {
        /// Where.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The local copy of the record cannot be written.
    #[error("local drill record {}: {source}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The id of drill `drill`'s fault on host `host`: `DRILL_ID.HOST`. It names everything
/// the fault leaves on the host (dead-man pid and status files in its temporary directory,
/// nftables table, iptables chain), so it is per host: hosts may share a temporary
/// directory (several `transport = "local"` hosts on one machine, containers or network
/// namespaces of one machine), and with one id for all of them the second host's
/// injection would find the first one's dead-man and be refused as already injected.
pub fn fault_id(drill: &str, host: &str) -> String {
    format!("{drill}.{host}")
}

/// The plan a drill runs with: customers' and partners' messages go to the scenario's test
/// route (or nowhere) unless it lets them through.
pub fn plan_for_drill(
    plan: &crate::plan::Plan,
    scenario: &crate::plan::Scenario,
) -> crate::plan::Plan {
    use drp_monitor::{Audience, NotifierSpec};
    let mut plan = plan.clone();
    if scenario.notify_customers {
        return plan;
    }
    for customer in plan.customers.values_mut() {
        customer.contacts = Default::default();
    }
    let customer_names: Vec<String> = plan.customers.keys().cloned().collect();
    for notifier in plan.notifiers.values_mut() {
        let route = scenario.test_route.as_deref() == Some(notifier.name.as_str());
        let channel = |audiences: &mut Vec<Audience>, customers: &mut Vec<String>| {
            if route {
                *audiences = crate::plan::AUDIENCES.to_vec();
                customers.clear();
            } else {
                audiences.retain(|a| *a == Audience::Team);
            }
        };
        match &mut notifier.spec {
            NotifierSpec::Slack(s) => channel(&mut s.audiences, &mut s.customers),
            NotifierSpec::Webhook(s) => channel(&mut s.audiences, &mut s.customers),
            NotifierSpec::Log(s) => channel(&mut s.audiences, &mut Vec::new()),
            NotifierSpec::Email(s) => {
                s.contacts.clear();
                if route {
                    // The team reads what the customers would have read.
                    for name in &customer_names {
                        s.contacts.insert(
                            name.clone(),
                            drp_monitor::notify::Contacts {
                                customer: s.team.clone(),
                                partner: s.team.clone(),
                            },
                        );
                    }
                }
            }
            _ => {}
        }
    }
    plan
}
