//! drp-provision: reaching servers.
//!
//! - [`Transport`]: run commands with streamed stdin/stdout/stderr, upload and download
//!   files, on one host. Implementations: [`LocalTransport`] (this machine) and
//!   [`SshTransport`] (libssh2, strict host-key checking by default).
//!
//! Every error is a [`TransportError`] whose message names the host.

mod error;
mod local;
mod ssh;
mod transport;

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
