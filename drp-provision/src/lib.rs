//! drp-provision: reaching servers.
//!
//! - [`Transport`]: run commands with streamed stdin/stdout/stderr, upload and download
//!   files, on one host. Implementations: [`LocalTransport`] (this machine) and
//!   [`SshTransport`] (libssh2, strict host-key checking by default).
//!
//! - [`Provisioner`]: acquire a host for a role and release it. Implementations:
//!   [`SparePool`] (a static TOML inventory of spare hosts, leases kept as files) and
//!   [`ScriptProvisioner`] (a user command creates the host and prints JSON).
//!   [`Prepared`] wraps one and prepares each acquired host with an Ansible playbook
//!   ([`AnsibleRunner`]).
//!
//! - [`fault`]: drills' faults on hosts ([`Fault`]: network blackhole, stopped or frozen
//!   service, user command), each reverted by a dead-man timer on the host itself if drp
//!   does not revert it.
//!
//! Every transport error is a [`TransportError`] whose message names the host; provisioning
//! errors are [`ProvisionError`]s (naming the pool file, host or command) and
//! [`AnsibleError`]s (naming the playbook, failed task and host); fault errors are
//! [`FaultError`]s (naming the host, the fault and the step that failed).

mod ansible;
mod error;
pub mod fault;
mod local;
mod pool;
mod prepare;
mod provisioner;
mod script;
mod ssh;
mod transport;

pub use ansible::{AnsibleError, AnsibleOptions, AnsibleRunner, OutputSink, Stream, TaskFailure};
pub use fault::{Backend, Fault, FaultError, FaultSpec, FaultStep};
pub use pool::{
    HealthCheck, HealthFuture, Inventory, LeaseRecord, SparePool, TransportFactory,
    default_transport_factory, transport_health_check,
};
pub use prepare::Prepared;
pub use provisioner::{
    HostRequest, HostSpec, Lease, ProvisionError, Provisioner, SkipReason, SkippedHost,
};
pub use script::{ScriptOptions, ScriptProvisioner};

pub use error::{ExitStatus, TransportError};
pub use local::LocalTransport;
pub use ssh::{
    HostKeyChecking, ParseTargetError, PassphraseSource, SshOptions, SshTarget, SshTransport,
    fingerprint_sha256,
};
pub use transport::{
    BoxRead, BoxWrite, ChildControl, Output, RemoteChild, RunOptions, Transport, TransportExt,
    shell_quote,
};
