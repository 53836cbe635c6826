//! drp-monitor: whether a stack is really up, and telling people.
//!
//! - [`HealthProbe`]: HTTP(S), TCP, command, DNS and TLS-certificate probes, checked against
//!   Gatus-style [conditions](condition) (`[STATUS] == 200`, `[BODY].status == UP`,
//!   `[CERTIFICATE_EXPIRATION] > 72h`), each result explained in one line. Configured by
//!   [`ProbeSpec`] (serde, as in plan files) and run repeatedly with thresholds by
//!   [`ProbeRunner`] / [`Monitor`] (`wait_until_healthy` after a restore).
//! - [`Notifier`]: Slack, generic JSON webhook, email (SMTP) and log notifiers, with messages
//!   per [`Audience`]: the team gets the technical one, customers and partners a plain one
//!   about their own stack. [`Notifications`] sends an [`Event`] through all of them with
//!   retries and reports what was sent; a failing notifier never fails the caller.
//! - [`AlertReceiver`]: an HTTP endpoint that external monitoring (Alertmanager, Gatus,
//!   anything that POSTs JSON) reports to, so a drill measures detection by the real thing.
//!
//! This crate depends on no other drp crate: drp-core composes it with provisioning
//! (e.g. command probes on remote hosts through [`Attempt::evaluate`]).

pub mod condition;
mod duration;
pub mod notify;
pub mod probe;
pub mod receiver;
mod runner;
mod secret;

pub use condition::{Condition, ConditionError, ConditionResult, Placeholder};
pub use duration::{DurationError, HumanDuration, human_duration, parse_duration};
pub use notify::{
    Audience, DeliveryReport, Event, EventKind, Message, NotificationReport, Notifications,
    Notifier, NotifierSpec, NotifiersConfig, NotifyError, RetryPolicy, StackRef,
};
pub use probe::{
    Attempt, CertificateInfo, HealthProbe, Observation, ProbeError, ProbeKind, ProbeResult,
    ProbeSpec,
};
pub use receiver::{AlertReceiver, ReceivedAlert, ReceiverOptions};
pub use runner::{HealthState, Monitor, MonitorOutcome, ProbeRunner, RunnerOptions, WaitOutcome};
pub use secret::{Secret, SecretError, SecretSource};
