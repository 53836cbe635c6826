//! drp-core: where drp's capabilities meet, and the one library both frontends (the `drp` CLI
//! and the Python package) call.
//!
//! It exposes the backup capability ([`backup`]), provisioning ([`provision`]) and
//! monitoring ([`monitor`]), and their compositions: backups and restores on remote hosts
//! ([`remote`]); recovery plans ([`plan`]: the file format, its validation, the runbook) and
//! the [`executor`] that runs them (ordering, parallelism, retries, journal, resume, lock);
//! [`recover`] runs a plan for real, [`drill`] injects a fault and measures detection and
//! recovery, and [`report`] renders what both recorded. Anything both frontends need lives here, never
//! in them.

pub mod backup_plan;
pub mod drill;
pub mod executor;
pub mod files;
pub mod plan;
pub mod recover;
pub mod remote;
pub mod report;

pub use drp_backup as backup;
pub use drp_monitor as monitor;
pub use drp_provision as provision;

use std::sync::Arc;

/// The host a backup reads from or a restore writes to: this machine, or one reached over SSH
/// (connected on first use, with strict host-key checking unless the options say otherwise).
pub fn host(ssh: Option<provision::SshOptions>) -> Arc<dyn backup::Host> {
    match ssh {
        None => Arc::new(backup::LocalHost),
        Some(options) => Arc::new(remote::TransportHost::new(Arc::new(
            provision::SshTransport::new(options),
        ))),
    }
}

/// Exit status conventions shared by the frontends.
pub mod exit {
    /// The command did what was asked.
    pub const SUCCESS: u8 = 0;
    /// It failed (bad input, unreachable store, I/O...).
    pub const FAILURE: u8 = 1;
    /// The command line was wrong (what clap uses too).
    pub const USAGE: u8 = 2;
    /// Stored data or a manifest was refused as corrupt, truncated, tampered, unsigned or
    /// forged: the backup itself is in question, not the command.
    pub const INTEGRITY: u8 = 3;
}

/// The exit status for an error.
pub fn exit_status_for(error: &backup::Error) -> u8 {
    if error.is_integrity_failure() {
        exit::INTEGRITY
    } else {
        exit::FAILURE
    }
}
