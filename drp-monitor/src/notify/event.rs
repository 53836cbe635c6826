//! What happens during recoveries and drills, and who hears about it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{HumanDuration, serialize_millis, serialize_option_millis};

/// A customer's service stack, as events name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackRef {
    /// The stack's name.
    pub name: String,
    /// The customer it belongs to (the key of its contacts).
    pub customer: String,
}

impl StackRef {
    /// A stack of a customer.
    pub fn new(name: impl Into<String>, customer: impl Into<String>) -> Self {
        StackRef {
            name: name.into(),
            customer: customer.into(),
        }
    }
}

/// Something worth telling people.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A recovery run started.
    RecoveryStarted {
        /// The run.
        run_id: String,
        /// The stacks it recovers.
        stacks: Vec<StackRef>,
        /// Why, technically (e.g. the probe message that showed the outage). Team only.
        cause: Option<String>,
    },
    /// A step of a recovery failed.
    StepFailed {
        /// The run.
        run_id: String,
        /// The stack.
        stack: StackRef,
        /// The step (`provision`, `restore db`, `probe web`...).
        step: String,
        /// The error, technically. Team only.
        error: String,
    },
    /// A stack is back and its probes say it is healthy.
    StackRecovered {
        /// The run.
        run_id: String,
        /// The stack.
        stack: StackRef,
        /// From the start of the run.
        #[serde(rename = "elapsed_ms", serialize_with = "serialize_millis")]
        elapsed: Duration,
    },
    /// A recovery run ended.
    RecoveryFinished {
        /// The run.
        run_id: String,
        /// Recovery time: from the start of the run to the last stack recovered.
        #[serde(rename = "rto_ms", serialize_with = "serialize_millis")]
        rto: Duration,
        /// Stacks recovered.
        recovered: Vec<StackRef>,
        /// Stacks not recovered.
        failed: Vec<StackRef>,
    },
    /// A drill started.
    DrillStarted {
        /// The run.
        run_id: String,
        /// What the drill simulates.
        scenario: String,
        /// The stacks it affects.
        stacks: Vec<StackRef>,
    },
    /// A drill injected its fault.
    FaultInjected {
        /// The run.
        run_id: String,
        /// The fault (`network blackhole`, `stop postgresql`...).
        fault: String,
        /// The hosts it was injected on.
        hosts: Vec<String>,
    },
    /// Monitoring noticed the fault.
    FaultDetected {
        /// The run.
        run_id: String,
        /// Which probe or alert source noticed.
        detected_by: String,
        /// From the injection to the detection.
        #[serde(rename = "time_to_detect_ms", serialize_with = "serialize_millis")]
        time_to_detect: Duration,
    },
    /// A drill ended.
    DrillFinished {
        /// The run.
        run_id: String,
        /// Whether everything recovered and verified.
        passed: bool,
        /// From injection to detection, if detected.
        #[serde(
            rename = "time_to_detect_ms",
            serialize_with = "serialize_option_millis"
        )]
        time_to_detect: Option<Duration>,
        /// From injection to the last stack recovered, if all recovered.
        #[serde(
            rename = "time_to_recover_ms",
            serialize_with = "serialize_option_millis"
        )]
        time_to_recover: Option<Duration>,
        /// What went wrong.
        problems: Vec<String>,
    },
    /// A test message (`drp notify test`). Team only.
    Test,
}

/// The kind of an [`Event`], as written in template tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// [`Event::RecoveryStarted`]
    RecoveryStarted,
    /// [`Event::StepFailed`]
    StepFailed,
    /// [`Event::StackRecovered`]
    StackRecovered,
    /// [`Event::RecoveryFinished`]
    RecoveryFinished,
    /// [`Event::DrillStarted`]
    DrillStarted,
    /// [`Event::FaultInjected`]
    FaultInjected,
    /// [`Event::FaultDetected`]
    FaultDetected,
    /// [`Event::DrillFinished`]
    DrillFinished,
    /// [`Event::Test`]
    Test,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 9] = [
        EventKind::RecoveryStarted,
        EventKind::StepFailed,
        EventKind::StackRecovered,
        EventKind::RecoveryFinished,
        EventKind::DrillStarted,
        EventKind::FaultInjected,
        EventKind::FaultDetected,
        EventKind::DrillFinished,
        EventKind::Test,
    ];

    /// How it is written.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RecoveryStarted => "recovery_started",
            EventKind::StepFailed => "step_failed",
            EventKind::StackRecovered => "stack_recovered",
            EventKind::RecoveryFinished => "recovery_finished",
            EventKind::DrillStarted => "drill_started",
            EventKind::FaultInjected => "fault_injected",
            EventKind::FaultDetected => "fault_detected",
            EventKind::DrillFinished => "drill_finished",
            EventKind::Test => "test",
        }
    }

    /// Whether customers and partners hear about events of this kind (about their own
    /// stacks). The team hears about all of them.
    pub fn reaches_customers(self) -> bool {
        matches!(self, EventKind::RecoveryStarted | EventKind::StackRecovered)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The ops team: technical details, every event.
    Team,
    /// A customer: plain language, their own stacks, outages and recoveries only.
    Customer,
    /// A customer's partner (integrator, reseller): like the customer, naming the customer.
    Partner,
}

impl Audience {
    /// How it is written.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Team => "team",
            Audience::Customer => "customer",
            Audience::Partner => "partner",
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One group of people an event is told to: the team, or one customer (or its partners)
/// about that customer's stacks only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressee {
    /// Who.
    pub audience: Audience,
    /// Whose stacks (customer and partner audiences).
    pub customer: Option<String>,
    /// The stacks the message is about.
    pub stacks: Vec<StackRef>,
}

/// Every field an event can give a template. Fields an event does not have render as `-`.
pub const FIELDS: &[&str] = &[
    "event",
    "audience",
    "time",
    "run_id",
    "stack",
    "stacks",
    "customer",
    "cause",
    "step",
    "error",
    "elapsed",
    "rto",
    "recovered",
    "failed",
    "scenario",
    "fault",
    "hosts",
    "detected_by",
    "time_to_detect",
    "time_to_recover",
    "outcome",
    "problems",
];

fn names(stacks: &[StackRef]) -> String {
    if stacks.is_empty() {
        "none".into()
    } else {
        stacks
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn customers(stacks: &[StackRef]) -> String {
    let mut customers: Vec<&str> = stacks.iter().map(|s| s.customer.as_str()).collect();
    customers.sort_unstable();
    customers.dedup();
    customers.join(", ")
}

impl Event {
    /// Its kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::RecoveryStarted { .. } => EventKind::RecoveryStarted,
            Event::StepFailed { .. } => EventKind::StepFailed,
            Event::StackRecovered { .. } => EventKind::StackRecovered,
            Event::RecoveryFinished { .. } => EventKind::RecoveryFinished,
            Event::DrillStarted { .. } => EventKind::DrillStarted,
            Event::FaultInjected { .. } => EventKind::FaultInjected,
            Event::FaultDetected { .. } => EventKind::FaultDetected,
            Event::DrillFinished { .. } => EventKind::DrillFinished,
            Event::Test => EventKind::Test,
        }
    }

    /// The run it belongs to.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Event::RecoveryStarted { run_id, .. }
            | Event::StepFailed { run_id, .. }
            | Event::StackRecovered { run_id, .. }
            | Event::RecoveryFinished { run_id, .. }
            | Event::DrillStarted { run_id, .. }
            | Event::FaultInjected { run_id, .. }
            | Event::FaultDetected { run_id, .. }
            | Event::DrillFinished { run_id, .. } => Some(run_id),
            Event::Test => None,
        }
    }

    /// The stacks it is about.
    pub fn stacks(&self) -> Vec<StackRef> {
        match self {
            Event::RecoveryStarted { stacks, .. } | Event::DrillStarted { stacks, .. } => {
                stacks.clone()
            }
            Event::StepFailed { stack, .. } | Event::StackRecovered { stack, .. } => {
                vec![stack.clone()]
            }
            Event::RecoveryFinished {
                recovered, failed, ..
            } => recovered.iter().chain(failed).cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Who hears about it: the team, and for outages and recoveries each customer concerned
    /// and its partners, each about their own stacks.
    pub fn addressees(&self) -> Vec<Addressee> {
        let stacks = self.stacks();
        let mut addressees = vec![Addressee {
            audience: Audience::Team,
            customer: None,
            stacks: stacks.clone(),
        }];
        if self.kind().reaches_customers() {
            let mut by_customer: BTreeMap<&str, Vec<StackRef>> = BTreeMap::new();
            for stack in &stacks {
                by_customer
                    .entry(&stack.customer)
                    .or_default()
                    .push(stack.clone());
            }
            for (customer, stacks) in by_customer {
                for audience in [Audience::Customer, Audience::Partner] {
                    addressees.push(Addressee {
                        audience,
                        customer: Some(customer.to_owned()),
                        stacks: stacks.clone(),
                    });
                }
            }
        }
        addressees
    }

    /// The values templates can use, for one addressee (see [`FIELDS`]).
    pub fn fields(&self, addressee: &Addressee) -> BTreeMap<&'static str, String> {
        let mut fields: BTreeMap<&'static str, String> =
            FIELDS.iter().map(|f| (*f, "-".to_owned())).collect();
        let mut set = |name: &'static str, value: String| {
            debug_assert!(FIELDS.contains(&name), "{name} is not in FIELDS");
            fields.insert(name, value);
        };
        set("event", self.kind().as_str().to_owned());
        set("audience", addressee.audience.as_str().to_owned());
        set(
            "time",
            jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_else(|_| jiff::Timestamp::now())
                .to_string(),
        );
        if let Some(run_id) = self.run_id() {
            set("run_id", run_id.to_owned());
        }
        if !addressee.stacks.is_empty() {
            set("stack", names(&addressee.stacks));
            set("stacks", names(&addressee.stacks));
            set(
                "customer",
                addressee
                    .customer
                    .clone()
                    .unwrap_or_else(|| customers(&addressee.stacks)),
            );
        }
        match self {
            Event::RecoveryStarted { cause, .. } => {
                set("cause", cause.clone().unwrap_or_else(|| "not given".into()));
            }
            Event::StepFailed { step, error, .. } => {
                set("step", step.clone());
                set("error", error.clone());
            }
            Event::StackRecovered { elapsed, .. } => {
                set("elapsed", HumanDuration(*elapsed).to_string())
            }
            Event::RecoveryFinished {
                rto,
                recovered,
                failed,
                ..
            } => {
                set("rto", HumanDuration(*rto).to_string());
                set("recovered", names(recovered));
                set("failed", names(failed));
                set(
                    "outcome",
                    if failed.is_empty() {
                        "recovered"
                    } else {
                        "incomplete"
                    }
                    .into(),
                );
            }
            Event::DrillStarted { scenario, .. } => set("scenario", scenario.clone()),
            Event::FaultInjected { fault, hosts, .. } => {
                set("fault", fault.clone());
                set("hosts", hosts.join(", "));
            }
            Event::FaultDetected {
                detected_by,
                time_to_detect,
                ..
            } => {
                set("detected_by", detected_by.clone());
                set("time_to_detect", HumanDuration(*time_to_detect).to_string());
            }
            Event::DrillFinished {
                passed,
                time_to_detect,
                time_to_recover,
                problems,
                ..
            } => {
                set("outcome", if *passed { "passed" } else { "failed" }.into());
                set(
                    "time_to_detect",
                    time_to_detect.map_or("not detected".into(), |d| HumanDuration(d).to_string()),
                );
                set(
                    "time_to_recover",
                    time_to_recover
                        .map_or("not recovered".into(), |d| HumanDuration(d).to_string()),
                );
                set(
                    "problems",
                    if problems.is_empty() {
                        "none".into()
                    } else {
                        problems.join("; ")
                    },
                );
            }
            Event::Test => {}
        }
        fields
    }
}

/// The built-in subject and body for an event and audience, or `None` when that audience
/// never hears about it.
pub(crate) fn default_template(
    kind: EventKind,
    audience: Audience,
) -> Option<(&'static str, &'static str)> {
    use Audience::*;
    use EventKind::*;
    Some(match (kind, audience) {
        (RecoveryStarted, Team) => (
            "[drp] recovery {{run_id}} started: {{stacks}}",
            "Recovery run {{run_id}} started for {{stacks}} (customers: {{customer}}).\nCause: {{cause}}",
        ),
        (RecoveryStarted, Customer) => (
            "Service interruption: we are restoring {{stacks}}",
            "Hello,\n\nYour service {{stacks}} is currently unavailable. Our team has started \
             restoring it on standby servers and will write to you again as soon as it is back.\n\n\
             We apologise for the inconvenience.",
        ),
        (RecoveryStarted, Partner) => (
            "Service interruption for {{customer}}: we are restoring {{stacks}}",
            "Hello,\n\nThe service {{stacks}} that we run for {{customer}} is currently unavailable. \
             Our team has started restoring it on standby servers and will write to you again as \
             soon as it is back.",
        ),
        (StepFailed, Team) => (
            "[drp] {{stack}}: step {{step}} failed",
            "Run {{run_id}}, stack {{stack}} (customer {{customer}}): step {{step}} failed:\n{{error}}",
        ),
        (StackRecovered, Team) => (
            "[drp] {{stack}} recovered in {{elapsed}}",
            "Run {{run_id}}: stack {{stack}} (customer {{customer}}) is back and healthy, \
             {{elapsed}} after the run started.",
        ),
        (StackRecovered, Customer) => (
            "Your service {{stack}} is back",
            "Hello,\n\nYour service {{stack}} has been restored and is working again (checked at \
             {{time}}).\n\nThank you for your patience.",
        ),
        (StackRecovered, Partner) => (
            "Service for {{customer}} is back: {{stack}}",
            "Hello,\n\nThe service {{stack}} that we run for {{customer}} has been restored and is \
             working again (checked at {{time}}).",
        ),
        (RecoveryFinished, Team) => (
            "[drp] recovery {{run_id}} {{outcome}}: RTO {{rto}}",
            "Recovery run {{run_id}} finished in {{rto}}.\nRecovered: {{recovered}}\nNot recovered: {{failed}}",
        ),
        (DrillStarted, Team) => (
            "[drp] drill {{run_id}} started: {{scenario}}",
            "Drill {{run_id}} started: {{scenario}}.\nStacks: {{stacks}}",
        ),
        (FaultInjected, Team) => (
            "[drp] drill {{run_id}}: fault injected ({{fault}})",
            "Drill {{run_id}}: {{fault}} injected on {{hosts}}.",
        ),
        (FaultDetected, Team) => (
            "[drp] drill {{run_id}}: fault detected in {{time_to_detect}}",
            "Drill {{run_id}}: {{detected_by}} detected the fault {{time_to_detect}} after it was injected.",
        ),
        (DrillFinished, Team) => (
            "[drp] drill {{run_id}} {{outcome}}",
            "Drill {{run_id}} {{outcome}}.\nTime to detect: {{time_to_detect}}\nTime to recover: \
             {{time_to_recover}}\nProblems: {{problems}}",
        ),
        (Test, Team) => (
            "[drp] test notification",
            "This is a test message from drp, sent at {{time}}. If you read it, this notifier works.",
        ),
        _ => return None,
    })
}
